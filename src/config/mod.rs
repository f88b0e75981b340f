//! Settings: an optional TOML file overlaid by environment variables, validated once at start-up.

mod vod;

use vod::RawVod;
pub use vod::{TencentCredentials, VodMode, VodSettings};

use crate::fanout::{PrivateTargets, RetryPolicy, SecretCipher};
use crate::storage::DatabaseLocation;
use figment::{
    providers::{Format, Serialized, Toml},
    Figment,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Validated settings. Secrets are `SecretString`, so `Debug` prints them redacted.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `postgres://...` or `sqlite://...`; without it, SQLite in `data_dir`.
    pub database_url: Option<SecretString>,
    /// Where the embedded SQLite database lives when `database_url` is not set.
    pub data_dir: PathBuf,
    pub listen: String,
    pub api_tokens: Vec<SecretString>,
    pub callback_token: Option<SecretString>,
    pub max_body_bytes: usize,
    /// Callback bodies held in memory while they wait to be committed, at most; beyond it
    /// callbacks get 503 with Retry-After.
    pub ingest_buffer_bytes: usize,
    pub db_pool_size: u32,
    pub log_format: LogFormat,
    /// Encrypts subscription secrets at rest when set.
    pub secret_cipher: Option<SecretCipher>,
    pub private_targets: PrivateTargets,
    pub delivery_timeout: Duration,
    pub retry_policy: RetryPolicy,
    pub worker_concurrency: usize,
    /// Whether this process runs the delivery worker (API-only processes can turn it off).
    pub worker_enabled: bool,
    pub shutdown_grace: Duration,
    pub vod: VodSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A setting that could not be used, named the way the operator set it.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {setting}: {problem}")]
pub struct ConfigError {
    pub setting: String,
    pub problem: String,
}

impl ConfigError {
    fn new(setting: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            setting: setting.to_owned(),
            problem: problem.into(),
        }
    }
}

/// What the file and the environment may set; every value is read as text (environment values
/// are text anyway) and checked in `Settings::validate`, so each error names its setting.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawSettings {
    database_url: Option<Text>,
    data_dir: Option<Text>,
    listen: Option<Text>,
    api_tokens: Option<TextList>,
    callback_token: Option<Text>,
    max_body_bytes: Option<Text>,
    ingest_buffer_bytes: Option<Text>,
    db_pool_size: Option<Text>,
    log_format: Option<Text>,
    secret_key: Option<Text>,
    allow_private_targets: Option<Text>,
    delivery_timeout_secs: Option<Text>,
    retry_schedule: Option<Text>,
    worker_concurrency: Option<Text>,
    worker: Option<Text>,
    shutdown_grace_secs: Option<Text>,
    vod_sign_key: Option<Text>,
    vod_sign_skew_secs: Option<Text>,
    vod_mode: Option<Text>,
    tencent_secret_id: Option<Text>,
    tencent_secret_key: Option<Text>,
    vod_sub_app_id: Option<Text>,
    vod_api_endpoint: Option<Text>,
    vod_procedure: Option<Text>,
    vod_storage_region: Option<Text>,
}

/// A scalar read as text, whether the TOML file or figment's env parser made it a number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Text {
    String(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl Text {
    fn into_string(self) -> String {
        match self {
            Text::String(s) => s,
            Text::Integer(i) => i.to_string(),
            Text::Float(f) => f.to_string(),
            Text::Bool(b) => b.to_string(),
        }
    }
}

/// A list given as a TOML array or as comma-separated text.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TextList {
    List(Vec<Text>),
    One(Text),
}

impl TextList {
    fn into_items(self) -> Vec<String> {
        match self {
            TextList::List(items) => items.into_iter().map(Text::into_string).collect(),
            TextList::One(text) => text.into_string().split(',').map(str::to_owned).collect(),
        }
    }
}

