//! Reliable callback (pull) mode against a stand-in of VOD's API that checks every request's
//! TC3 signature: events stored once, confirmed only after commit, errors and timeouts survived.

use crate::helpers::{error_code, fixture, spawn_custom_app, TestApp};
use crate::vod_standin::VodStandIn;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{json, Value};
use std::time::Duration;
use vodhook::config::{TencentCredentials, VodMode};
use vodhook::pull::PullSettings;

const SECRET_ID: &str = "AKIDpullTestKey0000000000000000000000";
const SECRET_KEY: &str = "pullTestSecretKey0000000000000000";
const SUB_APP_ID: u64 = 1_500_000_001;
const WAIT: Duration = Duration::from_secs(20);

/// An app in pull mode against `standin`, with short timeouts; `key` is the secret key it signs
/// with.
async fn pulling_app(standin: &VodStandIn, key: &str) -> TestApp {
    let url = standin.url();
    let key = key.to_owned();
    spawn_custom_app(
        move |s| {
            s.vod.mode = VodMode::Pull;
            s.vod.credentials = Some(TencentCredentials {
                secret_id: SECRET_ID.to_owned(),
                secret_key: SecretString::from(key),
            });
            s.vod.sub_app_id = Some(SUB_APP_ID);
            s.vod.api_endpoint = url;
        },
        |b| {
            b.pull_settings(PullSettings {
                request_timeout: Duration::from_millis(1500),
                min_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(200),
                standby_poll: Duration::from_millis(100),
            })
        },
    )
    .await
}

async fn standin() -> VodStandIn {
    let standin = VodStandIn::start(SECRET_ID, SECRET_KEY).await;
    standin.require_sub_app_id(Some(SUB_APP_ID));
    standin
}

/// The EventSet of the PullEvents fixture.
fn fixture_events() -> Vec<Value> {
    let response: Value =
        serde_json::from_slice(&fixture("pullevents-response.json")).expect("json");
    response["Response"]["EventSet"]
        .as_array()
        .expect("EventSet")
        .clone()
}

/// A NewFileUpload EventContent for `file_id`.
fn upload_event(file_id: &str) -> Value {
    let mut body: Value =
        serde_json::from_slice(&fixture("v3-newfileupload-full.json")).expect("json");
    body["FileUploadEvent"]["FileId"] = json!(file_id);
    body
}

async fn stored_events(app: &TestApp) -> Vec<Value> {
    app.list_all("/v1/events", 100).await
}

#[tokio::test]
async fn pulled_events_are_stored_once_and_confirmed() {
    let standin = standin().await;
    let events = fixture_events();
    standin.enqueue(events.clone());
    let app = pulling_app(&standin, SECRET_KEY).await;

    let confirmed = standin.wait_for_confirmed(events.len(), WAIT).await;
    assert_eq!(confirmed.len(), events.len());
    let stored = stored_events(&app).await;
    assert_eq!(stored.len(), events.len(), "each event stored once");
    for event in &stored {
        assert_eq!(event["headers"]["via"], "PullEvents");
    }
    let (status, upload) = app.get("/v1/uploads/14508071098244959037").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the pulled upload made its record: {upload}"
    );
    assert_eq!(
        standin.bad_signatures(),
        0,
        "every request was signed as Tencent checks"
    );
    assert!(standin
        .requests()
        .iter()
        .all(|r| r.sub_app_id == Some(SUB_APP_ID)));
    let (status, _) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn nothing_is_confirmed_that_was_not_committed() {
    let standin = standin().await;
    standin.set_redelivery_window(Duration::from_millis(800));
    let app = pulling_app(&standin, SECRET_KEY).await;
    // Every insert of an event fails, as when the disk is full: nothing commits.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&app.db.url)
        .await
        .expect("connect");
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_events() RETURNS trigger LANGUAGE plpgsql AS \
           $$ BEGIN RAISE EXCEPTION 'storage refuses events'; END $$; \
         CREATE TRIGGER refuse_events BEFORE INSERT ON events \
           FOR EACH ROW EXECUTE FUNCTION refuse_events();",
    )
    .execute(&mut conn)
    .await
    .expect("trigger");
    standin.enqueue(vec![upload_event("6001"), upload_event("6002")]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(standin.served_count() >= 2, "the events were pulled");
    assert!(
        standin.confirmed().is_empty(),
        "no confirmation without a commit: {:?}",
        standin.confirmed()
    );
    assert!(stored_events(&app).await.is_empty());

    // Storage recovers: VOD serves the unconfirmed events again; now they commit and confirm.
    sqlx::raw_sql("DROP TRIGGER refuse_events ON events")
        .execute(&mut conn)
        .await
        .expect("drop trigger");
    let confirmed = standin.wait_for_confirmed(2, WAIT).await;
    assert_eq!(confirmed.len(), 2);
    assert_eq!(stored_events(&app).await.len(), 2);
}

