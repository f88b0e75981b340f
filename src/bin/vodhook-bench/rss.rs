//! Resident memory of the vodhook child process, read from /proc (Linux only).
//!
//! VmRSS is sampled every 100 ms (the peak of a window); VmHWM is the kernel's peak over the
//! process's life.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct RssSampler {
    pid: u32,
    peak_kb: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let peak_kb = Arc::new(AtomicU64::new(0));
        let shared = peak_kb.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                // The process is gone (or /proc is missing): nothing more to sample.
                let Some(kb) = status_kb(pid, "VmRSS:") else {
                    break;
                };
                shared.fetch_max(kb, Ordering::Relaxed);
            }
        });
        RssSampler { pid, peak_kb, task }
    }

    /// The highest RSS sampled since the previous call (or the start), in MiB; the next window
    /// starts from the current RSS.
    pub fn take_peak_mib(&self) -> f64 {
        let current = status_kb(self.pid, "VmRSS:").unwrap_or(0);
        let peak = self.peak_kb.swap(current, Ordering::Relaxed).max(current);
        peak as f64 / 1024.0
    }

    /// The peak RSS over the process's whole life (VmHWM), in MiB.
    pub fn lifetime_peak_mib(&self) -> Option<f64> {
        status_kb(self.pid, "VmHWM:").map(|kb| kb as f64 / 1024.0)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `kB` line of /proc/<pid>/status.
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        assert!(status_kb(std::process::id(), "VmRSS:").is_some_and(|kb| kb > 0));
        assert!(status_kb(std::process::id(), "NoSuchField:").is_none());
    }
}
