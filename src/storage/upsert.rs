//! The upload-record statements both stores run: insert a record or fill its gaps, record a
//! task's progress, mark files deleted.

use super::common::BindValue;
use crate::domain::{ProcessingChange, UploadFields};
use sqlx::{Database, Encode, Type};

/// Columns that come from VOD; a repeat of the upload fills those still empty.
const VOD_COLUMNS: [&str; 13] = [
    "media_url",
    "source_type",
    "source_context",
    "procedure_task_id",
    "review_audio_video_task_id",
    "name",
    "media_type",
    "cover_url",
    "storage_region",
    "class_id",
    "size_bytes",
    "duration_seconds",
    "media_created_at",
];

/// The upload part of the ingest statement: insert the record for the event in `source` (a CTE
/// with `id` and `received_at`), or fill the gaps of an existing record (a v2 and a v3 copy of one
/// upload carry different fields), touching `updated_at` only when something changed. v3 calls
/// every upload `Upload`; v2's ClientUpload/ServerUpload says more, so it wins whichever came
/// first. The record's fields are parameters `$first..`, in the order `bind_fields` binds them;
/// a NULL FileId means the event makes no record.
pub(super) fn upsert_from(source: &str, first: usize) -> String {
    let values: Vec<String> = (first..first + 1 + VOD_COLUMNS.len())
        .map(|i| format!("${i}"))
        .collect();
    upsert_rows(&format!(
        "SELECT {}, ev.id, ev.received_at, ev.received_at FROM {source} ev WHERE CAST(${first} AS TEXT) IS NOT NULL",
        values.join(", ")
    ))
}

/// The upsert of `upsert_from`, for the rows `select` yields: the FileId, the VOD columns in
/// `VOD_COLUMNS` order, then the first event's id and time (twice: received and updated).
pub(super) fn upsert_rows(select: &str) -> String {
    let fill = |c: &&str| {
        match *c {
        "source_type" => "CASE WHEN uploads.source_type = 'Upload' \
                          AND EXCLUDED.source_type IN ('ClientUpload', 'ServerUpload') \
                          THEN EXCLUDED.source_type ELSE COALESCE(uploads.source_type, EXCLUDED.source_type) END"
            .to_owned(),
        _ => format!("COALESCE(uploads.{c}, EXCLUDED.{c})"),
    }
    };
    let set: Vec<String> = VOD_COLUMNS
        .iter()
        .map(|c| format!("{c} = {}", fill(c)))
        .collect();
    let changed: Vec<String> = VOD_COLUMNS
        .iter()
        .map(|c| format!("uploads.{c} IS DISTINCT FROM {}", fill(c)))
        .collect();
    format!(
        "INSERT INTO uploads (file_id, {vod}, first_event_id, received_at, updated_at) {select} \
         ON CONFLICT (file_id) DO UPDATE SET {set}, updated_at = EXCLUDED.updated_at \
         WHERE {changed}",
        vod = VOD_COLUMNS.join(", "),
        set = set.join(", "),
        changed = changed.join(" OR "),
    )
}

/// The VOD columns of the upload record, in the order `upsert_rows` expects them.
pub(super) fn vod_columns() -> &'static [&'static str] {
    &VOD_COLUMNS
}

/// Binds the record's fields for `upsert_from` (all NULL when there is no record), in order.
pub(super) fn bind_fields<'q, DB, Q>(query: Q, fields: Option<&'q UploadFields>) -> Q
where
    DB: Database,
    Q: BindValue<'q, DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
    Option<f64>: Encode<'q, DB> + Type<DB>,
    Option<chrono::DateTime<chrono::Utc>>: Encode<'q, DB> + Type<DB>,
{
    query
        .bind_value(fields.map(|f| f.file_id.as_str()))
        .bind_value(fields.and_then(|f| f.media_url.as_deref()))
        .bind_value(fields.and_then(|f| f.source_type.as_deref()))
        .bind_value(fields.and_then(|f| f.source_context.as_deref()))
        .bind_value(fields.and_then(|f| f.procedure_task_id.as_deref()))
        .bind_value(fields.and_then(|f| f.review_audio_video_task_id.as_deref()))
        .bind_value(fields.and_then(|f| f.name.as_deref()))
        .bind_value(fields.and_then(|f| f.media_type.as_deref()))
        .bind_value(fields.and_then(|f| f.cover_url.as_deref()))
        .bind_value(fields.and_then(|f| f.storage_region.as_deref()))
        .bind_value(fields.and_then(|f| f.class_id))
        .bind_value(fields.and_then(|f| f.size_bytes))
        .bind_value(fields.and_then(|f| f.duration_seconds))
        .bind_value(fields.and_then(|f| f.media_created_at))
}

