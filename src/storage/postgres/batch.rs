//! Postgres: a whole ingest batch as one statement (events, upload records, outbox rows), so a
//! batch costs one round trip and one commit rather than one statement per event.
//!
//! It serves the common batch: events that make at most an upload record, with distinct dedupe
//! keys and distinct record FileIds (one statement cannot change a row twice). Other batches,
//! and a batch that races a concurrent copy of one of its events, go event by event.

use super::super::upsert;
use super::events::subscribed;
use crate::domain::UploadFields;
use crate::storage::{IncomingEvent, IngestOutcome, StorageResult};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use std::collections::HashSet;
use std::sync::LazyLock;
use uuid::Uuid;

/// The statement; parameters are arrays, one element per event (or per handler, per upload).
static BATCH_SQL: LazyLock<String> = LazyLock::new(|| {
    let vod = upsert::vod_columns();
    let types = [
        "text",
        "text",
        "text",
        "text",
        "text",
        "text",
        "text",
        "text",
        "text",
        "int8",
        "int8",
        "float8",
        "timestamptz",
    ];
    let arrays: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}[]", 15 + i))
        .collect();
    let upload_rows = format!(
        "SELECT u.file_id, {columns}, s.id, s.received_at, s.received_at \
         FROM unnest($13::int4[], $14::text[], {arrays}) AS u(ord, file_id, {vod}) \
         JOIN stored s ON s.ord = u.ord",
        columns = vod
            .iter()
            .map(|c| format!("u.{c}"))
            .collect::<Vec<_>>()
            .join(", "),
        arrays = arrays.join(", "),
        vod = vod.join(", "),
    );
    format!(
        "WITH input AS ( \
           SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], \
             $7::jsonb[], $8::text[], $9::int4[], $10::int4[]) \
             AS i(id, dedupe_key, event_type, format, file_id, raw_body, headers, client_addr, max_attempts, ord)), \
         inserted AS ( \
           INSERT INTO events (id, dedupe_key, event_type, format, file_id, received_at, raw_body, headers, client_addr) \
           SELECT id, dedupe_key, event_type, format, file_id, date_trunc('microseconds', clock_timestamp()), \
             raw_body, headers, client_addr FROM input ORDER BY ord \
           ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, received_at, dedupe_key), \
         repeated AS ( \
           SELECT e.id, date_trunc('microseconds', clock_timestamp()) AS received_at, e.dedupe_key \
           FROM input i JOIN events e ON e.dedupe_key = i.dedupe_key \
           WHERE NOT EXISTS (SELECT 1 FROM inserted x WHERE x.dedupe_key = i.dedupe_key)), \
         stored AS ( \
           SELECT i.ord, s.id, s.received_at, s.fresh FROM input i JOIN ( \
             SELECT id, received_at, dedupe_key, TRUE AS fresh FROM inserted \
             UNION ALL SELECT id, received_at, dedupe_key, FALSE FROM repeated) s \
           ON s.dedupe_key = i.dedupe_key), \
         upload AS ({upsert}), \
         subscribed AS ({subscribed}), \
         outbox AS ( \
           INSERT INTO deliveries (id, event_id, subscription_id, handler, status, max_attempts, next_attempt_at, created_at, updated_at) \
           SELECT vodhook_uuid_v7(), e.id, s.id, NULL, 'pending', i.max_attempts, e.received_at, e.received_at, e.received_at \
             FROM inserted e JOIN input i ON i.dedupe_key = e.dedupe_key \
             JOIN subscribed s ON cardinality(s.event_types) = 0 OR i.event_type = ANY(s.event_types) \
           UNION ALL \
           SELECT vodhook_uuid_v7(), e.id, NULL, h.name, 'pending', i.max_attempts, e.received_at, e.received_at, e.received_at \
             FROM inserted e JOIN input i ON i.dedupe_key = e.dedupe_key \
             JOIN unnest($11::int4[], $12::text[]) AS h(ord, name) ON h.ord = i.ord) \
         SELECT ord, id, fresh FROM stored",
        upsert = upsert::upsert_rows(&upload_rows),
        subscribed = subscribed("(SELECT array_agg(event_type) FROM input)"),
    )
});

