//! One AMQP message: decode it, hand it to [`processing`](crate::processing), settle it
//! with the broker as the processing says (ack, requeue, or dead-letter).

use inferpush_protocol::TaskEnvelope;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};

use crate::processing::{Settlement, TaskContext, process, process_dead_letter};

/// Runs one task message to completion and settles it; an undecodable one (including
/// one naming a channel that is not an inference channel) is dead-lettered.
pub async fn handle(delivery: Delivery, context: TaskContext) {
    let settlement = match TaskEnvelope::from_bytes(&delivery.data) {
        Ok(task) => process(task, &context).await,
        Err(error) => {
            tracing::error!(%error, "undecodable task message; dead-lettering it");
            Settlement::DeadLetter
        }
    };
    settle(&delivery, settlement).await;
}

/// Runs one dead-lettered message: the task failed for good.
pub async fn handle_dead_letter(delivery: Delivery, context: TaskContext) {
    let settlement = match TaskEnvelope::from_bytes(&delivery.data) {
        Ok(task) => process_dead_letter(task, &context).await,
        Err(error) => {
            // Garbage with no user to tell: it stays visible in the logs, not in the queue.
            tracing::error!(%error, bytes = delivery.data.len(), "dropping an undecodable dead letter");
            Settlement::Ack
        }
    };
    settle(&delivery, settlement).await;
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
