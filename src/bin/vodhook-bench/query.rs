//! Query API load at fixed concurrency: upload records by FileId, and a user's list pages.
//!
//! The list phase asks for a user's first page and, when it has a cursor, the next page too.

use crate::dataset::Dataset;
use crate::load::Api;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde::de::IgnoredAny;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The page size the benchmark asks for.
pub const PAGE_LIMIT: u32 = 50;

/// The requests measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Get,
    ListFirst,
    ListNext,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Get => "GET /v1/uploads/{file_id}",
            Kind::ListFirst => "GET /v1/uploads?source_context=U&limit=50 (first page)",
            Kind::ListNext => "… &cursor=C (second page, when the first has a cursor)",
        }
    }
}

/// Which requests a phase sends: GETs by FileId, or lists (with their next pages).
#[derive(Debug, Clone, Copy)]
pub enum Phase {
    Get,
    List,
}

/// The requests of one kind in a phase.
#[derive(Debug, Default)]
pub struct Stats {
    latencies: Vec<Duration>,
    /// Failures by what they were: an HTTP status, "timeout" or "no answer".
    errors: BTreeMap<String, usize>,
    rows: u64,
}

pub struct Report {
    pub kind: Kind,
    pub requests: usize,
    pub per_second: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    /// "0", or the count and its kinds: "8 (503: 6, timeout: 2)".
    pub errors: String,
    pub rows_per_answer: f64,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        self.latencies.extend(other.latencies);
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        self.rows += other.rows;
    }

    fn fail(&mut self, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
    }

    fn report(mut self, kind: Kind, elapsed: Duration) -> Report {
        self.latencies.sort_unstable();
        let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
        let percentile = |p: f64| {
            let index = ((self.latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
            self.latencies.get(index).map_or(0.0, ms)
        };
        Report {
            kind,
            requests: self.latencies.len(),
            per_second: self.latencies.len() as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE),
            p50: percentile(0.50),
            p95: percentile(0.95),
            p99: percentile(0.99),
            max: self.latencies.last().map_or(0.0, ms),
            errors: match self.errors.values().sum::<usize>() {
                0 => "0".to_owned(),
                total => {
                    let kinds: Vec<String> = self
                        .errors
                        .iter()
                        .map(|(k, n)| format!("{k}: {n}"))
                        .collect();
                    format!("{total} ({})", kinds.join(", "))
                }
            },
            rows_per_answer: self.rows as f64 / (self.latencies.len().max(1)) as f64,
        }
    }
}

/// The body of a list answer, as far as the benchmark reads it.
#[derive(serde::Deserialize)]
struct PageBody {
    data: Vec<IgnoredAny>,
    next_cursor: Option<String>,
}

/// Runs `phase` with `concurrency` workers for `duration`; a report per kind it sent.
pub async fn run_phase(
    api: &Api,
    data: &Arc<Dataset>,
    phase: Phase,
    concurrency: usize,
    duration: Duration,
    seed: u64,
) -> Vec<Report> {
    let started = Instant::now();
    let deadline = started + duration;
    let workers = (0..concurrency).map(|worker| {
        let (api, data) = (api.clone(), data.clone());
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ (worker as u64) << 32);
            let (mut first, mut next) = (Stats::default(), Stats::default());
            while Instant::now() < deadline {
                match phase {
                    Phase::Get => {
                        let file_id = Dataset::file_id(rng.gen_range(0..data.records));
                        let t0 = Instant::now();
                        match api.get(&format!("/v1/uploads/{file_id}")).await {
                            Ok((StatusCode::OK, _)) => {
                                first.latencies.push(t0.elapsed());
                                first.rows += 1;
                            }
                            other => first.fail(failure(other.map(|(status, _)| status))),
                        }
                    }
                    Phase::List => {
                        let user = Dataset::user(data.sample_rank(&mut rng));
                        let path = format!(
                            "/v1/uploads?source_context={}&limit={PAGE_LIMIT}",
                            utf8_percent_encode(&user, NON_ALPHANUMERIC)
                        );
                        let Some(cursor) = list(&api, &path, &mut first).await else {
                            continue;
                        };
                        let path = format!("{path}&cursor={cursor}");
                        list(&api, &path, &mut next).await;
                    }
                }
            }
            (first, next)
        })
    });
    let (mut first, mut next) = (Stats::default(), Stats::default());
    for (a, b) in futures_util::future::join_all(workers)
        .await
        .into_iter()
        .flatten()
    {
        first.merge(a);
        next.merge(b);
    }
    let elapsed = started.elapsed();
    match phase {
        Phase::Get => vec![first.report(Kind::Get, elapsed)],
        Phase::List => vec![
            first.report(Kind::ListFirst, elapsed),
            next.report(Kind::ListNext, elapsed),
        ],
    }
}

/// One list request, measured into `stats`; the next page's cursor, if any.
async fn list(api: &Api, path: &str, stats: &mut Stats) -> Option<String> {
    let t0 = Instant::now();
    let answer = api.get(path).await;
    // The answer is in; reading it is the client's time, not the server's.
    let elapsed = t0.elapsed();
    let page = match answer {
        Ok((StatusCode::OK, body)) => {
            serde_json::from_slice::<PageBody>(&body).map_err(|_| "unreadable page".to_owned())
        }
        other => Err(failure(other.map(|(status, _)| status))),
    };
    match page {
        Ok(page) => {
            stats.latencies.push(elapsed);
            stats.rows += page.data.len() as u64;
            page.next_cursor
        }
        Err(kind) => {
            stats.fail(kind);
            None
        }
    }
}

/// What a failed request is counted as.
fn failure(answer: reqwest::Result<StatusCode>) -> String {
    match answer {
        Ok(status) => status.as_u16().to_string(),
        Err(e) if e.is_timeout() => "timeout".to_owned(),
        Err(_) => "no answer".to_owned(),
    }
}
