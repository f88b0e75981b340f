//! TC3-HMAC-SHA256 signing of Tencent Cloud API requests (vod-spec.md §5.4), as pure functions.

use chrono::DateTime;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The algorithm name that opens the `Authorization` header and the string to sign.
pub const ALGORITHM: &str = "TC3-HMAC-SHA256";

/// The Content-Type of JSON API calls; what is sent must be byte-identical to what is signed.
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// Which headers take part in the signature. Tencent requires `content-type` and `host`; the
/// current docs' example adds `x-tc-action`, which also binds the signature to the action (so a
/// captured request cannot be replayed as another action). The Go SDK signs only the first two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedHeaders {
    /// `content-type;host`
    ContentTypeHost,
    /// `content-type;host;x-tc-action`
    ContentTypeHostAction,
}

impl SignedHeaders {
    /// The `SignedHeaders` list as it appears in the canonical request and the header.
    pub fn as_str(self) -> &'static str {
        match self {
            SignedHeaders::ContentTypeHost => "content-type;host",
            SignedHeaders::ContentTypeHostAction => "content-type;host;x-tc-action",
        }
    }
}

/// One API call to sign: everything but the key pair.
#[derive(Debug, Clone, Copy)]
pub struct Tc3Request<'a> {
    /// The product's service name, e.g. `vod` (part of the credential scope).
    pub service: &'a str,
    /// The `Host` header exactly as sent, e.g. `vod.tencentcloudapi.com` (with `:port` when the
    /// port is not the scheme's default).
    pub host: &'a str,
    /// `X-TC-Action`, e.g. `PullEvents`.
    pub action: &'a str,
    /// `X-TC-Version`, e.g. `2018-07-17`. Not signed; carried so [`Tc3Request::headers`] can
    /// produce the complete header set.
    pub version: &'a str,
    /// `X-TC-Timestamp`, Unix seconds; its UTC date goes into the credential scope.
    pub timestamp: i64,
    /// The `Content-Type` header exactly as sent.
    pub content_type: &'a str,
    /// The request body, byte for byte.
    pub payload: &'a [u8],
    pub signed_headers: SignedHeaders,
}

/// The result of signing, with the intermediate values of the algorithm (none of them secret:
/// the derived keys are deliberately not exposed, since they sign for a whole day).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tc3Signature {
    /// UTC date of the timestamp, `YYYY-MM-DD`.
    pub date: String,
    /// Lowercase hex SHA-256 of the payload.
    pub hashed_payload: String,
    pub canonical_request: String,
    /// Lowercase hex SHA-256 of the canonical request.
    pub hashed_canonical_request: String,
    /// `date/service/tc3_request`.
    pub credential_scope: String,
    pub string_to_sign: String,
    /// Lowercase hex HMAC-SHA256 of the string to sign.
    pub signature: String,
    /// The complete `Authorization` header value.
    pub authorization: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Tc3Error {
    #[error("the timestamp {0} is outside the range of calendar dates")]
    TimestampOutOfRange(i64),
    /// A value that would corrupt the canonical request or the `Authorization` header (line
    /// breaks, control characters, or the header's own separators). The value itself is not
    /// repeated, since it may be a credential.
    #[error("{0} contains characters that cannot appear in a signed request")]
    InvalidValue(&'static str),
}

/// Checks that a SecretId can be embedded in `Credential=<id>/<date>/...` unambiguously.
pub fn validate_secret_id(secret_id: &str) -> Result<(), Tc3Error> {
    let fits = !secret_id.is_empty()
        && secret_id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b',');
    if fits {
        Ok(())
    } else {
        Err(Tc3Error::InvalidValue("the SecretId"))
    }
}

