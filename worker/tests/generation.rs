//! SmolLM2-135M-Instruct as the worker runs it, against llama.cpp (through
//! llama-cpp-python built from source; `make reference-llama` writes the fixture): greedy
//! decoding of 10 chat prompts, teacher-forced agreement of the top token, the largest
//! logit differences; then the engine's own rules (continuous batching changes no token,
//! seeds repeat, stop strings, `max_tokens`, cancellation).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file::Content;
use candle_core::{Device, IndexOp};
use inferpush_gguf::ModelText;
use inferpush_worker::model::generation::engine::{Engine, Finish, Finished, Job, Sampling, Update};
use inferpush_worker::model::generation::llama::Llama;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Deserialize)]
struct Fixture {
    llama_cpp_python: String,
    /// The build's CPU features (its sums and exponential follow them).
    #[serde(default)]
    system_info: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    prompt: String,
    prompt_ids: Vec<u32>,
    continuation: Vec<u32>,
    top_logits: Vec<Vec<(u32, f32)>>,
}

fn gguf() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn load() -> (Llama, ModelText) {
    let path = gguf();
    let mut file = std::fs::File::open(&path)
        .unwrap_or_else(|e| panic!("{} (make test fetches it): {e}", path.display()));
    let content = Content::read(&mut file).unwrap();
    let text = ModelText::of(&content).unwrap();
    (Llama::load(&content, &mut file, &Device::Cpu).unwrap(), text)
}

/// One network for the tests of this file (loading takes a moment; the network is
/// immutable, every sequence has its own cache).
fn model() -> &'static (Llama, ModelText) {
    static MODEL: OnceLock<(Llama, ModelText)> = OnceLock::new();
    MODEL.get_or_init(load)
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("fixtures/smollm2-greedy.json")).unwrap()
}

const COMPARED: usize = 32;

// Issue 29's bars. The engine computes what llama.cpp's CPU backend built for AVX-512 (as
// `make reference-llama` builds it here) computes, bit for bit: 10 of 10 and 100 % against a
// fixture from such a build. Against one from a build for another CPU (AVX2's exponential and
// sums: the fixture of an earlier machine) it is 5 of 10 and 96.75 %, about as far as those
// two builds of llama.cpp are from each other (4 of 10 equal): regenerate the fixture with
// the CPU features it records in `system_info`.
const EQUAL_PROMPTS_AT_LEAST: usize = 8;
const TOP1_AGREEMENT_AT_LEAST: f64 = 0.98;

#[test]
fn greedy_decoding_follows_llama_cpp() {
    let (llama, text) = model();
    let fixture = fixture();
    assert_eq!(fixture.cases.len(), 10);
    let mut equal = 0;
    for (i, case) in fixture.cases.iter().enumerate() {
        assert_eq!(
            text.tokenizer.encode(&case.prompt).unwrap(),
            case.prompt_ids,
            "case {i}: the prompt's tokens"
        );
        let mut cache = llama.cache();
        let mut logits = llama.advance(&mut [(&case.prompt_ids[..], &mut cache)]).unwrap().i(0).unwrap();
        let mut ours = Vec::new();
        let want = &case.continuation[..COMPARED.min(case.continuation.len())];
        while ours.len() < want.len() {
            let token = Llama::argmax(&logits.unsqueeze(0).unwrap()).unwrap()[0];
            ours.push(token);
            logits = llama.advance(&mut [(&[token][..], &mut cache)]).unwrap().i(0).unwrap();
        }
        let same = ours == want;
        equal += usize::from(same);
        println!(
            "case {i}: {} — ours {:?} / llama.cpp {:?}",
            if same { "equal" } else { "differs" },
            text.tokenizer.decode(&ours).unwrap(),
            text.tokenizer.decode(want).unwrap()
        );
    }
    println!(
        "{equal} of 10 prompts: the first {COMPARED} greedy tokens equal llama.cpp's ({}; {})",
        fixture.llama_cpp_python, fixture.system_info
    );
    assert!(equal >= EQUAL_PROMPTS_AT_LEAST, "only {equal} of 10 prompts decode as llama.cpp does");
}

