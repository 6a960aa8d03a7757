//! The embedding model against the committed sentence-transformers reference, for each
//! engine, and the dynamic batcher against per-task results. Needs `scripts/fetch-model.sh`
//! (which `make test` runs).

use std::path::PathBuf;
use std::time::Duration;

use inferpush_worker::model::embedding::{
    BatchSettings, Batcher, CandleEngine, Engine, ModelFiles, OrtEngine, TextTokenizer, cosine,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    sentences: Vec<String>,
    embeddings: Vec<Vec<f32>>,
}

fn files() -> ModelFiles {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    let files = ModelFiles::under(&dir);
    files.check().expect("model files (make test fetches them)");
    files
}

fn reference() -> Reference {
    let text = include_str!("fixtures/minilm-reference.json");
    serde_json::from_str(text).expect("the fixture parses")
}

fn tokenizer(files: &ModelFiles) -> TextTokenizer {
    TextTokenizer::load(&files.dir.join("tokenizer.json")).unwrap()
}

fn assert_matches_reference(engine: &mut dyn Engine) {
    let files = files();
    let reference = reference();
    assert!(reference.sentences.len() >= 32);
    let texts: Vec<&str> = reference.sentences.iter().map(String::as_str).collect();
    // In batches of 8, as the reference was made, and each sentence alone.
    for chunk in (0..texts.len()).collect::<Vec<_>>().chunks(8) {
        let batch: Vec<&str> = chunk.iter().map(|i| texts[*i]).collect();
        let got = engine.embed(&tokenizer(&files).encode(&batch).unwrap()).unwrap();
        for (row, i) in got.iter().zip(chunk) {
            assert_eq!(row.len(), 384);
            let similarity = cosine(row, &reference.embeddings[*i]);
            assert!(
                similarity >= 0.999,
                "{}: sentence {i} {:?} cosine {similarity}",
                engine.name(),
                texts[*i]
            );
            let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "not normalised: {norm}");
        }
    }
}

#[test]
fn candle_matches_sentence_transformers_on_every_reference_sentence() {
    let mut engine = CandleEngine::load(&files().dir, candle_core::Device::Cpu).unwrap();
    assert_matches_reference(&mut engine);
}

#[test]
fn onnx_runtime_matches_sentence_transformers_on_every_reference_sentence() {
    let files = files();
    assert!(files.has_ort(), "model.onnx and libonnxruntime.so (make test fetches them)");
    let mut engine = OrtEngine::load(&files.dir.join("model.onnx"), &files.ort_library, 2).unwrap();
    assert_matches_reference(&mut engine);
}

#[test]
fn texts_over_256_tokens_are_truncated_like_the_original() {
    let files = files();
    let long = "word ".repeat(600);
    let encoded = tokenizer(&files).encode(&[&long, "short"]).unwrap();
    assert_eq!(encoded.seq_len, 256);
    assert_eq!(
        encoded.attention_mask[256..].iter().filter(|m| **m == 1).count(),
        3,
        "short row: [CLS] short [SEP]"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_batches_answer_each_task_with_exactly_its_own_rows() {
    let files = files();
    let reference = reference();
    let settings =
        BatchSettings { max_batch_size: 16, max_batch_delay: Duration::from_millis(20), max_batch_texts: 64 };
    let engine = Box::new(CandleEngine::load(&files.dir, candle_core::Device::Cpu).unwrap());
    let batcher = Batcher::spawn(engine, tokenizer(&files), settings);

    // 40 tasks of 1–3 texts of very different lengths, all at once.
    let tasks: Vec<Vec<String>> = (0..40)
        .map(|i| {
            (0..1 + i % 3)
                .map(|j| reference.sentences[(i * 7 + j * 5) % reference.sentences.len()].clone())
                .collect()
        })
        .collect();
    let handles: Vec<_> = tasks
        .iter()
        .map(|texts| {
            let (batcher, texts) = (batcher.clone(), texts.clone());
            tokio::spawn(async move { batcher.embed(texts).await })
        })
        .collect();
    let mut alone = CandleEngine::load(&files.dir, candle_core::Device::Cpu).unwrap();
    for (texts, handle) in tasks.iter().zip(handles) {
        let batched = handle.await.unwrap().unwrap();
        assert_eq!(batched.len(), texts.len(), "a task got another task's rows");
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let solo = alone.embed(&tokenizer(&files).encode(&refs).unwrap()).unwrap();
        for (b, s) in batched.iter().zip(&solo) {
            let similarity = cosine(b, s);
            assert!(similarity >= 0.99999, "padding or cross-talk changed a result: cosine {similarity}");
        }
    }
}
