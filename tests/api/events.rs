use crate::helpers::{error_code, fixture, new_file_upload, spawn_app};
use reqwest::StatusCode;
use std::collections::HashSet;

#[tokio::test]
async fn events_list_by_type_and_file_newest_first() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for name in [
        "v3-newfileupload-doc-example.json",
        "v3-procedurestatechanged.json",
        "v3-filedeleted.json",
    ] {
        let (_, answer) = app.callback(fixture(name)).await;
        ids.push(answer["event_id"].as_str().expect("id").to_owned());
    }
    let all: Vec<String> = app
        .list_all("/v1/events", 2)
        .await
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(all, ids.iter().rev().cloned().collect::<Vec<_>>());

    let typed = app
        .list_all("/v1/events?event_type=ProcedureStateChanged", 10)
        .await;
    assert_eq!(typed.len(), 1);
    assert_eq!(typed[0]["id"], ids[1].as_str());
    assert_eq!(typed[0]["file_id"], "5285890784246869930");
    assert_eq!(
        typed[0]["body"]["ProcedureStateChangeEvent"]["Status"],
        "FINISH"
    );

    let by_file = app
        .list_all("/v1/events?file_id=5285890784273533167", 10)
        .await;
    assert_eq!(by_file.len(), 1);
    assert_eq!(by_file[0]["event_type"], "NewFileUpload");
}

#[tokio::test]
async fn event_pages_do_not_repeat_or_skip_while_events_arrive() {
    let app = spawn_app().await;
    let mut expected = HashSet::new();
    for i in 0..25 {
        let (_, answer) = app
            .callback(new_file_upload(&format!("5{i:04}"), None))
            .await;
        expected.insert(answer["event_id"].as_str().expect("id").to_owned());
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for round in 0.. {
        let path = if cursor.is_empty() {
            "/v1/events?limit=4".to_owned()
        } else {
            format!("/v1/events?limit=4&cursor={cursor}")
        };
        let (_, page) = app.get(&path).await;
        seen.extend(
            page["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|e| e["id"].as_str().expect("id").to_owned()),
        );
        app.callback(new_file_upload(&format!("8{round:04}"), None))
            .await;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), expected);
}

#[tokio::test]
async fn unknown_or_malformed_event_ids_are_404() {
    let app = spawn_app().await;
    for id in ["0190f0e4-0000-7000-8000-000000000000", "not-a-uuid"] {
        let (status, body) = app.get(&format!("/v1/events/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}");
        assert_eq!(error_code(&body), "event_not_found");
        let (status, _) = app.get(&format!("/v1/events/{id}/raw")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}/raw");
    }
}
