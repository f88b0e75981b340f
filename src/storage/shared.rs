//! What both stores decide alike: the list queries (whose SQL both dialects read the same way),
//! paging, settlement outcomes and the rules of a manual retry.

use super::model::{
    DeliveryFilter, EventFilter, ReplayTarget, RetryRequest, Settle, Settlement, UploadFilter,
};
use crate::domain::{
    EventFormat, FileId, Page, PageCursor, PageLimit, StoredEvent, Subscription, Upload,
    UploadFields, UploadLifecycle,
};
use crate::tencent::parse_body;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The raw bytes are read only where no parsed copy of the body was stored (Postgres no longer
/// stores one).
pub(super) const EVENT_COLUMNS: &str = "id, event_type, format, received_at, file_id, body, \
    CASE WHEN body IS NULL THEN raw_body END AS raw_body, headers, client_addr";

pub(super) const UPLOAD_COLUMNS: &str = "file_id, media_url, source_type, source_context, \
    procedure_task_id, review_audio_video_task_id, name, media_type, cover_url, storage_region, \
    class_id, size_bytes, duration_seconds, media_created_at, processing_status, processing_task_id, \
    processing_results, session_context, processing_updated_at, deleted_at, first_event_id, \
    received_at, updated_at";

/// Every status a delivery can have.
const DELIVERY_STATUSES: [&str; 4] = ["pending", "succeeded", "dead", "paused"];

/// Reads an upload record selected as `UPLOAD_COLUMNS`, by position: looking each column up by
/// name, a hash lookup per column per row, took about 3.5 % of all CPU while list pages ran at
/// 10 M records (`perf`). The order is checked by the conformance tests, which hold what this
/// reads to the list page `upload_json` writes from the same columns (whose order its own tests
/// pin).
impl<'r, R> sqlx::FromRow<'r, R> for Upload
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    DateTime<Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    serde_json::Value: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Upload, sqlx::Error> {
        let file_id: String = row.try_get(0)?;
        let file_id = FileId::try_from(file_id).map_err(|message| sqlx::Error::ColumnDecode {
            index: "file_id".to_owned(),
            source: message.into(),
        })?;
        Ok(Upload {
            fields: UploadFields {
                file_id,
                media_url: row.try_get(1)?,
                source_type: row.try_get(2)?,
                source_context: row.try_get(3)?,
                procedure_task_id: row.try_get(4)?,
                review_audio_video_task_id: row.try_get(5)?,
                name: row.try_get(6)?,
                media_type: row.try_get(7)?,
                cover_url: row.try_get(8)?,
                storage_region: row.try_get(9)?,
                class_id: row.try_get(10)?,
                size_bytes: row.try_get(11)?,
                duration_seconds: row.try_get(12)?,
                media_created_at: row.try_get(13)?,
            },
            lifecycle: UploadLifecycle {
                processing_status: row.try_get(14)?,
                processing_task_id: row.try_get(15)?,
                processing_results: row.try_get(16)?,
                session_context: row.try_get(17)?,
                processing_updated_at: row.try_get(18)?,
                deleted_at: row.try_get(19)?,
            },
            first_event_id: row.try_get(20)?,
            received_at: row.try_get(21)?,
            updated_at: row.try_get(22)?,
        })
    }
}

pub(super) const DELIVERY_COLUMNS: &str =
    "id, event_id, subscription_id, handler, status, attempts, max_attempts, \
    next_attempt_at, last_error, last_http_status, created_at, updated_at, completed_at";

pub(super) const SUBSCRIPTION_COLUMNS: &str =
    "id, url, event_types, description, enabled, disabled_reason, created_at, updated_at";

pub(super) const ATTEMPT_COLUMNS: &str =
    "attempt, started_at, duration_ms, http_status, error, response_body";

/// Statements both dialects read alike.
pub(super) const UPDATE_SUBSCRIPTION_SQL: &str = "UPDATE subscriptions SET \
    url = COALESCE($2, url), \
    event_types = COALESCE($3, event_types), \
    description = CASE WHEN $4 THEN $5 ELSE description END, \
    enabled = COALESCE($6, enabled), \
    disabled_reason = CASE WHEN $6 IS TRUE THEN NULL ELSE disabled_reason END, \
    updated_at = $7 \
    WHERE id = $1 RETURNING id, url, event_types, description, enabled, disabled_reason, created_at, updated_at";

