//! `POST /v1/upload-signatures`: VOD client-upload signatures for app backends to hand to uploaders.

use super::{AppState, Authenticated};
use crate::error::ApiError;
use crate::tencent::upload_signature::{
    self, TaskNotifyMode, UploadSignatureError, UploadSignatureRequest,
};
use actix_web::{http::StatusCode, web, HttpResponse};
use serde_json::{json, Map, Value};

/// Signs an upload. Order of checks: the token (401), the server's configuration (501/500),
/// then the body (400), so a deployment that cannot sign says so whatever the body.
pub async fn create_upload_signature(
    _: Authenticated,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let vod = &state.settings.vod;
    let credentials = vod.credentials.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "upload_signing_not_configured",
            upload_signature::NOT_CONFIGURED,
        )
    })?;
    upload_signature::check_defaults(vod).map_err(|problem| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "upload_signing_misconfigured",
            format!("a default for upload signatures is not valid: {problem}"),
        )
    })?;
    let mut request = parse(&body)?;
    request.apply_defaults(vod);
    let now = state.clock.now().timestamp();
    let signed =
        upload_signature::sign_with_os_random(&request, credentials, now).map_err(signing_error)?;
    let expires_at = chrono::DateTime::from_timestamp(signed.expires_at, 0)
        .ok_or_else(|| signing_error(UploadSignatureError::Clock(now)))?;
    Ok(HttpResponse::Ok().json(json!({
        "signature": signed.signature,
        "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "expires_at_unix": signed.expires_at,
    })))
}

fn signing_error(error: UploadSignatureError) -> ApiError {
    if error.is_request_error() {
        ApiError::bad_request(error.code(), error.to_string())
    } else {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            error.code(),
            format!("the server cannot sign right now: {error}"),
        )
    }
}

fn invalid_body(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_json_body", message)
}

/// Reads the body field by field rather than through serde's derive, so a value of the wrong
/// type is answered with the field's own code and a message naming it. An empty body asks for
/// every default; `null` is the same as leaving a field out.
fn parse(body: &[u8]) -> Result<UploadSignatureRequest, ApiError> {
    let mut request = UploadSignatureRequest::default();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(request);
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| invalid_body(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(invalid_body("the body must be a JSON object"));
    };
    for (name, value) in fields_present(fields) {
        match name.as_str() {
            "source_context" => {
                request.source_context = Some(string(value, UploadSignatureError::SourceContext)?)
            }
            "procedure" => {
                request.procedure = Some(string(value, UploadSignatureError::Procedure)?)
            }
            "storage_region" => {
                request.storage_region = Some(string(value, UploadSignatureError::StorageRegion)?)
            }
            "session_context" => {
                request.session_context = Some(string(value, UploadSignatureError::SessionContext)?)
            }
            "task_notify_mode" => {
                let text = string(value, UploadSignatureError::TaskNotifyMode)?;
                request.task_notify_mode = Some(
                    text.parse::<TaskNotifyMode>()
                        .map_err(|e| ApiError::bad_request(e.code(), e.to_string()))?,
                );
            }
            "class_id" => {
                request.class_id = Some(unsigned(
                    &value,
                    UploadSignatureError::ClassId,
                    "must be a whole number, 0 or more",
                )?)
            }
            "expire_seconds" => {
                request.expire_seconds = Some(unsigned(
                    &value,
                    UploadSignatureError::ExpireSeconds,
                    "must be a whole number of seconds from 1 to 7776000 (90 days)",
                )?)
            }
            "vod_sub_app_id" => request.vod_sub_app_id = Some(unsigned(
                &value,
                UploadSignatureError::VodSubAppId,
                "must be a sub-application ID (a whole number; 0 names the primary application)",
            )?),
            "task_priority" => {
                request.task_priority = Some(value.as_i64().ok_or_else(|| {
                    field_error(UploadSignatureError::TaskPriority(format!(
                        "must be a whole number from -10 to 10, got {value}"
                    )))
                })?)
            }
            "one_time_valid" => {
                request.one_time_valid = value.as_bool().ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_one_time_valid",
                        format!("one_time_valid must be true or false, got {value}"),
                    )
                })?
            }
            unknown => {
                return Err(invalid_body(format!(
                    "unknown field {unknown:?}; the fields are source_context, procedure, \
                     storage_region, class_id, one_time_valid, expire_seconds, vod_sub_app_id, \
                     session_context, task_priority and task_notify_mode"
                )))
            }
        }
    }
    Ok(request)
}

/// The fields with a value: `null` means "not given".
fn fields_present(fields: Map<String, Value>) -> impl Iterator<Item = (String, Value)> {
    fields.into_iter().filter(|(_, value)| !value.is_null())
}

fn field_error(error: UploadSignatureError) -> ApiError {
    ApiError::bad_request(error.code(), error.to_string())
}

fn string(value: Value, error: fn(String) -> UploadSignatureError) -> Result<String, ApiError> {
    match value {
        Value::String(text) => Ok(text),
        other => Err(field_error(error(format!("must be a string, got {other}")))),
    }
}

fn unsigned(
    value: &Value,
    error: fn(String) -> UploadSignatureError,
    expected: &str,
) -> Result<u64, ApiError> {
    value
        .as_u64()
        .ok_or_else(|| field_error(error(format!("{expected}, got {value}"))))
}
