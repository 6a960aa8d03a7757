//! The RabbitMQ topology, by name: one exchange, two quorum queues (lanes) per model, dead
//! letters.
//!
//! A model's tasks travel in one of two lanes. The main queue, `{prefix}.tasks.{model}`,
//! carries the tasks of users with few unfinished tasks; once a user has more than their
//! fair share in flight, the api sends their further tasks to the bulk queue,
//! `{prefix}.tasks.{model}.bulk`, and workers take from the main lane first. So one user's
//! backlog of thousands never sits in front of another user's single task.
//!
//! Every name derives from a prefix (`inferpush` by default) so separate deployments,
//! or test runs, can share one broker without seeing each other's tasks.

/// Redeliveries a quorum queue allows before it dead-letters a task.
pub const DEFAULT_DELIVERY_LIMIT: u32 = 5;

/// Delays before a webhook's second, third, … attempt, one retry queue each; the last
/// repeats. Few tiers: each is a quorum queue.
pub const WEBHOOK_RETRY_DELAYS_SECS: [u64; 6] = [1, 5, 30, 120, 600, 3600];

/// Which of a model's two queues a task travels in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// The main queue: tasks of users within their fair share; served first.
    Main,
    /// The bulk queue: the backlog of users past their fair share.
    Bulk,
}

impl Lane {
    /// Both lanes, the one served first first.
    pub const ALL: [Lane; 2] = [Lane::Main, Lane::Bulk];
}

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

    /// The quorum queue holding `model`'s tasks in the main lane.
    pub fn queue(&self, model: &str) -> String {
        format!("{}.tasks.{model}", self.prefix)
    }

    /// The quorum queue holding `model`'s tasks in `lane`.
    pub fn lane_queue(&self, model: &str, lane: Lane) -> String {
        match lane {
            Lane::Main => self.queue(model),
            Lane::Bulk => format!("{}.tasks.{model}.bulk", self.prefix),
        }
    }

    /// The routing key that takes `model`'s tasks to `lane`.
    pub fn routing_key(model: &str, lane: Lane) -> String {
        match lane {
            Lane::Main => model.to_owned(),
            Lane::Bulk => format!("{model}.bulk"),
        }
    }

    /// Fanout exchange that receives dead-lettered tasks.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.prefix)
    }

    /// The queue where dead-lettered tasks wait.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// The quorum queue of webhook attempts waiting to be sent (published to through the
    /// default exchange).
    pub fn webhook_queue(&self) -> String {
        format!("{}.webhooks", self.prefix)
    }

    /// The queue where a webhook waits `delay_secs` before its next attempt (its messages
    /// expire into [`Self::webhook_queue`]).
    pub fn webhook_retry_queue(&self, delay_secs: u64) -> String {
        format!("{}.webhooks.retry.{delay_secs}s", self.prefix)
    }

    /// The webhook queue and its retry queues.
    pub fn webhook_queues(&self) -> Vec<String> {
        let retries = WEBHOOK_RETRY_DELAYS_SECS.iter().map(|delay| self.webhook_retry_queue(*delay));
        std::iter::once(self.webhook_queue()).chain(retries).collect()
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
        assert_eq!(t.lane_queue("echo", Lane::Main), "inferpush.tasks.echo");
        assert_eq!(t.lane_queue("echo", Lane::Bulk), "inferpush.tasks.echo.bulk");
        assert_eq!(Topology::routing_key("echo", Lane::Bulk), "echo.bulk");
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