#[tokio::test]
async fn an_unconfirmed_event_served_again_is_recognised_as_a_repeat() {
    let standin = standin().await;
    standin.set_redelivery_window(Duration::from_millis(500));
    // The first confirmation fails: VOD serves the event again, with a new handle.
    standin.fail_next_confirm(1, "InternalError");
    standin.enqueue(vec![upload_event("7001")]);
    let app = pulling_app(&standin, SECRET_KEY).await;
    let confirmed = standin.wait_for_confirmed(1, WAIT).await;
    assert_eq!(confirmed.len(), 1);
    assert!(
        standin.served_count() >= 2,
        "served again after the failed confirmation"
    );
    let stored = stored_events(&app).await;
    assert_eq!(
        stored.len(),
        1,
        "the repeat is not stored twice: {stored:?}"
    );
    // A push copy of the same upload (mode both would receive one) is the same event too.
    let (status, pushed) = app
        .callback(serde_json::to_vec(&upload_event("7001")).expect("json"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pushed["duplicate"], true);
}

#[tokio::test]
async fn api_errors_and_timeouts_are_survived() {
    let standin = standin().await;
    standin.fail_next(3, "InternalError");
    standin.stall_next(1, Duration::from_secs(3));
    standin.enqueue(vec![upload_event("8001")]);
    let app = pulling_app(&standin, SECRET_KEY).await;
    let confirmed = standin.wait_for_confirmed(1, WAIT).await;
    assert_eq!(confirmed.len(), 1);
    let failed = standin
        .requests()
        .iter()
        .filter(|r| r.error.is_some() || r.stalled)
        .count();
    assert!(failed >= 3, "the errors were met: {:?}", standin.requests());
    assert_eq!(stored_events(&app).await.len(), 1);
    let (status, _) = app.get("/readyz").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "retryable errors do not make it unready"
    );
}

#[tokio::test]
async fn rejected_credentials_stop_pulling_and_fail_readiness() {
    let standin = standin().await;
    standin.enqueue(vec![upload_event("9001")]);
    let app = pulling_app(&standin, "not-the-secret-key-0000000000000").await;
    let mut ready = StatusCode::OK;
    let mut body = Value::Null;
    for _ in 0..100 {
        (ready, body) = app.get("/readyz").await;
        if ready != StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "pull_stopped");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("AuthFailure") && message.contains("VODHOOK_TENCENT_SECRET_KEY"),
        "{message}"
    );
    assert!(
        !message.contains("not-the-secret-key"),
        "the key is never shown"
    );
    let pulls = standin.requests().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(standin.requests().len(), pulls, "it stopped asking");
    assert!(standin.confirmed().is_empty());
}

#[tokio::test]
async fn an_empty_answer_that_comes_at_once_does_not_make_a_busy_loop() {
    let standin = standin().await;
    // VOD holds an empty poll for up to 5 s; this one answers at once.
    standin.set_hold(Duration::ZERO);
    let _app = pulling_app(&standin, SECRET_KEY).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let polls = standin.requests().len();
    assert!(
        (1..=5).contains(&polls),
        "about one poll a second, not a busy loop: {polls}"
    );
}

#[tokio::test]
async fn a_key_that_may_not_confirm_stops_pulling_too() {
    let standin = standin().await;
    standin.fail_next_confirm(1, "UnauthorizedOperation.Vod");
    standin.enqueue(vec![upload_event("9101")]);
    let app = pulling_app(&standin, SECRET_KEY).await;
    let mut ready = StatusCode::OK;
    let mut body = Value::Null;
    for _ in 0..100 {
        (ready, body) = app.get("/readyz").await;
        if ready != StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "pull_stopped");
    assert_eq!(
        stored_events(&app).await.len(),
        1,
        "what was pulled is stored"
    );
}
