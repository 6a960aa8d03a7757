//! The api's OpenAPI document against the running api: schemathesis (from PyPI) reads
//! `/openapi.json` and fuzzes every operation for a bounded time, as an authenticated user,
//! with valid and invalid data. No answer may be a 5xx, and every answer must match the
//! document: its status, content type, headers and body schema; invalid data must be refused.

use std::time::Duration;

use inferpush_integration_tests::process::workspace_root;
use inferpush_integration_tests::{Stack, StackOptions};

/// The schemathesis release the run is pinned to (installed once, outside the clone).
const SCHEMATHESIS: &str = "schemathesis==4.32.5";

/// How long schemathesis may fuzz, in seconds (`INFERPUSH_FUZZ_SECONDS` to change it).
const FUZZ_SECONDS: &str = "60";

/// The checks it runs: the "no 5xx and no answer that breaks the schema", and that
/// data the schema forbids is refused.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
    response_headers_conformance,response_schema_conformance,negative_data_rejection";

fn schemathesis_venv() -> std::path::PathBuf {
    let output = std::process::Command::new(workspace_root().join("scripts/venv.sh"))
        .args(["schemathesis", SCHEMATHESIS])
        .output()
        .expect("running scripts/venv.sh");
    assert!(output.status.success(), "installing schemathesis: {}", String::from_utf8_lossy(&output.stderr));
    std::path::PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_schema() {
    let venv = schemathesis_venv();
    // Limits high enough that the fuzzer reaches past the rate limiter (429s are documented
    // and checked too, but would hide every other answer).
    let api_env = vec![
        ("INFERPUSH_SUBMIT_RATE", "100000".to_owned()),
        ("INFERPUSH_SUBMIT_BURST", "100000".to_owned()),
        ("INFERPUSH_AUTH_RATE", "100000".to_owned()),
        ("INFERPUSH_AUTH_BURST", "100000".to_owned()),
        ("INFERPUSH_LIST_RATE", "100000".to_owned()),
        ("INFERPUSH_LIST_BURST", "100000".to_owned()),
        // No worker serves the embedding model here: /v1/embeddings answers its 504 after
        // this, well inside schemathesis' request timeout.
        ("INFERPUSH_MAX_WAIT", "2s".to_owned()),
    ];
    let stack = Stack::start_with(StackOptions { api_env, ..Default::default() }).await;
    let document = stack.http().get(format!("{}/openapi.json", stack.api_url)).send().await.unwrap();
    assert_eq!(document.status(), 200);
    let document: serde_json::Value = document.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");

    let seconds = std::env::var("INFERPUSH_FUZZ_SECONDS").unwrap_or_else(|_| FUZZ_SECONDS.into());
    let reports = tempfile_dir();
    let run = tokio::process::Command::new(venv.join("bin/st"))
        .current_dir(&reports)
        .args(["run", &format!("{}/openapi.json", stack.api_url)])
        .args(["--checks", CHECKS, "--max-time", &seconds, "--workers", "2"])
        .args(["--header", "Authorization: Bearer dev-alice"])
        .args(["--generation-database", "none", "--request-timeout", "10", "--no-color"])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(seconds.parse::<u64>().unwrap() + 240), run)
        .await
        .expect("schemathesis overran its time budget")
        .expect("running schemathesis");
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{text}");
    let _ = std::fs::remove_dir_all(&reports);
    assert!(output.status.success(), "schemathesis found problems:\n{text}\n{}", stack.logs());
    assert!(!stack.logs().contains("internal error"), "the api logged an internal error:\n{}", stack.logs());
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("inferpush-fuzz-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
