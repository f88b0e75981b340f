//! `vodhook-bench`: benchmarks of a real `vodhook serve` on a real Postgres (or SQLite).
//!
//! `ingest` measures throughput and ack latency against a baseline of single-row inserts into the
//! same store, alternated in one run, optionally end to end to a subscriber; `fanout` measures
//! delivery lag to HTTP subscribers at fixed input rates; `load` and `query` measure the query
//! API on a database of millions of upload records.

mod cpu;
mod dataset;
mod fanout;
mod load;
mod query;
mod rss;
mod sql;

use anyhow::Context;
use clap::Parser;
use cpu::{Consumer, CpuUse};
use dataset::Dataset;
use load::{Measurement, Target, VodhookProcess};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rss::RssSampler;
use sqlx::{Connection, PgConnection};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The load generator and the subscriber share the machine with what they measure: the same
/// allocator as vodhook keeps their own cost down (glibc malloc was 2.5 % of the machine).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(about = "Benchmarks of a real vodhook on a real Postgres")]
struct Cli {
    /// Any database on the Postgres server to use; the benchmark creates and drops its own.
    #[arg(
        long,
        global = true,
        env = "VODHOOK_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    admin_url: String,
    /// The vodhook binary (default: the one built next to this benchmark).
    #[arg(long, global = true)]
    vodhook: Option<PathBuf>,
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, clap::Subcommand)]
enum Bench {
    /// Ingest throughput and ack latency against a single-row INSERT baseline.
    Ingest(Args),
    /// Fan-out lag from callback acknowledgement to subscriber, at fixed input rates.
    Fanout(FanoutArgs),
    /// Fill the database vodhook_bench_query_<N> with N events and N upload records (COPY),
    /// unless it already holds exactly that data set.
    Load(LoadArgs),
    /// Query API throughput and latency on vodhook_bench_query_<N>, loading it first if needed.
    Query(QueryArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StoreKind {
    Postgres,
    Sqlite,
}

#[derive(Debug, clap::Args)]
struct Args {
    /// Which store vodhook (and the baseline) write to.
    #[arg(long, value_enum, default_value = "postgres")]
    store: StoreKind,
    /// Concurrency levels (in-flight requests), comma-separated. The Postgres baseline opens
    /// one connection per in-flight insert, but at most 90 (Postgres allows 100 by default and
    /// vodhook needs ~16), and fewer if the server has fewer free; beyond that, its inserts
    /// queue for a connection, as vodhook's callbacks queue for its two group committers.
    #[arg(long, value_delimiter = ',', default_value = "4,64")]
    concurrency: Vec<usize>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Alternations of baseline and vodhook per concurrency level.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Also run an HTTP subscriber on loopback, subscribed to every event, and after each
    /// vodhook measurement wait for it to receive every acknowledged event: end-to-end events/s
    /// (first request to last delivery), missing and duplicate deliveries.
    #[arg(long)]
    subscriber: bool,
}

#[derive(Debug, clap::Args)]
struct FanoutArgs {
    /// Input rates in events per second, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,500")]
    rates: Vec<u32>,
    /// Seconds of input per rate.
    #[arg(long, default_value_t = 10)]
    duration: u64,
}

#[derive(Debug, clap::Args)]
struct DataArgs {
    /// Events and upload records in the data set (one each per upload).
    #[arg(long)]
    records: u64,
    /// Distinct users (SourceContext values) the uploads are spread over, Zipf-skewed.
    #[arg(long, default_value_t = 100_000)]
    users: u32,
    /// Load again even if the database already holds this data set.
    #[arg(long)]
    reload: bool,
}

#[derive(Debug, clap::Args)]
struct LoadArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Drop the database vodhook_bench_query_<N> instead of loading it.
    #[arg(long)]
    drop: bool,
}

#[derive(Debug, clap::Args)]
struct QueryArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Seconds per query kind (after 2 s of warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Requests in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Drop the database when done (it is kept by default, to be reused).
    #[arg(long)]
    drop: bool,
}

/// How long the subscriber check waits without any new delivery before counting the rest missing.
const DELIVERY_PATIENCE: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let vodhook = match cli.vodhook.clone() {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("vodhook"),
    };
    anyhow::ensure!(
        vodhook.is_file(),
        "{} not found: build it first (cargo build --release)",
        vodhook.display()
    );

