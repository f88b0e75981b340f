//! VOD's callback signature: `Sign = md5_hex(SignKey + T)`, `T` the expiry in Unix seconds.
//!
//! Where VOD puts `Sign` and `T` is not documented: they are looked for as top-level keys of the
//! JSON body (`Sign`/`T`, or `sign`/`t`), then as query parameters. The body is not covered by
//! the signature; it proves the sender knows the key and bounds replays by time.

use md5::{Digest, Md5};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use subtle::ConstantTimeEq;

/// Where a callback's `Sign` and `T` were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Body,
    Query,
}

impl Placement {
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Body => "body",
            Placement::Query => "query",
        }
    }
}

/// A callback's `Sign` and `T`, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackSignature {
    pub sign: String,
    pub t: String,
    pub placement: Placement,
}

/// Why a callback's signature is refused; each has a stable error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the callback carries no Sign and T, and a VOD SignKey is configured")]
    Missing,
    #[error("the callback's T is not a Unix time in seconds")]
    MalformedExpiry,
    /// VOD's signatures last minutes; one valid for longer would make a replay last as long.
    #[error("the callback's T is more than a day ahead")]
    ExpiryTooFar,
    #[error("the callback's Sign does not match the configured SignKey")]
    Mismatch,
    #[error("the callback's signature expired at T={0}")]
    Expired(i64),
}

impl SignatureError {
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Missing => "signature_missing",
            SignatureError::MalformedExpiry | SignatureError::ExpiryTooFar => "signature_malformed",
            SignatureError::Mismatch => "signature_invalid",
            SignatureError::Expired(_) => "signature_expired",
        }
    }
}

/// `Sign` and `T` from the body's top level (either case), else from the query string.
pub fn find_signature(body: &Value, query: &str) -> Option<CallbackSignature> {
    let from_body = |sign: &str, t: &str| {
        Some(CallbackSignature {
            sign: text_of(body.get(sign)?)?,
            t: text_of(body.get(t)?)?,
            placement: Placement::Body,
        })
    };
    from_body("Sign", "T")
        .or_else(|| from_body("sign", "t"))
        .or_else(|| {
            let pairs: Vec<(String, String)> = url_pairs(query);
            let get = |names: [&str; 2]| {
                pairs
                    .iter()
                    .find(|(k, _)| names.contains(&k.as_str()))
                    .map(|(_, v)| v.clone())
            };
            Some(CallbackSignature {
                sign: get(["Sign", "sign"])?,
                t: get(["T", "t"])?,
                placement: Placement::Query,
            })
        })
}

/// Checks `signature` against `key` at `now` (Unix seconds), allowing `skew_secs` past `T`.
pub fn verify(
    key: &SecretString,
    signature: Option<&CallbackSignature>,
    now: i64,
    skew_secs: i64,
) -> Result<(), SignatureError> {
    let signature = signature.ok_or(SignatureError::Missing)?;
    // The signature covers T as sent: plain decimal digits, nothing else.
    let t_text = signature.t.trim();
    if t_text.is_empty() || t_text.len() > 18 || !t_text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::MalformedExpiry);
    }
    let t: i64 = t_text
        .parse()
        .map_err(|_| SignatureError::MalformedExpiry)?;
    let expected = sign_over(key, t_text);
    let given = signature.sign.trim().to_ascii_lowercase();
    if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
        return Err(SignatureError::Mismatch);
    }
    // Checked after the signature, so a stranger learns nothing from the clock.
    if now > t.saturating_add(skew_secs) {
        return Err(SignatureError::Expired(t));
    }
    if t > now.saturating_add(MAX_VALIDITY_SECS) {
        return Err(SignatureError::ExpiryTooFar);
    }
    Ok(())
}

/// The longest a signature may still be valid for (VOD's default is 10 minutes).
const MAX_VALIDITY_SECS: i64 = 24 * 3600;

/// `md5_hex(SignKey + T)`, lowercase.
pub fn expected_sign(key: &SecretString, t: i64) -> String {
    sign_over(key, &t.to_string())
}

