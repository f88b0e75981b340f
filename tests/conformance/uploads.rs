//! `UploadStore`: the upload record ingest writes and completes, and the filtered upload list.

use crate::support::{
    assert_distinct, between, collect_pages, fixture, ingest, page_limit, parse, set_media_info,
    set_source, upload, upload_body, upload_body_with, v2_upload_body, TestStore,
};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use vodhook::domain::{PageCursor, Upload, UploadFields};
use vodhook::storage::{Store, UploadFilter};

pub async fn upload_record_holds_the_new_file_upload_fields(store: TestStore) {
    let raw = fixture("v3-newfileupload-full.json");
    let fields = parse(&raw).upload.expect("the fixture makes a record");
    // The fixture sets every field, so comparing the records compares each of them.
    assert!(
        fields.media_url.is_some()
            && fields.source_type.is_some()
            && fields.source_context.is_some()
            && fields.procedure_task_id.is_some()
            && fields.review_audio_video_task_id.is_some()
            && fields.name.is_some()
            && fields.media_type.is_some()
            && fields.cover_url.is_some()
            && fields.storage_region.is_some()
            && fields.class_id.is_some()
            && fields.size_bytes.is_some()
            && fields.duration_seconds.is_some()
            && fields.media_created_at.is_some(),
        "{fields:?}"
    );

    let outcome = ingest(&store, &raw).await;
    let stored = crate::support::event(&store, outcome.event_id).await;
    let record = upload(&store, fields.file_id.as_str()).await;
    assert_eq!(record.fields, fields);
    assert_eq!(record.first_event_id, outcome.event_id);
    assert_eq!(record.received_at, stored.received_at);
    assert_eq!(record.updated_at, record.received_at);

    // Events about no file's record make none.
    ingest(&store, &fixture("v3-editmediacomplete.json")).await;
    ingest(&store, &fixture("v3-unknown-future-event.json")).await;
    for file_id in ["24961954183381008", "999"] {
        assert!(
            store
                .get_upload(file_id)
                .await
                .expect("get_upload")
                .is_none(),
            "{file_id}"
        );
    }
}

/// A first copy without procedure, review, cover, context and metadata.
fn sparse_body(file_id: &str) -> Vec<u8> {
    upload_body_with(file_id, |body| {
        let task = &mut body["FileUploadEvent"];
        task["ProcedureTaskId"] = json!("");
        task["ReviewAudioVideoTaskId"] = json!(null);
        if let Value::Object(task) = task {
            task.remove("MetaData");
        }
        set_media_info(body, "CoverUrl", json!(""));
        set_source(body, "Upload", "");
    })
}

/// The record a repeat leaves: each field as first set, gaps filled from the repeat, and v2's
/// ClientUpload/ServerUpload in place of v3's `Upload`.
fn filled(first: &UploadFields, repeat: &UploadFields) -> UploadFields {
    fn or<T: Clone>(a: &Option<T>, b: &Option<T>) -> Option<T> {
        a.clone().or_else(|| b.clone())
    }
    let source_type = match (first.source_type.as_deref(), repeat.source_type.as_deref()) {
        (Some("Upload"), Some(v2 @ ("ClientUpload" | "ServerUpload"))) => Some(v2.to_owned()),
        _ => or(&first.source_type, &repeat.source_type),
    };
    UploadFields {
        file_id: first.file_id.clone(),
        media_url: or(&first.media_url, &repeat.media_url),
        source_type,
        source_context: or(&first.source_context, &repeat.source_context),
        procedure_task_id: or(&first.procedure_task_id, &repeat.procedure_task_id),
        review_audio_video_task_id: or(
            &first.review_audio_video_task_id,
            &repeat.review_audio_video_task_id,
        ),
        name: or(&first.name, &repeat.name),
        media_type: or(&first.media_type, &repeat.media_type),
        cover_url: or(&first.cover_url, &repeat.cover_url),
        storage_region: or(&first.storage_region, &repeat.storage_region),
        class_id: or(&first.class_id, &repeat.class_id),
        size_bytes: or(&first.size_bytes, &repeat.size_bytes),
        duration_seconds: or(&first.duration_seconds, &repeat.duration_seconds),
        media_created_at: or(&first.media_created_at, &repeat.media_created_at),
    }
}

fn fields_of(raw: &[u8]) -> UploadFields {
    parse(raw).upload.expect("a NewFileUpload with a FileId")
}

