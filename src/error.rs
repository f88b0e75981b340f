//! `ApiError`: every HTTP error vodhook answers, as `{"error": {"code", "message"}}` with a stable code.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use serde_json::json;
use std::fmt;

/// An error answered to an HTTP client. 4xx carry a message for a person; 5xx keep their cause
/// for the log and tell the client only what to do about it.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    cause: Option<anyhow::Error>,
    headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            cause: None,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> ApiError {
        self.headers.push((name, value.into()));
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401, with the `WWW-Authenticate` challenge HTTP requires.
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
            .with_header("www-authenticate", "Bearer realm=\"vodhook\"")
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// The database could not be used: the client should retry (VOD does on its own).
    pub fn storage_unavailable(cause: impl Into<anyhow::Error>) -> ApiError {
        ApiError {
            cause: Some(cause.into()),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "the database is unavailable; nothing was stored, retry later",
            )
        }
    }

    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl From<crate::storage::StorageError> for ApiError {
    /// Data exceptions (SQLSTATE class 22) come from values a client sent: 400, not 503.
    fn from(error: crate::storage::StorageError) -> ApiError {
        if let crate::storage::StorageError::Database(sqlx::Error::Database(db)) = &error {
            if db.code().is_some_and(|code| code.starts_with("22")) {
                return ApiError::bad_request(
                    "invalid_value",
                    format!("the database refused a value: {}", db.message()),
                );
            }
        }
        ApiError::storage_unavailable(error)
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )?;
        if let Some(cause) = &self.cause {
            write!(f, ": {cause:#}")?;
        }
        Ok(())
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        // The one place a server-side failure is logged, with its whole cause chain.
        if self.status.is_server_error() {
            tracing::error!(code = self.code, error = ?self, "request failed");
        }
        let mut response = HttpResponse::build(self.status);
        for (name, value) in &self.headers {
            response.insert_header((*name, value.as_str()));
        }
        response.json(json!({
            "error": { "code": self.code, "message": self.message }
        }))
    }
}
