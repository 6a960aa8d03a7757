//! Task processing in process: the echo model, the in-memory store, a sink that records
//! what it is asked to deliver, and a clock the test sets. What these pin down (a result
//! is stored before it is announced; a redelivered final task is announced again, not
//! rerun; a cancelled task is never run; a store outage holds the task) is checked
//! against RabbitMQ, Redis and Soketi in `integration-tests/` too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use inferpush_protocol::{
    Clock, InferenceChannel, Lane, ManualClock, SinkKind, TaskEnvelope, TaskRecord, TaskStatus, Timings,
};
use inferpush_repository::{FileCheck, Repository};
use inferpush_store::{Admission, Created, MemoryTaskStore, TaskStore};
use inferpush_worker::delivery::{EventSink, PushError, Route, Sinks};
use inferpush_worker::model::device::Precision;
use inferpush_worker::model::embedding::EngineChoice;
use inferpush_worker::model::{Registry, ServeSettings};
use inferpush_worker::processing::{Arrival, Settlement, TaskContext, process, process_dead_letter};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Records what it is asked to deliver, and what the store held at that moment.
#[derive(Default)]
struct RecordingSink {
    store: Mutex<Option<Arc<MemoryTaskStore>>>,
    delivered: Mutex<Vec<(TaskRecord, Option<TaskStatus>)>>,
    refuse: AtomicBool,
}

#[async_trait]
impl EventSink for RecordingSink {
    fn kind(&self) -> SinkKind {
        SinkKind::Pusher
    }

    async fn deliver(&self, record: &TaskRecord) -> Result<(), PushError> {
        let store = self.store.lock().unwrap().clone().expect("store set");
        let stored = store.get(&record.user_id, record.task_id).await.unwrap().map(|r| r.status);
        self.delivered.lock().unwrap().push((record.clone(), stored));
        if self.refuse.load(Ordering::SeqCst) {
            return Err(PushError::Rejected("refused".into()));
        }
        Ok(())
    }
}

impl RecordingSink {
    fn finals(&self) -> Vec<(TaskRecord, Option<TaskStatus>)> {
        self.delivered.lock().unwrap().iter().filter(|(r, _)| r.status.is_final()).cloned().collect()
    }
}

const SUBMITTED_MS: u64 = 1_800_000_000_000;

struct Harness {
    context: TaskContext,
    store: Arc<MemoryTaskStore>,
    sink: Arc<RecordingSink>,
    clock: Arc<ManualClock>,
}

fn harness() -> Harness {
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let repository = Repository::load(&models, FileCheck::None).unwrap();
    let settings = ServeSettings {
        repository: models,
        engine: EngineChoice::Auto,
        device: None,
        precision: Precision::F32,
        threads: 1,
        max_batch_size: None,
        max_batch_tokens: None,
        max_batch_delay: Duration::ZERO,
        prefetch: None,
    };
    let store = Arc::new(MemoryTaskStore::new());
    let sink = Arc::new(RecordingSink::default());
    *sink.store.lock().unwrap() = Some(store.clone());
    let clock = Arc::new(ManualClock::at(SUBMITTED_MS + 40));
    let context = TaskContext {
        registry: Registry::build(&repository, &["echo".into()], &settings).unwrap(),
        store: store.clone(),
        sinks: Sinks::new(vec![Route { sink: sink.clone(), deadline: Duration::from_secs(5) }]),
        clock: clock.clone(),
        abort: CancellationToken::new(),
        progress: Arc::new(inferpush_store::MemoryProgress::default()),
    };
    Harness { context, store, sink, clock }
}

fn task(input: serde_json::Value) -> TaskEnvelope {
    TaskEnvelope::new("alice", "echo", input, InferenceChannel::private("alice").unwrap(), SUBMITTED_MS)
}

async fn queued(h: &Harness, task: &TaskEnvelope) {
    let created = h.store.create(&TaskRecord::queued(task), None, Admission::in_flight(100)).await.unwrap();
    assert!(matches!(created, Created::New { .. }), "{created:?}");
}

#[tokio::test]
async fn a_task_runs_is_stored_and_only_then_announced_and_acked() {
    let h = harness();
    let task = task(json!({"text": "hi"}));
    queued(&h, &task).await;
    assert_eq!(process(task.clone(), Arrival::First, Lane::Main, &h.context).await, Settlement::Ack);

    let stored = h.store.get(&task.user_id, task.task_id).await.unwrap().unwrap();
    assert_eq!(stored.status, TaskStatus::Succeeded);
    assert_eq!(stored.output, Some(json!({"text": "hi"})));
    assert_eq!(stored.started_at_ms, Some(SUBMITTED_MS + 40));
    assert_eq!(stored.timings.map(|t| t.queued_ms), Some(40));
    assert_eq!(stored.model_version.as_deref(), Some("1"), "the result names the card's version");
    assert_eq!(stored.event().model_version.as_deref(), Some("1"), "and so does its event");
    assert_eq!(h.store.in_flight("alice"), 0);
    let finals = h.sink.finals();
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0], (stored, Some(TaskStatus::Succeeded)), "announced after it was stored");
}

