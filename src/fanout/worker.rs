//! The delivery worker: claim due outbox rows as leases, deliver outside any transaction, settle
//! under the claim's fence, schedule retries. Any number of workers, in any number of processes,
//! can share one database.

use super::http_target::TryOutcome;
use super::{
    open_secret, Clock, EventHandler, Handlers, HttpTarget, Notification, RetryPolicy,
    SecretCipher, Wakeup,
};
use crate::domain::SigningSecret;
use crate::metrics::Metrics;
use crate::storage::{AttemptRecord, ClaimedDelivery, EventClaims, Settle, Settlement, Store};
use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a settlement waits for others to share its commit. Nothing waits on it but the
/// delivery's status (the try is over, its slot given up), so a longer wait costs nobody.
const SETTLE_LINGER: Duration = Duration::from_millis(10);

/// While deliveries are in flight, a claim waits this long at most for a quarter of the slots
/// to come free: one claim statement per few slots rather than one per slot, which under load
/// costs Postgres more than the deliveries themselves.
const CLAIM_GATHER: Duration = Duration::from_millis(5);

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub policy: RetryPolicy,
    /// Timeout of one HTTP try or handler call.
    pub attempt_timeout: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Poll this often even without a wake-up, as a backstop to LISTEN/NOTIFY.
    pub poll_interval: Duration,
    /// On shutdown, how long in-flight deliveries may take to finish.
    pub shutdown_grace: Duration,
}

impl WorkerSettings {
    /// Claims outlive the longest try by a margin, so a live worker never loses its claim mid-try.
    pub fn lease(&self) -> Duration {
        self.attempt_timeout * 2 + Duration::from_secs(5)
    }

    /// The lease a delivery claimed at ingest must have left when its try starts: the try, and
    /// its settlement, with a margin for clocks.
    fn claimed_time_needed(&self) -> Duration {
        self.attempt_timeout + Duration::from_secs(5)
    }
}

/// What one `run_once` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOutcome {
    pub claimed: usize,
    pub succeeded: usize,
    pub retrying: usize,
    pub dead: usize,
    /// Settled by nobody: another worker took the delivery over after this one's lease ran out.
    pub lost_claim: usize,
}

struct Inner {
    store: Store,
    clock: Arc<dyn Clock>,
    settings: WorkerSettings,
    http: HttpTarget,
    handlers: Handlers,
    cipher: Option<SecretCipher>,
    metrics: Metrics,
    settler: mpsc::Sender<(Settle, oneshot::Sender<anyhow::Result<bool>>)>,
}

#[derive(Clone)]
pub struct DeliveryWorker {
    inner: Arc<Inner>,
}