fn sign_over(key: &SecretString, t: &str) -> String {
    let mut hasher = Md5::new();
    hasher.update(key.expose_secret().as_bytes());
    hasher.update(t.as_bytes());
    hex::encode(hasher.finalize())
}

/// `T` may be a JSON number or a string of digits; `Sign` a string.
fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The query string's pairs, percent-decoded.
fn url_pairs(query: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://query.invalid/?{query}"))
        .map(|url| url.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vectors() -> Vec<Value> {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/vod/test-vectors.json"),
        )
        .expect("vectors");
        let all: Value = serde_json::from_str(&text).expect("json");
        all["callback_sign_md5"].as_array().expect("array").clone()
    }

    fn signed(sign: &str, t: impl Into<Value>) -> CallbackSignature {
        let body = json!({"EventType": "NewFileUpload", "Sign": sign, "T": t.into()});
        find_signature(&body, "").expect("found")
    }

    #[test]
    fn every_vector_verifies() {
        let vectors = vectors();
        assert!(vectors.len() >= 2);
        for vector in vectors {
            let key = SecretString::from(vector["inputs"]["sign_key"].as_str().expect("key"));
            let t = vector["inputs"]["t"].as_i64().expect("t");
            let sign = vector["expected"]["sign"].as_str().expect("sign");
            assert_eq!(expected_sign(&key, t), sign, "{}", vector["label"]);
            assert_eq!(verify(&key, Some(&signed(sign, t)), t - 10, 60), Ok(()));
            assert_eq!(
                verify(
                    &key,
                    Some(&signed(&sign.to_uppercase(), t.to_string())),
                    t,
                    0
                ),
                Ok(()),
                "uppercase hex and a string T are accepted"
            );
        }
    }

    #[test]
    fn each_failure_has_its_own_code() {
        let key = SecretString::from("VodCallbackKey2026");
        let t = 1_767_225_600;
        let good = expected_sign(&key, t);
        assert_eq!(verify(&key, None, t, 60), Err(SignatureError::Missing));
        let wrong_key = SecretString::from("AnotherKey");
        assert_eq!(
            verify(&wrong_key, Some(&signed(&good, t)), t, 60),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&key, Some(&signed(&good, t + 1)), t, 60),
            Err(SignatureError::Mismatch),
            "T is covered by the signature"
        );
        assert_eq!(
            verify(&key, Some(&signed(&good, "soon")), t, 60),
            Err(SignatureError::MalformedExpiry)
        );
        assert_eq!(verify(&key, Some(&signed(&good, t)), t + 60, 60), Ok(()));
        assert_eq!(
            verify(&key, Some(&signed(&good, format!("+00{t}"))), t, 60),
            Err(SignatureError::MalformedExpiry),
            "T is checked as sent"
        );
        assert_eq!(
            verify(&key, Some(&signed(&good, json!(t as f64 + 0.5))), t, 60),
            Err(SignatureError::MalformedExpiry)
        );
        let far = t + 2 * 24 * 3600;
        let far_sign = expected_sign(&key, far);
        assert_eq!(
            verify(&key, Some(&signed(&far_sign, far)), t, 60),
            Err(SignatureError::ExpiryTooFar),
            "a signature valid for days is refused"
        );
        assert_eq!(
            verify(&key, Some(&signed(&good, t)), t + 61, 60),
            Err(SignatureError::Expired(t))
        );
    }

    #[test]
    fn sign_and_t_are_found_in_the_body_or_the_query() {
        let body = json!({"EventType": "X", "sign": "abc", "t": 5});
        assert_eq!(
            find_signature(&body, ""),
            Some(CallbackSignature {
                sign: "abc".into(),
                t: "5".into(),
                placement: Placement::Body
            })
        );
        let plain = json!({"EventType": "X"});
        assert_eq!(
            find_signature(&plain, "Sign=ab%63&T=6"),
            Some(CallbackSignature {
                sign: "abc".into(),
                t: "6".into(),
                placement: Placement::Query
            })
        );
        assert_eq!(
            find_signature(&plain, "Sign=abc"),
            None,
            "T alone is missing"
        );
        assert_eq!(find_signature(&json!({"Sign": "abc"}), ""), None);
    }
}
