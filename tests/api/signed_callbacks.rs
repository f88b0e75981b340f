//! Signed callbacks: with a VOD SignKey configured, `Sign`/`T` must be valid and unexpired.

use crate::helpers::{error_code, fixture, json_of, spawn_custom_app, TestApp};
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{json, Value};
use std::sync::Arc;
use vodhook::fanout::ManualClock;

const SIGN_KEY: &str = "VodCallbackKey2026";
/// The expiry the signed fixture carries, and its signature with `SIGN_KEY` (test-vectors.json).
const T: i64 = 1_767_225_600;
const SIGN: &str = "fbe206c7b93fa777d25d6eaff060116d";

/// An app that checks signatures, on a clock the test sets.
async fn signed_app(skew_secs: Option<u64>) -> (TestApp, ManualClock) {
    let clock = ManualClock::starting_now();
    let shared = clock.clone();
    let app = spawn_custom_app(
        |s| {
            s.vod.sign_key = Some(SecretString::from(SIGN_KEY));
            if let Some(skew) = skew_secs {
                s.vod.sign_skew = std::time::Duration::from_secs(skew);
            }
        },
        |b| b.clock(Arc::new(shared)),
    )
    .await;
    (app, clock)
}

fn at(unix: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(unix, 0).expect("time")
}

/// The signed fixture with its `Sign`/`T` replaced (or removed with `None`).
fn body_with(sign: Option<&str>, t: Option<Value>) -> Vec<u8> {
    let mut body: Value =
        serde_json::from_slice(&fixture("v3-newfileupload-signed-assumed-placement.json"))
            .expect("json");
    let object = body.as_object_mut().expect("object");
    object.remove("Sign");
    object.remove("T");
    if let Some(sign) = sign {
        object.insert("Sign".into(), json!(sign));
    }
    if let Some(t) = t {
        object.insert("T".into(), t);
    }
    serde_json::to_vec(&body).expect("json")
}

/// `Sign` given as a JSON number (read as its digits, which do not match).
fn sign_as_number() -> Vec<u8> {
    let mut body: Value = serde_json::from_slice(&body_with(None, Some(json!(T)))).expect("json");
    body["Sign"] = json!(12345);
    serde_json::to_vec(&body).expect("json")
}

#[tokio::test]
async fn a_valid_signature_is_accepted_and_the_event_stored() {
    let (app, clock) = signed_app(None).await;
    clock.set(at(T - 300));
    let (status, body) = app
        .callback(fixture("v3-newfileupload-signed-assumed-placement.json"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["duplicate"], false);
    // Within the skew after T, still accepted; a resend is the same event (Sign/T are not
    // part of the dedupe key).
    clock.set(at(T + 60));
    let (status, again) = app
        .callback(body_with(
            Some(&SIGN.to_uppercase()),
            Some(json!(T.to_string())),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["event_id"], body["event_id"]);
}

#[tokio::test]
async fn each_bad_signature_gets_401_with_its_own_code() {
    let (app, clock) = signed_app(Some(30)).await;
    clock.set(at(T - 300));
    let wrong_key_sign = {
        use md5::{Digest, Md5};
        hex::encode(Md5::digest(format!("NotTheKey{T}")))
    };
    let cases: [(&str, Vec<u8>, &str); 6] = [
        ("no Sign or T", body_with(None, None), "signature_missing"),
        (
            "T without Sign",
            body_with(None, Some(json!(T))),
            "signature_missing",
        ),
        (
            "wrong key",
            body_with(Some(&wrong_key_sign), Some(json!(T))),
            "signature_invalid",
        ),
        (
            "T changed",
            body_with(Some(SIGN), Some(json!(T + 3600))),
            "signature_invalid",
        ),
        (
            "T not a number",
            body_with(Some(SIGN), Some(json!("tomorrow"))),
            "signature_malformed",
        ),
        ("Sign a number", sign_as_number(), "signature_invalid"),
    ];
    for (case, body, code) in cases {
        let (status, answer) = json_of(app.post_callback(body).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {answer}");
        assert_eq!(error_code(&answer), code, "{case}");
    }
    // Expired: past T by more than the skew.
    clock.set(at(T + 31));
    let (status, answer) = app
        .callback(fixture("v3-newfileupload-signed-assumed-placement.json"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(error_code(&answer), "signature_expired");
    // Nothing refused was stored.
    let (_, events) = app.get("/v1/events").await;
    assert_eq!(events["data"].as_array().map(Vec::len), Some(0), "{events}");
}

#[tokio::test]
async fn sign_and_t_are_also_accepted_as_query_parameters() {
    let (app, clock) = signed_app(None).await;
    clock.set(at(T - 1));
    let response = app
        .client
        .post(format!(
            "{}/v1/callbacks/vod?Sign={SIGN}&T={T}",
            app.address
        ))
        .body(body_with(None, None))
        .send()
        .await
        .expect("request");
    let (status, body) = json_of(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Lowercase names in the body are accepted too.
    let mut lower: Value = serde_json::from_slice(&body_with(None, None)).expect("json");
    lower["sign"] = json!(SIGN);
    lower["t"] = json!(T);
    let (status, again) = app
        .callback(serde_json::to_vec(&lower).expect("json"))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["duplicate"], true);
}

#[tokio::test]
async fn without_a_sign_key_signatures_are_not_required() {
    let app = crate::helpers::spawn_app().await;
    let (status, body) = app.callback(body_with(None, None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
