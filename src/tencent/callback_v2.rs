//! The legacy (v2.0) callback body: `{"version": "4.0", "eventType": "...", "data": {...}}`, camelCase keys.

use super::lenient;
use crate::domain::{FileId, UploadFields};
use serde::Deserialize;
use serde_json::Value;

/// `data` of a v2 NewFileUpload, including the fields of the "with metadata" variant and of
/// real captures (`metaData`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct NewFileUploadData {
    #[serde(deserialize_with = "lenient::text")]
    file_id: Option<String>,
    #[serde(deserialize_with = "lenient::text")]
    file_name: Option<String>,
    #[serde(deserialize_with = "lenient::text")]
    file_url: Option<String>,
    #[serde(deserialize_with = "lenient::text")]
    cover_url: Option<String>,
    #[serde(deserialize_with = "lenient::text")]
    source_type: Option<String>,
    #[serde(deserialize_with = "lenient::text")]
    source_context: Option<String>,
    #[serde(deserialize_with = "lenient::text")]
    procedure_task_id: Option<String>,
    #[serde(deserialize_with = "lenient::object")]
    meta_data: Option<MetaData>,
    #[serde(deserialize_with = "lenient::int")]
    file_size: Option<i64>,
    #[serde(deserialize_with = "lenient::float")]
    duration: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct MetaData {
    #[serde(deserialize_with = "lenient::int")]
    size: Option<i64>,
    #[serde(deserialize_with = "lenient::int")]
    total_size: Option<i64>,
    #[serde(deserialize_with = "lenient::float")]
    float_duration: Option<f64>,
    #[serde(deserialize_with = "lenient::float")]
    duration: Option<f64>,
}

/// The one FileId a v2 event is about: `data.fileId`, or a single-entry `data.fileInfo` (FileDeleted).
pub fn file_id(data: &Value) -> Option<FileId> {
    data.get("fileId").and_then(lenient::file_id).or_else(|| {
        match data.get("fileInfo")?.as_array()?.as_slice() {
            [only] => only.get("fileId").and_then(lenient::file_id),
            _ => None,
        }
    })
}

/// The upload record a v2 NewFileUpload describes; `None` without a FileId. v2 has no storage
/// region, class or media type; `sourceType` (ServerUpload / ClientUpload / Record) is kept as sent.
pub fn upload(data: Option<&Value>) -> Option<UploadFields> {
    let data: NewFileUploadData = lenient::from_value(data)?;
    let file_id = FileId::parse(data.file_id.as_deref()?)?;
    let meta = data.meta_data.unwrap_or_default();
    Some(UploadFields {
        file_id,
        media_url: data.file_url,
        source_type: data.source_type,
        source_context: data.source_context,
        procedure_task_id: data.procedure_task_id,
        review_audio_video_task_id: None,
        name: data.file_name,
        media_type: None,
        cover_url: data.cover_url,
        storage_region: None,
        class_id: None,
        size_bytes: meta.size.or(meta.total_size).or(data.file_size),
        duration_seconds: meta.float_duration.or(meta.duration).or(data.duration),
        media_created_at: None,
    })
}