#[tokio::test]
async fn a_worker_announces_that_it_started_with_the_time_queued() {
    let h = harness();
    let task = task(json!({"delay_ms": 300}));
    queued(&h, &task).await;
    let running = tokio::spawn({
        let context = h.context.clone();
        let task = task.clone();
        async move { process(task, Arrival::First, Lane::Main, &context).await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started: Vec<_> = h
        .sink
        .delivered
        .lock()
        .unwrap()
        .iter()
        .filter(|(r, _)| r.status == TaskStatus::Running)
        .cloned()
        .collect();
    assert_eq!(started.len(), 1, "inference.started went out while the model ran");
    assert_eq!(started[0].0.timings, Some(Timings { queued_ms: 40, inference_ms: 0, total_ms: 40 }));
    assert_eq!(running.await.unwrap(), Settlement::Ack);
}

#[tokio::test]
async fn a_redelivered_finished_task_is_announced_again_not_rerun() {
    let h = harness();
    let task = task(json!({"n": 1}));
    queued(&h, &task).await;
    process(task.clone(), Arrival::First, Lane::Main, &h.context).await;
    let first = h.store.get(&task.user_id, task.task_id).await.unwrap().unwrap();
    h.clock.advance(5_000);
    assert_eq!(process(task.clone(), Arrival::Redelivered, Lane::Main, &h.context).await, Settlement::Ack);
    assert_eq!(
        h.store.get(&task.user_id, task.task_id).await.unwrap().unwrap(),
        first,
        "the stored result is untouched"
    );
    let finals = h.sink.finals();
    assert_eq!(finals.len(), 2);
    assert_eq!(finals[1].0, first, "the same result, announced again");
}

#[tokio::test]
async fn a_second_copy_of_a_running_task_is_not_run_but_a_redelivery_is() {
    let h = harness();
    let task = task(json!({"n": 1}));
    queued(&h, &task).await;
    // Another worker took the first copy and is running it.
    let running = TaskRecord::queued(&task).started(h.clock.as_ref());
    h.store.transition(&running).await.unwrap();
    assert_eq!(process(task.clone(), Arrival::First, Lane::Main, &h.context).await, Settlement::Ack);
    assert_eq!(
        h.store.get(&task.user_id, task.task_id).await.unwrap().unwrap().status,
        TaskStatus::Running,
        "not run"
    );
    assert!(h.sink.delivered.lock().unwrap().is_empty(), "nothing announced");
    // That worker died: its copy comes back redelivered and runs.
    assert_eq!(process(task.clone(), Arrival::Redelivered, Lane::Main, &h.context).await, Settlement::Ack);
    assert_eq!(
        h.store.get(&task.user_id, task.task_id).await.unwrap().unwrap().status,
        TaskStatus::Succeeded
    );
    assert_eq!(h.sink.finals().len(), 1);
}

#[tokio::test]
async fn a_cancelled_task_is_not_run_and_its_owner_hears_it_failed() {
    let h = harness();
    let task = task(json!({"n": 1}));
    queued(&h, &task).await;
    let record = TaskRecord::queued(&task);
    h.store.transition(&record.cancelled(h.clock.as_ref())).await.unwrap();
    assert_eq!(process(task.clone(), Arrival::First, Lane::Main, &h.context).await, Settlement::Ack);
    let finals = h.sink.finals();
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0].0.status, TaskStatus::Cancelled);
    assert_eq!(finals[0].0.event().event_name(), Some("inference.failed"));
}

#[tokio::test]
async fn invalid_input_fails_the_task_with_its_code() {
    let h = harness();
    let task = task(json!({"delay_ms": -1}));
    assert_eq!(process(task.clone(), Arrival::First, Lane::Main, &h.context).await, Settlement::Ack);
    let stored = h.store.get(&task.user_id, task.task_id).await.unwrap().unwrap();
    assert_eq!(stored.status, TaskStatus::Failed);
    assert_eq!(stored.error.unwrap().code, "invalid_input");
}

#[tokio::test]
async fn a_message_the_broker_expired_ends_expired_even_when_this_clock_reads_a_moment_earlier() {
    let h = harness();
    // Its deadline is 5 ms ahead of the worker's clock, but the broker already dropped it.
    let task = task(json!({})).with_deadline(Some(h.clock.now_ms() + 5));
    queued(&h, &task).await;
    assert_eq!(process_dead_letter(task.clone(), true, &h.context).await, Settlement::Ack);
    let stored = h.store.get(&task.user_id, task.task_id).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.error.unwrap().code.as_str()), (TaskStatus::Expired, "expired"));
}

