//! Query-string values shared by the list endpoints: limit, cursor and times, each with a clear 400.

use crate::domain::{PageCursor, PageLimit};
use crate::error::ApiError;
use chrono::{DateTime, Utc};

pub fn limit(raw: Option<&str>) -> Result<PageLimit, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_limit",
            format!("limit must be a whole number from 1 to {}", PageLimit::MAX),
        )
    };
    let requested = match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        // Digits only; a number too large for u64 is still just "very large".
        Some(text) if text.bytes().all(|b| b.is_ascii_digit()) => {
            Some(text.parse::<u64>().unwrap_or(u64::MAX))
        }
        Some(_) => return Err(invalid()),
    };
    PageLimit::parse(requested).map_err(|_| invalid())
}

pub fn cursor(raw: Option<&str>) -> Result<Option<PageCursor>, ApiError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(text) => PageCursor::decode(text).map(Some).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_cursor",
                "cursor is not one this API returned as next_cursor",
            )
        }),
    }
}

pub fn time(name: &str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(text) => DateTime::parse_from_rfc3339(&restore_plus(text))
            .ok()
            .and_then(|t| crate::domain::storable_time(t.with_timezone(&Utc)))
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_time",
                    format!(
                        "{name} must be an RFC 3339 time from year 1 to 9999 (UTC) such as \
                         2026-08-20T03:14:07Z, got {text:?}"
                    ),
                )
            }),
    }
}

/// An unencoded `+` in a query string decodes to a space: `2026-01-01T00:00:00 08:00` was meant
/// as `+08:00`.
fn restore_plus(text: &str) -> String {
    let bytes = text.as_bytes();
    let offset_start = bytes.len().saturating_sub(6);
    let looks_like_offset = bytes.len() > 6
        && bytes[offset_start] == b' '
        && bytes[offset_start + 3] == b':'
        && bytes[offset_start + 1..]
            .iter()
            .enumerate()
            .all(|(i, b)| i == 2 || b.is_ascii_digit());
    if looks_like_offset {
        format!("{}+{}", &text[..offset_start], &text[offset_start + 1..])
    } else {
        text.to_owned()
    }
}

/// A filter value; an empty one means "no filter". NUL cannot occur in stored text, so it
/// matches nothing.
pub fn text(raw: Option<String>) -> Option<String> {
    raw.filter(|s| !s.is_empty())
        .map(|s| s.replace('\0', "\u{FFFD}"))
}

/// A cursor whose key is a UUID (events, subscriptions, deliveries).
pub fn uuid_cursor(raw: Option<&str>) -> Result<Option<(DateTime<Utc>, uuid::Uuid)>, ApiError> {
    match cursor(raw)? {
        None => Ok(None),
        Some(c) => uuid::Uuid::parse_str(&c.key)
            .map(|id| Some((c.at, id)))
            .map_err(|_| {
                ApiError::bad_request(
                    "invalid_cursor",
                    "cursor is not one this API returned as next_cursor",
                )
            }),
    }
}

/// A UUID filter value.
pub fn uuid(name: &str, raw: Option<String>) -> Result<Option<uuid::Uuid>, ApiError> {
    match text(raw) {
        None => Ok(None),
        Some(v) => uuid::Uuid::parse_str(&v).map(Some).map_err(|_| {
            ApiError::bad_request(
                "invalid_parameter",
                format!("{name} must be a UUID, got {v:?}"),
            )
        }),
    }
}

/// `true` or `false`; absent or empty is `None`.
pub fn boolean(name: &str, raw: Option<&str>) -> Result<Option<bool>, ApiError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(ApiError::bad_request(
            "invalid_boolean",
            format!("{name} must be true or false, got {other:?}"),
        )),
    }
}
