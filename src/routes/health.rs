//! `/healthz` (the process answers) and `/readyz` (the database answers, and pulling VOD's
//! queue has not stopped).

use super::AppState;
use crate::error::ApiError;
use actix_web::{http::StatusCode, web, HttpResponse};
use serde_json::json;
use std::time::Duration;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if let Some(problem) = state.pull_health.problem() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "pull_stopped",
            problem,
        ));
    }
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(json!({"status": "ready"}))),
        Ok(Err(e)) => Err(ApiError::storage_unavailable(e)),
        Err(elapsed) => Err(ApiError::storage_unavailable(
            anyhow::Error::new(elapsed).context("database ping timed out"),
        )),
    }
}
