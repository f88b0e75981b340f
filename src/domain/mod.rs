//! vodhook's own types: what an event and an upload record mean, independent of wire formats and storage.

mod api_token;
mod event;
mod file_id;
mod page;
mod upload;

pub use api_token::{hash_token, ApiToken};
pub use event::{EventFormat, StoredEvent, VodEvent};
pub use file_id::FileId;
pub use page::{Page, PageCursor, PageLimit};
pub use upload::{Upload, UploadFields};
