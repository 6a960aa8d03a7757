//! Dynamic batching as Triton does it, on a dedicated thread that owns the engine:
//! gather up to `max_batch_size` tasks (each with its own texts), waiting at most
//! `max_batch_delay` for more, run them as one forward pass, answer each task with
//! exactly its own rows. Inference never runs on the tokio threads.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::engine::Engine;
use super::tokenize::TextTokenizer;

/// How batches are formed.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// Most tasks in one forward pass.
    pub max_batch_size: usize,
    /// Longest wait for more tasks once one is in hand.
    pub max_batch_delay: Duration,
    /// Most texts in one forward pass (a task is never split).
    pub max_batch_texts: usize,
}

struct Request {
    texts: Vec<String>,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>, String>>,
}

/// A cloneable handle to the batching thread.
#[derive(Clone)]
pub struct Batcher {
    queue: Sender<Request>,
}

impl Batcher {
    /// Starts the thread that owns `engine` and `tokenizer`.
    pub fn spawn(engine: Box<dyn Engine>, tokenizer: TextTokenizer, settings: BatchSettings) -> Self {
        let (queue, requests) = mpsc::channel();
        let name = format!("inferpush-{}", engine.name());
        std::thread::Builder::new()
            .name(name)
            .spawn(move || BatchLoop { engine, tokenizer, settings, requests, carry: None }.run())
            .expect("spawning the inference thread");
        Self { queue }
    }

    /// Embeds `texts` (one task), batched with whatever else is waiting.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, String> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Request { texts, reply })
            .map_err(|_| "the inference thread has stopped".to_owned())?;
        answer.await.unwrap_or_else(|_| Err("the inference thread dropped the task".to_owned()))
    }
}

struct BatchLoop {
    engine: Box<dyn Engine>,
    tokenizer: TextTokenizer,
    settings: BatchSettings,
    requests: Receiver<Request>,
    /// A task that did not fit the last batch; it opens the next one.
    carry: Option<Request>,
}

impl BatchLoop {
    fn run(mut self) {
        while let Some(batch) = self.gather() {
            self.execute(batch);
        }
    }

    /// Waits for a first task, then takes more until the batch is full or the delay is up.
    fn gather(&mut self) -> Option<Vec<Request>> {
        let first = match self.carry.take() {
            Some(request) => request,
            None => self.requests.recv().ok()?,
        };
        let mut texts = first.texts.len();
        let mut batch = vec![first];
        let deadline = Instant::now() + self.settings.max_batch_delay;
        while batch.len() < self.settings.max_batch_size {
            // What is already waiting joins at once; then wait out the delay for more.
            let next = match self.requests.try_recv() {
                Ok(request) => request,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match self.requests.recv_timeout(left) {
                        Ok(request) => request,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            if texts + next.texts.len() > self.settings.max_batch_texts {
                self.carry = Some(next);
                break;
            }
            texts += next.texts.len();
            batch.push(next);
        }
        Some(batch)
    }

    /// Runs one batch and answers its tasks. When a batch of several tasks fails (a CUDA
    /// out-of-memory, a bad input), each task is run again alone, so only the task that
    /// cannot run fails; the thread keeps serving either way.
    fn execute(&mut self, batch: Vec<Request>) {
        let started = Instant::now();
        let rows = {
            let texts: Vec<&str> = batch.iter().flat_map(|r| r.texts.iter().map(String::as_str)).collect();
            self.forward(&texts)
        };
        tracing::debug!(tasks = batch.len(), ms = started.elapsed().as_millis() as u64, "batch");
        match rows {
            Ok(rows) => {
                let mut rows = rows.into_iter();
                for request in batch {
                    let own: Vec<Vec<f32>> = rows.by_ref().take(request.texts.len()).collect();
                    let _ = request.reply.send(Ok(own));
                }
            }
            Err(error) if batch.len() > 1 => {
                tracing::warn!(error, tasks = batch.len(), "batch failed; running its tasks one at a time");
                for request in batch {
                    self.execute(vec![request]);
                }
            }
            Err(error) => {
                tracing::error!(error, "task failed");
                for request in batch {
                    let _ = request.reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// One forward pass over `texts`: their rows, or why there are none.
    fn forward(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        let (tokenizer, engine) = (&self.tokenizer, &mut self.engine);
        // A panic in an engine must fail this batch, not kill the thread.
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let encoded = tokenizer.encode(texts)?;
            engine.embed(&encoded)
        }));
        match outcome {
            Ok(Ok(rows)) if rows.len() == texts.len() => Ok(rows),
            Ok(Ok(rows)) => Err(format!("the engine returned {} rows for {} texts", rows.len(), texts.len())),
            Ok(Err(error)) => Err(format!("{error:#}")),
            Err(_) => Err("the engine panicked on this batch".to_owned()),
        }
    }
}
