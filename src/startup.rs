//! `Application`: the HTTP server and the delivery worker wired to one store, built the same way
//! by `vodhook serve`, by apps that register their own handlers, and by the tests.

use crate::config::Settings;
use crate::fanout::{
    Clock, DeliveryWorker, EventHandler, Handlers, HttpTarget, SystemClock, Wakeup, WorkerSettings,
};
use crate::ingest::Ingestor;
use crate::metrics::Metrics;
use crate::pull::{PullHealth, PullSettings, PullWorker};
use crate::routes::{self, AppState};
use crate::storage::{Access, StorageError, Store};
use crate::telemetry;
use actix_web::{dev::Server, middleware, web, App, HttpServer};
use anyhow::Context;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Builds an `Application`; register in-process handlers here.
pub struct ApplicationBuilder {
    settings: Settings,
    handlers: Handlers,
    clock: Arc<dyn Clock>,
    store: Option<Store>,
    listener: Option<TcpListener>,
    pull_settings: PullSettings,
}

impl ApplicationBuilder {
    /// Registers a handler under a stable name for the given event types (empty: all).
    pub fn handler(
        mut self,
        name: &str,
        event_types: &[&str],
        handler: impl EventHandler,
    ) -> anyhow::Result<Self> {
        self.handlers
            .register(name, event_types, handler)
            .map_err(anyhow::Error::msg)?;
        Ok(self)
    }

    /// The worker's clock (tests step it by hand).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// An already migrated store, instead of connecting with `DATABASE_URL`.
    pub fn store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// Timeouts and backoff of the pull worker (tests shorten them).
    pub fn pull_settings(mut self, pull_settings: PullSettings) -> Self {
        self.pull_settings = pull_settings;
        self
    }

    /// An already bound listener, instead of binding `VODHOOK_LISTEN`.
    pub fn listener(mut self, listener: TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }

    pub async fn build(self) -> anyhow::Result<Application> {
        let settings = self.settings;
        let store = match self.store {
            Some(store) => store,
            None => connect_and_migrate(&settings, Access::Owner).await?,
        };
        let listener = match self.listener {
            Some(listener) => listener,
            None => {
                let address = settings.listen_address()?;
                TcpListener::bind(address)
                    .with_context(|| format!("cannot listen on {address} (VODHOOK_LISTEN)"))?
            }
        };
        let port = listener.local_addr()?.port();
        let metrics = Metrics::new();
        let wakeup = Wakeup::default();
        let worker_settings = WorkerSettings {
            policy: settings.retry_policy.clone(),
            attempt_timeout: settings.delivery_timeout,
            concurrency: settings.worker_concurrency,
            poll_interval: Duration::from_secs(1),
            shutdown_grace: settings.shutdown_grace,
        };
        let worker = DeliveryWorker::new(
            store.clone(),
            self.clock.clone(),
            worker_settings,
            HttpTarget::new(settings.delivery_timeout, settings.private_targets.clone())?,
            self.handlers.clone(),
            settings.secret_cipher.clone(),
            metrics.clone(),
        );
        let worker_enabled = settings.worker_enabled;
        let store_for_wakeup = store.clone();
        let ingestor = Ingestor::start(
            store.clone(),
            self.handlers.clone(),
            settings.retry_policy.max_attempts(),
            wakeup.clone(),
            settings.ingest_buffer_bytes,
        );
        let pull_health = PullHealth::default();
        // Pulling stores events and fans them out: not for an API-only process.
        let puller = if settings.vod.mode.pulls() && settings.worker_enabled {
            Some(PullWorker::new(
                &settings.vod,
                ingestor.clone(),
                store.clone(),
                pull_health.clone(),
                self.pull_settings,
            )?)
        } else {
            None
        };
        let state = web::Data::new(AppState {
            store,
            settings: Arc::new(settings),
            handlers: self.handlers,
            metrics,
            clock: self.clock,
            wakeup: wakeup.clone(),
            ingestor,
            pull_health,
        });
        let server = HttpServer::new(move || {
            App::new()
                .wrap(middleware::from_fn(telemetry::log_request))
                .app_data(state.clone())
                .configure(routes::configure)
        })
        // Signals are handled in `run_until_stopped`, to stop the worker too.
        .disable_signals()
        .workers(http_workers())
        .listen(listener)?
        .run();
        tracing::info!(
            port,
            worker = worker_enabled,
            pull = puller.is_some(),
            "vodhook listening"
        );
        Ok(Application {
            port,
            server,
            worker,
            worker_enabled,
            puller,
            wakeup,
            store_for_wakeup,
        })
    }
}