/// Signs one request with TC3-HMAC-SHA256 (vod-spec.md §5.4).
pub fn sign(
    secret_id: &str,
    secret_key: &str,
    request: &Tc3Request<'_>,
) -> Result<Tc3Signature, Tc3Error> {
    validate_secret_id(secret_id)?;
    for (name, value) in [
        ("the service", request.service),
        ("the host", request.host),
        ("the action", request.action),
        ("the content type", request.content_type),
    ] {
        // Header values cannot hold control characters, and a line break here would let the
        // value forge further lines of the canonical request.
        if value.is_empty() || value.chars().any(|c| c.is_control()) {
            return Err(Tc3Error::InvalidValue(name));
        }
    }
    if request.service.contains('/') {
        return Err(Tc3Error::InvalidValue("the service"));
    }

    let date = utc_date(request.timestamp)?;
    let hashed_payload = sha256_hex(request.payload);
    let canonical_headers = canonical_headers(request);
    let signed_headers = request.signed_headers.as_str();
    // POST to "/" with no query string: the canonical URI is "/" and the query is empty.
    let canonical_request =
        format!("POST\n/\n\n{canonical_headers}\n{signed_headers}\n{hashed_payload}");
    let hashed_canonical_request = sha256_hex(canonical_request.as_bytes());
    let credential_scope = format!("{date}/{}/tc3_request", request.service);
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{credential_scope}\n{hashed_canonical_request}",
        request.timestamp
    );
    let [_, _, secret_signing] = derive_keys(secret_key, &date, request.service);
    let signature = hex::encode(hmac_sha256(&secret_signing, string_to_sign.as_bytes()));
    let authorization = format!(
        "{ALGORITHM} Credential={secret_id}/{credential_scope}, SignedHeaders={signed_headers}, \
         Signature={signature}"
    );
    Ok(Tc3Signature {
        date,
        hashed_payload,
        canonical_request,
        hashed_canonical_request,
        credential_scope,
        string_to_sign,
        signature,
        authorization,
    })
}

impl Tc3Request<'_> {
    /// Every header the request must carry, in the form that was signed: `Authorization`,
    /// `Content-Type`, `Host`, `X-TC-Action`, `X-TC-Timestamp`, `X-TC-Version`.
    pub fn headers(&self, signature: &Tc3Signature) -> [(&'static str, String); 6] {
        [
            ("Authorization", signature.authorization.clone()),
            ("Content-Type", self.content_type.to_owned()),
            ("Host", self.host.to_owned()),
            ("X-TC-Action", self.action.to_owned()),
            ("X-TC-Timestamp", self.timestamp.to_string()),
            ("X-TC-Version", self.version.to_owned()),
        ]
    }
}

/// `name:value\n` per signed header, names sorted, values trimmed and lowercased.
fn canonical_headers(request: &Tc3Request<'_>) -> String {
    let mut lines = format!(
        "content-type:{}\nhost:{}\n",
        request.content_type.trim().to_ascii_lowercase(),
        request.host.trim().to_ascii_lowercase()
    );
    if request.signed_headers == SignedHeaders::ContentTypeHostAction {
        lines.push_str(&format!(
            "x-tc-action:{}\n",
            request.action.trim().to_ascii_lowercase()
        ));
    }
    lines
}

