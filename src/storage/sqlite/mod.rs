//! The SQLite store: the embedded default, one file owned by one `vodhook serve` process.
//!
//! All writes go through one connection (SQLite has one writer at a time anyway, and this way
//! the process never waits on its own lock); reads use a pool beside it (WAL lets readers run
//! while the writer commits). Every commit is flushed to disk before it returns
//! (`synchronous=FULL`), as on Postgres: an acknowledged callback survives a power cut.

mod deliveries;
mod events;
mod owner_lock;
mod subscriptions;
mod tokens;
mod uploads;

use super::{Access, StorageError, StorageResult, StoreLifecycle};
use async_trait::async_trait;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use owner_lock::OwnerLock;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Migrations embedded in the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a request waits for the connection it needs before giving up with 503 (inside
/// VOD's 5 s callback timeout), and how long SQLite waits for another process's lock.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// A new time-ordered UUID (version 7) as a 16-byte blob, made in SQL for rows a statement
/// inserts in bulk: 48 bits of Unix milliseconds, the version and variant bits, random rest.
const UUID_V7_SQL: &str = "unhex(printf('%012x', CAST(unixepoch('subsec') * 1000 AS INTEGER)) \
    || '7' || substr(hex(randomblob(2)), 1, 3) || substr('89ab', 1 + abs(random() % 4), 1) \
    || substr(hex(randomblob(2)), 1, 3) || hex(randomblob(6)))";

#[derive(Debug)]
pub(super) struct SqliteStore {
    /// The one connection that writes.
    writer: SqlitePool,
    readers: SqlitePool,
    path: PathBuf,
    /// Held while this process serves the database; released on close.
    owner: Mutex<Option<OwnerLock>>,
}

impl SqliteStore {
    /// Opens the database file in `url` (`sqlite://path`), creating it and its directory when
    /// missing. As `Access::Owner`, refuses a file another process already serves.
    pub(super) async fn open(
        url: &str,
        pool_size: u32,
        access: Access,
    ) -> StorageResult<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)?;
        let path = options.get_filename().to_path_buf();
        if path.as_os_str().is_empty() || path.to_string_lossy().contains(":memory:") {
            return Err(StorageError::Io(
                "an in-memory SQLite database would lose everything on restart; give a file, \
                 e.g. sqlite://vodhook.db"
                    .to_owned(),
            ));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StorageError::Io(format!(
                    "cannot create the directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let path = std::path::absolute(&path).unwrap_or(path);
        let owner = match access {
            Access::Owner => Some(OwnerLock::acquire(&path)?),
            Access::Command => None,
        };
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(ACQUIRE_TIMEOUT)
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(pool_size.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        Ok(SqliteStore {
            writer,
            readers,
            path,
            owner: Mutex::new(owner),
        })
    }

    /// A write transaction that takes SQLite's write lock at once, so it never has to upgrade
    /// a read lock (which could fail against another process's write).
    async fn write(&self) -> StorageResult<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// Times as Postgres keeps them (whole microseconds), so both stores return the same values
/// and the text SQLite stores sorts and compares exactly.
fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(at)
}

/// The current time, as stored.
fn now() -> DateTime<Utc> {
    micros(Utc::now())
}

#[async_trait]
impl StoreLifecycle for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite at {}", self.path.display())
    }

    async fn migrate(&self) -> StorageResult<()> {
        MIGRATOR.run(&self.writer).await?;
        Ok(())
    }

    async fn ping(&self) -> StorageResult<()> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
        if let Ok(mut owner) = self.owner.lock() {
            owner.take();
        }
    }

    /// One process owns the database, and its workers are woken in-process.
    async fn notify_workers(&self) -> StorageResult<()> {
        Ok(())
    }

    async fn relay_wakeups(&self, _wake: Arc<Notify>, shutdown: CancellationToken) {
        shutdown.cancelled().await;
    }
}
