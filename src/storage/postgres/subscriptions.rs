//! Postgres: subscriptions (create, read, change, delete, rotate secrets).

use super::PgStore;
use crate::domain::{Page, PageLimit, Subscription};
use crate::storage::common::CommonQueries;
use crate::storage::shared::{self, SUBSCRIPTION_COLUMNS};
use crate::storage::{StorageResult, SubscriptionChanges, SubscriptionStore};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres};
use uuid::Uuid;

#[async_trait]
impl SubscriptionStore for PgStore {
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
        Ok(sqlx::query_as(&sql)
            .bind(Uuid::now_v7())
            .bind(url)
            .bind(event_types)
            .bind(description)
            .bind(stored_secret)
            .bind(now)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn get_subscription(&self, id: Uuid) -> StorageResult<Option<Subscription>> {
        let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1");
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn list_subscriptions(
        &self,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: PageLimit,
    ) -> StorageResult<Page<Subscription>> {
        let query = shared::list_subscriptions_query(after, limit);
        let rows: Vec<Subscription> = Postgres::fetch_statement(&self.pool, query).await?;
        Ok(shared::subscription_page(rows, limit))
    }

    async fn update_subscription(
        &self,
        id: Uuid,
        changes: &SubscriptionChanges,
        now: DateTime<Utc>,
    ) -> StorageResult<Option<Subscription>> {
        let mut tx = self.pool.begin().await?;
        if changes.enabled.is_some() {
            lock_out_ingests(&mut tx, id).await?;
        }
        let updated: Option<Subscription> = sqlx::query_as(shared::UPDATE_SUBSCRIPTION_SQL)
            .bind(id)
            .bind(&changes.url)
            .bind(&changes.event_types)
            .bind(changes.description.is_some())
            .bind(changes.description.clone().flatten())
            .bind(changes.enabled)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        if let (Some(enabled), Some(subscription)) = (changes.enabled, &updated) {
            Postgres::set_paused(&mut tx, subscription.id, !enabled, now).await?;
        }
        tx.commit().await?;
        Ok(updated)
    }

    /// Deletes the subscription, then its deliveries, then their attempts: no foreign key does
    /// it on Postgres. Each statement runs after the one before has waited out the writers that
    /// locked its rows (ingests lock the subscription, settlements the delivery), and sees what
    /// they committed (see `lock_out_ingests`).
    async fn delete_subscription(&self, id: Uuid) -> StorageResult<bool> {
        let mut tx = self.pool.begin().await?;
        lock_out_ingests(&mut tx, id).await?;
        let deleted: Option<Uuid> =
            sqlx::query_scalar("DELETE FROM subscriptions WHERE id = $1 RETURNING id")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let deliveries: Vec<Uuid> =
            sqlx::query_scalar("DELETE FROM deliveries WHERE subscription_id = $1 RETURNING id")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        sqlx::query("DELETE FROM delivery_attempts WHERE delivery_id = ANY($1)")
            .bind(&deliveries)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deleted.is_some())
    }

    async fn rotate_subscription_secret(
        &self,
        id: Uuid,
        new_secret: &str,
        previous_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StorageResult<bool> {
        Postgres::rotate_subscription_secret(&self.pool, id, new_secret, previous_until, now).await
    }
}

/// Before pausing, resuming or deleting a subscription's deliveries, at the start of `tx`: every
/// delivery of it must be seen. An ingest holds its matched subscriptions FOR KEY SHARE until it commits,
/// which a plain UPDATE of the row does not wait for; this lock does, and holds later ingests off
/// until `tx` ends (they then see the new state). READ COMMITTED lets the statements after it see
/// what the waited-for ingests committed.
pub(super) async fn lock_out_ingests(tx: &mut PgConnection, id: Uuid) -> StorageResult<()> {
    sqlx::query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT 1 FROM subscriptions WHERE id = $1 FOR UPDATE")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