/// The environment variables vodhook reads, and the TOML keys they override.
const ENV_NAMES: [(&str, &str); 25] = [
    ("database_url", "DATABASE_URL"),
    ("data_dir", "VODHOOK_DATA_DIR"),
    ("listen", "VODHOOK_LISTEN"),
    ("api_tokens", "VODHOOK_API_TOKENS"),
    ("callback_token", "VODHOOK_CALLBACK_TOKEN"),
    ("max_body_bytes", "VODHOOK_MAX_BODY_BYTES"),
    ("ingest_buffer_bytes", "VODHOOK_INGEST_BUFFER_BYTES"),
    ("db_pool_size", "VODHOOK_DB_POOL_SIZE"),
    ("log_format", "VODHOOK_LOG_FORMAT"),
    ("secret_key", "VODHOOK_SECRET_KEY"),
    ("allow_private_targets", "VODHOOK_ALLOW_PRIVATE_TARGETS"),
    ("delivery_timeout_secs", "VODHOOK_DELIVERY_TIMEOUT_SECS"),
    ("retry_schedule", "VODHOOK_RETRY_SCHEDULE"),
    ("worker_concurrency", "VODHOOK_WORKER_CONCURRENCY"),
    ("worker", "VODHOOK_WORKER"),
    ("shutdown_grace_secs", "VODHOOK_SHUTDOWN_GRACE_SECS"),
    ("vod_sign_key", "VODHOOK_VOD_SIGN_KEY"),
    ("vod_sign_skew_secs", "VODHOOK_VOD_SIGN_SKEW_SECS"),
    ("vod_mode", "VODHOOK_VOD_MODE"),
    ("tencent_secret_id", "VODHOOK_TENCENT_SECRET_ID"),
    ("tencent_secret_key", "VODHOOK_TENCENT_SECRET_KEY"),
    ("vod_sub_app_id", "VODHOOK_VOD_SUB_APP_ID"),
    ("vod_api_endpoint", "VODHOOK_VOD_API_ENDPOINT"),
    ("vod_procedure", "VODHOOK_VOD_PROCEDURE"),
    ("vod_storage_region", "VODHOOK_VOD_STORAGE_REGION"),
];

fn setting_name(key: &str) -> String {
    match ENV_NAMES.iter().find(|(k, _)| *k == key) {
        Some((_, env)) => format!("{env} (`{key}` in the config file)"),
        None => format!("`{key}` in the config file"),
    }
}

impl Settings {
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:8080";
    pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
    /// A pool a few times the cores: more connections than the machine can run at once only
    /// time-slice the same CPU, and a request waiting its turn for a connection waits less
    /// than one sliced among many (measured: list page p99 at 10 M records 9-11.5 ms with 8
    /// against 12-24 ms with 16; README, Performance).
    pub const DEFAULT_DB_POOL_SIZE: u32 = 8;
    pub const DEFAULT_INGEST_BUFFER_BYTES: u64 = 64 * 1024 * 1024;
    pub const DEFAULT_DELIVERY_TIMEOUT_SECS: u64 = 15;
    pub const DEFAULT_WORKER_CONCURRENCY: u64 = 32;
    pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 30;