/// The UTC date, never local time: a local date would break signing around midnight.
fn utc_date(timestamp: i64) -> Result<String, Tc3Error> {
    DateTime::from_timestamp(timestamp, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .ok_or(Tc3Error::TimestampOutOfRange(timestamp))
}

/// SecretDate, SecretService and SecretSigning.
fn derive_keys(secret_key: &str, date: &str, service: &str) -> [[u8; 32]; 3] {
    let secret_date = hmac_sha256(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let secret_service = hmac_sha256(&secret_date, service.as_bytes());
    let secret_signing = hmac_sha256(&secret_service, b"tc3_request");
    [secret_date, secret_service, secret_signing]
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vectors() -> Vec<Value> {
        let text = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/vod/test-vectors.json"
        ));
        let all: Value = serde_json::from_str(text).expect("test-vectors.json is JSON");
        all["tc3_hmac_sha256"]
            .as_array()
            .expect("tc3_hmac_sha256 is an array")
            .clone()
    }

    fn text<'a>(v: &'a Value, key: &str) -> &'a str {
        v[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} is a string"))
    }

    fn signed_headers(list: &str) -> SignedHeaders {
        match list {
            "content-type;host" => SignedHeaders::ContentTypeHost,
            "content-type;host;x-tc-action" => SignedHeaders::ContentTypeHostAction,
            other => panic!("unexpected signed headers {other}"),
        }
    }

    /// Every vector: the official CN and international examples and the two VOD ones, checking
    /// each intermediate value the vectors publish.
    #[test]
    fn all_published_vectors() {
        let vectors = vectors();
        assert_eq!(vectors.len(), 4, "the vectors file has four TC3 vectors");
        for vector in &vectors {
            let label = text(vector, "label");
            let input = &vector["inputs"];
            let expected = &vector["expected"];
            let request = Tc3Request {
                service: text(input, "service"),
                host: text(input, "host"),
                action: text(input, "action"),
                version: text(input, "version"),
                timestamp: input["timestamp"].as_i64().expect("timestamp"),
                content_type: text(input, "content_type"),
                payload: text(input, "payload").as_bytes(),
                signed_headers: signed_headers(text(input, "signed_headers")),
            };
            let secret_key = text(input, "secret_key");
            let got = sign(text(input, "secret_id"), secret_key, &request).expect(label);

            assert_eq!(got.date, text(expected, "date"), "{label}: date");
            assert_eq!(
                got.hashed_payload,
                text(expected, "hashed_request_payload"),
                "{label}: hashed payload"
            );
            assert_eq!(
                got.canonical_request,
                text(expected, "canonical_request"),
                "{label}: canonical request"
            );
            assert_eq!(
                got.hashed_canonical_request,
                text(expected, "hashed_canonical_request"),
                "{label}: hashed canonical request"
            );
            assert_eq!(
                got.credential_scope,
                text(expected, "credential_scope"),
                "{label}: credential scope"
            );
            assert_eq!(
                got.string_to_sign,
                text(expected, "string_to_sign"),
                "{label}: string to sign"
            );
            let [date_key, service_key, signing_key] =
                derive_keys(secret_key, &got.date, request.service);
            assert_eq!(hex::encode(date_key), text(expected, "secret_date_hex"));
            assert_eq!(
                hex::encode(service_key),
                text(expected, "secret_service_hex")
            );
            assert_eq!(
                hex::encode(signing_key),
                text(expected, "secret_signing_hex")
            );
            assert_eq!(
                got.signature,
                text(expected, "signature"),
                "{label}: signature"
            );
            assert_eq!(
                got.authorization,
                text(expected, "authorization"),
                "{label}: authorization"
            );
        }
    }

    #[test]
    fn headers_carry_what_was_signed() {
        let request = Tc3Request {
            service: "vod",
            host: "vod.tencentcloudapi.com",
            action: "PullEvents",
            version: "2018-07-17",
            timestamp: 1_700_000_000,
            content_type: JSON_CONTENT_TYPE,
            payload: b"{\"SubAppId\":1500000001}",
            signed_headers: SignedHeaders::ContentTypeHostAction,
        };
        let signature = sign("AKIDexample", "key", &request).expect("signs");
        let headers = request.headers(&signature);
        assert_eq!(
            headers[0],
            ("Authorization", signature.authorization.clone())
        );
        assert!(headers.contains(&("Content-Type", JSON_CONTENT_TYPE.to_owned())));
        assert!(headers.contains(&("Host", "vod.tencentcloudapi.com".to_owned())));
        assert!(headers.contains(&("X-TC-Action", "PullEvents".to_owned())));
        assert!(headers.contains(&("X-TC-Timestamp", "1700000000".to_owned())));
        assert!(headers.contains(&("X-TC-Version", "2018-07-17".to_owned())));
    }

    #[test]
    fn the_date_is_utc_around_midnight() {
        // 2019-02-25T23:59:59Z and one second later: a local-time date would be wrong for one
        // of them in every zone but UTC.
        assert_eq!(utc_date(1_551_139_199).expect("date"), "2019-02-25");
        assert_eq!(utc_date(1_551_139_200).expect("date"), "2019-02-26");
        assert_eq!(
            utc_date(i64::MAX),
            Err(Tc3Error::TimestampOutOfRange(i64::MAX))
        );
    }

    #[test]
    fn values_that_would_corrupt_the_request_are_refused() {
        let request = Tc3Request {
            service: "vod",
            host: "vod.tencentcloudapi.com\nx-evil:1",
            action: "PullEvents",
            version: "2018-07-17",
            timestamp: 1_700_000_000,
            content_type: JSON_CONTENT_TYPE,
            payload: b"{}",
            signed_headers: SignedHeaders::ContentTypeHost,
        };
        assert_eq!(
            sign("AKIDexample", "key", &request),
            Err(Tc3Error::InvalidValue("the host"))
        );
        for id in ["", "AKID/x", "AKID,x", "AKID x"] {
            assert_eq!(
                validate_secret_id(id),
                Err(Tc3Error::InvalidValue("the SecretId")),
                "{id:?}"
            );
        }
        assert_eq!(
            validate_secret_id("AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE"),
            Ok(())
        );
    }
}
