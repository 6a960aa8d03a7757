//! The `tensor` kind on ONNX Runtime with all-MiniLM-L6-v2's graph: requests that agree
//! past the batch dimension run together up to `max_batch_size` rows, and each gets
//! exactly the rows it would get alone; requests of other trailing shapes run apart.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use inferpush_protocol::Lane;
use inferpush_repository::{FileCheck, Repository};
use inferpush_worker::model::device::Precision;
use inferpush_worker::model::embedding::EngineChoice;
use inferpush_worker::model::tensor::TensorModel;
use inferpush_worker::model::{Model, Run, ServeSettings};
use serde_json::{Value, json};

fn model(max_batch_size: usize) -> TensorModel {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    let repository = Repository::load(&dir, FileCheck::Exists).expect("model files (make test fetches them)");
    let settings = ServeSettings {
        repository: dir,
        engine: EngineChoice::Auto,
        device: None,
        precision: Precision::F32,
        threads: 1,
        max_batch_size: Some(max_batch_size),
        max_batch_tokens: None,
        max_batch_delay: Duration::ZERO,
        prefetch: None,
    };
    TensorModel::load(repository.get("all-minilm-l6-v2-onnx").unwrap(), &settings).unwrap()
}

/// One row of `width` tokens (the first `used` real), as a v2 request.
fn request(seed: i64, width: usize, used: usize) -> Value {
    let ids: Vec<i64> = (0..width).map(|i| if i < used { 1000 + seed * 7 + i as i64 } else { 0 }).collect();
    let mask: Vec<i64> = (0..width).map(|i| i64::from(i < used)).collect();
    let shape = json!([1, width]);
    json!({"inputs": [
        {"name": "input_ids", "shape": shape, "datatype": "INT64", "data": ids},
        {"name": "attention_mask", "shape": shape, "datatype": "INT64", "data": mask},
        {"name": "token_type_ids", "shape": shape, "datatype": "INT64", "data": vec![0; width]},
    ]})
}

fn vector(response: &Value) -> Vec<f64> {
    assert_eq!(response["outputs"][0]["shape"], json!([1, 384]), "{response}");
    response["outputs"][0]["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_that_agree_past_the_batch_dimension_share_passes_and_get_their_own_rows() {
    let model = Arc::new(model(8));
    // Each alone: the reference rows.
    let mut alone = Vec::new();
    for seed in 0..16 {
        alone.push(vector(
            &model.infer(&request(seed, 6, 3 + (seed as usize % 4)), Run::on(Lane::Main)).await.unwrap(),
        ));
    }
    let solo_passes = model.passes();
    assert_eq!(solo_passes, 16);
    // 16 at once, plus 4 of another width: passes of up to 8 rows of one width.
    let mut tasks = Vec::new();
    for seed in 0..20 {
        let model = model.clone();
        let (width, used) = if seed < 16 { (6, 3 + (seed as usize % 4)) } else { (9, 9) };
        tasks.push(tokio::spawn(async move {
            model.infer(&request(seed, width, used), Run::on(Lane::Main)).await
        }));
    }
    for (seed, task) in tasks.into_iter().enumerate() {
        let got = vector(&task.await.unwrap().unwrap());
        if seed < 16 {
            let worst = got.iter().zip(&alone[seed]).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(worst < 1e-5, "request {seed} got another's rows or other values: {worst}");
        }
    }
    let batched = model.passes() - solo_passes;
    println!("20 concurrent requests ran in {batched} passes");
    assert!(batched < 20, "concurrent requests were batched: {batched} passes for 20");
    assert!(batched >= 3, "at most 8 rows a pass, and widths never mixed: {batched}");
}

#[tokio::test]
async fn a_request_that_does_not_match_is_invalid_input_naming_the_tensor() {
    let model = model(8);
    let mut wrong = request(1, 4, 4);
    wrong["inputs"][2]["datatype"] = json!("INT32");
    let error = model.infer(&wrong, Run::on(Lane::Main)).await.unwrap_err().to_string();
    assert!(error.contains("input tensor `token_type_ids`"), "{error}");
}
