//! HTTP routes: thin adapters from requests to the store, one module per resource.

mod auth;
mod callbacks;
mod events;
mod health;
mod list_params;
mod uploads;

use crate::config::Settings;
use crate::error::ApiError;
use crate::storage::Store;
use actix_web::{web, HttpResponse};
use std::sync::Arc;

pub use auth::Authenticated;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub settings: Arc<Settings>,
}

/// Registers every route, and JSON error bodies for the failures actix answers by itself.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(|err, _| {
        ApiError::bad_request(
            "invalid_query",
            format!("the query string is not valid: {err}"),
        )
        .into()
    }))
    .app_data(web::PathConfig::default().error_handler(|err, _| {
        ApiError::bad_request("invalid_path", format!("the path is not valid: {err}")).into()
    }))
    .service(resource("/healthz").route(web::get().to(health::healthz)))
    .service(resource("/readyz").route(web::get().to(health::readyz)))
    .service(resource("/v1/callbacks/vod").route(web::post().to(callbacks::receive_vod_callback)))
    .service(
        resource("/v1/callbacks/vod/{token}")
            .route(web::post().to(callbacks::receive_vod_callback_with_token)),
    )
    .service(resource("/v1/uploads").route(web::get().to(uploads::list_uploads)))
    .service(resource("/v1/uploads/{file_id}").route(web::get().to(uploads::get_upload)))
    .service(resource("/v1/events").route(web::get().to(events::list_events)))
    .service(resource("/v1/events/{event_id}").route(web::get().to(events::get_event)))
    .service(resource("/v1/events/{event_id}/raw").route(web::get().to(events::get_event_raw)))
    .default_service(web::to(not_found));
}

fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("not_found", "no such endpoint"))
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not accept that method",
    ))
}

/// `200 OK` with a JSON body.
fn ok_json(value: &impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok().json(value)
}
