//! Reliable callback mode: pull VOD's event queue, store each event as a push callback would be
//! stored, and confirm it only once it is committed.
//!
//! VOD keeps an unconfirmed event and serves it again 30 s after it was pulled, so a crash
//! between commit and confirmation costs one repeat, which ingest recognises.

use crate::config::VodSettings;
use crate::ingest::{IngestError, Ingestor};
use crate::storage::{LeaderLease, Store};
use crate::tencent::parse_callback;
use crate::tencent::vod_api::{PulledEvent, VodApi};
use rand::Rng;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The job only one process pulls at a time, among those sharing a database.
pub const PULL_JOB: &str = "vod-pull";

/// The least time between two polls that found nothing: VOD holds an empty poll for up to 5 s,
/// but an empty answer that comes back at once must not turn into a busy loop (VOD allows
/// 100 requests a second).
const MIN_EMPTY_POLL: Duration = Duration::from_secs(1);

/// Whether pulling works; `/readyz` fails once the worker has stopped for good.
#[derive(Debug, Clone, Default)]
pub struct PullHealth(Arc<Mutex<Option<String>>>);

impl PullHealth {
    /// Why the pull worker stopped, if it did.
    pub fn problem(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn stopped(&self, problem: String) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(problem);
    }
}

#[derive(Debug, Clone)]
pub struct PullSettings {
    /// PullEvents holds an empty poll for up to 5 s; a request gives up after this.
    pub request_timeout: Duration,
    /// Backoff after an API or storage error: doubling from `min_backoff` up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// How often a process that does not pull checks whether it should take over.
    pub standby_poll: Duration,
}

impl Default for PullSettings {
    fn default() -> PullSettings {
        PullSettings {
            request_timeout: Duration::from_secs(10),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            standby_poll: Duration::from_secs(5),
        }
    }
}

pub struct PullWorker {
    api: VodApi,
    ingestor: Ingestor,
    store: Store,
    health: PullHealth,
    settings: PullSettings,
}

/// What went wrong with a batch of pulled events.
enum Failure {
    /// Some were not stored (they come back).
    Storage(IngestError),
    /// VOD refused the key: retrying cannot help.
    Fatal(String),
}

fn refused(error: &crate::tencent::vod_api::VodApiError) -> String {
    format!(
        "VOD refused the API key ({error}); check VODHOOK_TENCENT_SECRET_ID, \
         VODHOOK_TENCENT_SECRET_KEY and the key's VOD permissions (PullEvents, ConfirmEvents)"
    )
}

/// Why pulling stopped while this process led it.
enum Stop {
    Shutdown,
    LostLease,
    Fatal(String),
}