pub async fn repeat_fills_only_missing_fields(store: TestStore) {
    let sparse = sparse_body("3001");
    let richer = upload_body_with("3001", |body| {
        set_media_info(body, "MediaUrl", json!("https://example.com/other.mp4"));
        set_media_info(body, "Name", json!("renamed"));
        set_media_info(body, "ClassId", json!(7));
        set_media_info(body, "StorageRegion", json!("ap-tokyo"));
    });
    let (sparse_fields, richer_fields) = (fields_of(&sparse), fields_of(&richer));
    assert!(sparse_fields.procedure_task_id.is_none() && sparse_fields.size_bytes.is_none());
    assert_ne!(sparse_fields.media_url, richer_fields.media_url);

    let first = ingest(&store, &sparse).await;
    let before = upload(&store, "3001").await;
    assert_eq!(before.fields, sparse_fields);

    let repeat = ingest(&store, &richer).await;
    assert!(repeat.duplicate);
    let after = upload(&store, "3001").await;
    assert_eq!(after.fields, filled(&sparse_fields, &richer_fields));
    assert_eq!(
        after.fields.media_url, sparse_fields.media_url,
        "a set field is kept"
    );
    assert_eq!(after.fields.name, sparse_fields.name);
    assert_eq!(after.fields.class_id, sparse_fields.class_id);
    assert_eq!(after.fields.storage_region, sparse_fields.storage_region);
    assert_eq!(
        after.fields.procedure_task_id, richer_fields.procedure_task_id,
        "a gap is filled"
    );
    assert_eq!(after.fields.size_bytes, richer_fields.size_bytes);
    assert_eq!(after.fields.cover_url, richer_fields.cover_url);
    assert_eq!(after.fields.source_context, richer_fields.source_context);
    assert_eq!(after.first_event_id, first.event_id);
    assert_eq!(after.received_at, before.received_at);
    assert!(
        after.updated_at > before.updated_at,
        "filling a gap is a change"
    );
}

pub async fn v2_source_type_replaces_v3_upload_whichever_came_first(store: TestStore) {
    // (FileId, first copy, later copy, the source type that stays)
    let cases = [
        (
            "4001",
            upload_body("4001"),
            v2_upload_body("4001", "ClientUpload"),
            "ClientUpload",
        ),
        (
            "4002",
            v2_upload_body("4002", "ServerUpload"),
            upload_body("4002"),
            "ServerUpload",
        ),
        (
            "4003",
            upload_body("4003"),
            v2_upload_body("4003", "Record"),
            "Upload",
        ),
    ];
    for (file_id, first, later, expected) in cases {
        ingest(&store, &first).await;
        let before = upload(&store, file_id).await;
        assert!(ingest(&store, &later).await.duplicate, "{file_id}");
        let after = upload(&store, file_id).await;
        assert_eq!(
            after.fields.source_type.as_deref(),
            Some(expected),
            "{file_id}"
        );
        assert_eq!(
            after.fields,
            filled(&fields_of(&first), &fields_of(&later)),
            "{file_id}"
        );
        assert_eq!(
            after.updated_at > before.updated_at,
            after.fields != before.fields,
            "{file_id}: updated_at moves exactly when the record changed"
        );
    }
    assert_ne!(
        upload(&store, "4001").await.updated_at,
        upload(&store, "4001").await.received_at,
        "ClientUpload replacing Upload is a change"
    );
}

pub async fn updated_at_moves_only_when_something_changes(store: TestStore) {
    let full = upload_body("5001");
    ingest(&store, &full).await;
    let original = upload(&store, "5001").await;
    assert_eq!(original.updated_at, original.received_at);

    // Repeats that add nothing: the same bytes, a copy with fewer fields, a v2 copy whose
    // source type does not replace `Upload`.
    for repeat in [
        full.clone(),
        sparse_body("5001"),
        v2_upload_body("5001", "Record"),
    ] {
        assert!(ingest(&store, &repeat).await.duplicate);
        assert_eq!(upload(&store, "5001").await, original, "nothing changed");
    }

    // A repeat that fills a gap.
    ingest(&store, &sparse_body("5002")).await;
    let sparse = upload(&store, "5002").await;
    ingest(&store, &upload_body("5002")).await;
    let completed = upload(&store, "5002").await;
    assert_ne!(completed.fields, sparse.fields);
    assert!(completed.updated_at > sparse.updated_at);
    assert_eq!(completed.received_at, sparse.received_at);
}

