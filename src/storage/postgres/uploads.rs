//! Postgres: upload record reads (the record is written by the ingest statement).

use super::PgStore;
use crate::domain::{Page, PageCursor, PageLimit, Upload};
use crate::storage::common::CommonQueries;
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
        Postgres::get_upload(&self.pool, file_id).await
    }

    async fn list_uploads(
        &self,
        filter: &UploadFilter,
        after: Option<&PageCursor>,
        limit: PageLimit,
    ) -> StorageResult<Page<Upload>> {
        Postgres::list_uploads(&self.pool, filter, after, limit, prefix_equality).await
    }

    async fn list_uploads_json(
        &self,
        filter: &UploadFilter,
        after: Option<&PageCursor>,
        limit: PageLimit,
    ) -> StorageResult<Vec<u8>> {
        Postgres::list_uploads_json(&self.pool, filter, after, limit, prefix_equality).await
    }
}
