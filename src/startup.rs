//! `Application`: the HTTP server wired to its store, built the same way by `serve` and the tests.

use crate::config::Settings;
use crate::routes::{self, AppState};
use crate::storage::Store;
use crate::telemetry;
use actix_web::{dev::Server, middleware, web, App, HttpServer};
use anyhow::Context;
use std::net::TcpListener;
use std::sync::Arc;

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Connects to the database, applies pending migrations, and binds the listen address.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let store = connect_and_migrate(&settings).await?;
        let address = settings.listen_address()?;
        let listener = TcpListener::bind(address)
            .with_context(|| format!("cannot listen on {address} (VODHOOK_LISTEN)"))?;
        Application::with_store(settings, store, listener)
    }

    /// Serves on an already bound listener with an already migrated store (tests use port 0).
    pub fn with_store(
        settings: Settings,
        store: Store,
        listener: TcpListener,
    ) -> anyhow::Result<Application> {
        let port = listener.local_addr()?.port();
        let state = web::Data::new(AppState {
            store,
            settings: Arc::new(settings),
        });
        let server = HttpServer::new(move || {
            App::new()
                .wrap(middleware::from_fn(telemetry::log_request))
                .app_data(state.clone())
                .configure(routes::configure)
        })
        .listen(listener)?
        .run();
        tracing::info!(port, "vodhook listening");
        Ok(Application { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs until SIGTERM or SIGINT, then finishes in-flight requests (actix's graceful stop).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// The store for commands that need the database, migrated to the current schema.
pub async fn connect_and_migrate(settings: &Settings) -> anyhow::Result<Store> {
    let url = settings.require_database_url()?;
    if Store::create_database_if_missing(url)
        .await
        .context("cannot reach the database server (DATABASE_URL)")?
    {
        tracing::info!("created the database named in DATABASE_URL");
    }
    let store = Store::connect(url, settings.db_pool_size)
        .await
        .context("cannot connect to the database (DATABASE_URL)")?;
    store
        .migrate()
        .await
        .context("cannot apply database migrations")?;
    Ok(store)
}
