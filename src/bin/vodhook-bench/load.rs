//! Ingest load: unique NewFileUpload bodies at fixed concurrency, latencies and outcomes counted.
//!
//! Failures are told apart: 503 with Retry-After (admission control), timeouts, anything else.

use crate::sql::BaselinePool;
// actix re-exports the `bytes` crate's type, which reqwest returns.
use actix_web::web::Bytes;
use anyhow::Context;
use reqwest::header::RETRY_AFTER;
use reqwest::StatusCode;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

static NEXT_FILE_ID: AtomicU64 = AtomicU64::new(0);

pub const BENCH_TOKEN: &str = "bench-token-0123456789";

/// How long a client waits for an answer (or a baseline insert) before counting a timeout.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

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
            .timeout(CLIENT_TIMEOUT)
            .build()?;
        let process = VodhookProcess {
            child,
            url: format!("http://127.0.0.1:{port}/v1/callbacks/vod"),
            base: format!("http://127.0.0.1:{port}"),
            client,
        };
        // Generous: on a reused 10 M database the first start may wait on a cold disk.
        for _ in 0..600 {
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

    /// The child's process id, for reading its memory use.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An authenticated client of the query API.
    pub fn api(&self) -> Api {
        Api {
            client: self.client.clone(),
            base: self.base.clone(),
        }
    }

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

/// The query API of a running vodhook, with the benchmark's token.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    /// GETs `path_and_query`; the status and body.
    pub async fn get(&self, path_and_query: &str) -> reqwest::Result<(StatusCode, Bytes)> {
        let response = self
            .client
            .get(format!("{}{path_and_query}", self.base))
            .bearer_auth(BENCH_TOKEN)
            .send()
            .await?;
        let status = response.status();
        Ok((status, response.bytes().await?))
    }
}

/// Where requests go; cheap to clone into each worker task.
#[derive(Clone)]
pub enum Target {
    Baseline(BaselinePool),
    Vodhook {
        client: reqwest::Client,
        url: String,
        /// Keep the event id of each acknowledged callback (to check deliveries against).
        keep_ids: bool,
    },
}

impl VodhookProcess {
    pub fn target(&self, keep_ids: bool) -> Target {
        Target::Vodhook {
            client: self.client.clone(),
            url: self.url.clone(),
            keep_ids,
        }
    }
}

/// What became of one request.
enum Outcome {
    /// Acknowledged (committed); the stored event's id when asked to keep it.
    Done(Option<String>),
    /// 503 with Retry-After: vodhook's deliberate admission control; the delay it asked for.
    Shed(Duration),
    /// No answer within `CLIENT_TIMEOUT`.
    Timeout,
    /// Any other failure: another status, a refused connection, a database error.
    Failed,
}

impl Target {
    /// Posts one new upload to vodhook; the stored event's id once it is acknowledged.
    pub async fn post_for_event_id(&self) -> Option<String> {
        let Target::Vodhook { client, url, .. } = self else {
            return None;
        };
        let response = client.post(url).body(next_body().1).send().await.ok()?;
        let answer: serde_json::Value = response.json().await.ok()?;
        answer["event_id"].as_str().map(str::to_owned)
    }

    async fn send_one(&self) -> Outcome {
        let (file_id, body) = next_body();
        match self {
            Target::Baseline(pool) => {
                let key = format!("NewFileUpload:{file_id}");
                let body = String::from_utf8_lossy(&body).into_owned();
                match tokio::time::timeout(CLIENT_TIMEOUT, pool.insert(key, body)).await {
                    Ok(Ok(())) => Outcome::Done(None),
                    Ok(Err(_)) => Outcome::Failed,
                    Err(_) => Outcome::Timeout,
                }
            }
            Target::Vodhook {
                client,
                url,
                keep_ids,
            } => {
                let response = match client.post(url).body(body).send().await {
                    Ok(response) => response,
                    Err(e) if e.is_timeout() => return Outcome::Timeout,
                    Err(_) => return Outcome::Failed,
                };
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| {
                        v.trim()
                            .parse::<u64>()
                            .map_or(Duration::from_secs(1), Duration::from_secs)
                    });
                // Read the body either way: a connection goes back to the pool only once it is.
                let body = match response.bytes().await {
                    Ok(body) => body,
                    Err(e) if e.is_timeout() => return Outcome::Timeout,
                    Err(_) => return Outcome::Failed,
                };
                match (status, retry_after) {
                    (StatusCode::SERVICE_UNAVAILABLE, Some(delay)) => Outcome::Shed(delay),
                    (s, _) if s.is_success() && *keep_ids => {
                        let id = serde_json::from_slice::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|v| v["event_id"].as_str().map(str::to_owned));
                        match id {
                            Some(id) => Outcome::Done(Some(id)),
                            None => Outcome::Failed,
                        }
                    }
                    (s, _) if s.is_success() => Outcome::Done(None),
                    _ => Outcome::Failed,
                }
            }
        }
    }
}

