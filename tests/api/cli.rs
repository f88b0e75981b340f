use crate::helpers::{spawn_app, vodhook_command, ServerProcess, TestDb, API_TOKEN};
use reqwest::StatusCode;

/// Runs a command without blocking the runtime that serves the test app's database connections.
async fn run(command: &mut std::process::Command) -> (bool, String, String) {
    let output = tokio::process::Command::from(std::mem::replace(
        command,
        std::process::Command::new("true"),
    ))
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
async fn invalid_configuration_stops_start_up_naming_the_setting() {
    let cases = [
        ("DATABASE_URL", "mysql://root@localhost/x"),
        ("VODHOOK_LISTEN", "not-an-address"),
        ("VODHOOK_API_TOKENS", "short"),
        (
            "VODHOOK_CALLBACK_TOKEN",
            "has spaces in it, which a URL cannot",
        ),
        ("VODHOOK_MAX_BODY_BYTES", "four megabytes"),
        ("VODHOOK_DB_POOL_SIZE", "0"),
        ("VODHOOK_LOG_FORMAT", "xml"),
    ];
    for (var, value) in cases {
        let (ok, _, stderr) = run(vodhook_command(&["serve"])
            .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
            .env(var, value))
        .await;
        assert!(!ok, "{var}={value} must stop start-up");
        assert!(stderr.contains(var), "{var}: {stderr}");
    }
}

#[tokio::test]
async fn a_config_file_is_read_and_the_environment_overrides_it() {
    let path = std::env::temp_dir().join(format!("vodhook-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:0\"\nmax_body_bytes = \"many\"\n",
    )
    .expect("write");
    let config = path.to_str().expect("utf-8 path");
    let (ok, _, stderr) = run(&mut vodhook_command(&["--config", config, "migrate"])).await;
    assert!(!ok);
    assert!(
        stderr.contains("max_body_bytes"),
        "the file's bad value is reported: {stderr}"
    );

    // The environment wins: the file's bad value is overridden, and the command runs (on the
    // embedded SQLite store in VODHOOK_DATA_DIR, as no DATABASE_URL is set).
    let data_dir = tempfile::tempdir().expect("temp dir");
    let (ok, _, stderr) = run(vodhook_command(&["--config", config, "migrate"])
        .env("VODHOOK_MAX_BODY_BYTES", "1024")
        .env("VODHOOK_DATA_DIR", data_dir.path()))
    .await;
    assert!(ok, "{stderr}");
    assert!(data_dir.path().join("vodhook.db").exists());

    std::fs::write(&path, "unknown_setting = 1\n").expect("write");
    let (ok, _, stderr) = run(&mut vodhook_command(&["--config", config, "migrate"])).await;
    assert!(!ok);
    assert!(stderr.contains("unknown_setting"), "{stderr}");
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn token_commands_create_list_and_revoke() {
    let app = spawn_app().await;
    let cli = |args: &[&str]| {
        let mut command = vodhook_command(args);
        command.env("DATABASE_URL", &app.db.url);
        command
    };

    let (ok, token, stderr) = run(&mut cli(&["token", "create", "--name", "backend"])).await;
    assert!(ok, "{stderr}");
    let token = token.trim().to_owned();
    assert!(token.starts_with("vh_"), "{token}");
    assert_eq!(
        app.get_with_token("/v1/uploads", Some(&token))
            .await
            .status(),
        StatusCode::OK
    );

    let (ok, _, _) = run(&mut cli(&["token", "create", "--name", "backend"])).await;
    assert!(!ok, "an active name cannot be reused");

    let (ok, listing, _) = run(&mut cli(&["token", "list"])).await;
    assert!(ok);
    assert!(
        listing.contains("backend") && listing.contains("active"),
        "{listing}"
    );
    assert!(
        !listing.contains(&token),
        "the token itself is never shown again"
    );

    let (ok, _, stderr) = run(&mut cli(&["token", "revoke", "backend"])).await;
    assert!(ok, "{stderr}");
    assert_eq!(
        app.get_with_token("/v1/uploads", Some(&token))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let (ok, _, _) = run(&mut cli(&["token", "revoke", "backend"])).await;
    assert!(!ok, "nothing left to revoke");
}

#[tokio::test]
async fn simulate_posts_a_realistic_callback() {
    let app = spawn_app().await;
    let url = format!("{}/v1/callbacks/vod", app.address);
    let (ok, stdout, stderr) = run(&mut vodhook_command(&[
        "simulate",
        "--url",
        &url,
        "--source-context",
        "user-7",
    ]))
    .await;
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("200"), "{stdout}");
    assert!(stdout.contains("\"duplicate\":false"), "{stdout}");
    let uploads = app.list_all("/v1/uploads?source_context=user-7", 10).await;
    assert_eq!(uploads.len(), 1);
    assert!(uploads[0]["file_id"]
        .as_str()
        .is_some_and(|f| f.len() >= 19));

    let (ok, stdout, _) = run(&mut vodhook_command(&[
        "simulate",
        "--url",
        &url,
        "--event",
        "new-file-upload-v2",
        "--file-id",
        "31337",
    ]))
    .await;
    assert!(ok, "{stdout}");
    let (_, upload) = app.get("/v1/uploads/31337").await;
    assert_eq!(upload["source_type"], "ClientUpload");

    let fixture = format!(
        "{}/fixtures/vod/v3-filedeleted.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let (ok, stdout, _) = run(&mut vodhook_command(&[
        "simulate", "--url", &url, "--file", &fixture,
    ]))
    .await;
    assert!(ok, "{stdout}");
    assert_eq!(
        app.list_all("/v1/events?event_type=FileDeleted", 10)
            .await
            .len(),
        1
    );

    let (ok, stdout, _) = run(&mut vodhook_command(&[
        "simulate",
        "--url",
        &url,
        "--file",
        "/etc/hostname",
    ]))
    .await;
    assert!(!ok, "a 400 answer fails the command: {stdout}");
    assert!(stdout.starts_with("400"), "{stdout}");
}

#[tokio::test]
async fn secrets_stay_out_of_logs() {
    let db = TestDb::create().await;
    let callback_token = "callback-secret-0123456789";
    // Postgres here trusts local connections, so any password works and must not be logged.
    let url_with_password = db
        .url
        .replacen("postgres@", "postgres:db-password-secret@", 1);
    let server = ServerProcess::start(&[
        ("DATABASE_URL", &url_with_password),
        ("VODHOOK_CALLBACK_TOKEN", callback_token),
        ("RUST_LOG", "trace"),
    ])
    .await;
    let client = reqwest::Client::new();
    let body = crate::helpers::new_file_upload("1", None);
    let answer = client
        .post(format!(
            "{}/v1/callbacks/vod/{callback_token}",
            server.address
        ))
        .body(body)
        .send()
        .await
        .expect("sent");
    assert_eq!(answer.status(), StatusCode::OK);
    let answer = client
        .get(format!("{}/v1/uploads/1", server.address))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(answer.status(), StatusCode::OK);
    let answer = client
        .get(format!("{}/v1/uploads/1", server.address))
        .bearer_auth("wrong-token-0123456789")
        .send()
        .await
        .expect("sent");
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);

    let log = server.log();
    assert!(
        log.contains("callback stored"),
        "the log was captured: {log}"
    );
    for secret in [
        callback_token,
        API_TOKEN,
        "wrong-token-0123456789",
        "db-password-secret",
    ] {
        assert!(!log.contains(secret), "{secret} appears in the log");
    }
}

