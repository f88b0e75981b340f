//! HTTP subscriptions: where events are posted, which types, and validation of what clients send.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// A subscription as the API shows it (never with its secret, except once on create and rotate).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Subscription {
    pub id: Uuid,
    pub url: String,
    pub event_types: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    /// Why vodhook disabled it (e.g. the target answered 410 Gone).
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Subscription {
    pub fn wants(&self, event_type: &str) -> bool {
        self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type)
    }
}

/// A target URL: absolute http(s) with a host, at most 2048 characters.
pub fn validate_url(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.len() > 2048 {
        return Err("url must be at most 2048 characters".into());
    }
    let url = reqwest::Url::parse(raw).map_err(|e| format!("url is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err("url must be an http:// or https:// URL with a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "url must not carry credentials; subscribers verify the webhook signature instead"
                .into(),
        );
    }
    Ok(url.to_string())
}

/// Event types to deliver: empty means all; each a non-empty name of at most 128 characters.
pub fn validate_event_types(types: Vec<String>) -> Result<Vec<String>, String> {
    if types.len() > 100 {
        return Err("event_types may list at most 100 types".into());
    }
    let mut cleaned: Vec<String> = Vec::with_capacity(types.len());
    for t in types {
        let t = t.trim().to_owned();
        if t.is_empty() || t.len() > 128 || t.contains('\0') {
            return Err("each event type must be 1 to 128 characters, without NUL".into());
        }
        if !cleaned.contains(&t) {
            cleaned.push(t);
        }
    }
    Ok(cleaned)
}

pub fn validate_description(description: Option<String>) -> Result<Option<String>, String> {
    match description {
        Some(d) if d.chars().count() > 1000 => {
            Err("description must be at most 1000 characters".into())
        }
        Some(d) if d.contains('\0') => Err("description must not contain NUL characters".into()),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_with_a_host() {
        assert_eq!(
            validate_url(" https://example.com/hook ").as_deref(),
            Ok("https://example.com/hook")
        );
        assert!(validate_url("ftp://example.com").is_err());
        assert!(validate_url("example.com/hook").is_err());
        assert!(validate_url("https://user:pw@example.com/").is_err());
        assert!(validate_url(&format!("https://example.com/{}", "a".repeat(3000))).is_err());
    }

    #[test]
    fn event_types_are_trimmed_and_deduplicated() {
        assert_eq!(
            validate_event_types(vec![
                " NewFileUpload".into(),
                "NewFileUpload".into(),
                "FileDeleted".into()
            ]),
            Ok(vec!["NewFileUpload".to_owned(), "FileDeleted".to_owned()])
        );
        assert!(validate_event_types(vec!["".into()]).is_err());
    }
}
