//! vodhook's own types: what an event and an upload record mean, independent of wire formats and storage.

mod api_token;
mod event;
mod file_id;
pub(crate) mod json_time;
mod page;
mod signing_secret;
mod subscription;
mod timestamp;
mod upload;

pub use api_token::{hash_token, ApiToken};
pub use event::{EventFormat, StoredEvent, VodEvent};
pub use file_id::FileId;
pub use page::{Page, PageCursor, PageLimit};
pub use signing_secret::SigningSecret;
pub use subscription::{validate_description, validate_event_types, validate_url, Subscription};
pub use timestamp::storable_time;
pub use upload::{
    ProcessingChange, ProcessingStatus, RecordChange, Upload, UploadFields, UploadLifecycle,
};
