//! VOD's "Signature for Upload from Client": a typed request, its validation, signing and decoding.
//!
//! The signature is `base64(HMAC-SHA1(SecretKey, original) ‖ original)` where `original` is a
//! query string. VOD recomputes the MAC over the bytes it finds after the first 20, so any
//! consistent encoding works; values are encoded like JavaScript's `encodeURIComponent` (as
//! Tencent's Node sample does through `querystring.stringify`), which reproduces the spec's
//! self-computed test vectors byte for byte.

use crate::config::{TencentCredentials, VodSettings};
use base64::{engine::general_purpose::STANDARD, Engine as _};
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::RngCore;
use secrecy::ExposeSecret;
use sha1::Sha1;
use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

type HmacSha1 = Hmac<Sha1>;

/// VOD's limit on `sourceContext`, in characters.
pub const MAX_SOURCE_CONTEXT_CHARS: usize = 250;
/// VOD's limit on `sessionContext`, in characters.
pub const MAX_SESSION_CONTEXT_CHARS: usize = 1000;
/// VOD refuses signatures valid for longer than 90 days.
pub const MAX_EXPIRE_SECONDS: u64 = 7_776_000;
/// Validity when the request names none. A signature is a bearer credential for uploading into
/// the account, and app backends mint one per upload right before it starts, so it should not
/// outlive the upload by much; an hour covers applying for and committing an ordinary upload.
/// Very large or slow uploads should ask for more with `expire_seconds`.
pub const DEFAULT_EXPIRE_SECONDS: u64 = 3600;
/// VOD's range for `taskPriority`.
pub const TASK_PRIORITY_RANGE: RangeInclusive<i64> = -10..=10;
/// Our own bound on `procedure` and `storageRegion`: VOD's names are far shorter, and a bound
/// keeps a mistaken paste from becoming a multi-kilobyte signature.
pub const MAX_NAME_CHARS: usize = 128;
/// The message for a vodhook without a Tencent Cloud API key, shared by the API and the CLI.
pub const NOT_CONFIGURED: &str = "upload signing needs a Tencent Cloud API key: set \
    VODHOOK_TENCENT_SECRET_ID and VODHOOK_TENCENT_SECRET_KEY (tencent_secret_id and \
    tencent_secret_key in the config file)";

const MAC_LEN: usize = 20;

/// What `encodeURIComponent` leaves as it is: letters, digits and `-_.!~*'()`.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// What an upload signature allows, in VOD's terms (`camelCase` names in the signature).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadSignatureRequest {
    /// `sourceContext`: comes back in the upload callback (`SourceInfo.SourceContext`).
    pub source_context: Option<String>,
    /// `procedure`: task-flow template run after the upload.
    pub procedure: Option<String>,
    /// `storageRegion`, e.g. `ap-singapore`.
    pub storage_region: Option<String>,
    /// `classId`: the media category.
    pub class_id: Option<u64>,
    /// `oneTimeValid=1`: the signature works for one upload only.
    pub one_time_valid: bool,
    /// Validity in seconds; `None` means [`DEFAULT_EXPIRE_SECONDS`].
    pub expire_seconds: Option<u64>,
    /// `vodSubAppId`; `None` uploads into the primary application.
    pub vod_sub_app_id: Option<u64>,
    /// `sessionContext`: comes back in `ProcedureStateChanged`; needs a procedure.
    pub session_context: Option<String>,
    /// `taskPriority`; needs a procedure.
    pub task_priority: Option<i64>,
    /// `taskNotifyMode`; needs a procedure.
    pub task_notify_mode: Option<TaskNotifyMode>,
}

/// When VOD sends `ProcedureStateChanged` for the procedure's task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskNotifyMode {
    /// Once, when the whole task flow has finished (VOD's default).
    Finish,
    /// Whenever a subtask's state changes.
    Change,
    /// Never.
    None,
}

impl TaskNotifyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskNotifyMode::Finish => "Finish",
            TaskNotifyMode::Change => "Change",
            TaskNotifyMode::None => "None",
        }
    }
}

impl fmt::Display for TaskNotifyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskNotifyMode {
    type Err = UploadSignatureError;

    /// VOD's spelling exactly: a near miss is refused rather than guessed.
    fn from_str(s: &str) -> Result<TaskNotifyMode, UploadSignatureError> {
        match s {
            "Finish" => Ok(TaskNotifyMode::Finish),
            "Change" => Ok(TaskNotifyMode::Change),
            "None" => Ok(TaskNotifyMode::None),
            other => Err(UploadSignatureError::TaskNotifyMode(format!(
                "must be Finish, Change or None, got {other:?}"
            ))),
        }
    }
}