/// An event as both stores return it (the body, where stored, and headers are JSON in either).
#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    id: Uuid,
    event_type: String,
    format: String,
    received_at: DateTime<Utc>,
    file_id: Option<String>,
    body: Option<serde_json::Value>,
    raw_body: Option<Vec<u8>>,
    headers: serde_json::Value,
    client_addr: Option<String>,
}

impl From<EventRow> for StoredEvent {
    fn from(row: EventRow) -> StoredEvent {
        StoredEvent {
            id: row.id,
            event_type: row.event_type,
            // The column's CHECK constraint admits only known formats.
            format: EventFormat::parse(&row.format).unwrap_or(EventFormat::V3),
            received_at: row.received_at,
            file_id: row.file_id,
            // Only bodies that parsed are stored, so the raw bytes parse again.
            body: row
                .body
                .or_else(|| row.raw_body.and_then(|raw| parse_body(&raw).ok()))
                .unwrap_or(serde_json::Value::Null),
            headers: row.headers,
            client_addr: row.client_addr,
        }
    }
}

/// Text the stores keep: Postgres text cannot hold U+0000, and a subscriber's answer may contain
/// it, so both stores replace it alike.
pub(super) fn storable(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

/// A value a built statement binds.
pub(super) enum Param {
    Text(String),
    Uuid(Uuid),
    Time(DateTime<Utc>),
}

/// SQL built piece by piece with `$n` parameters, which both dialects read.
pub(super) struct Statement {
    pub sql: String,
    pub params: Vec<Param>,
}

impl Statement {
    fn new(sql: String) -> Statement {
        Statement {
            sql,
            params: Vec::new(),
        }
    }

    fn push(&mut self, sql: &str) -> &mut Statement {
        self.sql.push_str(sql);
        self
    }

    fn bind(&mut self, value: Param) -> &mut Statement {
        self.params.push(value);
        self.sql.push_str(&format!("${}", self.params.len()));
        self
    }

    /// Appends "strictly after `after`, newest first, one row more than a page" to a list
    /// ordered by `columns`: a time and a unique key, such as `"created_at, id"`.
    fn page(&mut self, columns: &str, after: Option<(DateTime<Utc>, Param)>, limit: PageLimit) {
        if let Some((at, key)) = after {
            self.push(&format!(" AND ({columns}) < ("))
                .bind(Param::Time(at))
                .push(", ")
                .bind(key)
                .push(")");
        }
        let order: Vec<String> = columns.split(", ").map(|c| format!("{c} DESC")).collect();
        // The limit is a literal, so that a generic plan knows how few rows it needs.
        self.push(&format!(
            " ORDER BY {} LIMIT {}",
            order.join(", "),
            fetch_size(limit)
        ));
    }

    fn equal(&mut self, column: &str, value: Param) {
        self.push(&format!(" AND {column} = ")).bind(value);
    }
}

pub(super) fn list_events_query(
    filter: &EventFilter,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: PageLimit,
) -> Statement {
    let mut query = Statement::new(format!("SELECT {EVENT_COLUMNS} FROM events WHERE TRUE"));
    if let Some(event_type) = &filter.event_type {
        query.equal("event_type", Param::Text(event_type.clone()));
    }
    if let Some(file_id) = &filter.file_id {
        query.equal("file_id", Param::Text(file_id.clone()));
    }
    let after = after.map(|(at, id)| (at, Param::Uuid(id)));
    query.page("received_at, id", after, limit);
    query
}

pub(super) fn event_page(rows: Vec<EventRow>, limit: PageLimit) -> Page<StoredEvent> {
    let events = rows.into_iter().map(StoredEvent::from).collect();
    into_page(events, limit, |e: &StoredEvent| PageCursor {
        at: e.received_at,
        key: e.id.to_string(),
    })
}

/// How a store compares a text column with a filter value so that its index serves it: the SQL
/// pieces with the value bound between each two.
pub(super) type EqualityClause = fn(column: &str) -> Vec<String>;

pub(super) fn list_uploads_query(
    filter: &UploadFilter,
    after: Option<&PageCursor>,
    limit: PageLimit,
    equality: EqualityClause,
) -> Statement {
    let mut query = Statement::new(format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE TRUE"));
    let equal = [
        ("source_context", &filter.source_context),
        ("source_type", &filter.source_type),
        ("procedure_task_id", &filter.procedure_task_id),
        ("storage_region", &filter.storage_region),
    ];
    for (column, value) in equal {
        if let Some(value) = value {
            for (i, piece) in equality(column).iter().enumerate() {
                if i > 0 {
                    query.bind(Param::Text(value.clone()));
                }
                query.push(piece);
            }
        }
    }
    if let Some(status) = filter.processing_status {
        // A literal (one of three fixed words), so that a cached generic plan still knows how
        // rare the status is when it picks an index.
        query.push(&format!(" AND processing_status = '{}'", status.as_str()));
    }
    match filter.deleted {
        Some(true) => query.push(" AND deleted_at IS NOT NULL"),
        Some(false) => query.push(" AND deleted_at IS NULL"),
        None => &mut query,
    };
    if let Some(t) = filter.received_after {
        query.push(" AND received_at > ").bind(Param::Time(t));
    }
    if let Some(t) = filter.received_before {
        query.push(" AND received_at < ").bind(Param::Time(t));
    }
    let after = after.map(|c| (c.at, Param::Text(c.key.clone())));
    query.page("received_at, file_id", after, limit);
    query
}

pub(super) fn upload_page(rows: Vec<Upload>, limit: PageLimit) -> Page<Upload> {
    into_page(rows, limit, |u| PageCursor {
        at: u.received_at,
        key: u.fields.file_id.to_string(),
    })
}

pub(super) fn list_subscriptions_query(
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: PageLimit,
) -> Statement {
    let mut query = Statement::new(format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE TRUE"
    ));
    let after = after.map(|(at, id)| (at, Param::Uuid(id)));
    query.page("created_at, id", after, limit);
    query
}

pub(super) fn subscription_page(rows: Vec<Subscription>, limit: PageLimit) -> Page<Subscription> {
    into_page(rows, limit, |s| PageCursor {
        at: s.created_at,
        key: s.id.to_string(),
    })
}

pub(super) fn list_deliveries_query(
    filter: &DeliveryFilter,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: PageLimit,
) -> Statement {
    let mut query = Statement::new(format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE TRUE"
    ));
    if let Some(id) = filter.subscription_id {
        query.equal("subscription_id", Param::Uuid(id));
    }
    if let Some(handler) = &filter.handler {
        query.equal("handler", Param::Text(handler.clone()));
    }
    if let Some(id) = filter.event_id {
        query.equal("event_id", Param::Uuid(id));
    }
    if let Some(status) = &filter.status {
        // A known status goes in as a literal, so that a cached generic plan can still use the
        // partial indexes on `status`.
        match DELIVERY_STATUSES.iter().find(|known| **known == status) {
            Some(known) => query.push(&format!(" AND status = '{known}'")),
            None => query
                .push(" AND status = ")
                .bind(Param::Text(status.clone())),
        };
    }
    let after = after.map(|(at, id)| (at, Param::Uuid(id)));
    query.page("created_at, id", after, limit);
    query
}

