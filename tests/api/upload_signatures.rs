//! `POST /v1/upload-signatures` and `vodhook sign-upload`: VOD client-upload signatures.

use crate::helpers::{error_code, json_of, spawn_app_with, vodhook_command, TestApp, API_TOKEN};
use base64::{engine::general_purpose::STANDARD, Engine as _};
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{json, Value};
use sha1::Sha1;
use vodhook::config::{Settings, TencentCredentials};
use vodhook::tencent::upload_signature::{decode, DecodedSignature};

const PATH: &str = "/v1/upload-signatures";
const SECRET_ID: &str = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE";
const SECRET_KEY: &str = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE";

fn with_credentials(settings: &mut Settings) {
    settings.vod.credentials = Some(TencentCredentials {
        secret_id: SECRET_ID.to_owned(),
        secret_key: SecretString::from(SECRET_KEY),
    });
}

fn with_defaults(settings: &mut Settings) {
    with_credentials(settings);
    settings.vod.default_procedure = Some("DefaultFlow".to_owned());
    settings.vod.default_storage_region = Some("ap-singapore".to_owned());
    settings.vod.sub_app_id = Some(1_500_000_001);
}

async fn signing_app() -> TestApp {
    spawn_app_with(with_credentials).await
}

/// Checks the MAC with the hmac and sha1 crates directly, not through vodhook's own code.
fn assert_signed_with_key(signature: &str) -> DecodedSignature {
    let bytes = STANDARD.decode(signature).expect("standard padded base64");
    let (mac, original) = bytes.split_at(20);
    let mut expected = <Hmac<Sha1> as Mac>::new_from_slice(SECRET_KEY.as_bytes()).expect("key");
    expected.update(original);
    expected
        .verify_slice(mac)
        .expect("HMAC-SHA1 of the original under the secret key");
    let decoded = decode(signature).expect("decodes");
    assert_eq!(decoded.original.as_bytes(), original);
    decoded
}

fn keys(decoded: &DecodedSignature) -> Vec<&str> {
    decoded.params.iter().map(|(k, _)| k.as_str()).collect()
}

