//! A stand-in for VOD's PullEvents/ConfirmEvents API that checks every TC3 signature independently.
//!
//! The verifier here shares no code with vodhook's signer: it rebuilds the canonical request from
//! the headers and body actually received, so a client bug cannot be mirrored by the check.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The longest VOD holds an empty poll (vod-spec.md §5.1).
pub const MAX_HOLD: Duration = Duration::from_secs(5);
/// At most this many events per PullEvents and handles per ConfirmEvents.
pub const BATCH: usize = 16;
/// Tencent refuses a timestamp more than 5 minutes away from its clock.
pub const MAX_SKEW_SECS: i64 = 300;
pub const API_VERSION: &str = "2018-07-17";

// ---------------------------------------------------------------------------------------------
// The TC3 verifier.

/// A refusal, with the Tencent error code the stand-in answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: &'static str,
    pub message: String,
}

fn reject(code: &'static str, message: impl Into<String>) -> Rejection {
    Rejection {
        code,
        message: message.into(),
    }
}

/// The request as received: method, path, query, headers (names lowercased, values as sent,
/// repeated names kept) and body.
pub struct Received<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl Received<'_> {
    fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).first().copied()
    }
}

/// What the verifier accepts: one key pair and service, at the time `now` (Unix seconds).
pub struct Expected<'a> {
    pub secret_id: &'a str,
    pub secret_key: &'a str,
    pub service: &'a str,
    pub now: i64,
}

/// Checks a request's `Authorization` header the way Tencent Cloud does.
pub fn verify_tc3(request: &Received<'_>, expected: &Expected<'_>) -> Result<(), Rejection> {
    let invalid = |why: &str| {
        reject(
            "AuthFailure.InvalidAuthorization",
            format!("Authorization header is not TC3-HMAC-SHA256: {why}"),
        )
    };
    let authorization = match request.header_values("authorization").as_slice() {
        [one] => *one,
        [] => return Err(invalid("missing")),
        _ => return Err(invalid("repeated")),
    };
    let (algorithm, rest) = authorization
        .split_once(' ')
        .ok_or_else(|| invalid("no parameters"))?;
    if algorithm != "TC3-HMAC-SHA256" {
        return Err(invalid("unknown algorithm"));
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| invalid("a parameter without '='"))?;
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => return Err(invalid("an unknown parameter")),
        };
        if slot.replace(value).is_some() {
            return Err(invalid("a repeated parameter"));
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(invalid(
            "Credential, SignedHeaders and Signature are all required",
        ));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [secret_id, date, service, terminator] = scope.as_slice() else {
        return Err(invalid(
            "Credential is not SecretId/Date/service/tc3_request",
        ));
    };
    if *terminator != "tc3_request" {
        return Err(invalid("the credential scope does not end in tc3_request"));
    }
    if *secret_id != expected.secret_id {
        return Err(reject(
            "AuthFailure.SecretIdNotFound",
            "The SecretId is not found, please ensure that your SecretId is correct.",
        ));
    }
    let timestamp: i64 = match request.header_values("x-tc-timestamp").as_slice() {
        [one] => one
            .trim()
            .parse()
            .map_err(|_| reject("InvalidParameter", "X-TC-Timestamp is not a Unix timestamp"))?,
        _ => {
            return Err(reject(
                "MissingParameter",
                "exactly one X-TC-Timestamp header is required",
            ))
        }
    };
    if (expected.now - timestamp).abs() > MAX_SKEW_SECS {
        return Err(reject(
            "AuthFailure.SignatureExpire",
            format!(
                "Signature expired. Timestamp {timestamp} is more than {MAX_SKEW_SECS} s from \
                 server time {}",
                expected.now
            ),
        ));
    }
    // The date is computed independently of chrono: days since the epoch to a civil date.
    if *date != civil_date(timestamp) {
        return Err(reject(
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be validated: the credential date is not the \
             UTC date of X-TC-Timestamp.",
        ));
    }
    if *service != expected.service {
        return Err(invalid("the credential scope names another service"));
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    let well_formed = names.iter().all(|n| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }) && names.windows(2).all(|w| w[0] < w[1]);
    if !well_formed {
        return Err(invalid(
            "SignedHeaders must be lowercase names, sorted, without repeats",
        ));
    }
    if !names.contains(&"content-type") || !names.contains(&"host") {
        return Err(invalid("SignedHeaders must include content-type and host"));
    }
    let mut canonical_headers = String::new();
    for name in &names {
        let value = match request.header_values(name).as_slice() {
            [one] => one.trim().to_ascii_lowercase(),
            [] => return Err(invalid(&format!("the signed header {name} is missing"))),
            _ => return Err(invalid(&format!("the signed header {name} is repeated"))),
        };
        canonical_headers.push_str(&format!("{name}:{value}\n"));
    }
    let canonical_request = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        request.method,
        request.path,
        request.query,
        hex::encode(Sha256::digest(request.body))
    );
    let string_to_sign = format!(
        "TC3-HMAC-SHA256\n{timestamp}\n{date}/{service}/tc3_request\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let k_date = hmac(
        format!("TC3{}", expected.secret_key).as_bytes(),
        date.as_bytes(),
    );
    let k_service = hmac(&k_date, service.as_bytes());
    let k_signing = hmac(&k_service, b"tc3_request");
    let want = hex::encode(hmac(&k_signing, string_to_sign.as_bytes()));
    let matches: bool = subtle::ConstantTimeEq::ct_eq(want.as_bytes(), signature.as_bytes()).into();
    if !matches {
        return Err(reject(
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be validated. Please check your signature is \
             correct.",
        ));
    }
    Ok(())
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// `YYYY-MM-DD` of a Unix timestamp in UTC (Howard Hinnant's days-to-civil algorithm).
fn civil_date(timestamp: i64) -> String {
    let z = timestamp.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

// ---------------------------------------------------------------------------------------------
// The stand-in server.

/// What an empty poll answers once its hold is over (VOD's choice is undocumented, §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyReply {
    /// `"EventSet": []` (the default).
    EmptySet,
    /// `"EventSet": null`.
    Null,
    /// The error code `ResourceNotFound`.
    ResourceNotFound,
}

