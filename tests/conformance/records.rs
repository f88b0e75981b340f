//! Upload records follow their files: task progress (ProcedureStateChanged, in any order), deletion
//! and pulls (PullComplete), in both formats.

use crate::support::{deleted_body, fixture, ingest, upload, upload_body, TestStore};
use serde_json::{json, Value};
use vodhook::storage::{Store, UploadFilter};

const FILE: &str = "5285890784246869930";
const TASK: &str = "1256768367-Procedure-475b7237438a39560b9879a4556cb177t1";

/// The v3 ProcedureStateChanged fixture with its task state, and the states of its two sub-tasks
/// (transcode, cover), changed; `None` leaves a sub-task's state as in the fixture (SUCCESS).
fn procedure_body(
    file_id: &str,
    task_id: &str,
    status: &str,
    transcode: Option<&str>,
    cover: Option<&str>,
) -> Vec<u8> {
    let mut body: Value =
        serde_json::from_slice(&fixture("v3-procedurestatechanged.json")).expect("json");
    let event = &mut body["ProcedureStateChangeEvent"];
    event["FileId"] = json!(file_id);
    event["TaskId"] = json!(task_id);
    event["Status"] = json!(status);
    if let Some(state) = transcode {
        event["MediaProcessResultSet"][0]["TranscodeTask"]["Status"] = json!(state);
    }
    if let Some(state) = cover {
        event["MediaProcessResultSet"][1]["CoverBySnapshotTask"]["Status"] = json!(state);
    }
    serde_json::to_vec(&body).expect("json")
}

fn processing_of(record: &vodhook::domain::Upload) -> (Option<&str>, Option<&str>) {
    (
        record.lifecycle.processing_status.as_deref(),
        record.lifecycle.processing_task_id.as_deref(),
    )
}

async fn file_ids(store: &Store, filter: UploadFilter) -> Vec<String> {
    let page = store
        .list_uploads(
            &filter,
            None,
            vodhook::domain::PageLimit::parse(Some(500)).expect("limit"),
        )
        .await
        .expect("list");
    let mut ids: Vec<String> = page
        .data
        .iter()
        .map(|u| u.fields.file_id.to_string())
        .collect();
    ids.sort();
    ids
}

pub async fn processing_follows_the_task_to_its_end(store: TestStore) {
    ingest(&store, &upload_body(FILE)).await;
    let uploaded = upload(&store, FILE).await;
    assert_eq!(uploaded.lifecycle.processing_status, None);

    ingest(
        &store,
        &procedure_body(
            FILE,
            TASK,
            "PROCESSING",
            Some("PROCESSING"),
            Some("PROCESSING"),
        ),
    )
    .await;
    let processing = upload(&store, FILE).await;
    assert_eq!(processing_of(&processing), (Some("processing"), Some(TASK)));
    assert!(processing.lifecycle.processing_updated_at.is_some());
    assert_eq!(
        processing.fields, uploaded.fields,
        "the upload's fields stay"
    );

    ingest(&store, &fixture("v3-procedurestatechanged.json")).await;
    let finished = upload(&store, FILE).await;
    assert_eq!(processing_of(&finished), (Some("finished"), Some(TASK)));
    assert_eq!(
        finished.lifecycle.session_context.as_deref(),
        Some("{\"uploadId\":\"u_42\"}")
    );
    let results = finished
        .lifecycle
        .processing_results
        .as_ref()
        .expect("results");
    assert_eq!(
        results["outputs"][0]["url"],
        "https://1256768367.vod2.myqcloud.com/xxx/xxx/v.f20.mp4"
    );
    assert_eq!(results["outputs"][0]["size"], 4189073);
    assert_eq!(results["errors"], json!([]));
    assert!(finished.updated_at > uploaded.updated_at);
}

pub async fn an_older_state_arriving_late_never_overwrites_a_newer_one(store: TestStore) {
    ingest(&store, &upload_body(FILE)).await;
    // TasksNotifyMode=Change: one event per sub-task change, delivered in reverse order.
    let one_done = procedure_body(
        FILE,
        TASK,
        "PROCESSING",
        Some("SUCCESS"),
        Some("PROCESSING"),
    );
    let two_done = procedure_body(FILE, TASK, "PROCESSING", Some("SUCCESS"), Some("SUCCESS"));
    let finished = fixture("v3-procedurestatechanged.json");
    ingest(&store, &finished).await;
    let after_finish = upload(&store, FILE).await;
    ingest(&store, &two_done).await;
    ingest(&store, &one_done).await;
    let record = upload(&store, FILE).await;
    assert_eq!(processing_of(&record), (Some("finished"), Some(TASK)));
    assert_eq!(
        record.lifecycle, after_finish.lifecycle,
        "late states changed nothing"
    );
    assert_eq!(record.updated_at, after_finish.updated_at);

    // Within PROCESSING, more ended sub-tasks win whichever came first.
    let other = "5285890784246869931";
    ingest(
        &store,
        &procedure_body(other, TASK, "PROCESSING", Some("SUCCESS"), Some("FAIL")),
    )
    .await;
    ingest(
        &store,
        &procedure_body(
            other,
            TASK,
            "PROCESSING",
            Some("SUCCESS"),
            Some("PROCESSING"),
        ),
    )
    .await;
    let partial = upload(&store, other).await;
    assert_eq!(
        partial.lifecycle.processing_status.as_deref(),
        Some("processing")
    );
    let errors = &partial
        .lifecycle
        .processing_results
        .as_ref()
        .expect("results")["errors"];
    assert_eq!(
        errors[0]["type"], "CoverBySnapshot",
        "the state with two ended sub-tasks stays"
    );

    // A repeat is a duplicate and changes nothing.
    let repeat = ingest(&store, &finished).await;
    assert!(repeat.duplicate);
    assert_eq!(
        upload(&store, FILE).await.updated_at,
        after_finish.updated_at
    );
}

