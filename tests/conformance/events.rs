//! `EventStore`: ingest stores each event once (dedupe), keeps its exact bytes, and lists events.

use crate::support::{
    assert_distinct, collect_pages, deleted_body, event, fixture, incoming, incoming_all, ingest,
    ingest_upload, now, parse, secs, upload_body, uuid_cursor, v2_upload_body, Backend, TestStore,
};
use uuid::Uuid;
use vodhook::domain::StoredEvent;
use vodhook::storage::{EventFilter, Store};

pub async fn new_event_is_stored_as_received(store: TestStore) {
    // The fixture file as it is: indentation, newlines and non-ASCII text must come back as sent.
    let raw = fixture("v3-newfileupload-full.json");
    let parsed = parse(&raw);
    let incoming = incoming(&parsed, &raw, &[]);
    let before = now();
    let outcome = store.ingest(&incoming).await.expect("ingest");
    let after = now();

    assert!(!outcome.duplicate);
    assert_eq!(
        outcome.event_id, incoming.id,
        "a new event gets the id it came with"
    );
    let stored = event(&store, outcome.event_id).await;
    assert_eq!(stored.id, incoming.id);
    assert_eq!(stored.event_type, parsed.event_type);
    assert_eq!(stored.format, parsed.format);
    assert_eq!(
        stored.file_id.as_deref(),
        parsed.file_id.as_ref().map(|f| f.as_str())
    );
    assert_eq!(stored.body, parsed.body);
    assert_eq!(stored.headers, incoming.headers);
    assert_eq!(stored.client_addr, incoming.client_addr);
    assert!(
        stored.received_at >= before - secs(5) && stored.received_at <= after + secs(5),
        "received at {}, ingested between {before} and {after}",
        stored.received_at
    );
    let raw_back = store
        .get_event_raw_body(outcome.event_id)
        .await
        .expect("get_event_raw_body");
    assert_eq!(raw_back.as_deref(), Some(raw.as_slice()), "the exact bytes");

    // A body with an escaped NUL: the parsed body holds U+FFFD, the raw bytes the original.
    let raw = br#"{"EventType":"HologramRenderComplete","Note":"a\u0000b"}"#.to_vec();
    let outcome = ingest(&store, &raw).await;
    let stored = event(&store, outcome.event_id).await;
    assert_eq!(stored.body["Note"], "a\u{FFFD}b");
    assert_eq!(stored.file_id, None);
    let raw_back = store
        .get_event_raw_body(outcome.event_id)
        .await
        .expect("get_event_raw_body");
    assert_eq!(raw_back, Some(raw));
}

pub async fn repeated_callback_is_a_duplicate_of_the_first(store: TestStore) {
    for raw in [
        upload_body("5285890790714697960"),
        deleted_body("24961954183381008"),
    ] {
        let parsed = parse(&raw);
        let first = store
            .ingest(&incoming(&parsed, &raw, &[]))
            .await
            .expect("ingest");
        assert!(!first.duplicate);
        let repeat = incoming(&parsed, &raw, &[]);
        let second = store.ingest(&repeat).await.expect("ingest again");
        assert!(
            second.duplicate,
            "{}: the repeat is a duplicate",
            parsed.event_type
        );
        assert_eq!(
            second.event_id, first.event_id,
            "the repeat names the stored event"
        );
        assert!(
            store
                .get_event(repeat.id)
                .await
                .expect("get_event")
                .is_none(),
            "the repeat's own id names nothing"
        );
    }
    assert_eq!(all_events(&store, &EventFilter::default()).await.len(), 2);
}

/// VOD may send one upload in both formats: NewFileUpload is deduplicated by its FileId.
pub async fn v2_and_v3_copies_of_one_upload_are_one_event(store: TestStore) {
    let v3 = fixture("v3-newfileupload-doc-example.json");
    let v2 = fixture("v2-newfileupload-doc-example.json");
    let (v3_event, v2_event) = (parse(&v3), parse(&v2));
    assert_eq!(
        v3_event.dedupe_key, v2_event.dedupe_key,
        "the fixtures are one upload"
    );
    assert_ne!(v3_event.format, v2_event.format);

    let first = ingest(&store, &v3).await;
    let second = ingest(&store, &v2).await;
    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!(second.event_id, first.event_id);

    let file_id = v3_event.file_id.as_ref().map(|f| f.to_string());
    let events = all_events(
        &store,
        &EventFilter {
            file_id: file_id.clone(),
            ..EventFilter::default()
        },
    )
    .await;
    assert_eq!(ids(&events), vec![first.event_id]);
    assert_eq!(
        events[0].format, v3_event.format,
        "the first copy is the one kept"
    );
}

