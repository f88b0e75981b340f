//! Connections the hot paths (ingest committers, the worker's claims and settlements) hold for
//! themselves, outside the pool: sqlx pings a pooled connection each time it goes back (and,
//! by default, before it is handed out), two extra round trips per statement that at thousands
//! of statements a second cost Postgres more than the statements do.

use crate::storage::{StorageError, StorageResult};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, MutexGuard};

/// A connection unused for this long is pinged before its next use: a database restart, an
/// idle-session timeout or a proxy may have closed it meanwhile. Busy connections are not.
const IDLE_CHECK: Duration = Duration::from_secs(5);
/// How long opening a connection (or checking an idle one) may take, as for the pools.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A few connections, each used by one caller at a time, opened on first use and dropped after
/// any error or an interrupted use (so a broken one is replaced on the next call).
#[derive(Debug)]
pub(super) struct HeldConnections {
    options: PgConnectOptions,
    slots: Vec<Mutex<Slot>>,
}

#[derive(Debug)]
struct Slot {
    conn: Option<PgConnection>,
    last_used: Instant,
}

impl HeldConnections {
    pub(super) fn new(options: PgConnectOptions, count: usize) -> HeldConnections {
        let slots = (0..count.max(1))
            .map(|_| {
                Mutex::new(Slot {
                    conn: None,
                    last_used: Instant::now(),
                })
            })
            .collect();
        HeldConnections { options, slots }
    }

    /// A free connection (waiting for one if all are in use), checked if it has been idle and
    /// opened if need be.
    pub(super) async fn take(&self) -> StorageResult<Held<'_>> {
        let mut slot = match self.slots.iter().find_map(|s| s.try_lock().ok()) {
            Some(free) => free,
            None => self.slots[0].lock().await,
        };
        if slot.last_used.elapsed() >= IDLE_CHECK {
            if let Some(mut conn) = slot.conn.take() {
                if let Ok(Ok(())) = tokio::time::timeout(CONNECT_TIMEOUT, conn.ping()).await {
                    slot.conn = Some(conn);
                }
            }
        }
        if slot.conn.is_none() {
            let conn = tokio::time::timeout(CONNECT_TIMEOUT, self.options.connect())
                .await
                .map_err(|_| StorageError::Database(sqlx::Error::PoolTimedOut))??;
            slot.conn = Some(conn);
        }
        Ok(Held {
            slot,
            finished: false,
        })
    }

    pub(super) async fn close(&self) {
        for slot in &self.slots {
            if let Some(conn) = slot.lock().await.conn.take() {
                let _ = conn.close().await;
            }
        }
    }
}

/// One of the connections, for one caller; hand the outcome of its use to `finish`.
pub(super) struct Held<'a> {
    slot: MutexGuard<'a, Slot>,
    finished: bool,
}

impl Held<'_> {
    pub(super) fn conn(&mut self) -> StorageResult<&mut PgConnection> {
        self.slot
            .conn
            .as_mut()
            .ok_or(StorageError::Database(sqlx::Error::PoolClosed))
    }

    /// Passes `result` on; after an error the connection is dropped (the error may have come
    /// from the connection itself), to be opened afresh next time.
    pub(super) fn finish<T>(self, result: StorageResult<T>) -> StorageResult<T> {
        let healthy = result.is_ok();
        self.finish_as(result, healthy)
    }

    /// Passes `result` on; unless `healthy`, the connection is dropped as after an error.
    pub(super) fn finish_as<T>(mut self, result: T, healthy: bool) -> T {
        self.finished = true;
        match healthy {
            true => self.slot.last_used = Instant::now(),
            false => self.slot.conn = None,
        }
        result
    }
}

impl Drop for Held<'_> {
    /// A use interrupted midway (its future dropped) may have left a statement or transaction
    /// half done on the connection: do not hand it out again.
    fn drop(&mut self) {
        if !self.finished {
            self.slot.conn = None;
        }
    }
}
