//! Client for VOD's reliable-callback API: PullEvents and ConfirmEvents, TC3-signed (vod-spec.md §5).

use super::tc3::{self, SignedHeaders, Tc3Request, JSON_CONTENT_TYPE};
use crate::config::TencentCredentials;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::time::Duration;

/// The VOD API version every call names in `X-TC-Version`.
pub const API_VERSION: &str = "2018-07-17";
/// The service name in the TC3 credential scope.
pub const SERVICE: &str = "vod";
/// PullEvents returns at most this many events per call.
pub const MAX_EVENTS_PER_PULL: usize = 16;
/// ConfirmEvents takes at most this many handles per call.
pub const MAX_HANDLES_PER_CONFIRM: usize = 16;
/// PullEvents holds an empty poll for up to 5 s; 10 s leaves room for the network (§5.1).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A response larger than this is not a VOD answer (16 events are far smaller); refusing it
/// keeps a broken or hostile endpoint from exhausting memory.
const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// One event from PullEvents' `EventSet`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledEvent {
    /// The receipt handle for ConfirmEvents (valid 30 s after the pull).
    pub handle: String,
    /// The exact JSON bytes of the `EventContent` object, `EventHandle` included.
    pub raw: Vec<u8>,
    /// `EventType`, or `""` when the event has none (kept rather than failing the whole batch,
    /// so one malformed event cannot block the queue; the raw bytes tell the rest).
    pub event_type: String,
}

/// Why a call to VOD's API failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VodApiError {
    /// The key pair was refused: `AuthFailure.*` (unknown SecretId, wrong SecretKey, or a clock
    /// more than 5 minutes off: `AuthFailure.SignatureExpire`), or `UnauthorizedOperation*` (a
    /// valid key whose CAM policy does not allow the action). Retrying cannot fix either; the
    /// configuration (or the host's clock) must change.
    #[error("VOD refused the API key ({code}: {message}; RequestId {request_id})")]
    Credentials {
        code: String,
        message: String,
        request_id: String,
    },
    /// Any other error code, e.g. `InternalError`, `FailedOperation`, `InvalidParameterValue`
    /// (an expired EventHandle). Worth retrying later.
    #[error("VOD API error {code}: {message} (RequestId {request_id})")]
    Api {
        code: String,
        message: String,
        request_id: String,
    },
    /// No complete answer within the request timeout.
    #[error("VOD API call timed out")]
    Timeout,
    /// The request could not be sent or the answer could not be read (connection refused,
    /// reset, TLS failure). Never includes credentials or the `Authorization` header.
    #[error("VOD API transport error: {0}")]
    Transport(String),
    /// An answer that is not a Tencent Cloud API response.
    #[error("VOD API answered with something unexpected: {0}")]
    InvalidResponse(String),
}

impl VodApiError {
    /// Whether a worker should stop rather than retry: the credentials or their permissions
    /// are wrong, and only a configuration change can fix that.
    pub fn is_fatal(&self) -> bool {
        matches!(self, VodApiError::Credentials { .. })
    }

    /// The Tencent error code, for errors VOD answered with.
    pub fn code(&self) -> Option<&str> {
        match self {
            VodApiError::Credentials { code, .. } | VodApiError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Classifies an error envelope by its code.
    fn from_envelope(code: String, message: String, request_id: String) -> VodApiError {
        if code.starts_with("AuthFailure") || code.starts_with("UnauthorizedOperation") {
            VodApiError::Credentials {
                code,
                message,
                request_id,
            }
        } else {
            VodApiError::Api {
                code,
                message,
                request_id,
            }
        }
    }
}

/// Why a [`VodApi`] could not be built: a configuration problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot set up the VOD API client: {0}")]
pub struct VodApiSetupError(String);

/// A client for VOD's PullEvents and ConfirmEvents.
#[derive(Clone)]
pub struct VodApi {
    client: reqwest::Client,
    /// The endpoint with path "/", where every action is POSTed.
    url: Url,
    /// The `Host` header, as signed: host, plus `:port` when not the scheme's default.
    host: String,
    credentials: TencentCredentials,
    sub_app_id: Option<u64>,
    request_timeout: Duration,
}

impl std::fmt::Debug for VodApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Spelled out so the key can never reach a log through `{:?}`.
        f.debug_struct("VodApi")
            .field("url", &self.url.as_str())
            .field("secret_id", &self.credentials.secret_id)
            .field("sub_app_id", &self.sub_app_id)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct PullRequest {
    #[serde(rename = "SubAppId", skip_serializing_if = "Option::is_none")]
    sub_app_id: Option<u64>,
}

#[derive(Serialize)]
struct ConfirmRequest<'a> {
    #[serde(rename = "EventHandles")]
    event_handles: &'a [String],
    #[serde(rename = "SubAppId", skip_serializing_if = "Option::is_none")]
    sub_app_id: Option<u64>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "Response", borrow)]
    response: ResponseBody<'a>,
}

