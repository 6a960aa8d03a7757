//! The model repository against the real binaries, RabbitMQ and Redis: a wrong card stops
//! the api and the worker at start (and `--check-config`) naming the file, the field and
//! the rule; `GET /v1/models` says which models a live worker serves; a task for a model no
//! live worker serves is accepted, says so, and waits in its durable queue until one comes;
//! every result names the card's version (and the weights, for a model that has some).

use std::path::Path;
use std::time::{Duration, Instant};

use inferpush_integration_tests::process::{Service, bin_dir, workspace_root};
use inferpush_integration_tests::{Stack, StackOptions};
use serde_json::{Value, json};

const ECHO_CARD: &str = "name = \"echo\"\nkind = \"echo\"\nversion = \"7\"\n";

fn card(root: &Path, folder: &str, text: &str) {
    std::fs::create_dir_all(root.join(folder)).unwrap();
    std::fs::write(root.join(folder).join("model.toml"), text).unwrap();
}

/// Runs `binary` on `repository` with `args` to its end and returns its exit code and log.
async fn run(binary: &str, name: &str, repository: &Path, args: &[&str]) -> (Option<i32>, String) {
    let env = [
        ("INFERPUSH_MODEL_REPOSITORY", repository.display().to_string()),
        ("INFERPUSH_DEV_MODE", "true".to_owned()),
        // Nothing listens there: a binary that got past its checks would wait, not exit.
        ("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f".to_owned()),
        ("REDIS_URL", "redis://127.0.0.1:1".to_owned()),
    ];
    let mut service =
        Service::start(binary, &format!("repository-{name}"), &bin_dir().join(binary), args, &env);
    let code = service.wait_exit(Duration::from_secs(30)).await;
    (code, service.log_text())
}

#[tokio::test]
async fn a_wrong_card_stops_both_binaries_naming_the_file_the_field_and_the_rule() {
    let root = tempfile::tempdir().unwrap();
    card(root.path(), "echo", ECHO_CARD);
    card(root.path(), "painter", "name = \"painter\"\nkind = \"diffusion\"\nversion = \"1\"\n");
    let painter = root.path().join("painter").join("model.toml").display().to_string();
    for binary in ["inferpush-api", "inferpush-worker"] {
        for args in [&[][..], &["--check-config"]] {
            let (code, log) = run(binary, &format!("{binary}-kind{}", args.len()), root.path(), args).await;
            assert_eq!(code, Some(1), "{binary} {args:?}:\n{log}");
            assert!(
                log.contains(&painter) && log.contains("`kind`"),
                "{binary} names the file and field:\n{log}"
            );
            assert!(
                log.contains("the kinds are echo, text-embedding, tensor"),
                "{binary} lists the kinds:\n{log}"
            );
        }
    }

    // A file whose checksum is not the card's: the worker, which would load it, refuses.
    std::fs::remove_dir_all(root.path().join("painter")).unwrap();
    let weights = ECHO_CARD.replace("name = \"echo\"", "name = \"echo-2\"")
        + "aliases = [\"Echo-Two\"]\n[[files]]\npath = \"weights.bin\"\nsha256 = \"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\"\n";
    card(root.path(), "echo-2", &weights);
    std::fs::write(root.path().join("echo-2").join("weights.bin"), "not hello").unwrap();
    let (code, log) = run("inferpush-worker", "worker-checksum", root.path(), &["--check-config"]).await;
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("`files[0].sha256`") && log.contains("not the card's 2cf24dba"), "{log}");
    std::fs::write(root.path().join("echo-2").join("weights.bin"), "hello").unwrap();
    let (code, log) = run("inferpush-worker", "worker-ok", root.path(), &["--check-config"]).await;
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("configuration ok"), "{log}");

    // Two cards answering to one name.
    card(
        root.path(),
        "echo-3",
        &ECHO_CARD.replace("name = \"echo\"", "name = \"echo-3\"\naliases = [\"echo-two\"]"),
    );
    let (code, log) = run("inferpush-api", "api-alias", root.path(), &["--check-config"]).await;
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("`aliases[0]`") && log.contains("every name and alias names one model"), "{log}");

    // A field no card has.
    std::fs::remove_dir_all(root.path().join("echo-3")).unwrap();
    card(
        root.path(),
        "echo-4",
        &format!("{}colour = \"blue\"\n", ECHO_CARD.replace("\"echo\"\nkind", "\"echo-4\"\nkind")),
    );
    let (code, log) = run("inferpush-api", "api-field", root.path(), &[]).await;
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("unknown field `colour`"), "{log}");
}

