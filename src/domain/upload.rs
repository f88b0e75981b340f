//! The upload record: what vodhook knows about one media file.

use super::FileId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The fields of an upload record that come from VOD, as extracted from a NewFileUpload.
/// Empty strings from VOD are already `None` here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadFields {
    pub file_id: FileId,
    pub media_url: Option<String>,
    pub source_type: Option<String>,
    pub source_context: Option<String>,
    pub procedure_task_id: Option<String>,
    pub review_audio_video_task_id: Option<String>,
    pub name: Option<String>,
    pub media_type: Option<String>,
    pub cover_url: Option<String>,
    pub storage_region: Option<String>,
    pub class_id: Option<i64>,
    pub size_bytes: Option<i64>,
    pub duration_seconds: Option<f64>,
    #[serde(serialize_with = "super::json_time::serialize_option")]
    pub media_created_at: Option<DateTime<Utc>>,
}

/// A stored upload record, as the query API serves it: VOD's fields plus vodhook's bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upload {
    #[serde(flatten)]
    pub fields: UploadFields,
    #[serde(flatten)]
    pub lifecycle: UploadLifecycle,
    pub first_event_id: Uuid,
    #[serde(serialize_with = "super::json_time::serialize")]
    pub received_at: DateTime<Utc>,
    #[serde(serialize_with = "super::json_time::serialize")]
    pub updated_at: DateTime<Utc>,
}

/// What happened to the file after its upload: its task flow's progress, and its deletion.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UploadLifecycle {
    /// `processing`, `finished` or `failed` (see `ProcessingStatus`); `None` before any
    /// ProcedureStateChanged.
    pub processing_status: Option<String>,
    /// The task whose state this is.
    pub processing_task_id: Option<String>,
    /// What a backend acts on: `{"outputs": [{type, definition, url, size, duration}], "errors":
    /// [{type, code, message}]}`.
    pub processing_results: Option<serde_json::Value>,
    /// The `SessionContext` the task was started with.
    pub session_context: Option<String>,
    /// When the processing state last changed.
    #[serde(serialize_with = "super::json_time::serialize_option")]
    pub processing_updated_at: Option<DateTime<Utc>>,
    /// When VOD reported the file deleted; the record is kept.
    #[serde(serialize_with = "super::json_time::serialize_option")]
    pub deleted_at: Option<DateTime<Utc>>,
}

/// Where a file's processing (its task flow) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessingStatus {
    Processing,
    Finished,
    Failed,
}

impl ProcessingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessingStatus::Processing => "processing",
            ProcessingStatus::Finished => "finished",
            ProcessingStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<ProcessingStatus> {
        match text {
            "processing" => Some(ProcessingStatus::Processing),
            "finished" => Some(ProcessingStatus::Finished),
            "failed" => Some(ProcessingStatus::Failed),
            _ => None,
        }
    }
}

/// A ProcedureStateChanged, as it changes the upload record of its file.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessingChange {
    pub file_id: FileId,
    pub task_id: Option<String>,
    pub status: ProcessingStatus,
    /// Orders the states of one task (finished above processing, then more finished sub-tasks
    /// above fewer), so that an older state arriving late never overwrites a newer one.
    pub rank: i64,
    pub results: serde_json::Value,
    pub session_context: Option<String>,
}

/// A change an event makes to upload records other than creating them.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordChange {
    Processing(ProcessingChange),
    /// FileDeleted: these files are gone from VOD.
    Deleted(Vec<FileId>),
}
