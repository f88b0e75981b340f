//! The upload record: what vodhook knows about one media file.

use super::FileId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The fields of an upload record that come from VOD, as extracted from a NewFileUpload.
/// Empty strings from VOD are already `None` here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct UploadFields {
    #[sqlx(try_from = "String")]
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
    pub media_created_at: Option<DateTime<Utc>>,
}

/// A stored upload record, as the query API serves it: VOD's fields plus vodhook's bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Upload {
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub fields: UploadFields,
    pub first_event_id: Uuid,
    pub received_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
