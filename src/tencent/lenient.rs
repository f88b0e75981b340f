//! Field decoders that never fail: VOD omits fields, sends `null`, uses `""` for "not set", and
//! its formats drift, so a field of an unexpected type becomes `None` instead of losing the event.

use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Deserialize, Deserializer};
use serde_json::Value;

/// Text; numbers are kept as their decimal text (FileIds); `""`, `null` and other types are `None`.
pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) if !s.is_empty() => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// A whole number, from a JSON integer or a numeric string.
pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// A number that may have a fraction (durations such as `59.990001678467`).
pub fn float<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|f: &f64| f.is_finite()))
}

/// An RFC 3339 time such as `2019-01-09T16:36:22Z`.
pub fn time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => DateTime::parse_from_rfc3339(s.trim())
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        _ => None,
    })
}

/// A nested object; `null`, absence or any non-object is `None`.
pub fn object<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    Ok(match Value::deserialize(d)? {
        value @ Value::Object(_) => serde_json::from_value(value).ok(),
        _ => None,
    })
}

/// Decodes a struct made of lenient fields from a JSON value; `None` when the value is not an object.
pub fn from_value<T: DeserializeOwned>(value: Option<&Value>) -> Option<T> {
    match value {
        Some(v @ Value::Object(_)) => T::deserialize(v).ok(),
        _ => None,
    }
}