#[derive(Deserialize)]
struct ResponseBody<'a> {
    #[serde(rename = "Error")]
    error: Option<ErrorBody>,
    #[serde(rename = "RequestId", default)]
    request_id: Option<String>,
    #[serde(rename = "EventSet", borrow, default)]
    event_set: Option<Vec<&'a RawValue>>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "Code")]
    code: String,
    #[serde(rename = "Message", default)]
    message: Option<String>,
}

/// The two keys of an `EventContent` this client needs; the rest stays in the raw bytes.
#[derive(Deserialize)]
struct EventKeys {
    #[serde(rename = "EventHandle", default)]
    event_handle: Option<serde_json::Value>,
    #[serde(rename = "EventType", default)]
    event_type: Option<serde_json::Value>,
}

impl VodApi {
    /// A client for the API at `endpoint` (an origin such as `https://vod.tencentcloudapi.com`,
    /// with or without a trailing slash). Requests go straight to it: no proxy, TLS by rustls,
    /// no redirects (Tencent's API does not redirect, and following one would re-send a signed
    /// request elsewhere).
    pub fn new(
        endpoint: &str,
        credentials: TencentCredentials,
        sub_app_id: Option<u64>,
    ) -> Result<VodApi, VodApiSetupError> {
        let mut url = Url::parse(endpoint.trim()).map_err(|e| {
            VodApiSetupError(format!("the endpoint {endpoint:?} is not a URL: {e}"))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(VodApiSetupError(format!(
                "the endpoint {endpoint:?} must be an http(s) URL"
            )));
        }
        // TC3 signs the path "/" and the Host header: an endpoint with a path, query or user
        // info would be sent somewhere other than what is signed.
        if !matches!(url.path(), "" | "/")
            || url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(VodApiSetupError(
                "the endpoint must be a bare origin such as https://vod.tencentcloudapi.com"
                    .to_owned(),
            ));
        }
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => {
                return Err(VodApiSetupError(format!(
                    "the endpoint {endpoint:?} has no host"
                )))
            }
        };
        url.set_path("/");
        tc3::validate_secret_id(&credentials.secret_id).map_err(|_| {
            VodApiSetupError(
                "the Tencent SecretId must be letters, digits and punctuation other than / and ,"
                    .to_owned(),
            )
        })?;
        // The key is only ever an HMAC key, but an empty one is certainly a configuration slip.
        if credentials.secret_key.expose_secret().is_empty() {
            return Err(VodApiSetupError(
                "the Tencent SecretKey is empty".to_owned(),
            ));
        }
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("vodhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| VodApiSetupError(format!("building the HTTP client: {e}")))?;
        Ok(VodApi {
            client,
            url,
            host,
            credentials,
            sub_app_id,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        })
    }

    /// Replaces the per-request timeout (default [`DEFAULT_REQUEST_TIMEOUT`]); tests shorten it.
    /// Keep it above PullEvents' 5 s hold in production, or every empty poll times out.
    pub fn with_request_timeout(mut self, timeout: Duration) -> VodApi {
        self.request_timeout = timeout;
        self
    }

