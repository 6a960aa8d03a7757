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
