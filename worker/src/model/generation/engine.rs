//! Continuous batching: one thread owns the network and every sequence in flight, and
//! runs one step for all of them at a time. A new sequence joins between steps (its prompt
//! runs first, alone), a finished or cancelled one leaves at once, and at most
//! `max_sequences` are in flight; the rest wait in the channel.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use candle_core::{IndexOp, Tensor};
use candle_transformers::generation::LogitsProcessor;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::llama::{Cache, Llama};
use super::text::{Grew, TextStream};
use inferpush_gguf::GgufTokenizer;

/// How one sequence samples and when it ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// 0: always the likeliest token (greedy).
    pub temperature: f64,
    /// Nucleus sampling's mass, when set.
    pub top_p: Option<f64>,
    /// The random generator's seed: the same seed and input give the same text.
    pub seed: u64,
    /// It ends before the first of these.
    pub stop: Vec<String>,
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// End of sequence, or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// Cancelled while it ran.
    Cancelled,
}

impl Finish {
    /// As OpenAI's `finish_reason` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
            Finish::Cancelled => "cancelled",
        }
    }
}

/// A finished sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// Why it ended.
    pub finish: Finish,
    /// Tokens of its prompt.
    pub prompt_tokens: usize,
    /// Tokens it generated.
    pub completion_tokens: usize,
    /// From joining the engine to its first token.
    pub time_to_first_token: Duration,
    /// Generated tokens per second after the first.
    pub tokens_per_second: f64,
}

/// What a sequence reports as it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// New final text (empty while held back) and the tokens generated so far.
    Text { delta: String, tokens: usize },
    /// The end (after its last text).
    Done(Finished),
    /// The model failed on it.
    Failed(String),
}

/// A sequence to run.
pub struct Job {
    /// Its prompt's tokens.
    pub prompt: Vec<u32>,
    /// How to sample.
    pub sampling: Sampling,
    /// Where its updates go.
    pub updates: UnboundedSender<Update>,
    /// Fires to stop it (within one step).
    pub cancel: CancellationToken,
}

/// The handle tasks send their sequences through; the engine's thread ends when the last
/// handle is dropped.
#[derive(Clone)]
pub struct Engine {
    jobs: SyncSender<Job>,
}

/// Sequences that may wait for a place, beyond those in flight.
const WAITING: usize = 1024;

/// Prompt tokens that join in one pass, about: more wait for the next step, so the
/// sequences in flight are not held up by a crowd of long prompts.
const JOIN_TOKENS: usize = 512;

impl Engine {
    /// Starts the engine's thread over `llama` and `tokenizer`.
    pub fn start(llama: Llama, tokenizer: Arc<GgufTokenizer>, max_sequences: usize) -> Self {
        let (jobs, receiver) = std::sync::mpsc::sync_channel(WAITING);
        // The engine's own pool, with the loop on one of its threads: the network's parallel
        // parts (each product, attention) then split among threads that are already awake,
        // instead of waking a pool from outside for each of the ~150 parts of a step.
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("generation-{i}"))
            .build()
            .expect("starting the generation threads");
        std::thread::Builder::new()
            .name("generation".into())
            .spawn(move || {
                pool.install(|| {
                    Batcher { llama, tokenizer, max_sequences: max_sequences.max(1), live: Vec::new() }
                        .run(receiver)
                })
            })
            .expect("starting the generation thread");
        Self { jobs }
    }

    /// Queues `job`; `Err` gives it back when the engine is gone or full.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
        })
    }
}

struct Live {
    job: Job,
    cache: Cache,
    sampler: LogitsProcessor,
    text: TextStream,
    next: u32,
    joined: Instant,
    first_token: Option<Instant>,
}

struct Batcher {
    llama: Llama,
    tokenizer: Arc<GgufTokenizer>,
    max_sequences: usize,
    live: Vec<Live>,
}