    /// Pulls up to 16 events. An empty or null `EventSet`, and the error code
    /// `ResourceNotFound`, all mean "nothing queued" and give `Ok(vec![])` (which one VOD uses
    /// for an empty queue is undocumented, §5.1).
    pub async fn pull_events(&self) -> Result<Vec<PulledEvent>, VodApiError> {
        let body = serde_json::to_vec(&PullRequest {
            sub_app_id: self.sub_app_id,
        })
        .map_err(|e| VodApiError::Transport(format!("encoding PullEvents: {e}")))?;
        let (status, bytes) = self.call("PullEvents", body).await?;
        let events = parse_pull_response(status, &bytes)?;
        tracing::debug!(events = events.len(), "PullEvents answered");
        Ok(events)
    }

    /// Confirms events by their handles. Any number of handles may be passed: this method sends
    /// them in calls of at most 16, in order, and stops at the first failure (handles of earlier
    /// calls are then confirmed, later ones not; unconfirmed events are simply served again).
    /// No handles: no call.
    pub async fn confirm_events(&self, handles: &[String]) -> Result<(), VodApiError> {
        for chunk in handles.chunks(MAX_HANDLES_PER_CONFIRM) {
            let body = serde_json::to_vec(&ConfirmRequest {
                event_handles: chunk,
                sub_app_id: self.sub_app_id,
            })
            .map_err(|e| VodApiError::Transport(format!("encoding ConfirmEvents: {e}")))?;
            let (status, bytes) = self.call("ConfirmEvents", body).await?;
            parse_confirm_response(status, &bytes)?;
            tracing::debug!(handles = chunk.len(), "ConfirmEvents answered");
        }
        Ok(())
    }

    /// Signs and sends one action; returns the status and the (size-limited) body.
    async fn call(
        &self,
        action: &'static str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Vec<u8>), VodApiError> {
        let headers = self.signed_headers(action, chrono::Utc::now().timestamp(), &body)?;
        let mut response = self
            .client
            .post(self.url.clone())
            .timeout(self.request_timeout)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_error(action, e))?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(action, e))?
        {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(VodApiError::InvalidResponse(format!(
                    "{action}: the answer is larger than {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((status, bytes))
    }

    /// The headers of one call, signed over `content-type;host;x-tc-action`.
    fn signed_headers(
        &self,
        action: &'static str,
        timestamp: i64,
        body: &[u8],
    ) -> Result<HeaderMap, VodApiError> {
        let request = Tc3Request {
            service: SERVICE,
            host: &self.host,
            action,
            version: API_VERSION,
            timestamp,
            content_type: JSON_CONTENT_TYPE,
            payload: body,
            signed_headers: SignedHeaders::ContentTypeHostAction,
        };
        // `new` validated everything signing checks, so this fails only for a clock outside
        // the calendar; reported as "could not send" since nothing went out.
        let signature = tc3::sign(
            &self.credentials.secret_id,
            self.credentials.secret_key.expose_secret(),
            &request,
        )
        .map_err(|e| VodApiError::Transport(format!("signing {action}: {e}")))?;
        let mut headers = HeaderMap::new();
        for (name, value) in request.headers(&signature) {
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                VodApiError::Transport(format!("{action}: the {name} header is not valid"))
            })?;
            // Keeps the signature out of any Debug output of the request.
            value.set_sensitive(name == "Authorization");
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                VodApiError::Transport(format!("{action}: {name} is not a header name"))
            })?;
            headers.insert(name, value);
        }
        Ok(headers)
    }

    fn transport_error(&self, action: &str, error: reqwest::Error) -> VodApiError {
        if error.is_timeout() {
            return VodApiError::Timeout;
        }
        // reqwest's messages name the URL (ours, credential-free) and never the headers; the
        // source chain holds the useful part ("connection refused").
        let mut causes = String::new();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            causes.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        VodApiError::Transport(format!(
            "{action} to {}: {}{causes}",
            self.host,
            error.without_url()
        ))
    }
}

