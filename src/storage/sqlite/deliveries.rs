//! SQLite: the outbox's claims (leases under the one write lock), settlement, and queries.

use super::{micros, SqliteStore, UUID_V7_SQL};
use crate::domain::{Page, PageLimit};
use crate::storage::common::CommonQueries;
use crate::storage::shared::{self, UPLOAD_COLUMNS};
use crate::storage::{
    Attempt, ClaimedDelivery, Delivery, DeliveryFilter, DeliveryStore, EventClaims, ReplayRange,
    ReplayTarget, RetryRequest, Settle, Settlement, StorageResult,
};
use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::types::Json;
use sqlx::{QueryBuilder, Sqlite};
use uuid::Uuid;

#[async_trait]
impl DeliveryStore for SqliteStore {
    async fn claim_due_deliveries(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: i64,
        handlers: &[String],
    ) -> StorageResult<Vec<ClaimedDelivery>> {
        self.claim(now, lease, handlers, |query| {
            query.push("ORDER BY next_attempt_at LIMIT ");
            query.push_bind(limit);
        })
        .await
    }

    async fn claim_deliveries_of_events(
        &self,
        event_ids: &[Uuid],
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: i64,
        handlers: &[String],
    ) -> StorageResult<EventClaims> {
        if event_ids.is_empty() {
            return Ok(EventClaims::default());
        }
        let of_events = |query: &mut QueryBuilder<'_, Sqlite>| {
            query.push("AND event_id IN (");
            let mut list = query.separated(", ");
            for id in event_ids {
                list.push_bind(*id);
            }
            query.push(") ");
        };
        let claimed = self
            .claim(now, lease, handlers, |query| {
                of_events(query);
                query.push("ORDER BY id LIMIT ");
                query.push_bind(limit);
            })
            .await?;
        // Only a full claim can have left some behind.
        let more_due = match i64::try_from(claimed.len()).is_ok_and(|n| n >= limit) {
            true => {
                let mut query =
                    QueryBuilder::<Sqlite>::new("SELECT EXISTS (SELECT 1 FROM deliveries WHERE ");
                push_claimable(&mut query, due_by(now), handlers);
                of_events(&mut query);
                query.push(")");
                // The claim is committed: losing it to a failed look-ahead would strand its rows
                // until their lease ends. Assume some are left; asking again is cheap.
                query
                    .build_query_scalar()
                    .fetch_one(&self.readers)
                    .await
                    .unwrap_or_else(|error| {
                        tracing::warn!(%error, "cannot tell whether deliveries are left over");
                        true
                    })
            }
            false => false,
        };
        Ok(EventClaims { claimed, more_due })
    }

    async fn settle_deliveries(
        &self,
        batch: &[Settle],
        now: DateTime<Utc>,
    ) -> StorageResult<Vec<bool>> {
        let now = micros(now);
        let mut tx = self.write().await?;
        let mut took_all = Vec::with_capacity(batch.len());
        for settle in batch {
            let state = shared::settled_state(settle, now);
            let attempt = &settle.attempt;
            let error = attempt.error.as_deref().map(shared::storable);
            let response_body = attempt.response_body.as_deref().map(shared::storable);
            // Fenced on the attempt count; a row paused during its try stays paused unless the
            // try settled it for good. The try is kept on the row.
            let took: Option<Uuid> = sqlx::query_scalar(
                "UPDATE deliveries SET \
                   status = CASE WHEN status = 'paused' AND $2 = 'pending' THEN 'paused' ELSE $2 END, \
                   next_attempt_at = $3, completed_at = $4, last_error = $5, last_http_status = $6, \
                   updated_at = $7, claimed_until = NULL, last_started_at = $9, last_duration_ms = $10, \
                   last_response_body = $11 \
                 WHERE id = $1 AND attempts = $8 AND status IN ('pending', 'paused') RETURNING id",
            )
            .bind(settle.delivery_id)
            .bind(state.status)
            .bind(micros(state.next_attempt_at))
            .bind(state.completed_at)
            .bind(&error)
            .bind(attempt.http_status)
            .bind(now)
            .bind(settle.attempts)
            .bind(micros(attempt.started_at))
            .bind(attempt.duration_ms)
            .bind(&response_body)
            .fetch_optional(&mut *tx)
            .await?;
            // A try that settled the delivery as succeeded is read from the row; any other is
            // logged, while the row exists (its subscription may have been deleted meanwhile).
            if !(took.is_some() && settle.settlement == Settlement::Succeeded) {
                sqlx::query(
                    "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, http_status, error, response_body) \
                     SELECT id, $2, $3, $4, $5, $6, $7 FROM deliveries WHERE id = $1",
                )
                .bind(settle.delivery_id)
                .bind(settle.attempts)
                .bind(micros(attempt.started_at))
                .bind(attempt.duration_ms)
                .bind(attempt.http_status)
                .bind(&error)
                .bind(&response_body)
                .execute(&mut *tx)
                .await?;
            }
            took_all.push(took.is_some());
        }
        // One transaction: the subscriptions whose targets answered 410 are disabled with it.
        for (subscription, reason) in shared::gone_subscriptions(batch, &took_all) {
            Sqlite::disable_subscription(&mut tx, subscription, reason, now).await?;
        }
        tx.commit().await?;
        Ok(took_all)
    }

    async fn get_delivery(&self, id: Uuid) -> StorageResult<Option<(Delivery, Vec<Attempt>)>> {
        Sqlite::get_delivery(&self.readers, id).await
    }

    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: PageLimit,
    ) -> StorageResult<Page<Delivery>> {
        Sqlite::list_deliveries(&self.readers, filter, after, limit).await
    }

    async fn retry_delivery_now(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> StorageResult<RetryRequest> {
        // BEGIN IMMEDIATE's write lock holds the row still until commit.
        let mut tx = self.write().await?;
        let candidate = shared::RETRY_CANDIDATE_SQL;
        let decision = Sqlite::retry_delivery_now(&mut tx, candidate, id, micros(now)).await?;
        tx.commit().await?;
        Ok(decision)
    }

    async fn replay(
        &self,
        target: &ReplayTarget,
        range: &ReplayRange,
        max_attempts: i32,
        now: DateTime<Utc>,
    ) -> StorageResult<u64> {
        let (subscription_id, handler) = shared::target_columns(target);
        let same_target = "d.event_id = e.id AND d.subscription_id IS $1 AND d.handler IS $2";
        let sql = format!(
            "INSERT INTO deliveries (id, event_id, subscription_id, handler, status, max_attempts, next_attempt_at, created_at, updated_at) \
             SELECT {UUID_V7_SQL}, e.id, $1, $2, 'pending', $3, $4, $4, $4 FROM events e \
             WHERE ($5 IS NULL OR e.received_at >= $5) AND ($6 IS NULL OR e.received_at < $6) \
               AND (json_array_length($7) = 0 OR e.event_type IN (SELECT value FROM json_each($7))) \
               AND (NOT $8 OR (EXISTS (SELECT 1 FROM deliveries d WHERE {same_target} AND d.status = 'dead') \
                    AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE {same_target} AND d.status <> 'dead')))"
        );
        let inserted = sqlx::query(&sql)
            .bind(subscription_id)
            .bind(handler)
            .bind(max_attempts)
            .bind(micros(now))
            .bind(range.since.map(micros))
            .bind(range.until.map(micros))
            .bind(Json(&range.event_types))
            .bind(range.only_failed)
            .execute(&self.writer)
            .await?
            .rows_affected();
        Ok(inserted)
    }

    async fn count_open_deliveries(&self) -> StorageResult<Vec<(String, String, i64)>> {
        Sqlite::count_open_deliveries(&self.readers).await
    }

    async fn release_claims(&self, claims: &[(Uuid, i32)]) -> StorageResult<()> {
        Sqlite::release_claims(&self.writer, claims).await
    }
}