/// Why a request cannot be signed: one variant per field, each with a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadSignatureError {
    #[error("source_context {0}")]
    SourceContext(String),
    #[error("procedure {0}")]
    Procedure(String),
    #[error("storage_region {0}")]
    StorageRegion(String),
    #[error("class_id {0}")]
    ClassId(String),
    #[error("expire_seconds {0}")]
    ExpireSeconds(String),
    #[error("vod_sub_app_id {0}")]
    VodSubAppId(String),
    #[error("session_context {0}")]
    SessionContext(String),
    #[error("task_priority {0}")]
    TaskPriority(String),
    #[error("task_notify_mode {0}")]
    TaskNotifyMode(String),
    /// A field that only means something to a procedure, without one.
    #[error(
        "{0} applies only to the task flow of a procedure: set procedure (or a default with \
         VODHOOK_VOD_PROCEDURE) or leave {0} out"
    )]
    ProcedureRequired(&'static str),
    /// The caller's clock cannot be a signature's `currentTimeStamp`: not the request's fault.
    #[error("the current time {0} cannot be signed (it must be 0 or later)")]
    Clock(i64),
}

impl UploadSignatureError {
    /// The stable error code the API answers.
    pub fn code(&self) -> &'static str {
        match self {
            UploadSignatureError::SourceContext(_) => "invalid_source_context",
            UploadSignatureError::Procedure(_) => "invalid_procedure",
            UploadSignatureError::StorageRegion(_) => "invalid_storage_region",
            UploadSignatureError::ClassId(_) => "invalid_class_id",
            UploadSignatureError::ExpireSeconds(_) => "invalid_expire_seconds",
            UploadSignatureError::VodSubAppId(_) => "invalid_vod_sub_app_id",
            UploadSignatureError::SessionContext(_) => "invalid_session_context",
            UploadSignatureError::TaskPriority(_) => "invalid_task_priority",
            UploadSignatureError::TaskNotifyMode(_) => "invalid_task_notify_mode",
            UploadSignatureError::ProcedureRequired(_) => "procedure_required",
            UploadSignatureError::Clock(_) => "invalid_clock",
        }
    }

    /// Whether the request is at fault (as opposed to the signer's clock).
    pub fn is_request_error(&self) -> bool {
        !matches!(self, UploadSignatureError::Clock(_))
    }
}

impl UploadSignatureRequest {
    /// Fills what the request leaves open from the settings. A configured sub-application of 0
    /// is VOD's way of naming the primary application, which is what leaving it out means.
    pub fn apply_defaults(&mut self, vod: &VodSettings) {
        if self.procedure.is_none() {
            self.procedure.clone_from(&vod.default_procedure);
        }
        if self.storage_region.is_none() {
            self.storage_region.clone_from(&vod.default_storage_region);
        }
        if self.vod_sub_app_id.is_none() {
            self.vod_sub_app_id = vod.sub_app_id.filter(|id| *id != 0);
        }
    }

    /// Checks every field against VOD's limits; the first problem found is returned.
    pub fn validate(&self) -> Result<(), UploadSignatureError> {
        if let Some(context) = &self.source_context {
            check_context(context, MAX_SOURCE_CONTEXT_CHARS)
                .map_err(UploadSignatureError::SourceContext)?;
        }
        if let Some(procedure) = &self.procedure {
            check_name(procedure).map_err(UploadSignatureError::Procedure)?;
        }
        if let Some(region) = &self.storage_region {
            check_region(region).map_err(UploadSignatureError::StorageRegion)?;
        }
        let expire = self.expire_seconds();
        if !(1..=MAX_EXPIRE_SECONDS).contains(&expire) {
            return Err(UploadSignatureError::ExpireSeconds(format!(
                "must be from 1 to {MAX_EXPIRE_SECONDS} (90 days), got {expire}"
            )));
        }
        if self.class_id.is_some_and(|id| id > i64::MAX as u64) {
            return Err(UploadSignatureError::ClassId(format!(
                "must be from 0 to {} (VOD's ClassId is a 64-bit signed number)",
                i64::MAX
            )));
        }
        if let Some(context) = &self.session_context {
            check_context(context, MAX_SESSION_CONTEXT_CHARS)
                .map_err(UploadSignatureError::SessionContext)?;
        }
        if let Some(priority) = self.task_priority {
            if !TASK_PRIORITY_RANGE.contains(&priority) {
                return Err(UploadSignatureError::TaskPriority(format!(
                    "must be from {} to {}, got {priority}",
                    TASK_PRIORITY_RANGE.start(),
                    TASK_PRIORITY_RANGE.end()
                )));
            }
        }
        // Refused rather than silently dropped: a caller who sets them expects their effect.
        if self.procedure.is_none() {
            let needing_procedure = [
                ("session_context", self.session_context.is_some()),
                ("task_priority", self.task_priority.is_some()),
                ("task_notify_mode", self.task_notify_mode.is_some()),
            ];
            if let Some((field, _)) = needing_procedure.iter().find(|(_, set)| *set) {
                return Err(UploadSignatureError::ProcedureRequired(field));
            }
        }
        Ok(())
    }