impl DeliveryWorker {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        settings: WorkerSettings,
        http: HttpTarget,
        handlers: Handlers,
        cipher: Option<SecretCipher>,
        metrics: Metrics,
    ) -> DeliveryWorker {
        let (settler, queue) = mpsc::channel(1024);
        tokio::spawn(run_settler(store.clone(), clock.clone(), queue));
        DeliveryWorker {
            inner: Arc::new(Inner {
                store,
                clock,
                settings,
                http,
                handlers,
                cipher,
                metrics,
                settler,
            }),
        }
    }

    /// Claims up to `concurrency` due deliveries, delivers them concurrently and settles them.
    /// Tests drive the worker with this, step by step.
    pub async fn run_once(&self) -> anyhow::Result<RunOutcome> {
        let claimed = self.claim(self.inner.settings.concurrency).await?;
        let mut outcome = RunOutcome {
            claimed: claimed.len(),
            ..RunOutcome::default()
        };
        let results =
            futures_util::future::join_all(claimed.into_iter().map(|d| self.process(d, None)))
                .await;
        for result in results {
            match result? {
                Some(Settlement::Succeeded) => outcome.succeeded += 1,
                Some(Settlement::RetryAt(_)) => outcome.retrying += 1,
                Some(Settlement::Dead | Settlement::DeadAndDisable(_)) => outcome.dead += 1,
                None => outcome.lost_claim += 1,
            }
        }
        Ok(outcome)
    }

    /// Delivers until `shutdown`: keeps up to `concurrency` deliveries in flight. Events this
    /// process stores are handed over by `wakeup`, their deliveries already claimed by the
    /// ingest statement or else by id, to be claimed by key; the due queue is scanned (for
    /// retries, replays, other processes' leftovers) on NOTIFY from any process, on a local
    /// request, and every poll interval as a backstop. On shutdown it stops claiming, gives back
    /// the claims it has not started, and gives in-flight deliveries the grace period; the rest
    /// come due again when their lease ends.
    pub async fn run(self, shutdown: CancellationToken, wakeup: Wakeup) {
        let remote_wake = Arc::new(Notify::new());
        let store = self.inner.store.clone();
        let (wake, stop) = (remote_wake.clone(), shutdown.clone());
        let listener = tokio::spawn(async move { store.relay_wakeups(wake, stop).await });
        wakeup.attach_worker(self.inner.settings.lease(), self.inner.settings.concurrency);
        let concurrency = self.inner.settings.concurrency;
        let slots = Arc::new(Semaphore::new(concurrency));
        let mut in_flight = JoinSet::new();
        // Deliveries left from before this start are found by a first scan.
        let mut scan = true;
        let mut last_scan = Instant::now();
        let mut gathering: Option<tokio::time::Instant> = None;
        // Which of the two kinds of work gets an odd free slot next (see below).
        let mut odd_slot_to_claimed = true;
        let time_needed = self.inner.settings.claimed_time_needed();
        while !shutdown.is_cancelled() {
            while in_flight.try_join_next().is_some() {}
            // Claims taken at ingest that can no longer be tried in their lease are given back
            // on every pass, whatever else is due, before the lease runs out and costs a try.
            let stale = wakeup.take_stale(time_needed);
            if !stale.is_empty() {
                self.release_in_background(stale);
                scan = true;
            }
            let free = slots.available_permits();
            scan |= wakeup.take_scan_request();
            // Retries, replays and expired leases are found by a scan at least every poll
            // interval, also while hand-offs keep coming.
            let backstop = last_scan.elapsed() >= self.inner.settings.poll_interval;
            // Deliveries claimed at ingest go first (they need no claim statement, and their
            // lease runs), unless a scan is due; while handed-off events wait too, each kind
            // gets half the free slots (an odd one by turns), so neither waits for the other.
            if !(scan || backstop) {
                let share = match wakeup.nothing_handed_off() {
                    true => free,
                    false => {
                        odd_slot_to_claimed = !odd_slot_to_claimed;
                        match odd_slot_to_claimed {
                            true => free.div_ceil(2),
                            false => free / 2,
                        }
                    }
                };
                let ready = wakeup.take_claimed(share, time_needed);
                if !ready.is_empty() {
                    self.spawn_all(ready, &slots, &mut in_flight).await;
                    if wakeup.nothing_handed_off() || slots.available_permits() == 0 {
                        continue;
                    }
                }
            }
            let free = slots.available_permits();
            if free == 0 {
                tokio::select! {
                    _ = in_flight.join_next() => {}
                    () = tokio::time::sleep(CLAIM_GATHER) => {}
                    () = shutdown.cancelled() => break,
                }
                continue;
            }
            if free < (concurrency / 4).max(1) {
                let until =
                    *gathering.get_or_insert_with(|| tokio::time::Instant::now() + CLAIM_GATHER);
                if tokio::time::Instant::now() < until {
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => {}
                        () = shutdown.cancelled() => break,
                    }
                    continue;
                }
            }
            gathering = None;
            let events = match scan || backstop {
                true => Vec::new(),
                false => wakeup.take_events(free),
            };
            let claimed = if !events.is_empty() {
                self.claim_events(&events, free).await.map(|claims| {
                    // Events with more deliveries than free slots: the rest go next.
                    if claims.more_due {
                        wakeup.hand_back(&events);
                    }
                    claims.claimed
                })
            } else if scan || backstop {
                last_scan = Instant::now();
                let claimed = self.claim(free).await;
                // A full batch may have left more behind; hand-offs go first meanwhile.
                scan =
                    claimed.as_ref().is_ok_and(|c| c.len() >= free) && wakeup.nothing_handed_off();
                claimed
            } else {
                tokio::select! {
                    () = wakeup.ready() => {}
                    () = remote_wake.notified() => scan = true,
                    () = tokio::time::sleep(self.inner.settings.poll_interval) => scan = true,
                    () = shutdown.cancelled() => break,
                }
                continue;
            };
            let claimed = match claimed {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "cannot claim deliveries; retrying shortly"
                    );
                    // Handed-off ids may be gone with the failed claim: a scan finds their rows.
                    scan = true;
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = shutdown.cancelled() => break,
                    }
                    continue;
                }
            };
            self.spawn_all(claimed, &slots, &mut in_flight).await;
        }
        release(&self.inner.store, wakeup.detach_worker()).await;
        let grace = self.inner.settings.shutdown_grace;
        if tokio::time::timeout(grace, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!(
                left = in_flight.len(),
                "shutdown grace period over; unfinished deliveries are retried after their lease"
            );
            in_flight.abort_all();
        }
        listener.abort();
    }

    /// Gives back `untried` claims without holding up the loop; the scan the caller asks for
    /// next finds their rows (or, failing the release, finds them when their lease ends).
    fn release_in_background(&self, untried: Vec<ClaimedDelivery>) {
        let store = self.inner.store.clone();
        tokio::spawn(async move { release(&store, untried).await });
    }

    /// Starts a try of each of `claimed`, each in a slot of its own.
    async fn spawn_all(
        &self,
        claimed: Vec<ClaimedDelivery>,
        slots: &Arc<Semaphore>,
        in_flight: &mut JoinSet<()>,
    ) {
        for delivery in claimed {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                break;
            };
            let worker = self.clone();
            in_flight.spawn(async move {
                if let Err(error) = worker.process(delivery, Some(slot)).await {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "cannot settle a delivery; it is retried after its lease"
                    );
                }
            });
        }
    }

    /// Claims up to `limit` deliveries of events this process has just stored.
    async fn claim_events(&self, events: &[Uuid], limit: usize) -> anyhow::Result<EventClaims> {
        Ok(self
            .inner
            .store
            .claim_deliveries_of_events(
                events,
                self.inner.clock.now(),
                self.inner.settings.lease(),
                i64::try_from(limit)?,
                &self.inner.handlers.names(),
            )
            .await?)
    }

    async fn claim(&self, limit: usize) -> anyhow::Result<Vec<ClaimedDelivery>> {
        let now = self.inner.clock.now();
        let limit = i64::try_from(limit)?;
        Ok(self
            .inner
            .store
            .claim_due_deliveries(
                now,
                self.inner.settings.lease(),
                limit,
                &self.inner.handlers.names(),
            )
            .await?)
    }

    /// One try of one delivery, settled; `None` when the claim was lost meanwhile.
    /// `slot` (a place among the deliveries in flight) is given up once the try is over: the
    /// settlement may wait a moment to share its commit, and need not hold up the next try.
    async fn process(
        &self,
        delivery: ClaimedDelivery,
        slot: Option<OwnedSemaphorePermit>,
    ) -> anyhow::Result<Option<Settlement>> {
        let inner = &self.inner;
        let notification = Notification::new(
            delivery.event_id,
            delivery.event_type.clone(),
            delivery.received_at,
            &delivery.raw_body,
            delivery.upload.clone(),
        );
        let started_at = inner.clock.now();
        let started = Instant::now();
        let outcome = match (&delivery.handler, &delivery.url) {
            (Some(name), _) => self.call_handler(name, &notification).await,
            (None, Some(url)) => match self.signing_keys(&delivery, started_at) {
                Ok(keys) => {
                    inner
                        .http
                        .post(
                            url,
                            &delivery.event_id.to_string(),
                            notification.to_json_bytes(),
                            &keys,
                            started_at,
                        )
                        .await
                }
                Err(error) => failure(error),
            },
            (None, None) => failure("the delivery has no target".to_owned()),
        };
        drop(slot);
        let attempt = AttemptRecord {
            started_at,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            http_status: outcome.http_status.map(i32::from),
            error: outcome.error.clone(),
            response_body: outcome.response_body.clone(),
        };
        let now = inner.clock.now();
        let settlement = self.settlement_for(&delivery, &outcome, now);
        let target = delivery
            .subscription_id
            .map_or_else(|| "handler", |_| "http");
        inner
            .metrics
            .record_attempt(target, outcome.succeeded, now - delivery.received_at);
        let (reply, answer) = oneshot::channel();
        let settle = Settle {
            delivery_id: delivery.id,
            attempts: delivery.attempts,
            subscription_id: delivery.subscription_id,
            attempt: attempt.clone(),
            settlement: settlement.clone(),
        };
        inner
            .settler
            .send((settle, reply))
            .await
            .map_err(|_| anyhow::anyhow!("the settler has stopped"))?;
        let held = answer
            .await
            .map_err(|_| anyhow::anyhow!("the settler has stopped"))??;
        if !held {
            tracing::warn!(delivery_id = %delivery.id, "another worker took this delivery over after the lease ended");
            return Ok(None);
        }
        match &settlement {
            Settlement::Dead | Settlement::DeadAndDisable(_) => {
                tracing::warn!(delivery_id = %delivery.id, event_id = %delivery.event_id, error = attempt.error, "delivery is dead after its last try")
            }
            Settlement::RetryAt(at) => {
                tracing::info!(delivery_id = %delivery.id, attempt = delivery.attempts, retry_at = %at, error = attempt.error, "delivery failed; will retry")
            }
            Settlement::Succeeded => {}
        }
        Ok(Some(settlement))
    }

    fn settlement_for(
        &self,
        delivery: &ClaimedDelivery,
        outcome: &TryOutcome,
        now: DateTime<Utc>,
    ) -> Settlement {
        if outcome.succeeded {
            return Settlement::Succeeded;
        }
        if outcome.gone() && delivery.subscription_id.is_some() {
            return Settlement::DeadAndDisable("the target answered 410 Gone".to_owned());
        }
        let attempts = u32::try_from(delivery.attempts).unwrap_or(u32::MAX);
        if delivery.attempts >= delivery.max_attempts {
            return Settlement::Dead;
        }
        match self.inner.settings.policy.next_delay(
            attempts,
            outcome.hints,
            &mut rand::thread_rng(),
        ) {
            Some(delay) => Settlement::RetryAt(
                now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX),
            ),
            None => Settlement::Dead,
        }
    }

    /// The current secret, plus the previous one while it is still within its rotation window.
    fn signing_keys(
        &self,
        delivery: &ClaimedDelivery,
        now: DateTime<Utc>,
    ) -> Result<Vec<Vec<u8>>, String> {
        let cipher = self.inner.cipher.as_ref();
        let previous = delivery.previous_secret.as_ref().filter(|_| {
            delivery
                .previous_secret_expires_at
                .is_some_and(|until| until > now)
        });
        delivery
            .secret
            .iter()
            .chain(previous)
            .map(|stored| {
                let text = open_secret(cipher, stored).map_err(|e| e.to_string())?;
                SigningSecret::parse(&text)
                    .map(|s| s.key().to_vec())
                    .ok_or_else(|| "the stored signing secret is malformed".to_owned())
            })
            .collect()
    }

    /// Calls a handler with the attempt timeout; an error or a panic is a failed try.
    async fn call_handler(&self, name: &str, notification: &Notification) -> TryOutcome {
        let Some(handler): Option<Arc<dyn EventHandler>> = self.inner.handlers.get(name) else {
            return failure(format!(
                "no handler named {name:?} is registered in this process"
            ));
        };
        let call = AssertUnwindSafe(handler.handle(notification)).catch_unwind();
        match tokio::time::timeout(self.inner.settings.attempt_timeout, call).await {
            Ok(Ok(Ok(()))) => TryOutcome {
                succeeded: true,
                ..TryOutcome::default()
            },
            Ok(Ok(Err(error))) => failure(format!("handler failed: {error:#}")),
            Ok(Err(panic)) => failure(format!("handler panicked: {}", panic_message(&panic))),
            Err(_) => TryOutcome::failed("handler timed out".to_owned(), true),
        }
    }
}