/// One event confirmed, with the handle that confirmed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Confirmed {
    pub handle: String,
    /// The event as enqueued (without `EventHandle`).
    pub event: Value,
}

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    /// `X-TC-Action`, if sent.
    pub action: Option<String>,
    /// The body's `SubAppId`, if any.
    pub sub_app_id: Option<u64>,
    /// PullEvents: the handles served; ConfirmEvents: the handles sent.
    pub handles: Vec<String>,
    /// The error code answered, if any.
    pub error: Option<String>,
    /// Whether the request was held by `stall_next` (and then answered with no effect).
    pub stalled: bool,
}

#[derive(Debug)]
enum SlotState {
    Ready,
    Served { handle: String, until: Instant },
    Confirmed { handle: String },
}

#[derive(Debug)]
struct Slot {
    event: Map<String, Value>,
    state: SlotState,
}

struct Config {
    hold: Duration,
    window: Duration,
    empty_reply: EmptyReply,
    required_sub_app_id: Option<u64>,
    fail_pulls: Vec<String>,
    fail_confirms: Vec<String>,
    stalls: Vec<Duration>,
}

struct State {
    secret_id: String,
    secret_key: String,
    config: Config,
    slots: Vec<Slot>,
    confirmed: Vec<Confirmed>,
    served: usize,
    bad_signatures: usize,
    log: Vec<LoggedRequest>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes held polls when events are enqueued.
    enqueued: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("stand-in state lock")
    }
}

/// VOD's reliable-callback queue behind a local HTTP server.
pub struct VodStandIn {
    url: String,
    shared: Arc<Shared>,
    server: actix_web::dev::ServerHandle,
}