    match &cli.bench {
        Bench::Load(args) => return load_command(&cli.admin_url, &vodhook, args).await,
        Bench::Query(args) => return query_command(&cli.admin_url, &vodhook, args).await,
        Bench::Ingest(args) if args.store == StoreKind::Sqlite => {
            let dir = std::env::temp_dir().join(format!("vodhook-bench-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let db_url = format!("sqlite://{}", dir.join("vodhook.db").display());
            let baseline = sql::Baseline::sqlite(&dir.join("baseline.db")).await?;
            let result = run(args, &vodhook, &db_url, baseline).await;
            let _ = std::fs::remove_dir_all(&dir);
            return result;
        }
        Bench::Ingest(_) | Bench::Fanout(_) => {}
    }
    let bench_db = format!("vodhook_bench_{}", std::process::id());
    let mut admin = PgConnection::connect(&cli.admin_url)
        .await
        .context("cannot connect to --admin-url")?;
    sql::recreate_database(&mut admin, &bench_db).await?;
    let db_url = sql::database_url(&cli.admin_url, &bench_db)?;

    let result = match &cli.bench {
        Bench::Ingest(args) => match sql::Baseline::postgres(&db_url).await {
            Ok(baseline) => run(args, &vodhook, &db_url, baseline).await,
            Err(e) => Err(e),
        },
        Bench::Fanout(args) => run_fanout(args, &vodhook, &db_url).await,
        Bench::Load(_) | Bench::Query(_) => Ok(()),
    };
    sql::drop_database(&mut admin, &bench_db).await?;
    result
}

/// End-to-end figures of the vodhook measurements at one concurrency.
#[derive(Default)]
struct EndToEnd {
    delivered: usize,
    missing: usize,
    duplicates: usize,
    /// Summed over measurements: first request to last delivery.
    elapsed: Duration,
}

async fn run(
    args: &Args,
    vodhook: &Path,
    db_url: &str,
    baseline: sql::Baseline,
) -> anyhow::Result<()> {
    let server = VodhookProcess::start(vodhook, db_url).await?;
    let rss = RssSampler::start(server.pid());
    let subscriber = match args.subscriber {
        true => {
            let subscriber = fanout::Subscriber::start()?;
            server.subscribe(&subscriber.url).await?;
            Some(subscriber)
        }
        false => None,
    };
    let target = server.target(subscriber.is_some());
    let duration = Duration::from_secs(args.duration);
    println!(
        "# vodhook ingest benchmark on {:?}: {} s per measurement, {} rounds, body ~{} bytes, {} CPUs{}",
        args.store,
        args.duration,
        args.rounds,
        load::sample_body_len(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if subscriber.is_some() { ", one HTTP subscriber on loopback" } else { "" }
    );
    println!();
    let mut header = "| C | base conns | baseline events/s | p50 ms | p95 ms | p99 ms | base errors \
        | vodhook events/s | p50 ms | p95 ms | p99 ms | 503 shed | timeouts | errors | ratio | RSS MiB |"
        .to_owned();
    if subscriber.is_some() {
        header.push_str(" e2e events/s | e2e ratio | missing | duplicates |");
    }
    println!("{header}");
    println!("{}", "|---".repeat(header.matches(" |").count()) + "|");
    let mut cpu_rows = Vec::new();
    for &concurrency in &args.concurrency {
        rss.take_peak_mib();
        // Warm both paths (connections, caches) before measuring.
        measure_baseline(&baseline, concurrency, Duration::from_secs(1), server.pid()).await?;
        let warm = load::measure(&target, concurrency, Duration::from_secs(1)).await;
        if let Some(subscriber) = &subscriber {
            subscriber.await_all(&warm.acked, DELIVERY_PATIENCE).await?;
            subscriber.clear()?;
        }
        let mut base = Measurement::default();
        let mut ours = Measurement::default();
        let mut connections = usize::MAX;
        let mut e2e = EndToEnd::default();
        let mut cpu = CpuRow::default();
        for _ in 0..args.rounds {
            let (measured, opened, used) =
                measure_baseline(&baseline, concurrency, duration, server.pid()).await?;
            cpu.baseline.add(used);
            base.merge(measured);
            connections = connections.min(opened);
            let before = cpu::Snapshot::take(server.pid());
            let mut measured = load::measure(&target, concurrency, duration).await;
            let loaded = cpu::Snapshot::take(server.pid());
            cpu.vodhook_load.add(loaded.since(&before));
            if let Some(subscriber) = &subscriber {
                let acked = std::mem::take(&mut measured.acked);
                let check = subscriber.await_all(&acked, DELIVERY_PATIENCE).await?;
                subscriber.clear()?;
                e2e.delivered += check.delivered;
                e2e.missing += check.missing;
                e2e.duplicates += check.duplicates;
                if let (Some(first), Some(last)) = (measured.started, check.last) {
                    e2e.elapsed += last.saturating_duration_since(first);
                }
            }
            // Through the last delivery: all the work the events cost.
            cpu.vodhook
                .add(cpu::Snapshot::take(server.pid()).since(&before));
            ours.merge(measured);
        }
        cpu_rows.push(cpu.rows(concurrency, base.answered(), ours.answered()));
        let peak = rss.take_peak_mib();
        let (b, v) = (base.summary(), ours.summary());
        let mut row = format!(
            "| {concurrency} | {connections} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {:.2} | {peak:.0} |",
            b.per_second, b.p50, b.p95, b.p99, b.shed + b.timeouts + b.errors,
            v.per_second, v.p50, v.p95, v.p99, v.shed, v.timeouts, v.errors,
            v.per_second / b.per_second.max(f64::MIN_POSITIVE)
        );
        if subscriber.is_some() {
            let rate = e2e.delivered as f64 / e2e.elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
            row.push_str(&format!(
                " {rate:.0} | {:.2} | {} | {} |",
                rate / b.per_second.max(f64::MIN_POSITIVE),
                e2e.missing,
                e2e.duplicates
            ));
        }
        println!("{row}");
    }
    println!();
    println!("| C | run | events | Postgres us/event | vodhook us/event | bench us/event | total us/event | busy cores |");
    println!("|---|---|---|---|---|---|---|---|");
    for row in cpu_rows.iter().flatten() {
        println!("{row}");
    }
    println!();
    println!(
        "base conns: the Postgres baseline's connections (one per in-flight insert, at most {}, \
         and no more than the server had free). 503 shed: answers 503 with Retry-After (admission \
         control; the client waits as asked); timeouts: no answer in {} s; errors: anything else. \
         RSS MiB: vodhook's peak resident memory at that level (sampled every 100 ms); over the \
         whole run (VmHWM): {:.0} MiB.",
        sql::BASELINE_MAX_CONNECTIONS,
        load::CLIENT_TIMEOUT.as_secs(),
        rss.lifetime_peak_mib().unwrap_or(f64::NAN)
    );
    println!(
        "us/event: CPU time (user + system, from /proc) per acknowledged event, summed over \
         rounds; for vodhook from its first request to its last delivery. Postgres: the processes \
         named postgres on this machine, with the postmaster's exited children (a remote server \
         is not counted); bench: this process (the load generator{}{}). busy cores: the CPU they \
         used during the load windows only, per second of them.",
        if subscriber.is_some() {
            " and the subscriber"
        } else {
            ""
        },
        if args.store == StoreKind::Sqlite {
            "; on SQLite also the baseline's database work"
        } else {
            ""
        }
    );
    if subscriber.is_some() {
        println!(
            "e2e events/s: acknowledged events delivered to the subscriber, over the time from the \
             first request to the last delivery, summed over rounds; missing: acknowledged but \
             not delivered within {} s of the last delivery; duplicates: deliveries beyond the \
             first (by webhook-id).",
            DELIVERY_PATIENCE.as_secs()
        );
    }
    Ok(())
}

/// The CPU the baseline and vodhook used at one concurrency, over all rounds.
#[derive(Default)]
struct CpuRow {
    baseline: CpuUse,
    /// vodhook's load windows.
    vodhook_load: CpuUse,
    /// From vodhook's first request to its last delivery.
    vodhook: CpuUse,
}

impl CpuRow {
    fn rows(&self, concurrency: usize, base_events: usize, our_events: usize) -> [String; 2] {
        let row = |run: &str, used: &CpuUse, busy: f64, events: usize| {
            format!(
                "| {concurrency} | {run} | {events} | {:.0} | {:.0} | {:.0} | {:.0} | {busy:.2} |",
                used.per_event_us(Consumer::Postgres, events),
                used.per_event_us(Consumer::Vodhook, events),
                used.per_event_us(Consumer::Bench, events),
                used.total_per_event_us(events),
            )
        };
        [
            row(
                "baseline",
                &self.baseline,
                self.baseline.busy_cores(),
                base_events,
            ),
            row(
                "vodhook",
                &self.vodhook,
                self.vodhook_load.busy_cores(),
                our_events,
            ),
        ]
    }
}

/// One baseline measurement on connections opened for it (and closed after); with how many, and
/// the CPU it used (read before the connections close, so their backends are still counted).
async fn measure_baseline(
    baseline: &sql::Baseline,
    concurrency: usize,
    duration: Duration,
    vodhook: u32,
) -> anyhow::Result<(Measurement, usize, CpuUse)> {
    let (pool, opened) = baseline.open(concurrency).await?;
    let before = cpu::Snapshot::take(vodhook);
    let measured = load::measure(&Target::Baseline(pool.clone()), concurrency, duration).await;
    let used = cpu::Snapshot::take(vodhook).since(&before);
    pool.close().await;
    Ok((measured, opened, used))
}

async fn run_fanout(args: &FanoutArgs, vodhook: &Path, db_url: &str) -> anyhow::Result<()> {
    println!(
        "# vodhook fan-out lag: {} s of input per rate, two HTTP subscribers on loopback, {} CPUs",
        args.duration,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!("| input events/s | events | deliveries | missing | duplicates | p50 ms | p95 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for &rate in &args.rates {
        // A fresh server per rate: each run starts with an empty outbox and its own subscribers.
        let server = VodhookProcess::start(vodhook, db_url).await?;
        let r = fanout::measure(&server, rate, Duration::from_secs(args.duration)).await?;
        println!(
            "| {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.rate, r.sent, r.deliveries, r.missing, r.duplicates, r.p50, r.p95, r.p99, r.max
        );
        drop(server);
        sql::truncate_vodhook(db_url).await?;
    }
    Ok(())
}

/// The query benchmark's database: persistent, named by its size, so a 10 M load is reused.
fn query_database(records: u64) -> String {
    format!("vodhook_bench_query_{records}")
}

async fn load_command(admin_url: &str, vodhook: &Path, args: &LoadArgs) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(admin_url)
        .await
        .context("cannot connect to --admin-url")?;
    if args.drop {
        let name = query_database(args.data.records);
        sql::drop_database(&mut admin, &name).await?;
        println!("dropped database {name}");
        return Ok(());
    }
    let (_, db_url, _) = ensure_loaded(&mut admin, admin_url, vodhook, &args.data).await?;
    println!("{}", sql::sizes(&db_url).await?);
    Ok(())
}

/// Loads the data set into its database unless it is there already; the database's name, URL,
/// and the data set.
async fn ensure_loaded(
    admin: &mut PgConnection,
    admin_url: &str,
    vodhook: &Path,
    args: &DataArgs,
) -> anyhow::Result<(String, String, Arc<Dataset>)> {
    anyhow::ensure!(
        args.records > 0 && args.users > 0,
        "--records and --users must be positive"
    );
    let name = query_database(args.records);
    let db_url = sql::database_url(admin_url, &name)?;
    let data = Arc::new(Dataset::new(args.records, args.users, chrono::Utc::now()));
    let marker = sql::database_marker(admin, &name).await?;
    if !args.reload && marker.as_ref().and_then(Option::as_deref) == Some(&data.marker()) {
        println!("# reusing database {name} ({})", data.marker());
        return Ok((name, db_url, data));
    }
    println!(
        "# loading database {name}: {} events and {} upload records over {} users",
        args.records, args.records, args.users
    );
    let started = Instant::now();
    sql::recreate_database(admin, &name).await?;
    // vodhook's own migrations make the schema, so the data set is loaded into exactly its tables.
    let status = std::process::Command::new(vodhook)
        .arg("migrate")
        .env("DATABASE_URL", &db_url)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .status()
        .context("cannot run vodhook migrate")?;
    anyhow::ensure!(status.success(), "vodhook migrate failed: {status}");
    let migrated = started.elapsed();
    let phases = sql::load(admin, &name, &db_url, data.clone()).await?;
    println!();
    println!("| load phase | seconds |");
    println!("|---|---|");
    println!(
        "| create database, vodhook migrate | {:.1} |",
        migrated.as_secs_f64()
    );
    for (phase, took) in phases {
        println!("| {phase} | {:.1} |", took.as_secs_f64());
    }
    let total = started.elapsed().as_secs_f64();
    println!(
        "| total | {total:.1} ({:.0} records/s) |",
        args.records as f64 / total
    );
    println!();
    Ok((name, db_url, data))
}

async fn query_command(admin_url: &str, vodhook: &Path, args: &QueryArgs) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(admin_url)
        .await
        .context("cannot connect to --admin-url")?;
    let (name, db_url, data) = ensure_loaded(&mut admin, admin_url, vodhook, &args.data).await?;
    println!("# {}", sql::sizes(&db_url).await?);
    let server = VodhookProcess::start(vodhook, &db_url).await?;
    let rss = RssSampler::start(server.pid());
    let api = server.api();
    println!(
        "# vodhook query benchmark: {} upload records over {} users (Zipf), {} in flight, {} s per \
         query kind after 2 s of warm-up, {} CPUs",
        data.records,
        data.users,
        args.concurrency,
        args.duration,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!("| query | requests | requests/s | p50 ms | p95 ms | p99 ms | max ms | errors | rows/answer |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let duration = Duration::from_secs(args.duration);
    for (seed, phase) in [(1, query::Phase::Get), (2, query::Phase::List)] {
        let warm = Duration::from_secs(2);
        query::run_phase(&api, &data, phase, args.concurrency, warm, seed << 8).await;
        for r in query::run_phase(&api, &data, phase, args.concurrency, duration, seed).await {
            println!(
                "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.1} |",
                r.kind.label(),
                r.requests,
                r.per_second,
                r.p50,
                r.p95,
                r.p99,
                r.max,
                r.errors,
                r.rows_per_answer
            );
        }
    }
    println!();
    println!(
        "The list phase sends a second page right after each first page that has a cursor; \
         requests/s of both count over the same phase. vodhook peak RSS: {:.0} MiB (sampled \
         every 100 ms; VmHWM {:.0} MiB).",
        rss.take_peak_mib(),
        rss.lifetime_peak_mib().unwrap_or(f64::NAN)
    );
    drop(rss);
    drop(server);

    let mut rng = StdRng::seed_from_u64(3);
    let sample = sql::ExplainSample {
        file_id: Dataset::file_id(rng.gen_range(0..data.records)).to_string(),
        heavy_user: Dataset::user(1),
        drawn_user: Dataset::user(data.sample_rank(&mut rng)),
        limit: i64::from(query::PAGE_LIMIT),
    };
    for (title, lines) in sql::explain(&db_url, &sample).await? {
        println!();
        println!("## EXPLAIN (ANALYZE, BUFFERS): {title}");
        println!();
        println!("```");
        for line in lines {
            println!("{line}");
        }
        println!("```");
    }
    if args.drop {
        sql::drop_database(&mut admin, &name).await?;
        println!();
        println!("dropped database {name}");
    }
    Ok(())
}