/// Gives back claims taken at ingest that will not be tried: their rows are claimable again at
/// once, the attempt uncounted. Whether any were given back; a failure is logged, and leaves the
/// rows to come due when their lease ends.
pub(crate) async fn release(store: &Store, untried: Vec<ClaimedDelivery>) -> bool {
    if untried.is_empty() {
        return false;
    }
    tracing::info!(
        deliveries = untried.len(),
        "giving back deliveries claimed at ingest and not tried"
    );
    let claims: Vec<(Uuid, i32)> = untried.iter().map(|c| (c.id, c.attempts)).collect();
    match store.release_claims(&claims).await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(
                error = format!("{error:#}"),
                "cannot give back untried claims; they come due when their lease ends"
            );
            false
        }
    }
}

fn failure(error: String) -> TryOutcome {
    TryOutcome::failed(error, false)
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// Writes settlements in batches: what arrives within `SETTLE_LINGER` of the first (up to a
/// batch) shares one transaction. Stops when every worker handle is gone.
async fn run_settler(
    store: Store,
    clock: Arc<dyn Clock>,
    mut queue: mpsc::Receiver<(Settle, oneshot::Sender<anyhow::Result<bool>>)>,
) {
    const MAX_BATCH: usize = 256;
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + SETTLE_LINGER;
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(until, queue.recv()).await {
                Ok(Some(next)) => batch.push(next),
                Ok(None) | Err(_) => break,
            }
        }
        let (settles, replies): (Vec<Settle>, Vec<_>) = batch.into_iter().unzip();
        match store.settle_deliveries(&settles, clock.now()).await {
            Ok(held) => {
                for (reply, held) in replies.into_iter().zip(held) {
                    let _ = reply.send(Ok(held));
                }
            }
            Err(error) => {
                let error = format!("{error:#}");
                for reply in replies {
                    let _ = reply.send(Err(anyhow::anyhow!("cannot settle: {error}")));
                }
            }
        }
    }
}