/// Signs `body` and returns the decoded, verified signature with the response.
async fn signed(app: &TestApp, body: Option<Value>) -> (DecodedSignature, Value) {
    let (status, response) = app.send_json(Method::POST, PATH, body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    let signature = response["signature"].as_str().expect("signature");
    (assert_signed_with_key(signature), response)
}

#[tokio::test]
async fn a_token_is_required() {
    let app = signing_app().await;
    for token in [None, Some("wrong-token-0123456789")] {
        let mut request = app.client.post(format!("{}{PATH}", app.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let (status, body) = json_of(request.send().await.expect("sent")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}: {body}");
        assert_eq!(error_code(&body), "unauthorized");
    }
    let (status, body) = app.send_json(Method::GET, PATH, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_eq!(error_code(&body), "method_not_allowed");
}

#[tokio::test]
async fn an_empty_body_gets_every_default_and_a_verifiable_signature() {
    let app = spawn_app_with(with_defaults).await;
    let before = chrono::Utc::now().timestamp();
    for body in [None, Some(json!({}))] {
        let (decoded, response) = signed(&app, body).await;
        assert_eq!(
            keys(&decoded),
            [
                "secretId",
                "currentTimeStamp",
                "expireTime",
                "random",
                "procedure",
                "vodSubAppId",
                "storageRegion"
            ]
        );
        assert_eq!(decoded.param("secretId"), Some(SECRET_ID));
        assert_eq!(decoded.param("procedure"), Some("DefaultFlow"));
        assert_eq!(decoded.param("storageRegion"), Some("ap-singapore"));
        assert_eq!(decoded.param("vodSubAppId"), Some("1500000001"));
        let now: i64 = decoded
            .param("currentTimeStamp")
            .and_then(|v| v.parse().ok())
            .expect("timestamp");
        assert!((before..before + 60).contains(&now), "{now}");
        let expire: i64 = decoded
            .param("expireTime")
            .and_then(|v| v.parse().ok())
            .expect("expireTime");
        assert_eq!(expire, now + 3600, "one hour by default");
        assert_eq!(response["expires_at_unix"], json!(expire));
        let expires_at = chrono::DateTime::parse_from_rfc3339(
            response["expires_at"].as_str().expect("expires_at"),
        )
        .expect("RFC 3339");
        assert_eq!(expires_at.timestamp(), expire);
        assert!(decoded
            .param("random")
            .is_some_and(|r| r.parse::<u32>().is_ok()));
        assert!(!response.to_string().contains(SECRET_KEY));
    }
}

#[tokio::test]
async fn every_field_is_signed_and_overrides_the_defaults() {
    let app = spawn_app_with(with_defaults).await;
    let (decoded, response) = signed(
        &app,
        Some(json!({
            "source_context": "{\"uploadId\":\"u_42\"}",
            "procedure": "LongVideoPreset",
            "storage_region": "ap-chongqing",
            "class_id": 0,
            "one_time_valid": true,
            "expire_seconds": 86400,
            "vod_sub_app_id": 1500000009u64,
            "session_context": "tenant=acme&user=7",
            "task_priority": -5,
            "task_notify_mode": "Change",
        })),
    )
    .await;
    let now = decoded.param("currentTimeStamp").expect("now");
    let random = decoded.param("random").expect("random");
    let expire: i64 = now.parse::<i64>().expect("number") + 86_400;
    assert_eq!(
        decoded.original,
        format!(
            "secretId={SECRET_ID}&currentTimeStamp={now}&expireTime={expire}&random={random}\
             &procedure=LongVideoPreset&classId=0\
             &sourceContext=%7B%22uploadId%22%3A%22u_42%22%7D&oneTimeValid=1\
             &vodSubAppId=1500000009&storageRegion=ap-chongqing&taskPriority=-5\
             &taskNotifyMode=Change&sessionContext=tenant%3Dacme%26user%3D7"
        )
    );
    assert_eq!(response["expires_at_unix"], json!(expire));

    // null is the same as leaving a field out.
    let (decoded, _) = signed(&app, Some(json!({"procedure": null, "class_id": null}))).await;
    assert_eq!(decoded.param("procedure"), Some("DefaultFlow"));
    assert_eq!(decoded.param("classId"), None);
}

#[tokio::test]
async fn without_a_default_procedure_only_the_required_params_are_signed() {
    let app = signing_app().await;
    let (decoded, _) = signed(&app, None).await;
    assert_eq!(
        keys(&decoded),
        ["secretId", "currentTimeStamp", "expireTime", "random"]
    );
}

#[tokio::test]
async fn invalid_requests_are_refused_with_the_fields_code() {
    let app = signing_app().await;
    let long = |n: usize| "x".repeat(n);
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"source_context": long(251)}),
            "invalid_source_context",
            "at most 250 characters",
        ),
        (
            json!({"source_context": ""}),
            "invalid_source_context",
            "must not be empty",
        ),
        (
            json!({"source_context": 42}),
            "invalid_source_context",
            "must be a string",
        ),
        (
            json!({"procedure": "P", "session_context": long(1001)}),
            "invalid_session_context",
            "at most 1000 characters",
        ),
        (
            json!({"session_context": "s"}),
            "procedure_required",
            "session_context applies only",
        ),
        (
            json!({"task_priority": 1}),
            "procedure_required",
            "task_priority applies only",
        ),
        (
            json!({"task_notify_mode": "Finish"}),
            "procedure_required",
            "task_notify_mode applies only",
        ),
        (
            json!({"procedure": "P", "task_priority": 11}),
            "invalid_task_priority",
            "from -10 to 10",
        ),
        (
            json!({"procedure": "P", "task_priority": -11}),
            "invalid_task_priority",
            "from -10 to 10",
        ),
        (
            json!({"procedure": "P", "task_priority": 1.5}),
            "invalid_task_priority",
            "whole number",
        ),
        (
            json!({"procedure": "P", "task_priority": "5"}),
            "invalid_task_priority",
            "whole number",
        ),
        (
            json!({"procedure": "P", "task_notify_mode": "finish"}),
            "invalid_task_notify_mode",
            "must be Finish, Change or None",
        ),
        (
            json!({"procedure": "P", "task_notify_mode": 1}),
            "invalid_task_notify_mode",
            "must be a string",
        ),
        (
            json!({"expire_seconds": 0}),
            "invalid_expire_seconds",
            "from 1 to 7776000",
        ),
        (
            json!({"expire_seconds": 7_776_001}),
            "invalid_expire_seconds",
            "from 1 to 7776000",
        ),
        (
            json!({"expire_seconds": -1}),
            "invalid_expire_seconds",
            "whole number",
        ),
        (
            json!({"expire_seconds": "3600"}),
            "invalid_expire_seconds",
            "whole number",
        ),
        (
            json!({"class_id": -1}),
            "invalid_class_id",
            "0 or more, got -1",
        ),
        (json!({"class_id": "a"}), "invalid_class_id", "whole number"),
        (
            json!({"class_id": 9223372036854775808u64}),
            "invalid_class_id",
            "64-bit signed",
        ),
        (
            json!({"vod_sub_app_id": -3}),
            "invalid_vod_sub_app_id",
            "a whole number",
        ),
        (
            json!({"procedure": ""}),
            "invalid_procedure",
            "must not be empty",
        ),
        (
            json!({"procedure": long(129)}),
            "invalid_procedure",
            "at most 128 characters",
        ),
        (
            json!({"procedure": "a\u{1}b"}),
            "invalid_procedure",
            "control characters",
        ),
        (
            json!({"procedure": " P"}),
            "invalid_procedure",
            "white space",
        ),
        (
            json!({"storage_region": "AP-Singapore"}),
            "invalid_storage_region",
            "such as ap-singapore",
        ),
        (
            json!({"storage_region": "ap_singapore"}),
            "invalid_storage_region",
            "such as ap-singapore",
        ),
        (
            json!({"storage_region": ""}),
            "invalid_storage_region",
            "must not be empty",
        ),
        (
            json!({"one_time_valid": 1}),
            "invalid_one_time_valid",
            "true or false",
        ),
        (
            json!({"sourceContext": "camelCase is not accepted"}),
            "invalid_json_body",
            "unknown field \"sourceContext\"",
        ),
        (json!([1, 2]), "invalid_json_body", "must be a JSON object"),
        (json!("text"), "invalid_json_body", "must be a JSON object"),
    ];
    for (body, code, message) in cases {
        let (status, answer) = app.send_json(Method::POST, PATH, Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(error_code(&answer), code, "{body}: {answer}");
        let text = answer["error"]["message"].as_str().expect("message");
        assert!(text.contains(message), "{body}: {text}");
    }

    let response = app
        .client
        .post(format!("{}{PATH}", app.address))
        .bearer_auth(API_TOKEN)
        .header("content-type", "application/json")
        .body("{\"procedure\": ")
        .send()
        .await
        .expect("sent");
    let (status, answer) = json_of(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&answer), "invalid_json_body");
}

