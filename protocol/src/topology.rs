//! The RabbitMQ topology, by name: one exchange, one quorum queue per model, dead letters.
//!
//! Every name derives from a prefix (`inferpush` by default) so separate deployments,
//! or test runs, can share one broker without seeing each other's tasks.

/// Redeliveries a quorum queue allows before it dead-letters a task.
pub const DEFAULT_DELIVERY_LIMIT: u32 = 5;

/// Names of the exchanges and queues of one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
    /// How many times a task may be delivered before it is dead-lettered.
    pub delivery_limit: u32,
}

impl Topology {
    /// The topology whose names start with `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into(), delivery_limit: DEFAULT_DELIVERY_LIMIT }
    }

    /// Durable direct exchange that tasks are published to, routing key = model.
    pub fn exchange(&self) -> String {
        format!("{}.tasks", self.prefix)
    }

    /// The quorum queue holding `model`'s tasks.
    pub fn queue(&self, model: &str) -> String {
        format!("{}.tasks.{model}", self.prefix)
    }

    /// Fanout exchange that receives dead-lettered tasks.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.prefix)
    }

    /// The queue where dead-lettered tasks wait.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.prefix)
    }
}

impl Default for Topology {
    fn default() -> Self {
        Self::new("inferpush")
    }
}

#[cfg(feature = "amqp")]
mod declare {
    use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::{AMQPValue, FieldTable};
    use lapin::{Channel, ExchangeKind};

    use super::Topology;

    impl Topology {
        /// Declares the exchanges and the queues of `models` (idempotent: declaring what
        /// exists with the same arguments is a no-op, so api and worker both do it at start).
        pub async fn declare(&self, channel: &Channel, models: &[&str]) -> lapin::Result<()> {
            let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
            let queue_options = QueueDeclareOptions { durable: true, ..Default::default() };
            channel
                .exchange_declare(
                    self.exchange().into(),
                    ExchangeKind::Direct,
                    durable,
                    FieldTable::default(),
                )
                .await?;
            channel
                .exchange_declare(
                    self.dead_letter_exchange().into(),
                    ExchangeKind::Fanout,
                    durable,
                    FieldTable::default(),
                )
                .await?;
            channel.queue_declare(self.dead_letter_queue().into(), queue_options, quorum()).await?;
            channel
                .queue_bind(
                    self.dead_letter_queue().into(),
                    self.dead_letter_exchange().into(),
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            for model in models {
                let mut args = quorum();
                args.insert("x-delivery-limit".into(), AMQPValue::LongInt(self.delivery_limit as i32));
                args.insert(
                    "x-dead-letter-exchange".into(),
                    AMQPValue::LongString(self.dead_letter_exchange().into()),
                );
                channel.queue_declare(self.queue(model).into(), queue_options, args).await?;
                channel
                    .queue_bind(
                        self.queue(model).into(),
                        self.exchange().into(),
                        (*model).into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
            }
            Ok(())
        }
    }

    fn quorum() -> FieldTable {
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_design() {
        let t = Topology::default();
        assert_eq!(t.exchange(), "inferpush.tasks");
        assert_eq!(t.queue("echo"), "inferpush.tasks.echo");
        assert_eq!(t.dead_letter_exchange(), "inferpush.dlx");
        assert_eq!(t.dead_letter_queue(), "inferpush.dead");
    }

    #[test]
    fn prefix_separates_deployments() {
        let t = Topology::new("itest-1");
        assert_eq!(t.queue("echo"), "itest-1.tasks.echo");
        assert_ne!(t.exchange(), Topology::default().exchange());
    }
}
