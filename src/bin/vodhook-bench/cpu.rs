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
    /// Reads /proc. A Postgres process that exits between two snapshots is found again in the
    /// postmaster's count of its reaped children (see `since`); vodhook and this process do not
    /// exit during a measurement.
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
            let Some(stat) = process_ticks(pid) else {
                continue;
            };
            let (consumer, used) = match pid {
                p if p == vodhook => (Consumer::Vodhook, stat.own),
                p if p == bench => (Consumer::Bench, stat.own),
                // With its reaped children: the postmaster's count grows by the CPU of every
                // backend and worker that exits, which would otherwise be lost.
                _ if stat.name.starts_with("postgres") => {
                    (Consumer::Postgres, stat.own + stat.children)
                }
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
    /// from its start. A Postgres process that exited since is counted through the postmaster's
    /// count of its reaped children, which holds all its time: what it had used at `earlier` is
    /// taken off again, so only its time inside the span remains (a backend that outlives one
    /// measurement is not charged to the next).
    pub fn since(&self, earlier: &Snapshot) -> CpuUse {
        let mut ticks = [0i64; 3];
        for (pid, (consumer, now)) in &self.ticks {
            let before = earlier.ticks.get(pid).map_or(0, |(_, t)| *t);
            ticks[*consumer as usize] += now.saturating_sub(before) as i64;
        }
        for (pid, (consumer, then)) in &earlier.ticks {
            if *consumer == Consumer::Postgres && !self.ticks.contains_key(pid) {
                ticks[*consumer as usize] -= *then as i64;
            }
        }
        CpuUse {
            seconds: ticks.map(|t| t.max(0) as f64 / USER_HZ),
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

/// What /proc/<pid>/stat says of a process's CPU use, in ticks.
#[derive(Debug, PartialEq)]
struct Stat {
    name: String,
    /// User + system time of the process itself (all its threads).
    own: u64,
    /// User + system time of its children that have exited and been waited for.
    children: u64,
}

fn process_ticks(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_stat(stat: &str) -> Option<Stat> {
    // The name is in parentheses and may itself hold spaces or parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    // After the name: state (field 3) first, so utime, stime, cutime and cstime (fields 14 to
    // 17) are 11 to 14.
    let mut fields = stat.get(close + 2..)?.split_whitespace().skip(11);
    let mut next = || fields.next()?.parse::<u64>().ok();
    let own = next()? + next()?;
    let children = next()? + next()?;
    Some(Stat {
        name,
        own,
        children,
    })
}

/// The unit of /proc CPU times: USER_HZ, which the kernel fixes at 100 for user space on x86-64
/// and arm64, whatever its internal tick.
const USER_HZ: f64 = 100.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_this_process_as_the_bench() {
        let own_ticks = || process_ticks(std::process::id()).expect("own stat").own;
        let before = Snapshot::take(0);
        // Burn 200 ms of CPU (however long that takes on a busy machine), so the difference is
        // well above the 10 ms resolution of the counts.
        let start = own_ticks();
        let mut x = 0u64;
        while own_ticks() < start + 20 {
            for _ in 0..100_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
        }
        std::hint::black_box(x);
        let used = Snapshot::take(0).since(&before);
        let bench = used.per_event_us(Consumer::Bench, 2);
        assert!(bench >= 100_000.0, "{bench} us per event of 2");
        assert_eq!(used.per_event_us(Consumer::Vodhook, 2), 0.0);
        assert!(used.total_per_event_us(2) >= bench);
    }

    #[test]
    fn an_exited_backend_counts_only_its_time_inside_the_span() {
        let at = Instant::now();
        let snapshot = |ticks: &[(u32, u64)]| Snapshot {
            at,
            ticks: ticks
                .iter()
                .map(|(pid, t)| (*pid, (Consumer::Postgres, *t)))
                .collect(),
        };
        // Postmaster 1 (own + reaped children) and backend 2, which used 50 ticks before the
        // span and 30 inside it, then exited: the postmaster's count grew by its 80 and its own
        // by 5.
        let before = snapshot(&[(1, 100), (2, 50)]);
        let after = snapshot(&[(1, 185), (3, 7)]);
        let used = after.since(&before);
        assert!((used.per_event_us(Consumer::Postgres, 1) - 420_000.0).abs() < 1.0);
    }

    #[test]
    fn parses_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (postgres: a (b) c) S 1 2 3 4 5 6 7 8 9 10 1500 250 40 2 20 0";
        let expected = Stat {
            name: "postgres: a (b) c".to_owned(),
            own: 1750,
            children: 42,
        };
        assert_eq!(parse_stat(stat), Some(expected));
        assert_eq!(parse_stat("4242 (cut) S 1 2"), None);
    }
}