#[tokio::test]
async fn without_credentials_the_deployment_says_it_is_not_configured() {
    let app = spawn_app_with(|_| {}).await;
    for body in [None, Some(json!({"class_id": "not even valid"}))] {
        let (status, answer) = app.send_json(Method::POST, PATH, body).await;
        assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{answer}");
        assert_eq!(error_code(&answer), "upload_signing_not_configured");
        let message = answer["error"]["message"].as_str().expect("message");
        assert!(
            message.contains("VODHOOK_TENCENT_SECRET_ID")
                && message.contains("VODHOOK_TENCENT_SECRET_KEY"),
            "{message}"
        );
    }
    let response = app
        .client
        .post(format!("{}{PATH}", app.address))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "the token is checked first"
    );
}

#[tokio::test]
async fn a_bad_default_is_the_servers_problem() {
    let app = spawn_app_with(|settings| {
        with_credentials(settings);
        settings.vod.default_storage_region = Some("Singapore".to_owned());
    })
    .await;
    let (status, answer) = app.send_json(Method::POST, PATH, None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{answer}");
    assert_eq!(error_code(&answer), "upload_signing_misconfigured");
    let message = answer["error"]["message"].as_str().expect("message");
    assert!(message.contains("VODHOOK_VOD_STORAGE_REGION"), "{message}");
}

#[tokio::test]
async fn one_time_signatures_carry_distinct_randoms() {
    let app = signing_app().await;
    let mut randoms = std::collections::HashSet::new();
    for _ in 0..5 {
        let (decoded, _) = signed(&app, Some(json!({"one_time_valid": true}))).await;
        assert_eq!(decoded.param("oneTimeValid"), Some("1"));
        randoms.insert(decoded.param("random").expect("random").to_owned());
    }
    assert_eq!(randoms.len(), 5, "{randoms:?}");
    let (decoded, _) = signed(&app, Some(json!({"one_time_valid": false}))).await;
    assert_eq!(decoded.param("oneTimeValid"), None, "0 is VOD's default");
}

/// `vodhook sign-upload` with no VOD settings inherited from whoever runs the tests.
fn sign_upload(args: &[&str]) -> std::process::Command {
    let mut command = vodhook_command(&[&["sign-upload"], args].concat());
    for var in [
        "VODHOOK_TENCENT_SECRET_ID",
        "VODHOOK_TENCENT_SECRET_KEY",
        "VODHOOK_VOD_PROCEDURE",
        "VODHOOK_VOD_STORAGE_REGION",
        "VODHOOK_VOD_SUB_APP_ID",
        "VODHOOK_VOD_MODE",
        "VODHOOK_VOD_SIGN_KEY",
    ] {
        command.env_remove(var);
    }
    command
}

async fn run(command: std::process::Command) -> (bool, String, String) {
    let output = tokio::process::Command::from(command)
        .output()
        .await
        .expect("run vodhook");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_signs_with_the_same_rules_and_defaults() {
    let mut command = sign_upload(&[
        "--source-context",
        "user 7",
        "--class-id",
        "3",
        "--one-time",
        "--expire-seconds",
        "600",
        "--session-context",
        "s=1",
        "--task-priority",
        "-10",
        "--task-notify-mode",
        "None",
    ]);
    command
        .env("VODHOOK_TENCENT_SECRET_ID", SECRET_ID)
        .env("VODHOOK_TENCENT_SECRET_KEY", SECRET_KEY)
        .env("VODHOOK_VOD_PROCEDURE", "DefaultFlow")
        .env("VODHOOK_VOD_STORAGE_REGION", "ap-singapore")
        .env("VODHOOK_VOD_SUB_APP_ID", "1500000001");
    let (ok, stdout, stderr) = run(command).await;
    assert!(ok, "{stderr}");
    let decoded = assert_signed_with_key(stdout.trim());
    assert_eq!(stdout.lines().count(), 1, "only the signature on stdout");
    let now: i64 = decoded
        .param("currentTimeStamp")
        .and_then(|v| v.parse().ok())
        .expect("now");
    assert_eq!(
        decoded
            .original
            .split_once("&procedure=")
            .map(|(_, rest)| rest),
        Some(
            "DefaultFlow&classId=3&sourceContext=user%207&oneTimeValid=1\
             &vodSubAppId=1500000001&storageRegion=ap-singapore&taskPriority=-10\
             &taskNotifyMode=None&sessionContext=s%3D1"
        ),
        "{}",
        decoded.original
    );
    assert_eq!(
        decoded.param("expireTime"),
        Some((now + 600).to_string().as_str())
    );
    assert!(stderr.contains("expires at "), "{stderr}");
    assert!(!stdout.contains(SECRET_KEY) && !stderr.contains(SECRET_KEY));

    let mut command = sign_upload(&[
        "--procedure",
        "Explicit",
        "--storage-region",
        "eu-frankfurt",
    ]);
    command
        .env("VODHOOK_TENCENT_SECRET_ID", SECRET_ID)
        .env("VODHOOK_TENCENT_SECRET_KEY", SECRET_KEY)
        .env("VODHOOK_VOD_PROCEDURE", "DefaultFlow");
    let (ok, stdout, stderr) = run(command).await;
    assert!(ok, "{stderr}");
    let decoded = assert_signed_with_key(stdout.trim());
    assert_eq!(decoded.param("procedure"), Some("Explicit"));
    assert_eq!(decoded.param("storageRegion"), Some("eu-frankfurt"));
}

#[tokio::test]
async fn the_cli_fails_clearly() {
    let (ok, stdout, stderr) = run(sign_upload(&[])).await;
    assert!(!ok);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("VODHOOK_TENCENT_SECRET_ID")
            && stderr.contains("VODHOOK_TENCENT_SECRET_KEY"),
        "{stderr}"
    );

    let cases: [(&[&str], &str); 5] = [
        (&["--task-priority", "3"], "task_priority applies only"),
        (
            &["--expire-seconds", "0"],
            "expire_seconds must be from 1 to 7776000",
        ),
        (
            &["--storage-region", "Mars"],
            "storage_region must be a region",
        ),
        (
            &["--procedure", "P", "--task-notify-mode", "Sometimes"],
            "must be Finish, Change or None",
        ),
        (&["--class-id=-1"], "invalid value '-1' for '--class-id"),
    ];
    for (args, expected) in cases {
        let mut command = sign_upload(args);
        command
            .env("VODHOOK_TENCENT_SECRET_ID", SECRET_ID)
            .env("VODHOOK_TENCENT_SECRET_KEY", SECRET_KEY);
        let (ok, stdout, stderr) = run(command).await;
        assert!(!ok, "{args:?}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
