//! SQLite: stored API tokens.

use super::{now, SqliteStore};
use crate::storage::common::CommonQueries;
use crate::storage::{StorageResult, StoredToken, TokenStore};
use async_trait::async_trait;
use sqlx::Sqlite;

#[async_trait]
impl TokenStore for SqliteStore {
    async fn create_token(&self, name: &str, token_hash: &str) -> StorageResult<()> {
        Sqlite::create_token(&self.writer, name, token_hash, now()).await
    }

    async fn list_tokens(&self) -> StorageResult<Vec<StoredToken>> {
        Sqlite::list_tokens(&self.readers).await
    }

    async fn revoke_token(&self, name: &str) -> StorageResult<bool> {
        Sqlite::revoke_token(&self.writer, name, now()).await
    }

    async fn is_active_token(&self, token_hash: &str) -> StorageResult<bool> {
        Sqlite::is_active_token(&self.readers, token_hash).await
    }
}