    /// The validity asked for, or the default.
    pub fn expire_seconds(&self) -> u64 {
        self.expire_seconds.unwrap_or(DEFAULT_EXPIRE_SECONDS)
    }

    /// The optional parameters, in the order of the spec's test vector.
    fn optional_params(&self) -> Vec<(&'static str, String)> {
        let mut params = Vec::new();
        if let Some(v) = &self.procedure {
            params.push(("procedure", v.clone()));
        }
        if let Some(v) = self.class_id {
            params.push(("classId", v.to_string()));
        }
        if let Some(v) = &self.source_context {
            params.push(("sourceContext", v.clone()));
        }
        if self.one_time_valid {
            params.push(("oneTimeValid", "1".to_owned()));
        }
        // 0 names the primary application, which is what leaving it out means to VOD.
        if let Some(v) = self.vod_sub_app_id.filter(|id| *id != 0) {
            params.push(("vodSubAppId", v.to_string()));
        }
        if let Some(v) = &self.storage_region {
            params.push(("storageRegion", v.clone()));
        }
        if let Some(v) = self.task_priority {
            params.push(("taskPriority", v.to_string()));
        }
        if let Some(v) = self.task_notify_mode {
            params.push(("taskNotifyMode", v.as_str().to_owned()));
        }
        if let Some(v) = &self.session_context {
            params.push(("sessionContext", v.clone()));
        }
        params
    }
}

/// Checks the settings' defaults on their own, so a bad default can be reported as the
/// operator's problem rather than as the client's.
pub fn check_defaults(vod: &VodSettings) -> Result<(), String> {
    if let Some(procedure) = &vod.default_procedure {
        check_name(procedure).map_err(|p| format!("VODHOOK_VOD_PROCEDURE {p}"))?;
    }
    if let Some(region) = &vod.default_storage_region {
        check_region(region).map_err(|p| format!("VODHOOK_VOD_STORAGE_REGION {p}"))?;
    }
    Ok(())
}

/// Contexts are passed through by VOD as they are, so only emptiness and length matter.
fn check_context(value: &str, max: usize) -> Result<(), String> {
    let chars = value.chars().count();
    if chars == 0 {
        Err("must not be empty; leave it out instead".to_owned())
    } else if chars > max {
        Err(format!("must be at most {max} characters, got {chars}"))
    } else {
        Ok(())
    }
}

fn check_name(value: &str) -> Result<(), String> {
    let chars = value.chars().count();
    if value.trim().is_empty() {
        Err("must not be empty".to_owned())
    } else if chars > MAX_NAME_CHARS {
        Err(format!(
            "must be at most {MAX_NAME_CHARS} characters, got {chars}"
        ))
    } else if value.chars().any(char::is_control) {
        Err("must not contain control characters".to_owned())
    } else if value.trim() != value {
        Err(format!(
            "must not start or end with white space, got {value:?}"
        ))
    } else {
        Ok(())
    }
}

fn check_region(value: &str) -> Result<(), String> {
    check_name(value)?;
    let well_formed = value.split('-').all(|part| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "must be a region such as ap-singapore (lowercase letters and digits joined by \
             dashes), got {value:?}"
        ))
    }
}

/// A signature ready for the upload SDK, and when VOD stops accepting it (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedUpload {
    pub signature: String,
    pub expires_at: i64,
}

