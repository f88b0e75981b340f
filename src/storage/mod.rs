//! The storage contract (`Storage`) and the handle to it (`Store`); the only place with SQL.
//!
//! Two implementations keep the same promises: `postgres` for production and `sqlite`, the
//! embedded default. What both decide alike lives in `shared`; each backend holds only its SQL.
//! The conformance suite (`tests/conformance`) checks every promise below against both.

mod common;
mod model;
mod postgres;
mod shared;
mod sqlite;
mod upload_json;
mod upsert;

pub use model::{
    Attempt, AttemptRecord, ClaimedDelivery, Delivery, DeliveryFilter, EventClaims, EventFilter,
    IncomingEvent, IngestOutcome, ReplayRange, ReplayTarget, RetryRequest, Settle, Settlement,
    StoredToken, SubscriptionChanges, UploadFilter,
};

use crate::domain::{Page, PageCursor, PageLimit, StoredEvent, Subscription, Upload};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("migration failed")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Conflict(String),
    /// Another process owns the SQLite database (one `vodhook serve` per SQLite file).
    #[error("{0}")]
    InUse(String),
    #[error("{0}")]
    Io(String),
}

pub type StorageResult<T> = Result<T, StorageError>;

/// Where the data lives: chosen by `DATABASE_URL`, SQLite in the data directory without it.
#[derive(Debug, Clone)]
pub enum DatabaseLocation {
    Postgres(SecretString),
    /// A `sqlite:` URL as given.
    Sqlite(SecretString),
    /// A SQLite file by path (the data directory's `vodhook.db`).
    SqliteFile(PathBuf),
}

impl DatabaseLocation {
    /// The location a `DATABASE_URL` names, if its scheme is one vodhook stores in.
    pub fn from_url(url: &str) -> Option<DatabaseLocation> {
        let secret = SecretString::from(url.to_owned());
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(DatabaseLocation::Postgres(secret))
        } else if url.starts_with("sqlite:") {
            Some(DatabaseLocation::Sqlite(secret))
        } else {
            None
        }
    }

    /// The embedded default: `vodhook.db` in `data_dir`.
    pub fn sqlite_in(data_dir: &Path) -> DatabaseLocation {
        DatabaseLocation::SqliteFile(data_dir.join("vodhook.db"))
    }

    pub fn is_sqlite(&self) -> bool {
        !matches!(self, DatabaseLocation::Postgres(_))
    }
}

/// What opening the store is for. A SQLite database has one owner, the serving process, while
/// short commands may open it beside that owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `vodhook serve`: creates the database when missing; refused when another process already
    /// serves the same SQLite file.
    Owner,
    /// `vodhook migrate`: creates the database when missing.
    Create,
    /// A command that works on data (`vodhook token ...`): the database must exist already, so
    /// one run in the wrong directory does not quietly start an empty one.
    Existing,
}

/// Everything vodhook keeps, as one contract that both databases fulfil: one trait per area,
/// each implemented by a backend module of the same name.
pub trait Storage:
    StoreLifecycle + EventStore + UploadStore + TokenStore + SubscriptionStore + DeliveryStore
{
}

impl<T> Storage for T where
    T: StoreLifecycle + EventStore + UploadStore + TokenStore + SubscriptionStore + DeliveryStore
{
}

/// Opening, migrating and closing the store, and waking workers across processes.
#[async_trait]
pub trait StoreLifecycle: Send + Sync + std::fmt::Debug {
    /// Which store this is and where, for the start-up log (never a password).
    fn describe(&self) -> String;
    /// How many ingest batches may usefully commit at once (Postgres: several connections;
    /// SQLite: its one writer).
    fn concurrent_writers(&self) -> usize;
    /// Applies the embedded migrations that have not run yet.
    async fn migrate(&self) -> StorageResult<()>;
    /// Whether the database answers a trivial query.
    async fn ping(&self) -> StorageResult<()>;
    async fn close(&self);

    // Waking workers in other processes (a no-op where one process owns the database).

    /// Tells every process's workers that deliveries were enqueued.
    async fn notify_workers(&self) -> StorageResult<()>;
    /// Calls `wake.notify_one()` whenever another process enqueued deliveries, until `shutdown`.
    async fn relay_wakeups(&self, wake: Arc<Notify>, shutdown: CancellationToken);

    /// Makes the caller the one that does `job` among all that share this database, or `None`
    /// while another holds it. The lease lasts until it is dropped or its holder loses the
    /// database (a crashed process loses it at once).
    async fn try_lead(&self, job: &str) -> StorageResult<Option<Box<dyn LeaderLease>>>;
}

