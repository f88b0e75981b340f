//! Times in JSON answers, written digit by digit: the same text as chrono's serde output.
//!
//! A page of upload records holds about 250 times, and chrono writes each through the `fmt`
//! machinery a character at a time: about 3 % of all CPU while list pages ran at 10 M records
//! (`perf`). Times chrono would write differently (years outside 0..=9999, leap seconds) still
//! go through chrono.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Serialize, Serializer};

/// For `#[serde(serialize_with)]` on a `DateTime<Utc>`.
pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    match Rfc3339::of(at) {
        Some(text) => serializer.serialize_str(text.as_str()),
        None => at.serialize(serializer),
    }
}

/// For `#[serde(serialize_with)]` on an `Option<DateTime<Utc>>`.
pub fn serialize_option<S: Serializer>(
    at: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => serializer.serialize_some(&AsJson(at)),
        None => serializer.serialize_none(),
    }
}

struct AsJson<'a>(&'a DateTime<Utc>);

impl Serialize for AsJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize(self.0, serializer)
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fff|.ffffff|.fffffffff]Z`: the fraction as chrono's `AutoSi` writes it,
/// in the fewest of 0, 3, 6 or 9 digits that hold it exactly.
struct Rfc3339 {
    bytes: [u8; 30],
    len: usize,
}

impl Rfc3339 {
    fn of(at: &DateTime<Utc>) -> Option<Rfc3339> {
        // Read off the naive time once: each accessor of a `DateTime` converts it to local
        // time first.
        let at = at.naive_utc();
        let year = u32::try_from(at.year()).ok().filter(|y| *y <= 9999)?;
        let nanos = at.nanosecond();
        if nanos >= 1_000_000_000 {
            return None;
        }
        let mut bytes = *b"0000-00-00T00:00:00.000000000Z";
        digits(&mut bytes[0..4], year);
        digits(&mut bytes[5..7], at.month());
        digits(&mut bytes[8..10], at.day());
        digits(&mut bytes[11..13], at.hour());
        digits(&mut bytes[14..16], at.minute());
        digits(&mut bytes[17..19], at.second());
        let (width, fraction) = match nanos {
            0 => (0, 0),
            n if n % 1_000_000 == 0 => (3, n / 1_000_000),
            n if n % 1_000 == 0 => (6, n / 1_000),
            n => (9, n),
        };
        let mut len = 19;
        if width > 0 {
            digits(&mut bytes[20..20 + width], fraction);
            len = 20 + width;
        }
        bytes[len] = b'Z';
        Some(Rfc3339 {
            bytes,
            len: len + 1,
        })
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

/// `value` in decimal, zero-padded to fill `out`.
fn digits(out: &mut [u8], mut value: u32) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rand::{Rng, SeedableRng};

    #[derive(Serialize)]
    struct Ours {
        #[serde(serialize_with = "serialize")]
        at: DateTime<Utc>,
        #[serde(serialize_with = "serialize_option")]
        maybe: Option<DateTime<Utc>>,
    }

    #[derive(Serialize)]
    struct Chrono {
        at: DateTime<Utc>,
        maybe: Option<DateTime<Utc>>,
    }

    fn both(at: DateTime<Utc>) -> (String, String) {
        let ours = serde_json::to_string(&Ours {
            at,
            maybe: Some(at),
        })
        .expect("ours");
        let chrono = serde_json::to_string(&Chrono {
            at,
            maybe: Some(at),
        })
        .expect("chrono");
        (ours, chrono)
    }

    #[test]
    fn writes_what_chrono_writes_for_every_precision() {
        let base = Utc
            .with_ymd_and_hms(2026, 11, 22, 9, 5, 7)
            .single()
            .expect("time");
        for nanos in [
            0,
            120_000_000,
            123_000_000,
            123_400_000,
            123_456_000,
            123_456_700,
            1,
            999_999_999,
        ] {
            let at = base + chrono::Duration::nanoseconds(nanos);
            let (ours, chrono) = both(at);
            assert_eq!(ours, chrono, "{nanos} ns");
        }
        let (ours, _) = both(base + chrono::Duration::microseconds(224_670));
        assert_eq!(
            ours,
            r#"{"at":"2026-11-22T09:05:07.224670Z","maybe":"2026-11-22T09:05:07.224670Z"}"#
        );
    }

    #[test]
    fn writes_what_chrono_writes_for_random_times_and_the_edges() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let first = Utc
            .with_ymd_and_hms(0, 1, 1, 0, 0, 0)
            .single()
            .expect("time");
        let last = Utc
            .with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
            .single()
            .expect("time");
        let span = (last - first).num_seconds();
        for _ in 0..20_000 {
            let at = first
                + chrono::Duration::seconds(rng.gen_range(0..=span))
                + chrono::Duration::microseconds(rng.gen_range(0..1_000_000));
            let (ours, chrono) = both(at);
            assert_eq!(ours, chrono);
        }
        // chrono's own forms: years beyond four digits, before year 0, and a leap second.
        let far = Utc
            .with_ymd_and_hms(12345, 1, 1, 0, 0, 0)
            .single()
            .expect("time");
        let before = Utc
            .with_ymd_and_hms(-1, 1, 1, 0, 0, 0)
            .single()
            .expect("time");
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
            .expect("leap second")
            .and_utc();
        for at in [first, last, far, before, leap] {
            let (ours, chrono) = both(at);
            assert_eq!(ours, chrono);
        }
        let none = serde_json::to_string(&Ours {
            at: first,
            maybe: None,
        })
        .expect("none");
        assert!(none.ends_with(r#""maybe":null}"#), "{none}");
    }
}
