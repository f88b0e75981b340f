//! `/healthz` (the process answers) and `/readyz` (the database answers too).

use super::AppState;
use crate::error::ApiError;
use actix_web::{web, HttpResponse};
use serde_json::json;
use std::time::Duration;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(json!({"status": "ready"}))),
        Ok(Err(e)) => Err(ApiError::storage_unavailable(e)),
        Err(elapsed) => Err(ApiError::storage_unavailable(
            anyhow::Error::new(elapsed).context("database ping timed out"),
        )),
    }
}
