//! `VodEvent`: one VOD notification normalised from either wire format, and `StoredEvent`, as kept.

use super::{FileId, RecordChange, UploadFields};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// Which wire format an event arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventFormat {
    /// Current format: `EventType` plus one `<Xxx>Event` object.
    V3,
    /// Legacy 2019 format: `version`, `eventType`, `data`.
    V2,
}

impl EventFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            EventFormat::V3 => "v3",
            EventFormat::V2 => "v2",
        }
    }

    pub fn parse(raw: &str) -> Option<EventFormat> {
        match raw {
            "v3" => Some(EventFormat::V3),
            "v2" => Some(EventFormat::V2),
            _ => None,
        }
    }
}

/// A notification as vodhook understands it, whatever format it came in.
#[derive(Debug, Clone)]
pub struct VodEvent {
    /// VOD's `EventType` (v3) or `eventType` (v2), verbatim: unknown types are kept too.
    pub event_type: String,
    pub format: EventFormat,
    /// The media file the event is about, when it names exactly one.
    pub file_id: Option<FileId>,
    /// Identifies repeats of the same event (VOD sends no event id): see `tencent::dedupe_key`.
    pub dedupe_key: String,
    /// The parsed body, with NUL characters replaced so every store can hold it.
    pub body: serde_json::Value,
    /// Present for a NewFileUpload or PullComplete that carries a FileId: the upload record to
    /// create or complete.
    pub upload: Option<UploadFields>,
    /// What else the event changes in upload records (processing, deletion); never set
    /// together with `upload`.
    pub change: Option<RecordChange>,
}

impl VodEvent {
    pub const NEW_FILE_UPLOAD: &'static str = "NewFileUpload";
    pub const PULL_COMPLETE: &'static str = "PullComplete";
    pub const PROCEDURE_STATE_CHANGED: &'static str = "ProcedureStateChanged";
    pub const FILE_DELETED: &'static str = "FileDeleted";

    /// A NewFileUpload without a FileId cannot make an upload record: it is stored, then refused.
    pub fn is_upload_without_file_id(&self) -> bool {
        self.event_type == Self::NEW_FILE_UPLOAD && self.upload.is_none()
    }
}

/// An event as stored, served by the query API.
#[derive(Debug, Clone, Serialize)]
pub struct StoredEvent {
    pub id: Uuid,
    pub event_type: String,
    pub format: EventFormat,
    pub received_at: DateTime<Utc>,
    pub file_id: Option<String>,
    pub body: serde_json::Value,
    /// Request headers worth keeping (content-type, user-agent, forwarding headers).
    pub headers: serde_json::Value,
    pub client_addr: Option<String>,
}
