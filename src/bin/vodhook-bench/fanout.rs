//! Fan-out lag to HTTP subscribers on loopback, and the subscriber `ingest --subscriber` uses.
//!
//! Events are posted at a fixed rate to a real vodhook with two subscribers; lag is from the
//! callback's 200 (sent after commit) to the subscriber receiving the delivery.

use crate::load::VodhookProcess;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Arrivals = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

/// A subscriber that notes when each `webhook-id` arrived and answers 204.
pub struct Subscriber {
    pub url: String,
    arrivals: Arrivals,
}

/// What a subscriber received of a set of acknowledged events.
pub struct DeliveryCheck {
    /// Acknowledged events that arrived, at least once.
    pub delivered: usize,
    pub missing: usize,
    /// Arrivals beyond the first of an acknowledged event.
    pub duplicates: usize,
    /// The last first arrival of an acknowledged event.
    pub last: Option<Instant>,
}

impl Subscriber {
    pub fn start() -> anyhow::Result<Subscriber> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://127.0.0.1:{}/hook", listener.local_addr()?.port());
        let arrivals: Arrivals = Arc::default();
        let shared = arrivals.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .default_service(web::to(arrive))
        })
        .workers(2)
        .disable_signals()
        .listen(listener)?
        .run();
        tokio::spawn(server);
        Ok(Subscriber { url, arrivals })
    }

    /// Waits until every event in `acked` has arrived, or until nothing arrived for `patience`,
    /// then a moment more for duplicates; what arrived of them.
    pub async fn await_all(
        &self,
        acked: &[String],
        patience: Duration,
    ) -> anyhow::Result<DeliveryCheck> {
        let mut seen = (0, Instant::now());
        loop {
            let (present, total) = {
                let map = self
                    .arrivals
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?;
                let present = acked.iter().filter(|id| map.contains_key(*id)).count();
                (present, map.values().map(Vec::len).sum::<usize>())
            };
            if present == acked.len() {
                break;
            }
            if total != seen.0 {
                seen = (total, Instant::now());
            } else if seen.1.elapsed() > patience {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let map = self
            .arrivals
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        let mut check = DeliveryCheck {
            delivered: 0,
            missing: 0,
            duplicates: 0,
            last: None,
        };
        for id in acked {
            match map.get(id).map(Vec::as_slice) {
                None | Some([]) => check.missing += 1,
                Some([first, rest @ ..]) => {
                    check.delivered += 1;
                    check.duplicates += rest.len();
                    check.last = check.last.max(Some(*first));
                }
            }
        }
        Ok(check)
    }

    /// Forgets every arrival, so the next check starts clean.
    pub fn clear(&self) -> anyhow::Result<()> {
        self.arrivals
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .clear();
        Ok(())
    }
}

async fn arrive(
    req: HttpRequest,
    _body: web::Bytes,
    arrivals: web::Data<Arrivals>,
) -> HttpResponse {
    let at = Instant::now();
    if let Some(id) = req
        .headers()
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
    {
        if let Ok(mut map) = arrivals.lock() {
            map.entry(id.to_owned()).or_default().push(at);
        }
    }
    HttpResponse::NoContent().finish()
}

pub struct LagReport {
    pub rate: u32,
    pub sent: usize,
    pub deliveries: usize,
    pub missing: usize,
    pub duplicates: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// Posts `rate` events per second for `duration`, then waits for both subscribers to have them.
pub async fn measure(
    server: &VodhookProcess,
    rate: u32,
    duration: Duration,
) -> anyhow::Result<LagReport> {
    let subscribers = [Subscriber::start()?, Subscriber::start()?];
    for subscriber in &subscribers {
        server.subscribe(&subscriber.url).await?;
    }
    let target = server.target(false);
    let acks: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = (f64::from(rate) * duration.as_secs_f64()) as usize;
    let mut in_flight = tokio::task::JoinSet::new();
    for _ in 0..total {
        ticker.tick().await;
        let (target, acks) = (target.clone(), acks.clone());
        in_flight.spawn(async move {
            if let Some(event_id) = target.post_for_event_id().await {
                if let Ok(mut acks) = acks.lock() {
                    acks.push((event_id, Instant::now()));
                }
            }
        });
    }
    while in_flight.join_next().await.is_some() {}
    let acks = std::mem::take(&mut *acks.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);

    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let done = subscribers.iter().all(|s| {
            s.arrivals
                .lock()
                .map(|m| acks.iter().all(|(id, _)| m.contains_key(id)))
                .unwrap_or(false)
        });
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut lags = Vec::new();
    let (mut missing, mut duplicates) = (0, 0);
    for subscriber in &subscribers {
        let arrivals = subscriber
            .arrivals
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        for (id, acked) in &acks {
            match arrivals.get(id).map(Vec::as_slice) {
                None | Some([]) => missing += 1,
                Some([first, rest @ ..]) => {
                    duplicates += rest.len();
                    lags.push(first.saturating_duration_since(*acked).as_secs_f64() * 1000.0);
                }
            }
        }
    }
    lags.sort_by(f64::total_cmp);
    let percentile = |p: f64| {
        let index = ((lags.len() as f64 * p).ceil() as usize).saturating_sub(1);
        lags.get(index).copied().unwrap_or(f64::NAN)
    };
    Ok(LagReport {
        rate,
        sent: acks.len(),
        deliveries: lags.len(),
        missing,
        duplicates,
        p50: percentile(0.50),
        p95: percentile(0.95),
        p99: percentile(0.99),
        max: lags.last().copied().unwrap_or(f64::NAN),
    })
}
