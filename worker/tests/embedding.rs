//! The embedding model against the committed sentence-transformers reference, for each
//! engine, and the dynamic batcher against per-task results. Needs `scripts/fetch-model.sh`
//! (which `make test` runs).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use inferpush_protocol::Lane;
use inferpush_worker::model::embedding::{
    BatchError, BatchSettings, Batcher, CandleEngine, Encoded, Engine, ModelFiles, OrtEngine, TextTokenizer,
    cosine,
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
    files.load_tokenizer().unwrap()
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
    let mut engine = CandleEngine::load(&files(), candle_core::Device::Cpu, candle_core::DType::F32).unwrap();
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

/// Sends every task to the batcher at once; one handle per task, in order.
fn submit_all(
    batcher: &Batcher,
    tasks: &[Vec<String>],
) -> Vec<tokio::task::JoinHandle<Result<Vec<Vec<f32>>, BatchError>>> {
    tasks
        .iter()
        .map(|texts| {
            let (batcher, texts) = (batcher.clone(), texts.clone());
            tokio::spawn(async move { batcher.embed(texts, Lane::Main, None).await.map(|e| e.rows) })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_batches_answer_each_task_with_exactly_its_own_rows() {
    let files = files();
    let reference = reference();
    let settings = BatchSettings {
        max_batch_texts: 16,
        max_batch_tokens: 4096,
        max_batch_delay: Duration::from_millis(20),
    };
    let engine =
        Box::new(CandleEngine::load(&files, candle_core::Device::Cpu, candle_core::DType::F32).unwrap());
    let batcher = Batcher::spawn(engine, tokenizer(&files), settings, "all-minilm-l6-v2");

    // 40 tasks of 1–3 texts of very different lengths, all at once.
    let tasks: Vec<Vec<String>> = (0..40)
        .map(|i| {
            (0..1 + i % 3)
                .map(|j| reference.sentences[(i * 7 + j * 5) % reference.sentences.len()].clone())
                .collect()
        })
        .collect();
    let handles = submit_all(&batcher, &tasks);
    let mut alone = CandleEngine::load(&files, candle_core::Device::Cpu, candle_core::DType::F32).unwrap();
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

/// Counts passes and their padded size, answering like an engine.
struct Counting {
    passes: Arc<std::sync::Mutex<Vec<(usize, usize)>>>,
}

impl Engine for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }

    fn embed(&mut self, batch: &Encoded) -> anyhow::Result<Vec<Vec<f32>>> {
        self.passes.lock().unwrap().push((batch.rows, batch.seq_len));
        // Each row says how long it was, so rows can be told apart.
        let lengths = batch.attention_mask.chunks(batch.seq_len.max(1));
        Ok(lengths.map(|mask| vec![mask.iter().sum::<i64>() as f32; 384]).collect())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_task_runs_in_passes_within_the_token_budget_and_gets_its_rows_in_order() {
    let files = files();
    let passes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let settings =
        BatchSettings { max_batch_texts: 32, max_batch_tokens: 512, max_batch_delay: Duration::ZERO };
    let batcher = Batcher::spawn(
        Box::new(Counting { passes: passes.clone() }),
        tokenizer(&files),
        settings,
        "all-minilm-l6-v2",
    );
    // 100 texts: short ones and long ones interleaved.
    let texts: Vec<String> =
        (0..100).map(|i| if i % 3 == 0 { "word ".repeat(60 + i) } else { format!("short {i}") }).collect();
    let embedded = batcher.embed(texts.clone(), Lane::Main, None).await.unwrap();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let lengths: Vec<usize> = tokenizer(&files).tokens(&refs).unwrap().iter().map(|t| t.len()).collect();
    assert_eq!(embedded.rows.len(), 100);
    for (i, (row, length)) in embedded.rows.iter().zip(&lengths).enumerate() {
        assert_eq!(row[0] as usize, *length, "text {i} got another text's row");
    }
    assert_eq!(embedded.tokens, lengths.iter().sum::<usize>(), "usage counts every token read");
    let passes = passes.lock().unwrap().clone();
    assert!(passes.len() > 1, "{passes:?}");
    for (rows, seq_len) in &passes {
        assert!(*rows <= 32 && (rows * seq_len <= 512 || *rows == 1), "pass over budget: {rows} × {seq_len}");
    }
    // Grouped by length: the short texts never pad to a long one's length.
    let padded: usize = passes.iter().map(|(rows, seq_len)| rows * seq_len).sum();
    assert!(padded < embedded.tokens * 5 / 4, "padded {padded} for {} real tokens", embedded.tokens);
}

#[test]
fn candle_in_f16_stays_within_cosine_0_99_of_the_reference() {
    let files = files();
    let reference = reference();
    let mut engine = CandleEngine::load(&files, candle_core::Device::Cpu, candle_core::DType::F16).unwrap();
    let texts: Vec<&str> = reference.sentences.iter().take(8).map(String::as_str).collect();
    let got = engine.embed(&tokenizer(&files).encode(&texts).unwrap()).unwrap();
    for (i, row) in got.iter().enumerate() {
        let similarity = cosine(row, &reference.embeddings[i]);
        assert!(similarity >= 0.99, "f16 sentence {i}: cosine {similarity}");
    }
}

/// Answers like an engine, but fails (or panics) on any batch holding a poisoned text:
/// a stand-in for a CUDA out-of-memory or a kernel refusing a shape.
struct Failing {
    batches: Arc<AtomicUsize>,
}

impl Engine for Failing {
    fn name(&self) -> &'static str {
        "failing"
    }

    fn embed(&mut self, batch: &Encoded) -> anyhow::Result<Vec<Vec<f32>>> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        // Token id 100 is `[UNK]`: the poisoned texts are made of characters the
        // vocabulary lacks; the error and the panic take turns.
        let poisoned = batch.input_ids.iter().filter(|&&id| id == 100).count();
        match poisoned {
            0 => Ok(vec![vec![1.0; 384]; batch.rows]),
            n if n % 2 == 1 => anyhow::bail!("CUDA_ERROR_OUT_OF_MEMORY: out of memory"),
            _ => panic!("a kernel refused the shape"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_failure_fails_only_the_task_that_caused_it_and_the_batcher_keeps_serving() {
    let files = files();
    let batches = Arc::new(AtomicUsize::new(0));
    let settings = BatchSettings {
        max_batch_texts: 16,
        max_batch_tokens: 4096,
        max_batch_delay: Duration::from_millis(50),
    };
    let batcher = Batcher::spawn(
        Box::new(Failing { batches: batches.clone() }),
        tokenizer(&files),
        settings,
        "all-minilm-l6-v2",
    );
    let tasks: Vec<Vec<String>> = vec![
        vec!["fine".into()],
        vec!["☃".into()],
        vec!["also fine".into(), "and this".into()],
        vec!["☃ ☃".into()],
        vec!["last".into()],
    ];
    let handles = submit_all(&batcher, &tasks);
    let mut outcomes = Vec::new();
    for handle in handles {
        outcomes.push(handle.await.unwrap());
    }
    assert_eq!(outcomes[0].as_ref().map(Vec::len), Ok(1));
    assert!(outcomes[1].as_ref().unwrap_err().to_string().contains("OUT_OF_MEMORY"), "{:?}", outcomes[1]);
    assert_eq!(outcomes[2].as_ref().map(Vec::len), Ok(2));
    assert!(outcomes[3].as_ref().unwrap_err().to_string().contains("panicked"), "{:?}", outcomes[3]);
    assert_eq!(outcomes[4].as_ref().map(Vec::len), Ok(1));
    // Still serving after a failure and a panic.
    assert_eq!(batcher.embed(vec!["after".into()], Lane::Main, None).await.map(|e| e.rows.len()), Ok(1));
    assert!(batches.load(Ordering::SeqCst) >= 6, "the failed batch was split and retried");
}

/// Answers like an engine, slowly: one batch takes 30 ms.
struct Slow;

impl Engine for Slow {
    fn name(&self) -> &'static str {
        "slow"
    }

    fn embed(&mut self, batch: &Encoded) -> anyhow::Result<Vec<Vec<f32>>> {
        std::thread::sleep(Duration::from_millis(30));
        Ok(vec![vec![1.0; 384]; batch.rows])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_main_lane_task_is_batched_before_the_bulk_tasks_waiting_ahead_of_it() {
    let settings =
        BatchSettings { max_batch_texts: 2, max_batch_tokens: 4096, max_batch_delay: Duration::ZERO };
    let batcher = Batcher::spawn(Box::new(Slow), tokenizer(&files()), settings, "all-minilm-l6-v2");
    let finished = Arc::new(AtomicUsize::new(0));
    let send = |lane| {
        let (batcher, finished) = (batcher.clone(), finished.clone());
        tokio::spawn(async move {
            batcher.embed(vec!["a text".into()], lane, None).await.unwrap();
            finished.fetch_add(1, Ordering::SeqCst)
        })
    };
    let bulk: Vec<_> = (0..20).map(|_| send(Lane::Bulk)).collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let main = send(Lane::Main).await.unwrap();
    // At most the running batch and the next one were formed before it arrived.
    assert!(main < 4, "the main-lane task finished {}th of 21", main + 1);
    for handle in bulk {
        handle.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_past_its_deadline_is_dropped_unrun_and_no_pass_waits_on_it() {
    let settings =
        BatchSettings { max_batch_texts: 1, max_batch_tokens: 4096, max_batch_delay: Duration::ZERO };
    let passes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let batcher = Batcher::spawn(
        Box::new(Counting { passes: passes.clone() }),
        tokenizer(&files()),
        settings,
        "all-minilm-l6-v2",
    );
    let slow = Batcher::spawn(Box::new(Slow), tokenizer(&files()), settings, "all-minilm-l6-v2");
    // Behind a 30 ms pass, a task whose deadline is 5 ms away expires unrun.
    let ahead = {
        let slow = slow.clone();
        tokio::spawn(async move { slow.embed(vec!["first".into()], Lane::Main, None).await })
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    let soon = Some(std::time::Instant::now() + Duration::from_millis(5));
    let late = slow.embed(vec!["too late".into()], Lane::Main, soon).await;
    assert_eq!(late, Err(BatchError::Expired));
    assert!(ahead.await.unwrap().is_ok());
    // Already past: nothing runs at all.
    let past = Some(std::time::Instant::now());
    assert_eq!(batcher.embed(vec!["x".into(), "y".into()], Lane::Main, past).await, Err(BatchError::Expired));
    assert!(passes.lock().unwrap().is_empty(), "an expired task's texts never reach the engine");
    assert!(batcher.embed(vec!["z".into()], Lane::Main, None).await.is_ok(), "still serving");
}

#[test]
fn a_gpu_that_cannot_be_had_is_refused_when_the_model_loads() {
    use inferpush_worker::model::EmbeddingSettings;
    use inferpush_worker::model::device::{DeviceChoice, Precision};
    use inferpush_worker::model::embedding::{EmbeddingModel, EngineChoice};
    let repository = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    let models =
        inferpush_repository::Repository::load(&repository, inferpush_repository::FileCheck::None).unwrap();
    let model = models.get("all-minilm-l6-v2").unwrap();
    let settings = |engine| EmbeddingSettings {
        repository: repository.clone(),
        engine,
        threads: 1,
        device: DeviceChoice::Cuda(0),
        precision: Precision::F32,
        batch: BatchSettings { max_batch_texts: 1, max_batch_tokens: 4096, max_batch_delay: Duration::ZERO },
    };
    let error =
        EmbeddingModel::load(model, &settings(EngineChoice::Ort)).err().expect("ort on a GPU").to_string();
    assert!(error.contains("runs on the CPU only"), "{error}");
    if cfg!(not(feature = "cuda")) {
        let error =
            EmbeddingModel::load(model, &settings(EngineChoice::Auto)).err().expect("no cuda").to_string();
        assert!(error.contains("make build-gpu"), "{error}");
    }
}
