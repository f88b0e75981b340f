//! Load generation: unique NewFileUpload bodies sent at fixed concurrency, latencies collected.

use anyhow::Context;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const BASELINE_INSERT: &str =
    "INSERT INTO baseline_events (dedupe_key, body) VALUES ($1, $2) ON CONFLICT DO NOTHING";

static NEXT_FILE_ID: AtomicU64 = AtomicU64::new(0);

const BENCH_TOKEN: &str = "bench-token-0123456789";

/// A unique ~1 KB v3 NewFileUpload body and its FileId.
fn next_body() -> (String, Vec<u8>) {
    let seed = u64::from(std::process::id()) << 32;
    let file_id =
        (5_000_000_000_000_000_000u64 + seed + NEXT_FILE_ID.fetch_add(1, Ordering::Relaxed))
            .to_string();
    let body = vodhook::simulate::body(
        vodhook::simulate::SimulatedEvent::NewFileUpload,
        Some(&file_id),
        Some("bench-user-0001"),
    );
    (file_id, body)
}

pub fn sample_body_len() -> usize {
    next_body().1.len()
}

/// `vodhook serve` on a free port, with its own database.
pub struct VodhookProcess {
    child: Child,
    url: String,
    base: String,
    client: reqwest::Client,
}

impl VodhookProcess {
    pub async fn start(binary: &Path, db_url: &str) -> anyhow::Result<VodhookProcess> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(binary)
            .arg("serve")
            .env("DATABASE_URL", db_url)
            .env("VODHOOK_LISTEN", format!("127.0.0.1:{port}"))
            .env("VODHOOK_API_TOKENS", BENCH_TOKEN)
            .env("VODHOOK_ALLOW_PRIVATE_TARGETS", "127.0.0.1")
            .env(
                "RUST_LOG",
                std::env::var("VODHOOK_BENCH_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start vodhook")?;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .build()?;
        let process = VodhookProcess {
            child,
            url: format!("http://127.0.0.1:{port}/v1/callbacks/vod"),
            base: format!("http://127.0.0.1:{port}"),
            client,
        };
        for _ in 0..300 {
            if let Ok(r) = process
                .client
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
            {
                if r.status().is_success() {
                    return Ok(process);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("vodhook did not become ready")
    }
}

impl VodhookProcess {
    /// Adds an HTTP subscription for every event type.
    pub async fn subscribe(&self, url: &str) -> anyhow::Result<()> {
        let response = self
            .client
            .post(format!("{}/v1/subscriptions", self.base))
            .bearer_auth(BENCH_TOKEN)
            .json(&serde_json::json!({"url": url}))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "cannot subscribe: {}",
            response.status()
        );
        Ok(())
    }
}

impl Drop for VodhookProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The baseline: one table, one `INSERT ... ON CONFLICT DO NOTHING` transaction per event, in
/// the same database vodhook uses.
#[derive(Clone)]
pub enum Baseline {
    Postgres(PgPool),
    /// One connection, as SQLite has one writer (more would only wait on its lock), with
    /// vodhook's durability settings: WAL, every commit flushed.
    Sqlite(SqlitePool),
}

const BASELINE_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS baseline_events (dedupe_key TEXT PRIMARY KEY, body TEXT NOT NULL)";

impl Baseline {
    pub async fn postgres(db_url: &str, connections: usize) -> anyhow::Result<Baseline> {
        let pool = PgPoolOptions::new()
            .max_connections(u32::try_from(connections.min(90))?)
            .connect(db_url)
            .await?;
        sqlx::query(BASELINE_TABLE).execute(&pool).await?;
        Ok(Baseline::Postgres(pool))
    }

    pub async fn sqlite(path: &Path) -> anyhow::Result<Baseline> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        sqlx::query(BASELINE_TABLE).execute(&pool).await?;
        Ok(Baseline::Sqlite(pool))
    }
}

/// Where requests go; cheap to clone into each worker task.
#[derive(Clone)]
pub enum Target {
    Baseline(Baseline),
    Vodhook {
        client: reqwest::Client,
        url: String,
    },
}

impl Baseline {
    pub fn target(&self) -> Target {
        Target::Baseline(self.clone())
    }
}

impl VodhookProcess {
    pub fn target(&self) -> Target {
        Target::Vodhook {
            client: self.client.clone(),
            url: self.url.clone(),
        }
    }
}

impl Target {
    /// Posts one new upload to vodhook; the stored event's id once it is acknowledged.
    pub async fn post_for_event_id(&self) -> Option<String> {
        let Target::Vodhook { client, url } = self else {
            return None;
        };
        let response = client.post(url).body(next_body().1).send().await.ok()?;
        let answer: serde_json::Value = response.json().await.ok()?;
        answer["event_id"].as_str().map(str::to_owned)
    }

    async fn send_one(&self) -> bool {
        let (file_id, body) = next_body();
        match self {
            Target::Baseline(baseline) => {
                let key = format!("NewFileUpload:{file_id}");
                let body = String::from_utf8_lossy(&body).into_owned();
                match baseline {
                    Baseline::Postgres(pool) => sqlx::query(BASELINE_INSERT)
                        .bind(key)
                        .bind(body)
                        .execute(pool)
                        .await
                        .is_ok(),
                    Baseline::Sqlite(pool) => sqlx::query(BASELINE_INSERT)
                        .bind(key)
                        .bind(body)
                        .execute(pool)
                        .await
                        .is_ok(),
                }
            }
            Target::Vodhook { client, url } => client
                .post(url)
                .body(body)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success()),
        }
    }
}

/// Latencies of successful requests and the count of failures, over some wall time.
#[derive(Debug, Default)]
pub struct Measurement {
    latencies: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
}

pub struct Summary {
    pub per_second: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub errors: usize,
}

impl Measurement {
    pub fn merge(&mut self, other: Measurement) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        self.elapsed += other.elapsed;
    }

    pub fn summary(&mut self) -> Summary {
        self.latencies.sort_unstable();
        let percentile = |p: f64| {
            let index = ((self.latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
            self.latencies
                .get(index)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        Summary {
            per_second: self.latencies.len() as f64
                / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE),
            p50: percentile(0.50),
            p95: percentile(0.95),
            p99: percentile(0.99),
            errors: self.errors,
        }
    }
}

/// Keeps `concurrency` requests in flight for `duration`, from tasks spread over all cores.
pub async fn measure(target: &Target, concurrency: usize, duration: Duration) -> Measurement {
    let started = Instant::now();
    let deadline = started + duration;
    let workers = (0..concurrency).map(|_| {
        let target = target.clone();
        tokio::spawn(async move {
            let mut local = Measurement::default();
            while Instant::now() < deadline {
                let t0 = Instant::now();
                if target.send_one().await {
                    local.latencies.push(t0.elapsed());
                } else {
                    local.errors += 1;
                }
            }
            local
        })
    });
    let mut total = Measurement::default();
    for part in futures_util::future::join_all(workers).await {
        match part {
            Ok(part) => total.merge(part),
            Err(_) => total.errors += 1,
        }
    }
    total.elapsed = started.elapsed();
    total
}
