//! SQLite: upload record reads (the record is written by the ingest transaction).

use super::SqliteStore;
use crate::domain::{Page, PageCursor, PageLimit, Upload};
use crate::storage::common::CommonQueries;
use crate::storage::{StorageResult, UploadFilter, UploadStore};
use async_trait::async_trait;
use sqlx::Sqlite;

/// SQLite indexes text of any length, so a filter compares whole values.
fn whole_equality(column: &str) -> Vec<String> {
    vec![format!(" AND {column} = "), String::new()]
}

#[async_trait]
impl UploadStore for SqliteStore {
    async fn get_upload(&self, file_id: &str) -> StorageResult<Option<Upload>> {
        Sqlite::get_upload(&self.readers, file_id).await
    }

    async fn list_uploads(
        &self,
        filter: &UploadFilter,
        after: Option<&PageCursor>,
        limit: PageLimit,
    ) -> StorageResult<Page<Upload>> {
        Sqlite::list_uploads(&self.readers, filter, after, limit, whole_equality).await
    }

    async fn list_uploads_json(
        &self,
        filter: &UploadFilter,
        after: Option<&PageCursor>,
        limit: PageLimit,
    ) -> StorageResult<Vec<u8>> {
        Sqlite::list_uploads_json(&self.readers, filter, after, limit, whole_equality).await
    }
}
