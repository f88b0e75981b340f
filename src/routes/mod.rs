//! HTTP routes: thin adapters from requests to the store, one module per resource.

mod auth;
mod callbacks;
mod deliveries;
mod events;
mod health;
mod list_params;
mod metrics;
mod subscriptions;
mod upload_signatures;
mod uploads;

use crate::config::Settings;
use crate::error::ApiError;
use crate::fanout::{Clock, Handlers, Wakeup};
use crate::ingest::Ingestor;
use crate::metrics::Metrics;
use crate::pull::PullHealth;
use crate::storage::Store;
use actix_web::{web, HttpResponse};
use std::sync::Arc;

pub use auth::Authenticated;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub settings: Arc<Settings>,
    pub handlers: Handlers,
    pub metrics: Metrics,
    /// The clock the delivery worker uses, so "now" means the same to the API and the worker.
    pub clock: Arc<dyn Clock>,
    /// Wakes the delivery workers after an enqueue.
    pub wakeup: Wakeup,
    /// Stores events from callbacks (and the pull worker) alike.
    pub ingestor: Ingestor,
    /// Whether pulling VOD's queue works (when this process pulls).
    pub pull_health: PullHealth,
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
    .app_data(
        web::JsonConfig::default()
            .limit(64 * 1024)
            .content_type_required(false)
            .error_handler(|err, _| {
                ApiError::bad_request(
                    "invalid_json_body",
                    format!("the JSON body is not valid: {err}"),
                )
                .into()
            }),
    )
    .service(readable("/healthz", health::healthz))
    .service(readable("/readyz", health::readyz))
    .service(readable("/metrics", metrics::render))
    .service(postable("/v1/callbacks/vod").route(web::post().to(callbacks::receive_vod_callback)))
    // Any path below: the token, or (when one is configured) a 401 for anything else.
    .service(
        postable("/v1/callbacks/vod/{token:.*}")
            .route(web::post().to(callbacks::receive_vod_callback_with_token)),
    )
    .service(
        postable("/v1/upload-signatures")
            .route(web::post().to(upload_signatures::create_upload_signature)),
    )
    .service(readable("/v1/uploads", uploads::list_uploads))
    .service(readable("/v1/uploads/{file_id}", uploads::get_upload))
    .service(readable("/v1/events", events::list_events))
    .service(readable("/v1/events/{event_id}", events::get_event))
    .service(readable("/v1/events/{event_id}/raw", events::get_event_raw))
    .service(
        readable("/v1/subscriptions", subscriptions::list_subscriptions)
            .route(web::post().to(subscriptions::create_subscription))
            .default_service(web::to(|| method_not_allowed("GET, HEAD, POST"))),
    )
    .service(
        readable("/v1/subscriptions/{id}", subscriptions::get_subscription)
            .route(web::patch().to(subscriptions::update_subscription))
            .route(web::delete().to(subscriptions::delete_subscription))
            .default_service(web::to(|| method_not_allowed("GET, HEAD, PATCH, DELETE"))),
    )
    .service(
        postable("/v1/subscriptions/{id}/rotate-secret")
            .route(web::post().to(subscriptions::rotate_secret)),
    )
    .service(
        postable("/v1/subscriptions/{id}/replay")
            .route(web::post().to(deliveries::replay_subscription)),
    )
    .service(
        postable("/v1/handlers/{name}/replay").route(web::post().to(deliveries::replay_handler)),
    )
    .service(readable("/v1/deliveries", deliveries::list_deliveries))
    .service(readable("/v1/deliveries/{id}", deliveries::get_delivery))
    .service(
        postable("/v1/deliveries/{id}/retry").route(web::post().to(deliveries::retry_delivery)),
    )
    .default_service(web::to(not_found));
}

/// A GET resource; HEAD is answered by the same handler (actix sends no body for HEAD).
fn readable<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args> + Clone,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler.clone()))
        .route(web::head().to(handler))
        .default_service(web::to(|| method_not_allowed("GET, HEAD")))
}

fn postable(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(|| method_not_allowed("POST")))
}

/// Parses a resource id from the path; anything that is not a UUID names nothing (404).
fn parse_id(raw: &str, code: &'static str, what: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw)
        .map_err(|_| ApiError::not_found(code, format!("no {what} with id {raw:?}")))
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("not_found", "no such endpoint"))
}

async fn method_not_allowed(allow: &'static str) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this endpoint accepts {allow}"),
    )
    .with_header("allow", allow))
}

/// `200 OK` with a JSON body.
fn ok_json(value: &impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok().json(value)
}
