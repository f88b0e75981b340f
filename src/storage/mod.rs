//! The storage contract: the only place with SQL. `Store` wraps the Postgres pool.

mod deliveries;
mod events;
mod subscriptions;
mod tokens;
mod uploads;

pub use deliveries::{
    Attempt, AttemptRecord, ClaimedDelivery, Delivery, DeliveryFilter, ReplayRange, ReplayTarget,
    RetryRequest, Settle, Settlement, WAKE_CHANNEL,
};
pub use events::{EventFilter, IncomingEvent, IngestOutcome};
pub use subscriptions::SubscriptionChanges;
pub use tokens::StoredToken;
pub use uploads::UploadFilter;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;

/// Migrations embedded in the binary, applied by `vodhook migrate` and `vodhook serve`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a request waits for a pooled connection before giving up with 503: well inside
/// VOD's 5 s callback timeout, so VOD gets an answer and retries.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("migration failed")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Conflict(String),
}

pub type StorageResult<T> = Result<T, StorageError>;

/// Handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    /// The delivery worker's own connections: claims and settlements commit without waiting for
    /// the disk flush (losing one in a crash only means one more try), and API load cannot starve
    /// the worker of connections, nor the worker the API.
    worker_pool: PgPool,
}

/// Connections of the worker pool: enough for claims, the settler and the LISTEN connection.
const WORKER_POOL_SIZE: u32 = 4;

impl Store {
    /// Connects eagerly, so a wrong URL or a database that is down is reported at start-up.
    pub async fn connect(url: &SecretString, pool_size: u32) -> StorageResult<Store> {
        let options = PgConnectOptions::from_str(url.expose_secret())?.application_name("vodhook");
        let pool = PgPoolOptions::new()
            .max_connections(pool_size)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await?;
        let worker_pool = PgPoolOptions::new()
            .max_connections(WORKER_POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(
                options
                    .application_name("vodhook-worker")
                    .options([("synchronous_commit", "off")]),
            );
        Ok(Store { pool, worker_pool })
    }

    /// Creates the database named in `url` when the server does not have it yet, so a first
    /// `vodhook serve` needs nothing prepared; `true` when it was created.
    pub async fn create_database_if_missing(url: &SecretString) -> StorageResult<bool> {
        use sqlx::migrate::MigrateDatabase;
        let url = url.expose_secret();
        if sqlx::Postgres::database_exists(url).await? {
            return Ok(false);
        }
        sqlx::Postgres::create_database(url).await?;
        Ok(true)
    }

    pub async fn migrate(&self) -> StorageResult<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> StorageResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The main pool (tests read the database through it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The worker's pool, for its LISTEN connection.
    pub fn worker_pool(&self) -> &PgPool {
        &self.worker_pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.worker_pool.close().await;
    }
}

/// Appends to a list query "strictly after `after`, newest first, one row more than a page", for
/// a list ordered by `columns`: a time and a unique key, such as `"created_at, id"`.
fn push_page_clause<'a, K>(
    query: &mut sqlx::QueryBuilder<'a, sqlx::Postgres>,
    columns: &str,
    after: Option<(chrono::DateTime<chrono::Utc>, K)>,
    limit: crate::domain::PageLimit,
) where
    K: 'a + Send + sqlx::Encode<'a, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    if let Some((at, key)) = after {
        query
            .push(format!(" AND ({columns}) < ("))
            .push_bind(at)
            .push(", ")
            .push_bind(key)
            .push(")");
    }
    let order: Vec<String> = columns.split(", ").map(|c| format!("{c} DESC")).collect();
    query
        .push(format!(" ORDER BY {} LIMIT ", order.join(", ")))
        .push_bind(i64::from(limit.get()) + 1);
}

/// Cuts a `limit + 1` row fetch to one page; the extra row only tells that a next page exists.
fn into_page<T>(
    mut rows: Vec<T>,
    limit: crate::domain::PageLimit,
    cursor_of: impl Fn(&T) -> crate::domain::PageCursor,
) -> crate::domain::Page<T> {
    let limit = limit.get() as usize;
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if has_more {
        rows.last().map(|last| cursor_of(last).encode())
    } else {
        None
    };
    crate::domain::Page {
        data: rows,
        next_cursor,
    }
}
