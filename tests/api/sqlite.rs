//! The embedded SQLite store end to end: a zero-config start, its data across restarts, its one
//! owner, and fan-out on it.

use crate::fanout::{verify, WAIT};
use crate::helpers::{new_file_upload, spawn_app_with, vodhook_command, ServerProcess};
use crate::receiver::TestReceiver;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::Value;
use std::time::Duration;

/// The token a first start printed, read from its output.
fn printed_token(log: &str) -> Option<String> {
    let after = log.split("shown only this once").nth(1)?;
    after
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with(vodhook::domain::ApiToken::PREFIX))
        .map(str::to_owned)
}

async fn get_json(address: &str, path: &str, token: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .get(format!("{address}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn terminate(server: &mut ServerProcess) {
    let pid = server.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let status = server.child.wait().expect("wait");
    assert!(status.success(), "clean exit: {status}");
}

#[tokio::test]
async fn without_database_url_vodhook_runs_on_sqlite_and_keeps_its_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    // No DATABASE_URL and no API token: the embedded store, and a token made on first start.
    let no_tokens = [("VODHOOK_API_TOKENS", "")];
    let mut server = ServerProcess::start_in(Some(dir.path()), &no_tokens).await;
    let log = server.log();
    let database = dir.path().join("vodhook.db");
    assert!(database.exists(), "vodhook.db in the working directory");
    assert!(
        log.contains(&format!("sqlite at {}", database.display())),
        "the start-up log names the store: {log}"
    );
    let token = printed_token(&log).unwrap_or_else(|| panic!("a printed token: {log}"));

    let file_id = "5285890799999001";
    let response = reqwest::Client::new()
        .post(format!("{}/v1/callbacks/vod", server.address))
        .body(new_file_upload(file_id, Some("user-7")))
        .send()
        .await
        .expect("callback");
    assert_eq!(response.status(), StatusCode::OK);
    let (status, upload) =
        get_json(&server.address, &format!("/v1/uploads/{file_id}"), &token).await;
    assert_eq!(status, StatusCode::OK, "{upload}");
    assert_eq!(upload["source_context"], "user-7");
    let (status, _) = get_json(&server.address, "/v1/uploads", "not-the-token-at-all").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Short commands may open the database beside its owner.
    let listed = tokio::process::Command::from({
        let mut command = vodhook_command(&["token", "list"]);
        command.current_dir(dir.path());
        command
    })
    .output()
    .await
    .expect("token list");
    assert!(listed.status.success());
    assert!(String::from_utf8_lossy(&listed.stdout).contains("first-run"));

    // A second server on the same file is refused, with the reason.
    let second = tokio::process::Command::from({
        let mut command = vodhook_command(&["serve"]);
        command
            .current_dir(dir.path())
            .env("VODHOOK_LISTEN", "127.0.0.1:0");
        command
    })
    .output()
    .await
    .expect("second serve");
    assert!(!second.status.success(), "a second owner must be refused");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("already served by process") && stderr.contains("Postgres"),
        "{stderr}"
    );

    // So is a second server reaching the same file through a link.
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let alias = elsewhere.path().join("alias.db");
    std::os::unix::fs::symlink(&database, &alias).expect("symlink");
    let through_link = tokio::process::Command::from({
        let mut command = vodhook_command(&["serve"]);
        command
            .env("DATABASE_URL", format!("sqlite://{}", alias.display()))
            .env("VODHOOK_LISTEN", "127.0.0.1:0");
        command
    })
    .output()
    .await
    .expect("serve through a link");
    assert!(!through_link.status.success(), "a link is the same file");

    // The data is the owner's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&database)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "vodhook.db is private: {mode:o}");

    terminate(&mut server);
    let restarted = ServerProcess::start_in(Some(dir.path()), &no_tokens).await;
    assert!(
        printed_token(&restarted.log()).is_none(),
        "a token exists now, so no new one: {}",
        restarted.log()
    );
    let (status, again) = get_json(
        &restarted.address,
        &format!("/v1/uploads/{file_id}"),
        &token,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the data and the token survive a restart"
    );
    assert_eq!(again, upload);
}

#[tokio::test]
async fn fan_out_runs_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("fanout.db").display());
    let app =
        spawn_app_with(|settings| settings.database_url = Some(SecretString::from(url))).await;
    assert!(app.store.describe().starts_with("sqlite"));
    let receiver = TestReceiver::start().await;
    let (_, secret) = app.subscribe(&receiver.url, &["NewFileUpload"]).await;

    let (status, first) = app
        .callback(new_file_upload("5285890799999002", Some("u-1")))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, repeat) = app
        .callback(new_file_upload("5285890799999002", Some("u-1")))
        .await;
    assert_eq!(repeat["duplicate"], true);
    let accepted = receiver.wait_for_accepted(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 1, "the repeat is not delivered");
    verify(&secret, &accepted[0]);
    let body = accepted[0].json();
    assert_eq!(body["id"], first["event_id"]);
    assert_eq!(body["data"]["upload"]["source_context"], "u-1");

    let deliveries = app.list_all("/v1/deliveries?status=succeeded", 10).await;
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
}

/// Runs a vodhook command in `dir` with `env`, returning (success, stdout, stderr).
async fn run_in(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (bool, String, String) {
    let mut command = vodhook_command(args);
    command.current_dir(dir).envs(env.iter().copied());
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
async fn commands_refuse_what_would_lose_or_scatter_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Token commands where no database exists do not start an empty one.
    let (ok, _, stderr) = run_in(dir.path(), &["token", "create", "--name", "x"], &[]).await;
    assert!(!ok);
    assert!(stderr.contains("no vodhook database"), "{stderr}");
    assert!(!dir.path().join("vodhook.db").exists());
    // An in-memory database would be gone on restart.
    for url in ["sqlite::memory:", "sqlite://x.db?mode=memory", "sqlite://"] {
        let (ok, _, stderr) = run_in(dir.path(), &["migrate"], &[("DATABASE_URL", url)]).await;
        assert!(!ok, "{url} must be refused");
        assert!(
            stderr.contains("in-memory") || stderr.contains("names no file"),
            "{url}: {stderr}"
        );
    }
    // A data directory is a path, whatever characters it has.
    let odd = dir.path().join("a?b%41");
    let (ok, _, stderr) = run_in(
        dir.path(),
        &["migrate"],
        &[("VODHOOK_DATA_DIR", odd.to_str().expect("utf-8"))],
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(odd.join("vodhook.db").is_file());
}

#[tokio::test]
async fn revoking_every_token_closes_the_api_for_good() {
    let dir = tempfile::tempdir().expect("temp dir");
    let no_tokens = [("VODHOOK_API_TOKENS", "")];
    let mut server = ServerProcess::start_in(Some(dir.path()), &no_tokens).await;
    let token = printed_token(&server.log()).expect("first-run token");
    let (ok, _, stderr) = run_in(dir.path(), &["token", "revoke", "first-run"], &[]).await;
    assert!(ok, "{stderr}");
    let (status, _) = get_json(&server.address, "/v1/uploads", &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    terminate(&mut server);
    let restarted = ServerProcess::start_in(Some(dir.path()), &no_tokens).await;
    assert!(
        printed_token(&restarted.log()).is_none(),
        "no new token once one was stored: {}",
        restarted.log()
    );
}