pub async fn long_source_contexts_are_stored_and_filterable(store: TestStore) {
    // Two 300-character contexts that share their first 256 characters, and one of 3000
    // characters (9000 bytes of UTF-8).
    let long_a = format!("{}{}", "t".repeat(256), "-a".repeat(22));
    let long_b = format!("{}{}", "t".repeat(256), "-b".repeat(22));
    let longest = "上下文".repeat(1000);
    assert_eq!(long_a.chars().count(), 300);
    assert_eq!(longest.chars().count(), 3000);
    let cases = [("6001", &long_a), ("6002", &long_b), ("6003", &longest)];
    for (file_id, context) in cases {
        let body = upload_body_with(file_id, |b| set_source(b, "Upload", context));
        assert!(!ingest(&store, &body).await.duplicate);
    }
    ingest(
        &store,
        &upload_body_with("6004", |b| set_source(b, "Upload", "short")),
    )
    .await;

    for (file_id, context) in cases {
        assert_eq!(
            upload(&store, file_id)
                .await
                .fields
                .source_context
                .as_deref(),
            Some(context.as_str())
        );
        let filter = UploadFilter {
            source_context: Some(context.clone()),
            ..UploadFilter::default()
        };
        assert_eq!(file_ids(&all_uploads(&store, &filter).await), [file_id]);
    }
    let prefix_only = UploadFilter {
        source_context: Some("t".repeat(256)),
        ..UploadFilter::default()
    };
    assert!(
        all_uploads(&store, &prefix_only).await.is_empty(),
        "the whole value must match"
    );
}

/// An upload made for the filter tests.
struct Row {
    file_id: &'static str,
    context: &'static str,
    source_type: &'static str,
    task: &'static str,
    region: &'static str,
}

const ROWS: [Row; 6] = [
    row("7001", "tenant-a", "Upload", "task-1", "ap-singapore"),
    row("7002", "tenant-a", "Record", "task-2", "ap-guangzhou"),
    row("7003", "tenant-b", "Upload", "task-1", "ap-guangzhou"),
    row("7004", "tenant-b", "Record", "task-3", "ap-singapore"),
    row("7005", "tenant-a", "Upload", "task-3", "ap-guangzhou"),
    row("7006", "tenant-c", "Record", "", "ap-singapore"),
];

const fn row(
    file_id: &'static str,
    context: &'static str,
    source_type: &'static str,
    task: &'static str,
    region: &'static str,
) -> Row {
    Row {
        file_id,
        context,
        source_type,
        task,
        region,
    }
}

fn row_body(row: &Row) -> Vec<u8> {
    upload_body_with(row.file_id, |body| {
        set_source(body, row.source_type, row.context);
        body["FileUploadEvent"]["ProcedureTaskId"] = json!(row.task);
        set_media_info(body, "StorageRegion", json!(row.region));
    })
}

/// Whether `filter` selects `row`, received at `at` (no bound equals a receive time).
fn selects(filter: &UploadFilter, row: &Row, at: DateTime<Utc>) -> bool {
    let equal = |wanted: &Option<String>, value: &str| {
        wanted
            .as_deref()
            .is_none_or(|w| !value.is_empty() && w == value)
    };
    equal(&filter.source_context, row.context)
        && equal(&filter.source_type, row.source_type)
        && equal(&filter.procedure_task_id, row.task)
        && equal(&filter.storage_region, row.region)
        && filter.received_after.is_none_or(|t| at > t)
        && filter.received_before.is_none_or(|t| at < t)
}

