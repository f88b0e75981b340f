use crate::helpers::{error_code, fixture, new_file_upload, spawn_app};
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::HashSet;

fn file_ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|u| u["file_id"].as_str().expect("file_id").to_owned())
        .collect()
}

#[tokio::test]
async fn unknown_file_id_is_404() {
    let app = spawn_app().await;
    let (status, body) = app.get("/v1/uploads/1234567890").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "upload_not_found");
}

/// A list page is JSON, and each of its records reads exactly as the record's own endpoint.
#[tokio::test]
async fn list_records_read_as_their_own_endpoint() {
    let app = spawn_app().await;
    for (file_id, context) in [("11", Some("user-1")), ("12", None), ("13", Some("user-é"))] {
        assert_eq!(
            app.callback(new_file_upload(file_id, context)).await.0,
            StatusCode::OK
        );
    }
    let answer = app
        .get_with_token("/v1/uploads?limit=2", Some(crate::helpers::API_TOKEN))
        .await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(
        answer.headers()["content-type"].to_str().expect("ascii"),
        "application/json"
    );
    let page: Value = answer.json().await.expect("json");
    let records = page["data"].as_array().expect("data");
    assert_eq!(file_ids(records), ["13", "12"]);
    assert!(page["next_cursor"].is_string(), "{page}");
    for record in records {
        let path = format!(
            "/v1/uploads/{}",
            record["file_id"].as_str().expect("file_id")
        );
        let (status, own) = app.get(&path).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(record, &own);
    }
}

#[tokio::test]
async fn list_is_newest_first_and_filters_combine() {
    let app = spawn_app().await;
    for (file_id, context) in [
        ("1", Some("user-1")),
        ("2", Some("user-2")),
        ("3", Some("user-1")),
        ("4", None),
    ] {
        let (status, _) = app.callback(new_file_upload(file_id, context)).await;
        assert_eq!(status, StatusCode::OK);
    }
    // v2 sourceType and a procedure task, for the other filters.
    let v2 = r#"{"version":"4.0","eventType":"NewFileUpload","data":{"fileId":"5","sourceType":"ServerUpload",
        "sourceContext":"user-1","procedureTaskId":"proc-9","fileUrl":"http://x/y.mp4"}}"#;
    assert_eq!(app.callback(v2).await.0, StatusCode::OK);

    assert_eq!(
        file_ids(&app.list_all("/v1/uploads", 50).await),
        ["5", "4", "3", "2", "1"]
    );
    assert_eq!(
        file_ids(&app.list_all("/v1/uploads?source_context=user-1", 50).await),
        ["5", "3", "1"]
    );
    assert_eq!(
        file_ids(
            &app.list_all("/v1/uploads?source_type=ServerUpload", 50)
                .await
        ),
        ["5"]
    );
    assert_eq!(
        file_ids(
            &app.list_all("/v1/uploads?source_type=Upload&source_context=user-1", 50)
                .await
        ),
        ["3", "1"]
    );
    assert_eq!(
        file_ids(
            &app.list_all("/v1/uploads?procedure_task_id=proc-9", 50)
                .await
        ),
        ["5"]
    );
    assert_eq!(
        file_ids(
            &app.list_all("/v1/uploads?storage_region=ap-singapore", 50)
                .await
        ),
        ["4", "3", "2", "1"]
    );
    assert!(app
        .list_all("/v1/uploads?storage_region=ap-chongqing", 50)
        .await
        .is_empty());

    let (_, third) = app.get("/v1/uploads/3").await;
    let at = third["received_at"].as_str().expect("time");
    let encoded = at.replace('+', "%2B");
    assert_eq!(
        file_ids(
            &app.list_all(&format!("/v1/uploads?received_after={encoded}"), 50)
                .await
        ),
        ["5", "4"]
    );
    assert_eq!(
        file_ids(
            &app.list_all(&format!("/v1/uploads?received_before={encoded}"), 50)
                .await
        ),
        ["2", "1"]
    );
}

