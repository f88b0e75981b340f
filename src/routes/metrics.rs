//! `GET /metrics`: Prometheus text exposition.

use super::AppState;
use crate::error::ApiError;
use actix_web::{web, HttpResponse};

pub async fn render(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let counts = state.store.count_open_deliveries().await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(&counts)))
}