    /// Reads the optional TOML file, then the environment over it.
    pub fn load(config_file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = config_file {
            if !path.is_file() {
                return Err(ConfigError::new(
                    "--config",
                    format!("{} is not a readable file", path.display()),
                ));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // Environment values stay text: figment's own env parser would turn a numeric-looking
        // secret into a number and lose digits.
        let from_env: std::collections::BTreeMap<&str, String> = ENV_NAMES
            .iter()
            .filter_map(|(key, env)| std::env::var(env).ok().map(|value| (*key, value)))
            .collect();
        figment = figment.merge(Serialized::defaults(from_env));
        let raw: RawSettings = figment.extract().map_err(|e| {
            // Only the first line: a TOML syntax error goes on to quote the offending line, which
            // may hold a secret.
            let message = e.kind.to_string();
            let first_line = message.lines().next().unwrap_or("invalid value").to_owned();
            match (e.path.first(), config_file) {
                (Some(key), _) => ConfigError::new(&setting_name(key), first_line),
                (None, Some(path)) => {
                    ConfigError::new("--config", format!("{}: {first_line}", path.display()))
                }
                (None, None) => ConfigError::new("configuration", first_line),
            }
        })?;
        Settings::validate(raw)
    }

    fn validate(raw: RawSettings) -> Result<Settings, ConfigError> {
        let text = |value: Option<Text>| {
            value
                .map(Text::into_string)
                .filter(|s| !s.trim().is_empty())
        };

        let database_url = text(raw.database_url).map(|url| url.trim().to_owned());
        if let Some(url) = &database_url {
            if DatabaseLocation::from_url(url).is_none() {
                return Err(ConfigError::new(
                    &setting_name("database_url"),
                    "must be a postgres://, postgresql:// or sqlite:// URL",
                ));
            }
        }
        let data_dir = PathBuf::from(text(raw.data_dir).unwrap_or_else(|| ".".to_owned()));

        let listen = text(raw.listen).unwrap_or_else(|| Self::DEFAULT_LISTEN.to_owned());
        resolve_listen_address(&listen)
            .map_err(|problem| ConfigError::new(&setting_name("listen"), problem))?;

        let api_tokens = raw
            .api_tokens
            .map(TextList::into_items)
            .unwrap_or_default()
            .into_iter()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .map(|t| {
                if t.len() < 16 {
                    Err(ConfigError::new(
                        &setting_name("api_tokens"),
                        "each token must be at least 16 characters long",
                    ))
                } else {
                    Ok(SecretString::from(t))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;

        let callback_token = text(raw.callback_token).map(|t| t.trim().to_owned());
        if let Some(token) = &callback_token {
            if token.len() < 16
                || !token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
            {
                return Err(ConfigError::new(
                    &setting_name("callback_token"),
                    "must be at least 16 characters of letters, digits, '-', '_', '.' or '~' (it is part of a URL path)",
                ));
            }
        }

        let max_body_bytes = match text(raw.max_body_bytes) {
            None => Self::DEFAULT_MAX_BODY_BYTES,
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    ConfigError::new(
                        &setting_name("max_body_bytes"),
                        format!("must be a positive number of bytes, got {v:?}"),
                    )
                })?,
        };

        let ingest_buffer_bytes = number_in(
            "ingest_buffer_bytes",
            text(raw.ingest_buffer_bytes),
            Self::DEFAULT_INGEST_BUFFER_BYTES,
            (max_body_bytes as u64)..=(1 << 40),
        )
        .map_err(|e| ConfigError {
            problem: format!("{} (at least VODHOOK_MAX_BODY_BYTES)", e.problem),
            ..e
        })?;

        let db_pool_size = match text(raw.db_pool_size) {
            None => Self::DEFAULT_DB_POOL_SIZE,
            Some(v) => v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| {
                    ConfigError::new(
                        &setting_name("db_pool_size"),
                        format!("must be a number from 1 to 1000, got {v:?}"),
                    )
                })?,
        };

        let log_format = match text(raw.log_format).as_deref().map(str::trim) {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::new(
                    &setting_name("log_format"),
                    format!("must be \"text\" or \"json\", got {other:?}"),
                ))
            }
        };

        let secret_cipher = match text(raw.secret_key) {
            None => None,
            Some(key) => Some(
                SecretCipher::from_base64(&key)
                    .map_err(|problem| ConfigError::new(&setting_name("secret_key"), problem))?,
            ),
        };
        let private_targets = PrivateTargets::parse(
            &text(raw.allow_private_targets).unwrap_or_default(),
        )
        .map_err(|problem| ConfigError::new(&setting_name("allow_private_targets"), problem))?;
        let delivery_timeout = Duration::from_secs(number_in(
            "delivery_timeout_secs",
            text(raw.delivery_timeout_secs),
            Self::DEFAULT_DELIVERY_TIMEOUT_SECS,
            1..=300,
        )?);
        let retry_policy = match text(raw.retry_schedule) {
            None => RetryPolicy::default(),
            Some(schedule) => RetryPolicy::parse(&schedule)
                .map_err(|problem| ConfigError::new(&setting_name("retry_schedule"), problem))?,
        };
        let worker_concurrency = number_in(
            "worker_concurrency",
            text(raw.worker_concurrency),
            Self::DEFAULT_WORKER_CONCURRENCY,
            1..=1024,
        )?;
        let worker_enabled = match text(raw.worker).as_deref().map(str::trim) {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(ConfigError::new(
                    &setting_name("worker"),
                    format!("must be true or false, got {other:?}"),
                ))
            }
        };
        let shutdown_grace = Duration::from_secs(number_in(
            "shutdown_grace_secs",
            text(raw.shutdown_grace_secs),
            Self::DEFAULT_SHUTDOWN_GRACE_SECS,
            0..=3600,
        )?);

        let vod = VodSettings::validate(RawVod {
            sign_key: text(raw.vod_sign_key),
            sign_skew_secs: text(raw.vod_sign_skew_secs),
            mode: text(raw.vod_mode),
            secret_id: text(raw.tencent_secret_id),
            secret_key: text(raw.tencent_secret_key),
            sub_app_id: text(raw.vod_sub_app_id),
            api_endpoint: text(raw.vod_api_endpoint),
            procedure: text(raw.vod_procedure),
            storage_region: text(raw.vod_storage_region),
        })?;