pub async fn concurrent_copies_store_one_event(store: TestStore) {
    let raw = upload_body("14508071098244959037");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store: Store = store.store.clone();
            let raw = raw.clone();
            tokio::spawn(async move {
                let parsed = parse(&raw);
                store.ingest(&incoming(&parsed, &raw, &[])).await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task").expect("ingest"));
    }
    let new: Vec<_> = outcomes.iter().filter(|o| !o.duplicate).collect();
    assert_eq!(new.len(), 1, "exactly one copy is new: {outcomes:?}");
    assert!(
        outcomes.iter().all(|o| o.event_id == new[0].event_id),
        "all copies name one event: {outcomes:?}"
    );
    assert_eq!(
        ids(&all_events(&store, &EventFilter::default()).await),
        vec![new[0].event_id]
    );
}

/// Batches racing with a copy of one event (each stored in one go, where the store can) store
/// it once, their other events all the same, and every copy's outcome names the one event. The
/// copies are v3 and v2 callbacks of one upload: whichever comes first, the record ends with
/// the v2 source type and the v3 fields.
pub async fn concurrent_batches_sharing_an_event_store_it_once(store: TestStore) {
    for round in 0..4 {
        let file = format!("8{round}00");
        let copies = [upload_body(&file), v2_upload_body(&file, "ClientUpload")];
        let tasks: Vec<_> = (0..4)
            .map(|task| {
                let store: Store = store.store.clone();
                let shared = copies[task % 2].clone();
                let own = upload_body(&format!("8{round}1{task}"));
                tokio::spawn(async move {
                    let events = [parse(&shared), parse(&own)];
                    let batch = [
                        incoming(&events[0], &shared, &[]),
                        incoming(&events[1], &own, &[]),
                    ];
                    store.ingest_batch(&batch).await
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            let answers = task.await.expect("task");
            let [copy, own] = &answers[..] else {
                panic!("two outcomes: {answers:?}");
            };
            outcomes.push(copy.as_ref().expect("the copy answered").clone());
            assert!(!own.as_ref().expect("its own event stored").duplicate);
        }
        let new: Vec<_> = outcomes.iter().filter(|o| !o.duplicate).collect();
        assert_eq!(new.len(), 1, "exactly one copy is new: {outcomes:?}");
        assert!(outcomes.iter().all(|o| o.event_id == new[0].event_id));
        let record = crate::support::upload(&store, &file).await;
        assert_eq!(
            (
                record.fields.source_type.as_deref(),
                record.fields.storage_region.as_deref()
            ),
            (Some("ClientUpload"), Some("ap-singapore")),
            "both copies' fields, whichever came first"
        );
        let stored = all_events(
            &store,
            &EventFilter {
                file_id: Some(file.clone()),
                ..EventFilter::default()
            },
        )
        .await;
        assert_eq!(ids(&stored), vec![new[0].event_id], "one event for {file}");
    }
}

pub async fn unknown_event_is_none(store: TestStore) {
    ingest_upload(&store, "14508071098244959037").await;
    let unknown = Uuid::now_v7();
    assert!(store.get_event(unknown).await.expect("get_event").is_none());
    assert!(store
        .get_event_raw_body(unknown)
        .await
        .expect("get_event_raw_body")
        .is_none());
}

pub async fn events_list_filters_by_type_and_file(store: TestStore) {
    let upload_a = ingest_upload(&store, "1001").await;
    let upload_b = ingest_upload(&store, "1002").await;
    let deleted_a = ingest(&store, &deleted_body("1001")).await.event_id;
    let deleted_c = ingest(&store, &deleted_body("1003")).await.event_id;
    let procedure = ingest(&store, &fixture("v3-procedurestatechanged.json"))
        .await
        .event_id;

    let cases: [(Option<&str>, Option<&str>, Vec<Uuid>); 6] = [
        (Some("NewFileUpload"), None, vec![upload_b, upload_a]),
        (Some("FileDeleted"), None, vec![deleted_c, deleted_a]),
        (None, Some("1001"), vec![deleted_a, upload_a]),
        (Some("NewFileUpload"), Some("1001"), vec![upload_a]),
        (Some("ProcedureStateChanged"), None, vec![procedure]),
        (Some("NoSuchType"), None, vec![]),
    ];
    for (event_type, file_id, expected) in cases {
        let filter = EventFilter {
            event_type: event_type.map(str::to_owned),
            file_id: file_id.map(str::to_owned),
        };
        let events = all_events(&store, &filter).await;
        assert_eq!(ids(&events), expected, "{filter:?}");
        for e in &events {
            assert!(
                event_type.is_none_or(|t| e.event_type == t),
                "{filter:?}: {e:?}"
            );
            assert!(
                file_id.is_none_or(|f| e.file_id.as_deref() == Some(f)),
                "{filter:?}: {e:?}"
            );
        }
    }
    assert_eq!(all_events(&store, &EventFilter::default()).await.len(), 5);
}

pub async fn events_list_newest_first_in_pages_without_gaps(store: TestStore) {
    let mut sent = Vec::new();
    for i in 0..6 {
        sent.push(ingest_upload(&store, &format!("200{i}")).await);
    }
    sent.push(ingest(&store, &deleted_body("2000")).await.event_id);
    let newest_first: Vec<Uuid> = sent.iter().rev().copied().collect();

    let everything = list_page(&store, &EventFilter::default(), None, 500).await;
    assert_eq!(ids(&everything.0), newest_first, "newest first");
    assert_eq!(everything.1, None, "one page holds them all");
    for pair in everything.0.windows(2) {
        assert!(
            (pair[0].received_at, pair[0].id) > (pair[1].received_at, pair[1].id),
            "ordered by time, then id"
        );
    }

    // Pages of 3: 3 + 3 + 1, with an event arriving between the first and second page.
    let (first, cursor) = list_page(&store, &EventFilter::default(), None, 3).await;
    assert_eq!(ids(&first), newest_first[..3]);
    let cursor = cursor.expect("a next cursor after a full page");
    let newer = ingest(&store, &deleted_body("2001")).await.event_id;
    let (second, cursor) = list_page(&store, &EventFilter::default(), Some(&cursor), 3).await;
    assert_eq!(
        ids(&second),
        newest_first[3..6],
        "a newer event shifts nothing"
    );
    let cursor = cursor.expect("a next cursor after a full page");
    let (third, cursor) = list_page(&store, &EventFilter::default(), Some(&cursor), 3).await;
    assert_eq!(ids(&third), newest_first[6..]);
    assert_eq!(cursor, None, "the last page has no cursor");

    let all = all_events(&store, &EventFilter::default()).await;
    let all_ids = ids(&all);
    assert_distinct(&all_ids);
    assert_eq!(all_ids[0], newer);
    assert_eq!(all_ids[1..], newest_first[..]);

    // A filtered list that fills its pages exactly: 6 uploads in pages of 3, no empty third page.
    let uploads = EventFilter {
        event_type: Some("NewFileUpload".into()),
        ..EventFilter::default()
    };
    let pages = collect_pages(3, async |cursor, limit| {
        store
            .list_events(&uploads, cursor.as_deref().map(uuid_cursor), limit)
            .await
            .expect("list_events")
    })
    .await;
    assert_eq!(ids(&pages), newest_first[1..]);
}

/// One page of events after `cursor` (a `next_cursor`): the events and the next cursor.
async fn list_page(
    store: &Store,
    filter: &EventFilter,
    cursor: Option<&str>,
    limit: u32,
) -> (Vec<StoredEvent>, Option<String>) {
    let page = store
        .list_events(
            filter,
            cursor.map(uuid_cursor),
            crate::support::page_limit(limit),
        )
        .await
        .expect("list_events");
    (page.data, page.next_cursor)
}

async fn all_events(store: &Store, filter: &EventFilter) -> Vec<StoredEvent> {
    collect_pages(2, async |cursor, limit| {
        store
            .list_events(filter, cursor.as_deref().map(uuid_cursor), limit)
            .await
            .expect("list_events")
    })
    .await
}

fn ids(events: &[StoredEvent]) -> Vec<Uuid> {
    events.iter().map(|e| e.id).collect()
}

/// A batch is stored in one commit: each event gets its own outcome, in order, a copy inside
/// the batch is a repeat of the first, and an event that fails does not fail its batch-mates.
pub async fn a_batch_reports_each_event_and_isolates_a_failure(store: TestStore) {
    let bodies = [
        upload_body("5001"),
        upload_body("5002"),
        upload_body("5001"),
    ];
    let events: Vec<_> = bodies.iter().map(|b| parse(b)).collect();
    let mut batch = incoming_all(&events, &bodies, &["audit"]);
    // Postgres cannot store U+0000 in JSON: this event fails there (SQLite keeps it).
    let poison_raw = upload_body("5003");
    let poison_event = parse(&poison_raw);
    let mut poison = incoming(&poison_event, &poison_raw, &[]);
    poison.headers = serde_json::json!({"user-agent": "bad\u{0}agent"});
    batch.insert(1, poison);

    let outcomes = store.ingest_batch(&batch).await;
    assert_eq!(outcomes.len(), 4);
    let first = outcomes[0].as_ref().expect("5001 stored");
    let second = outcomes[2]
        .as_ref()
        .expect("5002 stored despite a failing batch-mate");
    let copy = outcomes[3].as_ref().expect("the copy answered");
    assert!(!first.duplicate && !second.duplicate);
    assert!(copy.duplicate);
    assert_eq!(copy.event_id, first.event_id);
    match store.backend {
        Backend::Postgres => assert!(outcomes[1].is_err(), "{:?}", outcomes[1]),
        Backend::Sqlite => assert!(outcomes[1].is_ok(), "{:?}", outcomes[1]),
    }
    for (file_id, outcome) in [("5001", first), ("5002", second)] {
        let stored = event(&store, outcome.event_id).await;
        assert_eq!(stored.file_id.as_deref(), Some(file_id));
        assert!(store.get_upload(file_id).await.expect("get").is_some());
    }
    let audit = store
        .list_deliveries(
            &vodhook::storage::DeliveryFilter {
                handler: Some("audit".into()),
                ..Default::default()
            },
            None,
            vodhook::domain::PageLimit::parse(Some(10)).expect("limit"),
        )
        .await
        .expect("deliveries");
    assert_eq!(
        audit.data.len(),
        2,
        "one outbox row per new event, none for the copy"
    );
}

/// The common batch (distinct events, at most an upload record each) is stored in one go, with
/// each event's outcome, its record and its outbox rows, a stored repeat answered as such.
pub async fn a_batch_of_distinct_events_is_stored_with_records_and_outbox_rows(store: TestStore) {
    let subscription = crate::support::subscribe(&store, &[]).await;
    let earlier = ingest(&store, &upload_body("6000")).await;
    let bodies = [
        upload_body("6001"),
        upload_body("6002"),
        upload_body("6000"),
        fixture("v3-editmediacomplete.json"),
    ];
    let events: Vec<_> = bodies.iter().map(|b| parse(b)).collect();
    let batch: Vec<_> = events
        .iter()
        .zip(&bodies)
        .enumerate()
        .map(|(i, (event, raw))| incoming(event, raw, if i == 1 { &["audit"] } else { &[] }))
        .collect();
    let outcomes: Vec<_> = store
        .ingest_batch(&batch)
        .await
        .into_iter()
        .map(|o| o.expect("stored"))
        .collect();
    assert_eq!(outcomes.len(), 4);
    assert!(!outcomes[0].duplicate && !outcomes[1].duplicate && !outcomes[3].duplicate);
    assert!(outcomes[2].duplicate);
    assert_eq!(outcomes[2].event_id, earlier.event_id);
    assert_eq!(
        outcomes[0].event_id, batch[0].id,
        "a new event keeps its id"
    );
    for (file_id, outcome) in [("6001", &outcomes[0]), ("6002", &outcomes[1])] {
        let record = store
            .get_upload(file_id)
            .await
            .expect("get")
            .expect("record");
        assert_eq!(record.first_event_id, outcome.event_id);
        assert_eq!(
            record.fields.storage_region.as_deref(),
            Some("ap-singapore")
        );
    }
    let stored = event(&store, outcomes[3].event_id).await;
    assert_eq!(stored.event_type, "EditMediaComplete");
    let store = &store.store;
    let page = |filter| async move {
        store
            .list_deliveries(
                &filter,
                None,
                vodhook::domain::PageLimit::parse(Some(50)).expect("limit"),
            )
            .await
            .expect("deliveries")
            .data
    };
    let to_subscription = page(vodhook::storage::DeliveryFilter {
        subscription_id: Some(subscription.id),
        ..Default::default()
    })
    .await;
    assert_eq!(
        to_subscription.len(),
        4,
        "6000 earlier, and the three new events"
    );
    let to_handler = page(vodhook::storage::DeliveryFilter {
        handler: Some("audit".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(to_handler.len(), 1);
    assert_eq!(to_handler[0].event_id, outcomes[1].event_id);
}
