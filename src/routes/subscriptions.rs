//! `/v1/subscriptions`: HTTP subscribers, managed by the app backend.

use super::{list_params, ok_json, parse_id, AppState, Authenticated};
use crate::domain::{
    validate_description, validate_event_types, validate_url, SigningSecret, Subscription,
};
use crate::error::ApiError;
use crate::fanout::seal_secret;
use crate::storage::SubscriptionChanges;
use actix_web::{http::StatusCode, web, HttpResponse};
use serde::{Deserialize, Deserializer, Serialize};

/// How long a rotated-out secret keeps signing beside the new one.
const ROTATION_OVERLAP: chrono::Duration = chrono::Duration::hours(24);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscription {
    url: String,
    #[serde(default)]
    event_types: Vec<String>,
    description: Option<String>,
}

/// A subscription with its secret: answered once, on create.
#[derive(Serialize)]
struct WithSecret<'a> {
    #[serde(flatten)]
    subscription: &'a Subscription,
    secret: &'a str,
}

fn invalid(message: String) -> ApiError {
    ApiError::bad_request("invalid_subscription", message)
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(
        "subscription_not_found",
        format!("no subscription with id {id:?}"),
    )
}

pub async fn create_subscription(
    _: Authenticated,
    body: web::Json<CreateSubscription>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let url = validate_url(&body.url).map_err(invalid)?;
    let event_types = validate_event_types(body.event_types).map_err(invalid)?;
    let description = validate_description(body.description).map_err(invalid)?;
    let secret = SigningSecret::generate();
    let stored = seal_secret(state.settings.secret_cipher.as_ref(), secret.expose());
    let subscription = state
        .store
        .create_subscription(
            &url,
            &event_types,
            description.as_deref(),
            &stored,
            state.clock.now(),
        )
        .await?;
    Ok(HttpResponse::Created().json(WithSecret {
        subscription: &subscription,
        secret: secret.expose(),
    }))
}

#[derive(Debug, Deserialize)]
pub struct ListParams {
    limit: Option<String>,
    cursor: Option<String>,
}

pub async fn list_subscriptions(
    _: Authenticated,
    params: web::Query<ListParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let limit = list_params::limit(params.limit.as_deref())?;
    let after = list_params::uuid_cursor(params.cursor.as_deref())?;
    Ok(ok_json(
        &state.store.list_subscriptions(after, limit).await?,
    ))
}

pub async fn get_subscription(
    _: Authenticated,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let found = state
        .store
        .get_subscription(parse_id(&id, "subscription_not_found", "subscription")?)
        .await?;
    found.map(|s| ok_json(&s)).ok_or_else(|| not_found(&id))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateSubscription {
    url: Option<String>,
    event_types: Option<Vec<String>>,
    /// Absent: unchanged; `null`: cleared.
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    enabled: Option<bool>,
}

/// Tells a field sent as `null` (`Some(None)`) from one not sent (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

pub async fn update_subscription(
    _: Authenticated,
    id: web::Path<String>,
    body: web::Json<UpdateSubscription>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let subscription_id = parse_id(&id, "subscription_not_found", "subscription")?;
    let body = body.into_inner();
    let changes = SubscriptionChanges {
        url: body
            .url
            .as_deref()
            .map(validate_url)
            .transpose()
            .map_err(invalid)?,
        event_types: body
            .event_types
            .map(validate_event_types)
            .transpose()
            .map_err(invalid)?,
        description: body
            .description
            .map(validate_description)
            .transpose()
            .map_err(invalid)?,
        enabled: body.enabled,
    };
    let updated = state
        .store
        .update_subscription(subscription_id, &changes, state.clock.now())
        .await?;
    if changes.enabled == Some(true) {
        // Deliveries held back while it was disabled are due now.
        state.wakeup.notify();
    }
    updated.map(|s| ok_json(&s)).ok_or_else(|| not_found(&id))
}

pub async fn delete_subscription(
    _: Authenticated,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if state
        .store
        .delete_subscription(parse_id(&id, "subscription_not_found", "subscription")?)
        .await?
    {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(not_found(&id))
    }
}

/// A new secret; the old one keeps signing beside it for 24 hours.
pub async fn rotate_secret(
    _: Authenticated,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let subscription_id = parse_id(&id, "subscription_not_found", "subscription")?;
    let secret = SigningSecret::generate();
    let stored = seal_secret(state.settings.secret_cipher.as_ref(), secret.expose());
    let now = state.clock.now();
    let previous_until = now + ROTATION_OVERLAP;
    if !state
        .store
        .rotate_subscription_secret(subscription_id, &stored, previous_until, now)
        .await?
    {
        return Err(not_found(&id));
    }
    Ok(HttpResponse::build(StatusCode::OK).json(serde_json::json!({
        "secret": secret.expose(),
        "previous_secret_valid_until": previous_until,
    })))
}
