//! SQLite: the ingest transaction (event, upload record and outbox rows) and event reads.

use super::{now, SqliteStore, UUID_V7_SQL};
use crate::domain::{Page, PageLimit, RecordChange, StoredEvent};
use crate::storage::common::CommonQueries;
use crate::storage::{
    upsert, EventFilter, EventStore, IncomingEvent, IngestOutcome, StorageResult,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{Sqlite, SqliteConnection};
use std::sync::LazyLock;
use uuid::Uuid;

/// What an upload makes of its record; the event's fields are `$1..$14`, then the stored event
/// and its time.
static UPSERT_SQL: LazyLock<String> =
    LazyLock::new(|| upsert::upsert_from("(SELECT $15 AS id, $16 AS received_at)", 1));

/// A task's progress: `$1..$6`, then the stored event and its time.
static PROCESSING_SQL: LazyLock<String> =
    LazyLock::new(|| upsert::processing_from("(SELECT $7 AS id, $8 AS received_at)", 1));

/// When a task was first seen: the progress's parameters, then the stored event and its time.
static TASK_SEEN_SQL: LazyLock<String> =
    LazyLock::new(|| upsert::task_seen_from("(SELECT $7 AS id, $8 AS received_at)", 1));

/// A deletion: the FileIds as a JSON array `$1`, then the stored event and its time.
static DELETED_SQL: LazyLock<String> = LazyLock::new(|| {
    upsert::deleted_from(
        "(SELECT $2 AS id, $3 AS received_at)",
        "(SELECT value AS file_id FROM json_each($1)) AS f",
    )
});

/// One outbox row per matching enabled subscription and per handler (`$5`, a JSON array).
static OUTBOX_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO deliveries (id, event_id, subscription_id, handler, status, max_attempts, next_attempt_at, created_at, updated_at) \
         SELECT {UUID_V7_SQL}, $1, s.id, NULL, 'pending', $3, $2, $2, $2 FROM subscriptions s \
           WHERE s.enabled AND (json_array_length(s.event_types) = 0 \
             OR EXISTS (SELECT 1 FROM json_each(s.event_types) WHERE value = $4)) \
         UNION ALL \
         SELECT {UUID_V7_SQL}, $1, NULL, h.value, 'pending', $3, $2, $2, $2 FROM json_each($5) h"
    )
});

#[async_trait]
impl EventStore for SqliteStore {
    #[tracing::instrument(skip_all, fields(event_type = %incoming.event.event_type, dedupe_key = %incoming.event.dedupe_key))]
    async fn ingest(&self, incoming: &IncomingEvent<'_>) -> StorageResult<IngestOutcome> {
        let mut tx = self.write().await?;
        let outcome = ingest_on(&mut tx, incoming).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn ingest_all_or_nothing(
        &self,
        batch: &[IncomingEvent<'_>],
    ) -> StorageResult<Vec<StorageResult<IngestOutcome>>> {
        Ok(self
            .ingest_together(batch)
            .await?
            .into_iter()
            .map(Ok)
            .collect())
    }

    async fn get_event(&self, id: Uuid) -> StorageResult<Option<StoredEvent>> {
        Sqlite::get_event(&self.readers, id).await
    }

    async fn get_event_raw_body(&self, id: Uuid) -> StorageResult<Option<Vec<u8>>> {
        Sqlite::get_event_raw_body(&self.readers, id).await
    }

    async fn list_events(
        &self,
        filter: &EventFilter,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: PageLimit,
    ) -> StorageResult<Page<StoredEvent>> {
        Sqlite::list_events(&self.readers, filter, after, limit).await
    }
}

impl SqliteStore {
    async fn ingest_together(
        &self,
        batch: &[IncomingEvent<'_>],
    ) -> StorageResult<Vec<IngestOutcome>> {
        let mut tx = self.write().await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for incoming in batch {
            outcomes.push(ingest_on(&mut tx, incoming).await?);
        }
        tx.commit().await?;
        Ok(outcomes)
    }
}

/// Stores one event on `conn`, inside the caller's write transaction: with one writer, nothing
/// can come between the insert and the lookup of a repeat.
async fn ingest_on(
    conn: &mut SqliteConnection,
    incoming: &IncomingEvent<'_>,
) -> StorageResult<IngestOutcome> {
    let event = incoming.event;
    let received_at = now();
    let inserted: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO events (id, dedupe_key, event_type, format, file_id, received_at, raw_body, body, headers, client_addr) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
        )
        .bind(incoming.id)
        .bind(&event.dedupe_key)
        .bind(&event.event_type)
        .bind(event.format.as_str())
        .bind(event.file_id.as_ref().map(|f| f.as_str()))
        .bind(received_at)
        .bind(incoming.raw_body)
        .bind(&event.body)
        .bind(&incoming.headers)
        .bind(&incoming.client_addr)
        .fetch_optional(&mut *conn)
        .await?;
    let outcome = match inserted {
        Some(event_id) => IngestOutcome {
            event_id,
            duplicate: false,
            claimed: Vec::new(),
        },
        None => IngestOutcome {
            event_id: sqlx::query_scalar("SELECT id FROM events WHERE dedupe_key = $1")
                .bind(&event.dedupe_key)
                .fetch_one(&mut *conn)
                .await?,
            duplicate: true,
            claimed: Vec::new(),
        },
    };
    // An upload's repeat may fill gaps (the v2 and v3 copies carry different fields); a repeat
    // of anything else changes nothing (it may be a late copy of an overtaken state).
    let fresh = !outcome.duplicate;
    let record = match (&event.upload, &event.change) {
        (Some(fields), _) => Some(upsert::bind_fields(sqlx::query(&UPSERT_SQL), Some(fields))),
        (None, Some(RecordChange::Processing(change))) if fresh => {
            upsert::bind_processing(sqlx::query(&TASK_SEEN_SQL), change)
                .bind(outcome.event_id)
                .bind(received_at)
                .execute(&mut *conn)
                .await?;
            Some(upsert::bind_processing(
                sqlx::query(&PROCESSING_SQL),
                change,
            ))
        }
        (None, Some(RecordChange::Deleted(files))) if fresh => Some(
            sqlx::query(&DELETED_SQL)
                .bind(Json(files.iter().map(|f| f.as_str()).collect::<Vec<_>>())),
        ),
        _ => None,
    };
    if let Some(record) = record {
        // The stored event and its time are the statement's last two parameters.
        record
            .bind(outcome.event_id)
            .bind(received_at)
            .execute(&mut *conn)
            .await?;
    }
    if !outcome.duplicate {
        sqlx::query(&OUTBOX_SQL)
            .bind(outcome.event_id)
            .bind(received_at)
            .bind(incoming.max_attempts)
            .bind(&event.event_type)
            .bind(Json(&incoming.handlers))
            .execute(&mut *conn)
            .await?;
    }
    Ok(outcome)
}
