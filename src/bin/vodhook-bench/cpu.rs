//! CPU time per event of Postgres, vodhook and the benchmark itself, read from /proc (Linux only).
//!
//! Throughput on this machine is bounded by its cores, which the database, vodhook and the load
//! generator (with the subscriber) share. CPU time per event says which of them a measurement
//! spent its cores on, and so how far any of them could move the result.

use std::collections::HashMap;
use std::time::Instant;

/// Who used the CPU.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Consumer {
    /// Every process whose name starts with `postgres` (backends and background workers).
    Postgres,
    /// The vodhook child process.
    Vodhook,
    /// This process: the load generator and, with `--subscriber`, the subscriber.
    Bench,
}

/// CPU ticks (user + system) of each process of interest at one moment.
pub struct Snapshot {
    at: Instant,
    ticks: HashMap<u32, (Consumer, u64)>,
}

impl Snapshot {
    /// Reads /proc. A process that exits between two snapshots loses its ticks from the
    /// difference, so take the second one before closing connections.
    pub fn take(vodhook: u32) -> Snapshot {
        let bench = std::process::id();
        let mut ticks = HashMap::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Snapshot {
                at: Instant::now(),
                ticks,
            };
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Some((name, used)) = process_ticks(pid) else {
                continue;
            };
            let consumer = match pid {
                p if p == vodhook => Consumer::Vodhook,
                p if p == bench => Consumer::Bench,
                _ if name.starts_with("postgres") => Consumer::Postgres,
                _ => continue,
            };
            ticks.insert(pid, (consumer, used));
        }
        Snapshot {
            at: Instant::now(),
            ticks,
        }
    }

    /// CPU seconds each consumer used since `earlier`; a process that started since counts
    /// from its start.
    pub fn since(&self, earlier: &Snapshot) -> CpuUse {
        let mut seconds = [0.0; 3];
        for (pid, (consumer, now)) in &self.ticks {
            let before = earlier.ticks.get(pid).map_or(0, |(_, t)| *t);
            seconds[*consumer as usize] += now.saturating_sub(before) as f64 / USER_HZ;
        }
        CpuUse {
            seconds,
            wall: self.at.saturating_duration_since(earlier.at).as_secs_f64(),
        }
    }
}

/// CPU seconds per consumer over a wall-clock span; sums over measurements.
#[derive(Default, Clone, Copy)]
pub struct CpuUse {
    seconds: [f64; 3],
    wall: f64,
}

impl CpuUse {
    pub fn add(&mut self, other: CpuUse) {
        for (mine, theirs) in self.seconds.iter_mut().zip(other.seconds) {
            *mine += theirs;
        }
        self.wall += other.wall;
    }

    /// Microseconds of CPU per event.
    pub fn per_event_us(&self, consumer: Consumer, events: usize) -> f64 {
        self.seconds[consumer as usize] * 1e6 / (events.max(1) as f64)
    }

    pub fn total_per_event_us(&self, events: usize) -> f64 {
        self.seconds.iter().sum::<f64>() * 1e6 / (events.max(1) as f64)
    }

    /// How many cores the consumers kept busy on average.
    pub fn busy_cores(&self) -> f64 {
        self.seconds.iter().sum::<f64>() / self.wall.max(f64::MIN_POSITIVE)
    }
}

/// A process's name and its user + system CPU ticks, from /proc/<pid>/stat.
fn process_ticks(pid: u32) -> Option<(String, u64)> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_stat(stat: &str) -> Option<(String, u64)> {
    // The name is in parentheses and may itself hold spaces or parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    // After the name: state (field 3) first, so utime and stime (fields 14, 15) are 11 and 12.
    let mut fields = stat.get(close + 2..)?.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((name, utime + stime))
}

/// The unit of /proc CPU times: USER_HZ, which the kernel fixes at 100 for user space on x86-64
/// and arm64, whatever its internal tick.
const USER_HZ: f64 = 100.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_this_process_as_the_bench() {
        let before = Snapshot::take(0);
        // Burn some CPU so the difference is visible at 10 ms ticks.
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed().as_millis() < 200 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let used = Snapshot::take(0).since(&before);
        assert!(used.per_event_us(Consumer::Bench, 1) > 100_000.0);
        assert_eq!(used.per_event_us(Consumer::Vodhook, 1), 0.0);
        assert!(used.busy_cores() > 0.4);
    }

    #[test]
    fn parses_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (postgres: a (b) c) S 1 2 3 4 5 6 7 8 9 10 1500 250 0 0 20";
        assert_eq!(
            parse_stat(stat),
            Some(("postgres: a (b) c".to_owned(), 1750))
        );
        assert_eq!(parse_stat("4242 (cut) S 1 2"), None);
    }
}
