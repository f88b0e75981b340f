//! Waking delivery workers. Events this process stores are handed to its own worker by id, to
//! be claimed by key rather than found by a scan of the due queue; other processes hear of new
//! work (a replay, a retry, or events stored where no worker runs) through a coalesced Postgres
//! NOTIFY.

use crate::storage::Store;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// At most one NOTIFY per this interval: under load one wake-up serves many enqueues, and no
/// ingest transaction takes Postgres' global NOTIFY lock.
const NOTIFY_INTERVAL: Duration = Duration::from_millis(25);

/// Event ids waiting for this process's worker, at most (4 MiB); beyond that the worker is told
/// to scan the due queue instead, which finds the same deliveries (bounded memory, nothing lost).
/// Room for a minute of a burst the subscribers cannot keep up with: a scan walks the due index
/// from its oldest entry, dead ones included until Postgres vacuums them, and so costs more the
/// longer the backlog.
const HANDOFF_CAPACITY: usize = 262_144;

#[derive(Debug, Clone, Default)]
pub struct Wakeup {
    local: Arc<Handoff>,
    remote: Arc<Notify>,
}

#[derive(Debug, Default)]
struct Handoff {
    /// Stored events whose deliveries this process's worker is to claim.
    events: Mutex<VecDeque<Uuid>>,
    /// Deliveries may be due that no handed-off id names: the worker should scan the queue.
    scan: AtomicBool,
    /// Whether a worker runs in this process to take handoffs.
    attached: AtomicBool,
    ready: Notify,
}

impl Wakeup {
    /// Events were stored (and committed) with their deliveries: this process's worker claims
    /// them, or, if it has none running, the other processes' workers are told.
    pub fn stored(&self, events: impl IntoIterator<Item = Uuid>) {
        if !self.local.attached.load(Ordering::Acquire) {
            self.remote.notify_one();
            return;
        }
        {
            let mut queue = self.handoff_queue();
            for event in events {
                if queue.len() >= HANDOFF_CAPACITY {
                    self.local.scan.store(true, Ordering::Release);
                    break;
                }
                queue.push_back(event);
            }
        }
        self.local.ready.notify_one();
    }

    /// Deliveries came due some other way (a replay, a retry request, a resumed subscription):
    /// every worker, here and in other processes, scans the due queue.
    pub fn notify(&self) {
        self.local.scan.store(true, Ordering::Release);
        self.local.ready.notify_one();
        self.remote.notify_one();
    }

    /// Called by the worker of this process while it runs (true) and when it stops (false).
    pub(super) fn attach_worker(&self, attached: bool) {
        self.local.attached.store(attached, Ordering::Release);
        if !attached && !self.handoff_queue().is_empty() {
            // Handed-off events nobody here will claim: other processes' scans will.
            self.remote.notify_one();
        }
    }

    /// Up to `limit` handed-off event ids, oldest first.
    pub(super) fn take_events(&self, limit: usize) -> Vec<Uuid> {
        let mut queue = self.handoff_queue();
        let n = limit.min(queue.len());
        queue.drain(..n).collect()
    }

    /// Puts `events` back at the head of the queue (in their order): some of their deliveries
    /// did not fit in the last claim. Beyond the queue's bound, a scan finds them instead.
    pub(super) fn hand_back(&self, events: &[Uuid]) {
        let mut queue = self.handoff_queue();
        let room = HANDOFF_CAPACITY
            .saturating_sub(queue.len())
            .min(events.len());
        if room < events.len() {
            self.local.scan.store(true, Ordering::Release);
        }
        for event in events[..room].iter().rev() {
            queue.push_front(*event);
        }
    }

    /// Whether no handed-off event waits.
    pub(super) fn nothing_handed_off(&self) -> bool {
        self.handoff_queue().is_empty()
    }

    /// Whether a scan of the due queue was asked for since the last call.
    pub(super) fn take_scan_request(&self) -> bool {
        self.local.scan.swap(false, Ordering::AcqRel)
    }

    /// Waits until events are handed off or a scan is asked for.
    pub(super) async fn ready(&self) {
        self.local.ready.notified().await;
    }

    fn handoff_queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Uuid>> {
        // The queue holds plain ids: a panic elsewhere cannot leave it half-changed.
        self.local
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::now_v7()).collect()
    }

    #[test]
    fn handed_off_events_come_out_oldest_first_and_handed_back_ones_first_of_all() {
        let wakeup = Wakeup::default();
        wakeup.attach_worker(true);
        let events = ids(5);
        wakeup.stored(events.clone());
        let first = wakeup.take_events(2);
        assert_eq!(first, events[..2]);
        wakeup.hand_back(&first);
        assert_eq!(wakeup.take_events(10), events);
        assert!(wakeup.nothing_handed_off());
        assert!(!wakeup.take_scan_request(), "nothing overflowed");
    }

    #[test]
    fn beyond_its_bound_the_queue_asks_for_a_scan_instead() {
        let wakeup = Wakeup::default();
        wakeup.attach_worker(true);
        wakeup.stored(ids(HANDOFF_CAPACITY));
        assert!(!wakeup.take_scan_request());
        wakeup.stored(ids(1));
        assert!(wakeup.take_scan_request(), "the overflow is left to a scan");
        let taken = wakeup.take_events(3);
        wakeup.stored(ids(3));
        wakeup.hand_back(&taken);
        assert!(
            wakeup.take_scan_request(),
            "a hand-back that does not fit too"
        );
        assert_eq!(wakeup.take_events(usize::MAX).len(), HANDOFF_CAPACITY);
    }

    #[test]
    fn without_a_worker_nothing_is_queued() {
        let wakeup = Wakeup::default();
        wakeup.stored(ids(3));
        assert!(wakeup.nothing_handed_off());
    }
}