/// Parses a PullEvents answer.
pub fn parse_pull_response(
    status: StatusCode,
    body: &[u8],
) -> Result<Vec<PulledEvent>, VodApiError> {
    let response = match envelope(status, body)? {
        Ok(response) => response,
        Err(error) if error.code() == Some("ResourceNotFound") => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let Some(event_set) = response.event_set else {
        return Ok(Vec::new());
    };
    event_set
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            let keys: EventKeys = serde_json::from_str(raw.get()).map_err(|e| {
                VodApiError::InvalidResponse(format!("EventSet[{i}] is not an object: {e}"))
            })?;
            let handle = match keys.event_handle {
                Some(serde_json::Value::String(h)) if !h.is_empty() => h,
                // Without a handle the event can never be confirmed: the answer is broken.
                _ => {
                    return Err(VodApiError::InvalidResponse(format!(
                        "EventSet[{i}] has no EventHandle"
                    )))
                }
            };
            let event_type = match keys.event_type {
                Some(serde_json::Value::String(t)) => t,
                _ => String::new(),
            };
            Ok(PulledEvent {
                handle,
                raw: raw.get().as_bytes().to_vec(),
                event_type,
            })
        })
        .collect()
}

/// Parses a ConfirmEvents answer: `{"Response":{"RequestId"}}` is success.
pub fn parse_confirm_response(status: StatusCode, body: &[u8]) -> Result<(), VodApiError> {
    envelope(status, body)?.map(|_| ())
}

/// The `Response` object, or the error it carries. Tencent answers errors with HTTP 200 and an
/// `Error` object; any other status without that envelope comes from something in between.
fn envelope(
    status: StatusCode,
    body: &[u8],
) -> Result<Result<ResponseBody<'_>, VodApiError>, VodApiError> {
    let parsed = serde_json::from_slice::<Envelope<'_>>(body);
    match parsed {
        Ok(Envelope { response }) => match response.error {
            Some(error) => Ok(Err(VodApiError::from_envelope(
                error.code,
                error.message.unwrap_or_default(),
                response.request_id.unwrap_or_default(),
            ))),
            None if status.is_success() => Ok(Ok(response)),
            None => Err(VodApiError::InvalidResponse(format!(
                "HTTP {status} without an error: {}",
                snippet(body)
            ))),
        },
        Err(e) if status.is_success() => Err(VodApiError::InvalidResponse(format!(
            "not a Tencent Cloud API response ({e}): {}",
            snippet(body)
        ))),
        Err(_) => Err(VodApiError::InvalidResponse(format!(
            "HTTP {status}: {}",
            snippet(body)
        ))),
    }
}

