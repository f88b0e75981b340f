//! `POST /v1/callbacks/vod[/{token}]`: VOD's push callbacks, answered 200 only after commit.

use super::AppState;
use crate::error::ApiError;
use crate::ingest::IngestError;
use crate::tencent::{callback_sign, parse_callback, CallbackParseError};
use actix_web::{http::header, http::StatusCode, web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use secrecy::ExposeSecret;
use serde_json::{json, Map, Value};
use subtle::ConstantTimeEq;

/// Request headers kept with each event: what tells an operator who sent it and how.
const KEPT_HEADERS: [&str; 6] = [
    "content-type",
    "user-agent",
    "x-forwarded-for",
    "x-real-ip",
    "forwarded",
    "content-length",
];

/// Callbacks without a token in the path: only when no callback token is configured.
pub async fn receive_vod_callback(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if state.settings.callback_token.is_some() {
        return Err(ApiError::unauthorized(
            "callback_token_required",
            "callbacks are accepted only on /v1/callbacks/vod/{token}",
        ));
    }
    receive(req, body, state).await
}

/// Callbacks with a token in the path: VOD cannot send headers, so the URL carries the secret.
/// Every other path below /v1/callbacks/vod/ lands here too, and is refused the same way.
pub async fn receive_vod_callback_with_token(
    req: HttpRequest,
    body: web::Payload,
    token: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Some(expected) = &state.settings.callback_token else {
        return Err(ApiError::not_found(
            "not_found",
            "no callback token is configured: post to /v1/callbacks/vod",
        ));
    };
    if !bool::from(expected.expose_secret().as_bytes().ct_eq(token.as_bytes())) {
        return Err(ApiError::unauthorized(
            "invalid_callback_token",
            "the callback token in the URL is not valid",
        ));
    }
    receive(req, body, state).await
}

/// Receives one callback and counts it in the metrics, by event type and outcome.
async fn receive(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let started = std::time::Instant::now();
    let mut event_type = None;
    let result = store_callback(&req, body, &state, &mut event_type).await;
    let outcome = match &result {
        Ok((_, duplicate)) if *duplicate => "duplicate",
        Ok(_) => "stored",
        Err(error) => error.code(),
    };
    state
        .metrics
        .record_callback(event_type.as_deref(), outcome, started.elapsed());
    result.map(|(response, _)| response)
}

async fn store_callback(
    req: &HttpRequest,
    body: web::Payload,
    state: &AppState,
    event_type: &mut Option<String>,
) -> Result<(HttpResponse, bool), ApiError> {
    // Room in the ingest buffer first, so bodies waiting to be stored stay bounded.
    let limit = state.settings.max_body_bytes;
    let admission = state
        .ingestor
        .admit(declared_length(req).unwrap_or(limit).min(limit))
        .map_err(ingest_error)?;
    let raw = read_body(req, body, limit).await?;
    let event = parse_callback(&raw).map_err(|e| {
        let code = match e {
            CallbackParseError::NotJson(_) => "invalid_json",
            CallbackParseError::NotAnObject => "not_an_object",
            CallbackParseError::MissingEventType => "missing_event_type",
            CallbackParseError::EventTypeTooLong => "invalid_event_type",
        };
        ApiError::bad_request(code, e.to_string())
    })?;
    *event_type = Some(event.event_type.clone());
    check_signature(req, &event.body, state)?;
    let without_file_id = event.is_upload_without_file_id();
    let (format, file_id) = (event.format, event.file_id.clone());
    let kind = event.event_type.clone();
    let outcome = state
        .ingestor
        .ingest(
            event,
            raw,
            kept_headers(req),
            req.peer_addr().map(|a| a.ip().to_string()),
            admission,
        )
        .await
        .map_err(ingest_error)?;
    tracing::info!(
        event_id = %outcome.event_id,
        event_type = %kind,
        format = format.as_str(),
        file_id = file_id.as_ref().map(|f| f.as_str()),
        duplicate = outcome.duplicate,
        "callback stored"
    );
    if without_file_id {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_file_id",
            format!(
                "the NewFileUpload has no FileId, so no upload record was made; the event is stored as {}",
                outcome.event_id
            ),
        ));
    }
    let response = HttpResponse::Ok()
        .json(json!({"event_id": outcome.event_id, "duplicate": outcome.duplicate}));
    Ok((response, outcome.duplicate))
}

/// Overload is answered at once with 503 and Retry-After, so VOD (or a client) comes back later
/// instead of waiting on a queue without bound.
fn ingest_error(error: IngestError) -> ApiError {
    match error {
        IngestError::Busy => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            error.to_string(),
        )
        .with_header("retry-after", "1"),
        IngestError::Stopped => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            error.to_string(),
        )
        .with_header("retry-after", "1"),
        IngestError::Storage(error) => error.into(),
    }
}

fn declared_length(req: &HttpRequest) -> Option<usize> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}

/// With a VOD SignKey configured, the callback's `Sign` and `T` must be valid and unexpired.
fn check_signature(req: &HttpRequest, body: &Value, state: &AppState) -> Result<(), ApiError> {
    let Some(key) = &state.settings.vod.sign_key else {
        return Ok(());
    };
    let found = callback_sign::find_signature(body, req.query_string());
    if let Some(found) = &found {
        // VOD does not document where it puts them: this tells an operator.
        tracing::debug!(
            placement = found.placement.as_str(),
            "callback signature found"
        );
    }
    let skew = i64::try_from(state.settings.vod.sign_skew.as_secs()).unwrap_or(i64::MAX);
    callback_sign::verify(key, found.as_ref(), state.clock.now().timestamp(), skew)
        .map_err(|e| ApiError::unauthorized(e.code(), e.to_string()))
}

/// Reads the body up to `limit` bytes, refusing early when Content-Length already says it is too big.
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body exceeds the limit of {limit} bytes"),
        )
    };
    let declared = declared_length(req);
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(
                "unreadable_body",
                format!("the body could not be read: {e}"),
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn kept_headers(req: &HttpRequest) -> Value {
    let kept: Map<String, Value> = KEPT_HEADERS
        .iter()
        .filter_map(|name| {
            let value = req.headers().get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), Value::from(value)))
        })
        .collect();
    Value::Object(kept)
}
