//! The Postgres store: production, and any number of vodhook processes on one database.

mod batch;
mod deliveries;
mod events;
mod held;
mod subscriptions;
mod tokens;
mod uploads;

use super::{LeaderLease, StorageResult, StoreLifecycle};
use async_trait::async_trait;
use held::HeldConnections;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Migrations embedded in the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Postgres channel that wakes delivery workers in every process after an enqueue commits.
const WAKE_CHANNEL: &str = "vodhook_deliveries";

/// How long a request waits for a pooled connection before giving up with 503: well inside
/// VOD's 5 s callback timeout, so VOD gets an answer and retries.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Connections of the worker pool: enough for claims, the settler and the LISTEN connection.
const WORKER_POOL_SIZE: u32 = 4;

#[derive(Debug, Clone)]
pub(super) struct PgStore {
    pool: PgPool,
    /// The ingest committers' own connections, one each.
    ingest_conns: Arc<HeldConnections>,
    /// The delivery worker's claims and settlements, on connections set up like `worker_pool`.
    worker_conns: Arc<HeldConnections>,
    /// The delivery worker's own connections: claims and settlements commit without waiting for
    /// the disk flush (losing one in a crash only means one more try), and API load cannot starve
    /// the worker of connections, nor the worker the API.
    worker_pool: PgPool,
    /// Host and database, for the start-up log.
    place: String,
    pool_size: u32,
}

impl PgStore {
    /// Connects eagerly, so a wrong URL or a database that is down is reported at start-up; a
    /// database the server does not have yet is created, so a first start needs nothing prepared.
    pub(super) async fn open(url: &str, pool_size: u32) -> StorageResult<PgStore> {
        use sqlx::migrate::MigrateDatabase;
        if !sqlx::Postgres::database_exists(url).await? {
            sqlx::Postgres::create_database(url).await?;
            tracing::info!("created the database named in DATABASE_URL");
        }
        let options = PgConnectOptions::from_str(url)?.application_name("vodhook");
        let place = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("")
        );
        // No ping before each use: it is a round trip per request, and a connection broken
        // meanwhile (a database restart) fails one request with 503 and is replaced.
        // The API's statements are prepared once per connection and planned once: a custom
        // plan per call cost about as much as running a page (0.1 ms in EXPLAIN at 10 M
        // records; README, Performance). Their conditions are keys, with statuses and limits
        // as literals, so a generic plan picks the same index; replay, whose conditions are
        // optional, asks for custom plans.
        // JIT compiling pays off for scans of millions of rows, never for a keyed page, and a
        // generic plan's cost estimate could otherwise trigger it on every call.
        let api_options = options
            .clone()
            .options([("plan_cache_mode", "force_generic_plan"), ("jit", "off")]);
        let pool = PgPoolOptions::new()
            .max_connections(pool_size)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .connect_with(api_options)
            .await?;
        let ingest_conns = HeldConnections::new(options.clone(), committers(pool_size));
        let worker_options = options.application_name("vodhook-worker").options([
            ("synchronous_commit", "off"),
            // The worker's statements find their rows by key. A plan made while the outbox
            // was small or its statistics stale (a sequential or bitmap scan) would be
            // cached long after the outbox has grown, each call then reading the whole
            // table or every dead entry of the due index.
            ("enable_seqscan", "off"),
            ("enable_bitmapscan", "off"),
            // So keyed, one plan serves every batch size: not planned again per call.
            ("plan_cache_mode", "force_generic_plan"),
        ]);
        let worker_pool = PgPoolOptions::new()
            .max_connections(WORKER_POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .connect_lazy_with(worker_options.clone());
        // One for the claims, one for the settlements.
        let worker_conns = HeldConnections::new(worker_options, 2);
        Ok(PgStore {
            pool,
            ingest_conns: Arc::new(ingest_conns),
            worker_conns: Arc::new(worker_conns),
            worker_pool,
            place,
            pool_size,
        })
    }
}

/// Ingest committers for a pool of `pool_size`. Measured: two beat four and eight (larger
/// batches, fewer commits competing for the CPU); one leaves the disk idle while a batch is built.
fn committers(pool_size: u32) -> usize {
    (pool_size as usize / 4).clamp(1, 2)
}

#[async_trait]
impl StoreLifecycle for PgStore {
    fn describe(&self) -> String {
        format!("postgres at {}", self.place)
    }

    /// Batches commit on their own connections; a few in flight keep the disk busy while
    /// others are built, and leave the pool to the API.
    fn concurrent_writers(&self) -> usize {
        committers(self.pool_size)
    }

    async fn migrate(&self) -> StorageResult<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> StorageResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.ingest_conns.close().await;
        self.worker_conns.close().await;
        self.pool.close().await;
        self.worker_pool.close().await;
    }

    async fn notify_workers(&self) -> StorageResult<()> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(WAKE_CHANNEL)
            .execute(&self.worker_pool)
            .await?;
        Ok(())
    }

    async fn try_lead(&self, job: &str) -> StorageResult<Option<Box<dyn LeaderLease>>> {
        // A session-level advisory lock on a connection of its own: it ends with the session,
        // so a process that dies or loses the database gives it up at once.
        let mut conn = self.pool.acquire().await?.detach();
        let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(advisory_key(job))
            .fetch_one(&mut conn)
            .await?;
        if held {
            Ok(Some(Box::new(AdvisoryLease { conn })))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }

    async fn relay_wakeups(&self, wake: Arc<Notify>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            match sqlx::postgres::PgListener::connect_with(&self.worker_pool).await {
                Ok(mut listener) => {
                    if let Err(error) = listener.listen(WAKE_CHANNEL).await {
                        tracing::warn!(%error, "cannot LISTEN for deliveries; polling only");
                    } else {
                        loop {
                            tokio::select! {
                                received = listener.recv() => match received {
                                    Ok(_) => wake.notify_one(),
                                    Err(error) => {
                                        tracing::warn!(%error, "LISTEN connection lost; reconnecting");
                                        break;
                                    }
                                },
                                () = shutdown.cancelled() => return,
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot open a LISTEN connection; polling only")
                }
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}

/// An advisory lock held by its own connection.
struct AdvisoryLease {
    conn: PgConnection,
}

#[async_trait]
impl LeaderLease for AdvisoryLease {
    async fn is_held(&mut self) -> bool {
        sqlx::query("SELECT 1")
            .execute(&mut self.conn)
            .await
            .is_ok()
    }
}

/// The advisory lock key of a job: the first eight bytes of its name's SHA-256.
fn advisory_key(job: &str) -> i64 {
    let digest = Sha256::digest(format!("vodhook:{job}").as_bytes());
    let mut key = [0u8; 8];
    key.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(key)
}
