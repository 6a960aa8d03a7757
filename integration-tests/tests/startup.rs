//! Start-up safety, against the real binaries: outside development mode they refuse
//! settings that would leave a deployment open, naming the variable and never the secret;
//! `--help` and start-up logs show no secret; RS256 JWTs work end to end; and a worker
//! whose app secret the Pusher server refuses does not start.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use inferpush_integration_tests::process::{Service, bin_dir, free_port, log_dir};
use inferpush_integration_tests::{Stack, StackOptions};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

const SECRET: &str = "s3cret-VALUE-never-shown-0123456789";
/// A password with the characters that break naive redaction (`/`, `?` and `#` must be
/// percent-encoded in a URL; the unit tests of the redaction cover them written raw).
const PASSWORD: &str = "pa@ss:w0rd";

fn api() -> std::path::PathBuf {
    bin_dir().join("inferpush-api")
}

fn worker() -> std::path::PathBuf {
    bin_dir().join("inferpush-worker")
}

/// Every secret-bearing setting, set to values that contain [`SECRET`] or [`PASSWORD`].
fn secret_env() -> Vec<(&'static str, String)> {
    vec![
        ("PUSHER_APP_SECRET", SECRET.into()),
        ("PUSHER_ENCRYPTION_MASTER_KEY", "c2VjcmV0LVZBTFVFLW5ldmVyLXNob3duLTAxMjM0NTY=".into()),
        ("INFERPUSH_JWT_HS256_SECRET", SECRET.into()),
        ("INFERPUSH_DEV_TOKEN_SECRET", SECRET.into()),
        ("AMQP_URL", format!("amqp://guest:{PASSWORD}@127.0.0.1:1/%2f")),
        ("REDIS_URL", format!("redis://default:{PASSWORD}@127.0.0.1:1")),
    ]
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [SECRET, PASSWORD, "c2VjcmV0LVZBTFVFLW5ldmVyLXNob3duLTAxMjM0NTY="] {
        assert!(!text.contains(secret), "{what} shows a secret:\n{text}");
    }
}

/// Runs `program` to its end (it must refuse to start) and returns its output.
async fn refused(name: &str, program: &std::path::Path, env: &[(&str, String)]) -> String {
    let mut service = Service::start(name, &format!("startup-{name}"), program, &[], env);
    let code = service.wait_exit(Duration::from_secs(30)).await;
    let log = service.log_text();
    assert!(code.is_some_and(|c| c != 0), "{name} started (exit {code:?}):\n{log}");
    assert_no_secret(name, &log);
    log
}

#[test]
fn help_shows_no_secret_value() {
    for program in [api(), worker()] {
        let output =
            Command::new(&program).arg("--help").envs(secret_env()).output().expect("running --help");
        assert!(output.status.success());
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("PUSHER_APP_SECRET"), "the variables are listed:\n{text}");
        assert_no_secret(&format!("{} --help", program.display()), &text);
    }
}

#[tokio::test]
async fn outside_development_mode_the_default_app_and_short_secrets_are_refused() {
    // The same check whichever push server is named: both ship the same default app.
    for server in ["soketi", "sockudo"] {
        for (name, program) in [("api", api()), ("worker", worker())] {
            let env = [("INFERPUSH_MODELS", "echo".to_owned()), ("INFERPUSH_PUSH_SERVER", server.to_owned())];
            let log = refused(&format!("{name}-{server}-default-app"), &program, &env).await;
            assert!(log.contains("PUSHER_APP_SECRET is Soketi's and Sockudo's well-known default"), "{log}");
            let short = [env.as_slice(), &[("PUSHER_APP_SECRET", "hunter2".to_owned())]].concat();
            let log = refused(&format!("{name}-{server}-short-secret"), &program, &short).await;
            assert!(log.contains("PUSHER_APP_SECRET is too short") && !log.contains("hunter2"), "{log}");
        }
    }
}

#[tokio::test]
async fn development_mode_stays_on_loopback_and_jwts_need_issuer_and_audience() {
    let public = [("INFERPUSH_DEV_MODE", "true".to_owned()), ("INFERPUSH_API_ADDR", "0.0.0.0:0".into())];
    let log = refused("api-dev-public", &api(), &public).await;
    assert!(log.contains("INFERPUSH_API_ADDR=0.0.0.0:0"), "{log}");

    let no_audience = [
        ("INFERPUSH_DEV_MODE", "true".to_owned()),
        ("INFERPUSH_JWT_HS256_SECRET", SECRET.into()),
        ("INFERPUSH_JWT_ISSUER", "https://id.example".into()),
    ];
    let log = refused("api-jwt-no-audience", &api(), &no_audience).await;
    assert!(log.contains("INFERPUSH_JWT_AUDIENCE is not set"), "{log}");
}