/// Whether `batch` can go as one statement (see the module comment).
pub(super) fn fits(batch: &[IncomingEvent<'_>]) -> bool {
    let mut keys = HashSet::new();
    let mut files = HashSet::new();
    batch.iter().all(|incoming| {
        let event = incoming.event;
        event.change.is_none()
            && keys.insert(event.dedupe_key.as_str())
            && event
                .upload
                .as_ref()
                .is_none_or(|u| files.insert(u.file_id.as_str()))
    })
}

/// Stores `batch` (which `fits`) in one statement on `conn`; `None` when an event raced a
/// concurrent copy of itself (its outcome cannot be read from this statement), so the caller
/// rolls back and goes event by event.
pub(super) async fn ingest_rows(
    conn: &mut PgConnection,
    batch: &[IncomingEvent<'_>],
) -> StorageResult<Option<Vec<IngestOutcome>>> {
    let ords: Vec<i32> = (0..batch.len())
        .map(|i| i32::try_from(i).unwrap_or(i32::MAX))
        .collect();
    let column = |f: &dyn Fn(&IncomingEvent<'_>) -> Option<String>| -> Vec<Option<String>> {
        batch.iter().map(f).collect()
    };
    let (handler_ords, handler_names): (Vec<i32>, Vec<String>) = batch
        .iter()
        .zip(&ords)
        .flat_map(|(incoming, ord)| incoming.handlers.iter().map(|h| (*ord, h.clone())))
        .unzip();
    let uploads: Vec<(i32, &UploadFields)> = batch
        .iter()
        .zip(&ords)
        .filter_map(|(incoming, ord)| incoming.event.upload.as_ref().map(|u| (*ord, u)))
        .collect();
    let upload_text = |f: fn(&UploadFields) -> Option<&str>| -> Vec<Option<String>> {
        uploads
            .iter()
            .map(|(_, u)| f(u).map(str::to_owned))
            .collect()
    };
    let rows: Vec<(i32, Uuid, bool)> = sqlx::query_as(&BATCH_SQL)
        .bind(batch.iter().map(|i| i.id).collect::<Vec<_>>())
        .bind(column(&|i| Some(i.event.dedupe_key.clone())))
        .bind(column(&|i| Some(i.event.event_type.clone())))
        .bind(column(&|i| Some(i.event.format.as_str().to_owned())))
        .bind(column(&|i| i.event.file_id.as_ref().map(|f| f.to_string())))
        .bind(
            batch
                .iter()
                .map(|i| i.raw_body.to_vec())
                .collect::<Vec<_>>(),
        )
        .bind(batch.iter().map(|i| &i.headers).collect::<Vec<_>>())
        .bind(column(&|i| i.client_addr.clone()))
        .bind(batch.iter().map(|i| i.max_attempts).collect::<Vec<_>>())
        .bind(&ords)
        .bind(handler_ords)
        .bind(handler_names)
        .bind(uploads.iter().map(|(ord, _)| *ord).collect::<Vec<_>>())
        .bind(upload_text(|u| Some(u.file_id.as_str())))
        .bind(upload_text(|u| u.media_url.as_deref()))
        .bind(upload_text(|u| u.source_type.as_deref()))
        .bind(upload_text(|u| u.source_context.as_deref()))
        .bind(upload_text(|u| u.procedure_task_id.as_deref()))
        .bind(upload_text(|u| u.review_audio_video_task_id.as_deref()))
        .bind(upload_text(|u| u.name.as_deref()))
        .bind(upload_text(|u| u.media_type.as_deref()))
        .bind(upload_text(|u| u.cover_url.as_deref()))
        .bind(upload_text(|u| u.storage_region.as_deref()))
        .bind(uploads.iter().map(|(_, u)| u.class_id).collect::<Vec<_>>())
        .bind(
            uploads
                .iter()
                .map(|(_, u)| u.size_bytes)
                .collect::<Vec<_>>(),
        )
        .bind(
            uploads
                .iter()
                .map(|(_, u)| u.duration_seconds)
                .collect::<Vec<_>>(),
        )
        .bind(
            uploads
                .iter()
                .map(|(_, u)| u.media_created_at)
                .collect::<Vec<Option<DateTime<Utc>>>>(),
        )
        .fetch_all(&mut *conn)
        .await?;
    let mut outcomes: Vec<Option<IngestOutcome>> = vec![None; batch.len()];
    for (ord, event_id, fresh) in rows {
        if let Some(slot) = usize::try_from(ord).ok().and_then(|i| outcomes.get_mut(i)) {
            *slot = Some(IngestOutcome {
                event_id,
                duplicate: !fresh,
            });
        }
    }
    Ok(outcomes.into_iter().collect())
}
