//! Events: the ingest transaction (event + upload record, deduplicated) and event queries.

use super::{uploads, StorageError, StorageResult, Store};
use crate::domain::{EventFormat, Page, PageCursor, PageLimit, StoredEvent, VodEvent};
use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder};
use std::sync::LazyLock;
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestOutcome {
    /// The stored event: the new one, or the one this repeats.
    pub event_id: Uuid,
    pub duplicate: bool,
}

/// Filters of `GET /v1/events`.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub event_type: Option<String>,
    pub file_id: Option<String>,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: Uuid,
    event_type: String,
    format: String,
    received_at: DateTime<Utc>,
    file_id: Option<String>,
    body: serde_json::Value,
    headers: serde_json::Value,
    client_addr: Option<String>,
}

impl From<EventRow> for StoredEvent {
    fn from(row: EventRow) -> StoredEvent {
        StoredEvent {
            id: row.id,
            event_type: row.event_type,
            // The column's CHECK constraint admits only known formats.
            format: EventFormat::parse(&row.format).unwrap_or(EventFormat::V3),
            received_at: row.received_at,
            file_id: row.file_id,
            body: row.body,
            headers: row.headers,
            client_addr: row.client_addr,
        }
    }
}

/// One statement, so one round trip and one commit: the event (or the stored one it repeats),
/// its upload record, and, for a new event, one outbox row per matching enabled subscription and
/// matching handler. The time is the database's, taken as the event is inserted.
static INGEST_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH inserted AS ( \
           INSERT INTO events (id, dedupe_key, event_type, format, file_id, received_at, raw_body, body, headers, client_addr) \
           VALUES ($1, $2, $3, $4, $5, date_trunc('microseconds', clock_timestamp()), $6, $7, $8, $9) \
           ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, received_at), \
         repeated AS ( \
           SELECT id, date_trunc('microseconds', clock_timestamp()) AS received_at FROM events \
           WHERE dedupe_key = $2 AND NOT EXISTS (SELECT 1 FROM inserted)), \
         stored AS (SELECT id, received_at FROM inserted UNION ALL SELECT id, received_at FROM repeated), \
         upload AS ({upsert}), \
         outbox AS ( \
           INSERT INTO deliveries (id, event_id, subscription_id, handler, status, max_attempts, next_attempt_at, created_at, updated_at) \
           SELECT vodhook_uuid_v7(), e.id, s.id, NULL, 'pending', $11, e.received_at, e.received_at, e.received_at \
             FROM inserted e JOIN subscriptions s ON s.enabled AND (cardinality(s.event_types) = 0 OR $3 = ANY(s.event_types)) \
           UNION ALL \
           SELECT vodhook_uuid_v7(), e.id, NULL, h, 'pending', $11, e.received_at, e.received_at, e.received_at \
             FROM inserted e CROSS JOIN unnest($10::text[]) AS h) \
         SELECT id, TRUE FROM inserted UNION ALL SELECT id, FALSE FROM repeated",
        upsert = uploads::upsert_from("stored", 12),
    )
});

const EVENT_COLUMNS: &str =
    "id, event_type, format, received_at, file_id, body, headers, client_addr";

impl Store {
    /// Stores an event, its upload record and its outbox rows atomically, unless it repeats one
    /// already stored; returns only after commit. A repeat may still complete the upload record,
    /// and gets no outbox rows.
    #[tracing::instrument(skip_all, fields(event_type = %incoming.event.event_type, dedupe_key = %incoming.event.dedupe_key))]
    pub async fn ingest(&self, incoming: &IncomingEvent<'_>) -> StorageResult<IngestOutcome> {
        let event = incoming.event;
        // A repeat committed by another request after this statement took its snapshot is seen
        // by neither half of it (the insert skips it, the lookup cannot see it): ask again.
        for _ in 0..5 {
            let query = sqlx::query_as::<_, (Uuid, bool)>(&INGEST_SQL)
                .bind(incoming.id)
                .bind(&event.dedupe_key)
                .bind(&event.event_type)
                .bind(event.format.as_str())
                .bind(event.file_id.as_ref().map(|f| f.as_str()))
                .bind(incoming.raw_body)
                .bind(&event.body)
                .bind(&incoming.headers)
                .bind(&incoming.client_addr)
                .bind(&incoming.handlers)
                .bind(incoming.max_attempts);
            let stored = uploads::bind_fields(query, event.upload.as_ref())
                .fetch_optional(&self.pool)
                .await?;
            if let Some((event_id, new)) = stored {
                return Ok(IngestOutcome {
                    event_id,
                    duplicate: !new,
                });
            }
        }
        Err(StorageError::Conflict(format!(
            "event {} kept racing with a concurrent copy",
            event.dedupe_key
        )))
    }

    pub async fn get_event(&self, id: Uuid) -> StorageResult<Option<StoredEvent>> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1");
        let row: Option<EventRow> = sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(StoredEvent::from))
    }

    /// The exact bytes an event arrived with.
    pub async fn get_event_raw_body(&self, id: Uuid) -> StorageResult<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT raw_body FROM events WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Newest first; `after` is the cursor of the previous page (its key is an event id).
    pub async fn list_events(
        &self,
        filter: &EventFilter,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: PageLimit,
    ) -> StorageResult<Page<StoredEvent>> {
        let mut query =
            QueryBuilder::<Postgres>::new(format!("SELECT {EVENT_COLUMNS} FROM events WHERE TRUE"));
        if let Some(event_type) = &filter.event_type {
            query
                .push(" AND event_type = ")
                .push_bind(event_type.clone());
        }
        if let Some(file_id) = &filter.file_id {
            query.push(" AND file_id = ").push_bind(file_id.clone());
        }
        super::push_page_clause(&mut query, "received_at, id", after, limit);
        let rows: Vec<EventRow> = query.build_query_as().fetch_all(&self.pool).await?;
        let events = rows.into_iter().map(StoredEvent::from).collect();
        Ok(super::into_page(events, limit, |e: &StoredEvent| {
            PageCursor {
                at: e.received_at,
                key: e.id.to_string(),
            }
        }))
    }
}
