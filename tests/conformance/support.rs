//! The harness: a fresh store per test on either backend, and helpers that build events the real way.

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::FutureExt;
use secrecy::SecretString;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use uuid::Uuid;
use vodhook::domain::{
    Page, PageCursor, PageLimit, SigningSecret, StoredEvent, Subscription, Upload, VodEvent,
};
use vodhook::storage::{
    Access, Attempt, AttemptRecord, ClaimedDelivery, DatabaseLocation, Delivery, DeliveryFilter,
    IncomingEvent, IngestOutcome, Settle, Settlement, Store,
};

/// Connections of each test's store: enough for the concurrency tests.
const POOL_SIZE: u32 = 8;

/// Tries each new delivery gets in these tests.
pub const MAX_ATTEMPTS: i32 = 5;

/// The lease every claim in these tests takes.
pub const LEASE: Duration = Duration::from_secs(60);

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// The store a test gets, and which backend it is; derefs to the `Store`.
#[derive(Debug, Clone)]
pub struct TestStore {
    pub store: Store,
    pub backend: Backend,
    /// The database, for a test that must hold a transaction of its own open (Postgres only).
    pub postgres_url: Option<String>,
}

impl std::ops::Deref for TestStore {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

/// Runs one conformance test on a fresh store of `backend`, then removes that store, also when
/// the test panicked (the panic is passed on).
pub async fn run<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(TestStore) -> Fut,
    Fut: Future<Output = ()>,
{
    let place = Place::create(backend).await;
    let store = match Store::open(&place.location(), POOL_SIZE, Access::Owner).await {
        Ok(store) => store,
        Err(error) => {
            place.remove().await;
            panic!("cannot open the {} store: {error:?}", backend.name());
        }
    };
    let postgres_url = match &place {
        Place::Postgres(db) => Some(db.url.clone()),
        Place::Sqlite(_) => None,
    };
    let outcome = AssertUnwindSafe(test(TestStore {
        store: store.clone(),
        backend,
        postgres_url,
    }))
    .catch_unwind()
    .await;
    store.close().await;
    drop(store);
    place.remove().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[path = "../common/test_db.rs"]
mod test_db;
use test_db::TestDb;

/// Where a test's data lives: a database of its own, or a directory of its own.
enum Place {
    Postgres(TestDb),
    Sqlite(tempfile::TempDir),
}

impl Place {
    async fn create(backend: Backend) -> Place {
        match backend {
            Backend::Postgres => Place::Postgres(TestDb::create().await),
            Backend::Sqlite => Place::Sqlite(tempfile::tempdir().expect("a temporary directory")),
        }
    }

    fn location(&self) -> DatabaseLocation {
        match self {
            Place::Postgres(db) => DatabaseLocation::Postgres(SecretString::from(db.url.clone())),
            Place::Sqlite(dir) => DatabaseLocation::Sqlite(SecretString::from(format!(
                "sqlite://{}/vodhook.db",
                dir.path().display()
            ))),
        }
    }

    async fn remove(self) {
        match self {
            Place::Postgres(db) => db.drop_now().await,
            Place::Sqlite(dir) => drop(dir),
        }
    }
}

// Times.

/// The current time at the stores' precision (microseconds), so it reads back equal.
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).expect("a representable time")
}

pub fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

/// A time strictly between two others at least 2 µs apart (for range filters whose bounds
/// should not matter).
pub fn between(earlier: DateTime<Utc>, later: DateTime<Utc>) -> DateTime<Utc> {
    assert!(
        later - earlier >= TimeDelta::microseconds(2),
        "{earlier} and {later} are too close to put a time between them"
    );
    earlier + (later - earlier) / 2
}

// Callback bodies, from the fixtures.

pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/vod/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Parses a body with the crate's callback parser, as the callback route does.
pub fn parse(raw: &[u8]) -> VodEvent {
    vodhook::tencent::parse_callback(raw).unwrap_or_else(|e| panic!("not a callback: {e}"))
}

/// The full v3 NewFileUpload fixture for another file, changed further by `edit`.
pub fn upload_body_with(file_id: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut body = fixture_json("v3-newfileupload-full.json");
    body["FileUploadEvent"]["FileId"] = json!(file_id);
    edit(&mut body);
    serde_json::to_vec(&body).expect("serialise")
}

/// The full v3 NewFileUpload fixture for another file.
pub fn upload_body(file_id: &str) -> Vec<u8> {
    upload_body_with(file_id, |_| {})
}

/// Sets a field of a v3 NewFileUpload's `MediaBasicInfo`.
pub fn set_media_info(body: &mut Value, field: &str, value: Value) {
    body["FileUploadEvent"]["MediaBasicInfo"][field] = value;
}