impl VodStandIn {
    /// Serves on 127.0.0.1 at a free port; accepts only requests signed with this key pair.
    pub async fn start(secret_id: &str, secret_key: &str) -> VodStandIn {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                secret_id: secret_id.to_owned(),
                secret_key: secret_key.to_owned(),
                config: Config {
                    hold: Duration::from_millis(200),
                    window: Duration::from_secs(30),
                    empty_reply: EmptyReply::EmptySet,
                    required_sub_app_id: None,
                    fail_pulls: Vec::new(),
                    fail_confirms: Vec::new(),
                    stalls: Vec::new(),
                },
                slots: Vec::new(),
                confirmed: Vec::new(),
                served: 0,
                bad_signatures: 0,
                log: Vec::new(),
            }),
            enqueued: Notify::new(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!(
            "http://127.0.0.1:{}",
            listener.local_addr().expect("addr").port()
        );
        let data = shared.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(data.clone()))
                .default_service(web::to(answer))
        })
        .workers(2)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        VodStandIn {
            url,
            shared,
            server: handle,
        }
    }

    /// The endpoint base, like `https://vod.tencentcloudapi.com` (no trailing slash).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Queues events (EventContent objects; any `EventHandle` is dropped, each serve gets a
    /// fresh one) and wakes held polls.
    pub fn enqueue(&self, events: Vec<Value>) {
        let mut state = self.shared.lock();
        for event in events {
            let Value::Object(mut event) = event else {
                panic!("an EventContent must be a JSON object");
            };
            event.remove("EventHandle");
            state.slots.push(Slot {
                event,
                state: SlotState::Ready,
            });
        }
        drop(state);
        self.shared.enqueued.notify_waiters();
    }

    /// How long an empty poll is held before answering (default 200 ms; at most 5 s, as VOD).
    pub fn set_hold(&self, hold: Duration) {
        self.shared.lock().config.hold = hold.min(MAX_HOLD);
    }

    /// How long a served event waits for its confirmation before it is served again with a
    /// new handle, the old one becoming invalid (default 30 s, as VOD).
    pub fn set_redelivery_window(&self, window: Duration) {
        self.shared.lock().config.window = window;
    }

    /// How an empty poll is answered (default `EventSet: []`).
    pub fn set_empty_reply(&self, reply: EmptyReply) {
        self.shared.lock().config.empty_reply = reply;
    }

    /// Refuses calls whose body does not carry this `SubAppId` with
    /// `InvalidParameterValue.SubAppId` (default: any or none accepted).
    pub fn require_sub_app_id(&self, sub_app_id: Option<u64>) {
        self.shared.lock().config.required_sub_app_id = sub_app_id;
    }

    /// Answers the next `n` well-signed PullEvents with this error code (and no events).
    pub fn fail_next(&self, n: usize, code: &str) {
        let mut state = self.shared.lock();
        state
            .config
            .fail_pulls
            .extend(std::iter::repeat_n(code.to_owned(), n));
    }

    /// Answers the next `n` well-signed ConfirmEvents with this error code, confirming nothing.
    pub fn fail_next_confirm(&self, n: usize, code: &str) {
        let mut state = self.shared.lock();
        state
            .config
            .fail_confirms
            .extend(std::iter::repeat_n(code.to_owned(), n));
    }

    /// Holds the next `n` requests (of any action) for `duration` before answering
    /// `InternalError`. A stalled request has no effect at all: nothing is served or confirmed,
    /// so the outcome does not depend on whether the client is still waiting.
    pub fn stall_next(&self, n: usize, duration: Duration) {
        let mut state = self.shared.lock();
        state.config.stalls.extend(std::iter::repeat_n(duration, n));
    }

    /// The events confirmed so far, in order of confirmation.
    pub fn confirmed(&self) -> Vec<Confirmed> {
        self.shared.lock().confirmed.clone()
    }

    /// Events handed out by PullEvents so far; an event served twice counts twice.
    pub fn served_count(&self) -> usize {
        self.shared.lock().served
    }

    /// Events enqueued and not yet confirmed.
    pub fn pending_count(&self) -> usize {
        self.shared
            .lock()
            .slots
            .iter()
            .filter(|s| !matches!(s.state, SlotState::Confirmed { .. }))
            .count()
    }

    /// Requests refused by the TC3 verifier (any `AuthFailure.*`, or a missing timestamp).
    pub fn bad_signatures(&self) -> usize {
        self.shared.lock().bad_signatures
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.lock().log.clone()
    }

    /// Waits until `count` events are confirmed, or panics after `within`.
    pub async fn wait_for_confirmed(&self, count: usize, within: Duration) -> Vec<Confirmed> {
        let deadline = Instant::now() + within;
        loop {
            let confirmed = self.confirmed();
            if confirmed.len() >= count {
                return confirmed;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {count} events were confirmed in {within:?}",
                confirmed.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for VodStandIn {
    fn drop(&mut self) {
        let server = self.server.clone();
        tokio::spawn(async move { server.stop(false).await });
    }
}

fn envelope_ok(mut response: Map<String, Value>) -> HttpResponse {
    response.insert(
        "RequestId".into(),
        Value::String(uuid::Uuid::new_v4().to_string()),
    );
    HttpResponse::Ok().json(json!({ "Response": response }))
}

/// Tencent answers errors with HTTP 200 and an `Error` object.
fn envelope_error(code: &str, message: &str) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "Response": {
            "Error": { "Code": code, "Message": message },
            "RequestId": uuid::Uuid::new_v4().to_string(),
        }
    }))
}

async fn answer(
    req: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Arc<Shared>>,
) -> HttpResponse {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let received = Received {
        method: req.method().as_str(),
        path: req.path(),
        query: req.query_string(),
        headers: &headers,
        body: &body,
    };
    let action = received.header("x-tc-action").map(str::to_owned);
    let parsed: Option<Map<String, Value>> = serde_json::from_slice(&body).ok();
    let sub_app_id = parsed
        .as_ref()
        .and_then(|b| b.get("SubAppId"))
        .and_then(Value::as_u64);
    let mut entry = LoggedRequest {
        action: action.clone(),
        sub_app_id,
        handles: Vec::new(),
        error: None,
        stalled: false,
    };

    let stall = {
        let mut state = shared.lock();
        (!state.config.stalls.is_empty()).then(|| state.config.stalls.remove(0))
    };
    if let Some(duration) = stall {
        // Logged up front: the outcome is fixed, and the client has usually gone by the end.
        entry.stalled = true;
        entry.error = Some("InternalError".into());
        shared.lock().log.push(entry);
        tokio::time::sleep(duration).await;
        return envelope_error("InternalError", "stand-in: the request was stalled");
    }

    let outcome = handle(&received, action.as_deref(), parsed, &shared, &mut entry).await;
    let response = match outcome {
        Ok(response) => response,
        Err(rejection) => {
            entry.error = Some(rejection.code.to_owned());
            envelope_error(rejection.code, &rejection.message)
        }
    };
    shared.lock().log.push(entry);
    response
}