#[tokio::test]
async fn paging_while_uploads_arrive_neither_skips_nor_repeats() {
    let app = spawn_app().await;
    let mut existing = HashSet::new();
    for i in 0..60 {
        let file_id = format!("1{i:05}");
        assert_eq!(
            app.callback(new_file_upload(&file_id, Some("bulk")))
                .await
                .0,
            StatusCode::OK
        );
        existing.insert(file_id);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut arriving = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/uploads?source_context=bulk&limit=7&cursor={c}"),
            None => "/v1/uploads?source_context=bulk&limit=7".to_owned(),
        };
        let (status, page) = app.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["data"].as_array().expect("data");
        assert!(items.len() <= 7);
        seen.extend(file_ids(items));
        // New uploads arrive between pages.
        for _ in 0..3 {
            arriving += 1;
            let (status, _) = app
                .callback(new_file_upload(&format!("9{arriving:05}"), Some("bulk")))
                .await;
            assert_eq!(status, StatusCode::OK);
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no record repeated");
    assert_eq!(
        unique, existing,
        "every record present at the start seen once, none skipped"
    );
}

#[tokio::test]
async fn bad_list_parameters_get_400() {
    let app = spawn_app().await;
    let cases = [
        ("/v1/uploads?limit=0", "invalid_limit"),
        ("/v1/uploads?limit=-1", "invalid_limit"),
        ("/v1/uploads?limit=ten", "invalid_limit"),
        ("/v1/uploads?cursor=garbage!", "invalid_cursor"),
        ("/v1/uploads?received_after=yesterday", "invalid_time"),
        (
            "/v1/uploads?received_before=2026-13-01T00:00:00Z",
            "invalid_time",
        ),
        // Year 10000 once in UTC: no store keeps it (SQLite would compare it as text wrongly).
        (
            "/v1/uploads?received_after=9999-12-31T23:59:59-01:00",
            "invalid_time",
        ),
        (
            "/v1/uploads?processing_status=done",
            "invalid_processing_status",
        ),
        ("/v1/uploads?deleted=yes", "invalid_boolean"),
        ("/v1/events?cursor=MTIzLm5vdC1hLXV1aWQ", "invalid_cursor"),
        ("/v1/events?limit=1.5", "invalid_limit"),
    ];
    for (path, code) in cases {
        let (status, body) = app.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(error_code(&body), code, "{path}");
    }
}

#[tokio::test]
async fn limit_above_the_maximum_is_clamped_to_500() {
    let app = spawn_app().await;
    for i in 0..3 {
        app.callback(new_file_upload(&i.to_string(), None)).await;
    }
    let (status, page) = app.get("/v1/uploads?limit=100000").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["data"].as_array().map(Vec::len), Some(3));
    assert_eq!(page["next_cursor"], Value::Null);
    let (_, page) = app.get("/v1/uploads?limit=2").await;
    assert_eq!(page["data"].as_array().map(Vec::len), Some(2));
    assert!(page["next_cursor"].is_string());
}

#[tokio::test]
async fn hostile_cursors_huge_limits_and_unencoded_offsets_are_handled() {
    let app = spawn_app().await;
    app.callback(new_file_upload("1", None)).await;
    // base64url of "-8000000000000000000.x": a time before anything a database can hold.
    let (status, body) = app
        .get("/v1/uploads?cursor=LTgwMDAwMDAwMDAwMDAwMDAwMDAueA")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "invalid_cursor");

    let (status, page) = app.get("/v1/uploads?limit=99999999999999999999999").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["data"].as_array().map(Vec::len), Some(1));

    // `+` unencoded in a query string arrives as a space.
    let (status, page) = app
        .get("/v1/uploads?received_after=2020-01-01T00:00:00+08:00")
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["data"].as_array().map(Vec::len), Some(1));
    let (status, page) = app
        .get("/v1/uploads?received_before=2020-01-01T08:00:00%2B08:00")
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["data"].as_array().map(Vec::len), Some(0));

    let (status, body) = app.get("/v1/uploads/a%2Fb").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let message = body["error"]["message"].as_str().expect("message");
    assert!(!message.contains("Path("), "{message}");
}

#[tokio::test]
async fn records_show_processing_and_deletion_and_filter_by_them() {
    let app = spawn_app().await;
    app.callback(fixture("v3-procedurestatechanged.json")).await;
    app.callback(fixture("v3-newfileupload-full.json")).await;
    app.callback(fixture("v2-filedeleted.json")).await;
    let (status, finished) = app.get("/v1/uploads?processing_status=finished").await;
    assert_eq!(status, StatusCode::OK, "{finished}");
    let record = &finished["data"][0];
    assert_eq!(record["file_id"], "5285890784246869930");
    assert_eq!(record["processing_status"], "finished");
    assert_eq!(record["session_context"], "{\"uploadId\":\"u_42\"}");
    assert_eq!(
        record["processing_results"]["outputs"][0]["url"],
        "https://1256768367.vod2.myqcloud.com/xxx/xxx/v.f20.mp4"
    );
    assert!(record["deleted_at"].is_null());
    let (_, deleted) = app.get("/v1/uploads?deleted=true").await;
    let ids: Vec<&str> = deleted["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|u| u["file_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["24961954183381008"]);
    let (_, one) = app.get("/v1/uploads/24961954183381008").await;
    assert!(one["deleted_at"].is_string(), "{one}");
    let (_, kept) = app.get("/v1/uploads?deleted=false").await;
    assert_eq!(kept["data"].as_array().map(Vec::len), Some(2), "{kept}");
}
