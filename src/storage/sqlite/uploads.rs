//! SQLite: upload record reads (the record is written by the ingest transaction).

use super::SqliteStore;
use crate::domain::{Page, PageCursor, PageLimit, Upload};
use crate::storage::shared::{self, UPLOAD_COLUMNS};
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
        let sql = format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE file_id = $1");
        Ok(sqlx::query_as(&sql)
            .bind(file_id)
            .fetch_optional(&self.readers)
            .await?)
    }

    async fn list_uploads(
        &self,
        filter: &UploadFilter,
        after: Option<&PageCursor>,
        limit: PageLimit,
    ) -> StorageResult<Page<Upload>> {
        let mut query = shared::list_uploads_query::<Sqlite>(filter, after, limit, whole_equality);
        let rows: Vec<Upload> = query.build_query_as().fetch_all(&self.readers).await?;
        Ok(shared::upload_page(rows, limit))
    }
}
