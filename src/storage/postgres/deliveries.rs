//! Postgres: the outbox's claims (SKIP LOCKED leases), fenced group settlement, and queries.

use super::PgStore;
use crate::domain::{Page, PageLimit, Upload};
use crate::storage::common::CommonQueries;
use crate::storage::shared;
use crate::storage::{
    Attempt, ClaimedDelivery, Delivery, DeliveryFilter, DeliveryStore, EventClaims, ReplayRange,
    ReplayTarget, RetryRequest, Settle, StorageResult,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::Postgres;
use std::sync::LazyLock;
use uuid::Uuid;

/// A claim with the upload record of its event's file, read in the same statement as JSON, and
/// how many rows were claimable in all (the claim takes at most its limit of them).
#[derive(sqlx::FromRow)]
struct ClaimRow {
    #[sqlx(flatten)]
    claim: ClaimedDelivery,
    upload_json: Option<Json<serde_json::Value>>,
    claimable: i64,
}

impl ClaimRow {
    /// A record that does not read back (a value outside what Rust's time types hold) costs the
    /// notification its record, not the delivery.
    fn into_claim(self) -> ClaimedDelivery {
        let id = self.claim.id;
        let upload = self.upload_json.and_then(|json| {
            serde_json::from_value::<Upload>(json.0)
                .map_err(|error| tracing::warn!(delivery_id = %id, %error, "cannot read the upload record back"))
                .ok()
        });
        ClaimedDelivery {
            upload,
            ..self.claim
        }
    }
}

/// The claim statement: the deliveries `due` picks (a CTE of `id` and `claimable`, which may use
/// `$3`) get an attempt and a lease, and come back with their event, target and upload record.
/// `$1` is the worker's clock, `$2` the lease in seconds, `$4` this process's handlers.
fn claim_sql(due: &str) -> String {
    format!(
        "WITH {due}, \
         claimed AS ( \
           UPDATE deliveries d SET attempts = d.attempts + 1, \
             claimed_until = GREATEST($1, now()) + make_interval(secs => $2), updated_at = $1 \
           FROM due WHERE d.id = due.id \
           RETURNING d.id, d.attempts, d.max_attempts, d.event_id, d.subscription_id, d.handler, due.claimable) \
         SELECT c.id, c.attempts, c.max_attempts, c.event_id, e.event_type, e.received_at, e.file_id, e.raw_body, \
                c.handler, c.subscription_id, s.url, s.secret, s.previous_secret, s.previous_secret_expires_at, \
                to_jsonb(u) AS upload_json, c.claimable \
         FROM claimed c JOIN events e ON e.id = c.event_id LEFT JOIN subscriptions s ON s.id = c.subscription_id \
           LEFT JOIN uploads u ON u.file_id = e.file_id"
    )
}

/// Which deliveries are claimable now: pending, due, not leased, for a target of this process.
const CLAIMABLE: &str = "status = 'pending' AND next_attempt_at <= GREATEST($1, now()) \
    AND (claimed_until IS NULL OR claimed_until <= GREATEST($1, now())) \
    AND (handler IS NULL OR handler = ANY($4))";

/// The due queue's head, up to `$3` rows, in due order.
static CLAIM_DUE_SQL: LazyLock<String> = LazyLock::new(|| {
    claim_sql(&format!(
        "due AS (SELECT id, 0::int8 AS claimable FROM deliveries WHERE {CLAIMABLE} \
           ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)"
    ))
});

/// The deliveries of the events `$3`, found through their event (the hot path), up to `$5`, with
/// the count of all claimable ones. Only rows not under lease are locked (events handed back
/// after a full claim hold rows claimed by it); the rest of the claimable test, on `status`, is
/// applied after the lookup, so no stale estimate of the due queue (`deliveries_due` is partial on
/// `status`) can make Postgres walk it instead.
static CLAIM_OF_EVENTS_SQL: LazyLock<String> = LazyLock::new(|| {
    claim_sql(&format!(
        "of_events AS MATERIALIZED ( \
           SELECT id, status, next_attempt_at, claimed_until, handler FROM deliveries \
           WHERE event_id = ANY($3) AND (claimed_until IS NULL OR claimed_until <= GREATEST($1, now())) \
           ORDER BY id FOR NO KEY UPDATE SKIP LOCKED), \
         due AS (SELECT id, count(*) OVER () AS claimable FROM of_events WHERE {CLAIMABLE} \
           ORDER BY id LIMIT $5)"
    ))
});

#[async_trait]
impl DeliveryStore for PgStore {
    /// Claims up to `limit` due deliveries for this process's targets: each claim counts as an
    /// attempt and hides the row until `lease_until`, when it comes due again if not settled.
    /// "Due" is by the later of the worker's clock and the database's, so a worker whose clock is
    /// behind the database (which stamps new deliveries) does not hold them back.
    async fn claim_due_deliveries(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: i64,
        handlers: &[String],
    ) -> StorageResult<Vec<ClaimedDelivery>> {
        let query = sqlx::query_as(&CLAIM_DUE_SQL)
            .bind(now)
            .bind(lease.as_secs_f64())
            .bind(limit)
            .bind(handlers);
        let rows = self.claim(query).await?;
        Ok(rows.into_iter().map(ClaimRow::into_claim).collect())
    }

    async fn claim_deliveries_of_events(
        &self,
        event_ids: &[Uuid],
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: i64,
        handlers: &[String],
    ) -> StorageResult<EventClaims> {
        let query = sqlx::query_as(&CLAIM_OF_EVENTS_SQL)
            .bind(now)
            .bind(lease.as_secs_f64())
            .bind(event_ids)
            .bind(handlers)
            .bind(limit);
        let rows = self.claim(query).await?;
        let claimable = rows.iter().map(|r| r.claimable).max().unwrap_or(0);
        let more_due = usize::try_from(claimable).is_ok_and(|all| all > rows.len());
        Ok(EventClaims {
            claimed: rows.into_iter().map(ClaimRow::into_claim).collect(),
            more_due,
        })
    }

    /// Settles each delivery and records its try, in one statement for the whole batch (group
    /// commit: one settlement per delivery would cost a transaction each). The try is kept on the
    /// delivery row; it also goes to the attempt log unless it settled the delivery as succeeded
    /// (the log's reads add that one from the row). A delivery another worker has claimed since
    /// (its lease ran out) only gets its try logged; the result says, per entry, whether the
    /// settlement took.
    async fn settle_deliveries(
        &self,
        batch: &[Settle],
        now: DateTime<Utc>,
    ) -> StorageResult<Vec<bool>> {
        // In id order, so that two batches sharing rows (possible only after a lease ran out)
        // update them in the same order under the usual plan, a nested loop over the arrays; a
        // deadlock, should another plan cause one, costs the batch a retry after its lease.
        let mut ordered: Vec<&Settle> = batch.iter().collect();
        ordered.sort_unstable_by_key(|b| b.delivery_id);
        let ids: Vec<Uuid> = ordered.iter().map(|b| b.delivery_id).collect();
        let fences: Vec<i32> = ordered.iter().map(|b| b.attempts).collect();
        let errors: Vec<Option<String>> = ordered
            .iter()
            .map(|b| b.attempt.error.as_deref().map(shared::storable))
            .collect();
        let statuses: Vec<Option<i32>> = ordered.iter().map(|b| b.attempt.http_status).collect();
        let states: Vec<_> = ordered
            .iter()
            .map(|b| shared::settled_state(b, now))
            .collect();
        let outcomes: Vec<&str> = states.iter().map(|s| s.status).collect();
        let next_attempts: Vec<DateTime<Utc>> = states.iter().map(|s| s.next_attempt_at).collect();
        let completions: Vec<Option<DateTime<Utc>>> =
            states.iter().map(|s| s.completed_at).collect();
        let started: Vec<DateTime<Utc>> = ordered.iter().map(|b| b.attempt.started_at).collect();
        let durations: Vec<f64> = ordered.iter().map(|b| b.attempt.duration_ms).collect();
        let bodies: Vec<Option<String>> = ordered
            .iter()
            .map(|b| b.attempt.response_body.as_deref().map(shared::storable))
            .collect();
        // One statement: the fenced settlement and the attempt log in one round trip. A try is
        // logged only for a row the statement holds locked: one it updated (for this try or, in
        // the same batch, a later one), or one it locks to check it still exists (a row the
        // statement updated cannot be locked again by it, hence the middle case). Rows deleted
        // meanwhile (their subscription was) are skipped by both, after waiting for the deletion
        // to commit; its own deletion of the log then finds nothing of theirs left to miss. A
        // row paused during its try (its subscription was disabled) keeps `paused` unless the
        // try settled it for good. Entries are matched by delivery and attempt, as one batch can
        // hold a stale try and the current one of the same delivery.
        let mut conn = self.worker_conns.take().await?;
        let settled = sqlx::query_as::<_, (Uuid, i32)>(
            "WITH settled AS ( \
               UPDATE deliveries d SET \
                 status = CASE WHEN d.status = 'paused' AND u.status = 'pending' THEN 'paused' ELSE u.status END, \
                 next_attempt_at = u.next_attempt_at, completed_at = u.completed_at, \
                 last_error = u.error, last_http_status = u.http_status, last_started_at = u.started_at, \
                 last_duration_ms = u.duration_ms, last_response_body = u.response_body, \
                 updated_at = $8, claimed_until = NULL \
               FROM unnest($1::uuid[], $2::int[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::text[], $7::int[], \
                           $9::timestamptz[], $10::float8[], $11::text[]) \
                 AS u(id, attempts, status, next_attempt_at, completed_at, error, http_status, started_at, duration_ms, response_body) \
               WHERE d.id = u.id AND d.attempts = u.attempts AND d.status IN ('pending', 'paused') \
               RETURNING d.id, d.attempts), \
             logged AS ( \
               INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, http_status, error, response_body) \
               SELECT a.delivery_id, a.attempt, a.started_at, a.duration_ms, a.http_status, a.error, a.response_body \
               FROM unnest($1::uuid[], $2::int[], $9::timestamptz[], $10::float8[], $7::int[], $6::text[], $11::text[], $3::text[]) \
                 AS a(delivery_id, attempt, started_at, duration_ms, http_status, error, response_body, status) \
               WHERE CASE WHEN (a.delivery_id, a.attempt) IN (SELECT id, attempts FROM settled) \
                            THEN a.status <> 'succeeded' \
                          WHEN a.delivery_id IN (SELECT id FROM settled) THEN TRUE \
                          ELSE EXISTS (SELECT 1 FROM deliveries x WHERE x.id = a.delivery_id FOR KEY SHARE) END) \
             SELECT id, attempts FROM settled",
        )
        .bind(&ids)
        .bind(&fences)
        .bind(&outcomes)
        .bind(&next_attempts)
        .bind(&completions)
        .bind(&errors)
        .bind(&statuses)
        .bind(now)
        .bind(&started)
        .bind(&durations)
        .bind(&bodies)
        .fetch_all(conn.conn()?)
        .await
        .map_err(Into::into);
        let held = conn.finish(settled)?;
        let took: Vec<bool> = batch
            .iter()
            .map(|b| held.contains(&(b.delivery_id, b.attempts)))
            .collect();
        // Rare (a 410): disabling is a second step; should it fail, the next 410 disables it.
        for (subscription, reason) in shared::gone_subscriptions(batch, &took) {
            if let Err(error) = self.disable_after_gone(subscription, reason, now).await {
                tracing::warn!(%subscription, error = format!("{error:#}"), "cannot disable a subscription that answered 410");
            }
        }
        Ok(took)
    }

    async fn get_delivery(&self, id: Uuid) -> StorageResult<Option<(Delivery, Vec<Attempt>)>> {
        Postgres::get_delivery(&self.pool, id).await
    }

    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: PageLimit,
    ) -> StorageResult<Page<Delivery>> {
        Postgres::list_deliveries(&self.pool, filter, after, limit).await
    }

    async fn retry_delivery_now(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> StorageResult<RetryRequest> {
        let mut tx = self.pool.begin().await?;
        let candidate = format!("{} FOR UPDATE OF d", shared::RETRY_CANDIDATE_SQL);
        let decision = Postgres::retry_delivery_now(&mut tx, &candidate, id, now).await?;
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
        let same_target = "d.event_id = e.id AND d.subscription_id IS NOT DISTINCT FROM $1 AND d.handler IS NOT DISTINCT FROM $2";
        // The subscription is locked as an ingest locks it (no foreign key guards the rows): a
        // deletion either waits for this and then deletes these rows, or wins and leaves none.
        let sql = format!(
            "WITH target AS (SELECT id FROM subscriptions WHERE id = $1 FOR KEY SHARE) \
             INSERT INTO deliveries (id, event_id, subscription_id, handler, status, max_attempts, next_attempt_at, created_at, updated_at) \
             SELECT vodhook_uuid_v7(), e.id, $1, $2, 'pending', $3, $4, $4, $4 FROM events e \
             WHERE ($1::uuid IS NULL OR EXISTS (SELECT 1 FROM target)) \
               AND ($5::timestamptz IS NULL OR e.received_at >= $5) AND ($6::timestamptz IS NULL OR e.received_at < $6) \
               AND (cardinality($7::text[]) = 0 OR e.event_type = ANY($7)) \
               AND (NOT $8 OR (EXISTS (SELECT 1 FROM deliveries d WHERE {same_target} AND d.status = 'dead') \
                    AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE {same_target} AND d.status <> 'dead')))"
        );
        // Its optional conditions (`$5 IS NULL OR ...`) fold away only in a custom plan; the
        // API's connections plan generically (see `PgStore::open`).
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan")
            .execute(&mut *tx)
            .await?;
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
        tx.commit().await?;
        Ok(inserted)
    }

    async fn count_open_deliveries(&self) -> StorageResult<Vec<(String, String, i64)>> {
        Postgres::count_open_deliveries(&self.pool).await
    }

    async fn release_claims(&self, claims: &[(Uuid, i32)]) -> StorageResult<()> {
        Postgres::release_claims(&self.pool, claims).await
    }
}

impl PgStore {
    /// Runs a claim statement on the worker's own connection.
    async fn claim(
        &self,
        query: sqlx::query::QueryAs<'_, Postgres, ClaimRow, sqlx::postgres::PgArguments>,
    ) -> StorageResult<Vec<ClaimRow>> {
        let mut held = self.worker_conns.take().await?;
        let claimed = query.fetch_all(held.conn()?).await.map_err(Into::into);
        held.finish(claimed)
    }

    async fn disable_after_gone(
        &self,
        subscription: Uuid,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StorageResult<()> {
        let mut tx = self.worker_pool.begin().await?;
        super::subscriptions::lock_out_ingests(&mut tx, subscription).await?;
        Postgres::disable_subscription(&mut tx, subscription, reason, now).await?;
        tx.commit().await?;
        Ok(())
    }
}
