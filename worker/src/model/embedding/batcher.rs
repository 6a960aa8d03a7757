//! Dynamic batching on a dedicated thread that owns the engine. Each task's texts are
//! tokenised when it arrives; the thread keeps every waiting text in its lane's pool and
//! runs them in forward passes chosen by [`super::plan`]: the oldest text and those
//! nearest its length, within a token budget. A task's texts may run in several passes
//! (with other tasks' texts); it is answered once all of its rows are in, with exactly
//! its own rows. While the engine is busy the pool fills, so batches form under load
//! without a delay; at low load a task runs at once (`max_batch_delay` may add a wait).
//! Inference never runs on the tokio threads.
//!
//! Texts of the main lane are taken before those of the bulk lane (see
//! [`inferpush_protocol::topology`]): a task that came by the main queue never waits
//! behind the bulk tasks the worker holds, only behind the pass already running.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant, SystemTime};

use inferpush_protocol::Lane;
use inferpush_service::telemetry::KeyValue;
use tokio::sync::oneshot;

use super::engine::Engine;
use super::plan::{self, PassLimits};
use super::tokenize::{Encoded, TextTokenizer, Tokens};

/// How forward passes are formed.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// Most texts in one forward pass.
    pub max_batch_texts: usize,
    /// Most tokens in one forward pass, padding included (rows × the longest row).
    pub max_batch_tokens: usize,
    /// Longest wait for more texts once one is in hand, while the pass is not full.
    pub max_batch_delay: Duration,
}

impl BatchSettings {
    /// The worker's defaults, measured with `make bench-model` on 2 cores (see README).
    pub const DEFAULT: BatchSettings =
        BatchSettings { max_batch_texts: 32, max_batch_tokens: 256, max_batch_delay: Duration::ZERO };

    /// The size of one pass.
    pub fn limits(&self) -> PassLimits {
        PassLimits { max_texts: self.max_batch_texts.max(1), max_tokens: self.max_batch_tokens }
    }
}

/// One task's embeddings.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedded {
    /// One row per text, in order.
    pub rows: Vec<Vec<f32>>,
    /// Tokens the model read, `[CLS]` and `[SEP]` included, after truncation.
    pub tokens: usize,
}

/// Why a task got no embeddings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Its deadline passed before all its texts ran; the rest were dropped unrun.
    #[error("the task's deadline passed before it ran")]
    Expired,
    /// The engine failed on it (or the thread is gone).
    #[error("{0}")]
    Failed(String),
}

/// Texts longer than this (in bytes, all together) are tokenised off the async threads.
const TOKENIZE_INLINE_BYTES: usize = 16 * 1024;

type Reply = oneshot::Sender<Result<Vec<Vec<f32>>, BatchError>>;

struct Request {
    lane: Lane,
    deadline: Option<Instant>,
    texts: Vec<Tokens>,
    /// The task's span, for the trace's `batch` span.
    span: tracing::Span,
    reply: Reply,
}

/// A cloneable handle to the batching thread.
#[derive(Clone)]
pub struct Batcher {
    queue: Sender<Request>,
    tokenizer: Arc<TextTokenizer>,
    engine: &'static str,
    model: &'static str,
}

impl Batcher {
    /// Starts the thread that owns `engine`, running model `model` (its metrics' label).
    pub fn spawn(
        engine: Box<dyn Engine>,
        tokenizer: TextTokenizer,
        settings: BatchSettings,
        model: &str,
    ) -> Self {
        let (queue, requests) = mpsc::channel();
        let engine_name = engine.name();
        let model = inferpush_service::metrics::model_label(model);
        let name = format!("inferpush-{engine_name}");
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let waiting = Lane::ALL.map(|_| VecDeque::new());
                let pending = HashMap::new();
                BatchLoop { engine, model, settings, requests, waiting, pending, next_id: 0 }.run()
            })
            .expect("spawning the inference thread");
        Self { queue, tokenizer: Arc::new(tokenizer), engine: engine_name, model }
    }

    /// Embeds `texts` (one task that came by `lane`), batched with whatever else is
    /// waiting; what has not run by `deadline` is dropped and the task is
    /// [`BatchError::Expired`].
    pub async fn embed(
        &self,
        texts: Vec<String>,
        lane: Lane,
        deadline: Option<Instant>,
    ) -> Result<Embedded, BatchError> {
        let texts = self.tokenize(texts).await.map_err(BatchError::Failed)?;
        let tokens = texts.iter().map(Tokens::len).sum();
        let (reply, answer) = oneshot::channel();
        let stopped = || BatchError::Failed("the inference thread has stopped".to_owned());
        let request = Request { lane, deadline, texts, span: tracing::Span::current(), reply };
        self.queue.send(request).map_err(|_| stopped())?;
        let rows = answer.await.unwrap_or_else(|_| Err(stopped()))?;
        Ok(Embedded { rows, tokens })
    }

    async fn tokenize(&self, texts: Vec<String>) -> Result<Vec<Tokens>, String> {
        let bytes: usize = texts.iter().map(String::len).sum();
        let (tokenizer, engine, model) = (self.tokenizer.clone(), self.engine, self.model);
        let run = move || {
            let started = Instant::now();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let tokens = tokenizer.tokens(&refs).map_err(|e| format!("{e:#}"));
            crate::metrics::tokenization(model, engine, started.elapsed());
            tokens
        };
        if bytes <= TOKENIZE_INLINE_BYTES {
            run()
        } else {
            tokio::task::spawn_blocking(run).await.map_err(|_| "tokenising panicked".to_owned())?
        }
    }
}