/// A task's progress on the record of its file (made if the upload has not arrived yet, to be
/// filled in by it). VOD may deliver a task's events out of order, and gives them no time: a
/// state replaces the stored one if it ranks higher in the same task, or belongs to a task first
/// seen no earlier than the stored one's (`processing_tasks`; a task not recorded there yet is
/// new). Parameters `$first..`, in the order `bind_processing` binds them.
pub(super) fn processing_from(source: &str, first: usize) -> String {
    let p = |i: usize| format!("${}", first + i);
    let seen = |file: &str, task: &str| {
        format!(
            "(SELECT t.first_seen_at FROM processing_tasks t WHERE t.file_id = {file} AND t.task_id = {task})"
        )
    };
    format!(
        "INSERT INTO uploads (file_id, processing_status, processing_task_id, processing_rank, \
           processing_results, session_context, processing_updated_at, first_event_id, received_at, updated_at) \
         SELECT {}, {}, {}, {}, {}, {}, ev.received_at, ev.id, ev.received_at, ev.received_at FROM {source} ev WHERE TRUE \
         ON CONFLICT (file_id) DO UPDATE SET processing_status = EXCLUDED.processing_status, \
           processing_task_id = EXCLUDED.processing_task_id, processing_rank = EXCLUDED.processing_rank, \
           processing_results = EXCLUDED.processing_results, \
           session_context = CASE WHEN uploads.processing_task_id IS NOT DISTINCT FROM EXCLUDED.processing_task_id \
             THEN COALESCE(EXCLUDED.session_context, uploads.session_context) ELSE EXCLUDED.session_context END, \
           processing_updated_at = EXCLUDED.processing_updated_at, updated_at = EXCLUDED.updated_at \
         WHERE uploads.processing_rank IS NULL \
           OR (uploads.processing_task_id IS NOT DISTINCT FROM EXCLUDED.processing_task_id \
               AND uploads.processing_rank < EXCLUDED.processing_rank) \
           OR (uploads.processing_task_id IS DISTINCT FROM EXCLUDED.processing_task_id \
               AND COALESCE({new_seen}, EXCLUDED.processing_updated_at) \
                   >= COALESCE({current_seen}, uploads.processing_updated_at))",
        p(0),
        p(1),
        p(2),
        p(3),
        p(4),
        p(5),
        new_seen = seen("EXCLUDED.file_id", "EXCLUDED.processing_task_id"),
        current_seen = seen("uploads.file_id", "uploads.processing_task_id"),
    )
}

/// Records when a file's task was first seen (nothing if it was seen before, or has no id):
/// `$first` the FileId, `$first + 2` the task id, as `bind_processing` binds them.
pub(super) fn task_seen_from(source: &str, first: usize) -> String {
    format!(
        "INSERT INTO processing_tasks (file_id, task_id, first_seen_at) \
         SELECT ${}, ${}, ev.received_at FROM {source} ev WHERE CAST(${} AS TEXT) IS NOT NULL \
         ON CONFLICT (file_id, task_id) DO NOTHING",
        first,
        first + 2,
        first + 2,
    )
}

/// Binds a task's progress for `processing_from`.
pub(super) fn bind_processing<'q, DB, Q>(query: Q, change: &'q ProcessingChange) -> Q
where
    DB: Database,
    Q: BindValue<'q, DB>,
    &'q str: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    &'q serde_json::Value: Encode<'q, DB> + Type<DB>,
{
    query
        .bind_value(change.file_id.as_str())
        .bind_value(change.status.as_str())
        .bind_value(change.task_id.as_deref())
        .bind_value(change.rank)
        .bind_value(&change.results)
        .bind_value(change.session_context.as_deref())
}

/// Marks the records of the files in `files` (a FROM item with a `file_id` column) deleted,
/// making them if the upload has not arrived yet, so it cannot bring a deleted file back.
pub(super) fn deleted_from(source: &str, files: &str) -> String {
    format!(
        "INSERT INTO uploads (file_id, deleted_at, first_event_id, received_at, updated_at) \
         SELECT f.file_id, ev.received_at, ev.id, ev.received_at, ev.received_at FROM {source} ev, {files} WHERE TRUE \
         ON CONFLICT (file_id) DO UPDATE SET deleted_at = EXCLUDED.deleted_at, updated_at = EXCLUDED.updated_at \
         WHERE uploads.deleted_at IS NULL"
    )
}
