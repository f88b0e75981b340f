//! Field decoders that never fail: VOD omits fields, sends `null`, uses `""` for "not set", and
//! its formats drift, so a field of an unexpected type becomes `None` instead of losing the event.

use crate::domain::FileId;
use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Deserialize, Deserializer};
use serde_json::Value;

/// Text; whole numbers are kept as their decimal text (FileIds); blank text, `null`, fractional
/// or out-of-range numbers (which JSON parsing has already rounded) and other types are `None`.
pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(text_of(&Value::deserialize(d)?))
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

/// A FileId given as text or as an exact whole number.
pub fn file_id(value: &Value) -> Option<FileId> {
    FileId::parse(&text_of(value)?)
}

/// A whole number, from a JSON integer, a float with no fraction (`7.7e6`), or a numeric string.
pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let whole = |f: f64| (f.fract() == 0.0 && f.abs() < 9.0e18).then_some(f as i64);
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(whole)),
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
            .and_then(|t| crate::domain::storable_time(t.with_timezone(&Utc))),
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
