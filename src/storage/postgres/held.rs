//! Connections the hot paths (ingest committers, the worker's claims and settlements) hold for
//! themselves, outside the pool: sqlx pings a pooled connection each time it goes back (and,
//! by default, before it is handed out), two extra round trips per statement that at thousands
//! of statements a second cost Postgres more than the statements do.

use crate::storage::{StorageError, StorageResult};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};
use tokio::sync::{Mutex, MutexGuard};

/// A few connections, each used by one caller at a time, opened on first use and dropped after
/// any error (so a broken one is replaced on the next call).
#[derive(Debug)]
pub(super) struct HeldConnections {
    options: PgConnectOptions,
    slots: Vec<Mutex<Option<PgConnection>>>,
}

impl HeldConnections {
    pub(super) fn new(options: PgConnectOptions, count: usize) -> HeldConnections {
        HeldConnections {
            options,
            slots: (0..count.max(1)).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// A free connection (waiting for one if all are in use), opened if need be.
    pub(super) async fn take(&self) -> StorageResult<Held<'_>> {
        let mut slot = match self.slots.iter().find_map(|s| s.try_lock().ok()) {
            Some(free) => free,
            None => self.slots[0].lock().await,
        };
        if slot.is_none() {
            *slot = Some(self.options.connect().await?);
        }
        Ok(Held { slot })
    }

    pub(super) async fn close(&self) {
        for slot in &self.slots {
            if let Some(conn) = slot.lock().await.take() {
                let _ = sqlx::Connection::close(conn).await;
            }
        }
    }
}

/// One of the connections, for one caller.
pub(super) struct Held<'a> {
    slot: MutexGuard<'a, Option<PgConnection>>,
}

impl Held<'_> {
    pub(super) fn conn(&mut self) -> StorageResult<&mut PgConnection> {
        self.slot
            .as_mut()
            .ok_or(StorageError::Database(sqlx::Error::PoolClosed))
    }

    /// Passes `result` on; after an error the connection is dropped (the error may have come
    /// from the connection itself), to be opened afresh next time.
    pub(super) fn settle<T>(mut self, result: StorageResult<T>) -> StorageResult<T> {
        if result.is_err() {
            *self.slot = None;
        }
        result
    }
}