#[tokio::test]
async fn migrate_creates_a_missing_database_and_is_repeatable() {
    let db = TestDb::create().await;
    db.drop_now().await;
    for _ in 0..2 {
        let (ok, stdout, stderr) =
            run(vodhook_command(&["migrate"]).env("DATABASE_URL", &db.url)).await;
        assert!(ok, "{stderr}");
        assert!(stdout.contains("migrations applied"), "{stdout}");
    }
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .expect("database exists now");
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('events', 'uploads', 'api_tokens')",
    )
    .fetch_one(&mut conn)
    .await
    .expect("count");
    assert_eq!(tables, 3);
}

#[tokio::test]
async fn a_broken_config_file_is_reported_without_echoing_its_content() {
    let path = std::env::temp_dir().join(format!("vodhook-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&path, "callback_token = \"TopSecretCallbackToken123\n").expect("write");
    let (ok, _, stderr) = run(&mut vodhook_command(&[
        "--config",
        path.to_str().expect("utf-8"),
        "migrate",
    ]))
    .await;
    let _ = std::fs::remove_file(&path);
    assert!(!ok);
    assert!(stderr.contains("--config"), "{stderr}");
    assert!(stderr.contains("line 1"), "says where: {stderr}");
    assert!(!stderr.contains("TopSecret"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_deliveries_then_exits() {
    use crate::receiver::{Reply, TestReceiver};
    let db = TestDb::create().await;
    let receiver = TestReceiver::start().await;
    receiver.answer_with(Reply {
        delay: std::time::Duration::from_secs(2),
        ..Reply::status(200)
    });
    let mut server = ServerProcess::start(&[
        ("DATABASE_URL", &db.url),
        ("VODHOOK_ALLOW_PRIVATE_TARGETS", "127.0.0.1"),
    ])
    .await;
    let client = reqwest::Client::new();
    let created: serde_json::Value = client
        .post(format!("{}/v1/subscriptions", server.address))
        .bearer_auth(API_TOKEN)
        .json(&serde_json::json!({"url": receiver.url}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert!(created["id"].is_string(), "{created}");
    let answer = client
        .post(format!("{}/v1/callbacks/vod", server.address))
        .body(crate::helpers::new_file_upload("1", None))
        .send()
        .await
        .expect("sent");
    assert_eq!(answer.status(), StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;

    let pid = server.child.id().to_string();
    let signalled = std::time::Instant::now();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let status = tokio::task::spawn_blocking(move || {
        let status = server.child.wait().expect("wait");
        (status, server)
    })
    .await
    .expect("join");
    assert!(
        status.0.success(),
        "clean exit: {:?}\n{}",
        status.0,
        status.1.log()
    );
    assert!(
        signalled.elapsed() < std::time::Duration::from_secs(10),
        "no waiting past the grace period"
    );
    assert_eq!(
        receiver.accepted().len(),
        1,
        "the in-flight delivery was finished"
    );

    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .expect("connect");
    let status: String = sqlx::query_scalar("SELECT status FROM deliveries")
        .fetch_one(&mut conn)
        .await
        .expect("row");
    assert_eq!(status, "succeeded", "and settled before exit");
}