/// Signs `request` as of `now` (Unix seconds) with `random` as VOD's `random`; deterministic, so
/// tests can reproduce known signatures. Validates the request first.
pub fn sign(
    request: &UploadSignatureRequest,
    credentials: &TencentCredentials,
    now: i64,
    random: u32,
) -> Result<SignedUpload, UploadSignatureError> {
    request.validate()?;
    let expires_at = i64::try_from(request.expire_seconds())
        .ok()
        .and_then(|secs| now.checked_add(secs))
        .filter(|_| now >= 0)
        .ok_or(UploadSignatureError::Clock(now))?;
    let mut params: Vec<(&str, String)> = vec![
        ("secretId", credentials.secret_id.clone()),
        ("currentTimeStamp", now.to_string()),
        ("expireTime", expires_at.to_string()),
        ("random", random.to_string()),
    ];
    params.extend(request.optional_params());
    let original = params
        .iter()
        .map(|(key, value)| format!("{key}={}", utf8_percent_encode(value, URI_COMPONENT)))
        .collect::<Vec<_>>()
        .join("&");
    Ok(SignedUpload {
        signature: seal(&original, credentials.secret_key.expose_secret()),
        expires_at,
    })
}

/// Signs with a random drawn from the OS: one-time signatures are told apart only by it, so it
/// must not be guessable or repeat.
pub fn sign_with_os_random(
    request: &UploadSignatureRequest,
    credentials: &TencentCredentials,
    now: i64,
) -> Result<SignedUpload, UploadSignatureError> {
    sign(request, credentials, now, rand::rngs::OsRng.next_u32())
}

/// `base64(HMAC-SHA1(key, original) ‖ original)`.
fn seal(original: &str, secret_key: &str) -> String {
    let mut sealed = mac_of(original.as_bytes(), secret_key)
        .finalize()
        .into_bytes()
        .to_vec();
    sealed.extend_from_slice(original.as_bytes());
    STANDARD.encode(sealed)
}

fn mac_of(original: &[u8], secret_key: &str) -> HmacSha1 {
    let mut mac = <HmacSha1 as Mac>::new_from_slice(secret_key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(original);
    mac
}

/// A signature taken apart: the MAC, the signed text, and its parameters decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedSignature {
    pub mac: [u8; MAC_LEN],
    pub original: String,
    pub params: Vec<(String, String)>,
}

impl DecodedSignature {
    /// The first value of the parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Why a string is not an upload signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the signature is not standard base64")]
    NotBase64,
    #[error("the signature is too short to hold a 20-byte HMAC-SHA1")]
    TooShort,
    #[error("the signed parameters are not UTF-8 text")]
    NotUtf8,
    #[error("the signed parameter {0:?} is not validly percent-encoded UTF-8")]
    BadParameter(String),
}

/// Takes a signature apart without checking its MAC (see [`verify`]). `+` decodes to a space, as
/// PHP's `http_build_query` (Tencent's PHP sample) writes spaces that way; this module never
/// writes a bare `+`.
pub fn decode(signature: &str) -> Result<DecodedSignature, DecodeError> {
    let bytes = STANDARD
        .decode(signature.trim())
        .map_err(|_| DecodeError::NotBase64)?;
    if bytes.len() < MAC_LEN {
        return Err(DecodeError::TooShort);
    }
    let (mac_bytes, original) = bytes.split_at(MAC_LEN);
    let mut mac = [0u8; MAC_LEN];
    mac.copy_from_slice(mac_bytes);
    let original = String::from_utf8(original.to_vec()).map_err(|_| DecodeError::NotUtf8)?;
    let unescape = |part: &str| {
        percent_decode_str(&part.replace('+', " "))
            .decode_utf8()
            .map(|text| text.into_owned())
            .map_err(|_| DecodeError::BadParameter(part.to_owned()))
    };
    let params = original
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((unescape(key)?, unescape(value)?))
        })
        .collect::<Result<Vec<_>, DecodeError>>()?;
    Ok(DecodedSignature {
        mac,
        original,
        params,
    })
}

