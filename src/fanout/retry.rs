//! The retry schedule: when the next try of a failed delivery is due, with jitter and the rules
//! of Standard Webhooks (Retry-After honoured but clamped, a pause after timeouts and 429s).

use rand::Rng;
use std::time::Duration;

/// Delays before each try; the first is normally zero (try at once).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    schedule: Vec<Duration>,
}

/// ±20 % of each delay, so that many failed deliveries do not retry in lockstep.
pub const JITTER: f64 = 0.2;
/// After a timeout or a 429 the target is overloaded: wait at least this long.
pub const OVERLOAD_PAUSE: Duration = Duration::from_secs(60);

/// How a try failed, as far as scheduling cares.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FailureHints {
    pub overloaded: bool,
    pub retry_after: Option<Duration>,
}

impl Default for RetryPolicy {
    /// Immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: eight tries over about 27.5 hours.
    fn default() -> RetryPolicy {
        let secs = [0, 5, 300, 1800, 7200, 18_000, 36_000, 36_000];
        RetryPolicy {
            schedule: secs.into_iter().map(Duration::from_secs).collect(),
        }
    }
}

impl RetryPolicy {
    /// A schedule of at least one try.
    pub fn new(schedule: Vec<Duration>) -> Option<RetryPolicy> {
        (!schedule.is_empty()).then_some(RetryPolicy { schedule })
    }

    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.schedule.len()).unwrap_or(u32::MAX)
    }

    /// The unjittered delay before try number `attempt + 1`, given `attempt` tries so far.
    pub fn scheduled_delay(&self, attempts_so_far: u32) -> Option<Duration> {
        self.schedule.get(attempts_so_far as usize).copied()
    }

    /// When to try again after `attempts_so_far` tries, the last of which failed; `None` once
    /// the schedule is used up (the delivery is dead).
    pub fn next_delay(
        &self,
        attempts_so_far: u32,
        hints: FailureHints,
        rng: &mut impl Rng,
    ) -> Option<Duration> {
        let scheduled = self.scheduled_delay(attempts_so_far)?;
        let jittered = scheduled.mul_f64(1.0 + rng.gen_range(-JITTER..=JITTER));
        let mut delay = match hints.retry_after {
            Some(asked) => asked.clamp(jittered, jittered * 2),
            None => jittered,
        };
        if hints.overloaded {
            delay = delay.max(OVERLOAD_PAUSE);
        }
        Some(delay)
    }

    /// Parses a schedule such as `0,5s,5m,30m,2h` (plain numbers are seconds).
    pub fn parse(text: &str) -> Result<RetryPolicy, String> {
        let schedule = text
            .split(',')
            .map(|part| parse_duration(part.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        RetryPolicy::new(schedule).ok_or_else(|| "the schedule needs at least one entry".to_owned())
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 5m or 2h"))?;
    let seconds = match unit {
        "" | "s" => value,
        "m" => value * 60,
        "h" => value * 3600,
        "d" => value * 86_400,
        _ => return Err(format!("{text:?} is not a duration like 30s, 5m or 2h")),
    };
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    const PLAIN: FailureHints = FailureHints {
        overloaded: false,
        retry_after: None,
    };

    #[test]
    fn default_schedule_is_eight_tries() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.max_attempts(), 8);
        let secs: Vec<u64> = (0..8)
            .map(|n| policy.scheduled_delay(n).map_or(0, |d| d.as_secs()))
            .collect();
        assert_eq!(secs, [0, 5, 300, 1800, 7200, 18_000, 36_000, 36_000]);
        assert_eq!(
            policy.next_delay(8, PLAIN, &mut StdRng::seed_from_u64(1)),
            None,
            "dead after the last try"
        );
    }

    #[test]
    fn jitter_stays_within_twenty_percent_and_varies() {
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(7);
        let delays: Vec<f64> = (0..2000)
            .map(|_| {
                policy
                    .next_delay(2, PLAIN, &mut rng)
                    .expect("due")
                    .as_secs_f64()
            })
            .collect();
        assert!(
            delays.iter().all(|d| (240.0..=360.0).contains(d)),
            "within 300 s ± 20 %"
        );
        let (min, max) = delays
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), d| (lo.min(*d), hi.max(*d)));
        assert!(
            min < 250.0 && max > 350.0,
            "spread over the whole band: {min}..{max}"
        );
    }

    #[test]
    fn retry_after_is_clamped_between_the_scheduled_delay_and_twice_it() {
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(3);
        let hint = |s| FailureHints {
            overloaded: false,
            retry_after: Some(Duration::from_secs(s)),
        };
        for _ in 0..200 {
            let short = policy
                .next_delay(1, hint(1), &mut rng)
                .expect("due")
                .as_secs_f64();
            assert!(
                (4.0..=6.0).contains(&short),
                "never sooner than scheduled: {short}"
            );
            let long = policy
                .next_delay(1, hint(100_000), &mut rng)
                .expect("due")
                .as_secs_f64();
            assert!(
                (8.0..=12.0).contains(&long),
                "never later than twice scheduled: {long}"
            );
            let within = policy
                .next_delay(2, hint(450), &mut rng)
                .expect("due")
                .as_secs_f64();
            assert!(
                (360.0..=480.0).contains(&within) || within == 450.0,
                "{within}"
            );
        }
    }

    #[test]
    fn overload_waits_at_least_a_minute() {
        let policy = RetryPolicy::default();
        let hints = FailureHints {
            overloaded: true,
            retry_after: None,
        };
        let delay = policy
            .next_delay(1, hints, &mut StdRng::seed_from_u64(5))
            .expect("due");
        assert!(delay >= OVERLOAD_PAUSE);
        let later = policy
            .next_delay(3, hints, &mut StdRng::seed_from_u64(5))
            .expect("due");
        assert!(later.as_secs() >= 1440, "a longer scheduled delay is kept");
    }

    #[test]
    fn schedules_parse_from_text() {
        let policy = RetryPolicy::parse("0, 5s, 5m, 2h, 1d, 30").expect("valid");
        let secs: Vec<u64> = (0..6)
            .map(|n| policy.scheduled_delay(n).map_or(0, |d| d.as_secs()))
            .collect();
        assert_eq!(secs, [0, 5, 300, 7200, 86_400, 30]);
        assert!(RetryPolicy::parse("").is_err());
        assert!(RetryPolicy::parse("5x").is_err());
        assert!(RetryPolicy::parse("soon").is_err());
    }
}