impl SqliteStore {
    /// Claims the due deliveries that `select` picks (it appends to the WHERE clause: a
    /// narrowing, an order, a limit): each gets an attempt and a lease, and comes back with its
    /// event, target and upload record.
    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        handlers: &[String],
        select: impl FnOnce(&mut QueryBuilder<'_, Sqlite>),
    ) -> StorageResult<Vec<ClaimedDelivery>> {
        let due_by = due_by(now);
        let lease_end = due_by + TimeDelta::from_std(lease).unwrap_or(TimeDelta::MAX);
        let mut claim = QueryBuilder::<Sqlite>::new(
            "UPDATE deliveries SET attempts = attempts + 1, claimed_until = ",
        );
        claim.push_bind(lease_end);
        claim.push(", updated_at = ");
        claim.push_bind(micros(now));
        claim.push(" WHERE id IN (SELECT id FROM deliveries WHERE ");
        push_claimable(&mut claim, due_by, handlers);
        select(&mut claim);
        claim.push(") RETURNING id");
        let mut tx = self.write().await?;
        let ids: Vec<Uuid> = claim.build_query_scalar().fetch_all(&mut *tx).await?;
        if ids.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT d.id, d.attempts, d.max_attempts, d.event_id, e.event_type, e.received_at, e.file_id, e.raw_body, \
                    d.handler, d.subscription_id, s.url, s.secret, s.previous_secret, s.previous_secret_expires_at \
             FROM deliveries d JOIN events e ON e.id = d.event_id LEFT JOIN subscriptions s ON s.id = d.subscription_id \
             WHERE d.id IN (",
        );
        let mut list = query.separated(", ");
        for id in ids {
            list.push_bind(id);
        }
        query.push(") ORDER BY d.next_attempt_at");
        let mut claimed: Vec<ClaimedDelivery> = query.build_query_as().fetch_all(&mut *tx).await?;
        let upload_sql = format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE file_id = $1");
        for claim in &mut claimed {
            if let Some(file_id) = &claim.file_id {
                // A record that does not read back costs the notification its record, not the
                // delivery.
                claim.upload = sqlx::query_as(&upload_sql)
                    .bind(file_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .unwrap_or_else(|error| {
                        tracing::warn!(delivery_id = %claim.id, %error, "cannot read the upload record back");
                        None
                    });
            }
        }
        tx.commit().await?;
        Ok(claimed)
    }
}

/// "Due" is by the later of the worker's clock and this machine's, as on Postgres.
fn due_by(now: DateTime<Utc>) -> DateTime<Utc> {
    micros(now.max(Utc::now()))
}

/// The claimable test (pending, due by `due_by`, not leased, for a target of this process) as
/// the start of a WHERE clause.
fn push_claimable(
    query: &mut QueryBuilder<'_, Sqlite>,
    due_by: DateTime<Utc>,
    handlers: &[String],
) {
    query.push("status = 'pending' AND next_attempt_at <= ");
    query.push_bind(due_by);
    query.push(" AND (claimed_until IS NULL OR claimed_until <= ");
    query.push_bind(due_by);
    query.push(") AND (handler IS NULL OR handler IN (SELECT value FROM json_each(");
    query.push_bind(Json(handlers.to_vec()));
    query.push("))) ");
}
