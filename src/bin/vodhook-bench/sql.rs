//! All SQL the benchmark runs itself, in one module, because it must bypass vodhook to measure it.
//!
//! Its databases, the single-row INSERT baseline, the COPY loader and the EXPLAIN of the API's
//! queries; vodhook's own SQL stays in src/storage.

use crate::dataset::{self, Dataset};
use anyhow::Context;
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::SeedableRng;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, PgConnection, Row};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Databases

/// The URL of database `name` on the server of `admin_url`.
pub fn database_url(admin_url: &str, name: &str) -> anyhow::Result<String> {
    match admin_url.rsplit_once('/') {
        Some((server, _)) => Ok(format!("{server}/{name}")),
        None => anyhow::bail!("--admin-url must end in /<database>"),
    }
}

pub async fn drop_database(admin: &mut PgConnection, name: &str) -> anyhow::Result<()> {
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(admin)
        .await?;
    Ok(())
}

pub async fn recreate_database(admin: &mut PgConnection, name: &str) -> anyhow::Result<()> {
    drop_database(admin, name).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(admin)
        .await?;
    Ok(())
}

/// Empties vodhook's tables between fan-out runs.
pub async fn truncate_vodhook(db_url: &str) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(db_url).await?;
    sqlx::query("TRUNCATE events, uploads, subscriptions, deliveries, delivery_attempts CASCADE")
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// The comment of database `name` (the loader's completion marker), if it exists.
pub async fn database_marker(
    admin: &mut PgConnection,
    name: &str,
) -> anyhow::Result<Option<Option<String>>> {
    Ok(sqlx::query_scalar(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
    )
    .bind(name)
    .fetch_optional(admin)
    .await?)
}

