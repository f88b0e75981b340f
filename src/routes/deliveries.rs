//! `/v1/deliveries` and replays: what was delivered where, retrying and re-enqueueing.

use super::{list_params, ok_json, parse_id, AppState, Authenticated};
use crate::error::ApiError;
use crate::storage::{DeliveryFilter, ReplayRange, ReplayTarget, RetryRequest};
use actix_web::{http::StatusCode, web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
pub struct ListParams {
    subscription_id: Option<String>,
    handler: Option<String>,
    event_id: Option<String>,
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

pub async fn list_deliveries(
    _: Authenticated,
    params: web::Query<ListParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let status = list_params::text(params.status);
    if let Some(s) = status
        .as_deref()
        .filter(|s| !["pending", "succeeded", "dead", "paused"].contains(s))
    {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("status must be pending, succeeded, dead or paused, got {s:?}"),
        ));
    }
    let filter = DeliveryFilter {
        subscription_id: list_params::uuid("subscription_id", params.subscription_id)?,
        handler: list_params::text(params.handler),
        event_id: list_params::uuid("event_id", params.event_id)?,
        status,
    };
    let limit = list_params::limit(params.limit.as_deref())?;
    let after = list_params::uuid_cursor(params.cursor.as_deref())?;
    Ok(ok_json(
        &state.store.list_deliveries(&filter, after, limit).await?,
    ))
}

/// The delivery with its attempt log.
pub async fn get_delivery(
    _: Authenticated,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let found = state
        .store
        .get_delivery(parse_id(&id, "delivery_not_found", "delivery")?)
        .await?;
    let (delivery, attempts) = found.ok_or_else(|| not_found(&id))?;
    let mut body = serde_json::to_value(&delivery).unwrap_or_default();
    body["attempts"] = serde_json::to_value(&attempts).unwrap_or_default();
    Ok(ok_json(&body))
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found("delivery_not_found", format!("no delivery with id {id:?}"))
}

/// One more try of a dead or failing delivery, now.
pub async fn retry_delivery(
    _: Authenticated,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let delivery_id = parse_id(&id, "delivery_not_found", "delivery")?;
    match state
        .store
        .retry_delivery_now(delivery_id, state.clock.now())
        .await?
    {
        RetryRequest::Scheduled => {
            state.wakeup.notify();
            Ok(HttpResponse::Accepted().json(json!({"id": delivery_id, "status": "pending"})))
        }
        RetryRequest::AlreadySucceeded => Err(ApiError::new(
            StatusCode::CONFLICT,
            "delivery_succeeded",
            "the delivery already succeeded; replay the event to send it again",
        )),
        RetryRequest::InFlight => Err(ApiError::new(
            StatusCode::CONFLICT,
            "delivery_in_flight",
            "the delivery is being tried right now or is about to be; look again shortly",
        )),
        RetryRequest::SubscriptionDisabled => Err(ApiError::new(
            StatusCode::CONFLICT,
            "subscription_disabled",
            "the subscription is disabled; enable it and its held-back deliveries resume",
        )),
        RetryRequest::NotFound => Err(not_found(&id)),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    since: Option<String>,
    until: Option<String>,
    #[serde(default)]
    event_types: Option<Vec<String>>,
    #[serde(default)]
    only_failed: bool,
}

impl ReplayBody {
    /// An empty body means "everything"; anything else must be a valid replay request, so a typo
    /// cannot silently widen a replay to all events.
    fn parse(body: &[u8]) -> Result<ReplayBody, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(ReplayBody::default());
        }
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(
                "invalid_json_body",
                format!("the replay request is not valid: {e}"),
            )
        })
    }

    fn range(self, default_types: &[String]) -> Result<ReplayRange, ApiError> {
        let since = list_params::time("since", self.since.as_deref())?;
        let until = list_params::time("until", self.until.as_deref())?;
        if let (Some(s), Some(u)) = (since, until) {
            if s >= u {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    "since must be before until",
                ));
            }
        }
        Ok(ReplayRange {
            since,
            until,
            event_types: self.event_types.unwrap_or_else(|| default_types.to_vec()),
            only_failed: self.only_failed,
        })
    }
}

async fn replay(
    state: &AppState,
    target: ReplayTarget,
    range: ReplayRange,
) -> Result<HttpResponse, ApiError> {
    let max_attempts =
        i32::try_from(state.settings.retry_policy.max_attempts()).unwrap_or(i32::MAX);
    let count = state
        .store
        .replay(&target, &range, max_attempts, state.clock.now())
        .await?;
    if count > 0 {
        state.wakeup.notify();
    }
    Ok(ok_json(&json!({"count": count})))
}

/// One new delivery per event in the range (by default of the types the subscription wants).
pub async fn replay_subscription(
    _: Authenticated,
    id: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let subscription_id = parse_id(&id, "subscription_not_found", "subscription")?;
    let subscription = state
        .store
        .get_subscription(subscription_id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "subscription_not_found",
                format!("no subscription with id {:?}", id.as_str()),
            )
        })?;
    let range = ReplayBody::parse(&body)?.range(&subscription.event_types)?;
    replay(&state, ReplayTarget::Subscription(subscription_id), range).await
}

/// The same for an in-process handler registered in this process.
pub async fn replay_handler(
    _: Authenticated,
    name: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if !state.handlers.contains(&name) {
        return Err(ApiError::not_found(
            "handler_not_found",
            format!("no handler named {:?} is registered", name.as_str()),
        ));
    }
    let range = ReplayBody::parse(&body)?.range(&[])?;
    replay(&state, ReplayTarget::Handler(name.into_inner()), range).await
}
