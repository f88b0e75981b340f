//! Test harness: a fresh database per test, the application on port 0, a typed HTTP client.

use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::Value;
use std::net::TcpListener;
use vodhook::config::{LogFormat, Settings};
use vodhook::fanout::{DeliveryWorker, PrivateTargets};
use vodhook::startup::{Application, ApplicationBuilder};
use vodhook::storage::{Access, Store};

#[path = "../common/test_db.rs"]
mod test_db;
pub use test_db::TestDb;

pub const API_TOKEN: &str = "test-api-token-0123456789";

pub struct TestApp {
    pub address: String,
    pub db: TestDb,
    pub store: Store,
    pub client: reqwest::Client,
    /// The app's delivery worker (running unless the settings turned it off).
    pub worker: DeliveryWorker,
    pub settings: Settings,
}

pub fn test_settings(db: &TestDb) -> Settings {
    Settings {
        database_url: Some(SecretString::from(db.url.clone())),
        listen: "127.0.0.1:0".into(),
        api_tokens: vec![SecretString::from(API_TOKEN)],
        db_pool_size: 5,
        // Test subscribers listen on loopback.
        private_targets: PrivateTargets::Allowed,
        ..Settings::default()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customise: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_custom_app(customise, |builder| builder).await
}

/// The app with changed settings and a changed builder (handlers, clock).
pub async fn spawn_custom_app(
    customise: impl FnOnce(&mut Settings),
    build: impl FnOnce(ApplicationBuilder) -> ApplicationBuilder,
) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        vodhook::telemetry::init(LogFormat::Text);
    }
    let db = TestDb::create().await;
    let mut settings = test_settings(&db);
    customise(&mut settings);
    let store = vodhook::startup::connect_and_migrate(&settings, Access::Owner)
        .await
        .expect("store");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let builder = Application::builder(settings.clone())
        .store(store.clone())
        .listener(listener);
    let app = build(builder).build().await.expect("build app");
    let address = format!("http://127.0.0.1:{}", app.port());
    let worker = app.worker();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        db,
        store,
        client: reqwest::Client::new(),
        worker,
        settings,
    }
}

impl TestApp {
    pub async fn post_callback(&self, body: impl Into<Vec<u8>>) -> reqwest::Response {
        self.post_raw("/v1/callbacks/vod", body).await
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<Vec<u8>>) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.address))
            .header("content-type", "application/json")
            .header("user-agent", "vod-test-agent/1.0")
            .body(body.into())
            .send()
            .await
            .expect("request sent")
    }

    /// Posts a callback and returns status and JSON answer.
    pub async fn callback(&self, body: impl Into<Vec<u8>>) -> (StatusCode, Value) {
        json_of(self.post_callback(body).await).await
    }

    pub async fn get_with_token(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request sent")
    }

    /// An authenticated request with a JSON body, as status and JSON (null when the body is empty).
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(API_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates a subscription to `url` and returns (id, secret).
    pub async fn subscribe(&self, url: &str, event_types: &[&str]) -> (String, String) {
        let body = serde_json::json!({"url": url, "event_types": event_types});
        let (status, body) = self
            .send_json(reqwest::Method::POST, "/v1/subscriptions", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (
            body["id"].as_str().expect("id").to_owned(),
            body["secret"].as_str().expect("secret").to_owned(),
        )
    }

    /// An authenticated GET, as status and JSON.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        json_of(self.get_with_token(path, Some(API_TOKEN)).await).await
    }

    /// Every item of a list endpoint, page by page with `limit`.
    pub async fn list_all(&self, path: &str, limit: u32) -> Vec<Value> {
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{path}{separator}limit={limit}");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let (status, page) = self.get(&url).await;
            assert_eq!(status, StatusCode::OK, "{url}: {page}");
            items.extend(page["data"].as_array().expect("data").iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return items,
            }
        }
    }
}

pub async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    let json =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text:?}"));
    (status, json)
}

