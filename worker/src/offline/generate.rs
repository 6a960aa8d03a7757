//! `inferpush-worker generate`: a `text-generation` model on the configured device against
//! the CPU network, which computes llama.cpp's numbers (`worker/tests/generation.rs`), then
//! its decode speed. For each prompt the CPU network decodes greedily; the device's network
//! is fed the same tokens (teacher-forced) and its likeliest token compared at every
//! position, with the largest logit difference; then the device's greedy text is compared
//! whole. On a CPU the network under test is the one a GPU runs (candle's tensors), so the
//! comparison means something on any machine. Prints one JSON line per measurement.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use candle_core::quantized::gguf_file::Content;
use candle_core::{Device, Tensor};
use inferpush_gguf::ModelText;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::WorkerConfig;
use crate::model::generation::engine::{Engine, Job, Sampling, Update};
use crate::model::generation::llama::{Cache, Llama};

/// Arguments of `generate`.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// The `text-generation` model of the repository to run.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    pub model: String,
    /// A JSON file holding an array of user messages, each a chat of its own.
    #[arg(long)]
    pub prompts: PathBuf,
    /// Greedy tokens per prompt compared with the CPU network.
    #[arg(long, default_value_t = 32)]
    pub compare_tokens: usize,
    /// How many streams at once to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub streams: Vec<usize>,
    /// Tokens each stream decodes when measured.
    #[arg(long, default_value_t = 128)]
    pub measure_tokens: usize,
    /// Write each prompt's tokens (CPU, device) here, as JSON.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// Compares, then measures; see the module's documentation.
pub async fn run(config: &WorkerConfig, args: &GenerateArgs) -> anyhow::Result<()> {
    let model = super::model(config, &args.model)?;
    let card = &model.card;
    let section = card
        .text_generation
        .as_ref()
        .with_context(|| format!("`{}` is not a text-generation model", card.name))?;
    let path = model.file(&section.gguf);
    let mut file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let content = Content::read(&mut file).with_context(|| format!("reading {}", path.display()))?;
    let text = Arc::new(ModelText::of(&content)?);
    let choice = match config.device {
        Some(device) => device,
        None => card.runtime.device.parse().map_err(|e| anyhow::anyhow!("runtime.device: {e}"))?,
    };
    let device = choice.open()?;
    let reference = Llama::load(&content, &mut file, &Device::Cpu)?;
    let tested = Llama::load_through_candle(&content, &mut file, &device)?;

    let messages: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(&args.prompts)
            .with_context(|| format!("reading {}", args.prompts.display()))?,
    )
    .context("--prompts must hold a JSON array of strings")?;
    anyhow::ensure!(!messages.is_empty(), "--prompts holds no prompts");
    let prompts = messages
        .iter()
        .map(|message| {
            text.tokenizer.encode(&text.chat_prompt(&[json!({"role": "user", "content": message})])?)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let mut agreement = Agreement::default();
    let mut written = Vec::new();
    for prompt in &prompts {
        let (expected, expected_logits) = greedy(&reference, prompt, args.compare_tokens)?;
        let forced = forced(&tested, prompt, &expected)?;
        agreement.add(&expected, &expected_logits, &forced)?;
        let (own, _) = greedy(&tested, prompt, args.compare_tokens)?;
        agreement.equal += usize::from(own == expected);
        written.push(json!({"cpu": expected, "device": own}));
    }
    if let Some(output) = &args.output {
        std::fs::write(output, serde_json::to_vec(&written)?)
            .with_context(|| format!("writing {}", output.display()))?;
    }
    println!(
        "{}",
        json!({
            "case": "agreement",
            "device": choice.to_string(),
            "prompts": prompts.len(),
            "greedy_equal": agreement.equal,
            "positions": agreement.positions,
            "top1_agree": agreement.agree,
            "top1_agreement": agreement.agree as f64 / agreement.positions.max(1) as f64,
            "max_logit_diff": agreement.max_diff,
        })
    );

    let most = args.streams.iter().copied().max().unwrap_or(1).max(1);
    let engine = Engine::start(tested, Arc::new(text.tokenizer.clone()), most);
    let story = |i: usize| {
        let message =
            json!({"role": "user", "content": format!("Write a long story about dragon number {i}.")});
        text.tokenizer.encode(&text.chat_prompt(&[message])?)
    };
    decode_together(&engine, &[story(0)?], 8).await?;
    for &streams in &args.streams {
        let prompts = (1..=streams).map(story).collect::<anyhow::Result<Vec<_>>>()?;
        let run = decode_together(&engine, &prompts, args.measure_tokens).await?;
        let (tokens, seconds) = run.together;
        let mut firsts = run.ttft.clone();
        firsts.sort();
        println!(
            "{}",
            json!({
                "case": "decode",
                "device": choice.to_string(),
                "streams": streams,
                "tokens": tokens,
                "tokens_per_second": tokens as f64 / seconds,
                "ttft_p50_ms": firsts[firsts.len() / 2].as_secs_f64() * 1000.,
            })
        );
    }
    Ok(())
}

/// How the device's network followed the CPU's.
#[derive(Default)]
struct Agreement {
    positions: usize,
    agree: usize,
    equal: usize,
    max_diff: f32,
}

impl Agreement {
    /// One prompt's teacher-forced logits against the CPU's, position by position.
    fn add(
        &mut self,
        expected: &[u32],
        expected_logits: &[Vec<f32>],
        forced: &[Vec<f32>],
    ) -> anyhow::Result<()> {
        for ((token, theirs), ours) in expected.iter().zip(expected_logits).zip(forced) {
            self.positions += 1;
            self.agree += usize::from(argmax(ours) == *token);
            let diff = theirs.iter().zip(ours).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            anyhow::ensure!(diff.is_finite(), "logits that are not finite");
            self.max_diff = self.max_diff.max(diff);
        }
        Ok(())
    }
}

/// `count` greedy tokens after `prompt` (the prompt in one pass, then a token a step), and
/// the logits each was chosen from.
fn greedy(llama: &Llama, prompt: &[u32], count: usize) -> anyhow::Result<(Vec<u32>, Vec<Vec<f32>>)> {
    let mut cache = llama.cache();
    let mut logits = row(llama.advance(&mut [(prompt, &mut cache)])?)?;
    let (mut tokens, mut all) = (Vec::new(), Vec::new());
    for _ in 0..count {
        let token = argmax(&logits);
        tokens.push(token);
        all.push(logits);
        logits = row(llama.advance(&mut [(&[token], &mut cache)])?)?;
    }
    Ok((tokens, all))
}

/// The logits before each of `tokens`, fed after `prompt` one a step.
fn forced(llama: &Llama, prompt: &[u32], tokens: &[u32]) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut cache: Cache = llama.cache();
    let mut logits = row(llama.advance(&mut [(prompt, &mut cache)])?)?;
    let mut all = Vec::new();
    for &token in tokens {
        all.push(logits);
        logits = row(llama.advance(&mut [(&[token], &mut cache)])?)?;
    }
    Ok(all)
}