/// Whether `signature` was made with `secret_key`, in constant time. It says nothing about
/// expiry; read `expireTime` from [`decode`] for that.
pub fn verify(signature: &str, secret_key: &str) -> bool {
    let Ok(bytes) = STANDARD.decode(signature.trim()) else {
        return false;
    };
    if bytes.len() < MAC_LEN {
        return false;
    }
    let (mac, original) = bytes.split_at(MAC_LEN);
    mac_of(original, secret_key).verify_slice(mac).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    const SECRET_ID: &str = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE";
    const SECRET_KEY: &str = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE";
    const NOW: i64 = 1_700_000_000;

    fn credentials() -> TencentCredentials {
        TencentCredentials {
            secret_id: SECRET_ID.to_owned(),
            secret_key: SecretString::from(SECRET_KEY),
        }
    }

    /// The `client_upload_signature` vectors of `fixtures/vod/test-vectors.json`, by label.
    fn vector(label: &str) -> (String, String, String) {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/vod/test-vectors.json"
        );
        let text = std::fs::read_to_string(path).expect("test vectors");
        let all: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let found = all["client_upload_signature"]
            .as_array()
            .expect("vectors")
            .iter()
            .find(|v| v["label"] == label)
            .expect("vector by label");
        let text = |v: &serde_json::Value| v.as_str().expect("string").to_owned();
        (
            text(&found["inputs"]["original"]),
            text(&found["expected"]["hmac_sha1_hex"]),
            text(&found["expected"]["signature"]),
        )
    }

    fn all_optional() -> UploadSignatureRequest {
        UploadSignatureRequest {
            source_context: Some(r#"{"uploadId":"u_42"}"#.to_owned()),
            procedure: Some("LongVideoPreset".to_owned()),
            storage_region: Some("ap-singapore".to_owned()),
            class_id: Some(0),
            one_time_valid: true,
            expire_seconds: Some(86_400),
            vod_sub_app_id: Some(1_500_000_001),
            session_context: Some("tenant=acme&user=7".to_owned()),
            task_priority: Some(5),
            task_notify_mode: Some(TaskNotifyMode::Finish),
        }
    }

    fn with_procedure() -> UploadSignatureRequest {
        UploadSignatureRequest {
            procedure: Some("LongVideoPreset".to_owned()),
            ..Default::default()
        }
    }

    #[test]
    fn required_params_only_vector_is_reproduced() {
        let (original, hmac_hex, expected) = vector("required-params-only");
        assert_eq!(seal(&original, SECRET_KEY), expected);
        let request = UploadSignatureRequest {
            expire_seconds: Some(86_400),
            ..Default::default()
        };
        let signed = sign(&request, &credentials(), NOW, 220_625).expect("signed");
        assert_eq!(signed.signature, expected);
        assert_eq!(signed.expires_at, 1_700_086_400);
        let decoded = decode(&signed.signature).expect("decoded");
        assert_eq!(hex::encode(decoded.mac), hmac_hex);
        assert_eq!(decoded.original, original);
    }

    #[test]
    fn all_optional_params_vector_is_reproduced_from_typed_parameters() {
        let (original, hmac_hex, expected) = vector("all-optional-params");
        assert_eq!(seal(&original, SECRET_KEY), expected);
        let signed = sign(&all_optional(), &credentials(), NOW, 3_735_928_559).expect("signed");
        let decoded = decode(&signed.signature).expect("decoded");
        assert_eq!(decoded.original, original);
        assert_eq!(hex::encode(decoded.mac), hmac_hex);
        assert_eq!(signed.signature, expected);
        assert_eq!(signed.expires_at, 1_700_086_400);
    }

    #[test]
    fn decoding_recovers_every_parameter_and_the_mac_verifies() {
        let signed = sign(&all_optional(), &credentials(), NOW, 7).expect("signed");
        let decoded = decode(&signed.signature).expect("decoded");
        let expected: Vec<(String, String)> = [
            ("secretId", SECRET_ID),
            ("currentTimeStamp", "1700000000"),
            ("expireTime", "1700086400"),
            ("random", "7"),
            ("procedure", "LongVideoPreset"),
            ("classId", "0"),
            ("sourceContext", r#"{"uploadId":"u_42"}"#),
            ("oneTimeValid", "1"),
            ("vodSubAppId", "1500000001"),
            ("storageRegion", "ap-singapore"),
            ("taskPriority", "5"),
            ("taskNotifyMode", "Finish"),
            ("sessionContext", "tenant=acme&user=7"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(decoded.params, expected);
        assert_eq!(decoded.param("sessionContext"), Some("tenant=acme&user=7"));
        assert_eq!(decoded.param("missing"), None);
        // Re-verified independently of `verify`: the MAC covers exactly the decoded text.
        let mut mac = <HmacSha1 as Mac>::new_from_slice(SECRET_KEY.as_bytes()).expect("key");
        mac.update(decoded.original.as_bytes());
        mac.verify_slice(&decoded.mac).expect("MAC matches");
        assert!(verify(&signed.signature, SECRET_KEY));
        assert!(!verify(&signed.signature, "another-secret-key"));
    }

    #[test]
    fn values_are_encoded_like_encode_uri_component() {
        let request = UploadSignatureRequest {
            source_context: Some("a b+c/é!~*'()-_.%&=?#".to_owned()),
            ..Default::default()
        };
        let signed = sign(&request, &credentials(), NOW, 1).expect("signed");
        let decoded = decode(&signed.signature).expect("decoded");
        assert!(
            decoded
                .original
                .ends_with("&sourceContext=a%20b%2Bc%2F%C3%A9!~*'()-_.%25%26%3D%3F%23"),
            "{}",
            decoded.original
        );
        assert_eq!(
            decoded.param("sourceContext"),
            Some("a b+c/é!~*'()-_.%&=?#"),
            "decoding is the exact inverse"
        );
    }

    #[test]
    fn defaults_are_one_hour_and_only_the_required_params() {
        let signed =
            sign(&UploadSignatureRequest::default(), &credentials(), NOW, 9).expect("signed");
        assert_eq!(signed.expires_at, NOW + 3600);
        let keys: Vec<String> = decode(&signed.signature)
            .expect("decoded")
            .params
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            keys,
            ["secretId", "currentTimeStamp", "expireTime", "random"]
        );
    }

    #[test]
    fn tampering_is_detected() {
        let signed = sign(&all_optional(), &credentials(), NOW, 42).expect("signed");
        let mut bytes = STANDARD.decode(&signed.signature).expect("base64");
        // A changed parameter, a changed MAC, a truncated text: none verifies.
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        assert!(!verify(&STANDARD.encode(&bytes), SECRET_KEY));
        bytes[last] ^= 0x01;
        bytes[0] ^= 0x80;
        assert!(!verify(&STANDARD.encode(&bytes), SECRET_KEY));
        bytes[0] ^= 0x80;
        assert!(verify(&STANDARD.encode(&bytes), SECRET_KEY));
        assert!(!verify(
            &STANDARD.encode(&bytes[..bytes.len() - 3]),
            SECRET_KEY
        ));

        let decoded = decode(&signed.signature).expect("decoded");
        let forged = decoded.original.replace("oneTimeValid=1", "oneTimeValid=0");
        let mut forged_bytes = decoded.mac.to_vec();
        forged_bytes.extend_from_slice(forged.as_bytes());
        assert!(!verify(&STANDARD.encode(forged_bytes), SECRET_KEY));

        assert!(!verify("not base64!", SECRET_KEY));
        assert!(!verify(&STANDARD.encode([0u8; 19]), SECRET_KEY));
        assert!(!verify("", SECRET_KEY));
    }

    #[test]
    fn malformed_signatures_do_not_decode() {
        assert_eq!(decode("%%%"), Err(DecodeError::NotBase64));
        assert_eq!(
            decode(&STANDARD.encode([1u8; 10])),
            Err(DecodeError::TooShort)
        );
        let mut not_utf8 = vec![0u8; 20];
        not_utf8.extend_from_slice(&[0xff, 0xfe]);
        assert_eq!(
            decode(&STANDARD.encode(&not_utf8)),
            Err(DecodeError::NotUtf8)
        );
        let mut bad_escape = vec![0u8; 20];
        bad_escape.extend_from_slice(b"a=%ff");
        assert_eq!(
            decode(&STANDARD.encode(&bad_escape)),
            Err(DecodeError::BadParameter("%ff".to_owned()))
        );
        let mut plus = vec![0u8; 20];
        plus.extend_from_slice(b"sourceContext=a+b&flag");
        let decoded = decode(&STANDARD.encode(&plus)).expect("decoded");
        assert_eq!(decoded.param("sourceContext"), Some("a b"));
        assert_eq!(decoded.param("flag"), Some(""));
    }

    fn refused(request: UploadSignatureRequest) -> UploadSignatureError {
        let error = request.validate().expect_err("refused");
        assert_eq!(
            sign(&request, &credentials(), NOW, 1).expect_err("sign refuses too"),
            error
        );
        error
    }

    #[test]
    fn source_context_is_limited_to_250_characters() {
        let at_limit = UploadSignatureRequest {
            source_context: Some("é".repeat(250)),
            ..Default::default()
        };
        assert_eq!(at_limit.validate(), Ok(()), "characters, not bytes");
        let error = refused(UploadSignatureRequest {
            source_context: Some("x".repeat(251)),
            ..Default::default()
        });
        assert_eq!(error.code(), "invalid_source_context");
        assert_eq!(
            error.to_string(),
            "source_context must be at most 250 characters, got 251"
        );
        let error = refused(UploadSignatureRequest {
            source_context: Some(String::new()),
            ..Default::default()
        });
        assert_eq!(error.code(), "invalid_source_context");
    }

    #[test]
    fn session_context_is_limited_to_1000_characters_and_needs_a_procedure() {
        let at_limit = UploadSignatureRequest {
            session_context: Some("s".repeat(1000)),
            ..with_procedure()
        };
        assert_eq!(at_limit.validate(), Ok(()));
        let error = refused(UploadSignatureRequest {
            session_context: Some("s".repeat(1001)),
            ..with_procedure()
        });
        assert_eq!(error.code(), "invalid_session_context");
        assert!(error.to_string().contains("at most 1000"), "{error}");
        let error = refused(UploadSignatureRequest {
            session_context: Some(String::new()),
            ..with_procedure()
        });
        assert_eq!(error.code(), "invalid_session_context");
        let error = refused(UploadSignatureRequest {
            session_context: Some("tenant=acme".to_owned()),
            ..Default::default()
        });
        assert_eq!(
            error,
            UploadSignatureError::ProcedureRequired("session_context")
        );
        assert_eq!(error.code(), "procedure_required");
        assert!(error
            .to_string()
            .starts_with("session_context applies only"));
    }

    #[test]
    fn validity_is_one_second_to_ninety_days() {
        for ok in [1, 3600, 7_776_000] {
            let request = UploadSignatureRequest {
                expire_seconds: Some(ok),
                ..Default::default()
            };
            assert_eq!(request.validate(), Ok(()), "{ok}");
        }
        for bad in [0, 7_776_001, u64::MAX] {
            let error = refused(UploadSignatureRequest {
                expire_seconds: Some(bad),
                ..Default::default()
            });
            assert_eq!(error.code(), "invalid_expire_seconds", "{bad}");
            assert!(error.to_string().contains("from 1 to 7776000"), "{error}");
        }
    }

    #[test]
    fn task_priority_is_minus_ten_to_ten_and_needs_a_procedure() {
        for ok in [-10, 0, 10] {
            let request = UploadSignatureRequest {
                task_priority: Some(ok),
                ..with_procedure()
            };
            assert_eq!(request.validate(), Ok(()), "{ok}");
        }
        for bad in [-11, 11, i64::MIN, i64::MAX] {
            let error = refused(UploadSignatureRequest {
                task_priority: Some(bad),
                ..with_procedure()
            });
            assert_eq!(error.code(), "invalid_task_priority");
            assert!(error.to_string().contains("from -10 to 10"), "{error}");
        }
        let error = refused(UploadSignatureRequest {
            task_priority: Some(1),
            ..Default::default()
        });
        assert_eq!(
            error,
            UploadSignatureError::ProcedureRequired("task_priority")
        );
    }

    #[test]
    fn task_notify_mode_is_finish_change_or_none_and_needs_a_procedure() {
        for (text, mode) in [
            ("Finish", TaskNotifyMode::Finish),
            ("Change", TaskNotifyMode::Change),
            ("None", TaskNotifyMode::None),
        ] {
            assert_eq!(text.parse::<TaskNotifyMode>(), Ok(mode));
            assert_eq!(mode.to_string(), text);
        }
        for bad in ["finish", "", "Always", " Finish"] {
            let error = bad.parse::<TaskNotifyMode>().expect_err("refused");
            assert_eq!(error.code(), "invalid_task_notify_mode");
            assert!(
                error.to_string().contains("must be Finish, Change or None"),
                "{error}"
            );
        }
        let error = refused(UploadSignatureRequest {
            task_notify_mode: Some(TaskNotifyMode::Change),
            ..Default::default()
        });
        assert_eq!(
            error,
            UploadSignatureError::ProcedureRequired("task_notify_mode")
        );
    }

    #[test]
    fn sub_application_zero_names_the_primary_and_class_ids_stay_signed_64_bit() {
        let primary = UploadSignatureRequest {
            vod_sub_app_id: Some(0),
            ..Default::default()
        };
        assert_eq!(primary.validate(), Ok(()), "0 is the primary application");
        let huge = refused(UploadSignatureRequest {
            class_id: Some(u64::MAX),
            ..Default::default()
        });
        assert_eq!(huge.code(), "invalid_class_id");
    }

    #[test]
    fn procedure_must_be_a_printable_name() {
        let long = "p".repeat(129);
        for bad in [
            "",
            "   ",
            "a\u{7}b",
            "tab\there",
            " Lead",
            "Trail ",
            long.as_str(),
        ] {
            let error = refused(UploadSignatureRequest {
                procedure: Some(bad.to_owned()),
                ..Default::default()
            });
            assert_eq!(error.code(), "invalid_procedure", "{bad:?}");
        }
        let longest = "p".repeat(128);
        for ok in ["LongVideoPreset", "my flow 2", "任务流", longest.as_str()] {
            let request = UploadSignatureRequest {
                procedure: Some(ok.to_owned()),
                ..Default::default()
            };
            assert_eq!(request.validate(), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn storage_region_must_look_like_a_region() {
        for bad in [
            "",
            "AP-Singapore",
            "ap_singapore",
            "ap--singapore",
            "-ap",
            "ap-",
            "ap singapore",
            "ap-singapore\n",
        ] {
            let error = refused(UploadSignatureRequest {
                storage_region: Some(bad.to_owned()),
                ..Default::default()
            });
            assert_eq!(error.code(), "invalid_storage_region", "{bad:?}");
        }
        for ok in ["ap-singapore", "ap-shanghai-fsi", "na-siliconvalley", "eu1"] {
            let request = UploadSignatureRequest {
                storage_region: Some(ok.to_owned()),
                ..Default::default()
            };
            assert_eq!(request.validate(), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn class_id_zero_is_sent() {
        let request = UploadSignatureRequest {
            class_id: Some(0),
            ..Default::default()
        };
        let signed = sign(&request, &credentials(), NOW, 1).expect("signed");
        assert_eq!(
            decode(&signed.signature).expect("decoded").param("classId"),
            Some("0")
        );
    }

    #[test]
    fn a_clock_before_1970_or_at_the_end_of_time_is_refused() {
        let request = UploadSignatureRequest::default();
        for now in [-1, i64::MAX - 10] {
            let error = sign(&request, &credentials(), now, 1).expect_err("refused");
            assert_eq!(error, UploadSignatureError::Clock(now));
            assert!(!error.is_request_error());
        }
    }

    #[test]
    fn defaults_fill_only_what_the_request_leaves_open() {
        let vod = VodSettings {
            default_procedure: Some("DefaultFlow".to_owned()),
            default_storage_region: Some("ap-chongqing".to_owned()),
            sub_app_id: Some(1_500_000_002),
            ..crate::config::Settings::default().vod
        };
        let mut empty = UploadSignatureRequest::default();
        empty.apply_defaults(&vod);
        assert_eq!(empty.procedure.as_deref(), Some("DefaultFlow"));
        assert_eq!(empty.storage_region.as_deref(), Some("ap-chongqing"));
        assert_eq!(empty.vod_sub_app_id, Some(1_500_000_002));

        let mut explicit = all_optional();
        explicit.apply_defaults(&vod);
        assert_eq!(explicit, all_optional());

        let primary = VodSettings {
            sub_app_id: Some(0),
            ..vod.clone()
        };
        let mut request = UploadSignatureRequest::default();
        request.apply_defaults(&primary);
        assert_eq!(request.vod_sub_app_id, None, "0 names the primary app");
        assert_eq!(check_defaults(&vod), Ok(()));
    }

    #[test]
    fn bad_defaults_are_reported_by_their_setting() {
        let base = crate::config::Settings::default().vod;
        let bad_region = VodSettings {
            default_storage_region: Some("Singapore".to_owned()),
            ..base.clone()
        };
        let problem = check_defaults(&bad_region).expect_err("refused");
        assert!(
            problem.starts_with("VODHOOK_VOD_STORAGE_REGION "),
            "{problem}"
        );
        let bad_procedure = VodSettings {
            default_procedure: Some("p".repeat(200)),
            ..base
        };
        let problem = check_defaults(&bad_procedure).expect_err("refused");
        assert!(problem.starts_with("VODHOOK_VOD_PROCEDURE "), "{problem}");
    }

    #[test]
    fn os_random_signatures_differ() {
        let request = UploadSignatureRequest {
            one_time_valid: true,
            ..Default::default()
        };
        let randoms: std::collections::HashSet<String> = (0..16)
            .map(|_| {
                let signed = sign_with_os_random(&request, &credentials(), NOW).expect("signed");
                let decoded = decode(&signed.signature).expect("decoded");
                decoded.param("random").expect("random").to_owned()
            })
            .collect();
        assert!(randoms.len() > 1, "{randoms:?}");
    }

    #[test]
    fn the_secret_key_appears_nowhere() {
        let signed = sign(&all_optional(), &credentials(), NOW, 1).expect("signed");
        let decoded = decode(&signed.signature).expect("decoded");
        assert!(!decoded.original.contains(SECRET_KEY));
        assert!(!format!("{signed:?}").contains(SECRET_KEY));
        assert!(!format!("{:?}", credentials()).contains(SECRET_KEY));
    }
}
