//! SQLite: stored API tokens.

use super::{now, SqliteStore};
use crate::storage::{StorageError, StorageResult, StoredToken, TokenStore};
use async_trait::async_trait;
use uuid::Uuid;

#[async_trait]
impl TokenStore for SqliteStore {
    async fn create_token(&self, name: &str, token_hash: &str) -> StorageResult<()> {
        let result = sqlx::query(
            "INSERT INTO api_tokens (id, name, token_hash, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(Uuid::now_v7())
        .bind(name)
        .bind(token_hash)
        .bind(now())
        .execute(&self.writer)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StorageError::Conflict(format!(
                "an active token named {name:?} already exists"
            )));
        }
        Ok(())
    }

    async fn list_tokens(&self) -> StorageResult<Vec<StoredToken>> {
        Ok(sqlx::query_as(
            "SELECT name, created_at, revoked_at FROM api_tokens ORDER BY created_at, name",
        )
        .fetch_all(&self.readers)
        .await?)
    }

    async fn revoke_token(&self, name: &str) -> StorageResult<bool> {
        let result = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
        )
        .bind(name)
        .bind(now())
        .execute(&self.writer)
        .await?;
        Ok(result.rows_affected() > 0)
    }

    async fn is_active_token(&self, token_hash: &str) -> StorageResult<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL)",
        )
        .bind(token_hash)
        .fetch_one(&self.readers)
        .await?)
    }
}
