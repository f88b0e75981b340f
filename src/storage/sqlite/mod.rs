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

use super::{Access, LeaderLease, StorageError, StorageResult, StoreLifecycle};
use async_trait::async_trait;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use owner_lock::OwnerLock;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Migrations embedded in the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a request waits for the connection it needs before giving up with 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a statement waits for another process's write (a short command's); with the
/// acquire timeout, still inside VOD's 5 s callback timeout.
const BUSY_TIMEOUT: Duration = Duration::from_secs(1);

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
    /// Jobs led within this process (see `try_lead`).
    leases: Arc<Mutex<HashSet<String>>>,
}

impl SqliteStore {
    /// Opens the database a `sqlite:` URL names (`sqlite://path`, with any of sqlx's options).
    pub(super) async fn open_url(
        url: &str,
        pool_size: u32,
        access: Access,
    ) -> StorageResult<SqliteStore> {
        let lowered = url.to_ascii_lowercase();
        if lowered.contains(":memory:") || lowered.contains("mode=memory") {
            return Err(StorageError::Io(
                "an in-memory SQLite database would lose everything on restart; give a file, \
                 e.g. sqlite://vodhook.db"
                    .to_owned(),
            ));
        }
        let options = SqliteConnectOptions::from_str(url)?;
        let path = options.get_filename().to_path_buf();
        SqliteStore::open_with(options, path, pool_size, access).await
    }

    /// Opens the database file at `path`.
    pub(super) async fn open_file(
        path: &Path,
        pool_size: u32,
        access: Access,
    ) -> StorageResult<SqliteStore> {
        let options = SqliteConnectOptions::new().filename(path);
        SqliteStore::open_with(options, path.to_path_buf(), pool_size, access).await
    }

    /// Creates the file (readable by its owner only: it holds secrets and raw callbacks) and
    /// its directory when `access` allows, then connects. As `Access::Owner`, refuses a file
    /// another process already serves.
    async fn open_with(
        options: SqliteConnectOptions,
        path: PathBuf,
        pool_size: u32,
        access: Access,
    ) -> StorageResult<SqliteStore> {
        if path.as_os_str().is_empty() {
            return Err(StorageError::Io(
                "the SQLite URL names no file; give one, e.g. sqlite://vodhook.db".to_owned(),
            ));
        }
        if access == Access::Existing {
            if !path.is_file() {
                return Err(StorageError::Io(format!(
                    "there is no vodhook database at {}: run this where `vodhook serve` runs, or \
                     give the same VODHOOK_DATA_DIR or DATABASE_URL",
                    std::path::absolute(&path).unwrap_or(path).display()
                )));
            }
        } else {
            create_private_file(&path)?;
        }
        // The real file, so that every path to it (a link, another spelling) meets one lock.
        let path = std::fs::canonicalize(&path).map_err(|e| {
            StorageError::Io(format!(
                "cannot open the database file {}: {e}",
                path.display()
            ))
        })?;
        let owner = match access {
            Access::Owner => Some(OwnerLock::acquire(&path)?),
            Access::Create | Access::Existing => None,
        };
        let options = options
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // Requests queue for the one writer by design: warn only when one nearly gives up.
            .acquire_slow_threshold(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(|e| {
                StorageError::Io(format!(
                    "cannot open the database file {}: {e}",
                    path.display()
                ))
            })?;
        let readers = SqlitePoolOptions::new()
            .max_connections(pool_size.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A file on this machine: there is no connection to lose between uses.
            .test_before_acquire(false)
            .connect_lazy_with(options);
        Ok(SqliteStore {
            writer,
            readers,
            path,
            owner: Mutex::new(owner),
            leases: Arc::default(),
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

    fn concurrent_writers(&self) -> usize {
        1
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

    /// One process owns the database, so leading is decided within it.
    async fn try_lead(&self, job: &str) -> StorageResult<Option<Box<dyn LeaderLease>>> {
        let mut held = self
            .leases
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !held.insert(job.to_owned()) {
            return Ok(None);
        }
        Ok(Some(Box::new(LocalLease {
            leases: self.leases.clone(),
            job: job.to_owned(),
        })))
    }
}

/// Creates `path` (and its directory) readable by its owner only, unless it exists; SQLite gives
/// its `-wal` and `-shm` files the same permissions.
fn create_private_file(path: &Path) -> StorageResult<()> {
    let io_error = |what: &str, shown: &Path, e: std::io::Error| {
        StorageError::Io(format!("cannot create the {what} {}: {e}", shown.display()))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .map_err(|e| io_error("directory", dir, e))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_error("database file", path, e)),
    }
}

/// A job led by this process, until dropped.
struct LocalLease {
    leases: Arc<Mutex<HashSet<String>>>,
    job: String,
}

#[async_trait]
impl LeaderLease for LocalLease {
    async fn is_held(&mut self) -> bool {
        true
    }
}

impl Drop for LocalLease {
    fn drop(&mut self) {
        self.leases
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&self.job);
    }
}