/// A task being embedded: the rows it has so far.
struct Pending {
    deadline: Option<Instant>,
    rows: Vec<Option<Vec<f32>>>,
    missing: usize,
    passes: usize,
    first_pass: Option<SystemTime>,
    span: tracing::Span,
    reply: Reply,
}

/// One waiting text: which task, which of its texts.
struct Item {
    task: u64,
    index: usize,
    tokens: Tokens,
}

struct BatchLoop {
    engine: Box<dyn Engine>,
    model: &'static str,
    settings: BatchSettings,
    requests: Receiver<Request>,
    /// Texts received and not yet run, by lane in the order of [`Lane::ALL`], oldest first.
    waiting: [VecDeque<Item>; 2],
    pending: HashMap<u64, Pending>,
    next_id: u64,
}

impl BatchLoop {
    fn run(mut self) {
        while self.fill() {
            self.run_next_pass();
        }
    }

    /// Waits for a first text, then, with a delay set, for more until a pass is full or
    /// the delay is up. False once no task can come any more.
    fn fill(&mut self) -> bool {
        self.receive_waiting();
        while self.next_lane().is_none() {
            match self.requests.recv() {
                Ok(request) => self.hold(request),
                Err(_) => return false,
            }
            self.receive_waiting();
        }
        let deadline = Instant::now() + self.settings.max_batch_delay;
        while !self.pass_is_full() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.requests.recv_timeout(left) {
                Ok(request) if !left.is_zero() => self.hold(request),
                Ok(request) => {
                    self.hold(request);
                    break;
                }
                Err(_) => break,
            }
        }
        true
    }

    /// True when the first lane holds enough for a full pass.
    fn pass_is_full(&self) -> bool {
        let Some(lane) = self.next_lane() else { return false };
        let limits = self.settings.limits();
        let texts = &self.waiting[lane];
        texts.len() >= limits.max_texts
            || texts.iter().map(|t| t.tokens.len()).sum::<usize>() >= limits.max_tokens
    }

    /// Moves every task already sent into its lane's pool, without waiting.
    fn receive_waiting(&mut self) {
        while let Ok(request) = self.requests.try_recv() {
            self.hold(request);
        }
    }

    fn hold(&mut self, request: Request) {
        if request.texts.is_empty() {
            let _ = request.reply.send(Ok(Vec::new()));
            return;
        }
        let task = self.next_id;
        self.next_id += 1;
        let lane = Lane::ALL.iter().position(|l| *l == request.lane).unwrap_or(0);
        let count = request.texts.len();
        for (index, tokens) in request.texts.into_iter().enumerate() {
            self.waiting[lane].push_back(Item { task, index, tokens });
        }
        let pending = Pending {
            deadline: request.deadline,
            rows: vec![None; count],
            missing: count,
            passes: 0,
            first_pass: None,
            span: request.span,
            reply: request.reply,
        };
        self.pending.insert(task, pending);
    }

    /// The first lane with a text waiting.
    fn next_lane(&self) -> Option<usize> {
        self.waiting.iter().position(|lane| !lane.is_empty())
    }

    /// Takes the next pass out of the first lane's pool and runs it; a task whose
    /// deadline has passed is dropped first, so no pass runs, or waits on, its texts.
    fn run_next_pass(&mut self) {
        self.drop_expired();
        let Some(lane) = self.next_lane() else { return };
        let lengths: Vec<usize> = self.waiting[lane].iter().map(|t| t.tokens.len()).collect();
        let pass = plan::next_pass(&lengths, self.settings.limits());
        let mut pool: Vec<Item> = self.waiting[lane].drain(..).collect();
        let items = plan::take_positions(&mut pool, &pass);
        self.waiting[lane] = pool.into();
        self.execute(items);
    }

    /// Runs one pass and files its rows; answers each task whose rows are all in. When a
    /// pass of several tasks fails (a CUDA out-of-memory, a bad input), each task's texts
    /// of it run again apart, so only the task that cannot run fails; the thread keeps
    /// serving either way.
    fn execute(&mut self, items: Vec<Item>) {
        let now = SystemTime::now();
        let mut tasks: Vec<u64> = items.iter().map(|i| i.task).collect();
        tasks.sort_unstable();
        tasks.dedup();
        for task in &tasks {
            if let Some(pending) = self.pending.get_mut(task) {
                pending.first_pass.get_or_insert(now);
                pending.passes += 1;
            }
        }
        let batch = Encoded::pad(&items.iter().map(|i| &i.tokens).collect::<Vec<_>>());
        match self.forward(&batch) {
            Ok(rows) => {
                for (item, row) in items.into_iter().zip(rows) {
                    self.file(item.task, item.index, row);
                }
            }
            Err(error) if tasks.len() > 1 => {
                tracing::warn!(error, tasks = tasks.len(), "pass failed; running its tasks apart");
                let mut items = items;
                for task in tasks {
                    let (own, rest): (Vec<Item>, Vec<Item>) = items.into_iter().partition(|i| i.task == task);
                    items = rest;
                    self.execute(own);
                }
            }
            Err(error) => {
                tracing::error!(error, "task failed");
                self.fail(tasks[0], BatchError::Failed(error));
            }
        }
    }

    /// Files one row; answers its task when it was the last missing.
    fn file(&mut self, task: u64, index: usize, row: Vec<f32>) {
        let Some(pending) = self.pending.get_mut(&task) else { return };
        pending.rows[index] = Some(row);
        pending.missing -= 1;
        if pending.missing > 0 {
            return;
        }
        let pending = self.pending.remove(&task).expect("present");
        let texts = pending.rows.len() as i64;
        let attributes =
            vec![KeyValue::new("batch.passes", pending.passes as i64), KeyValue::new("task.texts", texts)];
        let started = pending.first_pass.unwrap_or_else(SystemTime::now);
        inferpush_service::telemetry::record_span(
            &pending.span,
            "batch",
            started,
            SystemTime::now(),
            attributes,
        );
        let rows = pending.rows.into_iter().map(|row| row.expect("every row filed")).collect();
        let _ = pending.reply.send(Ok(rows));
    }

    fn drop_expired(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline.is_some_and(|deadline| deadline <= now))
            .map(|(task, _)| *task)
            .collect();
        for task in expired {
            tracing::info!("a task's deadline passed before it ran; dropping its texts");
            self.fail(task, BatchError::Expired);
        }
    }

    /// Fails a task and drops its texts still waiting.
    fn fail(&mut self, task: u64, error: BatchError) {
        for lane in &mut self.waiting {
            lane.retain(|item| item.task != task);
        }
        if let Some(pending) = self.pending.remove(&task) {
            let _ = pending.reply.send(Err(error));
        }
    }

    /// One forward pass: its rows, or why there are none.
    fn forward(&mut self, batch: &Encoded) -> Result<Vec<Vec<f32>>, String> {
        let (engine, model) = (&mut self.engine, self.model);
        // A panic in an engine must fail this pass, not kill the thread.
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let inferring = Instant::now();
            let rows = engine.embed(batch)?;
            crate::metrics::batch(model, engine.name(), batch, inferring.elapsed());
            Ok::<_, anyhow::Error>(rows)
        }));
        match outcome {
            Ok(Ok(rows)) if rows.len() == batch.rows => Ok(rows),
            Ok(Ok(rows)) => Err(format!("the engine returned {} rows for {} texts", rows.len(), batch.rows)),
            Ok(Err(error)) => Err(format!("{error:#}")),
            Err(_) => Err("the engine panicked on this batch".to_owned()),
        }
    }
}
