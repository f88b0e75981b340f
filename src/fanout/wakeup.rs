//! Waking delivery workers after an enqueue: this process's at once, other processes' through a
//! Postgres NOTIFY that is sent outside the ingest transaction and coalesced.

use crate::storage::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// At most one NOTIFY per this interval: under load one wake-up serves many enqueues, and no
/// ingest transaction takes Postgres' global NOTIFY lock.
const NOTIFY_INTERVAL: Duration = Duration::from_millis(25);

#[derive(Debug, Clone, Default)]
pub struct Wakeup {
    local: Arc<Notify>,
    remote: Arc<Notify>,
}

impl Wakeup {
    /// Deliveries were enqueued (and committed).
    pub fn notify(&self) {
        self.local.notify_one();
        self.remote.notify_one();
    }

    /// What this process's worker waits on.
    pub fn local(&self) -> Arc<Notify> {
        self.local.clone()
    }

    /// Sends the NOTIFY for other processes until `shutdown`.
    pub async fn forward_to_other_processes(self, store: Store, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = self.remote.notified() => {}
                () = shutdown.cancelled() => return,
            }
            if let Err(error) = store.notify_workers().await {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "cannot NOTIFY other processes; they poll instead"
                );
            }
            tokio::time::sleep(NOTIFY_INTERVAL).await;
        }
    }
}
