//! One task, from delivery to acknowledgement: run the model, push the event, ack.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use inferpush_protocol::event::BatchEvent;
use inferpush_protocol::{
    ErrorBody, InferenceChannel, InferenceEvent, TaskEnvelope, TaskStatus, Timings,
};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};

use crate::model::{ModelError, Registry};
use crate::publisher::{Publisher, PushError};

/// What every task needs from the worker.
#[derive(Clone)]
pub struct TaskContext {
    /// The models served here.
    pub registry: Registry,
    /// The Soketi publisher.
    pub publisher: Publisher,
    /// Largest event data pushed inline.
    pub max_event_bytes: usize,
}

/// How a delivery ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Done and delivered: remove it from the queue.
    Ack,
    /// Give it back to the queue for another try (the worker is stopping).
    Requeue,
    /// It can never succeed: dead-letter it.
    DeadLetter,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs one delivery to completion and settles it with the broker.
pub async fn handle(delivery: Delivery, context: TaskContext) {
    let settlement = match TaskEnvelope::from_bytes(&delivery.data) {
        Ok(task) => process(task, &context).await,
        Err(error) => {
            tracing::error!(%error, "undecodable task message; dead-lettering it");
            Settlement::DeadLetter
        }
    };
    let result = match settlement {
        Settlement::Ack => delivery.acker.ack(BasicAckOptions::default()).await,
        Settlement::Requeue => {
            delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
        }
        Settlement::DeadLetter => {
            delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: false,
                    ..Default::default()
                })
                .await
        }
    };
    if let Err(error) = result {
        // The channel is gone; the broker will redeliver the task, which is safe.
        tracing::warn!(%error, ?settlement, "could not settle a delivery; it will be redelivered");
    }
}

/// Runs `task` and pushes its result, returning how to settle its message.
pub async fn process(task: TaskEnvelope, context: &TaskContext) -> Settlement {
    // Defence in depth: a task may only ever be pushed to its own user's channel.
    let own_channel = InferenceChannel::private(&task.user_id).map(|c| c.to_string());
    if own_channel.as_deref() != Ok(task.channel.as_str()) {
        tracing::error!(task_id = %task.task_id, channel = task.channel, "task names a channel its user does not own");
        return Settlement::DeadLetter;
    }
    let started_ms = now_ms();
    let started = Instant::now();
    let outcome = match context.registry.get(&task.model) {
        Some(model) => model.infer(&task.input).await,
        None => Err(ModelError::Failed(format!(
            "model `{}` is not served by this worker",
            task.model
        ))),
    };
    let inference_ms = started.elapsed().as_millis() as u64;
    let queued_ms = started_ms.saturating_sub(task.submitted_at_ms);
    let timings = Timings {
        queued_ms,
        inference_ms,
        total_ms: queued_ms + inference_ms,
    };
    let event = result_event(&task, outcome, timings, context.max_event_bytes);
    let data = serde_json::to_string(&event).expect("events always serialise");
    let push = BatchEvent {
        channel: task.channel.clone(),
        name: event.event_name().to_owned(),
        data,
    };
    match context.publisher.push(push).await {
        Ok(()) => {
            tracing::info!(task_id = %task.task_id, model = task.model, status = ?event.status, inference_ms, "task done");
            Settlement::Ack
        }
        Err(PushError::Aborted) => Settlement::Requeue,
        Err(PushError::Rejected(reason)) => {
            tracing::error!(task_id = %task.task_id, reason, "Soketi refused the result; dead-lettering the task");
            Settlement::DeadLetter
        }
    }
}

/// The event announcing `outcome`; an output too large for one event becomes an error
/// the client can act on, never a silent drop.
pub fn result_event(
    task: &TaskEnvelope,
    outcome: Result<serde_json::Value, ModelError>,
    timings: Timings,
    max_event_bytes: usize,
) -> InferenceEvent {
    let mut event = InferenceEvent {
        task_id: task.task_id,
        model: task.model.clone(),
        status: TaskStatus::Succeeded,
        output: None,
        error: None,
        result_url: None,
        timings,
    };
    match outcome {
        Ok(output) => event.output = Some(output),
        Err(error) => {
            event.status = TaskStatus::Failed;
            event.error = Some(ErrorBody {
                code: error.code().into(),
                message: error.to_string(),
            });
        }
    }
    let size = serde_json::to_vec(&event)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > max_event_bytes {
        event.output = None;
        event.status = TaskStatus::Failed;
        event.error = Some(ErrorBody {
            code: "output_too_large".into(),
            message: format!(
                "the output is {size} bytes, over the {max_event_bytes}-byte event limit"
            ),
        });
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use inferpush_protocol::TaskId;
    use serde_json::json;

    fn task() -> TaskEnvelope {
        TaskEnvelope {
            task_id: TaskId::new_v7(),
            user_id: "alice".into(),
            model: "echo".into(),
            input: json!({"text": "hi"}),
            channel: "private-inference.alice".into(),
            submitted_at_ms: 0,
        }
    }

    #[test]
    fn success_carries_the_output() {
        let event = result_event(&task(), Ok(json!({"text": "hi"})), Timings::default(), 1000);
        assert_eq!(event.status, TaskStatus::Succeeded);
        assert_eq!(event.output, Some(json!({"text": "hi"})));
        assert_eq!(event.event_name(), "inference.completed");
    }

    #[test]
    fn model_errors_become_failed_events_with_a_code() {
        let event = result_event(
            &task(),
            Err(ModelError::InvalidInput("bad".into())),
            Timings::default(),
            1000,
        );
        assert_eq!(event.status, TaskStatus::Failed);
        assert_eq!(event.error.unwrap().code, "invalid_input");
    }

    #[test]
    fn oversized_outputs_fail_with_a_clear_reason() {
        let big = json!({"text": "x".repeat(2000)});
        let event = result_event(&task(), Ok(big), Timings::default(), 1000);
        assert_eq!(event.status, TaskStatus::Failed);
        assert!(event.output.is_none());
        assert_eq!(event.error.unwrap().code, "output_too_large");
    }
}