/// The right to do a job that only one process may do at a time (pulling VOD's queue).
#[async_trait]
pub trait LeaderLease: Send + Sync {
    /// Whether it is still held (it ends when the connection that holds it is lost).
    async fn is_held(&mut self) -> bool;
}

/// Received events, deduplicated, with their upload record and outbox rows.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Stores an event, its upload record and its outbox rows (one per matching enabled
    /// subscription and per handler in `incoming.handlers`) atomically, unless it repeats one
    /// already stored (same dedupe key); returns only after commit. A repeat may still complete
    /// the upload record, and gets no outbox rows.
    async fn ingest(&self, incoming: &IncomingEvent<'_>) -> StorageResult<IngestOutcome>;
    /// `ingest` for all of `batch` in one transaction, or none of it (`Err`). An event the
    /// transaction could not settle, and left to a statement of its own after it, has a result
    /// of its own (on Postgres: an event that raced a concurrent copy of itself).
    async fn ingest_all_or_nothing(
        &self,
        batch: &[IncomingEvent<'_>],
    ) -> StorageResult<Vec<StorageResult<IngestOutcome>>>;
    /// `ingest` for several events at once, committed together (group commit: one commit, one
    /// disk flush for all); one result per event, in order. An event that fails (bad data) does
    /// not fail the others: they are then stored one by one.
    #[tracing::instrument(skip_all, fields(events = batch.len()))]
    async fn ingest_batch(&self, batch: &[IncomingEvent<'_>]) -> Vec<StorageResult<IngestOutcome>> {
        if batch.len() > 1 {
            match self.ingest_all_or_nothing(batch).await {
                Ok(outcomes) => return outcomes,
                Err(error) => tracing::warn!(
                    error = format!("{error:#}"),
                    "a batch failed; storing its events one by one"
                ),
            }
        }
        let mut outcomes = Vec::with_capacity(batch.len());
        for incoming in batch {
            outcomes.push(self.ingest(incoming).await);
        }
        outcomes
    }
    async fn get_event(&self, id: Uuid) -> StorageResult<Option<StoredEvent>>;
    /// The exact bytes an event arrived with.
    async fn get_event_raw_body(&self, id: Uuid) -> StorageResult<Option<Vec<u8>>>;
    /// Newest first; `after` is the cursor of the previous page (its key is an event id).
    async fn list_events(
        &self,
        filter: &EventFilter,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: PageLimit,
    ) -> StorageResult<Page<StoredEvent>>;
}

/// One upload record per media file, written by ingest.
#[async_trait]
pub trait UploadStore: Send + Sync {
    async fn get_upload(&self, file_id: &str) -> StorageResult<Option<Upload>>;
    /// Newest first; `after` is the cursor of the previous page (its key is a FileId).
    async fn list_uploads(
        &self,
        filter: &UploadFilter,
        after: Option<&PageCursor>,
        limit: PageLimit,
    ) -> StorageResult<Page<Upload>>;
    /// The same page as `list_uploads`, as the JSON the API answers with, written straight
    /// from the rows (see `upload_json`).
    async fn list_uploads_json(
        &self,
        filter: &UploadFilter,
        after: Option<&PageCursor>,
        limit: PageLimit,
    ) -> StorageResult<Vec<u8>>;
}

/// API tokens; only their SHA-256 is kept.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Stores a token's hash under a name no active token has (`Conflict` otherwise).
    async fn create_token(&self, name: &str, token_hash: &str) -> StorageResult<()>;
    /// All tokens, revoked ones too, oldest first.
    async fn list_tokens(&self) -> StorageResult<Vec<StoredToken>>;
    /// Revokes the active token of that name; `false` when there is none.
    async fn revoke_token(&self, name: &str) -> StorageResult<bool>;
    async fn is_active_token(&self, token_hash: &str) -> StorageResult<bool>;
}

/// HTTP subscriptions; secrets are stored as given (already sealed when encryption is on).
#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    async fn create_subscription(
        &self,
        url: &str,
        event_types: &[String],
        description: Option<&str>,
        stored_secret: &str,
        now: DateTime<Utc>,
    ) -> StorageResult<Subscription>;
    async fn get_subscription(&self, id: Uuid) -> StorageResult<Option<Subscription>>;
    /// Newest first.
    async fn list_subscriptions(
        &self,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: PageLimit,
    ) -> StorageResult<Page<Subscription>>;
    /// Applies the changes; disabling pauses the subscription's pending deliveries, enabling
    /// clears the reason it was disabled and makes its paused deliveries due now.
    async fn update_subscription(
        &self,
        id: Uuid,
        changes: &SubscriptionChanges,
        now: DateTime<Utc>,
    ) -> StorageResult<Option<Subscription>>;
    /// Deletes the subscription and its deliveries.
    async fn delete_subscription(&self, id: Uuid) -> StorageResult<bool>;
    /// Makes `new_secret` current; the current one keeps signing until `previous_until`.
    async fn rotate_subscription_secret(
        &self,
        id: Uuid,
        new_secret: &str,
        previous_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StorageResult<bool>;
}