/// Sets a v3 NewFileUpload's `SourceInfo`.
pub fn set_source(body: &mut Value, source_type: &str, source_context: &str) {
    body["FileUploadEvent"]["MediaBasicInfo"]["SourceInfo"] =
        json!({"SourceType": source_type, "SourceContext": source_context});
}

/// The observed v2 NewFileUpload fixture for another file and source type.
pub fn v2_upload_body(file_id: &str, source_type: &str) -> Vec<u8> {
    let mut body = fixture_json("v2-newfileupload-observed.json");
    body["data"]["fileId"] = json!(file_id);
    body["data"]["sourceType"] = json!(source_type);
    serde_json::to_vec(&body).expect("serialise")
}

/// The v3 FileDeleted fixture for another file, deleted whole.
pub fn deleted_body(file_id: &str) -> Vec<u8> {
    let mut body = fixture_json("v3-filedeleted.json");
    body["FileDeleteEvent"]["FileIdSet"] = json!([file_id]);
    body["FileDeleteEvent"]["FileDeleteResultInfo"][0]["FileId"] = json!(file_id);
    // The whole media (the fixture itself removed only transcodes).
    body["FileDeleteEvent"]["FileDeleteResultInfo"][0]["DeleteParts"] = json!([]);
    serde_json::to_vec(&body).expect("serialise")
}

// Ingest.

/// What the callback route would store for `raw`, with these handlers matching it.
pub fn incoming<'a>(event: &'a VodEvent, raw: &'a [u8], handlers: &[&str]) -> IncomingEvent<'a> {
    IncomingEvent {
        event,
        id: Uuid::now_v7(),
        raw_body: raw,
        headers: json!({"content-type": "application/json", "user-agent": "conformance/1.0"}),
        client_addr: Some("203.0.113.7".into()),
        handlers: handlers.iter().map(|h| (*h).to_owned()).collect(),
        max_attempts: MAX_ATTEMPTS,
        lease: None,
    }
}

/// A batch of `incoming` for each event parsed from `bodies`, all matching `handlers`.
pub fn incoming_all<'a>(
    events: &'a [VodEvent],
    bodies: &'a [Vec<u8>],
    handlers: &[&str],
) -> Vec<IncomingEvent<'a>> {
    events
        .iter()
        .zip(bodies)
        .map(|(event, raw)| incoming(event, raw, handlers))
        .collect()
}

pub async fn ingest_with(store: &Store, raw: &[u8], handlers: &[&str]) -> IngestOutcome {
    let event = parse(raw);
    store
        .ingest(&incoming(&event, raw, handlers))
        .await
        .expect("ingest")
}

pub async fn ingest(store: &Store, raw: &[u8]) -> IngestOutcome {
    ingest_with(store, raw, &[]).await
}

/// Ingests a new NewFileUpload (the full v3 fixture) for `file_id`; returns the event id.
pub async fn ingest_upload(store: &Store, file_id: &str) -> Uuid {
    ingest_upload_for(store, file_id, &[]).await
}

pub async fn ingest_upload_for(store: &Store, file_id: &str, handlers: &[&str]) -> Uuid {
    let outcome = ingest_with(store, &upload_body(file_id), handlers).await;
    assert!(!outcome.duplicate, "{file_id} was stored before");
    outcome.event_id
}

pub async fn event(store: &Store, id: Uuid) -> StoredEvent {
    store
        .get_event(id)
        .await
        .expect("get_event")
        .unwrap_or_else(|| panic!("event {id} is not stored"))
}

pub async fn upload(store: &Store, file_id: &str) -> Upload {
    store
        .get_upload(file_id)
        .await
        .expect("get_upload")
        .unwrap_or_else(|| panic!("no upload record for {file_id}"))
}

// Subscriptions and deliveries.

/// A new enabled subscription to a URL of its own, for `event_types` (empty: all).
pub async fn subscribe(store: &Store, event_types: &[&str]) -> Subscription {
    let url = format!("https://hooks.example.com/{}", Uuid::new_v4().simple());
    let types: Vec<String> = event_types.iter().map(|t| (*t).to_owned()).collect();
    store
        .create_subscription(
            &url,
            &types,
            None,
            SigningSecret::generate().expose(),
            now(),
        )
        .await
        .expect("create_subscription")
}

/// Claims every due delivery (up to 100) for subscriptions and `handlers`, with `LEASE`.
pub async fn claim(store: &Store, at: DateTime<Utc>, handlers: &[&str]) -> Vec<ClaimedDelivery> {
    let handlers: Vec<String> = handlers.iter().map(|h| (*h).to_owned()).collect();
    store
        .claim_due_deliveries(at, LEASE, 100, &handlers)
        .await
        .expect("claim_due_deliveries")
}