#[tokio::test]
async fn a_dead_letter_fails_the_task_for_good_and_tells_its_owner() {
    let h = harness();
    let task = task(json!({}));
    queued(&h, &task).await;
    assert_eq!(process_dead_letter(task.clone(), false, &h.context).await, Settlement::Ack);
    let stored = h.store.get(&task.user_id, task.task_id).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.error.unwrap().code.as_str()), (TaskStatus::Failed, "delivery_limit"));
    assert_eq!(stored.finished_at_ms, Some(h.clock.now_ms()));
    assert_eq!(h.sink.finals().len(), 1);
}

#[tokio::test]
async fn a_task_for_a_channel_its_user_does_not_own_is_never_run_nor_announced_even_dead_lettered() {
    let h = harness();
    let forged = TaskEnvelope::new(
        "mallory",
        "echo",
        json!({}),
        InferenceChannel::private("alice").unwrap(),
        SUBMITTED_MS,
    );
    assert_eq!(process(forged.clone(), Arrival::First, Lane::Main, &h.context).await, Settlement::DeadLetter);
    assert_eq!(process_dead_letter(forged.clone(), false, &h.context).await, Settlement::Ack, "dropped");
    assert_eq!(h.store.get(&forged.user_id, forged.task_id).await.unwrap(), None, "nothing stored");
    assert!(h.sink.finals().is_empty(), "nothing pushed to alice");
}

#[tokio::test]
async fn a_refused_push_still_acks_since_the_result_is_stored() {
    let h = harness();
    h.sink.refuse.store(true, Ordering::SeqCst);
    let task = task(json!({"n": 2}));
    assert_eq!(process(task.clone(), Arrival::First, Lane::Main, &h.context).await, Settlement::Ack);
    assert_eq!(
        h.store.get(&task.user_id, task.task_id).await.unwrap().unwrap().status,
        TaskStatus::Succeeded
    );
}

#[tokio::test]
async fn a_store_outage_holds_the_task_until_the_worker_aborts_then_requeues_it() {
    let h = harness();
    h.store.set_available(false);
    let abort = h.context.abort.clone();
    let held = tokio::spawn({
        let context = h.context.clone();
        let task = task(json!({}));
        async move { process(task, Arrival::First, Lane::Main, &context).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!held.is_finished(), "the task is held while the store is down");
    abort.cancel();
    assert_eq!(held.await.unwrap(), Settlement::Requeue);
    assert!(h.sink.delivered.lock().unwrap().is_empty(), "nothing announced without a stored state");
}

#[tokio::test]
async fn a_task_past_its_deadline_is_not_run_and_ends_expired_whichever_way_it_arrives() {
    let h = harness();
    // Its deadline was 10 ms after submission; the worker's clock reads 40 ms after.
    for dead_lettered in [false, true] {
        let late = task(json!({"text": "too late"})).with_deadline(Some(SUBMITTED_MS + 10));
        queued(&h, &late).await;
        let settled = if dead_lettered {
            process_dead_letter(late.clone(), false, &h.context).await
        } else {
            process(late.clone(), Arrival::First, Lane::Main, &h.context).await
        };
        assert_eq!(settled, Settlement::Ack);
        let stored = h.store.get(&late.user_id, late.task_id).await.unwrap().unwrap();
        assert_eq!(stored.status, TaskStatus::Expired, "dead-lettered: {dead_lettered}");
        assert!(stored.output.is_none() && stored.started_at_ms.is_none(), "never run");
        assert_eq!(stored.error.as_ref().map(|e| e.code.as_str()), Some("expired"));
        assert_eq!(stored.event().event_name(), Some("inference.failed"));
        assert!(h.sink.finals().iter().any(|(r, _)| r.task_id == late.task_id), "its owner heard");
    }
    assert_eq!(h.store.in_flight("alice"), 0, "an expired task frees its slot");
    // One whose deadline is still ahead runs.
    let timely = task(json!({"text": "in time"})).with_deadline(Some(SUBMITTED_MS + 60_000));
    queued(&h, &timely).await;
    process(timely.clone(), Arrival::First, Lane::Main, &h.context).await;
    assert_eq!(
        h.store.get(&timely.user_id, timely.task_id).await.unwrap().unwrap().status,
        TaskStatus::Succeeded
    );
}