#[test]
fn teacher_forced_the_top_token_agrees_with_llama_cpp() {
    let (llama, _) = model();
    let fixture = fixture();
    let (mut positions, mut agree, mut largest) = (0, 0, Vec::new());
    for (i, case) in fixture.cases.iter().enumerate() {
        // Fed as llama.cpp was: the prompt in one pass, then llama.cpp's continuation one
        // token a step, the logits after each.
        let mut cache = llama.cache();
        let mut logits = llama.advance(&mut [(&case.prompt_ids[..], &mut cache)]).unwrap().i(0).unwrap();
        for (step, top) in case.top_logits.iter().enumerate() {
            let row = logits.to_vec1::<f32>().unwrap();
            let ours =
                row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(id, _)| id as u32).unwrap();
            positions += 1;
            agree += usize::from(ours == top[0].0);
            let worst = top.iter().map(|(id, value)| (row[*id as usize] - value).abs()).fold(0f32, f32::max);
            largest.push((worst, i, step));
            if let Some(&token) = case.continuation.get(step).filter(|_| step + 1 < case.top_logits.len()) {
                logits = llama.advance(&mut [(&[token][..], &mut cache)]).unwrap().i(0).unwrap();
            }
        }
    }
    largest.sort_by(|a, b| b.0.total_cmp(&a.0));
    let share = agree as f64 / positions as f64;
    println!("top-1 agrees at {agree} of {positions} positions ({:.2} %)", share * 100.);
    println!("largest logit differences over llama.cpp's top 8 (value, case, step): {:?}", &largest[..5]);
    assert!(share >= TOP1_AGREEMENT_AT_LEAST, "top-1 agrees at only {:.2} % of positions", share * 100.);
}

fn job(prompt: Vec<u32>, sampling: Sampling) -> (Job, mpsc::UnboundedReceiver<Update>, CancellationToken) {
    let (updates, received) = mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    (Job { prompt, sampling, updates, cancel: cancel.clone() }, received, cancel)
}

fn greedy(max_tokens: usize) -> Sampling {
    Sampling { max_tokens, temperature: 0., top_p: None, seed: 0, stop: Vec::new() }
}

async fn collect(mut received: mpsc::UnboundedReceiver<Update>) -> (String, Finished) {
    let mut text = String::new();
    let mut last_tokens = 0;
    while let Some(update) = received.recv().await {
        match update {
            Update::Text { delta, tokens } => {
                assert!(tokens >= last_tokens, "token counts only grow");
                last_tokens = tokens;
                text.push_str(&delta);
            }
            Update::Done(finished) => return (text, finished),
            Update::Failed(reason) => panic!("{reason}"),
        }
    }
    panic!("no end");
}

fn engine(max_sequences: usize) -> (Engine, Arc<ModelText>) {
    let (llama, text) = load();
    let text = Arc::new(text);
    (Engine::start(llama, Arc::new(text.tokenizer.clone()), max_sequences), text)
}