/// The claim of `subscription`'s delivery of `event` among `claims`.
pub fn claim_of(claims: &[ClaimedDelivery], event: Uuid, subscription: Uuid) -> ClaimedDelivery {
    claims
        .iter()
        .find(|c| c.event_id == event && c.subscription_id == Some(subscription))
        .cloned()
        .unwrap_or_else(|| panic!("no claim of event {event} for {subscription} in {claims:?}"))
}

pub fn attempt_record(started_at: DateTime<Utc>, http_status: Option<i32>) -> AttemptRecord {
    AttemptRecord {
        started_at,
        duration_ms: 12.5,
        http_status,
        error: http_status
            .filter(|s| *s >= 400)
            .map(|s| format!("HTTP {s}")),
        response_body: Some("ok".into()),
    }
}

/// How a worker settles `claim` (its attempt count as the fence).
pub fn settle_of(claim: &ClaimedDelivery, settlement: Settlement, at: DateTime<Utc>) -> Settle {
    let status = match settlement {
        Settlement::Succeeded => 204,
        Settlement::RetryAt(_) | Settlement::Dead => 500,
        Settlement::DeadAndDisable(_) => 410,
    };
    Settle {
        delivery_id: claim.id,
        attempts: claim.attempts,
        subscription_id: claim.subscription_id,
        attempt: attempt_record(at, Some(status)),
        settlement,
    }
}

/// Settles one claim; returns whether the settlement took.
pub async fn settle(
    store: &Store,
    claim: &ClaimedDelivery,
    settlement: Settlement,
    at: DateTime<Utc>,
) -> bool {
    let took = store
        .settle_deliveries(&[settle_of(claim, settlement, at)], at)
        .await
        .expect("settle_deliveries");
    assert_eq!(took.len(), 1, "one result per entry");
    took[0]
}

pub async fn delivery(store: &Store, id: Uuid) -> (Delivery, Vec<Attempt>) {
    store
        .get_delivery(id)
        .await
        .expect("get_delivery")
        .unwrap_or_else(|| panic!("no delivery {id}"))
}

/// Every delivery `filter` selects, in the store's order.
pub async fn deliveries(store: &Store, filter: DeliveryFilter) -> Vec<Delivery> {
    collect_pages(50, async |cursor, limit| {
        store
            .list_deliveries(&filter, cursor.as_deref().map(uuid_cursor), limit)
            .await
            .expect("list_deliveries")
    })
    .await
}

pub fn by_subscription(id: Uuid) -> DeliveryFilter {
    DeliveryFilter {
        subscription_id: Some(id),
        ..DeliveryFilter::default()
    }
}

pub fn by_event(id: Uuid) -> DeliveryFilter {
    DeliveryFilter {
        event_id: Some(id),
        ..DeliveryFilter::default()
    }
}

// Pages.

pub fn page_limit(n: u32) -> PageLimit {
    PageLimit::parse(Some(u64::from(n))).expect("a valid page size")
}

/// A `next_cursor` whose key is a UUID, decoded as the routes decode it.
pub fn uuid_cursor(raw: &str) -> (DateTime<Utc>, Uuid) {
    let cursor = PageCursor::decode(raw).unwrap_or_else(|| panic!("{raw:?} is not a cursor"));
    let key = Uuid::parse_str(&cursor.key).unwrap_or_else(|e| panic!("cursor key: {e}"));
    (cursor.at, key)
}

/// Every item of a list, fetched page by page with `limit`: each page but the last is full and
/// has a cursor, the last has none, and no page is empty unless the list is.
pub async fn collect_pages<T>(
    limit: u32,
    mut fetch: impl AsyncFnMut(Option<String>, PageLimit) -> Page<T>,
) -> Vec<T> {
    let mut items = Vec::new();
    let mut cursor = None;
    for _ in 0..1000 {
        let page = fetch(cursor.take(), page_limit(limit)).await;
        assert!(
            page.data.len() <= limit as usize,
            "a page holds at most limit items"
        );
        let count = page.data.len();
        items.extend(page.data);
        match page.next_cursor {
            Some(next) => {
                assert_eq!(count, limit as usize, "a page with a next cursor is full");
                cursor = Some(next);
            }
            None => {
                assert!(count > 0 || items.is_empty(), "an empty last page");
                return items;
            }
        }
    }
    panic!("more than 1000 pages");
}

/// Asserts that `ids` has no repeats.
pub fn assert_distinct<T: std::hash::Hash + Eq + std::fmt::Debug>(ids: &[T]) {
    let set: HashSet<&T> = ids.iter().collect();
    assert_eq!(set.len(), ids.len(), "repeated items in {ids:?}");
}
