//! One AMQP message: decode it, hand it to [`processing`](crate::processing), settle it
//! with the broker as the processing says (ack, requeue, or dead-letter).

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use inferpush_protocol::{Lane, TaskEnvelope};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::AMQPValue;
use tracing::Instrument;

use crate::processing::{Arrival, Settlement, TaskContext, process, process_dead_letter};

/// Runs one task message, which came by `lane`, to completion and settles it; an
/// undecodable one (including one naming a channel that is not an inference channel) is
/// dead-lettered.
pub async fn handle(delivery: Delivery, lane: Lane, context: TaskContext) {
    let settlement = match TaskEnvelope::from_bytes(&delivery.data) {
        Ok(task) => {
            let arrival = if delivery.redelivered { Arrival::Redelivered } else { Arrival::First };
            let span = task_span(&task, &delivery);
            guarded(process(task, arrival, lane, &context)).instrument(span).await
        }
        Err(error) => {
            tracing::error!(%error, "undecodable task message; dead-lettering it");
            Settlement::DeadLetter
        }
    };
    settle(&delivery, settlement).await;
}

/// The span a task's lines are logged in: its id, and the trace id of the `traceparent` the
/// api sent with it, so its lines join the api's for the same task; with trace export, the
/// api's span is its parent.
fn task_span(task: &TaskEnvelope, delivery: &Delivery) -> tracing::Span {
    let traceparent = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get("traceparent"))
        .and_then(|value| match value {
            AMQPValue::LongString(text) => Some(text.to_string()),
            _ => None,
        })
        .unwrap_or_default();
    let trace_id = inferpush_service::telemetry::trace_id(&traceparent).unwrap_or_default();
    let span = tracing::info_span!("task", otel.kind = "consumer", task_id = %task.task_id, model = task.model, trace_id);
    inferpush_service::telemetry::continue_trace(&span, &traceparent);
    span
}

/// Runs one dead-lettered message: the task failed for good.
pub async fn handle_dead_letter(delivery: Delivery, context: TaskContext) {
    // Why the broker dead-lettered it: `expired` (its deadline, the message's TTL) or
    // `delivery_limit` (a task that kept failing).
    let broker_expired = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get("x-first-death-reason"))
        .is_some_and(|reason| matches!(reason, AMQPValue::LongString(text) if text.to_string() == "expired"));
    let settlement = match TaskEnvelope::from_bytes(&delivery.data) {
        Ok(task) => guarded(process_dead_letter(task, broker_expired, &context)).await,
        Err(error) => {
            // Garbage with no user to tell: it stays visible in the logs, not in the queue.
            tracing::error!(%error, bytes = delivery.data.len(), "dropping an undecodable dead letter");
            Settlement::Ack
        }
    };
    settle(&delivery, settlement).await;
}

/// Runs a task's processing; a panic in it gives the message back to the queue (the
/// quorum queue's delivery limit dead-letters one that always panics) instead of leaving
/// it unsettled, holding a prefetch slot until the connection closes.
async fn guarded(processing: impl Future<Output = Settlement>) -> Settlement {
    match AssertUnwindSafe(processing).catch_unwind().await {
        Ok(settlement) => settlement,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(panic = message, "processing a task panicked; giving it back to the queue");
            Settlement::Requeue
        }
    }
}

/// Settles `delivery` with the broker as `settlement` says.
async fn settle(delivery: &Delivery, settlement: Settlement) {
    let result = match settlement {
        Settlement::Ack => delivery.acker.ack(BasicAckOptions::default()).await,
        Settlement::Requeue => {
            delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await
        }
        Settlement::DeadLetter => {
            delivery.acker.nack(BasicNackOptions { requeue: false, ..Default::default() }).await
        }
    };
    if let Err(error) = result {
        // The channel is gone; the broker will redeliver the task, which is safe.
        tracing::warn!(%error, ?settlement, "could not settle a delivery; it will be redelivered");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_in_processing_gives_the_task_back() {
        assert_eq!(guarded(async { Settlement::Ack }).await, Settlement::Ack);
        let panicking = async {
            if std::hint::black_box(true) {
                panic!("a bug in a model");
            }
            Settlement::Ack
        };
        assert_eq!(guarded(panicking).await, Settlement::Requeue);
    }
}