impl PullWorker {
    pub fn new(
        vod: &VodSettings,
        ingestor: Ingestor,
        store: Store,
        health: PullHealth,
        settings: PullSettings,
    ) -> anyhow::Result<PullWorker> {
        let credentials = vod.credentials.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "pull mode needs VODHOOK_TENCENT_SECRET_ID and VODHOOK_TENCENT_SECRET_KEY"
            )
        })?;
        let api = VodApi::new(&vod.api_endpoint, credentials, vod.sub_app_id)
            .map_err(|e| anyhow::anyhow!("cannot set up the VOD API client: {e}"))?
            .with_request_timeout(settings.request_timeout);
        Ok(PullWorker {
            api,
            ingestor,
            store,
            health,
            settings,
        })
    }

    /// Pulls until `shutdown`, while this process leads the pull; stands by while another does.
    /// Stops for good on a credentials error (retrying cannot fix it), which `/readyz` reports.
    pub async fn run(self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let lease = tokio::select! {
                lease = self.store.try_lead(PULL_JOB) => lease,
                () = shutdown.cancelled() => return,
            };
            let lease = match lease {
                Ok(Some(lease)) => lease,
                Ok(None) => {
                    tracing::debug!("another process pulls VOD's queue; standing by");
                    self.pause(self.settings.standby_poll, &shutdown).await;
                    continue;
                }
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "cannot take the pull lease");
                    self.pause(self.settings.standby_poll, &shutdown).await;
                    continue;
                }
            };
            tracing::info!("pulling VOD's event queue");
            match self.pull_while_leading(lease, &shutdown).await {
                Stop::Shutdown => return,
                Stop::LostLease => tracing::warn!("lost the pull lease; standing by"),
                Stop::Fatal(problem) => {
                    tracing::error!(%problem, "pulling VOD's event queue stopped");
                    self.health.stopped(problem);
                    return;
                }
            }
        }
    }

    async fn pull_while_leading(
        &self,
        mut lease: Box<dyn LeaderLease>,
        shutdown: &CancellationToken,
    ) -> Stop {
        let mut failures = 0u32;
        loop {
            if shutdown.is_cancelled() {
                return Stop::Shutdown;
            }
            let held = tokio::select! {
                held = lease.is_held() => held,
                () = shutdown.cancelled() => return Stop::Shutdown,
            };
            if !held {
                return Stop::LostLease;
            }
            let started = tokio::time::Instant::now();
            let pulled = tokio::select! {
                pulled = self.api.pull_events() => pulled,
                () = shutdown.cancelled() => return Stop::Shutdown,
            };
            let failed = match pulled {
                Ok(events) if events.is_empty() => {
                    self.pause(MIN_EMPTY_POLL.saturating_sub(started.elapsed()), shutdown)
                        .await;
                    false
                }
                Ok(events) => match self.store_and_confirm(events).await {
                    Ok(()) => false,
                    Err(Failure::Fatal(problem)) => return Stop::Fatal(problem),
                    Err(Failure::Storage(error)) => {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "cannot store pulled events; VOD serves them again"
                        );
                        true
                    }
                },
                Err(error) if error.is_fatal() => return Stop::Fatal(refused(&error)),
                Err(error) => {
                    tracing::warn!(code = error.code(), %error, "PullEvents failed; retrying");
                    true
                }
            };
            failures = if failed { failures + 1 } else { 0 };
            if failures > 0 {
                self.pause(self.backoff(failures), shutdown).await;
            }
        }
    }

    /// Stores the events (together: they join one batch commit; a repeat is recognised), then
    /// confirms those committed; the rest come back after VOD's 30 s window. Returns the first
    /// error, if any.
    async fn store_and_confirm(&self, events: Vec<PulledEvent>) -> Result<(), Failure> {
        let mut committed = Vec::with_capacity(events.len());
        let mut stores = Vec::with_capacity(events.len());
        for pulled in events {
            match parse_callback(&pulled.raw) {
                Ok(event) => stores.push(self.store_one(pulled.handle, event, pulled.raw)),
                Err(error) => {
                    // It cannot be stored anywhere, and unconfirmed it would come back for
                    // four days: confirm it, and say so loudly.
                    tracing::error!(handle = %pulled.handle, %error, "VOD queued an event that is not a callback; confirming it unstored");
                    committed.push(pulled.handle);
                }
            }
        }
        let mut failure = None;
        for (handle, stored) in futures_util::future::join_all(stores).await {
            match stored {
                Ok(()) => committed.push(handle),
                Err(error) => failure = failure.or(Some(error)),
            }
        }
        if !committed.is_empty() {
            match self.api.confirm_events(&committed).await {
                Ok(()) => {}
                // A key that may pull but not confirm would drain nothing, ever.
                Err(error) if error.is_fatal() => return Err(Failure::Fatal(refused(&error))),
                Err(error) => {
                    tracing::warn!(code = error.code(), %error, "ConfirmEvents failed; VOD serves those events again and they are recognised as repeats");
                }
            }
        }
        failure.map_or(Ok(()), |error| Err(Failure::Storage(error)))
    }

    async fn store_one(
        &self,
        handle: String,
        event: crate::domain::VodEvent,
        raw: Vec<u8>,
    ) -> (String, Result<(), IngestError>) {
        let stored = async {
            let admission = self.ingestor.admit(raw.len())?;
            let event_type = event.event_type.clone();
            let via = json!({"via": "PullEvents"});
            let outcome = self
                .ingestor
                .ingest(event, raw, via, None, admission)
                .await?;
            tracing::info!(
                event_id = %outcome.event_id,
                %event_type,
                duplicate = outcome.duplicate,
                "pulled event stored"
            );
            Ok(())
        };
        (handle, stored.await)
    }

    /// Doubling from the minimum, capped, with up to 20 % jitter so several processes that
    /// failed together do not retry together.
    fn backoff(&self, failures: u32) -> Duration {
        let doubled = self
            .settings
            .min_backoff
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        let capped = doubled.min(self.settings.max_backoff);
        capped.mul_f64(1.0 + rand::thread_rng().gen_range(0.0..0.2))
    }

    async fn pause(&self, duration: Duration, shutdown: &CancellationToken) {
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            () = shutdown.cancelled() => {}
        }
    }
}