pub async fn a_new_task_replaces_the_state_of_the_last_one(store: TestStore) {
    ingest(&store, &upload_body(FILE)).await;
    ingest(&store, &fixture("v3-procedurestatechanged.json")).await;
    let next_task = "1256768367-Procedure-0000000000000000000000000000000t2";
    ingest(
        &store,
        &procedure_body(
            FILE,
            next_task,
            "PROCESSING",
            Some("PROCESSING"),
            Some("PROCESSING"),
        ),
    )
    .await;
    assert_eq!(
        processing_of(&upload(&store, FILE).await),
        (Some("processing"), Some(next_task))
    );
    ingest(
        &store,
        &procedure_body(FILE, next_task, "FINISH", Some("FAIL"), None),
    )
    .await;
    let failed = upload(&store, FILE).await;
    assert_eq!(processing_of(&failed), (Some("failed"), Some(next_task)));
    let results = failed
        .lifecycle
        .processing_results
        .clone()
        .expect("results");
    assert_eq!(results["errors"][0]["type"], "Transcode");
    assert_eq!(
        results["outputs"],
        json!([]),
        "a failed transcode has no output"
    );

    // Late events of the older task change nothing: a repeat of its last state, or a state of
    // it never seen before (TasksNotifyMode=Change sends several).
    let repeat = ingest(&store, &fixture("v3-procedurestatechanged.json")).await;
    assert!(repeat.duplicate);
    let late = procedure_body(
        FILE,
        TASK,
        "PROCESSING",
        Some("SUCCESS"),
        Some("PROCESSING"),
    );
    assert!(!ingest(&store, &late).await.duplicate);
    let after = upload(&store, FILE).await;
    assert_eq!(
        after.lifecycle, failed.lifecycle,
        "still the newer task's state"
    );
    assert_eq!(after.updated_at, failed.updated_at);

    // A third task, seen for the first time now, takes over.
    let third = "1256768367-Procedure-1111111111111111111111111111111t3";
    ingest(
        &store,
        &procedure_body(
            FILE,
            third,
            "PROCESSING",
            Some("PROCESSING"),
            Some("PROCESSING"),
        ),
    )
    .await;
    assert_eq!(
        processing_of(&upload(&store, FILE).await),
        (Some("processing"), Some(third))
    );
}

pub async fn progress_that_arrives_before_the_upload_is_kept(store: TestStore) {
    ingest(&store, &fixture("v3-procedurestatechanged.json")).await;
    let early = upload(&store, FILE).await;
    assert_eq!(processing_of(&early), (Some("finished"), Some(TASK)));
    assert_eq!(
        early.fields.media_url, None,
        "the upload has not arrived yet"
    );

    ingest(&store, &upload_body(FILE)).await;
    let complete = upload(&store, FILE).await;
    assert!(
        complete.fields.media_url.is_some(),
        "the upload fills the record in"
    );
    assert_eq!(
        complete.fields.storage_region.as_deref(),
        Some("ap-singapore")
    );
    assert_eq!(
        complete.lifecycle, early.lifecycle,
        "and keeps what came early"
    );
}

