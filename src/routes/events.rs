//! `GET /v1/events/{event_id}` and `GET /v1/events`: stored events, as received.

use super::{list_params, ok_json, AppState, Authenticated};
use crate::error::ApiError;
use crate::storage::EventFilter;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use uuid::Uuid;

fn event_not_found(event_id: &str) -> ApiError {
    ApiError::not_found("event_not_found", format!("no event with id {event_id:?}"))
}

/// Event ids are UUIDs; anything else names no event.
fn parse_event_id(event_id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(event_id).map_err(|_| event_not_found(event_id))
}

pub async fn get_event(
    _: Authenticated,
    event_id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let event = state.store.get_event(parse_event_id(&event_id)?).await?;
    event
        .map(|e| ok_json(&e))
        .ok_or_else(|| event_not_found(&event_id))
}

/// The exact bytes VOD sent, for re-verification or replay elsewhere.
pub async fn get_event_raw(
    _: Authenticated,
    event_id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let raw = state
        .store
        .get_event_raw_body(parse_event_id(&event_id)?)
        .await?;
    // Only bodies that parsed as JSON are ever stored.
    raw.map(|raw| {
        HttpResponse::Ok()
            .content_type("application/json")
            .body(raw)
    })
    .ok_or_else(|| event_not_found(&event_id))
}

#[derive(Debug, Deserialize)]
pub struct ListEventsParams {
    event_type: Option<String>,
    file_id: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

pub async fn list_events(
    _: Authenticated,
    params: web::Query<ListEventsParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let limit = list_params::limit(params.limit.as_deref())?;
    let after = list_params::uuid_cursor(params.cursor.as_deref())?;
    let filter = EventFilter {
        event_type: list_params::text(params.event_type),
        file_id: list_params::text(params.file_id),
    };
    let page = state.store.list_events(&filter, after, limit).await?;
    Ok(ok_json(&page))
}
