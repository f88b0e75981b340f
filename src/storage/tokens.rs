//! Stored API tokens: only their SHA-256 is kept; names identify them for listing and revoking.

use super::{StorageError, StorageResult, Store};
use chrono::{DateTime, Utc};
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredToken {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Stores a token's hash under a name no active token has.
    pub async fn create_token(&self, name: &str, token_hash: &str) -> StorageResult<()> {
        let result = sqlx::query(
            "INSERT INTO api_tokens (id, name, token_hash, created_at) VALUES ($1, $2, $3, now()) ON CONFLICT DO NOTHING",
        )
        .bind(Uuid::now_v7())
        .bind(name)
        .bind(token_hash)
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StorageError::Conflict(format!(
                "an active token named {name:?} already exists"
            )));
        }
        Ok(())
    }

    pub async fn list_tokens(&self) -> StorageResult<Vec<StoredToken>> {
        Ok(sqlx::query_as(
            "SELECT name, created_at, revoked_at FROM api_tokens ORDER BY created_at, name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Revokes the active token of that name; `false` when there is none.
    pub async fn revoke_token(&self, name: &str) -> StorageResult<bool> {
        let result = sqlx::query(
            "UPDATE api_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL",
        )
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() > 0)
    }

    pub async fn is_active_token(&self, token_hash: &str) -> StorageResult<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL)",
        )
        .bind(token_hash)
        .fetch_one(&self.pool)
        .await?)
    }
}