async fn models(stack: &Stack) -> Value {
    stack.http().get(format!("{}/v1/models", stack.api_url)).send().await.unwrap().json().await.unwrap()
}

fn model<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name}: {list}"))
}

/// Polls `GET /v1/models` until `model`'s worker count is `workers`.
async fn until_workers(stack: &Stack, name: &str, workers: u64) -> Value {
    let started = Instant::now();
    loop {
        let list = models(stack).await;
        if model(&list, name)["workers"] == workers {
            return list;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{name} never had {workers} workers: {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn final_record(stack: &Stack, task_id: &str) -> Value {
    let started = Instant::now();
    loop {
        let (_, record) = stack.task("dev-alice", task_id).await;
        if ["succeeded", "failed", "cancelled", "expired"].contains(&record["status"].as_str().unwrap_or(""))
        {
            return record;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "not final: {record}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn models_say_which_a_live_worker_serves_and_a_task_for_an_unserved_one_waits_for_it() {
    let mut stack = Stack::start_with(StackOptions { models: "echo".into(), ..Default::default() }).await;
    let list = until_workers(&stack, "echo", 1).await;
    let echo = model(&list, "echo");
    assert_eq!(
        (echo["ready"].clone(), echo["kind"].clone(), echo["version"].clone()),
        (json!(true), json!("echo"), json!("1"))
    );
    assert_eq!(echo["limits"]["max_input_bytes"], 524_288);
    let minilm = model(&list, "all-minilm-l6-v2");
    assert_eq!(
        (minilm["ready"].clone(), minilm["workers"].clone()),
        (json!(false), json!(0)),
        "no worker serves it"
    );
    assert_eq!(minilm["kind"], "text-embedding");
    assert_eq!(minilm["dimensions"], 384);
    assert_eq!(minilm["aliases"], json!(["sentence-transformers/all-MiniLM-L6-v2"]));

    // Served: the result names the card's version; echo has no weights to name.
    tokio::time::sleep(Duration::from_millis(1_500)).await; // the submit path's snapshot (1 s)
    let (status, accepted) = stack.submit("dev-alice", "echo", json!({"text": "hi"})).await;
    assert_eq!((status, accepted["model_ready"].clone()), (202, json!(true)), "{accepted}");
    let record = final_record(&stack, accepted["task_id"].as_str().unwrap()).await;
    assert_eq!((record["status"].clone(), record["model_version"].clone()), (json!("succeeded"), json!("1")));
    assert!(record.get("weights_sha256").is_none(), "{record}");

    // Not served: accepted, saying so, and queued durably until a worker for it comes.
    let (status, accepted) =
        stack.submit("dev-alice", "all-minilm-l6-v2", json!({"texts": ["queued"]})).await;
    assert_eq!((status, accepted["model_ready"].clone()), (202, json!(false)), "{accepted}");
    let task_id = accepted["task_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stack.task("dev-alice", &task_id).await.1["status"], "queued");

    // A worker that stops withdraws at once: its models stop counting.
    stack.stop_worker().await;
    until_workers(&stack, "echo", 0).await;

    // A worker for the model comes: the waiting task runs, and its result names the weights.
    stack.start_worker_for("all-minilm-l6-v2").await;
    until_workers(&stack, "all-minilm-l6-v2", 1).await;
    let record = final_record(&stack, &task_id).await;
    assert_eq!(record["status"], "succeeded", "{record}");
    let card = std::fs::read_to_string(workspace_root().join("models/all-minilm-l6-v2/model.toml")).unwrap();
    let sha = record["weights_sha256"].as_str().unwrap_or_else(|| panic!("{record}"));
    assert!(card.contains(sha), "the weights named are one of the card's files: {sha}");
    assert_eq!(record["model_version"], "1");
}
