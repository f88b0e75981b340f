//! Postgres: upload record reads (the record is written by the ingest statement).

use super::PgStore;
use crate::domain::{Page, PageCursor, PageLimit, Upload};
use crate::storage::shared::{self, UPLOAD_COLUMNS};
use crate::storage::{StorageResult, UploadFilter, UploadStore};
use async_trait::async_trait;
use sqlx::Postgres;

/// Filter columns hold whatever VOD (or a stranger) sends, and a btree entry must stay small,
/// so they are indexed by their first 256 characters: compare that prefix, then the whole value.
fn prefix_equality(column: &str) -> Vec<String> {
    vec![
        format!(" AND left({column}, 256) = left("),
        format!(", 256) AND {column} = "),
        String::new(),
    ]
}

#[async_trait]
impl UploadStore for PgStore {
    async fn get_upload(&self, file_id: &str) -> StorageResult<Option<Upload>> {
        let sql = format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE file_id = $1");
        Ok(sqlx::query_as(&sql)
            .bind(file_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn list_uploads(
        &self,
        filter: &UploadFilter,
        after: Option<&PageCursor>,
        limit: PageLimit,
    ) -> StorageResult<Page<Upload>> {
        let mut query =
            shared::list_uploads_query::<Postgres>(filter, after, limit, prefix_equality);
        let rows: Vec<Upload> = query.build_query_as().fetch_all(&self.pool).await?;
        Ok(shared::upload_page(rows, limit))
    }
}
