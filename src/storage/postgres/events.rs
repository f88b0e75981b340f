//! Postgres: the ingest statement (event, upload record and outbox rows in one) and event reads.

use super::{batch, PgStore};
use crate::domain::{Page, PageLimit, RecordChange, StoredEvent};
use crate::storage::common::CommonQueries;
use crate::storage::{upsert, EventFilter, EventStore, IncomingEvent, IngestOutcome};
use crate::storage::{StorageError, StorageResult};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection, Postgres};
use std::sync::LazyLock;
use uuid::Uuid;

/// The enabled subscriptions that want any of the event types `types` (an SQL text array), for
/// an ingest statement to make outbox rows for. Locked (once per statement, where a foreign key
/// would look each up once per row) so that deleting one waits for the statement's commit and
/// then deletes its deliveries too; only those that match, so that ingests of other types never
/// hold up the deletion of a subscription.
pub(super) fn subscribed(types: &str) -> String {
    format!(
        "SELECT id, event_types, url, secret, previous_secret, previous_secret_expires_at FROM subscriptions \
         WHERE enabled AND (cardinality(event_types) = 0 OR event_types && {types}) FOR KEY SHARE"
    )
}

/// One statement, so one round trip: the event (or the stored one it repeats), what it changes
/// in upload records (`records`: statements over the `stored` or `inserted` CTE), and, for a
/// new event, one outbox row per matching enabled subscription and matching handler. The time
/// is the database's, taken as the event is inserted.
fn ingest_sql(records: &[String]) -> String {
    let record: String = records
        .iter()
        .enumerate()
        .map(|(i, sql)| format!("record{i} AS ({sql}), "))
        .collect();
    format!(
        "WITH inserted AS ( \
           INSERT INTO events (id, dedupe_key, event_type, format, file_id, received_at, raw_body, headers, client_addr) \
           VALUES ($1, $2, $3, $4, $5, date_trunc('microseconds', clock_timestamp()), $6, $7, $8) \
           ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, received_at), \
         repeated AS ( \
           SELECT id, date_trunc('microseconds', clock_timestamp()) AS received_at FROM events \
           WHERE dedupe_key = $2 AND NOT EXISTS (SELECT 1 FROM inserted)), \
         stored AS (SELECT id, received_at FROM inserted UNION ALL SELECT id, received_at FROM repeated), \
         {record}\
         subscribed AS ({subscribed}), \
         outbox AS ( \
           INSERT INTO deliveries (id, event_id, subscription_id, handler, status, max_attempts, next_attempt_at, created_at, updated_at) \
           SELECT vodhook_uuid_v7(), e.id, s.id, NULL, 'pending', $10, e.received_at, e.received_at, e.received_at \
             FROM inserted e JOIN subscribed s ON cardinality(s.event_types) = 0 OR $3 = ANY(s.event_types) \
           UNION ALL \
           SELECT vodhook_uuid_v7(), e.id, NULL, h, 'pending', $10, e.received_at, e.received_at, e.received_at \
             FROM inserted e CROSS JOIN unnest($9::text[]) AS h) \
         SELECT id, TRUE FROM inserted UNION ALL SELECT id, FALSE FROM repeated",
        subscribed = subscribed("ARRAY[$3::text]"),
    )
}

/// An event that touches no upload record.
static INGEST_SQL: LazyLock<String> = LazyLock::new(|| ingest_sql(&[]));

/// An upload (NewFileUpload, PullComplete): its record's fields are `$11..`. A repeat may fill
/// gaps too (the v2 and v3 copies of one upload carry different fields).
static INGEST_UPLOAD_SQL: LazyLock<String> =
    LazyLock::new(|| ingest_sql(&[upsert::upsert_from("stored", 11)]));

/// A task's progress (ProcedureStateChanged): `$11..`; a repeat changes nothing (it may be a
/// late copy of a state since overtaken).
static INGEST_PROCESSING_SQL: LazyLock<String> = LazyLock::new(|| {
    ingest_sql(&[
        upsert::task_seen_from("inserted", 11),
        upsert::processing_from("inserted", 11),
    ])
});

/// A deletion (FileDeleted): the FileIds are `$11`.
static INGEST_DELETED_SQL: LazyLock<String> = LazyLock::new(|| {
    ingest_sql(&[upsert::deleted_from(
        "inserted",
        "unnest($11::text[]) AS f(file_id)",
    )])
});

#[async_trait]
impl EventStore for PgStore {
    #[tracing::instrument(skip_all, fields(event_type = %incoming.event.event_type, dedupe_key = %incoming.event.dedupe_key))]
    async fn ingest(&self, incoming: &IncomingEvent<'_>) -> StorageResult<IngestOutcome> {
        let mut held = self.ingest_conns.take().await?;
        let result = ingest_on(held.conn()?, incoming).await;
        held.finish(result)
    }

