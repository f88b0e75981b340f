//! Times as every store keeps them: UTC, years 1 to 9999, whole microseconds.
//!
//! Postgres keeps microseconds, and SQLite keeps times as RFC 3339 text that sorts in time order
//! only with four-digit years; a time outside that range would compare differently in the two.

use chrono::{DateTime, Datelike, DurationRound, TimeDelta, Utc};

/// `at` as stored, or `None` when no store can keep it.
pub fn storable_time(at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if !(1..=9999).contains(&at.year()) {
        return None;
    }
    Some(at.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_microseconds_and_four_digit_years() {
        let at: DateTime<Utc> = "2026-11-22T10:00:00.123456789Z".parse().expect("time");
        assert_eq!(
            storable_time(at).map(|t| t.to_rfc3339()),
            Some("2026-11-22T10:00:00.123456+00:00".to_owned())
        );
        let late: DateTime<Utc> = "9999-12-31T23:59:59-01:00".parse().expect("time");
        assert_eq!(storable_time(late), None, "year 10000 in UTC");
        let early: DateTime<Utc> = "0000-06-01T00:00:00Z".parse().expect("time");
        assert_eq!(storable_time(early), None);
    }
}