/// Asserts the uniform error body and returns its code.
pub fn error_code(body: &Value) -> &str {
    let error = body
        .get("error")
        .unwrap_or_else(|| panic!("no error object in {body}"));
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "no message in {body}"
    );
    assert_eq!(
        error.as_object().map(|o| o.len()),
        Some(2),
        "error has exactly code and message: {body}"
    );
    error["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no code in {body}"))
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/vod/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A v3 NewFileUpload as VOD would send it.
pub fn new_file_upload(file_id: &str, source_context: Option<&str>) -> Vec<u8> {
    vodhook::simulate::body(
        vodhook::simulate::SimulatedEvent::NewFileUpload,
        Some(file_id),
        source_context,
    )
}

/// A real `vodhook serve` process, its output captured in a file.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub address: String,
    pub log_path: std::path::PathBuf,
}

/// The environment a child `vodhook` starts from: nothing of ours inherited from the caller.
pub fn vodhook_command(args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_vodhook"));
    command.args(args);
    for var in [
        "DATABASE_URL",
        "VODHOOK_DATA_DIR",
        "VODHOOK_LISTEN",
        "VODHOOK_API_TOKENS",
        "VODHOOK_CALLBACK_TOKEN",
        "VODHOOK_MAX_BODY_BYTES",
        "VODHOOK_DB_POOL_SIZE",
        "VODHOOK_LOG_FORMAT",
        "VODHOOK_VOD_SIGN_KEY",
        "VODHOOK_VOD_MODE",
        "VODHOOK_TENCENT_SECRET_ID",
        "VODHOOK_TENCENT_SECRET_KEY",
        "VODHOOK_VOD_SUB_APP_ID",
        "VODHOOK_VOD_API_ENDPOINT",
        "VODHOOK_VOD_PROCEDURE",
        "VODHOOK_VOD_STORAGE_REGION",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl ServerProcess {
    /// Starts `vodhook serve` with `env` and waits until it answers /healthz.
    pub async fn start(env: &[(&str, &str)]) -> ServerProcess {
        ServerProcess::start_in(None, env).await
    }

    /// `start`, in the working directory `dir` (where SQLite's default file goes).
    pub async fn start_in(dir: Option<&std::path::Path>, env: &[(&str, &str)]) -> ServerProcess {
        let port = free_port();
        let log_path =
            std::env::temp_dir().join(format!("vodhook-test-{}.log", uuid::Uuid::new_v4()));
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut command = vodhook_command(&["serve"]);
        command
            .env("VODHOOK_LISTEN", format!("127.0.0.1:{port}"))
            .env("VODHOOK_API_TOKENS", API_TOKEN)
            .envs(env.iter().copied())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let mut child = command.spawn().expect("spawn vodhook");
        let address = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(response) = client.get(format!("{address}/healthz")).send().await {
                if response.status().is_success() {
                    return ServerProcess {
                        child,
                        address,
                        log_path,
                    };
                }
            }
            if let Some(status) = child.try_wait().expect("wait") {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("vodhook exited with {status}: {log}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("vodhook did not start within 30 s");
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("reap");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// A second delivery worker for the app's database, as another process would run it.
pub fn worker_for(
    app: &TestApp,
    store: Store,
    clock: std::sync::Arc<dyn vodhook::fanout::Clock>,
) -> DeliveryWorker {
    let settings = vodhook::fanout::WorkerSettings {
        policy: app.settings.retry_policy.clone(),
        attempt_timeout: app.settings.delivery_timeout,
        concurrency: app.settings.worker_concurrency,
        poll_interval: std::time::Duration::from_millis(200),
        shutdown_grace: std::time::Duration::from_secs(5),
    };
    let http = vodhook::fanout::HttpTarget::new(
        app.settings.delivery_timeout,
        app.settings.private_targets.clone(),
    )
    .expect("client");
    DeliveryWorker::new(
        store,
        clock,
        settings,
        http,
        Default::default(),
        None,
        vodhook::metrics::Metrics::new(),
    )
}
