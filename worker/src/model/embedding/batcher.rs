//! Dynamic batching as Triton does it, on a dedicated thread that owns the engine:
//! gather up to `max_batch_size` tasks (each with its own texts), waiting at most
//! `max_batch_delay` for more, run them as one forward pass, answer each task with
//! exactly its own rows. Inference never runs on the tokio threads.
//!
//! Tasks of the main lane are taken before those of the bulk lane (see
//! [`inferpush_protocol::topology`]): a task that came by the main queue never waits
//! behind the bulk tasks the worker holds, only behind the batch already running.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use inferpush_protocol::Lane;
use inferpush_protocol::catalogue::minilm;
use inferpush_service::telemetry::KeyValue;
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
    lane: Lane,
    texts: Vec<String>,
    /// The task's span, for the trace's `batch` span.
    span: tracing::Span,
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
            .spawn(move || {
                let waiting = Lane::ALL.map(|_| VecDeque::new());
                BatchLoop { engine, tokenizer, settings, requests, waiting }.run()
            })
            .expect("spawning the inference thread");
        Self { queue }
    }

    /// Embeds `texts` (one task that came by `lane`), batched with whatever else is waiting.
    pub async fn embed(&self, texts: Vec<String>, lane: Lane) -> Result<Vec<Vec<f32>>, String> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Request { lane, texts, span: tracing::Span::current(), reply })
            .map_err(|_| "the inference thread has stopped".to_owned())?;
        answer.await.unwrap_or_else(|_| Err("the inference thread dropped the task".to_owned()))
    }
}

struct BatchLoop {
    engine: Box<dyn Engine>,
    tokenizer: TextTokenizer,
    settings: BatchSettings,
    requests: Receiver<Request>,
    /// Tasks received and not yet batched, by lane, in the order of [`Lane::ALL`].
    waiting: [VecDeque<Request>; 2],
}

impl BatchLoop {
    fn run(mut self) {
        while let Some(batch) = self.gather() {
            self.execute(batch);
        }
    }

    /// Waits for a first task, then takes more until the batch is full or the delay is
    /// up; the main lane's tasks first. `None` once no task can come any more.
    fn gather(&mut self) -> Option<Vec<Request>> {
        self.receive_waiting();
        if self.next_lane().is_none() {
            let request = self.requests.recv().ok()?;
            self.hold(request);
            self.receive_waiting();
        }
        let first = self.take_next().expect("a task is waiting");
        let mut texts = first.texts.len();
        let mut batch = vec![first];
        let deadline = Instant::now() + self.settings.max_batch_delay;
        while batch.len() < self.settings.max_batch_size {
            if self.next_lane().is_none() {
                // Nothing waiting: wait out the delay for more.
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match self.requests.recv_timeout(left) {
                    Ok(request) => self.hold(request),
                    Err(_) => break,
                }
                self.receive_waiting();
            }
            let lane = self.next_lane().expect("a task is waiting");
            // A task is never split: one that does not fit opens the next batch.
            if texts + self.waiting[lane].front().map_or(0, |r| r.texts.len()) > self.settings.max_batch_texts
            {
                break;
            }
            let next = self.take_next().expect("a task is waiting");
            texts += next.texts.len();
            batch.push(next);
        }
        Some(batch)
    }

    /// Moves every task already sent into its lane's queue, without waiting.
    fn receive_waiting(&mut self) {
        while let Ok(request) = self.requests.try_recv() {
            self.hold(request);
        }
    }

    fn hold(&mut self, request: Request) {
        let lane = Lane::ALL.iter().position(|l| *l == request.lane).unwrap_or(0);
        self.waiting[lane].push_back(request);
    }

    /// The first lane with a task waiting.
    fn next_lane(&self) -> Option<usize> {
        self.waiting.iter().position(|lane| !lane.is_empty())
    }

    fn take_next(&mut self) -> Option<Request> {
        let lane = self.next_lane()?;
        self.waiting[lane].pop_front()
    }

    /// Runs one batch and answers its tasks. When a batch of several tasks fails (a CUDA
    /// out-of-memory, a bad input), each task is run again alone, so only the task that
    /// cannot run fails; the thread keeps serving either way.
    fn execute(&mut self, batch: Vec<Request>) {
        let started = Instant::now();
        let start_time = std::time::SystemTime::now();
        let rows = {
            let texts: Vec<&str> = batch.iter().flat_map(|r| r.texts.iter().map(String::as_str)).collect();
            self.forward(&texts, batch.len())
        };
        tracing::debug!(tasks = batch.len(), ms = started.elapsed().as_millis() as u64, "batch");
        let end_time = std::time::SystemTime::now();
        let texts = batch.iter().map(|r| r.texts.len()).sum::<usize>() as i64;
        for request in &batch {
            let attributes =
                vec![KeyValue::new("batch.tasks", batch.len() as i64), KeyValue::new("batch.texts", texts)];
            inferpush_service::telemetry::record_span(
                &request.span,
                "batch",
                start_time,
                end_time,
                attributes,
            );
        }
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

    /// One forward pass over `texts` (of `tasks` tasks): their rows, or why there are none.
    fn forward(&mut self, texts: &[&str], tasks: usize) -> Result<Vec<Vec<f32>>, String> {
        let (tokenizer, engine) = (&self.tokenizer, &mut self.engine);
        // A panic in an engine must fail this batch, not kill the thread.
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let tokenizing = Instant::now();
            let encoded = tokenizer.encode(texts)?;
            let tokenized = tokenizing.elapsed();
            let inferring = Instant::now();
            let rows = engine.embed(&encoded)?;
            let tokens = encoded.attention_mask.iter().filter(|mask| **mask == 1).count();
            crate::metrics::batch(minilm::NAME, engine.name(), tasks, tokens, tokenized, inferring.elapsed());
            Ok::<_, anyhow::Error>(rows)
        }));
        match outcome {
            Ok(Ok(rows)) if rows.len() == texts.len() => Ok(rows),
            Ok(Ok(rows)) => Err(format!("the engine returned {} rows for {} texts", rows.len(), texts.len())),
            Ok(Err(error)) => Err(format!("{error:#}")),
            Err(_) => Err("the engine panicked on this batch".to_owned()),
        }
    }
}
