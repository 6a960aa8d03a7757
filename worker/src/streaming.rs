//! A streaming model's run: its pieces of text coalesced into `inference.delta` events
//! (one at most every [`FLUSH_EVERY`] while text flows, none larger than
//! [`MAX_DELTA_BYTES`]), numbered from 1 within the attempt, sent down every sink's lane in
//! order, and the text so far recorded once per delta, not per token, for a client that
//! joins late. The same round trip tells whether the owner asked to stop; while no text
//! flows the request is polled at the same pace, so a stop lands within one decode step
//! plus [`FLUSH_EVERY`]. A worker whose grace period runs out stops its generations the
//! same way and hands their tasks back to the queue ([`Streamed::handed_back`]): they start
//! again elsewhere, as a new attempt.

use std::sync::Arc;
use std::time::Duration;

use inferpush_protocol::{DeltaEvent, TaskEnvelope, TaskProgress, TaskRecord};
use inferpush_store::ProgressStore;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::delivery::{DeltaLanes, StartedAnnouncements};
use crate::model::{Model, ModelError, Piece, Run, Stream};
use crate::processing::TaskContext;

/// Longest a piece of text waits before it is sent, while more comes.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// Largest delta: far below any push server's event limit, sealed or not.
pub const MAX_DELTA_BYTES: usize = 16 * 1024;

/// How a streamed run ended.
pub struct Streamed {
    /// The model's outcome.
    pub outcome: Result<Value, ModelError>,
    /// Its owner asked it to stop.
    pub stop_asked: bool,
    /// The worker's grace period ran out first: the task goes back to the queue unfinished.
    pub handed_back: bool,
    /// What a final event must wait for on each sink.
    pub before_final: StartedAnnouncements,
}

/// Runs `model` on `task` (running as `running`), streaming its text.
pub async fn run(
    model: Arc<dyn Model>,
    task: &TaskEnvelope,
    running: &TaskRecord,
    run: Run,
    started: StartedAnnouncements,
    context: &TaskContext,
) -> Streamed {
    let (lanes, before_final) = context.sinks.delta_lanes(running, started);
    let (pieces, received) = mpsc::unbounded_channel();
    // Stops the model: its owner's request, or the worker's abort.
    let cancel = context.abort.child_token();
    let owner_stop = CancellationToken::new();
    let attempt = running.started_at_ms.unwrap_or_default();
    let forwarding = Forwarder {
        running: running.clone(),
        attempt,
        lanes,
        progress: context.progress.clone(),
        cancel: cancel.clone(),
        owner_stop: owner_stop.clone(),
        seq: 0,
        text: String::new(),
        tokens: 0,
        pending_since_ms: 0,
    };
    let forwarder = tokio::spawn(forwarding.forward(received));
    let outcome = model.stream(&task.input, run, Stream { pieces, cancel: cancel.clone() }).await;
    // The model dropped its sender: the forwarder sends what is left and ends.
    let _ = forwarder.await;
    let stop_asked = owner_stop.is_cancelled();
    let cut_short = outcome.as_ref().is_ok_and(|output| output["finish_reason"] == "cancelled");
    let handed_back = context.abort.is_cancelled() && !stop_asked && cut_short;
    if handed_back {
        tracing::warn!(task_id = %task.task_id, "grace period over mid-generation: handing the task back");
    }
    Streamed { outcome, stop_asked, handed_back, before_final }
}

struct Forwarder {
    running: TaskRecord,
    attempt: u64,
    lanes: DeltaLanes,
    progress: Arc<dyn ProgressStore>,
    cancel: CancellationToken,
    owner_stop: CancellationToken,
    seq: u64,
    text: String,
    tokens: usize,
    /// When the oldest text waiting to be sent was generated (Unix ms).
    pending_since_ms: u64,
}

/// Now, in Unix milliseconds.
fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Forwarder {
    async fn forward(mut self, mut pieces: mpsc::UnboundedReceiver<Piece>) {
        let mut pending = String::new();
        // The first text goes out at once; after that at most one delta per FLUSH_EVERY.
        let mut next_flush = Instant::now();
        let mut next_check = Instant::now() + FLUSH_EVERY;
        loop {
            let wake = if pending.is_empty() { next_check } else { next_flush };
            tokio::select! {
                piece = pieces.recv() => match piece {
                    Some(piece) => {
                        if pending.is_empty() {
                            self.pending_since_ms = now_ms();
                        }
                        pending.push_str(&piece.delta);
                        self.tokens = piece.tokens;
                        if pending.len() >= MAX_DELTA_BYTES || Instant::now() >= next_flush {
                            self.flush(&mut pending).await;
                            next_flush = Instant::now() + FLUSH_EVERY;
                            next_check = next_flush;
                        }
                    }
                    None => {
                        self.flush(&mut pending).await;
                        return;
                    }
                },
                () = tokio::time::sleep_until(wake) => {
                    if pending.is_empty() {
                        self.check_stop().await;
                    } else {
                        self.flush(&mut pending).await;
                        next_flush = Instant::now() + FLUSH_EVERY;
                    }
                    next_check = Instant::now() + FLUSH_EVERY;
                }
            }
        }
    }

    /// Sends `pending` (in pieces of at most MAX_DELTA_BYTES) and records the text so far.
    async fn flush(&mut self, pending: &mut String) {
        if pending.is_empty() {
            return;
        }
        let text = std::mem::take(pending);
        let mut rest = text.as_str();
        while !rest.is_empty() {
            let mut cut = rest.len().min(MAX_DELTA_BYTES);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (delta, after) = rest.split_at(cut);
            self.seq += 1;
            self.text.push_str(delta);
            self.lanes.send(&DeltaEvent {
                task_id: self.running.task_id,
                attempt: self.attempt,
                seq: self.seq,
                delta: delta.to_owned(),
                tokens: self.tokens,
                generated_at_ms: self.pending_since_ms,
            });
            rest = after;
        }
        let progress = TaskProgress {
            attempt: self.attempt,
            seq: self.seq,
            text: self.text.clone(),
            tokens: self.tokens,
        };
        match self.progress.record(self.running.task_id, &progress).await {
            Ok(true) => self.stop(),
            Ok(false) => {}
            // The deltas still flow and the final result is stored as always; only a
            // late joiner's view and a stop request wait for the store.
            Err(error) => {
                tracing::warn!(%error, task_id = %self.running.task_id, "recording the text so far failed")
            }
        }
    }

    async fn check_stop(&self) {
        if let Ok(true) = self.progress.stop_asked(self.running.task_id).await {
            self.stop();
        }
    }

    fn stop(&self) {
        if !self.owner_stop.is_cancelled() {
            tracing::info!(task_id = %self.running.task_id, "its owner cancelled the generation; stopping it");
            self.owner_stop.cancel();
            self.cancel.cancel();
        }
    }
}
