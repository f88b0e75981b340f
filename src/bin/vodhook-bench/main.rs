//! `vodhook-bench`: benchmarks of a real `vodhook serve`. `ingest` measures throughput and ack
//! latency against a baseline of single-row inserts into the same store (Postgres or SQLite),
//! alternated in one run; `fanout` measures delivery lag to HTTP subscribers at fixed input rates.

mod fanout;
mod load;

use anyhow::Context;
use clap::Parser;
use load::Measurement;
use sqlx::{Connection, PgConnection};
use std::path::PathBuf;
use std::time::Duration;

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
    /// Concurrency levels (in-flight requests), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "4,64")]
    concurrency: Vec<usize>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Alternations of baseline and vodhook per concurrency level.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
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

    if let Bench::Ingest(args) = &cli.bench {
        if args.store == StoreKind::Sqlite {
            let dir = std::env::temp_dir().join(format!("vodhook-bench-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let db_url = format!("sqlite://{}", dir.join("vodhook.db").display());
            let baseline = load::Baseline::sqlite(&dir.join("baseline.db")).await?;
            let result = run(args, &vodhook, &db_url, baseline).await;
            let _ = std::fs::remove_dir_all(&dir);
            return result;
        }
    }
    let bench_db = format!("vodhook_bench_{}", std::process::id());
    let mut admin = PgConnection::connect(&cli.admin_url)
        .await
        .context("cannot connect to --admin-url")?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {bench_db} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {bench_db}"))
        .execute(&mut admin)
        .await?;
    let db_url = match cli.admin_url.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{bench_db}"),
        None => anyhow::bail!("--admin-url must end in /<database>"),
    };

    let result = match &cli.bench {
        Bench::Ingest(args) => {
            let connections = args.concurrency.iter().copied().max().unwrap_or(1);
            let baseline = load::Baseline::postgres(&db_url, connections).await?;
            run(args, &vodhook, &db_url, baseline).await
        }
        Bench::Fanout(args) => run_fanout(args, &vodhook, &db_url).await,
    };
    sqlx::query(&format!("DROP DATABASE IF EXISTS {bench_db} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    result
}

async fn run(
    args: &Args,
    vodhook: &std::path::Path,
    db_url: &str,
    baseline: load::Baseline,
) -> anyhow::Result<()> {
    let server = load::VodhookProcess::start(vodhook, db_url).await?;
    let duration = Duration::from_secs(args.duration);
    println!(
        "# vodhook ingest benchmark on {:?}: {} s per measurement, {} rounds, body ~{} bytes, {} CPUs",
        args.store,
        args.duration,
        args.rounds,
        load::sample_body_len(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!("| C | baseline events/s | p50 ms | p95 ms | p99 ms | vodhook events/s | p50 ms | p95 ms | p99 ms | errors | ratio |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &concurrency in &args.concurrency {
        // Warm both paths (connections, caches) before measuring.
        load::measure(&baseline.target(), concurrency, Duration::from_secs(1)).await;
        load::measure(&server.target(), concurrency, Duration::from_secs(1)).await;
        let mut base = Measurement::default();
        let mut ours = Measurement::default();
        for _ in 0..args.rounds {
            base.merge(load::measure(&baseline.target(), concurrency, duration).await);
            ours.merge(load::measure(&server.target(), concurrency, duration).await);
        }
        let (b, v) = (base.summary(), ours.summary());
        println!(
            "| {concurrency} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.2} |",
            b.per_second, b.p50, b.p95, b.p99, v.per_second, v.p50, v.p95, v.p99, v.errors,
            v.per_second / b.per_second.max(f64::MIN_POSITIVE)
        );
    }
    Ok(())
}

async fn run_fanout(
    args: &FanoutArgs,
    vodhook: &std::path::Path,
    db_url: &str,
) -> anyhow::Result<()> {
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
        let server = load::VodhookProcess::start(vodhook, db_url).await?;
        let r = fanout::measure(&server, rate, Duration::from_secs(args.duration)).await?;
        println!(
            "| {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.rate, r.sent, r.deliveries, r.missing, r.duplicates, r.p50, r.p95, r.p99, r.max
        );
        drop(server);
        let mut conn = PgConnection::connect(db_url).await?;
        sqlx::query(
            "TRUNCATE events, uploads, subscriptions, deliveries, delivery_attempts CASCADE",
        )
        .execute(&mut conn)
        .await?;
    }
    Ok(())
}