#[tokio::test]
async fn sequences_decoded_together_write_what_each_writes_alone() {
    let (engine, _) = engine(4);
    let fixture = fixture();
    let prompts: Vec<Vec<u32>> = fixture.cases.iter().take(4).map(|c| c.prompt_ids.clone()).collect();
    let mut alone = Vec::new();
    for prompt in &prompts {
        let (job, received, _) = job(prompt.clone(), greedy(24));
        engine.submit(job).ok().unwrap();
        alone.push(collect(received).await.0);
    }
    let mut together = Vec::new();
    for prompt in &prompts {
        let (job, received, _) = job(prompt.clone(), greedy(24));
        engine.submit(job).ok().unwrap();
        together.push(tokio::spawn(collect(received)));
    }
    for (i, handle) in together.into_iter().enumerate() {
        assert_eq!(handle.await.unwrap().0, alone[i], "prompt {i}");
    }
    // Joining one by one while the others decode: each prompt runs in the same pass as the
    // others' next tokens.
    let mut staggered = Vec::new();
    for prompt in &prompts {
        let (job, received, _) = job(prompt.clone(), greedy(24));
        engine.submit(job).ok().unwrap();
        staggered.push(tokio::spawn(collect(received)));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    for (i, handle) in staggered.into_iter().enumerate() {
        assert_eq!(handle.await.unwrap().0, alone[i], "prompt {i}, joined while others decoded");
    }
}

#[tokio::test]
async fn seeds_repeat_and_stops_and_limits_end_the_text() {
    let (engine, text) = engine(2);
    let prompt = text.tokenizer.encode(&fixture().cases[1].prompt).unwrap();
    let sampled =
        |seed| Sampling { max_tokens: 20, temperature: 0.9, top_p: Some(0.95), seed, stop: Vec::new() };
    let mut runs = Vec::new();
    for seed in [7, 7, 8] {
        let (job, received, _) = job(prompt.clone(), sampled(seed));
        engine.submit(job).ok().unwrap();
        runs.push(collect(received).await.0);
    }
    assert_eq!(runs[0], runs[1], "the same seed and input give the same text");
    assert_ne!(runs[0], runs[2], "another seed, another text");

    let (job1, received, _) = job(prompt.clone(), greedy(7));
    engine.submit(job1).ok().unwrap();
    let (limited, finished) = collect(received).await;
    assert_eq!((finished.finish, finished.completion_tokens), (Finish::Length, 7), "{limited:?}");
    assert_eq!(finished.prompt_tokens, prompt.len());

    // A stop string cut out of the greedy text: the text ends just before it.
    let (job2, received, _) = job(prompt.clone(), greedy(40));
    engine.submit(job2).ok().unwrap();
    let (full, _) = collect(received).await;
    let words: Vec<&str> = full.split(' ').collect();
    assert!(words.len() > 4, "{full:?}");
    let stop = format!(" {}", words[3]);
    let before = &full[..full.find(&stop).unwrap()];
    let (job3, received, _) = job(prompt.clone(), Sampling { stop: vec![stop.clone()], ..greedy(40) });
    engine.submit(job3).ok().unwrap();
    let (stopped, finished) = collect(received).await;
    assert_eq!((stopped.as_str(), finished.finish), (before, Finish::Stop), "stop {stop:?} in {full:?}");
}

#[tokio::test]
async fn a_cancelled_sequence_stops_within_a_step_and_keeps_its_text() {
    let (engine, text) = engine(2);
    let prompt = text.tokenizer.encode(&fixture().cases[7].prompt).unwrap();
    let (job, mut received, cancel) = job(prompt, greedy(400));
    engine.submit(job).ok().unwrap();
    let mut text = String::new();
    let mut tokens = 0;
    while tokens < 10 {
        if let Some(Update::Text { delta, tokens: n }) = received.recv().await {
            text.push_str(&delta);
            tokens = n;
        }
    }
    let asked = Instant::now();
    cancel.cancel();
    let (rest, finished) = collect(received).await;
    let took = asked.elapsed();
    text.push_str(&rest);
    println!("stopped {took:?} after the request, at {} tokens", finished.completion_tokens);
    assert_eq!(finished.finish, Finish::Cancelled);
    assert!(
        finished.completion_tokens <= tokens + 2,
        "{} tokens after asking at {tokens}",
        finished.completion_tokens
    );
    assert!(took < Duration::from_millis(500), "{took:?}");
    assert!(!text.is_empty());
}

#[tokio::test]
async fn a_prompt_past_the_context_fails_alone_and_the_others_run_on() {
    let (engine, text) = engine(4);
    let context = model().0.shape().context;
    let fits = text.tokenizer.encode(&fixture().cases[5].prompt).unwrap();
    let (first, first_received, _) = job(fits.clone(), greedy(8));
    let (long, mut long_received, _) = job(vec![1; context + 1], greedy(8));
    let (last, last_received, _) = job(fits, greedy(8));
    for job in [first, long, last] {
        engine.submit(job).ok().unwrap();
    }
    match long_received.recv().await {
        Some(Update::Failed(reason)) => {
            assert!(
                reason.contains(&format!("{} tokens for a context of {context}", context + 1)),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    let (a, b) = (collect(first_received).await, collect(last_received).await);
    assert_eq!(a.0, b.0);
    assert_eq!(a.1.completion_tokens, 8);
}