pub async fn deleted_files_stay_queryable_and_filterable(store: TestStore) {
    for file in ["301", "302", "303"] {
        ingest(&store, &upload_body(file)).await;
    }
    let deletion = ingest(&store, &deleted_body("302")).await;
    let deleted = upload(&store, "302").await;
    let deleted_at = deleted.lifecycle.deleted_at.expect("deleted_at");
    assert_eq!(
        Some(deleted_at),
        store
            .get_event(deletion.event_id)
            .await
            .expect("event")
            .map(|e| e.received_at),
        "deleted when the FileDeleted arrived"
    );
    assert!(deleted.fields.media_url.is_some(), "the record is kept");
    // A repeat of the deletion keeps the first time.
    ingest(&store, &deleted_body("302")).await;
    assert_eq!(
        upload(&store, "302").await.lifecycle.deleted_at,
        Some(deleted_at)
    );

    let only = |deleted| UploadFilter {
        deleted: Some(deleted),
        ..Default::default()
    };
    assert_eq!(file_ids(&store, only(true)).await, ["302"]);
    assert_eq!(file_ids(&store, only(false)).await, ["301", "303"]);

    // A v2 FileDeleted listing several files, one of them not uploaded yet: that one's record
    // is made deleted, so its late upload cannot bring it back.
    let mut v2: Value = serde_json::from_slice(&fixture("v2-filedeleted.json")).expect("json");
    v2["data"]["fileInfo"] = json!([{"fileId": "301"}, {"fileId": "304"}]);
    ingest(&store, &serde_json::to_vec(&v2).expect("json")).await;
    ingest(&store, &upload_body("304")).await;
    let late = upload(&store, "304").await;
    assert!(late.lifecycle.deleted_at.is_some());
    assert!(late.fields.media_url.is_some());
    assert_eq!(file_ids(&store, only(true)).await, ["301", "302", "304"]);
}

pub async fn processing_status_filters_the_list(store: TestStore) {
    ingest(&store, &fixture("v3-procedurestatechanged.json")).await;
    ingest(
        &store,
        &procedure_body("402", TASK, "PROCESSING", None, Some("PROCESSING")),
    )
    .await;
    ingest(
        &store,
        &procedure_body("403", TASK, "FINISH", Some("FAIL"), None),
    )
    .await;
    ingest(&store, &upload_body("404")).await;
    let with = |status| UploadFilter {
        processing_status: Some(status),
        ..Default::default()
    };
    use vodhook::domain::ProcessingStatus::*;
    assert_eq!(file_ids(&store, with(Finished)).await, [FILE]);
    assert_eq!(file_ids(&store, with(Processing)).await, ["402"]);
    assert_eq!(file_ids(&store, with(Failed)).await, ["403"]);
}

pub async fn a_pull_makes_a_record_like_an_upload(store: TestStore) {
    ingest(&store, &fixture("v3-pullcomplete.json")).await;
    let pulled = upload(&store, "14508071098244959037").await;
    assert_eq!(
        pulled.fields.media_url.as_deref(),
        Some("http://125676836723.vod2.myqcloud.com/xxx/xxx/xxx.mp4")
    );
    assert_eq!(
        pulled.fields.storage_region.as_deref(),
        Some("ap-guangzhou-2")
    );
    assert_eq!(pulled.fields.name.as_deref(), Some("Animal World"));

    // A failed pull names no usable file: no record.
    let mut failed: Value = serde_json::from_slice(&fixture("v3-pullcomplete.json")).expect("json");
    failed["PullCompleteEvent"]["ErrCode"] = json!(70000);
    failed["PullCompleteEvent"]["FileId"] = json!("14508071098244959099");
    ingest(&store, &serde_json::to_vec(&failed).expect("json")).await;
    assert!(store
        .get_upload("14508071098244959099")
        .await
        .expect("get")
        .is_none());
}

/// The list answer is written straight from the rows; it must be the very bytes the records
/// themselves serialise to, page by page, for full records, processed ones (JSON results),
/// deleted ones and records that only know their task.
pub async fn the_list_answer_is_the_records_as_json(store: TestStore) {
    ingest(&store, &upload_body(FILE)).await;
    ingest(&store, &fixture("v3-procedurestatechanged.json")).await;
    ingest(&store, &upload_body("5285890784246869931")).await;
    ingest(&store, &deleted_body("5285890784246869931")).await;
    ingest(
        &store,
        &procedure_body("5285890784246869932", TASK, "PROCESSING", None, None),
    )
    .await;
    ingest(&store, &upload_body("5285890784246869933")).await;

    for size in [1, 2, 500] {
        let limit = vodhook::domain::PageLimit::parse(Some(size)).expect("limit");
        let mut cursor: Option<vodhook::domain::PageCursor> = None;
        let mut pages = 0;
        loop {
            let records = store
                .list_uploads(&UploadFilter::default(), cursor.as_ref(), limit)
                .await
                .expect("list");
            let answer = store
                .list_uploads_json(&UploadFilter::default(), cursor.as_ref(), limit)
                .await
                .expect("list as json");
            let expected = serde_json::to_string(&records).expect("json");
            assert_eq!(
                String::from_utf8(answer).expect("utf-8"),
                expected,
                "page {pages} of {size}"
            );
            pages += 1;
            match records.next_cursor {
                Some(next) => {
                    cursor = Some(vodhook::domain::PageCursor::decode(&next).expect("cursor"))
                }
                None => break,
            }
        }
        assert_eq!(pages, 4_u64.div_ceil(size), "pages of {size}");
    }
    let finished = upload(&store, FILE).await;
    assert!(finished.lifecycle.processing_results.is_some());
}