async fn handle(
    received: &Received<'_>,
    action: Option<&str>,
    body: Option<Map<String, Value>>,
    shared: &Shared,
    entry: &mut LoggedRequest,
) -> Result<HttpResponse, Rejection> {
    let verdict = {
        let state = shared.lock();
        verify_tc3(
            received,
            &Expected {
                secret_id: &state.secret_id,
                secret_key: &state.secret_key,
                service: "vod",
                now: unix_now(),
            },
        )
    };
    if let Err(rejection) = verdict {
        shared.lock().bad_signatures += 1;
        return Err(rejection);
    }
    if received.method != "POST" || received.path != "/" || !received.query.is_empty() {
        return Err(reject(
            "InvalidParameter",
            "the stand-in takes POST / with a JSON body only",
        ));
    }
    let content_type = received.header("content-type").unwrap_or_default();
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return Err(reject(
            "InvalidParameter",
            "Content-Type must be application/json",
        ));
    }
    match received.header_values("x-tc-version").as_slice() {
        [API_VERSION] => {}
        [] => return Err(reject("MissingParameter", "X-TC-Version is required")),
        _ => {
            return Err(reject(
                "NoSuchVersion",
                format!("VOD's API version is {API_VERSION}"),
            ))
        }
    }
    let Some(body) = body else {
        return Err(reject("InvalidParameter", "the body is not a JSON object"));
    };
    let allowed: &[&str] = match action {
        Some("PullEvents") => &["ExtInfo", "SubAppId"],
        Some("ConfirmEvents") => &["EventHandles", "ExtInfo", "SubAppId"],
        Some(other) => {
            let message = format!("the action {other} does not exist here");
            return Err(reject("InvalidAction", message));
        }
        None => return Err(reject("MissingParameter", "X-TC-Action is required")),
    };
    if let Some(key) = body.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(reject(
            "UnknownParameter",
            format!("the parameter {key} is not recognized"),
        ));
    }
    match body.get("SubAppId") {
        None | Some(Value::Null) => {}
        Some(v) if v.as_u64().is_some() => {}
        Some(_) => {
            return Err(reject(
                "InvalidParameterValue",
                "SubAppId must be an unsigned integer",
            ))
        }
    }
    let required = shared.lock().config.required_sub_app_id;
    if let Some(required) = required {
        if entry.sub_app_id != Some(required) {
            return Err(reject(
                "InvalidParameterValue.SubAppId",
                "the SubAppId is missing or not this account's",
            ));
        }
    }
    if action == Some("PullEvents") {
        pull(shared, entry).await
    } else {
        confirm(&body, shared, entry)
    }
}

async fn pull(shared: &Shared, entry: &mut LoggedRequest) -> Result<HttpResponse, Rejection> {
    let (hold, scripted) = {
        let mut state = shared.lock();
        let scripted =
            (!state.config.fail_pulls.is_empty()).then(|| state.config.fail_pulls.remove(0));
        (state.config.hold, scripted)
    };
    if let Some(code) = scripted {
        return Err(Rejection {
            code: leak(code),
            message: "stand-in: scripted failure".into(),
        });
    }
    let deadline = Instant::now() + hold;
    loop {
        // Registered before looking, so an enqueue between the look and the wait still wakes.
        let notified = shared.enqueued.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let next_expiry = {
            let mut state = shared.lock();
            let now = Instant::now();
            let window = state.config.window;
            let mut served = Vec::new();
            for slot in state.slots.iter_mut() {
                if served.len() == BATCH {
                    break;
                }
                let available = match &slot.state {
                    SlotState::Ready => true,
                    SlotState::Served { until, .. } => *until <= now,
                    SlotState::Confirmed { .. } => false,
                };
                if available {
                    let handle = format!("standin-{}", uuid::Uuid::new_v4().simple());
                    slot.state = SlotState::Served {
                        handle: handle.clone(),
                        until: now + window,
                    };
                    let mut content = Map::new();
                    content.insert("EventHandle".into(), Value::String(handle.clone()));
                    content.extend(slot.event.clone());
                    served.push((handle, Value::Object(content)));
                }
            }
            if !served.is_empty() {
                state.served += served.len();
                let (handles, events): (Vec<String>, Vec<Value>) = served.into_iter().unzip();
                entry.handles = handles;
                let mut response = Map::new();
                response.insert("EventSet".into(), Value::Array(events));
                return Ok(envelope_ok(response));
            }
            state
                .slots
                .iter()
                .filter_map(|s| match &s.state {
                    SlotState::Served { until, .. } => Some(*until),
                    _ => None,
                })
                .min()
        };
        let now = Instant::now();
        if now >= deadline {
            let empty_reply = shared.lock().config.empty_reply;
            let mut response = Map::new();
            return match empty_reply {
                EmptyReply::EmptySet => {
                    response.insert("EventSet".into(), json!([]));
                    Ok(envelope_ok(response))
                }
                EmptyReply::Null => {
                    response.insert("EventSet".into(), Value::Null);
                    Ok(envelope_ok(response))
                }
                EmptyReply::ResourceNotFound => {
                    Err(reject("ResourceNotFound", "no event notifications to pull"))
                }
            };
        }
        let wake = next_expiry.map_or(deadline, |t| t.min(deadline));
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

fn confirm(
    body: &Map<String, Value>,
    shared: &Shared,
    entry: &mut LoggedRequest,
) -> Result<HttpResponse, Rejection> {
    let handles: Vec<String> = match body.get("EventHandles") {
        None => return Err(reject("MissingParameter", "EventHandles is required")),
        Some(Value::Array(items)) => items
            .iter()
            .map(|h| h.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                reject(
                    "InvalidParameterValue",
                    "EventHandles must be an array of strings",
                )
            })?,
        Some(_) => {
            return Err(reject(
                "InvalidParameterValue",
                "EventHandles must be an array of strings",
            ))
        }
    };
    entry.handles = handles.clone();
    if handles.is_empty() || handles.len() > BATCH {
        return Err(reject(
            "InvalidParameterValue",
            format!(
                "EventHandles must hold 1 to {BATCH} handles, got {}",
                handles.len()
            ),
        ));
    }
    let mut state = shared.lock();
    if !state.config.fail_confirms.is_empty() {
        let code = state.config.fail_confirms.remove(0);
        return Err(Rejection {
            code: leak(code),
            message: "stand-in: scripted failure".into(),
        });
    }
    let now = Instant::now();
    // All or nothing: a call with any bad handle confirms none of them (the strictest reading
    // of an undocumented behaviour, so a worker cannot rely on partial success).
    let mut targets = Vec::new();
    for handle in &handles {
        let position = state.slots.iter().position(|slot| match &slot.state {
            SlotState::Served { handle: h, until } => h == handle && *until > now,
            // Confirming twice is accepted: a retry after a lost answer must not fail.
            SlotState::Confirmed { handle: h } => h == handle,
            SlotState::Ready => false,
        });
        match position {
            Some(i) => targets.push(i),
            None => {
                return Err(reject(
                    "InvalidParameterValue",
                    format!("(4000) EventHandle {handle} is invalid or has expired"),
                ))
            }
        }
    }
    for (i, handle) in targets.into_iter().zip(handles) {
        if matches!(state.slots[i].state, SlotState::Served { .. }) {
            state.slots[i].state = SlotState::Confirmed {
                handle: handle.clone(),
            };
            let event = Value::Object(state.slots[i].event.clone());
            state.confirmed.push(Confirmed { handle, event });
        }
    }
    Ok(envelope_ok(Map::new()))
}

/// Error codes are `&'static str` in `Rejection`; scripted ones are few and test-lived.
fn leak(code: String) -> &'static str {
    Box::leak(code.into_boxed_str())
}

