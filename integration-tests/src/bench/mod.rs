//! `make bench-e2e`: the end-to-end load generator's parts. It holds real Pusher
//! connections, submits echo tasks open-loop at fixed rates ([`platform`]), measures the two
//! services the platform is built from alone at the same rates ([`parts`]), reads each
//! process's CPU time ([`cpu`]) and writes a table and a plot ([`report`]); beside them,
//! each sink against the others ([`sinks`]) and each shape of Redis ([`redis`]).

pub mod cpu;
pub mod parts;
pub mod platform;
pub mod redis;
pub mod report;
pub mod sinks;

use std::time::Duration;

/// Latencies of one kind, for percentiles.
#[derive(Debug, Clone, Default)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    /// Adds one.
    pub fn push(&mut self, latency: Duration) {
        self.0.push(latency);
    }

    /// How many were recorded.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when none were.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `p`-th percentile (nearest rank) in milliseconds; `NaN` when empty.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
        sorted[rank.min(sorted.len()) - 1].as_secs_f64() * 1000.0
    }

    /// The largest, in milliseconds.
    pub fn max_ms(&self) -> f64 {
        self.percentile_ms(100.0)
    }
}

/// Fires `count` ticks at `rate` per second from now, open-loop: a tick is never delayed by
/// the work of an earlier one (each runs `fire` on its own task), so a slow server cannot
/// slow the sender. Returns when the last tick has been fired.
pub async fn open_loop<F, Fut>(rate: u32, count: usize, mut fire: F)
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let start = tokio::time::Instant::now();
    let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    for i in 0..count {
        tokio::time::sleep_until(start + period * i as u32).await;
        tokio::spawn(fire(i));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut latencies = Latencies::default();
        assert!(latencies.percentile_ms(50.0).is_nan());
        for ms in 1..=100 {
            latencies.push(Duration::from_millis(ms));
        }
        assert_eq!(latencies.percentile_ms(50.0), 50.0);
        assert_eq!(latencies.percentile_ms(99.0), 99.0);
        assert_eq!(latencies.max_ms(), 100.0);
    }

    #[tokio::test]
    async fn the_open_loop_keeps_its_rate_whatever_each_tick_takes() {
        let started = std::time::Instant::now();
        open_loop(200, 40, |_| tokio::time::sleep(Duration::from_secs(5))).await;
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(190) && took < Duration::from_millis(1000), "{took:?}");
    }
}
