//! The delivery outbox: rows written with the event, claimed as leases, settled under a fence.

use super::{into_page, subscriptions, StorageResult, Store};
use crate::domain::{Page, PageCursor, PageLimit, Upload};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

/// Postgres channel that wakes delivery workers in every process after an enqueue commits.
pub const WAKE_CHANNEL: &str = "vodhook_deliveries";

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

/// Postgres text cannot hold U+0000, and a subscriber's answer may contain it.
fn storable(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

const DELIVERY_COLUMNS: &str =
    "id, event_id, subscription_id, handler, status, attempts, max_attempts, \
    next_attempt_at, last_error, last_http_status, created_at, updated_at, completed_at";

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
#[derive(Debug, Clone, sqlx::FromRow)]
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
    /// The upload record of the event's file as stored JSON, if there is one (read with the
    /// claim); see `upload()`.
    pub upload_json: Option<sqlx::types::Json<serde_json::Value>>,
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

impl ClaimedDelivery {
    /// The upload record, if there is one and it reads back (a value outside what Rust's time
    /// types hold must cost the notification its record, not the delivery).
    pub fn upload(&self) -> Option<Upload> {
        let json = self.upload_json.as_ref()?;
        serde_json::from_value(json.0.clone())
            .map_err(|error| tracing::warn!(delivery_id = %self.id, %error, "cannot read the upload record back"))
            .ok()
    }
}

impl Store {
    /// Claims up to `limit` due deliveries for this process's targets: each claim counts as an
    /// attempt and hides the row until `lease_until`, when it comes due again if not settled.
    /// "Due" is by the later of the worker's clock and the database's, so a worker whose clock is
    /// behind the database (which stamps new deliveries) does not hold them back.
    pub async fn claim_due_deliveries(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: i64,
        handlers: &[String],
    ) -> StorageResult<Vec<ClaimedDelivery>> {
        let claimed: Vec<ClaimedDelivery> = sqlx::query_as(
            "WITH due AS ( \
               SELECT d.id FROM deliveries d \
               WHERE d.status = 'pending' AND d.next_attempt_at <= GREATEST($1, now()) \
                 AND (d.claimed_until IS NULL OR d.claimed_until <= GREATEST($1, now())) \
                 AND (d.handler IS NULL OR d.handler = ANY($4)) \
               ORDER BY d.next_attempt_at LIMIT $3 FOR UPDATE OF d SKIP LOCKED), \
             claimed AS ( \
               UPDATE deliveries d SET attempts = d.attempts + 1, \
                 claimed_until = GREATEST($1, now()) + make_interval(secs => $2), updated_at = $1 \
               FROM due WHERE d.id = due.id \
               RETURNING d.id, d.attempts, d.max_attempts, d.event_id, d.subscription_id, d.handler) \
             SELECT c.id, c.attempts, c.max_attempts, c.event_id, e.event_type, e.received_at, e.file_id, e.raw_body, \
                    c.handler, c.subscription_id, s.url, s.secret, s.previous_secret, s.previous_secret_expires_at, \
                    to_jsonb(u) AS upload_json \
             FROM claimed c JOIN events e ON e.id = c.event_id LEFT JOIN subscriptions s ON s.id = c.subscription_id \
               LEFT JOIN uploads u ON u.file_id = e.file_id",
        )
        .bind(now)
        .bind(lease.as_secs_f64())
        .bind(limit)
        .bind(handlers)
        .fetch_all(&self.worker_pool)
        .await?;
        Ok(claimed)
    }

    /// Records each attempt and settles each delivery, in one statement for the whole batch
    /// (group commit: one settlement per delivery would cost a transaction each). A delivery
    /// another worker has claimed since (its lease ran out) only gets its attempt recorded; the
    /// result says, per entry, whether the settlement took.
    pub async fn settle_deliveries(
        &self,
        batch: &[Settle],
        now: DateTime<Utc>,
    ) -> StorageResult<Vec<bool>> {
        let ids: Vec<Uuid> = batch.iter().map(|b| b.delivery_id).collect();
        let fences: Vec<i32> = batch.iter().map(|b| b.attempts).collect();
        let errors: Vec<Option<String>> = batch
            .iter()
            .map(|b| b.attempt.error.as_deref().map(storable))
            .collect();
        let statuses: Vec<Option<i32>> = batch.iter().map(|b| b.attempt.http_status).collect();
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut next_attempts = Vec::with_capacity(batch.len());
        let mut completions = Vec::with_capacity(batch.len());
        for settle in batch {
            let (outcome, next_attempt, completed) = match settle.settlement {
                Settlement::Succeeded => ("succeeded", now, Some(now)),
                Settlement::RetryAt(at) => ("pending", at, None),
                Settlement::Dead | Settlement::DeadAndDisable(_) => ("dead", now, Some(now)),
            };
            outcomes.push(outcome);
            next_attempts.push(next_attempt);
            completions.push(completed);
        }
        // One statement: the attempt log and the fenced settlement in one round trip. Rows deleted
        // meanwhile (their subscription was) are skipped rather than failing the batch; locking the
        // live rows in id order keeps concurrent batches from deadlocking. A row paused during its
        // try (its subscription was disabled) keeps `paused` unless the try settled it for good.
        let held: Vec<Uuid> = sqlx::query_scalar(
            "WITH live AS MATERIALIZED ( \
               SELECT id FROM deliveries WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE), \
             settled AS ( \
               UPDATE deliveries d SET \
                 status = CASE WHEN d.status = 'paused' AND u.status = 'pending' THEN 'paused' ELSE u.status END, \
                 next_attempt_at = u.next_attempt_at, completed_at = u.completed_at, \
                 last_error = u.error, last_http_status = u.http_status, updated_at = $8, claimed_until = NULL \
               FROM unnest($1::uuid[], $2::int[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::text[], $7::int[]) \
                 AS u(id, attempts, status, next_attempt_at, completed_at, error, http_status) \
               WHERE d.id = u.id AND d.id IN (SELECT id FROM live) AND d.attempts = u.attempts \
                 AND d.status IN ('pending', 'paused') \
               RETURNING d.id), \
             logged AS ( \
               INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, http_status, error, response_body) \
               SELECT a.* FROM unnest($1::uuid[], $2::int[], $9::timestamptz[], $10::float8[], $7::int[], $6::text[], $11::text[]) \
                 AS a(delivery_id, attempt, started_at, duration_ms, http_status, error, response_body) \
               WHERE a.delivery_id IN (SELECT id FROM live)) \
             SELECT id FROM settled",
        )
        .bind(&ids)
        .bind(&fences)
        .bind(&outcomes)
        .bind(&next_attempts)
        .bind(&completions)
        .bind(&errors)
        .bind(&statuses)
        .bind(now)
        .bind(batch.iter().map(|b| b.attempt.started_at).collect::<Vec<_>>())
        .bind(batch.iter().map(|b| b.attempt.duration_ms).collect::<Vec<_>>())
        .bind(batch.iter().map(|b| b.attempt.response_body.as_deref().map(storable)).collect::<Vec<_>>())
        .fetch_all(&self.worker_pool)
        .await?;
        // Rare (a 410): disabling is a second step; should it fail, the next 410 disables it.
        for settle in batch {
            if let (Settlement::DeadAndDisable(reason), Some(subscription)) =
                (&settle.settlement, settle.subscription_id)
            {
                if held.contains(&settle.delivery_id) {
                    if let Err(error) = self.disable_after_gone(subscription, reason, now).await {
                        tracing::warn!(%subscription, error = format!("{error:#}"), "cannot disable a subscription that answered 410");
                    }
                }
            }
        }
        Ok(batch
            .iter()
            .map(|b| held.contains(&b.delivery_id))
            .collect())
    }

    async fn disable_after_gone(
        &self,
        subscription: Uuid,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StorageResult<()> {
        let mut tx = self.worker_pool.begin().await?;
        subscriptions::disable(&mut tx, subscription, reason, now).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn get_delivery(&self, id: Uuid) -> StorageResult<Option<(Delivery, Vec<Attempt>)>> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1");
        let Some(delivery) = sqlx::query_as::<_, Delivery>(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let attempts = sqlx::query_as(
            "SELECT attempt, started_at, duration_ms, http_status, error, response_body FROM delivery_attempts \
             WHERE delivery_id = $1 ORDER BY attempt, id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some((delivery, attempts)))
    }

    pub async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: PageLimit,
    ) -> StorageResult<Page<Delivery>> {
        let mut query = QueryBuilder::<Postgres>::new(format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE TRUE"
        ));
        if let Some(id) = filter.subscription_id {
            query.push(" AND subscription_id = ").push_bind(id);
        }
        if let Some(handler) = &filter.handler {
            query.push(" AND handler = ").push_bind(handler.clone());
        }
        if let Some(id) = filter.event_id {
            query.push(" AND event_id = ").push_bind(id);
        }
        if let Some(status) = &filter.status {
            query.push(" AND status = ").push_bind(status.clone());
        }
        super::push_page_clause(&mut query, "created_at, id", after, limit);
        let rows: Vec<Delivery> = query.build_query_as().fetch_all(&self.pool).await?;
        Ok(into_page(rows, limit, |d| PageCursor {
            at: d.created_at,
            key: d.id.to_string(),
        }))
    }

    /// Makes a dead delivery due now for one more try (which schedules no further ones), or
    /// brings a failing delivery's next scheduled try forward to now (keeping the rest of its
    /// schedule). A delivery being tried right now, or one of a disabled subscription, is left alone.
    pub async fn retry_delivery_now(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> StorageResult<RetryRequest> {
        let mut tx = self.pool.begin().await?;
        let row: Option<(String, i32, Option<DateTime<Utc>>, bool)> = sqlx::query_as(
            "SELECT d.status, d.attempts, d.claimed_until, COALESCE(s.enabled, TRUE) FROM deliveries d \
             LEFT JOIN subscriptions s ON s.id = d.subscription_id WHERE d.id = $1 FOR UPDATE OF d",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((status, attempts, claimed_until, enabled)) = row else {
            return Ok(RetryRequest::NotFound);
        };
        let outcome = match status.as_str() {
            "succeeded" => RetryRequest::AlreadySucceeded,
            _ if !enabled => RetryRequest::SubscriptionDisabled,
            "pending" if attempts == 0 || claimed_until.is_some_and(|until| until > now) => {
                RetryRequest::InFlight
            }
            _ => {
                sqlx::query(
                    "UPDATE deliveries SET \
                       max_attempts = CASE WHEN status = 'dead' THEN attempts + 1 ELSE max_attempts END, \
                       status = 'pending', next_attempt_at = $2, completed_at = NULL, claimed_until = NULL, \
                       updated_at = $2 \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query("SELECT pg_notify($1, '')")
                    .bind(WAKE_CHANNEL)
                    .execute(&mut *tx)
                    .await?;
                RetryRequest::Scheduled
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// One new delivery per event in the range (for a subscription, of its types unless
    /// `event_types` says otherwise); with `only_failed`, just the events whose deliveries to this
    /// target died and none succeeded or is still pending. Returns how many were enqueued.
    pub async fn replay(
        &self,
        target: &ReplayTarget,
        range: &ReplayRange,
        max_attempts: i32,
        now: DateTime<Utc>,
    ) -> StorageResult<u64> {
        let (subscription_id, handler) = match target {
            ReplayTarget::Subscription(id) => (Some(*id), None),
            ReplayTarget::Handler(name) => (None, Some(name.as_str())),
        };
        let same_target = "d.event_id = e.id AND d.subscription_id IS NOT DISTINCT FROM $1 AND d.handler IS NOT DISTINCT FROM $2";
        let sql = format!(
            "INSERT INTO deliveries (id, event_id, subscription_id, handler, status, max_attempts, next_attempt_at, created_at, updated_at) \
             SELECT vodhook_uuid_v7(), e.id, $1, $2, 'pending', $3, $4, $4, $4 FROM events e \
             WHERE ($5::timestamptz IS NULL OR e.received_at >= $5) AND ($6::timestamptz IS NULL OR e.received_at < $6) \
               AND (cardinality($7::text[]) = 0 OR e.event_type = ANY($7)) \
               AND (NOT $8 OR (EXISTS (SELECT 1 FROM deliveries d WHERE {same_target} AND d.status = 'dead') \
                    AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE {same_target} AND d.status <> 'dead')))"
        );
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(&sql)
            .bind(subscription_id)
            .bind(handler)
            .bind(max_attempts)
            .bind(now)
            .bind(range.since)
            .bind(range.until)
            .bind(&range.event_types)
            .bind(range.only_failed)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if inserted > 0 {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(WAKE_CHANNEL)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Holds back (`paused`) or resumes (due now) the pending deliveries of a subscription, so
    /// that a disabled subscription's backlog never sits in front of the claim query.
    pub(super) async fn set_paused(
        conn: &mut PgConnection,
        subscription_id: Uuid,
        paused: bool,
        now: DateTime<Utc>,
    ) -> StorageResult<()> {
        let (from, to) = if paused {
            ("pending", "paused")
        } else {
            ("paused", "pending")
        };
        sqlx::query(
            "UPDATE deliveries SET status = $3, next_attempt_at = GREATEST(next_attempt_at, $4), updated_at = $4 \
             WHERE subscription_id = $1 AND status = $2",
        )
        .bind(subscription_id)
        .bind(from)
        .bind(to)
        .bind(now)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Wakes the delivery workers of every process (they LISTEN on `WAKE_CHANNEL`).
    pub async fn notify_workers(&self) -> StorageResult<()> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(WAKE_CHANNEL)
            .execute(&self.worker_pool)
            .await?;
        Ok(())
    }

    /// Pending and dead deliveries per target, for the metrics endpoint.
    pub async fn count_open_deliveries(&self) -> StorageResult<Vec<(String, String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT COALESCE(subscription_id::text, 'handler:' || handler), status, count(*) FROM deliveries \
             WHERE status IN ('pending', 'dead') GROUP BY 1, 2",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