/// The start of a body, for error messages.
fn snippet(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    if body.len() > MAX {
        format!("{text}…")
    } else {
        text.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;
    use serde_json::Value;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/fixtures/vod/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn credentials(secret_id: &str, secret_key: &str) -> TencentCredentials {
        TencentCredentials {
            secret_id: secret_id.to_owned(),
            secret_key: SecretString::from(secret_key.to_owned()),
        }
    }

    #[test]
    fn pulled_events_keep_their_exact_bytes() {
        let body = fixture("pullevents-response.json");
        let events = parse_pull_response(StatusCode::OK, &body).expect("parses");
        let handles: Vec<_> = events.iter().map(|e| e.handle.as_str()).collect();
        assert_eq!(handles, ["EventHandle1", "EventHandle2", "EventHandle3"]);
        let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(
            types,
            ["NewFileUpload", "ProcedureStateChanged", "FileDeleted"]
        );

        let whole: Value = serde_json::from_slice(&body).expect("JSON");
        let text = String::from_utf8(body).expect("UTF-8");
        for (i, event) in events.iter().enumerate() {
            let raw = std::str::from_utf8(&event.raw).expect("UTF-8");
            // Byte-identical: a slice of the answer, not a re-serialisation.
            assert!(text.contains(raw), "event {i} is a slice of the body");
            assert!(raw.starts_with('{') && raw.ends_with('}'));
            let parsed: Value = serde_json::from_str(raw).expect("JSON");
            assert_eq!(parsed, whole["Response"]["EventSet"][i]);
        }
        // The non-ASCII name survives untouched.
        assert!(String::from_utf8_lossy(&events[0].raw).contains("Product demo – 第1集"));
    }

    #[test]
    fn empty_null_absent_and_resource_not_found_mean_no_events() {
        let empty = fixture("pullevents-response-empty.json");
        assert_eq!(parse_pull_response(StatusCode::OK, &empty), Ok(vec![]));
        for body in [
            r#"{"Response":{"EventSet":null,"RequestId":"r1"}}"#,
            r#"{"Response":{"RequestId":"r2"}}"#,
            r#"{"Response":{"Error":{"Code":"ResourceNotFound","Message":"no events"},"RequestId":"r3"}}"#,
        ] {
            assert_eq!(
                parse_pull_response(StatusCode::OK, body.as_bytes()),
                Ok(vec![]),
                "{body}"
            );
        }
    }

    #[test]
    fn error_envelopes_are_classified() {
        let error = parse_pull_response(StatusCode::OK, &fixture("api-error-response.json"))
            .expect_err("an error");
        assert_eq!(
            error,
            VodApiError::Api {
                code: "InvalidParameterValue".into(),
                message: "EventHandles expired or invalid".into(),
                request_id: "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9".into(),
            }
        );
        assert!(!error.is_fatal());
        assert_eq!(error.code(), Some("InvalidParameterValue"));

        let cases = [
            ("AuthFailure.SignatureFailure", true),
            ("AuthFailure.SecretIdNotFound", true),
            ("AuthFailure.SignatureExpire", true),
            ("UnauthorizedOperation", true),
            ("InternalError", false),
            ("FailedOperation", false),
            ("RequestLimitExceeded", false),
        ];
        for (code, fatal) in cases {
            let body = format!(
                r#"{{"Response":{{"Error":{{"Code":"{code}","Message":"m"}},"RequestId":"r"}}}}"#
            );
            let error =
                parse_confirm_response(StatusCode::OK, body.as_bytes()).expect_err("an error");
            assert_eq!(error.is_fatal(), fatal, "{code}");
            assert_eq!(
                matches!(error, VodApiError::Credentials { .. }),
                fatal,
                "{code}"
            );
        }
        // ResourceNotFound is "no events" only for PullEvents.
        let not_found =
            r#"{"Response":{"Error":{"Code":"ResourceNotFound","Message":"m"},"RequestId":"r"}}"#;
        assert!(matches!(
            parse_confirm_response(StatusCode::OK, not_found.as_bytes()),
            Err(VodApiError::Api { .. })
        ));
    }

    #[test]
    fn confirm_success_is_a_request_id() {
        assert_eq!(
            parse_confirm_response(StatusCode::OK, &fixture("confirmevents-response.json")),
            Ok(())
        );
    }

    #[test]
    fn answers_that_are_not_the_api_are_invalid() {
        for (status, body) in [
            (StatusCode::OK, "<html>gateway</html>"),
            (StatusCode::OK, r#"{"Error":"x"}"#),
            (
                StatusCode::OK,
                r#"{"Response":{"EventSet":[{"EventType":"NewFileUpload"}]}}"#,
            ),
            (StatusCode::OK, r#"{"Response":{"EventSet":[17]}}"#),
            (StatusCode::BAD_GATEWAY, "bad gateway"),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"Response":{"RequestId":"r"}}"#,
            ),
        ] {
            let got = parse_pull_response(status, body.as_bytes());
            assert!(
                matches!(got, Err(VodApiError::InvalidResponse(_))),
                "{status} {body}: {got:?}"
            );
        }
        // An envelope error keeps its meaning whatever the status.
        let body =
            r#"{"Response":{"Error":{"Code":"InternalError","Message":"m"},"RequestId":"r"}}"#;
        assert!(matches!(
            parse_pull_response(StatusCode::INTERNAL_SERVER_ERROR, body.as_bytes()),
            Err(VodApiError::Api { .. })
        ));
    }

    #[test]
    fn an_event_without_a_type_is_kept() {
        let body = r#"{"Response":{"EventSet":[{"EventHandle":"h1","Foo":1}],"RequestId":"r"}}"#;
        let events = parse_pull_response(StatusCode::OK, body.as_bytes()).expect("parses");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_type, "");
        assert_eq!(events[0].raw, br#"{"EventHandle":"h1","Foo":1}"#);
    }

    /// The request bodies and signature match the VOD vectors in test-vectors.json.
    #[test]
    fn requests_match_the_vod_vectors() {
        let api = VodApi::new(
            "https://vod.tencentcloudapi.com",
            credentials(
                "AKID********************************",
                "********************************",
            ),
            Some(1_500_000_001),
        )
        .expect("valid");
        let pull = serde_json::to_vec(&PullRequest {
            sub_app_id: api.sub_app_id,
        })
        .expect("encodes");
        assert_eq!(pull, br#"{"SubAppId":1500000001}"#);
        let headers = api
            .signed_headers("PullEvents", 1_700_000_000, &pull)
            .expect("signs");
        assert_eq!(
            headers["authorization"],
            "TC3-HMAC-SHA256 Credential=AKID********************************/2023-11-14/vod/\
             tc3_request, SignedHeaders=content-type;host;x-tc-action, \
             Signature=b3ef136c5732bf18afc5882fda5f12718ea2aba9540fd987aad66a0663020719"
        );
        assert!(headers["authorization"].is_sensitive());
        assert_eq!(headers["content-type"], JSON_CONTENT_TYPE);
        assert_eq!(headers["host"], "vod.tencentcloudapi.com");
        assert_eq!(headers["x-tc-action"], "PullEvents");
        assert_eq!(headers["x-tc-version"], "2018-07-17");
        assert_eq!(headers["x-tc-timestamp"], "1700000000");

        let handles = ["EventHandle1".to_owned(), "EventHandle2".to_owned()];
        let confirm = serde_json::to_vec(&ConfirmRequest {
            event_handles: &handles,
            sub_app_id: Some(1_500_000_001),
        })
        .expect("encodes");
        assert_eq!(
            confirm,
            br#"{"EventHandles":["EventHandle1","EventHandle2"],"SubAppId":1500000001}"#
        );
        let without = serde_json::to_vec(&PullRequest { sub_app_id: None }).expect("encodes");
        assert_eq!(without, b"{}");
    }

    #[test]
    fn the_host_names_a_non_default_port() {
        let creds = || credentials("AKIDexample", "key");
        let api = VodApi::new("http://127.0.0.1:8080/", creds(), None).expect("valid");
        assert_eq!(api.host, "127.0.0.1:8080");
        assert_eq!(api.url.as_str(), "http://127.0.0.1:8080/");
        let api =
            VodApi::new("https://vod.intl.tencentcloudapi.com:443", creds(), None).expect("valid");
        assert_eq!(api.host, "vod.intl.tencentcloudapi.com");
        for bad in [
            "vod.tencentcloudapi.com",
            "ftp://vod.tencentcloudapi.com",
            "https://vod.tencentcloudapi.com/v3",
            "https://vod.tencentcloudapi.com/?a=1",
            "https://user:pw@vod.tencentcloudapi.com",
        ] {
            assert!(VodApi::new(bad, creds(), None).is_err(), "{bad}");
        }
        assert!(VodApi::new(
            "https://vod.tencentcloudapi.com",
            credentials("AKID x", "k"),
            None
        )
        .is_err());
        assert!(VodApi::new(
            "https://vod.tencentcloudapi.com",
            credentials("AKID", ""),
            None
        )
        .is_err());
    }

    #[test]
    fn debug_output_hides_the_key() {
        let api = VodApi::new(
            "https://vod.tencentcloudapi.com",
            credentials("AKIDexample", "very-secret-key"),
            None,
        )
        .expect("valid");
        let text = format!("{api:?}");
        assert!(text.contains("AKIDexample"));
        assert!(!text.contains("very-secret-key"));
    }

    #[tokio::test]
    async fn transport_errors_name_no_secret() {
        // A port nothing listens on: bind one, then drop it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let api = VodApi::new(
            &format!("http://127.0.0.1:{port}"),
            credentials("AKIDexample", "very-secret-key"),
            None,
        )
        .expect("valid");
        let error = api.pull_events().await.expect_err("nothing listens");
        let VodApiError::Transport(text) = &error else {
            panic!("expected a transport error, got {error:?}");
        };
        assert!(text.contains("PullEvents"), "{text}");
        assert!(
            !text.contains("very-secret-key") && !text.contains("Signature="),
            "{text}"
        );
        assert!(!error.is_fatal());
    }
}
