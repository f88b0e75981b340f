//! Postgres: a whole ingest batch as one statement (events, upload records, outbox rows), so a
//! batch costs one round trip and one commit rather than one statement per event.
//!
//! It serves the common batch: events that make at most an upload record, with distinct dedupe
//! keys and distinct record FileIds (one statement cannot change a row twice). Other batches go
//! event by event, in one transaction.
//!
//! The statement can also claim the new events' deliveries as it stores them (`lease`), and
//! return them with all a worker needs to deliver them, so the worker of this process skips the
//! claim statement (a second write of each outbox row, and a read of its event, subscription and
//! record) for them.

use super::super::shared::UPLOAD_COLUMNS;
use super::super::upsert;
use super::events::subscribed;
use crate::domain::{Upload, UploadFields};
use crate::storage::{ClaimedDelivery, IncomingEvent, IngestOutcome, StorageResult};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, Row};
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
             $7::jsonb[], $8::text[], $9::int4[], $10::int4[], $28::float8[]) \
             AS i(id, dedupe_key, event_type, format, file_id, raw_body, headers, client_addr, max_attempts, ord, lease)), \
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
         upload AS ({upsert} RETURNING {UPLOAD_COLUMNS}), \
         subscribed AS ({subscribed}), \
         new_events AS ( \
           SELECT e.id, e.received_at, i.ord, i.event_type, i.max_attempts, \
             CASE WHEN i.file_id IS NULL OR EXISTS (SELECT 1 FROM upload u WHERE u.file_id = i.file_id) \
               THEN i.lease END AS lease \
           FROM inserted e JOIN input i ON i.dedupe_key = e.dedupe_key), \
         outbox AS ( \
           INSERT INTO deliveries (id, event_id, subscription_id, handler, status, attempts, max_attempts, \
             next_attempt_at, claimed_until, created_at, updated_at) \
           SELECT vodhook_uuid_v7(), t.id, t.subscription_id, t.handler, 'pending', \
             CASE WHEN t.lease IS NULL THEN 0 ELSE 1 END, t.max_attempts, t.received_at, \
             t.received_at + make_interval(secs => t.lease), t.received_at, t.received_at \
           FROM ( \
             SELECT n.*, s.id AS subscription_id, NULL AS handler FROM new_events n \
               JOIN subscribed s ON cardinality(s.event_types) = 0 OR n.event_type = ANY(s.event_types) \
             UNION ALL \
             SELECT n.*, NULL, h.name FROM new_events n \
               JOIN unnest($11::int4[], $12::text[]) AS h(ord, name) ON h.ord = n.ord) t \
           RETURNING id, event_id, subscription_id, handler, attempts) \
         SELECT {upload_columns}, s.ord, s.id, s.fresh, s.received_at, \
           o.id, o.subscription_id, o.handler, sub.url, sub.secret, sub.previous_secret, sub.previous_secret_expires_at \
         FROM stored s JOIN input i ON i.ord = s.ord \
           LEFT JOIN outbox o ON o.event_id = s.id AND o.attempts = 1 \
           LEFT JOIN subscribed sub ON sub.id = o.subscription_id \
           LEFT JOIN upload u ON o.id IS NOT NULL AND u.file_id = i.file_id",
        upload_columns = UPLOAD_COLUMNS
            .split(',')
            .map(|c| format!("u.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", "),
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

/// Stores `batch` (which `fits`) in one statement on `conn`, which is its own transaction: one
/// round trip, with no BEGIN and COMMIT of its own. An event that raced a concurrent copy of
/// itself has no outcome (`None`): the copy was committed after the statement's snapshot was
/// taken, so the statement can neither insert it nor see it; nothing of it was stored here.
pub(super) async fn ingest_rows(
    conn: &mut PgConnection,
    batch: &[IncomingEvent<'_>],
) -> StorageResult<Vec<Option<IngestOutcome>>> {
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
    let rows: Vec<PgRow> = sqlx::query(&BATCH_SQL)
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
        .bind(
            batch
                .iter()
                .map(|i| i.lease.map(|lease| lease.as_secs_f64()))
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut *conn)
        .await?;
    let mut outcomes: Vec<Option<IngestOutcome>> = vec![None; batch.len()];
    for row in &rows {
        let ord: i32 = row.try_get(ORD)?;
        let Some((slot, incoming)) = usize::try_from(ord)
            .ok()
            .and_then(|i| Some((outcomes.get_mut(i)?, batch.get(i)?)))
        else {
            continue;
        };
        let fresh: bool = row.try_get(ORD + 2)?;
        let outcome = slot.get_or_insert_with(|| IngestOutcome {
            event_id: Uuid::nil(),
            duplicate: !fresh,
            claimed: Vec::new(),
        });
        outcome.event_id = row.try_get(ORD + 1)?;
        if let Some(claim) = claimed_delivery(row, incoming)? {
            outcome.claimed.push(claim);
        }
    }
    Ok(outcomes)
}

/// Where the statement's own columns start: the upload record's come first (`UPLOAD_COLUMNS`),
/// so that `Upload` reads them by position.
const ORD: usize = column_count(UPLOAD_COLUMNS);

const fn column_count(columns: &str) -> usize {
    let bytes = columns.as_bytes();
    let (mut i, mut count) = (0, 1);
    while i < bytes.len() {
        if bytes[i] == b',' {
            count += 1;
        }
        i += 1;
    }
    count
}

/// The delivery a row of the statement carries, claimed as its event was stored; `None` when it
/// carries none (the event's deliveries were stored unclaimed, or it has none).
fn claimed_delivery(
    row: &PgRow,
    incoming: &IncomingEvent<'_>,
) -> StorageResult<Option<ClaimedDelivery>> {
    let Some(id) = row.try_get::<Option<Uuid>, _>(ORD + 4)? else {
        return Ok(None);
    };
    let event_id: Uuid = row.try_get(ORD + 1)?;
    // As for a claim: a record that does not read back costs the notification its record.
    let upload = match row.try_get::<Option<String>, _>(0)? {
        Some(_) => Upload::from_row(row)
            .map_err(|error| tracing::warn!(delivery_id = %id, %error, "cannot read the upload record back"))
            .ok(),
        None => None,
    };
    let event = incoming.event;
    Ok(Some(ClaimedDelivery {
        id,
        attempts: 1,
        max_attempts: incoming.max_attempts,
        event_id,
        event_type: event.event_type.clone(),
        received_at: row.try_get(ORD + 3)?,
        file_id: event.file_id.as_ref().map(|f| f.to_string()),
        raw_body: incoming.raw_body.to_vec(),
        subscription_id: row.try_get(ORD + 5)?,
        handler: row.try_get(ORD + 6)?,
        url: row.try_get(ORD + 7)?,
        secret: row.try_get(ORD + 8)?,
        previous_secret: row.try_get(ORD + 9)?,
        previous_secret_expires_at: row.try_get(ORD + 10)?,
        upload,
    }))
}