#[tokio::test]
async fn start_up_logs_show_no_password_or_secret() {
    let mut env = secret_env();
    env.retain(|(name, _)| *name != "INFERPUSH_JWT_HS256_SECRET");
    env.extend([
        ("INFERPUSH_DEV_MODE", "true".to_owned()),
        ("INFERPUSH_API_ADDR", "127.0.0.1:0".into()),
        ("INFERPUSH_METRICS_ADDR", "127.0.0.1:0".into()),
        ("INFERPUSH_MODELS", "echo".into()),
        ("PUSHER_PORT", free_port().to_string()),
    ]);
    let mut api = Service::start("inferpush-api", "startup-api-logs", &api(), &[], &env);
    api.wait_for_log_value("listening", "addr", Duration::from_secs(30)).await;
    let mut worker = Service::start("inferpush-worker", "startup-worker-logs", &worker(), &[], &env);
    worker.wait_for_log_value("starting inferpush-worker", "amqp", Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for service in [&api, &worker] {
        let log = service.log_text();
        assert!(log.contains("***"), "the redacted URLs are logged:\n{log}");
        assert_no_secret("start-up logs", &log);
    }
}

#[tokio::test]
async fn rs256_tokens_from_a_key_pair_made_here_open_only_their_own_channel() {
    let dir = log_dir().join(format!("rs256-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let private = dir.join("private.pem");
    let public = dir.join("public.pem");
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl").args(args).output().expect("openssl");
        assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    };
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        private.to_str().unwrap(),
    ]);
    openssl(&["pkey", "-in", private.to_str().unwrap(), "-pubout", "-out", public.to_str().unwrap()]);
    let other = dir.join("other.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        other.to_str().unwrap(),
    ]);

    let env = [
        ("INFERPUSH_API_ADDR", "127.0.0.1:0".to_owned()),
        ("PUSHER_APP_ID", "rs-app".into()),
        ("PUSHER_APP_KEY", "rs-key".into()),
        ("PUSHER_APP_SECRET", SECRET.into()),
        ("INFERPUSH_JWT_RS256_PUBLIC_KEY", public.display().to_string()),
        ("INFERPUSH_JWT_ISSUER", "https://id.example".into()),
        ("INFERPUSH_JWT_AUDIENCE", "inferpush".into()),
    ];
    let mut service = Service::start("inferpush-api", "startup-rs256", &api(), &[], &env);
    let addr = service.wait_for_log_value("listening", "addr", Duration::from_secs(30)).await;

    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let claims = json!({"sub": "frank", "iss": "https://id.example", "aud": "inferpush", "exp": now + 300});
    let token = |key: &std::path::Path| {
        let pem = std::fs::read(key).unwrap();
        encode(&Header::new(Algorithm::RS256), &claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
    };
    let auth = |token: String, channel: &str| {
        reqwest::Client::new()
            .post(format!("http://{addr}/pusher/auth"))
            .bearer_auth(token)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("socket_id=1234.5678&channel_name={channel}"))
            .send()
    };
    let own = auth(token(&private), "private-inference.frank").await.unwrap();
    assert_eq!(own.status(), 200, "{}", own.text().await.unwrap());
    let theirs = auth(token(&private), "private-inference.alice").await.unwrap();
    assert_eq!(theirs.status(), 403);
    let forged = auth(token(&other), "private-inference.frank").await.unwrap();
    assert_eq!(forged.status(), 401, "a token from another key pair");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_worker_whose_secret_the_pusher_server_refuses_does_not_start() {
    let stack = Stack::start_with(StackOptions { worker: false, ..Default::default() }).await;
    let env = [
        ("PUSHER_APP_ID", inferpush_integration_tests::stack::APP_ID.to_owned()),
        ("PUSHER_APP_KEY", inferpush_integration_tests::stack::APP_KEY.into()),
        ("PUSHER_APP_SECRET", SECRET.into()),
        ("PUSHER_HOST", "127.0.0.1".into()),
        ("PUSHER_PORT", stack.pusher_port.to_string()),
        ("INFERPUSH_MODELS", "echo".into()),
        ("INFERPUSH_METRICS_ADDR", "127.0.0.1:0".into()),
    ];
    let log = refused("worker-wrong-secret", &worker(), &env).await;
    assert!(log.contains("refused this app") && log.contains("PUSHER_APP_SECRET"), "{log}");
}
