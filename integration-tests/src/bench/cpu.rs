//! CPU time and memory of processes, read from `/proc`: on a 2-core machine the CPU time a
//! task costs each process moves least with noise, and says which one is the limit.

use std::time::Duration;

/// A process whose CPU time is measured, by a name for the report.
#[derive(Debug, Clone)]
pub struct Measured {
    /// `api`, `worker`, `rabbitmq`…
    pub name: &'static str,
    /// Its pids (Redis or RabbitMQ may be several processes).
    pub pids: Vec<u32>,
}

/// Clock ticks per second of `/proc/*/stat` (`getconf CLK_TCK`, 100 on Linux).
fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(100.0)
}

/// User plus system CPU time of `pid` so far (zero once it is gone).
pub fn cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // The command name (field 2) may hold spaces: count fields after its closing ')'.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / ticks_per_second())
}

/// Resident memory of `pid` in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Every pid whose command name (`/proc/*/comm`) is `comm`.
pub fn pids_named(comm: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm))
        .collect()
}

/// CPU time of each measured process at one moment.
#[derive(Debug, Clone)]
pub struct CpuSnapshot {
    at: std::time::Instant,
    used: Vec<(&'static str, Duration)>,
}

/// What each process spends doing nothing (timers, heartbeats, metrics upkeep), in CPU
/// milliseconds per second: subtracted from a run so a task's figure is its own.
#[derive(Debug, Clone, Default)]
pub struct IdleCpu(Vec<(&'static str, f64)>);

impl IdleCpu {
    /// Measures `processes` at rest for `period`.
    pub async fn measure(processes: &[Measured], period: Duration) -> Self {
        let before = CpuSnapshot::take(processes);
        tokio::time::sleep(period).await;
        let after = CpuSnapshot::take(processes);
        let seconds = after.at.duration_since(before.at).as_secs_f64();
        Self(
            before.deltas(&after).map(|(name, used)| (name, used.as_secs_f64() * 1000.0 / seconds)).collect(),
        )
    }

    /// Milliseconds per second of `process` at rest.
    pub fn ms_per_second(&self, process: &str) -> f64 {
        self.0.iter().find(|(name, _)| *name == process).map_or(0.0, |(_, ms)| *ms)
    }

    /// Every process's figure.
    pub fn all(&self) -> &[(&'static str, f64)] {
        &self.0
    }
}

impl CpuSnapshot {
    /// Reads every process's CPU time now.
    pub fn take(processes: &[Measured]) -> Self {
        let used =
            processes.iter().map(|p| (p.name, p.pids.iter().map(|pid| cpu_time(*pid)).sum())).collect();
        Self { at: std::time::Instant::now(), used }
    }

    fn deltas<'a>(&'a self, later: &'a CpuSnapshot) -> impl Iterator<Item = (&'static str, Duration)> + 'a {
        self.used
            .iter()
            .zip(&later.used)
            .map(|((name, before), (_, after))| (*name, after.saturating_sub(*before)))
    }

    /// Milliseconds of CPU per task of each process between `self` and `later`, less what
    /// the process would have spent at rest over that time.
    pub fn per_task_ms(&self, later: &CpuSnapshot, tasks: usize, idle: &IdleCpu) -> Vec<(&'static str, f64)> {
        let seconds = later.at.duration_since(self.at).as_secs_f64();
        self.deltas(later)
            .map(|(name, used)| {
                let own = used.as_secs_f64() * 1000.0 - idle.ms_per_second(name) * seconds;
                (name, own.max(0.0) / tasks.max(1) as f64)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_uses_cpu_and_memory() {
        let me = std::process::id();
        let before = cpu_time(me);
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(cpu_time(me) > before, "CPU time moved");
        assert!(rss_bytes(me) > 1024 * 1024);
        assert_eq!(cpu_time(u32::MAX), Duration::ZERO);
    }
}