fn row(logits: Tensor) -> anyhow::Result<Vec<f32>> {
    Ok(logits.squeeze(0)?.to_dtype(candle_core::DType::F32)?.to_vec1()?)
}

fn argmax(logits: &[f32]) -> u32 {
    logits
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best })
        .0 as u32
}

/// What one run of several sequences at once took.
pub struct DecodeRun {
    /// Tokens generated, all sequences.
    pub tokens: usize,
    /// From the first token of any to the last token of all.
    pub seconds: f64,
    /// Each one's time to first token.
    pub ttft: Vec<Duration>,
    /// Tokens generated once every sequence had its first, and the seconds from then to
    /// the last: the decode rate with all of them in flight.
    pub together: (usize, f64),
}

/// Runs `prompts` at once through `engine`, greedily, `max_tokens` each (fewer where one
/// ends first).
pub async fn decode_together(
    engine: &Engine,
    prompts: &[Vec<u32>],
    max_tokens: usize,
) -> anyhow::Result<DecodeRun> {
    let began = Instant::now();
    let mut handles = Vec::new();
    for prompt in prompts {
        let (updates, mut received) = mpsc::unbounded_channel();
        let sampling = Sampling { max_tokens, temperature: 0., top_p: None, seed: 0, stop: Vec::new() };
        let job = Job { prompt: prompt.clone(), sampling, updates, cancel: CancellationToken::new() };
        engine.submit(job).map_err(|_| anyhow::anyhow!("the engine took no more sequences"))?;
        handles.push(tokio::spawn(async move {
            // (when, tokens so far) at every update.
            let mut seen = Vec::new();
            while let Some(update) = received.recv().await {
                match update {
                    Update::Text { tokens, .. } => seen.push((Instant::now(), tokens)),
                    Update::Done(done) => {
                        seen.push((Instant::now(), done.completion_tokens));
                        return Ok(seen);
                    }
                    Update::Failed(reason) => anyhow::bail!("{reason}"),
                }
            }
            anyhow::bail!("the engine stopped before the end")
        }));
    }
    let mut runs = Vec::new();
    for handle in handles {
        runs.push(handle.await??);
    }
    let first = runs.iter().map(|seen| seen[0].0).min().context("no sequences")?;
    let last = runs.iter().filter_map(|seen| seen.last()).map(|s| s.0).max().context("no sequences")?;
    let all_started = runs.iter().map(|seen| seen[0].0).max().context("no sequences")?;
    let tokens = runs.iter().filter_map(|seen| seen.last()).map(|s| s.1).sum();
    let after = runs
        .iter()
        .filter_map(|seen| {
            let before = seen.iter().take_while(|(when, _)| *when <= all_started).last().map_or(0, |s| s.1);
            Some(seen.last()?.1 - before)
        })
        .sum();
    Ok(DecodeRun {
        tokens,
        seconds: (last - first).as_secs_f64(),
        ttft: runs.iter().map(|seen| seen[0].0 - began).collect(),
        together: (after, (last - all_started).as_secs_f64()),
    })
}
