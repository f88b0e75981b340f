//! Waking delivery workers. Events this process stores are handed to its own worker: their
//! deliveries already claimed, when the store claimed them as it stored them, or else by id, to
//! be claimed by key rather than found by a scan of the due queue; other processes hear of new
//! work (a replay, a retry, or events stored where no worker runs) through a coalesced Postgres
//! NOTIFY.

use crate::storage::{ClaimedDelivery, Store};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
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
    /// Deliveries claimed as their events were stored, for this process's worker.
    claimed: Mutex<Claimed>,
    ready: Notify,
}

#[derive(Debug, Default)]
struct Claimed {
    /// The attached worker's lease and concurrency; `None` while no worker is attached.
    worker: Option<(Duration, usize)>,
    queue: VecDeque<LeasedDelivery>,
}

/// A delivery claimed at ingest, and when its lease ends (by this process's clock, no later than
/// the database's record of it: the lease was counted from before the statement ran).
#[derive(Debug)]
pub(crate) struct LeasedDelivery {
    pub delivery: ClaimedDelivery,
    pub lease_ends: Instant,
}

/// What the ingest may ask the store to claim for this process's worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimRoom {
    pub lease: Duration,
    /// Events whose deliveries may be claimed.
    pub events: usize,
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

    /// How many events' deliveries the ingest may have the store claim for this process's worker
    /// now, and for how long: twice as many as the worker runs at once, less those already
    /// waiting, so a claim waits for a slot about as long as two tries take. `None` when no
    /// worker runs here or it has no room.
    pub fn claim_room(&self) -> Option<ClaimRoom> {
        let claimed = self.claimed_queue();
        let (lease, concurrency) = claimed.worker?;
        let events = (2 * concurrency).saturating_sub(claimed.queue.len());
        (events > 0).then_some(ClaimRoom { lease, events })
    }

    /// Deliveries the store claimed as it stored their events (with the lease of `claim_room`,
    /// counted from `lease_started`), for this process's worker. Returns those no worker is
    /// there to take (it stopped meanwhile), for the caller to give back to the store.
    #[must_use]
    pub fn claimed(
        &self,
        deliveries: Vec<ClaimedDelivery>,
        lease_started: Instant,
    ) -> Vec<ClaimedDelivery> {
        if deliveries.is_empty() {
            return deliveries;
        }
        {
            let mut claimed = self.claimed_queue();
            let Some((lease, _)) = claimed.worker else {
                return deliveries;
            };
            let lease_ends = lease_started + lease;
            claimed
                .queue
                .extend(deliveries.into_iter().map(|delivery| LeasedDelivery {
                    delivery,
                    lease_ends,
                }));
        }
        self.local.ready.notify_one();
        Vec::new()
    }

    /// Up to `limit` deliveries claimed at ingest, oldest first, with at least `time_needed`
    /// left on their lease.
    pub(super) fn take_claimed(&self, limit: usize, time_needed: Duration) -> Vec<ClaimedDelivery> {
        let mut claimed = self.claimed_queue();
        let now = Instant::now();
        let mut ready = Vec::new();
        while ready.len() < limit {
            let Some(next) = claimed.queue.pop_front() else {
                break;
            };
            // `take_stale` runs before this; one that ran short since waits for its next call.
            if next.lease_ends.saturating_duration_since(now) >= time_needed {
                ready.push(next.delivery);
            } else {
                claimed.queue.push_front(next);
                break;
            }
        }
        ready
    }

    /// Takes out the deliveries claimed at ingest with less than `time_needed` left on their
    /// lease, to be given back untried.
    pub(super) fn take_stale(&self, time_needed: Duration) -> Vec<ClaimedDelivery> {
        let mut claimed = self.claimed_queue();
        let now = Instant::now();
        let short = |c: &LeasedDelivery| c.lease_ends.saturating_duration_since(now) < time_needed;
        if !claimed.queue.iter().any(short) {
            return Vec::new();
        }
        let (stale, fresh): (VecDeque<_>, VecDeque<_>) = claimed.queue.drain(..).partition(short);
        claimed.queue = fresh;
        stale.into_iter().map(|c| c.delivery).collect()
    }

    /// Deliveries came due some other way (a replay, a retry request, a resumed subscription):
    /// every worker, here and in other processes, scans the due queue.
    pub fn notify(&self) {
        self.local.scan.store(true, Ordering::Release);
        self.local.ready.notify_one();
        self.remote.notify_one();
    }

    /// Called by the worker of this process as it starts, with the lease it claims for and how
    /// many deliveries it runs at once.
    pub(super) fn attach_worker(&self, lease: Duration, concurrency: usize) {
        self.claimed_queue().worker = Some((lease, concurrency));
        self.local.attached.store(true, Ordering::Release);
    }

    /// Called by the worker of this process as it stops: returns the deliveries claimed for it
    /// that it did not take, for it to give back to the store.
    pub(super) fn detach_worker(&self) -> Vec<ClaimedDelivery> {
        let left: Vec<ClaimedDelivery> = {
            let mut claimed = self.claimed_queue();
            claimed.worker = None;
            claimed.queue.drain(..).map(|c| c.delivery).collect()
        };
        self.local.attached.store(false, Ordering::Release);
        if !self.handoff_queue().is_empty() {
            // Handed-off events nobody here will claim: other processes' scans will.
            self.remote.notify_one();
        }
        left
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

    fn claimed_queue(&self) -> std::sync::MutexGuard<'_, Claimed> {
        // Pushes and pops of whole entries: a panic elsewhere cannot leave it half-changed.
        self.local
            .claimed
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

    const LEASE: Duration = Duration::from_secs(30);

    fn claim(id: Uuid) -> ClaimedDelivery {
        ClaimedDelivery {
            id,
            attempts: 1,
            max_attempts: 5,
            event_id: Uuid::now_v7(),
            event_type: "NewFileUpload".to_owned(),
            received_at: chrono::Utc::now(),
            file_id: None,
            raw_body: b"{}".to_vec(),
            handler: Some("audit".to_owned()),
            subscription_id: None,
            url: None,
            secret: None,
            previous_secret: None,
            previous_secret_expires_at: None,
            upload: None,
        }
    }

    fn claim_ids(claims: &[ClaimedDelivery]) -> Vec<Uuid> {
        claims.iter().map(|c| c.id).collect()
    }

    #[test]
    fn deliveries_claimed_at_ingest_are_asked_for_only_while_a_worker_has_room() {
        let wakeup = Wakeup::default();
        assert_eq!(wakeup.claim_room(), None, "no worker runs here");
        wakeup.attach_worker(LEASE, 2);
        let room = wakeup.claim_room().expect("room");
        assert_eq!(
            (room.lease, room.events),
            (LEASE, 4),
            "twice as many as it runs at once"
        );
        let ids = ids(4);
        let refused = wakeup.claimed(ids.iter().map(|id| claim(*id)).collect(), Instant::now());
        assert!(refused.is_empty());
        assert_eq!(wakeup.claim_room(), None, "the worker has enough waiting");
        assert!(wakeup.take_stale(Duration::from_secs(1)).is_empty());
        let ready = wakeup.take_claimed(3, Duration::from_secs(1));
        assert_eq!(claim_ids(&ready), ids[..3], "oldest first");
        assert_eq!(wakeup.claim_room().map(|room| room.events), Some(3));
        assert_eq!(
            claim_ids(&wakeup.detach_worker()),
            ids[3..],
            "left for the store"
        );
        assert_eq!(wakeup.claim_room(), None);
        let late = vec![claim(Uuid::now_v7())];
        assert_eq!(
            wakeup.claimed(late.clone(), Instant::now()),
            late,
            "no worker to take them"
        );
    }

    #[test]
    fn a_claim_without_enough_lease_left_is_not_handed_to_a_try() {
        let wakeup = Wakeup::default();
        wakeup.attach_worker(LEASE, 4);
        let (stale, fresh) = (Uuid::now_v7(), Uuid::now_v7());
        let long_ago = Instant::now()
            .checked_sub(LEASE - Duration::from_secs(2))
            .expect("a monotonic clock this far back");
        assert!(wakeup.claimed(vec![claim(stale)], long_ago).is_empty());
        assert!(wakeup
            .claimed(vec![claim(fresh)], Instant::now())
            .is_empty());
        assert!(
            wakeup.take_claimed(10, Duration::from_secs(5)).is_empty(),
            "a short lease at the head waits to be taken out as stale"
        );
        let untried = wakeup.take_stale(Duration::from_secs(5));
        assert_eq!(
            claim_ids(&untried),
            vec![stale],
            "2 s left is less than the 5 s needed"
        );
        let ready = wakeup.take_claimed(10, Duration::from_secs(5));
        assert_eq!(claim_ids(&ready), vec![fresh]);
    }

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::now_v7()).collect()
    }

    #[test]
    fn handed_off_events_come_out_oldest_first_and_handed_back_ones_first_of_all() {
        let wakeup = Wakeup::default();
        wakeup.attach_worker(LEASE, 4);
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
        wakeup.attach_worker(LEASE, 4);
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