pub struct Application {
    port: u16,
    server: Server,
    worker: DeliveryWorker,
    worker_enabled: bool,
    /// Pulls VOD's event queue (`VODHOOK_VOD_MODE=pull` or `both`).
    puller: Option<PullWorker>,
    wakeup: Wakeup,
    store_for_wakeup: Store,
}

impl Application {
    pub fn builder(settings: Settings) -> ApplicationBuilder {
        ApplicationBuilder {
            settings,
            handlers: Handlers::default(),
            clock: Arc::new(SystemClock),
            store: None,
            listener: None,
            pull_settings: PullSettings::default(),
        }
    }

    /// Connects to the database, applies pending migrations, and binds the listen address.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        Application::builder(settings).build().await
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The delivery worker, e.g. to drive it step by step with `run_once`.
    pub fn worker(&self) -> DeliveryWorker {
        self.worker.clone()
    }

    /// Serves (and delivers, unless `VODHOOK_WORKER=false`) until SIGTERM or SIGINT; then stops
    /// claiming deliveries, lets in-flight requests and deliveries finish within the grace period,
    /// and returns.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let shutdown = CancellationToken::new();
        let worker = self.worker_enabled.then(|| {
            tokio::spawn(
                self.worker
                    .clone()
                    .run(shutdown.clone(), self.wakeup.clone()),
            )
        });
        let puller = self
            .puller
            .map(|puller| tokio::spawn(puller.run(shutdown.clone())));
        let forwarder = tokio::spawn(
            self.wakeup
                .clone()
                .forward_to_other_processes(self.store_for_wakeup.clone(), shutdown.clone()),
        );
        let handle = self.server.handle();
        let mut server = tokio::spawn(self.server);
        let result = tokio::select! {
            finished = &mut server => finished.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            () = shutdown_signal() => {
                tracing::info!("shutting down: no new deliveries are claimed; finishing what is in flight");
                shutdown.cancel();
                handle.stop(true).await;
                server.await.unwrap_or_else(|e| Err(std::io::Error::other(e)))
            }
        };
        shutdown.cancel();
        if let Some(worker) = worker {
            let _ = worker.await;
        }
        if let Some(puller) = puller {
            let _ = puller.await;
        }
        let _ = forwarder.await;
        result
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// The store for commands that need the database, migrated to the current schema.
pub async fn connect_and_migrate(settings: &Settings, access: Access) -> anyhow::Result<Store> {
    let location = settings.database();
    let store = Store::open(&location, settings.db_pool_size, access)
        .await
        .map_err(|error| match error {
            StorageError::InUse(message) => anyhow::anyhow!(message),
            other => anyhow::Error::new(other).context(if location.is_sqlite() {
                "cannot open the SQLite database (DATABASE_URL or VODHOOK_DATA_DIR)"
            } else {
                "cannot open the Postgres database (DATABASE_URL)"
            }),
        })?;
    tracing::info!(store = %store.describe(), "storage ready");
    Ok(store)
}

/// HTTP worker threads: two per core. Each worker serves its share of the connections on one
/// thread, so while the database's processes hold a core, all of that worker's requests wait;
/// with more workers than cores the wait is spread (measured: list page p99 14.3 -> 13.1 ms at
/// 10 M records, README, Performance).
fn http_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |cores| cores.get() * 2)
}
