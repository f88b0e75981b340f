//! Postgres: stored API tokens.

use super::PgStore;
use crate::storage::common::CommonQueries;
use crate::storage::{StorageResult, StoredToken, TokenStore};
use async_trait::async_trait;
use sqlx::Postgres;

#[async_trait]
impl TokenStore for PgStore {
    async fn create_token(&self, name: &str, token_hash: &str) -> StorageResult<()> {
        Postgres::create_token(&self.pool, name, token_hash, chrono::Utc::now()).await
    }

    async fn list_tokens(&self) -> StorageResult<Vec<StoredToken>> {
        Postgres::list_tokens(&self.pool).await
    }

    async fn revoke_token(&self, name: &str) -> StorageResult<bool> {
        Postgres::revoke_token(&self.pool, name, chrono::Utc::now()).await
    }

    async fn is_active_token(&self, token_hash: &str) -> StorageResult<bool> {
        Postgres::is_active_token(&self.pool, token_hash).await
    }
}
