use crate::helpers::{error_code, fixture, new_file_upload, spawn_app, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn stored_event_count(app: &crate::helpers::TestApp, query: &str) -> usize {
    app.list_all(&format!("/v1/events?{query}"), 500)
        .await
        .len()
}

#[tokio::test]
async fn v3_new_file_upload_creates_the_upload_record() {
    let app = spawn_app().await;
    let (status, answer) = app.callback(fixture("v3-newfileupload-full.json")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["duplicate"], false);
    let event_id = answer["event_id"].as_str().expect("event id");

    let (status, upload) = app.get("/v1/uploads/14508071098244959037").await;
    assert_eq!(status, StatusCode::OK, "{upload}");
    let expected = json!({
        "file_id": "14508071098244959037",
        "media_url": "https://1500000001.vod-qcloud.com/a1b2c3d4vodsgp1500000001/9f8e7d6c14508071098244959037/BXe4N2qVfKcA.mp4",
        "source_type": "Upload",
        "source_context": "{\"uploadId\":\"u_42\",\"tenant\":\"acme\",\"origin\":\"client\"}",
        "procedure_task_id": "1500000001-procedurev2-6d3c2e1f0a9b8c7d6e5f4a3b2c1d0e9ft0",
        "review_audio_video_task_id": "1500000001-ReviewAudioVideo-1f2e3d4c5b6a79880716253443526170t0",
        "name": "Product demo – 第1集",
        "media_type": "mp4",
        "cover_url": "https://1500000001.vod-qcloud.com/a1b2c3d4vodsgp1500000001/9f8e7d6c14508071098244959037/coverBySnapshot/1755659649_123.100_0.jpg",
        "storage_region": "ap-singapore",
        "class_id": 1183245,
        "size_bytes": 7700180,
        "duration_seconds": 60.04700088501,
        "media_created_at": "2026-08-20T03:14:07Z",
        "first_event_id": event_id,
    });
    for (key, value) in expected.as_object().expect("object") {
        assert_eq!(&upload[key], value, "{key}");
    }
    assert!(upload["received_at"].is_string() && upload["updated_at"].is_string());
}

#[tokio::test]
async fn v2_new_file_upload_maps_legacy_fields() {
    let app = spawn_app().await;
    let (status, answer) = app
        .callback(fixture("v2-newfileupload-observed.json"))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (_, upload) = app.get("/v1/uploads/5285890790714697960").await;
    assert_eq!(upload["media_url"], "http://1257018105.vod2.myqcloud.com/c7596f40vodcq1257018105/1eb4c1fb5285890790714697960/TL916EePAC8A.mp4");
    assert_eq!(upload["name"], "1561433720");
    assert_eq!(upload["source_type"], "ClientUpload");
    assert_eq!(upload["source_context"], "{\"sign_type\":\"post_video\"}");
    assert_eq!(upload["size_bytes"], 1266129);
    assert_eq!(upload["storage_region"], Value::Null);

    let (_, event) = app
        .get(&format!(
            "/v1/events/{}",
            answer["event_id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(event["format"], "v2");
    assert_eq!(event["event_type"], "NewFileUpload");
    assert_eq!(event["file_id"], "5285890790714697960");
}

#[tokio::test]
async fn every_upload_fixture_makes_a_record_with_nulls_for_missing_fields() {
    let app = spawn_app().await;
    let cases = [
        ("v3-newfileupload-doc-example.json", "5285890784273533167"),
        ("v3-newfileupload-minimal.json", "3270835013074261123"),
        ("v3-newfileupload-null-fields.json", "3270835013074261124"),
        (
            "v3-newfileupload-omitted-fields.json",
            "3270835013074261125",
        ),
        ("v3-newfileupload-record-source.json", "243791581352756157"),
    ];
    for (name, file_id) in cases {
        let (status, answer) = app.callback(fixture(name)).await;
        assert_eq!(status, StatusCode::OK, "{name}: {answer}");
        let (status, upload) = app.get(&format!("/v1/uploads/{file_id}")).await;
        assert_eq!(status, StatusCode::OK, "{name}");
        assert_eq!(upload["file_id"], file_id);
    }
    let (_, upload) = app.get("/v1/uploads/3270835013074261124").await;
    assert_eq!(
        upload["source_type"],
        Value::Null,
        "explicit null SourceInfo"
    );
    assert_eq!(upload["size_bytes"], Value::Null, "explicit null MetaData");
    let (_, upload) = app.get("/v1/uploads/5285890784273533167").await;
    assert_eq!(
        upload["cover_url"],
        Value::Null,
        "empty string becomes null"
    );
    assert_eq!(
        upload["procedure_task_id"],
        Value::Null,
        "empty string becomes null"
    );
}

#[tokio::test]
async fn a_repeated_callback_is_acknowledged_but_stored_once() {
    let app = spawn_app().await;
    let body = fixture("v3-newfileupload-doc-example.json");
    let (_, first) = app.callback(body.clone()).await;
    let (_, upload_before) = app.get("/v1/uploads/5285890784273533167").await;
    for _ in 0..2 {
        let (status, again) = app.callback(body.clone()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(again["duplicate"], true);
        assert_eq!(again["event_id"], first["event_id"]);
    }
    assert_eq!(stored_event_count(&app, "").await, 1);
    assert_eq!(app.list_all("/v1/uploads", 500).await.len(), 1);
    let (_, upload_after) = app.get("/v1/uploads/5285890784273533167").await;
    assert_eq!(upload_before, upload_after, "a pure repeat changes nothing");
}

#[tokio::test]
async fn concurrent_repeats_store_one_event() {
    let app = spawn_app().await;
    let body = new_file_upload("777000111222333444555", None);
    let answers = futures_util::future::join_all((0..8).map(|_| app.callback(body.clone()))).await;
    let ids: std::collections::HashSet<String> = answers
        .iter()
        .map(|(status, a)| {
            assert_eq!(*status, StatusCode::OK, "{a}");
            a["event_id"].as_str().expect("id").to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(
        answers
            .iter()
            .filter(|(_, a)| a["duplicate"] == false)
            .count(),
        1
    );
    assert_eq!(stored_event_count(&app, "").await, 1);
}

#[tokio::test]
async fn the_same_upload_in_both_formats_is_one_event_and_the_record_is_completed() {
    let app = spawn_app().await;
    let (_, v2) = app
        .callback(fixture("v2-newfileupload-doc-example.json"))
        .await;
    assert_eq!(v2["duplicate"], false);
    let (_, before) = app.get("/v1/uploads/5285890784273533167").await;
    assert_eq!(before["storage_region"], Value::Null, "v2 has no region");

    let (status, v3) = app
        .callback(fixture("v3-newfileupload-doc-example.json"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v3["duplicate"], true);
    assert_eq!(v3["event_id"], v2["event_id"]);
    assert_eq!(
        stored_event_count(&app, "event_type=NewFileUpload").await,
        1
    );

    let (_, after) = app.get("/v1/uploads/5285890784273533167").await;
    assert_eq!(
        after["storage_region"], "ap-chongqing",
        "gaps filled from the v3 copy"
    );
    assert_eq!(
        after["media_url"], before["media_url"],
        "what v2 said is kept"
    );
    assert_eq!(after["first_event_id"], v2["event_id"]);
}

#[tokio::test]
async fn signed_copies_of_one_event_dedupe_together() {
    let app = spawn_app().await;
    let (_, plain) = app
        .callback(fixture("v3-newfileupload-doc-example.json"))
        .await;
    let (_, signed) = app
        .callback(fixture("v3-newfileupload-signed-assumed-placement.json"))
        .await;
    assert_eq!(signed["duplicate"], true);
    assert_eq!(signed["event_id"], plain["event_id"]);
}

#[tokio::test]
async fn every_event_type_known_or_not_is_stored_as_received() {
    let app = spawn_app().await;
    let cases = [
        (
            "v3-procedurestatechanged.json",
            "ProcedureStateChanged",
            "v3",
        ),
        ("v3-filedeleted.json", "FileDeleted", "v3"),
        ("v3-pullcomplete.json", "PullComplete", "v3"),
        ("v3-editmediacomplete.json", "EditMediaComplete", "v3"),
        (
            "v3-unknown-future-event.json",
            "HologramRenderComplete",
            "v3",
        ),
        ("v2-filedeleted.json", "FileDeleted", "v2"),
    ];
    for (name, event_type, format) in cases {
        let raw = fixture(name);
        let (status, answer) = app.callback(raw.clone()).await;
        assert_eq!(status, StatusCode::OK, "{name}: {answer}");
        assert_eq!(answer["duplicate"], false, "{name}");
        let id = answer["event_id"].as_str().expect("id");

        let (status, event) = app.get(&format!("/v1/events/{id}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(event["event_type"], event_type, "{name}");
        assert_eq!(event["format"], format, "{name}");
        let sent: Value = serde_json::from_slice(&raw).expect("fixture is JSON");
        assert_eq!(event["body"], sent, "{name}");
        assert_eq!(event["headers"]["user-agent"], "vod-test-agent/1.0");
        assert_eq!(event["headers"]["content-type"], "application/json");
        assert_eq!(event["client_addr"], "127.0.0.1");

        let raw_back = app
            .get_with_token(
                &format!("/v1/events/{id}/raw"),
                Some(crate::helpers::API_TOKEN),
            )
            .await;
        assert_eq!(raw_back.status(), StatusCode::OK);
        assert_eq!(
            raw_back.bytes().await.expect("bytes").as_ref(),
            raw.as_slice(),
            "{name}: exact bytes"
        );

        let (_, again) = app.callback(raw).await;
        assert_eq!(again["duplicate"], true, "{name}");
    }
    // Records follow their files: the pulled upload, the processed file, the deleted file.
    let mut recorded: Vec<String> = app
        .list_all("/v1/uploads", 500)
        .await
        .iter()
        .map(|u| u["file_id"].as_str().expect("file_id").to_owned())
        .collect();
    recorded.sort();
    assert_eq!(
        recorded,
        [
            "14508071098244959037",
            "24961954183381008",
            "5285890784246869930"
        ],
        "PullComplete, FileDeleted and ProcedureStateChanged touch records; other types do not"
    );
    let (_, deleted) = app.get("/v1/events?file_id=24961954183381008").await;
    assert_eq!(
        deleted["data"].as_array().map(Vec::len),
        Some(2),
        "v2 and v3 FileDeleted are different events"
    );
}

#[tokio::test]
async fn malformed_bodies_get_400_with_a_code() {
    let app = spawn_app().await;
    let cases: [(&[u8], &str); 8] = [
        (b"", "invalid_json"),
        (b"not json", "invalid_json"),
        (b"{\"EventType\":", "invalid_json"),
        (b"\xff\xfe{}", "invalid_json"),
        (b"[{\"EventType\":\"NewFileUpload\"}]", "not_an_object"),
        (b"42", "not_an_object"),
        (
            b"{\"FileUploadEvent\":{\"FileId\":\"1\"}}",
            "missing_event_type",
        ),
        (b"{\"EventType\":null}", "missing_event_type"),
    ];
    for (body, code) in cases {
        let (status, answer) = app.callback(body.to_vec()).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{:?}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(error_code(&answer), code);
    }
    assert_eq!(stored_event_count(&app, "").await, 0);
}

#[tokio::test]
async fn odd_but_valid_json_never_causes_a_server_error() {
    let app = spawn_app().await;
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let bodies = [
        r#"{"EventType":"NewFileUpload","FileUploadEvent":{"FileId":"1\u0000","MediaBasicInfo":{"Name":"a\u0000b"}}}"#.to_owned(),
        r#"{"EventType":"X","XEvent":{"N":1e400}}"#.to_owned(),
        r#"{"EventType":"X","XEvent":{"N":123456789012345678901234567890}}"#.to_owned(),
        format!(r#"{{"EventType":"X","Deep":{deep}}}"#),
        r#"{"EventType":"X","EventType":"Y"}"#.to_owned(),
        r#"{"EventType":"NewFileUpload","FileUploadEvent":{"FileId":{"nested":true}}}"#.to_owned(),
        r#"{"eventType":"NewFileUpload","version":{},"data":[1,2]}"#.to_owned(),
    ];
    for body in bodies {
        let (status, answer) = app.callback(body.clone()).await;
        assert!(
            status.is_success() || status.is_client_error(),
            "{status} for {body}: {answer}"
        );
    }
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let app = spawn_app_with(|s| s.max_body_bytes = 1024).await;
    let small = new_file_upload("1", None);
    assert!(small.len() <= 2048);
    let mut big = serde_json::from_slice::<Value>(&small).expect("json");
    big["Padding"] = Value::from("x".repeat(4096));
    let (status, answer) = app.callback(big.to_string()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&answer), "payload_too_large");

    // Without a Content-Length (chunked), the limit holds while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(vec![b' '; 800]), Ok(vec![b' '; 800])];
    let response = app
        .client
        .post(format!("{}/v1/callbacks/vod", app.address))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(stored_event_count(&app, "").await, 0);
}

#[tokio::test]
async fn new_file_upload_without_file_id_is_stored_and_refused_with_422() {
    let app = spawn_app().await;
    let body = r#"{"EventType":"NewFileUpload","FileUploadEvent":{"FileId":"","MediaBasicInfo":{"Name":"lost"}}}"#;
    for _ in 0..2 {
        let (status, answer) = app.callback(body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error_code(&answer), "missing_file_id");
    }
    let events = app
        .list_all("/v1/events?event_type=NewFileUpload", 50)
        .await;
    assert_eq!(events.len(), 1, "stored once");
    assert_eq!(
        events[0]["body"]["FileUploadEvent"]["MediaBasicInfo"]["Name"],
        "lost"
    );
    assert_eq!(app.list_all("/v1/uploads", 50).await.len(), 0);
}

#[tokio::test]
async fn storage_down_gets_503_so_vod_retries() {
    let app = spawn_app().await;
    app.db.drop_now().await;
    let (status, answer) = app.callback(new_file_upload("99", None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&answer), "storage_unavailable");
    let (status, answer) = app.get("/v1/uploads/99").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&answer), "storage_unavailable");
}

#[tokio::test]
async fn with_a_callback_token_only_the_tokened_url_accepts() {
    let token = "cb-token-abcdefghijklmnop";
    let app = spawn_app_with(|s| s.callback_token = Some(token.to_owned().into())).await;
    let body = new_file_upload("4242", None);

    let (status, answer) =
        crate::helpers::json_of(app.post_raw("/v1/callbacks/vod", body.clone()).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&answer), "callback_token_required");
    for wrong in [
        "cb-token-abcdefghijklmnoq",
        "x",
        "cb-token-abcdefghijklmnopq",
    ] {
        let (status, answer) = crate::helpers::json_of(
            app.post_raw(&format!("/v1/callbacks/vod/{wrong}"), body.clone())
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong}");
        assert_eq!(error_code(&answer), "invalid_callback_token");
    }
    assert_eq!(stored_event_count(&app, "").await, 0);

    let (status, answer) = crate::helpers::json_of(
        app.post_raw(&format!("/v1/callbacks/vod/{token}"), body)
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(stored_event_count(&app, "").await, 1);
}

#[tokio::test]
async fn without_a_callback_token_the_tokened_url_does_not_exist() {
    let app = spawn_app().await;
    let (status, answer) = crate::helpers::json_of(
        app.post_raw("/v1/callbacks/vod/anything", new_file_upload("1", None))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&answer), "not_found");
}

#[tokio::test]
async fn over_long_values_never_cost_an_event() {
    let app = spawn_app().await;
    let long = "x".repeat(3000);
    let (status, answer) = app.callback(format!(r#"{{"EventType":"{long}"}}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&answer), "invalid_event_type");

    let (status, answer) = app
        .callback(format!(
            r#"{{"EventType":"NewFileUpload","FileUploadEvent":{{"FileId":"{long}"}}}}"#
        ))
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "stored, but no FileId to make a record: {answer}"
    );
    assert_eq!(error_code(&answer), "missing_file_id");

    let mut upload: Value = serde_json::from_slice(&new_file_upload("1234", None)).expect("json");
    upload["FileUploadEvent"]["MediaBasicInfo"]["SourceInfo"]["SourceContext"] =
        Value::from(long.clone());
    upload["FileUploadEvent"]["MediaBasicInfo"]["StorageRegion"] = Value::from(long.clone());
    upload["FileUploadEvent"]["ProcedureTaskId"] = Value::from(long.clone());
    let (status, answer) = app.callback(upload.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let found = app
        .list_all(
            &format!("/v1/uploads?source_context={long}&storage_region={long}"),
            10,
        )
        .await;
    assert_eq!(
        found.len(),
        1,
        "long values are stored whole and found by exact match"
    );
    let prefix_only = format!("{}y", &long[..2999]);
    assert!(app
        .list_all(&format!("/v1/uploads?source_context={prefix_only}"), 10)
        .await
        .is_empty());

    let (status, _) = app
        .callback(format!(
            r#"{{"EventType":"FileDeleted","FileDeleteEvent":{{"FileIdSet":["{long}"]}}}}"#
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored_event_count(&app, "").await, 3);
}

#[tokio::test]
async fn a_v2_source_type_refines_v3_whichever_arrives_first() {
    let app = spawn_app().await;
    let v3 = new_file_upload("8001", None);
    let v2 = vodhook::simulate::body(
        vodhook::simulate::SimulatedEvent::NewFileUploadV2,
        Some("8001"),
        None,
    );
    app.callback(v3).await;
    let (_, upload) = app.get("/v1/uploads/8001").await;
    assert_eq!(upload["source_type"], "Upload");
    let (_, answer) = app.callback(v2).await;
    assert_eq!(answer["duplicate"], true);
    let (_, upload) = app.get("/v1/uploads/8001").await;
    assert_eq!(upload["source_type"], "ClientUpload");
    assert_eq!(upload["storage_region"], "ap-singapore", "v3's fields stay");
}

#[tokio::test]
async fn with_a_callback_token_every_other_callback_path_is_401() {
    let token = "cb-token-abcdefghijklmnop";
    let app = spawn_app_with(|s| s.callback_token = Some(token.to_owned().into())).await;
    for path in [
        "/v1/callbacks/vod/".to_owned(),
        format!("/v1/callbacks/vod/{token}/x"),
        format!("/v1/callbacks/vod/x/{token}"),
    ] {
        let response = app.post_raw(&path, new_file_upload("1", None)).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(
            response.headers().contains_key("www-authenticate"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_full_ingest_buffer_answers_503_with_retry_after() {
    // A buffer smaller than one body: every callback finds it full, as under a burst.
    let app = crate::helpers::spawn_app_with(|s| s.ingest_buffer_bytes = 1024).await;
    let body = fixture("v3-newfileupload-full.json");
    assert!(body.len() > 1024);
    let response = app.post_callback(body).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    let (_, answer) = crate::helpers::json_of(response).await;
    assert_eq!(error_code(&answer), "overloaded");
    let (_, events) = app.get("/v1/events").await;
    assert_eq!(
        events["data"].as_array().map(Vec::len),
        Some(0),
        "nothing stored"
    );
    // A body that fits is taken.
    let (status, _) = app.callback(&b"{\"EventType\":\"Tiny\"}"[..]).await;
    assert_eq!(status, StatusCode::OK);
}