/// The delivery outbox: rows written with their event, claimed as leases, settled under a fence.
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// Claims up to `limit` due pending deliveries for subscriptions and for `handlers`: each
    /// claim counts as an attempt and hides the row until the lease ends, when it comes due again
    /// if not settled. "Due" is by the later of `now` and the database's clock. A row is claimed
    /// by one worker at a time, across processes.
    async fn claim_due_deliveries(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: i64,
        handlers: &[String],
    ) -> StorageResult<Vec<ClaimedDelivery>>;
    /// Claims, as `claim_due_deliveries` does, up to `limit` due pending deliveries of the
    /// events `event_ids` (just stored by this process) for subscriptions and for `handlers`:
    /// the hot path, by key, with no scan of the due queue. Rows another worker holds are
    /// skipped; rows beyond the limit stay due, and `more_due` says there are some.
    async fn claim_deliveries_of_events(
        &self,
        event_ids: &[Uuid],
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: i64,
        handlers: &[String],
    ) -> StorageResult<EventClaims>;
    /// Records each attempt and settles each delivery, as one commit. A delivery claimed again
    /// since (its attempt count moved on) or deleted only gets its attempt recorded (if it still
    /// exists); a paused one stays paused unless settled for good; `DeadAndDisable` also disables
    /// the subscription. The result says, per entry, whether the settlement took.
    async fn settle_deliveries(
        &self,
        batch: &[Settle],
        now: DateTime<Utc>,
    ) -> StorageResult<Vec<bool>>;
    /// A delivery and its attempt log, oldest attempt first.
    async fn get_delivery(&self, id: Uuid) -> StorageResult<Option<(Delivery, Vec<Attempt>)>>;
    /// Newest first.
    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: PageLimit,
    ) -> StorageResult<Page<Delivery>>;
    /// Makes a dead delivery due now for one more try, or brings a failing delivery's next try
    /// forward to now; see `RetryRequest` for what is left alone.
    async fn retry_delivery_now(&self, id: Uuid, now: DateTime<Utc>)
        -> StorageResult<RetryRequest>;
    /// One new delivery per event in the range (of `range.event_types` when given); with
    /// `only_failed`, just the events whose deliveries to this target died and none succeeded or
    /// is still pending. Returns how many were enqueued.
    async fn replay(
        &self,
        target: &ReplayTarget,
        range: &ReplayRange,
        max_attempts: i32,
        now: DateTime<Utc>,
    ) -> StorageResult<u64>;
    /// Pending and dead deliveries per target (`<subscription id>` or `handler:<name>`).
    async fn count_open_deliveries(&self) -> StorageResult<Vec<(String, String, i64)>>;
    /// Gives back claims that were never tried (taken at ingest, then not started in time or
    /// left by a stopping worker): each row still under that claim (its `attempts` as claimed)
    /// is claimable again at once, its attempt uncounted.
    async fn release_claims(&self, claims: &[(Uuid, i32)]) -> StorageResult<()>;
}

/// Handle to the store in use; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store(Arc<dyn Storage>);

impl std::ops::Deref for Store {
    type Target = dyn Storage;

    fn deref(&self) -> &Self::Target {
        self.0.as_ref()
    }
}

impl Store {
    /// Opens (creating when missing) and migrates the database at `location`.
    pub async fn open(
        location: &DatabaseLocation,
        pool_size: u32,
        access: Access,
    ) -> StorageResult<Store> {
        let store = match location {
            DatabaseLocation::Postgres(url) => Store(Arc::new(
                postgres::PgStore::open(url.expose_secret(), pool_size).await?,
            )),
            DatabaseLocation::Sqlite(url) => Store(Arc::new(
                sqlite::SqliteStore::open_url(url.expose_secret(), pool_size, access).await?,
            )),
            DatabaseLocation::SqliteFile(path) => Store(Arc::new(
                sqlite::SqliteStore::open_file(path, pool_size, access).await?,
            )),
        };
        store.migrate().await?;
        Ok(store)
    }
}