        Ok(Settings {
            vod,
            secret_cipher,
            private_targets,
            delivery_timeout,
            retry_policy,
            worker_concurrency: usize::try_from(worker_concurrency).unwrap_or(1),
            worker_enabled,
            shutdown_grace,
            database_url: database_url.map(SecretString::from),
            data_dir,
            listen,
            api_tokens,
            callback_token: callback_token.map(SecretString::from),
            max_body_bytes,
            ingest_buffer_bytes: usize::try_from(ingest_buffer_bytes).unwrap_or(usize::MAX),
            db_pool_size,
            log_format,
        })
    }

    /// Where the data lives: `database_url` when set, else `vodhook.db` in `data_dir`.
    pub fn database(&self) -> DatabaseLocation {
        self.database_url
            .as_ref()
            .and_then(|url| DatabaseLocation::from_url(url.expose_secret()))
            .unwrap_or_else(|| DatabaseLocation::sqlite_in(&self.data_dir))
    }

    /// The first address `listen` resolves to.
    pub fn listen_address(&self) -> Result<SocketAddr, ConfigError> {
        resolve_listen_address(&self.listen)
            .map_err(|problem| ConfigError::new(&setting_name("listen"), problem))
    }

    /// Whether `token` is one of the configured API tokens (constant-time per comparison).
    pub fn is_configured_api_token(&self, token: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.api_tokens.iter().fold(false, |found, t| {
            found | bool::from(t.expose_secret().as_bytes().ct_eq(token.as_bytes()))
        })
    }
}

/// A whole number within `range`, or the default when unset.
fn number_in(
    key: &str,
    value: Option<String>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                ConfigError::new(
                    &setting_name(key),
                    format!(
                        "must be a whole number from {} to {}, got {v:?}",
                        range.start(),
                        range.end()
                    ),
                )
            }),
    }
}

impl Default for Settings {
    /// Every default, and no database URL.
    fn default() -> Settings {
        Settings::validate(RawSettings::default())
            .unwrap_or_else(|e| unreachable!("defaults are valid: {e}"))
    }
}

