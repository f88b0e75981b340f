//! Tencent VOD's wire formats: callback bodies (v3 and legacy v2) turned into `VodEvent`s.

mod callback;
pub mod callback_sign;
mod callback_v2;
mod callback_v3;
mod lenient;
mod procedure;
pub mod tc3;
pub mod upload_signature;
pub mod vod_api;

pub use callback::{dedupe_key, parse_body, parse_callback, CallbackParseError};