    async fn ingest_all_or_nothing(
        &self,
        batch: &[IncomingEvent<'_>],
    ) -> StorageResult<Vec<StorageResult<IngestOutcome>>> {
        self.ingest_together(batch).await
    }

    async fn get_event(&self, id: Uuid) -> StorageResult<Option<StoredEvent>> {
        Postgres::get_event(&self.pool, id).await
    }

    async fn get_event_raw_body(&self, id: Uuid) -> StorageResult<Option<Vec<u8>>> {
        Postgres::get_event_raw_body(&self.pool, id).await
    }

    async fn list_events(
        &self,
        filter: &EventFilter,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: PageLimit,
    ) -> StorageResult<Page<StoredEvent>> {
        Postgres::list_events(&self.pool, filter, after, limit).await
    }
}

impl PgStore {
    /// The whole batch in one transaction: one commit (one WAL flush) for all of it; in one
    /// statement when it can be (see `batch`), after which an event that raced a concurrent copy
    /// of itself is stored on its own.
    async fn ingest_together(
        &self,
        batch: &[IncomingEvent<'_>],
    ) -> StorageResult<Vec<StorageResult<IngestOutcome>>> {
        let mut held = self.ingest_conns.take().await?;
        let result = ingest_together_on(held.conn()?, batch).await;
        // An event's own error may have come from the connection too.
        let healthy = result
            .as_ref()
            .is_ok_and(|outcomes| outcomes.iter().all(Result::is_ok));
        held.finish_as(result, healthy)
    }
}

async fn ingest_together_on(
    conn: &mut PgConnection,
    batch: &[IncomingEvent<'_>],
) -> StorageResult<Vec<StorageResult<IngestOutcome>>> {
    if batch::fits(batch) {
        // The statement commits as it ends. Should its answer then fail to arrive, the caller
        // stores the events one by one, and finds them stored: they are answered as repeats, and
        // their deliveries wait for a scan (or their lease) rather than a hand-off.
        let stored = batch::ingest_rows(conn, batch).await?;
        // The rest of the batch is committed; an event that raced a concurrent copy of itself
        // is a repeat of that copy, stored as one now that the copy is visible.
        let mut outcomes = Vec::with_capacity(batch.len());
        for (outcome, incoming) in stored.into_iter().zip(batch) {
            outcomes.push(match outcome {
                Some(outcome) => Ok(outcome),
                None => ingest_on(conn, incoming).await,
            });
        }
        return Ok(outcomes);
    }
    let mut tx = conn.begin().await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for incoming in batch {
        outcomes.push(Ok(ingest_on(&mut tx, incoming).await?));
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Runs the ingest statement for one event on `conn` (in the caller's transaction, if any).
async fn ingest_on(
    conn: &mut PgConnection,
    incoming: &IncomingEvent<'_>,
) -> StorageResult<IngestOutcome> {
    let event = incoming.event;
    // A repeat committed by another request after this statement took its snapshot is seen
    // by neither half of it (the insert skips it, the lookup cannot see it): ask again.
    for _ in 0..5 {
        let sql: &str = match (&event.upload, &event.change) {
            (Some(_), _) => &INGEST_UPLOAD_SQL,
            (None, Some(RecordChange::Processing(_))) => &INGEST_PROCESSING_SQL,
            (None, Some(RecordChange::Deleted(_))) => &INGEST_DELETED_SQL,
            (None, None) => &INGEST_SQL,
        };
        let query = sqlx::query_as::<_, (Uuid, bool)>(sql)
            .bind(incoming.id)
            .bind(&event.dedupe_key)
            .bind(&event.event_type)
            .bind(event.format.as_str())
            .bind(event.file_id.as_ref().map(|f| f.as_str()))
            .bind(incoming.raw_body)
            .bind(&incoming.headers)
            .bind(&incoming.client_addr)
            .bind(&incoming.handlers)
            .bind(incoming.max_attempts);
        let query = match (&event.upload, &event.change) {
            (Some(fields), _) => upsert::bind_fields(query, Some(fields)),
            (None, Some(RecordChange::Processing(change))) => {
                upsert::bind_processing(query, change)
            }
            (None, Some(RecordChange::Deleted(files))) => {
                query.bind(files.iter().map(|f| f.as_str()).collect::<Vec<_>>())
            }
            (None, None) => query,
        };
        let stored = query.fetch_optional(&mut *conn).await?;
        if let Some((event_id, new)) = stored {
            return Ok(IngestOutcome {
                event_id,
                duplicate: !new,
                claimed: Vec::new(),
            });
        }
    }
    Err(StorageError::Conflict(format!(
        "event {} kept racing with a concurrent copy",
        event.dedupe_key
    )))
}