fn resolve_listen_address(listen: &str) -> Result<SocketAddr, String> {
    listen
        .trim()
        .to_socket_addrs()
        .map_err(|e| format!("{listen:?} is not a host:port address ({e})"))?
        .next()
        .ok_or_else(|| format!("{listen:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> RawSettings {
        let mut raw = RawSettings::default();
        for (key, value) in pairs {
            let text = Some(Text::String((*value).to_owned()));
            match *key {
                "database_url" => raw.database_url = text,
                "data_dir" => raw.data_dir = text,
                "listen" => raw.listen = text,
                "api_tokens" => {
                    raw.api_tokens = Some(TextList::One(Text::String((*value).to_owned())))
                }
                "callback_token" => raw.callback_token = text,
                "max_body_bytes" => raw.max_body_bytes = text,
                "ingest_buffer_bytes" => raw.ingest_buffer_bytes = text,
                "db_pool_size" => raw.db_pool_size = text,
                "log_format" => raw.log_format = text,
                "secret_key" => raw.secret_key = text,
                "allow_private_targets" => raw.allow_private_targets = text,
                "delivery_timeout_secs" => raw.delivery_timeout_secs = text,
                "retry_schedule" => raw.retry_schedule = text,
                "worker_concurrency" => raw.worker_concurrency = text,
                "worker" => raw.worker = text,
                "vod_sign_key" => raw.vod_sign_key = text,
                "vod_sign_skew_secs" => raw.vod_sign_skew_secs = text,
                "vod_mode" => raw.vod_mode = text,
                "tencent_secret_id" => raw.tencent_secret_id = text,
                "tencent_secret_key" => raw.tencent_secret_key = text,
                "vod_sub_app_id" => raw.vod_sub_app_id = text,
                "vod_api_endpoint" => raw.vod_api_endpoint = text,
                "vod_procedure" => raw.vod_procedure = text,
                "vod_storage_region" => raw.vod_storage_region = text,
                other => panic!("unknown key {other}"),
            }
        }
        raw
    }

    fn error_of(pairs: &[(&str, &str)]) -> String {
        Settings::validate(raw(pairs))
            .expect_err("must be refused")
            .to_string()
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let settings = Settings::validate(RawSettings::default()).expect("valid");
        assert_eq!(settings.listen, "127.0.0.1:8080");
        assert_eq!(settings.max_body_bytes, 4_194_304);
        assert!(settings.api_tokens.is_empty());
        assert!(settings.callback_token.is_none());
        assert!(settings.database_url.is_none());
    }

    #[test]
    fn every_invalid_setting_is_named() {
        assert!(error_of(&[("database_url", "mysql://x")]).contains("DATABASE_URL"));
        assert!(error_of(&[("listen", "nowhere")]).contains("VODHOOK_LISTEN"));
        assert!(error_of(&[("max_body_bytes", "lots")]).contains("VODHOOK_MAX_BODY_BYTES"));
        assert!(error_of(&[("max_body_bytes", "0")]).contains("VODHOOK_MAX_BODY_BYTES"));
        assert!(error_of(&[("api_tokens", "short")]).contains("VODHOOK_API_TOKENS"));
        assert!(error_of(&[("callback_token", "has/slash-and-is-long")])
            .contains("VODHOOK_CALLBACK_TOKEN"));
        assert!(error_of(&[("db_pool_size", "0")]).contains("VODHOOK_DB_POOL_SIZE"));
        assert!(error_of(&[("log_format", "xml")]).contains("VODHOOK_LOG_FORMAT"));
        assert!(error_of(&[("secret_key", "not-32-bytes")]).contains("VODHOOK_SECRET_KEY"));
        assert!(error_of(&[("allow_private_targets", "intranet")])
            .contains("VODHOOK_ALLOW_PRIVATE_TARGETS"));
        assert!(
            error_of(&[("delivery_timeout_secs", "0")]).contains("VODHOOK_DELIVERY_TIMEOUT_SECS")
        );
        assert!(error_of(&[("retry_schedule", "soon")]).contains("VODHOOK_RETRY_SCHEDULE"));
        assert!(error_of(&[("worker_concurrency", "0")]).contains("VODHOOK_WORKER_CONCURRENCY"));
        assert!(error_of(&[("worker", "maybe")]).contains("VODHOOK_WORKER"));
        assert!(error_of(&[("vod_sign_key", "has-dashes")]).contains("VODHOOK_VOD_SIGN_KEY"));
        assert!(error_of(&[("vod_sign_key", &"k".repeat(33))]).contains("VODHOOK_VOD_SIGN_KEY"));
        assert!(error_of(&[("vod_sign_skew_secs", "-1")]).contains("VODHOOK_VOD_SIGN_SKEW_SECS"));
        assert!(error_of(&[("vod_mode", "poll")]).contains("VODHOOK_VOD_MODE"));
        assert!(error_of(&[("vod_mode", "pull")]).contains("VODHOOK_TENCENT_SECRET_ID"));
        assert!(error_of(&[("tencent_secret_id", "AKIDx")]).contains("VODHOOK_TENCENT_SECRET_KEY"));
        assert!(error_of(&[("vod_sub_app_id", "app")]).contains("VODHOOK_VOD_SUB_APP_ID"));
        assert!(error_of(&[("vod_api_endpoint", "ftp://x")]).contains("VODHOOK_VOD_API_ENDPOINT"));
        assert!(error_of(&[("vod_storage_region", "Ap Singapore")])
            .contains("VODHOOK_VOD_STORAGE_REGION"));
    }

    #[test]
    fn vod_settings_default_to_push_without_signatures() {
        let settings = Settings::validate(RawSettings::default()).expect("valid");
        assert_eq!(settings.vod.mode, VodMode::Push);
        assert!(settings.vod.sign_key.is_none());
        assert_eq!(settings.vod.sign_skew, Duration::from_secs(60));
        assert_eq!(settings.vod.api_endpoint, "https://vod.tencentcloudapi.com");
        let pulling = Settings::validate(raw(&[
            ("vod_mode", "both"),
            ("tencent_secret_id", "AKIDexample"),
            ("tencent_secret_key", "secret"),
            ("vod_sub_app_id", "1500000001"),
            ("vod_api_endpoint", "http://127.0.0.1:9/"),
        ]))
        .expect("valid");
        assert!(pulling.vod.mode.pulls());
        assert_eq!(pulling.vod.sub_app_id, Some(1_500_000_001));
        assert_eq!(pulling.vod.api_endpoint, "http://127.0.0.1:9");
    }

    #[test]
    fn api_tokens_are_comma_separated() {
        let settings = Settings::validate(raw(&[(
            "api_tokens",
            "aaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbb,",
        )]))
        .expect("valid");
        assert_eq!(settings.api_tokens.len(), 2);
        assert!(settings.is_configured_api_token("bbbbbbbbbbbbbbbb"));
        assert!(!settings.is_configured_api_token("bbbbbbbbbbbbbbbc"));
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let settings = Settings::validate(raw(&[
            ("database_url", "postgres://u:hunter2-password@db/x"),
            ("api_tokens", "api-token-secret-value"),
            ("callback_token", "callback-token-secret"),
        ]))
        .expect("valid");
        let debug = format!("{settings:?}");
        for secret in ["hunter2", "api-token-secret-value", "callback-token-secret"] {
            assert!(!debug.contains(secret), "{secret} leaked: {debug}");
        }
    }
}
