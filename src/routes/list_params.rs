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
        Some(text) => Some(text.parse::<u32>().map_err(|_| invalid())?),
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
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| {
                ApiError::bad_request(
                    "invalid_time",
                    format!("{name} must be an RFC 3339 time such as 2026-08-20T03:14:07Z, got {text:?}"),
                )
            }),
    }
}

/// A filter value; an empty one means "no filter".
pub fn text(raw: Option<String>) -> Option<String> {
    raw.filter(|s| !s.is_empty())
}
