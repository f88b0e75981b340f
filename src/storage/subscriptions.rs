//! Subscriptions: create, read, change, delete, rotate secrets. Secrets are stored as given
//! (already sealed by the caller when encryption at rest is on).

use super::{into_page, StorageResult, Store};
use crate::domain::{Page, PageCursor, PageLimit, Subscription};
use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

const COLUMNS: &str =
    "id, url, event_types, description, enabled, disabled_reason, created_at, updated_at";

/// Fields a PATCH may change; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct SubscriptionChanges {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
}

impl Store {
    pub async fn create_subscription(
        &self,
        url: &str,
        event_types: &[String],
        description: Option<&str>,
        stored_secret: &str,
        now: DateTime<Utc>,
    ) -> StorageResult<Subscription> {
        let sql = format!(
            "INSERT INTO subscriptions (id, url, event_types, description, secret, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {COLUMNS}"
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

    pub async fn get_subscription(&self, id: Uuid) -> StorageResult<Option<Subscription>> {
        let sql = format!("SELECT {COLUMNS} FROM subscriptions WHERE id = $1");
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn list_subscriptions(
        &self,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: PageLimit,
    ) -> StorageResult<Page<Subscription>> {
        let mut query = QueryBuilder::<Postgres>::new(format!(
            "SELECT {COLUMNS} FROM subscriptions WHERE TRUE"
        ));
        super::push_page_clause(&mut query, "created_at, id", after, limit);
        let rows: Vec<Subscription> = query.build_query_as().fetch_all(&self.pool).await?;
        Ok(into_page(rows, limit, |s| PageCursor {
            at: s.created_at,
            key: s.id.to_string(),
        }))
    }

    /// Applies the changes; re-enabling clears the reason it was disabled.
    pub async fn update_subscription(
        &self,
        id: Uuid,
        changes: &SubscriptionChanges,
        now: DateTime<Utc>,
    ) -> StorageResult<Option<Subscription>> {
        let sql = format!(
            "UPDATE subscriptions SET \
               url = COALESCE($2, url), \
               event_types = COALESCE($3, event_types), \
               description = CASE WHEN $4 THEN $5 ELSE description END, \
               enabled = COALESCE($6, enabled), \
               disabled_reason = CASE WHEN $6 IS TRUE THEN NULL ELSE disabled_reason END, \
               updated_at = $7 \
             WHERE id = $1 RETURNING {COLUMNS}"
        );
        let mut tx = self.pool.begin().await?;
        let updated: Option<Subscription> = sqlx::query_as(&sql)
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
            Store::set_paused(&mut tx, subscription.id, !enabled, now).await?;
        }
        tx.commit().await?;
        Ok(updated)
    }

    /// Deletes the subscription and its deliveries.
    pub async fn delete_subscription(&self, id: Uuid) -> StorageResult<bool> {
        let result = sqlx::query("DELETE FROM subscriptions WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Makes `new_secret` current; the current one keeps signing until `previous_until`.
    pub async fn rotate_subscription_secret(
        &self,
        id: Uuid,
        new_secret: &str,
        previous_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StorageResult<bool> {
        let result = sqlx::query(
            "UPDATE subscriptions SET previous_secret = secret, previous_secret_expires_at = $3, secret = $2, updated_at = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(new_secret)
        .bind(previous_until)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() > 0)
    }
}

/// Disables a subscription whose target said it is gone, inside the caller's transaction.
pub(super) async fn disable(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    reason: &str,
    now: DateTime<Utc>,
) -> StorageResult<()> {
    sqlx::query("UPDATE subscriptions SET enabled = FALSE, disabled_reason = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(reason)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Store::set_paused(conn, id, true, now).await
}
