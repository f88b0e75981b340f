//! The VOD settings: callback signatures, pull mode, API credentials, upload signature defaults.

use super::{number_in, setting_name, ConfigError};
use secrecy::SecretString;
use std::time::Duration;

/// How events reach vodhook: VOD's push callbacks, its reliable queue (pulled), or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VodMode {
    Push,
    Pull,
    Both,
}

impl VodMode {
    /// Whether this process pulls events from VOD's queue.
    pub fn pulls(self) -> bool {
        matches!(self, VodMode::Pull | VodMode::Both)
    }
}

/// A Tencent Cloud API key pair (CAM), for signing API requests and upload signatures.
#[derive(Debug, Clone)]
pub struct TencentCredentials {
    pub secret_id: String,
    pub secret_key: SecretString,
}

#[derive(Debug, Clone)]
pub struct VodSettings {
    /// VOD's `SignKey`: when set, every callback must carry a valid `Sign` and `T`.
    pub sign_key: Option<SecretString>,
    /// How far past its expiry `T` a callback is still accepted (clock skew).
    pub sign_skew: Duration,
    pub mode: VodMode,
    pub credentials: Option<TencentCredentials>,
    /// The VOD sub-application (required for accounts opened since 2023-12-25).
    pub sub_app_id: Option<u64>,
    /// Base URL of the VOD API (`https://vod.tencentcloudapi.com`).
    pub api_endpoint: String,
    /// Defaults of upload signatures.
    pub default_procedure: Option<String>,
    pub default_storage_region: Option<String>,
}

/// The raw text of the VOD settings, as read from the file and the environment.
#[derive(Debug, Default)]
pub(super) struct RawVod {
    pub sign_key: Option<String>,
    pub sign_skew_secs: Option<String>,
    pub mode: Option<String>,
    pub secret_id: Option<String>,
    pub secret_key: Option<String>,
    pub sub_app_id: Option<String>,
    pub api_endpoint: Option<String>,
    pub procedure: Option<String>,
    pub storage_region: Option<String>,
}

impl VodSettings {
    pub const DEFAULT_API_ENDPOINT: &'static str = "https://vod.tencentcloudapi.com";
    pub const DEFAULT_SIGN_SKEW_SECS: u64 = 60;

    pub(super) fn validate(raw: RawVod) -> Result<VodSettings, ConfigError> {
        let trimmed = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let sign_key = trimmed(raw.sign_key);
        if let Some(key) = &sign_key {
            if key.len() > 32 || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(ConfigError::new(
                    &setting_name("vod_sign_key"),
                    "must be VOD's SignKey: up to 32 letters and digits",
                ));
            }
        }
        let sign_skew = Duration::from_secs(number_in(
            "vod_sign_skew_secs",
            raw.sign_skew_secs,
            Self::DEFAULT_SIGN_SKEW_SECS,
            0..=3600,
        )?);
        let mode = match trimmed(raw.mode).as_deref() {
            None | Some("push") => VodMode::Push,
            Some("pull") => VodMode::Pull,
            Some("both") => VodMode::Both,
            Some(other) => {
                return Err(ConfigError::new(
                    &setting_name("vod_mode"),
                    format!("must be push, pull or both, got {other:?}"),
                ))
            }
        };
        let credentials = match (trimmed(raw.secret_id), trimmed(raw.secret_key)) {
            (Some(secret_id), Some(secret_key)) => Some(TencentCredentials {
                secret_id,
                secret_key: SecretString::from(secret_key),
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    &setting_name("tencent_secret_key"),
                    "is required with VODHOOK_TENCENT_SECRET_ID",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    &setting_name("tencent_secret_id"),
                    "is required with VODHOOK_TENCENT_SECRET_KEY",
                ))
            }
        };
        if mode.pulls() && credentials.is_none() {
            return Err(ConfigError::new(
                &setting_name("tencent_secret_id"),
                "pull mode (VODHOOK_VOD_MODE=pull or both) needs a Tencent Cloud API key: set \
                 VODHOOK_TENCENT_SECRET_ID and VODHOOK_TENCENT_SECRET_KEY",
            ));
        }
        let sub_app_id = match trimmed(raw.sub_app_id) {
            None => None,
            Some(v) => Some(v.parse::<u64>().map_err(|_| {
                ConfigError::new(
                    &setting_name("vod_sub_app_id"),
                    format!("must be a VOD SubAppId (a whole number), got {v:?}"),
                )
            })?),
        };
        let api_endpoint = trimmed(raw.api_endpoint)
            .unwrap_or_else(|| Self::DEFAULT_API_ENDPOINT.to_owned())
            .trim_end_matches('/')
            .to_owned();
        if reqwest::Url::parse(&api_endpoint)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .is_none()
        {
            return Err(ConfigError::new(
                &setting_name("vod_api_endpoint"),
                format!("must be an http(s) URL such as https://vod.tencentcloudapi.com, got {api_endpoint:?}"),
            ));
        }
        let settings = VodSettings {
            sign_key: sign_key.map(SecretString::from),
            sign_skew,
            mode,
            credentials,
            sub_app_id,
            api_endpoint,
            default_procedure: trimmed(raw.procedure),
            default_storage_region: trimmed(raw.storage_region),
        };
        // Checked here, so a bad default stops start-up instead of failing every request.
        crate::tencent::upload_signature::check_defaults(&settings).map_err(|problem| {
            let key = if problem.starts_with("VODHOOK_VOD_PROCEDURE") {
                "vod_procedure"
            } else {
                "vod_storage_region"
            };
            ConfigError::new(&setting_name(key), problem)
        })?;
        Ok(settings)
    }
}