impl Batcher {
    fn run(mut self, jobs: Receiver<Job>) {
        loop {
            // Wait for work when idle; otherwise take what is waiting, up to the limit and
            // about one pass's worth of prompt tokens.
            let mut joining = Vec::new();
            let mut prompt_tokens = 0;
            while self.live.len() + joining.len() < self.max_sequences && prompt_tokens < JOIN_TOKENS {
                let job = if self.live.is_empty() && joining.is_empty() {
                    match jobs.recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    }
                } else {
                    match jobs.try_recv() {
                        Ok(job) => job,
                        Err(_) => break,
                    }
                };
                if let Some(job) = self.admitted(job) {
                    prompt_tokens += job.prompt.len();
                    joining.push(job);
                }
            }
            let tokenizer = &self.tokenizer;
            self.live.retain_mut(|live| {
                if live.job.cancel.is_cancelled() {
                    let rest = live.text.rest(tokenizer).unwrap_or_default();
                    end(live, Finish::Cancelled, rest);
                    return false;
                }
                true
            });
            if !self.live.is_empty() || !joining.is_empty() {
                self.step(joining);
            }
        }
    }

    /// `job`, unless it was cancelled while it waited or its prompt has no room in the
    /// context (each reported at once, alone).
    fn admitted(&self, job: Job) -> Option<Job> {
        if job.cancel.is_cancelled() {
            let _ = job.updates.send(Update::Done(Finished {
                finish: Finish::Cancelled,
                prompt_tokens: job.prompt.len(),
                completion_tokens: 0,
                time_to_first_token: Duration::ZERO,
                tokens_per_second: 0.,
            }));
            return None;
        }
        let room = self.llama.shape().context;
        if job.prompt.is_empty() || job.prompt.len() > room {
            let reason = format!("running the prompt: {} tokens for a context of {room}", job.prompt.len());
            let _ = job.updates.send(Update::Failed(reason));
            return None;
        }
        Some(job)
    }

    /// One pass: the next token of every live sequence and the whole prompt of each one
    /// `joining`, whose first tokens are sampled from it.
    fn step(&mut self, joining: Vec<Job>) {
        let joined = Instant::now();
        let mut caches: Vec<Cache> = joining.iter().map(|_| self.llama.cache()).collect();
        let logits = {
            let nexts: Vec<[u32; 1]> = self.live.iter().map(|live| [live.next]).collect();
            let mut batch: Vec<(&[u32], &mut Cache)> = self
                .live
                .iter_mut()
                .zip(&nexts)
                .map(|(live, next)| (next.as_slice(), &mut live.cache))
                .chain(
                    joining.iter().zip(caches.iter_mut()).map(|(job, cache)| (job.prompt.as_slice(), cache)),
                )
                .collect();
            self.llama.advance(&mut batch)
        };
        let logits = match logits {
            Ok(logits) => logits,
            Err(error) => {
                for live in self.live.drain(..) {
                    let _ = live.job.updates.send(Update::Failed(format!("decoding: {error}")));
                }
                for job in joining {
                    let _ = job.updates.send(Update::Failed(format!("running the prompt: {error}")));
                }
                return;
            }
        };
        for (job, cache) in joining.into_iter().zip(caches.drain(..)) {
            let sampling = &job.sampling;
            let temperature = (sampling.temperature > 0.).then_some(sampling.temperature);
            // The nucleus is masked in before each draw (`nucleus`): candle's own top-p sorts
            // the whole vocabulary.
            let sampler = LogitsProcessor::new(sampling.seed, temperature, None);
            let text = TextStream::new(sampling.stop.clone());
            self.live.push(Live { job, cache, sampler, text, next: 0, joined, first_token: None });
        }
        let mut ended = Vec::new();
        for index in 0..self.live.len() {
            let keep = match logits.i(index) {
                Ok(row) => self.sampled(index, &row),
                Err(error) => {
                    let _ = self.live[index].job.updates.send(Update::Failed(error.to_string()));
                    false
                }
            };
            if !keep {
                ended.push(index);
            }
        }
        for index in ended.into_iter().rev() {
            self.live.swap_remove(index);
        }
    }

    /// Samples the next token of sequence `index` from `logits` and reports it; false when
    /// the sequence has ended.
    fn sampled(&mut self, index: usize, logits: &Tensor) -> bool {
        let eos = self.tokenizer.eos;
        let live = &mut self.live[index];
        let sampling = &live.job.sampling;
        let drawn = match sampling.top_p.filter(|p| *p < 1. && sampling.temperature > 0.) {
            Some(top_p) => logits.to_vec1::<f32>().and_then(|mut row| {
                super::nucleus::mask(&mut row, sampling.temperature, top_p);
                live.sampler.sample(&Tensor::new(row, logits.device())?)
            }),
            None => live.sampler.sample(logits),
        };
        let token = match drawn {
            Ok(token) => token,
            Err(error) => {
                let _ = live.job.updates.send(Update::Failed(format!("sampling: {error}")));
                return false;
            }
        };
        live.first_token.get_or_insert_with(Instant::now);
        if token == eos {
            let rest = live.text.rest(&self.tokenizer).unwrap_or_default();
            end(live, Finish::Stop, rest);
            return false;
        }
        let grew = match live.text.push(&self.tokenizer, token) {
            Ok(grew) => grew,
            Err(error) => {
                let _ = live.job.updates.send(Update::Failed(error.to_string()));
                return false;
            }
        };
        match grew {
            Grew::Stopped(piece) => {
                end(live, Finish::Stop, piece);
                false
            }
            Grew::Text(piece) => {
                let generated = live.text.tokens().len();
                let full = live.cache.len() + 1 >= self.llama.shape().context;
                if generated >= live.job.sampling.max_tokens || full {
                    let rest = piece + &live.text.rest(&self.tokenizer).unwrap_or_default();
                    end(live, Finish::Length, rest);
                    return false;
                }
                let _ = live.job.updates.send(Update::Text { delta: piece, tokens: generated });
                live.next = token;
                true
            }
        }
    }
}

/// Reports the end of `live`, with its last text.
fn end(live: &Live, finish: Finish, last: String) {
    let tokens = live.text.tokens().len();
    let updates = &live.job.updates;
    if !last.is_empty() {
        let _ = updates.send(Update::Text { delta: last, tokens });
    }
    let first = live.first_token.unwrap_or(live.joined);
    let decoding = first.elapsed().as_secs_f64();
    let tokens_per_second = if tokens > 1 && decoding > 0. { (tokens - 1) as f64 / decoding } else { 0. };
    let _ = updates.send(Update::Done(Finished {
        finish,
        prompt_tokens: live.job.prompt.len(),
        completion_tokens: tokens,
        time_to_first_token: first.duration_since(live.joined),
        tokens_per_second,
    }));
}