pub(super) fn delivery_page(
    rows: Vec<super::model::Delivery>,
    limit: PageLimit,
) -> Page<super::model::Delivery> {
    into_page(rows, limit, |d| PageCursor {
        at: d.created_at,
        key: d.id.to_string(),
    })
}

/// Cuts a `limit + 1` row fetch to one page; the extra row only tells that a next page exists.
/// Rows a page fetches: at least one more than its limit (that one tells whether a next page
/// exists), rounded up to one of a few sizes, so that clients asking for any limit share a few
/// prepared statements per connection instead of evicting each other's (extra rows are dropped).
fn fetch_size(limit: PageLimit) -> u32 {
    const SIZES: [u32; 8] = [11, 21, 26, 51, 101, 201, 301, 501];
    let limit = limit.get();
    SIZES
        .into_iter()
        .find(|size| *size > limit)
        .unwrap_or(limit + 1)
}

fn into_page<T>(
    mut rows: Vec<T>,
    limit: PageLimit,
    cursor_of: impl Fn(&T) -> PageCursor,
) -> Page<T> {
    let limit = limit.get() as usize;
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if has_more {
        rows.last().map(|last| cursor_of(last).encode())
    } else {
        None
    };
    Page {
        data: rows,
        next_cursor,
    }
}

/// The columns a settlement writes: status, next due time, completion time.
pub(super) struct SettledState {
    pub status: &'static str,
    pub next_attempt_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

pub(super) fn settled_state(settle: &Settle, now: DateTime<Utc>) -> SettledState {
    let (status, next_attempt_at, completed_at) = match settle.settlement {
        Settlement::Succeeded => ("succeeded", now, Some(now)),
        Settlement::RetryAt(at) => ("pending", at, None),
        Settlement::Dead | Settlement::DeadAndDisable(_) => ("dead", now, Some(now)),
    };
    SettledState {
        status,
        next_attempt_at,
        completed_at,
    }
}

/// The subscriptions to disable after a batch settled: those whose target answered 410, for
/// the deliveries whose settlement took.
pub(super) fn gone_subscriptions<'b>(
    batch: &'b [Settle],
    took: &'b [bool],
) -> impl Iterator<Item = (Uuid, &'b str)> + 'b {
    batch.iter().zip(took).filter_map(|(settle, took)| {
        match (&settle.settlement, settle.subscription_id) {
            (Settlement::DeadAndDisable(reason), Some(subscription)) if *took => {
                Some((subscription, reason.as_str()))
            }
            _ => None,
        }
    })
}

/// The delivery a manual retry found, as stored: status, attempts, lease end, and whether its
/// subscription (if any) is enabled.
pub(super) type RetryCandidate = (String, i32, Option<DateTime<Utc>>, bool);

/// Reads a manual retry's candidate; both stores lock the row as they read it.
pub(super) const RETRY_CANDIDATE_SQL: &str =
    "SELECT d.status, d.attempts, d.claimed_until, COALESCE(s.enabled, TRUE) FROM deliveries d \
     LEFT JOIN subscriptions s ON s.id = d.subscription_id WHERE d.id = $1";

/// Whether a manual retry may go ahead (`Scheduled`) or what leaves the delivery alone.
pub(super) fn retry_decision(
    candidate: Option<&RetryCandidate>,
    now: DateTime<Utc>,
) -> RetryRequest {
    let Some((status, attempts, claimed_until, subscription_enabled)) = candidate else {
        return RetryRequest::NotFound;
    };
    match status.as_str() {
        "succeeded" => RetryRequest::AlreadySucceeded,
        _ if !subscription_enabled => RetryRequest::SubscriptionDisabled,
        "pending" if *attempts == 0 || claimed_until.is_some_and(|t| t > now) => {
            RetryRequest::InFlight
        }
        _ => RetryRequest::Scheduled,
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct OpenDeliveries {
    subscription_id: Option<Uuid>,
    handler: Option<String>,
    status: String,
    count: i64,
}

impl OpenDeliveries {
    /// (target, status, count), the target being a subscription id or `handler:<name>`.
    pub(super) fn labelled(self) -> (String, String, i64) {
        let target = match (self.subscription_id, self.handler) {
            (Some(id), _) => id.to_string(),
            (None, handler) => format!("handler:{}", handler.unwrap_or_default()),
        };
        (target, self.status, self.count)
    }
}

/// A replay target as the deliveries table names it: (subscription_id, handler).
pub(super) fn target_columns(target: &ReplayTarget) -> (Option<Uuid>, Option<&str>) {
    match target {
        ReplayTarget::Subscription(id) => (Some(*id), None),
        ReplayTarget::Handler(name) => (None, Some(name.as_str())),
    }
}

/// The statuses `update_subscription` moves pending deliveries between: (from, to).
pub(super) fn pause_transition(paused: bool) -> (&'static str, &'static str) {
    if paused {
        ("pending", "paused")
    } else {
        ("paused", "pending")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_fetches_one_row_more_than_its_limit_from_a_few_sizes() {
        let fetch = |n: u64| fetch_size(PageLimit::parse(Some(n)).expect("limit"));
        assert_eq!(fetch(50), 51);
        assert_eq!(fetch(10), 11);
        assert_eq!(fetch(1), 11);
        assert_eq!(fetch(51), 101);
        assert_eq!(fetch(500), 501);
        let sizes: std::collections::BTreeSet<u32> = (1..=500).map(fetch).collect();
        assert!(sizes.len() <= 8, "{sizes:?}");
        assert!((1..=500).all(|n| fetch(n) > n as u32));
    }
}