pub async fn uploads_list_filters_each_and_combined(store: TestStore) {
    let mut received = Vec::new();
    for row in &ROWS {
        let outcome = ingest(&store, &row_body(row)).await;
        assert!(!outcome.duplicate);
        received.push(upload(&store, row.file_id).await.received_at);
    }
    let after_second = between(received[1], received[2]);
    let before_fifth = between(received[3], received[4]);
    let text = |s: &str| Some(s.to_owned());
    let filters = [
        UploadFilter {
            source_context: text("tenant-a"),
            ..Default::default()
        },
        UploadFilter {
            source_type: text("Record"),
            ..Default::default()
        },
        UploadFilter {
            procedure_task_id: text("task-1"),
            ..Default::default()
        },
        UploadFilter {
            storage_region: text("ap-guangzhou"),
            ..Default::default()
        },
        UploadFilter {
            received_after: Some(after_second),
            ..Default::default()
        },
        UploadFilter {
            received_before: Some(before_fifth),
            ..Default::default()
        },
        UploadFilter {
            received_after: Some(after_second),
            received_before: Some(before_fifth),
            ..Default::default()
        },
        UploadFilter {
            source_context: text("tenant-a"),
            storage_region: text("ap-guangzhou"),
            ..Default::default()
        },
        UploadFilter {
            source_type: text("Upload"),
            procedure_task_id: text("task-3"),
            ..Default::default()
        },
        UploadFilter {
            source_context: text("tenant-b"),
            received_after: Some(after_second),
            received_before: Some(before_fifth),
            ..Default::default()
        },
        UploadFilter {
            source_type: text("Record"),
            storage_region: text("ap-singapore"),
            received_after: Some(after_second),
            ..Default::default()
        },
    ];
    for filter in &filters {
        let expected: Vec<&str> = ROWS
            .iter()
            .zip(&received)
            .rev()
            .filter(|(row, at)| selects(filter, row, **at))
            .map(|(row, _)| row.file_id)
            .collect();
        assert!(
            !expected.is_empty() && expected.len() < ROWS.len(),
            "{filter:?} should select some rows, not all"
        );
        let everything = store
            .list_uploads(filter, None, page_limit(500))
            .await
            .expect("list_uploads");
        assert_eq!(file_ids(&everything.data), expected, "{filter:?}");
        assert_eq!(everything.next_cursor, None);
        assert_eq!(
            file_ids(&all_uploads(&store, filter).await),
            expected,
            "{filter:?} in pages"
        );
    }

    let no_match = [
        UploadFilter {
            source_context: text("tenant-z"),
            ..Default::default()
        },
        UploadFilter {
            source_context: text("tenant-c"),
            storage_region: text("ap-guangzhou"),
            ..Default::default()
        },
    ];
    for filter in &no_match {
        assert!(all_uploads(&store, filter).await.is_empty(), "{filter:?}");
    }
}

pub async fn uploads_list_newest_first_in_pages_without_gaps(store: TestStore) {
    let sent: Vec<String> = (0..7).map(|i| format!("800{i}")).collect();
    for file_id in &sent {
        ingest(&store, &upload_body(file_id)).await;
    }
    let newest_first: Vec<&str> = sent.iter().rev().map(String::as_str).collect();

    let everything = store
        .list_uploads(&UploadFilter::default(), None, page_limit(500))
        .await
        .expect("list_uploads");
    assert_eq!(file_ids(&everything.data), newest_first);
    for pair in everything.data.windows(2) {
        assert!(pair[0].received_at > pair[1].received_at, "newest first");
    }

    // Pages of 3, with an upload arriving between the first and second page.
    let (first, cursor) = upload_page(&store, None, 3).await;
    assert_eq!(file_ids(&first), newest_first[..3]);
    ingest(&store, &upload_body("8100")).await;
    let (second, cursor) = upload_page(&store, cursor.as_deref(), 3).await;
    assert_eq!(file_ids(&second), newest_first[3..6]);
    let (third, cursor) = upload_page(&store, cursor.as_deref(), 3).await;
    assert_eq!(file_ids(&third), newest_first[6..]);
    assert_eq!(cursor, None, "the last page has no cursor");

    let all = all_uploads(&store, &UploadFilter::default()).await;
    let ids = file_ids(&all);
    assert_distinct(&ids);
    assert_eq!(ids[0], "8100");
    assert_eq!(ids[1..], newest_first[..]);
}

/// One page of uploads after `cursor` (a `next_cursor`): the uploads and the next cursor.
async fn upload_page(
    store: &Store,
    cursor: Option<&str>,
    limit: u32,
) -> (Vec<Upload>, Option<String>) {
    let cursor = cursor.map(|c| PageCursor::decode(c).expect("a cursor"));
    let page = store
        .list_uploads(&UploadFilter::default(), cursor.as_ref(), page_limit(limit))
        .await
        .expect("list_uploads");
    (page.data, page.next_cursor)
}

/// Every upload `filter` selects, in pages of 2.
async fn all_uploads(store: &Store, filter: &UploadFilter) -> Vec<Upload> {
    collect_pages(2, async |cursor, limit| {
        let cursor = cursor.map(|c| PageCursor::decode(&c).expect("a cursor"));
        store
            .list_uploads(filter, cursor.as_ref(), limit)
            .await
            .expect("list_uploads")
    })
    .await
}

fn file_ids(uploads: &[Upload]) -> Vec<&str> {
    uploads.iter().map(|u| u.fields.file_id.as_str()).collect()
}
