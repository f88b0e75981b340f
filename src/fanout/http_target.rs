//! One HTTP try: POST the signed notification, classify the answer for the retry schedule.

use super::address_guard::{GuardedResolver, PrivateTargets};
use super::{sign, FailureHints};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;

/// At most this much of a target's answer is kept in the attempt log.
const RESPONSE_BODY_LIMIT: usize = 4096;

/// What one try produced (an HTTP post or a handler call).
#[derive(Debug, Clone, Default)]
pub struct TryOutcome {
    pub succeeded: bool,
    pub http_status: Option<u16>,
    pub error: Option<String>,
    pub response_body: Option<String>,
    pub hints: FailureHints,
}

impl TryOutcome {
    /// 410 Gone: the subscriber wants no more deliveries.
    pub fn gone(&self) -> bool {
        self.http_status == Some(410)
    }

    pub fn failed(error: String, overloaded: bool) -> TryOutcome {
        TryOutcome {
            error: Some(error),
            hints: FailureHints {
                overloaded,
                retry_after: None,
            },
            ..TryOutcome::default()
        }
    }
}

/// Sends notifications to subscriber URLs: no redirects, a timeout, internal addresses refused.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    client: reqwest::Client,
    policy: Arc<PrivateTargets>,
}

impl HttpTarget {
    pub fn new(timeout: Duration, policy: PrivateTargets) -> anyhow::Result<HttpTarget> {
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            // Common receivers (Node.js, actix) close idle connections after 5 s; dropping ours
            // sooner avoids sending on a connection the other side is closing (a failed try).
            .pool_idle_timeout(Duration::from_secs(4))
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve names itself, past the address guard.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver::new(policy.clone())))
            .user_agent(concat!("vodhook/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(HttpTarget { client, policy })
    }

    /// POSTs `body` with Standard Webhooks headers, signed with each of `keys`.
    pub async fn post(
        &self,
        url: &str,
        msg_id: &str,
        body: Vec<u8>,
        keys: &[Vec<u8>],
        now: DateTime<Utc>,
    ) -> TryOutcome {
        let parsed = match reqwest::Url::parse(url) {
            Ok(parsed) => parsed,
            Err(e) => return TryOutcome::failed(format!("invalid URL: {e}"), false),
        };
        // Names are checked by the resolver; an address in the URL never reaches it.
        let literal = parsed.host_str().and_then(|host| {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .ok()
        });
        if let Some(ip) = literal.filter(|ip| !self.policy.permits(*ip)) {
            return TryOutcome::failed(
                format!("refused: {ip} is an internal address; set VODHOOK_ALLOW_PRIVATE_TARGETS to allow it"),
                false,
            );
        }
        let timestamp = now.timestamp();
        let request = self
            .client
            .post(parsed)
            .header("content-type", "application/json")
            .header("webhook-id", msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", sign(msg_id, timestamp, &body, keys))
            .body(body);
        let mut response = match request.send().await {
            Ok(response) => response,
            // Without the URL: it may carry a token in its query string, and errors are logged.
            Err(e) => {
                let timed_out = e.is_timeout();
                return TryOutcome::failed(describe(&e.without_url()), timed_out);
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, now));
        let mut captured = Vec::new();
        while captured.len() < RESPONSE_BODY_LIMIT {
            match response.chunk().await {
                Ok(Some(chunk)) => captured.extend_from_slice(&chunk),
                _ => break,
            }
        }
        captured.truncate(RESPONSE_BODY_LIMIT);
        let response_body =
            (!captured.is_empty()).then(|| String::from_utf8_lossy(&captured).into_owned());
        let success = (200..300).contains(&status);
        TryOutcome {
            succeeded: success,
            http_status: Some(status),
            error: (!success).then(|| format!("answered HTTP {status}")),
            response_body,
            hints: FailureHints {
                overloaded: status == 429,
                retry_after,
            },
        }
    }
}

/// The error and its causes, e.g. "error sending request: ... resolves only to internal addresses".
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `Retry-After` as delay-seconds or an HTTP date.
fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