// ---------------------------------------------------------------------------------------------
// Tests: the verifier on the published vectors, then the stand-in driven by vodhook's client.

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;
    use vodhook::config::TencentCredentials;
    use vodhook::tencent::vod_api::{VodApi, VodApiError};

    const SECRET_ID: &str = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE";
    const SECRET_KEY: &str = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE";
    const SUB_APP_ID: u64 = 1_500_000_001;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/fixtures/vod/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).expect("fixture is JSON")
    }

    /// The three EventContents of pullevents-response.json, without their handles.
    fn fixture_events() -> Vec<Value> {
        let mut events = fixture("pullevents-response.json")["Response"]["EventSet"]
            .as_array()
            .expect("EventSet")
            .clone();
        for event in &mut events {
            event.as_object_mut().expect("object").remove("EventHandle");
        }
        events
    }

    fn client(standin: &VodStandIn, secret_key: &str) -> VodApi {
        VodApi::new(
            &standin.url(),
            TencentCredentials {
                secret_id: SECRET_ID.into(),
                secret_key: SecretString::from(secret_key.to_owned()),
            },
            Some(SUB_APP_ID),
        )
        .expect("client")
    }

    fn without_handle(raw: &[u8]) -> Value {
        let mut value: Value = serde_json::from_slice(raw).expect("raw is JSON");
        value.as_object_mut().expect("object").remove("EventHandle");
        value
    }

    #[test]
    fn civil_date_agrees_with_known_dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(1_551_113_065), "2019-02-25");
        assert_eq!(civil_date(1_700_000_000), "2023-11-14");
        assert_eq!(civil_date(951_782_400), "2000-02-29");
        assert_eq!(civil_date(-1), "1969-12-31");
    }

    /// The verifier accepts every published TC3 vector and refuses each kind of tampering.
    #[test]
    fn verifier_accepts_the_published_vectors_and_nothing_else() {
        let all = fixture("test-vectors.json");
        let vectors = all["tc3_hmac_sha256"].as_array().expect("vectors");
        assert_eq!(vectors.len(), 4);
        for vector in vectors {
            let label = vector["label"].as_str().expect("label");
            let input = &vector["inputs"];
            let s = |k: &str| input[k].as_str().expect(k).to_owned();
            let timestamp = input["timestamp"].as_i64().expect("timestamp");
            let authorization = vector["expected"]["authorization"]
                .as_str()
                .expect("authorization")
                .to_owned();
            let headers = |authorization: &str| {
                vec![
                    ("authorization".to_owned(), authorization.to_owned()),
                    ("content-type".to_owned(), s("content_type")),
                    ("host".to_owned(), s("host")),
                    ("x-tc-action".to_owned(), s("action")),
                    ("x-tc-timestamp".to_owned(), timestamp.to_string()),
                    ("x-tc-version".to_owned(), s("version")),
                ]
            };
            let body = s("payload");
            let verify = |headers: &[(String, String)], body: &[u8], now: i64, id: &str| {
                verify_tc3(
                    &Received {
                        method: "POST",
                        path: "/",
                        query: "",
                        headers,
                        body,
                    },
                    &Expected {
                        secret_id: id,
                        secret_key: &s("secret_key"),
                        service: &s("service"),
                        now,
                    },
                )
            };
            let id = s("secret_id");
            let good = headers(&authorization);
            assert_eq!(
                verify(&good, body.as_bytes(), timestamp + 10, &id),
                Ok(()),
                "{label}"
            );

            let code = |r: Result<(), Rejection>| r.expect_err("refused").code;
            // One flipped hex digit of the signature.
            let mut flipped = authorization.clone();
            let last = flipped.pop().expect("non-empty");
            flipped.push(if last == '0' { '1' } else { '0' });
            assert_eq!(
                code(verify(&headers(&flipped), body.as_bytes(), timestamp, &id)),
                "AuthFailure.SignatureFailure",
                "{label}: flipped signature"
            );
            // One flipped byte of the body.
            let mut tampered = body.clone().into_bytes();
            tampered[2] ^= 0x01;
            assert_eq!(
                code(verify(&good, &tampered, timestamp, &id)),
                "AuthFailure.SignatureFailure",
                "{label}: flipped body"
            );
            // A signed header changed in transit.
            let mut moved = good.clone();
            moved[2].1 = "elsewhere.example.com".into();
            assert_eq!(
                code(verify(&moved, body.as_bytes(), timestamp, &id)),
                "AuthFailure.SignatureFailure",
                "{label}: changed host"
            );
            assert_eq!(
                code(verify(&good, body.as_bytes(), timestamp, "AKIDsomeoneelse")),
                "AuthFailure.SecretIdNotFound",
                "{label}: other SecretId"
            );
            assert_eq!(
                code(verify(&good, body.as_bytes(), timestamp + 301, &id)),
                "AuthFailure.SignatureExpire",
                "{label}: stale"
            );
            assert_eq!(
                code(verify(&good, body.as_bytes(), timestamp - 301, &id)),
                "AuthFailure.SignatureExpire",
                "{label}: from the future"
            );
            // Dropping `host` from SignedHeaders is refused before any signature check.
            let unsigned_host = authorization.replace("content-type;host", "content-type");
            assert_eq!(
                code(verify(
                    &headers(&unsigned_host),
                    body.as_bytes(),
                    timestamp,
                    &id
                )),
                "AuthFailure.InvalidAuthorization",
                "{label}: host not signed"
            );
            // The credential date must be the timestamp's UTC date.
            let wrong_date = authorization.replacen(
                &format!("/{}/", vector["expected"]["date"].as_str().expect("date")),
                "/2019-02-24/",
                1,
            );
            assert_eq!(
                code(verify(
                    &headers(&wrong_date),
                    body.as_bytes(),
                    timestamp,
                    &id
                )),
                "AuthFailure.SignatureFailure",
                "{label}: wrong date"
            );
            let no_auth: Vec<_> = good[1..].to_vec();
            assert_eq!(
                code(verify(&no_auth, body.as_bytes(), timestamp, &id)),
                "AuthFailure.InvalidAuthorization",
                "{label}: no Authorization"
            );
        }
    }

    #[tokio::test]
    async fn pull_serves_the_enqueued_events_and_confirm_settles_them() {
        let standin = VodStandIn::start(SECRET_ID, SECRET_KEY).await;
        standin.require_sub_app_id(Some(SUB_APP_ID));
        let events = fixture_events();
        standin.enqueue(events.clone());
        let api = client(&standin, SECRET_KEY);

        let pulled = api.pull_events().await.expect("pull");
        assert_eq!(pulled.len(), 3);
        let types: Vec<_> = pulled.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(
            types,
            ["NewFileUpload", "ProcedureStateChanged", "FileDeleted"]
        );
        for (event, enqueued) in pulled.iter().zip(&events) {
            let raw: Value = serde_json::from_slice(&event.raw).expect("JSON");
            assert_eq!(raw["EventHandle"], event.handle.as_str());
            assert_eq!(&without_handle(&event.raw), enqueued);
        }
        let handles: Vec<String> = pulled.iter().map(|e| e.handle.clone()).collect();
        assert_eq!(
            handles
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len(),
            3,
            "handles are distinct"
        );
        assert_eq!(standin.served_count(), 3);
        assert_eq!(standin.pending_count(), 3);

        api.confirm_events(&handles).await.expect("confirm");
        let confirmed = standin.wait_for_confirmed(3, Duration::from_secs(1)).await;
        assert_eq!(
            confirmed
                .iter()
                .map(|c| c.handle.clone())
                .collect::<Vec<_>>(),
            handles
        );
        assert_eq!(
            confirmed
                .iter()
                .map(|c| c.event.clone())
                .collect::<Vec<_>>(),
            events
        );
        assert_eq!(standin.pending_count(), 0);
        // Confirming again (a retry after a lost answer) is harmless.
        api.confirm_events(&handles).await.expect("confirm again");
        assert_eq!(standin.confirmed().len(), 3);

        // Nothing left: the poll is held, then answered empty.
        let started = Instant::now();
        assert_eq!(api.pull_events().await.expect("pull"), vec![]);
        assert!(started.elapsed() >= Duration::from_millis(150));

        let log = standin.requests();
        let actions: Vec<_> = log.iter().map(|r| r.action.as_deref()).collect();
        assert_eq!(
            actions,
            [
                Some("PullEvents"),
                Some("ConfirmEvents"),
                Some("ConfirmEvents"),
                Some("PullEvents")
            ]
        );
        assert!(log
            .iter()
            .all(|r| r.sub_app_id == Some(SUB_APP_ID) && r.error.is_none()));
        assert_eq!(log[0].handles, handles);
        assert_eq!(standin.bad_signatures(), 0);
    }

    #[tokio::test]
    async fn an_unconfirmed_event_is_served_again_with_a_new_handle() {
        let standin = VodStandIn::start(SECRET_ID, SECRET_KEY).await;
        standin.set_redelivery_window(Duration::from_millis(300));
        standin.set_hold(Duration::from_millis(50));
        standin.enqueue(fixture_events()[..1].to_vec());
        let api = client(&standin, SECRET_KEY);

        let first = api.pull_events().await.expect("pull");
        assert_eq!(first.len(), 1);
        // Within the window the event is in flight: not served again.
        assert_eq!(api.pull_events().await.expect("pull"), vec![]);
        tokio::time::sleep(Duration::from_millis(350)).await;
        let second = api.pull_events().await.expect("pull");
        assert_eq!(second.len(), 1);
        assert_ne!(second[0].handle, first[0].handle);
        assert_eq!(
            without_handle(&second[0].raw),
            without_handle(&first[0].raw)
        );
        assert_eq!(standin.served_count(), 2);

        let stale = api
            .confirm_events(std::slice::from_ref(&first[0].handle))
            .await
            .expect_err("the old handle is dead");
        assert_eq!(stale.code(), Some("InvalidParameterValue"));
        assert!(!stale.is_fatal());
        api.confirm_events(std::slice::from_ref(&second[0].handle))
            .await
            .expect("the new handle confirms");
        assert_eq!(standin.confirmed().len(), 1);
        assert_eq!(standin.confirmed()[0].handle, second[0].handle);
    }

    #[tokio::test]
    async fn a_held_poll_returns_as_soon_as_events_arrive() {
        let standin = VodStandIn::start(SECRET_ID, SECRET_KEY).await;
        standin.set_hold(Duration::from_secs(3));
        let api = client(&standin, SECRET_KEY);
        let poll = tokio::spawn(async move { api.pull_events().await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        standin.enqueue(fixture_events()[2..].to_vec());
        let pulled = poll.await.expect("join").expect("pull");
        assert_eq!(pulled.len(), 1);
        assert_eq!(pulled[0].event_type, "FileDeleted");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn at_most_sixteen_per_pull_and_the_client_chunks_confirms() {
        let standin = VodStandIn::start(SECRET_ID, SECRET_KEY).await;
        let one = fixture_events()[2].clone();
        standin.enqueue(vec![one; 20]);
        let api = client(&standin, SECRET_KEY);
        let first = api.pull_events().await.expect("pull");
        let second = api.pull_events().await.expect("pull");
        assert_eq!((first.len(), second.len()), (16, 4));
        let handles: Vec<String> = first
            .iter()
            .chain(&second)
            .map(|e| e.handle.clone())
            .collect();
        api.confirm_events(&handles).await.expect("confirm 20");
        assert_eq!(standin.confirmed().len(), 20);
        let confirms: Vec<usize> = standin
            .requests()
            .iter()
            .filter(|r| r.action.as_deref() == Some("ConfirmEvents"))
            .map(|r| r.handles.len())
            .collect();
        assert_eq!(confirms, [16, 4]);
    }

    #[tokio::test]
    async fn wrong_credentials_are_fatal() {
        let standin = VodStandIn::start(SECRET_ID, SECRET_KEY).await;
        standin.enqueue(fixture_events());
        let error = client(&standin, "not-the-key")
            .pull_events()
            .await
            .expect_err("refused");
        assert!(
            matches!(&error, VodApiError::Credentials { code, .. } if code == "AuthFailure.SignatureFailure"),
            "{error:?}"
        );
        assert!(error.is_fatal());
        assert!(!error.to_string().contains("not-the-key"));

        let stranger = VodApi::new(
            &standin.url(),
            TencentCredentials {
                secret_id: "AKIDunknown".into(),
                secret_key: SecretString::from(SECRET_KEY.to_owned()),
            },
            None,
        )
        .expect("client");
        let error = stranger.pull_events().await.expect_err("refused");
        assert_eq!(error.code(), Some("AuthFailure.SecretIdNotFound"));
        assert!(error.is_fatal());

        assert_eq!(standin.bad_signatures(), 2);
        assert_eq!(
            standin.served_count(),
            0,
            "nothing is served to a bad signature"
        );
    }

    #[tokio::test]
    async fn scripted_failures_are_retryable_api_errors() {
        let standin = VodStandIn::start(SECRET_ID, SECRET_KEY).await;
        standin.enqueue(fixture_events()[..1].to_vec());
        standin.fail_next(1, "InternalError");
        let api = client(&standin, SECRET_KEY);
        let error = api.pull_events().await.expect_err("scripted");
        assert!(
            matches!(&error, VodApiError::Api { code, .. } if code == "InternalError"),
            "{error:?}"
        );
        assert!(!error.is_fatal());
        let pulled = api.pull_events().await.expect("then it works");
        assert_eq!(pulled.len(), 1);

        standin.fail_next_confirm(1, "FailedOperation");
        let handles = vec![pulled[0].handle.clone()];
        let error = api.confirm_events(&handles).await.expect_err("scripted");
        assert_eq!(error.code(), Some("FailedOperation"));
        assert!(standin.confirmed().is_empty());
        api.confirm_events(&handles).await.expect("then it works");
        assert_eq!(standin.confirmed().len(), 1);
    }

    #[tokio::test]
    async fn a_stalled_request_times_out_and_has_no_effect() {
        let standin = VodStandIn::start(SECRET_ID, SECRET_KEY).await;
        standin.enqueue(fixture_events()[..1].to_vec());
        standin.stall_next(1, Duration::from_secs(2));
        let api = client(&standin, SECRET_KEY).with_request_timeout(Duration::from_millis(300));
        let error = api.pull_events().await.expect_err("stalled");
        assert_eq!(error, VodApiError::Timeout);
        assert!(!error.is_fatal());
        assert!(standin.requests()[0].stalled);
        // The event was not handed out by the stalled call: the next pull gets it.
        assert_eq!(api.pull_events().await.expect("pull").len(), 1);
        assert_eq!(standin.served_count(), 1);
    }

    #[tokio::test]
    async fn every_empty_answer_means_no_events() {
        let standin = VodStandIn::start(SECRET_ID, SECRET_KEY).await;
        standin.set_hold(Duration::ZERO);
        let api = client(&standin, SECRET_KEY);
        for reply in [
            EmptyReply::EmptySet,
            EmptyReply::Null,
            EmptyReply::ResourceNotFound,
        ] {
            standin.set_empty_reply(reply);
            assert_eq!(
                api.pull_events().await.expect("no events"),
                vec![],
                "{reply:?}"
            );
        }
        let codes: Vec<_> = standin.requests().into_iter().map(|r| r.error).collect();
        assert_eq!(codes, [None, None, Some("ResourceNotFound".to_owned())]);
    }

    /// Requests a conforming client would never send, signed by vodhook's signer so that only
    /// the stand-in's own rules are exercised.
    #[tokio::test]
    async fn the_standin_checks_what_the_client_does_not_control() {
        use vodhook::tencent::tc3::{self, SignedHeaders, Tc3Request, JSON_CONTENT_TYPE};

        let standin = VodStandIn::start(SECRET_ID, SECRET_KEY).await;
        standin.require_sub_app_id(Some(SUB_APP_ID));
        let host = standin.url().trim_start_matches("http://").to_owned();
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let send = |action: &'static str, version: &'static str, body: String, timestamp: i64| {
            let request = Tc3Request {
                service: "vod",
                host: &host,
                action,
                version,
                timestamp,
                content_type: JSON_CONTENT_TYPE,
                payload: body.as_bytes(),
                signed_headers: SignedHeaders::ContentTypeHost,
            };
            let signature = tc3::sign(SECRET_ID, SECRET_KEY, &request).expect("signs");
            let mut builder = http.post(format!("{}/", standin.url()));
            for (name, value) in request.headers(&signature) {
                builder = builder.header(name, value);
            }
            let body = body.clone();
            async move {
                let answer: Value = builder
                    .body(body)
                    .send()
                    .await
                    .expect("sent")
                    .json()
                    .await
                    .expect("JSON");
                answer["Response"]["Error"]["Code"]
                    .as_str()
                    .map(str::to_owned)
            }
        };
        let now = unix_now();
        let sub = format!("\"SubAppId\":{SUB_APP_ID}");
        let handles: Vec<String> = (0..17).map(|i| format!("\"h{i}\"")).collect();
        let cases = [
            (
                send(
                    "ConfirmEvents",
                    API_VERSION,
                    format!("{{\"EventHandles\":[{}],{sub}}}", handles.join(",")),
                    now,
                )
                .await,
                "InvalidParameterValue",
                "17 handles",
            ),
            (
                send(
                    "ConfirmEvents",
                    API_VERSION,
                    format!("{{\"EventHandles\":[\"nope\"],{sub}}}"),
                    now,
                )
                .await,
                "InvalidParameterValue",
                "unknown handle",
            ),
            (
                send("PullEvents", "2017-03-12", format!("{{{sub}}}"), now).await,
                "NoSuchVersion",
                "wrong version",
            ),
            (
                send(
                    "DescribeEventsState",
                    API_VERSION,
                    format!("{{{sub}}}"),
                    now,
                )
                .await,
                "InvalidAction",
                "other action",
            ),
            (
                send("PullEvents", API_VERSION, "{}".to_owned(), now).await,
                "InvalidParameterValue.SubAppId",
                "no SubAppId",
            ),
            (
                send(
                    "PullEvents",
                    API_VERSION,
                    format!("{{{sub},\"Extra\":1}}"),
                    now,
                )
                .await,
                "UnknownParameter",
                "unknown parameter",
            ),
            (
                send("PullEvents", API_VERSION, format!("{{{sub}}}"), now - 600).await,
                "AuthFailure.SignatureExpire",
                "ten minutes old",
            ),
        ];
        for (got, want, what) in cases {
            assert_eq!(got.as_deref(), Some(want), "{what}");
        }
        // Signed over content-type;host only (as the Go SDK does) is accepted too.
        assert_eq!(
            send("PullEvents", API_VERSION, format!("{{{sub}}}"), now).await,
            None
        );
        assert_eq!(standin.bad_signatures(), 1);
    }
}
