//! Upload records: created from NewFileUpload events, filled in by later repeats, listed newest first.

use super::{StorageResult, Store};
use crate::domain::{Page, PageCursor, PageLimit, Upload, UploadFields};
use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

/// Filters of `GET /v1/uploads`; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct UploadFilter {
    pub source_context: Option<String>,
    pub source_type: Option<String>,
    pub procedure_task_id: Option<String>,
    pub storage_region: Option<String>,
    pub received_after: Option<DateTime<Utc>>,
    pub received_before: Option<DateTime<Utc>>,
}

const UPLOAD_COLUMNS: &str = "file_id, media_url, source_type, source_context, procedure_task_id, \
    review_audio_video_task_id, name, media_type, cover_url, storage_region, class_id, size_bytes, \
    duration_seconds, media_created_at, first_event_id, received_at, updated_at";

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
    let fill = |c: &&str| {
        match *c {
        "source_type" => "CASE WHEN uploads.source_type = 'Upload' \
                          AND EXCLUDED.source_type IN ('ClientUpload', 'ServerUpload') \
                          THEN EXCLUDED.source_type ELSE COALESCE(uploads.source_type, EXCLUDED.source_type) END"
            .to_owned(),
        _ => format!("COALESCE(uploads.{c}, EXCLUDED.{c})"),
    }
    };
    let values: Vec<String> = (first..first + 1 + VOD_COLUMNS.len())
        .map(|i| format!("${i}"))
        .collect();
    let set: Vec<String> = VOD_COLUMNS
        .iter()
        .map(|c| format!("{c} = {}", fill(c)))
        .collect();
    let current: Vec<String> = VOD_COLUMNS.iter().map(|c| format!("uploads.{c}")).collect();
    let filled: Vec<String> = VOD_COLUMNS.iter().map(fill).collect();
    format!(
        "INSERT INTO uploads (file_id, {vod}, first_event_id, received_at, updated_at) \
         SELECT {values}, ev.id, ev.received_at, ev.received_at FROM {source} ev WHERE ${first}::text IS NOT NULL \
         ON CONFLICT (file_id) DO UPDATE SET {set}, updated_at = EXCLUDED.updated_at \
         WHERE ({current}) IS DISTINCT FROM ({filled})",
        vod = VOD_COLUMNS.join(", "),
        values = values.join(", "),
        set = set.join(", "),
        current = current.join(", "),
        filled = filled.join(", "),
    )
}

/// Binds the record's fields for `upsert_from` (all NULL when there is no record).
pub(super) fn bind_fields<'q>(
    query: sqlx::query::QueryAs<'q, Postgres, (Uuid, bool), sqlx::postgres::PgArguments>,
    fields: Option<&'q UploadFields>,
) -> sqlx::query::QueryAs<'q, Postgres, (Uuid, bool), sqlx::postgres::PgArguments> {
    query
        .bind(fields.map(|f| f.file_id.as_str()))
        .bind(fields.and_then(|f| f.media_url.as_deref()))
        .bind(fields.and_then(|f| f.source_type.as_deref()))
        .bind(fields.and_then(|f| f.source_context.as_deref()))
        .bind(fields.and_then(|f| f.procedure_task_id.as_deref()))
        .bind(fields.and_then(|f| f.review_audio_video_task_id.as_deref()))
        .bind(fields.and_then(|f| f.name.as_deref()))
        .bind(fields.and_then(|f| f.media_type.as_deref()))
        .bind(fields.and_then(|f| f.cover_url.as_deref()))
        .bind(fields.and_then(|f| f.storage_region.as_deref()))
        .bind(fields.and_then(|f| f.class_id))
        .bind(fields.and_then(|f| f.size_bytes))
        .bind(fields.and_then(|f| f.duration_seconds))
        .bind(fields.and_then(|f| f.media_created_at))
}

impl Store {
    pub async fn get_upload(&self, file_id: &str) -> StorageResult<Option<Upload>> {
        let sql = format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE file_id = $1");
        Ok(sqlx::query_as(&sql)
            .bind(file_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Newest first; `after` is the cursor of the previous page.
    pub async fn list_uploads(
        &self,
        filter: &UploadFilter,
        after: Option<&PageCursor>,
        limit: PageLimit,
    ) -> StorageResult<Page<Upload>> {
        let mut query = QueryBuilder::<Postgres>::new(format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE TRUE"
        ));
        let equal = [
            ("source_context", &filter.source_context),
            ("source_type", &filter.source_type),
            ("procedure_task_id", &filter.procedure_task_id),
            ("storage_region", &filter.storage_region),
        ];
        for (column, value) in equal {
            if let Some(value) = value {
                // The prefix comparison is what the index on left(column, 256) serves.
                query
                    .push(format!(" AND left({column}, 256) = left("))
                    .push_bind(value.clone())
                    .push(format!(", 256) AND {column} = "))
                    .push_bind(value.clone());
            }
        }
        if let Some(t) = filter.received_after {
            query.push(" AND received_at > ").push_bind(t);
        }
        if let Some(t) = filter.received_before {
            query.push(" AND received_at < ").push_bind(t);
        }
        super::push_page_clause(
            &mut query,
            "received_at, file_id",
            after.map(|c| (c.at, c.key.clone())),
            limit,
        );
        let rows: Vec<Upload> = query.build_query_as().fetch_all(&self.pool).await?;
        Ok(super::into_page(rows, limit, |u| PageCursor {
            at: u.received_at,
            key: u.fields.file_id.to_string(),
        }))
    }
}