async fn set_marker(admin: &mut PgConnection, name: &str, marker: &str) -> anyhow::Result<()> {
    sqlx::query(&format!(
        "COMMENT ON DATABASE {name} IS {}",
        quote_literal(marker)
    ))
    .execute(admin)
    .await?;
    Ok(())
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

// ---------------------------------------------------------------------------------------------
// The ingest baseline

const BASELINE_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS baseline_events (dedupe_key TEXT PRIMARY KEY, body TEXT NOT NULL)";

const BASELINE_INSERT: &str =
    "INSERT INTO baseline_events (dedupe_key, body) VALUES ($1, $2) ON CONFLICT DO NOTHING";

/// Connections the Postgres baseline opens at most. Postgres allows 100 by default, and vodhook
/// (about 16: 8 for the API, 2 ingest, 2 worker, up to 4 more for the worker) and the
/// benchmark's admin connection must fit beside it.
pub const BASELINE_MAX_CONNECTIONS: usize = 90;

/// Free connection slots the baseline leaves on the server: vodhook's worker pool opens its
/// connections lazily, and a person may be watching with psql.
const CONNECTION_HEADROOM: i64 = 4;

/// The baseline: one table, one `INSERT ... ON CONFLICT DO NOTHING` transaction per event, in
/// the same database vodhook uses.
pub enum Baseline {
    /// Connections are opened for each measurement and closed after it, so that vodhook never
    /// competes with idle baseline connections for the server's connection slots.
    Postgres { url: String },
    /// One connection, as SQLite has one writer (more would only wait on its lock), with
    /// vodhook's durability settings: WAL, every commit flushed.
    Sqlite(SqlitePool),
}

/// The baseline's connections during one measurement; cheap to clone into each worker.
#[derive(Clone)]
pub enum BaselinePool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Baseline {
    pub async fn postgres(db_url: &str) -> anyhow::Result<Baseline> {
        let mut conn = PgConnection::connect(db_url).await?;
        sqlx::query(BASELINE_TABLE).execute(&mut conn).await?;
        Ok(Baseline::Postgres {
            url: db_url.to_owned(),
        })
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

    /// Opens the connections for a measurement at `concurrency`, all before the clock starts;
    /// the pool and how many connections it holds. On Postgres that is one per in-flight insert,
    /// up to `BASELINE_MAX_CONNECTIONS` and what the server has free.
    pub async fn open(&self, concurrency: usize) -> anyhow::Result<(BaselinePool, usize)> {
        let url = match self {
            Baseline::Sqlite(pool) => return Ok((BaselinePool::Sqlite(pool.clone()), 1)),
            Baseline::Postgres { url } => url,
        };
        let mut probe = PgConnection::connect(url).await?;
        // Slots left once this probe is closed; superusers may also take the reserved ones.
        let free: i64 = sqlx::query_scalar(
            "SELECT current_setting('max_connections')::int8 \
             - CASE WHEN (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN 0 \
               ELSE current_setting('superuser_reserved_connections')::int8 END \
             - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') + 1",
        )
        .fetch_one(&mut probe)
        .await?;
        probe.close().await?;
        let budget = usize::try_from(free - CONNECTION_HEADROOM)
            .unwrap_or(1)
            .max(1);
        let size = concurrency.min(BASELINE_MAX_CONNECTIONS).min(budget).max(1);
        let pool = PgPoolOptions::new()
            .max_connections(u32::try_from(size)?)
            .acquire_timeout(Duration::from_secs(10))
            .idle_timeout(None)
            .connect(url)
            .await?;
        // Open them all now: connection set-up is not part of an insert's latency.
        let held = futures_util::future::join_all((0..size).map(|_| pool.acquire())).await;
        drop(held);
        let opened = pool.size() as usize;
        Ok((BaselinePool::Postgres(pool), opened))
    }
}

impl BaselinePool {
    pub async fn insert(&self, key: String, body: String) -> Result<(), sqlx::Error> {
        match self {
            BaselinePool::Postgres(pool) => {
                sqlx::query(BASELINE_INSERT)
                    .bind(key)
                    .bind(body)
                    .execute(pool)
                    .await?;
            }
            BaselinePool::Sqlite(pool) => {
                sqlx::query(BASELINE_INSERT)
                    .bind(key)
                    .bind(body)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Gives the server its connection slots back (Postgres); SQLite keeps its one connection.
    pub async fn close(&self) {
        if let BaselinePool::Postgres(pool) = self {
            pool.close().await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The loader

/// Rows per COPY statement (each its own transaction), and bytes per message sent.
const CHUNK_ROWS: u64 = 250_000;
const SEND_BYTES: usize = 1 << 20;

/// Memory for each index build: sorts of 10 M keys stay in memory or close to it.
const MAINTENANCE_WORK_MEM: &str = "512MB";

/// The tables the loader fills.
const LOADED_TABLES: &str = "'events'::regclass, 'uploads'::regclass";

/// Fills database `name` (freshly created, vodhook's migrations applied) with `data`: drops the
/// indexes and constraints of events and uploads, COPYs both tables in chunks over two
/// connections, rebuilds exactly the dropped definitions (read from the catalog, so they match
/// the migrations), then VACUUM ANALYZE, and marks the database as complete. The time of each
/// phase.
pub async fn load(
    admin: &mut PgConnection,
    name: &str,
    db_url: &str,
    data: Arc<Dataset>,
) -> anyhow::Result<Vec<(&'static str, Duration)>> {
    let mut phases = Vec::new();
    let mut conn = PgConnection::connect(db_url).await?;
    let schema = Schema::read(&mut conn).await?;
    schema.drop_all(&mut conn).await?;
    drop(conn);

    let started = Instant::now();
    let progress = Arc::new(AtomicU64::new(0));
    let events = {
        let (url, data, progress) = (db_url.to_owned(), data.clone(), progress.clone());
        tokio::spawn(async move {
            let sql = format!("COPY events ({}) FROM STDIN", dataset::EVENT_COLUMNS);
            copy_rows(&url, &sql, &data, &progress, |d, i, _, out| {
                d.write_event(i, out)
            })
            .await
        })
    };
    let uploads = {
        let (url, data, progress) = (db_url.to_owned(), data.clone(), progress.clone());
        tokio::spawn(async move {
            let sql = format!("COPY uploads ({}) FROM STDIN", dataset::UPLOAD_COLUMNS);
            copy_rows(&url, &sql, &data, &progress, |d, i, rng, out| {
                d.write_upload(i, rng, out)
            })
            .await
        })
    };
    let (events, uploads) = (events.await??, uploads.await??);
    anyhow::ensure!(
        events == data.records && uploads == data.records,
        "COPY stored {events} events and {uploads} uploads, not {}",
        data.records
    );
    phases.push(("COPY (events and uploads in parallel)", started.elapsed()));

    let started = Instant::now();
    run_in_parallel(db_url, schema.indexes_and_keys()).await?;
    phases.push(("primary keys, unique keys and indexes", started.elapsed()));
    let started = Instant::now();
    run_in_parallel(db_url, schema.foreign_keys()).await?;
    phases.push(("foreign keys (validated)", started.elapsed()));
    let started = Instant::now();
    run_in_parallel(
        db_url,
        vec![
            "VACUUM (ANALYZE) uploads".to_owned(),
            "VACUUM (ANALYZE) events".to_owned(),
        ],
    )
    .await?;
    phases.push(("VACUUM (ANALYZE)", started.elapsed()));
    set_marker(admin, name, &data.marker()).await?;
    Ok(phases)
}

/// COPYs rows `0..records` made by `write` into one table, in chunks; the rows stored.
async fn copy_rows(
    db_url: &str,
    statement: &str,
    data: &Dataset,
    progress: &AtomicU64,
    write: impl Fn(&Dataset, u64, &mut StdRng, &mut String),
) -> anyhow::Result<u64> {
    let mut conn = PgConnection::connect(db_url).await?;
    // A crash mid-load means reloading anyway; no need to wait for each chunk's flush.
    sqlx::query("SET synchronous_commit = off")
        .execute(&mut conn)
        .await?;
    let total = data.records * 2;
    let mut stored = 0;
    let mut next = 0;
    let mut buffer = String::with_capacity(SEND_BYTES + 4096);
    while next < data.records {
        let end = (next + CHUNK_ROWS).min(data.records);
        // One generator per chunk: the rows do not depend on how the load was split or ordered.
        let mut rng = StdRng::seed_from_u64(next);
        let mut copy = conn
            .copy_in_raw(statement)
            .await
            .context("COPY failed to start")?;
        for i in next..end {
            write(data, i, &mut rng, &mut buffer);
            if buffer.len() >= SEND_BYTES {
                copy.send(buffer.as_bytes()).await?;
                buffer.clear();
            }
        }
        if !buffer.is_empty() {
            copy.send(buffer.as_bytes()).await?;
            buffer.clear();
        }
        stored += copy.finish().await?;
        let done = progress.fetch_add(end - next, Ordering::Relaxed) + (end - next);
        let step = (total / 10).max(1);
        if done / step != (done - (end - next)) / step {
            eprintln!("  copied {done} of {total} rows");
        }
        next = end;
    }
    Ok(stored)
}

/// Runs `statements` on two connections (one per core), each taking the next from the list.
async fn run_in_parallel(db_url: &str, statements: Vec<String>) -> anyhow::Result<()> {
    let queue = Arc::new(Mutex::new(statements.into_iter()));
    // Two futures on this task, not spawned tasks: the work is the server's.
    let workers = (0..2).map(|_| {
        let queue = queue.clone();
        async move {
            let mut conn = PgConnection::connect(db_url).await?;
            sqlx::raw_sql(&format!(
                "SET maintenance_work_mem = '{MAINTENANCE_WORK_MEM}'; \
                 SET max_parallel_maintenance_workers = 0"
            ))
            .execute(&mut conn)
            .await?;
            loop {
                let next = queue
                    .lock()
                    .map_err(|_| anyhow::anyhow!("a worker panicked"))?
                    .next();
                let Some(statement) = next else { break };
                let started = Instant::now();
                sqlx::raw_sql(&statement)
                    .execute(&mut conn)
                    .await
                    .with_context(|| format!("failed: {statement}"))?;
                eprintln!("  {:.1} s  {statement}", started.elapsed().as_secs_f64());
            }
            anyhow::Ok(())
        }
    });
    for result in futures_util::future::join_all(workers).await {
        result?;
    }
    Ok(())
}

/// The indexes and constraints of the loaded tables, as the catalog defines them.
struct Schema {
    /// (table, constraint name, definition) of foreign keys on or to the loaded tables.
    foreign_keys: Vec<(String, String, String)>,
    /// The same for primary keys and unique constraints of the loaded tables.
    keys: Vec<(String, String, String)>,
    /// (index name, CREATE INDEX statement) of the other indexes.
    indexes: Vec<(String, String)>,
}

impl Schema {
    async fn read(conn: &mut PgConnection) -> anyhow::Result<Schema> {
        let constraints = |kinds: &str| {
            format!(
                "SELECT conrelid::regclass::text, quote_ident(conname), pg_get_constraintdef(oid) \
                 FROM pg_constraint WHERE contype IN ({kinds}) \
                 AND (conrelid IN ({LOADED_TABLES}) OR confrelid IN ({LOADED_TABLES})) \
                 ORDER BY conrelid::regclass::text DESC, conname"
            )
        };
        let foreign_keys = sqlx::query_as(&constraints("'f'"))
            .fetch_all(&mut *conn)
            .await?;
        let keys = sqlx::query_as(&constraints("'p', 'u'"))
            .fetch_all(&mut *conn)
            .await?;
        let indexes = sqlx::query_as(&format!(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i \
             WHERE i.indrelid IN ({LOADED_TABLES}) AND NOT EXISTS (SELECT 1 FROM pg_constraint c \
             WHERE c.conindid = i.indexrelid AND c.contype IN ('p', 'u', 'x')) \
             ORDER BY i.indrelid::regclass::text DESC, 1"
        ))
        .fetch_all(&mut *conn)
        .await?;
        Ok(Schema {
            foreign_keys,
            keys,
            indexes,
        })
    }

    async fn drop_all(&self, conn: &mut PgConnection) -> anyhow::Result<()> {
        let mut statements = Vec::new();
        for (table, name, _) in self.foreign_keys.iter().chain(&self.keys) {
            statements.push(format!("ALTER TABLE {table} DROP CONSTRAINT {name}"));
        }
        for (name, _) in &self.indexes {
            statements.push(format!("DROP INDEX {name}"));
        }
        for statement in statements {
            sqlx::raw_sql(&statement).execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Keys first (uploads, the wider table, leading), then plain indexes.
    fn indexes_and_keys(&self) -> Vec<String> {
        let keys = self
            .keys
            .iter()
            .map(|(table, name, def)| format!("ALTER TABLE {table} ADD CONSTRAINT {name} {def}"));
        keys.chain(self.indexes.iter().map(|(_, def)| def.clone()))
            .collect()
    }

    fn foreign_keys(&self) -> Vec<String> {
        self.foreign_keys
            .iter()
            .map(|(table, name, def)| format!("ALTER TABLE {table} ADD CONSTRAINT {name} {def}"))
            .collect()
    }
}

/// Sizes of the loaded tables and their indexes, for the report.
pub async fn sizes(db_url: &str) -> anyhow::Result<String> {
    let mut conn = PgConnection::connect(db_url).await?;
    let row = sqlx::query(
        "SELECT pg_size_pretty(pg_database_size(current_database())), \
         pg_size_pretty(pg_table_size('events')), pg_size_pretty(pg_indexes_size('events')), \
         pg_size_pretty(pg_table_size('uploads')), pg_size_pretty(pg_indexes_size('uploads'))",
    )
    .fetch_one(&mut conn)
    .await?;
    Ok(format!(
        "database {}; events {} + indexes {}; uploads {} + indexes {}",
        row.try_get::<String, _>(0)?,
        row.try_get::<String, _>(1)?,
        row.try_get::<String, _>(2)?,
        row.try_get::<String, _>(3)?,
        row.try_get::<String, _>(4)?,
    ))
}

// ---------------------------------------------------------------------------------------------
// The API's queries, for EXPLAIN

/// Copied from `UPLOAD_COLUMNS` in src/storage/shared.rs: keep in step.
const API_UPLOAD_COLUMNS: &str = "file_id, media_url, source_type, source_context, \
    procedure_task_id, review_audio_video_task_id, name, media_type, cover_url, storage_region, \
    class_id, size_bytes, duration_seconds, media_created_at, processing_status, processing_task_id, \
    processing_results, session_context, processing_updated_at, deleted_at, first_event_id, \
    received_at, updated_at";

/// `get_upload` in src/storage/common.rs.
fn get_upload_sql() -> String {
    format!("SELECT {API_UPLOAD_COLUMNS} FROM uploads WHERE file_id = $1")
}

/// `list_uploads_query` in src/storage/shared.rs with a source_context filter, as the Postgres
/// store builds it (`prefix_equality` in src/storage/postgres/uploads.rs): the first page, or a
/// next page after a cursor, `fetch` rows at most (the limit is a literal, as the API writes it).
fn list_uploads_sql(next_page: bool, fetch: i64) -> String {
    let filter =
        "SELECT {cols} FROM uploads WHERE TRUE AND left(source_context, 256) = left($1, 256) \
                  AND source_context = $2";
    let filter = filter.replace("{cols}", API_UPLOAD_COLUMNS);
    if next_page {
        format!(
            "{filter} AND (received_at, file_id) < ($3, $4) \
             ORDER BY received_at DESC, file_id DESC LIMIT {fetch}"
        )
    } else {
        format!("{filter} ORDER BY received_at DESC, file_id DESC LIMIT {fetch}")
    }
}

/// The values one EXPLAIN run uses.
pub struct ExplainSample {
    pub file_id: String,
    /// The user with the most uploads, and a user drawn as the benchmark draws them.
    pub heavy_user: String,
    pub drawn_user: String,
    /// The page size the benchmark asks for; the query fetches one row more.
    pub limit: i64,
}

/// `EXPLAIN (ANALYZE, BUFFERS)` of the API's upload queries as prepared statements, with the
/// API connections' settings: generic plans (planned once per connection) and no JIT. The
/// heaviest user's page also with a custom plan, for comparison. (title, plan lines) each.
pub async fn explain(
    db_url: &str,
    sample: &ExplainSample,
) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let mut conn = PgConnection::connect(db_url).await?;
    let fetch = i64::from(u32::try_from(sample.limit)?) + 1;
    let heavy_uploads: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM uploads WHERE left(source_context, 256) = left($1, 256) \
         AND source_context = $1",
    )
    .bind(&sample.heavy_user)
    .fetch_one(&mut conn)
    .await?;
    let drawn_uploads: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM uploads WHERE left(source_context, 256) = left($1, 256) \
         AND source_context = $1",
    )
    .bind(&sample.drawn_user)
    .fetch_one(&mut conn)
    .await?;
    // The cursor after the heavy user's first page: its last row.
    let cursor: Option<(DateTime<Utc>, String)> = sqlx::query_as(
        "SELECT received_at, file_id FROM uploads WHERE left(source_context, 256) = left($1, 256) \
         AND source_context = $1 ORDER BY received_at DESC, file_id DESC OFFSET $2 LIMIT 1",
    )
    .bind(&sample.heavy_user)
    .bind(sample.limit - 1)
    .fetch_optional(&mut conn)
    .await?;

    sqlx::raw_sql(&format!(
        "PREPARE bench_get(text) AS {}; \
         PREPARE bench_list(text, text) AS {}; \
         PREPARE bench_list_next(text, text, timestamptz, text) AS {}; \
         SET jit = off",
        get_upload_sql(),
        list_uploads_sql(false, fetch),
        list_uploads_sql(true, fetch),
    ))
    .execute(&mut conn)
    .await?;
    let q = |s: &str| quote_literal(s);
    let (heavy, drawn) = (q(&sample.heavy_user), q(&sample.drawn_user));
    let mut runs = vec![
        (
            format!("GET /v1/uploads/{{file_id}} (file_id {})", sample.file_id),
            "force_generic_plan",
            format!("bench_get({})", q(&sample.file_id)),
        ),
        (
            format!(
                "GET /v1/uploads?source_context (first page, heaviest user: {heavy_uploads} uploads)"
            ),
            "force_generic_plan",
            format!("bench_list({heavy}, {heavy})"),
        ),
        (
            format!(
                "GET /v1/uploads?source_context (first page, drawn user: {drawn_uploads} uploads)"
            ),
            "force_generic_plan",
            format!("bench_list({drawn}, {drawn})"),
        ),
        (
            "GET /v1/uploads?source_context (first page, heaviest user), custom plan".to_owned(),
            "force_custom_plan",
            format!("bench_list({heavy}, {heavy})"),
        ),
    ];
    if let Some((at, key)) = cursor {
        runs.push((
            "GET /v1/uploads?source_context&cursor (second page, heaviest user)".to_owned(),
            "force_generic_plan",
            format!(
                "bench_list_next({heavy}, {heavy}, {}, {})",
                q(&at.to_rfc3339()),
                q(&key)
            ),
        ));
    }
    let mut plans = Vec::new();
    for (title, mode, execute) in runs {
        sqlx::raw_sql(&format!("SET plan_cache_mode = {mode}"))
            .execute(&mut conn)
            .await?;
        let rows = sqlx::raw_sql(&format!("EXPLAIN (ANALYZE, BUFFERS) EXECUTE {execute}"))
            .fetch_all(&mut conn)
            .await?;
        let lines = rows
            .iter()
            .map(|row| row.try_get::<String, _>(0))
            .collect::<Result<Vec<_>, _>>()?;
        plans.push((format!("{title} [{mode}]"), lines));
    }
    Ok(plans)
}