/// Latencies of successful requests and the count of each kind of failure, over some wall time.
#[derive(Debug, Default)]
pub struct Measurement {
    latencies: Vec<Duration>,
    shed: usize,
    timeouts: usize,
    errors: usize,
    elapsed: Duration,
    /// When the first request went out.
    pub started: Option<Instant>,
    /// Event ids of the acknowledged callbacks, when the target keeps them.
    pub acked: Vec<String>,
}

pub struct Summary {
    pub per_second: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub shed: usize,
    pub timeouts: usize,
    pub errors: usize,
}

impl Measurement {
    pub fn merge(&mut self, other: Measurement) {
        self.latencies.extend(other.latencies);
        self.shed += other.shed;
        self.timeouts += other.timeouts;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        self.started = match (self.started, other.started) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.acked.extend(other.acked);
    }

    /// How many requests were answered 200.
    pub fn answered(&self) -> usize {
        self.latencies.len()
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
            shed: self.shed,
            timeouts: self.timeouts,
            errors: self.errors,
        }
    }
}

/// Keeps `concurrency` requests in flight for `duration`, from tasks spread over all cores. A
/// request shed with 503 + Retry-After makes its worker wait that long (within the run), as a
/// well-behaved sender would, instead of hammering an overloaded server.
pub async fn measure(target: &Target, concurrency: usize, duration: Duration) -> Measurement {
    let started = Instant::now();
    let deadline = started + duration;
    let workers = (0..concurrency).map(|_| {
        let target = target.clone();
        tokio::spawn(async move {
            let mut local = Measurement::default();
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match target.send_one().await {
                    Outcome::Done(id) => {
                        local.latencies.push(t0.elapsed());
                        local.acked.extend(id);
                    }
                    Outcome::Shed(delay) => {
                        local.shed += 1;
                        let wake = (Instant::now() + delay).min(deadline);
                        tokio::time::sleep_until(wake.into()).await;
                    }
                    Outcome::Timeout => local.timeouts += 1,
                    Outcome::Failed => local.errors += 1,
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
    total.started = Some(started);
    total.elapsed = started.elapsed();
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{web, App, HttpResponse, HttpServer};

    /// A stand-in server: /shed answers 503 with Retry-After, /busy 503 without, /ok an event id.
    async fn stand_in() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let server = HttpServer::new(|| {
            App::new()
                .route(
                    "/shed",
                    web::post().to(|| async {
                        HttpResponse::ServiceUnavailable()
                            .insert_header(("Retry-After", "2"))
                            .finish()
                    }),
                )
                .route(
                    "/busy",
                    web::post().to(|| async { HttpResponse::ServiceUnavailable().finish() }),
                )
                .route(
                    "/ok",
                    web::post().to(|| async {
                        HttpResponse::Ok().json(serde_json::json!({"event_id": "e1"}))
                    }),
                )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        base
    }

    fn target(base: &str, path: &str) -> Target {
        Target::Vodhook {
            client: reqwest::Client::new(),
            url: format!("{base}{path}"),
            keep_ids: true,
        }
    }

    #[actix_web::test]
    async fn tells_shedding_from_other_failures() {
        let base = stand_in().await;
        assert!(matches!(
            target(&base, "/shed").send_one().await,
            Outcome::Shed(d) if d == Duration::from_secs(2)
        ));
        assert!(matches!(
            target(&base, "/busy").send_one().await,
            Outcome::Failed
        ));
        assert!(matches!(
            target(&base, "/ok").send_one().await,
            Outcome::Done(Some(id)) if id == "e1"
        ));
        assert!(matches!(
            target("http://127.0.0.1:9", "/").send_one().await,
            Outcome::Failed
        ));
    }
}
