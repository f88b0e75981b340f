//! The values the storage contract takes and returns.

use crate::domain::{ProcessingStatus, Upload, VodEvent};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// A parsed callback plus what we know about its delivery.
#[derive(Debug)]
pub struct IncomingEvent<'a> {
    pub event: &'a VodEvent,
    /// The id the event gets if it is new (time-ordered, UUIDv7).
    pub id: Uuid,
    pub raw_body: &'a [u8],
    pub headers: serde_json::Value,
    pub client_addr: Option<String>,
    /// In-process handlers whose filter matches this event (subscriptions are matched in SQL).
    pub handlers: Vec<String>,
    /// Tries each new delivery gets (the retry schedule's length).
    pub max_attempts: i32,
    /// Store a new event's deliveries already claimed for this long, for this process's worker,
    /// and hand them back in the outcome (no claim statement later). Only the Postgres batch
    /// statement does; elsewhere the deliveries are stored unclaimed, as without it.
    pub lease: Option<std::time::Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IngestOutcome {
    /// The stored event: the new one, or the one this repeats.
    pub event_id: Uuid,
    pub duplicate: bool,
    /// The event's deliveries, claimed as it was stored (see `IncomingEvent::lease`); empty when
    /// they were stored unclaimed, to be claimed by key or found by a scan.
    pub claimed: Vec<ClaimedDelivery>,
}

/// Filters of `GET /v1/events`.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub event_type: Option<String>,
    pub file_id: Option<String>,
}

/// Filters of `GET /v1/uploads`; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct UploadFilter {
    pub source_context: Option<String>,
    pub source_type: Option<String>,
    pub procedure_task_id: Option<String>,
    pub storage_region: Option<String>,
    pub received_after: Option<DateTime<Utc>>,
    pub received_before: Option<DateTime<Utc>>,
    pub processing_status: Option<ProcessingStatus>,
    /// `Some(true)`: only records of deleted files; `Some(false)`: only the others.
    pub deleted: Option<bool>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredToken {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Fields a PATCH may change; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct SubscriptionChanges {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Delivery {
    pub id: Uuid,
    pub event_id: Uuid,
    pub subscription_id: Option<Uuid>,
    pub handler: Option<String>,
    pub status: String,
    /// Tries so far (the detail view lists them as `attempts`).
    #[serde(rename = "attempt_count")]
    pub attempts: i32,
    pub max_attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub last_http_status: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Attempt {
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: f64,
    pub http_status: Option<i32>,
    pub error: Option<String>,
    pub response_body: Option<String>,
}

/// A delivery claimed by a worker, with what it needs to deliver it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ClaimedDelivery {
    pub id: Uuid,
    /// The fence: settling succeeds only while the row still has this many attempts.
    pub attempts: i32,
    pub max_attempts: i32,
    pub event_id: Uuid,
    pub event_type: String,
    pub received_at: DateTime<Utc>,
    pub file_id: Option<String>,
    pub raw_body: Vec<u8>,
    pub handler: Option<String>,
    pub subscription_id: Option<Uuid>,
    pub url: Option<String>,
    pub secret: Option<String>,
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// The upload record of the event's file, if there is one and it reads back (a value outside
    /// what Rust's time types hold costs the notification its record, not the delivery).
    #[sqlx(skip)]
    pub upload: Option<Upload>,
}

/// What a claim by event took, and whether those events still have claimable deliveries beyond
/// its limit (so the caller asks again for them rather than scanning the due queue).
#[derive(Debug, Clone, Default)]
pub struct EventClaims {
    pub claimed: Vec<ClaimedDelivery>,
    pub more_due: bool,
}

/// What became of one try.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub started_at: DateTime<Utc>,
    pub duration_ms: f64,
    pub http_status: Option<i32>,
    pub error: Option<String>,
    pub response_body: Option<String>,
}

/// One delivery's try and what becomes of the delivery, under the claim's fence.
#[derive(Debug, Clone)]
pub struct Settle {
    pub delivery_id: Uuid,
    /// The claim's attempt count: the fence.
    pub attempts: i32,
    pub subscription_id: Option<Uuid>,
    pub attempt: AttemptRecord,
    pub settlement: Settlement,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Settlement {
    Succeeded,
    RetryAt(DateTime<Utc>),
    Dead,
    /// Dead, and the subscription is disabled (its target answered 410 Gone).
    DeadAndDisable(String),
}

/// Filters of `GET /v1/deliveries`.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub subscription_id: Option<Uuid>,
    pub handler: Option<String>,
    pub event_id: Option<Uuid>,
    pub status: Option<String>,
}

/// Which target a replay re-enqueues for.
#[derive(Debug, Clone)]
pub enum ReplayTarget {
    Subscription(Uuid),
    Handler(String),
}

#[derive(Debug, Clone, Default)]
pub struct ReplayRange {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub event_types: Vec<String>,
    pub only_failed: bool,
}

/// Outcome of a manual retry request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryRequest {
    Scheduled,
    NotFound,
    AlreadySucceeded,
    /// A worker is trying it right now, or its first try has not happened yet.
    InFlight,
    SubscriptionDisabled,
}
