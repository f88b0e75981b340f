//! The current (v3) callback body: `{"EventType": "...", "<Xxx>Event": {...}}`, PascalCase keys.

use super::lenient;
use crate::domain::{FileId, UploadFields};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

/// `FileUploadEvent` (VOD's `FileUploadTask`); also the shape of `PullCompleteEvent`'s media fields.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct FileUploadTask {
    #[serde(deserialize_with = "lenient::text")]
    file_id: Option<String>,
    #[serde(deserialize_with = "lenient::object")]
    media_basic_info: Option<MediaBasicInfo>,
    #[serde(deserialize_with = "lenient::text")]
    procedure_task_id: Option<String>,
    #[serde(deserialize_with = "lenient::text")]
    review_audio_video_task_id: Option<String>,
    #[serde(deserialize_with = "lenient::object")]
    meta_data: Option<MediaMetaData>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct MediaBasicInfo {
    #[serde(deserialize_with = "lenient::text")]
    name: Option<String>,
    #[serde(deserialize_with = "lenient::time")]
    create_time: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "lenient::int")]
    class_id: Option<i64>,
    #[serde(deserialize_with = "lenient::text")]
    cover_url: Option<String>,
    #[serde(rename = "Type", deserialize_with = "lenient::text")]
    media_type: Option<String>,
    #[serde(deserialize_with = "lenient::text")]
    media_url: Option<String>,
    #[serde(deserialize_with = "lenient::object")]
    source_info: Option<MediaSourceData>,
    #[serde(deserialize_with = "lenient::text")]
    storage_region: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct MediaSourceData {
    #[serde(deserialize_with = "lenient::text")]
    source_type: Option<String>,
    #[serde(deserialize_with = "lenient::text")]
    source_context: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct MediaMetaData {
    #[serde(deserialize_with = "lenient::int")]
    size: Option<i64>,
    #[serde(deserialize_with = "lenient::float")]
    duration: Option<f64>,
}

/// The payload object of a v3 body: the `<Xxx>Event` sibling of `EventType`. Its key usually is
/// the type plus `Event`, but not always (`FileUploadEvent`, `SnapshotByTimeOffsetCompleteEvent`,
/// old spellings without the suffix), so fall back to the single object-valued sibling.
pub fn payload<'a>(body: &'a Map<String, Value>, event_type: &str) -> Option<&'a Value> {
    let known_key = match event_type {
        "NewFileUpload" => "FileUploadEvent",
        "ProcedureStateChanged" => "ProcedureStateChangeEvent",
        "FileDeleted" => "FileDeleteEvent",
        "CreateSnapshotByTimeOffsetComplete" => "SnapshotByTimeOffsetCompleteEvent",
        _ => "",
    };
    let by_name = [
        known_key.to_owned(),
        format!("{event_type}Event"),
        event_type.to_owned(),
    ]
    .into_iter()
    .filter(|key| !key.is_empty())
    .find_map(|key| body.get(&key).filter(|v| v.is_object()));
    by_name.or_else(|| {
        let mut objects = body
            .iter()
            .filter(|(k, v)| *k != "EventType" && v.is_object());
        match (objects.next(), objects.next()) {
            (Some((_, only)), None) => Some(only),
            _ => None,
        }
    })
}

/// The one FileId the event is about, if its payload names one directly (`FileId`), or lists
/// exactly one (`FileIdSet` of FileDeleted).
pub fn file_id(payload: &Value) -> Option<FileId> {
    let direct = payload.get("FileId").and_then(lenient::file_id);
    direct.or_else(|| match payload.get("FileIdSet")?.as_array()?.as_slice() {
        [only] => lenient::file_id(only),
        _ => None,
    })
}

/// The upload record a `FileUploadEvent` describes; `None` without a FileId.
pub fn upload(payload: Option<&Value>) -> Option<UploadFields> {
    let task: FileUploadTask = lenient::from_value(payload)?;
    let file_id = FileId::parse(task.file_id.as_deref()?)?;
    let info = task.media_basic_info.unwrap_or_default();
    let source = info.source_info.unwrap_or_default();
    let meta = task.meta_data.unwrap_or_default();
    Some(UploadFields {
        file_id,
        media_url: info.media_url,
        source_type: source.source_type,
        source_context: source.source_context,
        procedure_task_id: task.procedure_task_id,
        review_audio_video_task_id: task.review_audio_video_task_id,
        name: info.name,
        media_type: info.media_type,
        cover_url: info.cover_url,
        storage_region: info.storage_region,
        class_id: info.class_id,
        size_bytes: meta.size,
        duration_seconds: meta.duration,
        media_created_at: info.create_time,
    })
}
