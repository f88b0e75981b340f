//! Keyset pagination: page sizes and the opaque cursor that marks where a page ended.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// How many items a page holds: 50 unless asked, never more than 500.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(u32);

impl PageLimit {
    pub const DEFAULT: u32 = 50;
    pub const MAX: u32 = 500;

    /// `None` gives the default; values above the maximum are clamped to it; zero is refused.
    pub fn parse(requested: Option<u64>) -> Result<PageLimit, String> {
        match requested {
            None => Ok(PageLimit(Self::DEFAULT)),
            Some(0) => Err(format!("limit must be between 1 and {}", Self::MAX)),
            Some(n) => Ok(PageLimit(
                u32::try_from(n).unwrap_or(Self::MAX).min(Self::MAX),
            )),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// Position after the last item of a page, in the list's order (newest first): the item's time
/// and its unique key. Listing "strictly after" it never skips or repeats an item, however
/// many newer items arrive between pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor {
    pub at: DateTime<Utc>,
    pub key: String,
}

impl PageCursor {
    /// Opaque to clients: base64url of `<microseconds>.<key>`.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}.{}", self.at.timestamp_micros(), self.key))
    }

    pub fn decode(raw: &str) -> Option<PageCursor> {
        let bytes = URL_SAFE_NO_PAD.decode(raw.trim()).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (micros, key) = text.split_once('.')?;
        let at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
        // Every store keeps times between 1970 and 9999; anything else was not made by us.
        if !(0..=253_402_300_799_000_000).contains(&at.timestamp_micros()) {
            return None;
        }
        (!key.is_empty()).then(|| PageCursor {
            at,
            key: key.to_owned(),
        })
    }
}

/// One page of a list, in the shape the query API returns.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_with_microsecond_precision() {
        let at = DateTime::from_timestamp_micros(1_755_659_649_123_456).expect("valid");
        let cursor = PageCursor {
            at,
            key: "14508071098244959037".into(),
        };
        assert_eq!(PageCursor::decode(&cursor.encode()), Some(cursor));
    }

    #[test]
    fn garbage_is_not_a_cursor() {
        assert_eq!(PageCursor::decode("not-a-cursor!"), None);
        assert_eq!(PageCursor::decode(&URL_SAFE_NO_PAD.encode("12")), None);
        assert_eq!(PageCursor::decode(&URL_SAFE_NO_PAD.encode("x.key")), None);
        assert_eq!(
            PageCursor::decode(&URL_SAFE_NO_PAD.encode("-8000000000000000000.x")),
            None
        );
    }

    #[test]
    fn limits_default_clamp_and_refuse_zero() {
        assert_eq!(PageLimit::parse(None).map(PageLimit::get), Ok(50));
        assert_eq!(PageLimit::parse(Some(10_000)).map(PageLimit::get), Ok(500));
        assert_eq!(
            PageLimit::parse(Some(u64::MAX)).map(PageLimit::get),
            Ok(500)
        );
        assert!(PageLimit::parse(Some(0)).is_err());
    }
}
