//! The queries both stores run as written, implemented once for any sqlx database that can
//! encode and decode vodhook's values; each backend passes its own pool or transaction.

use super::model::{
    Attempt, Delivery, DeliveryFilter, EventFilter, RetryRequest, StoredToken, UploadFilter,
};
use super::shared::{
    self, EqualityClause, EventRow, OpenDeliveries, Param, RetryCandidate, Statement,
};
use super::shared::{ATTEMPT_COLUMNS, DELIVERY_COLUMNS, EVENT_COLUMNS, UPLOAD_COLUMNS};
use super::{upload_json, StorageError, StorageResult};
use crate::domain::{Page, PageCursor, PageLimit, StoredEvent, Upload};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, FromRow, IntoArguments, Pool, Type};
use uuid::Uuid;

#[async_trait]
pub(super) trait CommonQueries: Database {
    async fn get_event(pool: &Pool<Self>, id: Uuid) -> StorageResult<Option<StoredEvent>>;
    async fn get_event_raw_body(pool: &Pool<Self>, id: Uuid) -> StorageResult<Option<Vec<u8>>>;
    async fn list_events(
        pool: &Pool<Self>,
        filter: &EventFilter,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: PageLimit,
    ) -> StorageResult<Page<StoredEvent>>;
    async fn get_upload(pool: &Pool<Self>, file_id: &str) -> StorageResult<Option<Upload>>;
    async fn list_uploads(
        pool: &Pool<Self>,
        filter: &UploadFilter,
        after: Option<&PageCursor>,
        limit: PageLimit,
        equality: EqualityClause,
    ) -> StorageResult<Page<Upload>>;
    async fn list_uploads_json(
        pool: &Pool<Self>,
        filter: &UploadFilter,
        after: Option<&PageCursor>,
        limit: PageLimit,
        equality: EqualityClause,
    ) -> StorageResult<Vec<u8>>;
    async fn create_token(
        pool: &Pool<Self>,
        name: &str,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StorageResult<()>;
    async fn revoke_token(pool: &Pool<Self>, name: &str, now: DateTime<Utc>)
        -> StorageResult<bool>;
    async fn list_tokens(pool: &Pool<Self>) -> StorageResult<Vec<StoredToken>>;
    async fn is_active_token(pool: &Pool<Self>, token_hash: &str) -> StorageResult<bool>;
    async fn delete_subscription(pool: &Pool<Self>, id: Uuid) -> StorageResult<bool>;
    async fn rotate_subscription_secret(
        pool: &Pool<Self>,
        id: Uuid,
        new_secret: &str,
        previous_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StorageResult<bool>;
    /// Disables a subscription whose target said it is gone, and pauses its backlog.
    async fn disable_subscription(
        conn: &mut Self::Connection,
        id: Uuid,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StorageResult<()>;
    /// Holds back (`paused`) or resumes (due now) the pending deliveries of a subscription, so
    /// that a disabled subscription's backlog never sits in front of the claim query.
    async fn set_paused(
        conn: &mut Self::Connection,
        subscription_id: Uuid,
        paused: bool,
        now: DateTime<Utc>,
    ) -> StorageResult<()>;
    /// A manual retry inside the caller's transaction; `candidate_sql` reads the delivery and
    /// keeps others off it until commit.
    async fn retry_delivery_now(
        conn: &mut Self::Connection,
        candidate_sql: &str,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> StorageResult<RetryRequest>;
    async fn get_delivery(
        pool: &Pool<Self>,
        id: Uuid,
    ) -> StorageResult<Option<(Delivery, Vec<Attempt>)>>;
    async fn list_deliveries(
        pool: &Pool<Self>,
        filter: &DeliveryFilter,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: PageLimit,
    ) -> StorageResult<Page<Delivery>>;
    async fn count_open_deliveries(pool: &Pool<Self>) -> StorageResult<Vec<(String, String, i64)>>;
    async fn release_claims(pool: &Pool<Self>, claims: &[(Uuid, i32)]) -> StorageResult<()>;
    /// The rows a built statement selects, as `T`.
    async fn fetch_statement<T>(pool: &Pool<Self>, statement: Statement) -> StorageResult<Vec<T>>
    where
        T: for<'r> FromRow<'r, Self::Row> + Send + Unpin;
}

#[async_trait]
impl<DB> CommonQueries for DB
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> DateTime<Utc>: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'r> Vec<u8>: Decode<'r, DB> + Type<DB>,
    for<'r> bool: Decode<'r, DB> + Type<DB>,
    for<'r> Uuid: Decode<'r, DB>,
    for<'r> &'r str: Decode<'r, DB>,
    for<'r> i64: Decode<'r, DB>,
    for<'r> f64: Decode<'r, DB> + Type<DB>,
    for<'r> DateTime<Utc>: Decode<'r, DB>,
    for<'r> serde_json::Value: Decode<'r, DB> + Type<DB>,
    for<'r> EventRow: FromRow<'r, DB::Row>,
    for<'r> Upload: FromRow<'r, DB::Row>,
    for<'r> StoredToken: FromRow<'r, DB::Row>,
    for<'r> Delivery: FromRow<'r, DB::Row>,
    for<'r> Attempt: FromRow<'r, DB::Row>,
    for<'r> OpenDeliveries: FromRow<'r, DB::Row>,
    for<'r> RetryCandidate: FromRow<'r, DB::Row>,
    usize: ColumnIndex<DB::Row>,
{
    async fn get_event(pool: &Pool<DB>, id: Uuid) -> StorageResult<Option<StoredEvent>> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1");
        let row: Option<EventRow> = sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?;
        Ok(row.map(StoredEvent::from))
    }

    async fn get_event_raw_body(pool: &Pool<DB>, id: Uuid) -> StorageResult<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT raw_body FROM events WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?,
        )
    }

    async fn list_events(
        pool: &Pool<DB>,
        filter: &EventFilter,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: PageLimit,
    ) -> StorageResult<Page<StoredEvent>> {
        let statement = shared::list_events_query(filter, after, limit);
        let rows: Vec<EventRow> = bind_params(sqlx::query_as(&statement.sql), statement.params)
            .fetch_all(pool)
            .await?;
        Ok(shared::event_page(rows, limit))
    }

    async fn get_upload(pool: &Pool<DB>, file_id: &str) -> StorageResult<Option<Upload>> {
        let sql = format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE file_id = $1");
        Ok(sqlx::query_as(&sql)
            .bind(file_id)
            .fetch_optional(pool)
            .await?)
    }

    async fn list_uploads(
        pool: &Pool<DB>,
        filter: &UploadFilter,
        after: Option<&PageCursor>,
        limit: PageLimit,
        equality: EqualityClause,
    ) -> StorageResult<Page<Upload>> {
        let statement = shared::list_uploads_query(filter, after, limit, equality);
        let rows: Vec<Upload> = bind_params(sqlx::query_as(&statement.sql), statement.params)
            .fetch_all(pool)
            .await?;
        Ok(shared::upload_page(rows, limit))
    }

    async fn list_uploads_json(
        pool: &Pool<DB>,
        filter: &UploadFilter,
        after: Option<&PageCursor>,
        limit: PageLimit,
        equality: EqualityClause,
    ) -> StorageResult<Vec<u8>> {
        let statement = shared::list_uploads_query(filter, after, limit, equality);
        let rows = bind_params(sqlx::query(&statement.sql), statement.params)
            .fetch_all(pool)
            .await?;
        Ok(upload_json::page(&rows, limit.get() as usize)?)
    }

    async fn create_token(
        pool: &Pool<DB>,
        name: &str,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StorageResult<()> {
        let created: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO api_tokens (id, name, token_hash, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(Uuid::now_v7())
        .bind(name)
        .bind(token_hash)
        .bind(now)
        .fetch_optional(pool)
        .await?;
        match created {
            Some(_) => Ok(()),
            None => Err(StorageError::Conflict(format!(
                "an active token named {name:?} already exists"
            ))),
        }
    }

    async fn revoke_token(pool: &Pool<DB>, name: &str, now: DateTime<Utc>) -> StorageResult<bool> {
        let revoked: Option<Uuid> = sqlx::query_scalar(
            "UPDATE api_tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL RETURNING id",
        )
        .bind(name)
        .bind(now)
        .fetch_optional(pool)
        .await?;
        Ok(revoked.is_some())
    }

    async fn list_tokens(pool: &Pool<DB>) -> StorageResult<Vec<StoredToken>> {
        Ok(sqlx::query_as(
            "SELECT name, created_at, revoked_at FROM api_tokens ORDER BY created_at, name",
        )
        .fetch_all(pool)
        .await?)
    }

    async fn is_active_token(pool: &Pool<DB>, token_hash: &str) -> StorageResult<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL)",
        )
        .bind(token_hash)
        .fetch_one(pool)
        .await?)
    }

    async fn release_claims(pool: &Pool<DB>, claims: &[(Uuid, i32)]) -> StorageResult<()> {
        // Rare (a stalled or stopping worker), so one statement per claim; the fence leaves a row
        // alone that another worker has claimed since, or that was settled.
        for (id, attempts) in claims {
            sqlx::query(
                "UPDATE deliveries SET attempts = attempts - 1, claimed_until = NULL \
                 WHERE id = $1 AND attempts = $2 AND status IN ('pending', 'paused')",
            )
            .bind(*id)
            .bind(i64::from(*attempts))
            .execute(pool)
            .await?;
        }
        Ok(())
    }

    async fn delete_subscription(pool: &Pool<DB>, id: Uuid) -> StorageResult<bool> {
        let deleted: Option<Uuid> =
            sqlx::query_scalar("DELETE FROM subscriptions WHERE id = $1 RETURNING id")
                .bind(id)
                .fetch_optional(pool)
                .await?;
        Ok(deleted.is_some())
    }

    async fn rotate_subscription_secret(
        pool: &Pool<DB>,
        id: Uuid,
        new_secret: &str,
        previous_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StorageResult<bool> {
        let rotated: Option<Uuid> = sqlx::query_scalar(
            "UPDATE subscriptions SET previous_secret = secret, previous_secret_expires_at = $3, \
             secret = $2, updated_at = $4 WHERE id = $1 RETURNING id",
        )
        .bind(id)
        .bind(new_secret)
        .bind(previous_until)
        .bind(now)
        .fetch_optional(pool)
        .await?;
        Ok(rotated.is_some())
    }

    async fn disable_subscription(
        conn: &mut DB::Connection,
        id: Uuid,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StorageResult<()> {
        sqlx::query(
            "UPDATE subscriptions SET enabled = FALSE, disabled_reason = $2, updated_at = $3 WHERE id = $1",
        )
        .bind(id)
        .bind(reason)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        DB::set_paused(conn, id, true, now).await
    }

    async fn set_paused(
        conn: &mut DB::Connection,
        subscription_id: Uuid,
        paused: bool,
        now: DateTime<Utc>,
    ) -> StorageResult<()> {
        // The statuses are literals (from a fixed pair), so that a generic plan (Postgres' API
        // connections use them) still finds the pending rows through the partial index.
        let (from, to) = shared::pause_transition(paused);
        let due = match to {
            "pending" => "$2",
            _ => "next_attempt_at",
        };
        sqlx::query(&format!(
            "UPDATE deliveries SET status = '{to}', next_attempt_at = {due}, updated_at = $2 \
             WHERE subscription_id = $1 AND status = '{from}'"
        ))
        .bind(subscription_id)
        .bind(now)
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn retry_delivery_now(
        conn: &mut DB::Connection,
        candidate_sql: &str,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> StorageResult<RetryRequest> {
        let candidate: Option<RetryCandidate> = sqlx::query_as(candidate_sql)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        let decision = shared::retry_decision(candidate.as_ref(), now);
        if decision == RetryRequest::Scheduled {
            // A dead delivery gets one more try (and no further ones); a failing one is due now.
            sqlx::query(
                "UPDATE deliveries SET \
                 max_attempts = CASE WHEN status = 'dead' THEN attempts + 1 ELSE max_attempts END, \
                 status = 'pending', next_attempt_at = $2, completed_at = NULL, claimed_until = NULL, \
                 updated_at = $2 WHERE id = $1",
            )
            .bind(id)
            .bind(now)
            .execute(conn)
            .await?;
        }
        Ok(decision)
    }

    async fn get_delivery(
        pool: &Pool<DB>,
        id: Uuid,
    ) -> StorageResult<Option<(Delivery, Vec<Attempt>)>> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1");
        let Some(delivery) = sqlx::query_as::<DB, Delivery>(&sql)
            .bind(id)
            .fetch_optional(pool)
            .await?
        else {
            return Ok(None);
        };
        // The try that settled a delivery as succeeded is kept on its row, not in the log (rows
        // settled before the row kept its last try logged it, and have no `last_started_at`).
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts WHERE delivery_id = $1 \
             UNION ALL \
             SELECT attempts, last_started_at, last_duration_ms, last_http_status, last_error, last_response_body \
             FROM deliveries d WHERE id = $1 AND status = 'succeeded' AND last_started_at IS NOT NULL \
               AND NOT EXISTS (SELECT 1 FROM delivery_attempts a WHERE a.delivery_id = d.id AND a.attempt = d.attempts) \
             ORDER BY attempt, started_at"
        );
        let attempts = sqlx::query_as(&sql).bind(id).fetch_all(pool).await?;
        Ok(Some((delivery, attempts)))
    }

    async fn list_deliveries(
        pool: &Pool<DB>,
        filter: &DeliveryFilter,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: PageLimit,
    ) -> StorageResult<Page<Delivery>> {
        let statement = shared::list_deliveries_query(filter, after, limit);
        let rows: Vec<Delivery> = bind_params(sqlx::query_as(&statement.sql), statement.params)
            .fetch_all(pool)
            .await?;
        Ok(shared::delivery_page(rows, limit))
    }

    async fn count_open_deliveries(pool: &Pool<DB>) -> StorageResult<Vec<(String, String, i64)>> {
        let rows: Vec<OpenDeliveries> = sqlx::query_as(
            "SELECT subscription_id, handler, status, count(*) AS count FROM deliveries \
             WHERE status IN ('pending', 'dead') GROUP BY subscription_id, handler, status",
        )
        .fetch_all(pool)
        .await?;
        Ok(rows.into_iter().map(OpenDeliveries::labelled).collect())
    }
    async fn fetch_statement<T>(pool: &Pool<DB>, statement: Statement) -> StorageResult<Vec<T>>
    where
        T: for<'r> FromRow<'r, DB::Row> + Send + Unpin,
    {
        Ok(
            bind_params(sqlx::query_as(&statement.sql), statement.params)
                .fetch_all(pool)
                .await?,
        )
    }
}

/// Binds a built statement's parameters, in order.
fn bind_params<'q, DB, Q>(query: Q, params: Vec<Param>) -> Q
where
    DB: Database,
    Q: BindValue<'q, DB>,
    String: Encode<'q, DB> + Type<DB>,
    Uuid: Encode<'q, DB> + Type<DB>,
    DateTime<Utc>: Encode<'q, DB> + Type<DB>,
{
    params.into_iter().fold(query, |query, param| match param {
        Param::Text(value) => query.bind_value(value),
        Param::Uuid(value) => query.bind_value(value),
        Param::Time(value) => query.bind_value(value),
    })
}

/// A query that takes one more parameter (sqlx's `Query` and `QueryAs` alike).
pub(super) trait BindValue<'q, DB: Database>: Sized {
    fn bind_value<T: 'q + Encode<'q, DB> + Type<DB>>(self, value: T) -> Self;
}

impl<'q, DB: Database> BindValue<'q, DB>
    for sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>
{
    fn bind_value<T: 'q + Encode<'q, DB> + Type<DB>>(self, value: T) -> Self {
        self.bind(value)
    }
}

impl<'q, DB: Database, O> BindValue<'q, DB>
    for sqlx::query::QueryAs<'q, DB, O, <DB as Database>::Arguments<'q>>
{
    fn bind_value<T: 'q + Encode<'q, DB> + Type<DB>>(self, value: T) -> Self {
        self.bind(value)
    }
}
