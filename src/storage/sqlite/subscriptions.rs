//! SQLite: subscriptions (create, read, change, delete, rotate secrets); event types are a JSON
//! array.

use super::{micros, SqliteStore};
use crate::domain::{Page, PageLimit, Subscription};
use crate::storage::common::CommonQueries;
use crate::storage::shared::{self, SUBSCRIPTION_COLUMNS};
use crate::storage::{StorageResult, SubscriptionChanges, SubscriptionStore};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::Sqlite;
use uuid::Uuid;

/// A subscription as SQLite stores it.
#[derive(sqlx::FromRow)]
struct SubscriptionRow {
    id: Uuid,
    url: String,
    event_types: Json<Vec<String>>,
    description: Option<String>,
    enabled: bool,
    disabled_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<SubscriptionRow> for Subscription {
    fn from(row: SubscriptionRow) -> Subscription {
        Subscription {
            id: row.id,
            url: row.url,
            event_types: row.event_types.0,
            description: row.description,
            enabled: row.enabled,
            disabled_reason: row.disabled_reason,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[async_trait]
impl SubscriptionStore for SqliteStore {
    async fn create_subscription(
        &self,
        url: &str,
        event_types: &[String],
        description: Option<&str>,
        stored_secret: &str,
        now: DateTime<Utc>,
    ) -> StorageResult<Subscription> {
        let sql = format!(
            "INSERT INTO subscriptions (id, url, event_types, description, secret, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {SUBSCRIPTION_COLUMNS}"
        );
        let row: SubscriptionRow = sqlx::query_as(&sql)
            .bind(Uuid::now_v7())
            .bind(url)
            .bind(Json(event_types))
            .bind(description)
            .bind(stored_secret)
            .bind(micros(now))
            .fetch_one(&self.writer)
            .await?;
        Ok(row.into())
    }

    async fn get_subscription(&self, id: Uuid) -> StorageResult<Option<Subscription>> {
        let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1");
        let row: Option<SubscriptionRow> = sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
        Ok(row.map(Subscription::from))
    }

    async fn list_subscriptions(
        &self,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: PageLimit,
    ) -> StorageResult<Page<Subscription>> {
        let query = shared::list_subscriptions_query(after, limit);
        let rows: Vec<SubscriptionRow> = Sqlite::fetch_statement(&self.readers, query).await?;
        let subscriptions = rows.into_iter().map(Subscription::from).collect();
        Ok(shared::subscription_page(subscriptions, limit))
    }

    async fn update_subscription(
        &self,
        id: Uuid,
        changes: &SubscriptionChanges,
        now: DateTime<Utc>,
    ) -> StorageResult<Option<Subscription>> {
        let now = micros(now);
        let mut tx = self.write().await?;
        let updated: Option<SubscriptionRow> = sqlx::query_as(shared::UPDATE_SUBSCRIPTION_SQL)
            .bind(id)
            .bind(&changes.url)
            .bind(changes.event_types.as_ref().map(Json))
            .bind(changes.description.is_some())
            .bind(changes.description.clone().flatten())
            .bind(changes.enabled)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        if let (Some(enabled), Some(subscription)) = (changes.enabled, &updated) {
            Sqlite::set_paused(&mut tx, subscription.id, !enabled, now).await?;
        }
        tx.commit().await?;
        Ok(updated.map(Subscription::from))
    }

    async fn delete_subscription(&self, id: Uuid) -> StorageResult<bool> {
        Sqlite::delete_subscription(&self.writer, id).await
    }

    async fn rotate_subscription_secret(
        &self,
        id: Uuid,
        new_secret: &str,
        previous_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StorageResult<bool> {
        Sqlite::rotate_subscription_secret(
            &self.writer,
            id,
            new_secret,
            micros(previous_until),
            micros(now),
        )
        .await
    }
}
