//! Entry point for callback bodies: tells v3 from v2, normalises to `VodEvent`, computes the dedupe key.

use super::{callback_v2, callback_v3, procedure};
use crate::domain::{EventFormat, ProcessingChange, RecordChange, VodEvent};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Why a body is not a VOD callback at all (each maps to a 400 with its own code).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CallbackParseError {
    #[error("the body is not valid JSON: {0}")]
    NotJson(String),
    #[error("the body is JSON but not an object")]
    NotAnObject,
    #[error("the body has no event type: expected a string `EventType` (v3) or `eventType` (v2)")]
    MissingEventType,
    #[error("the event type is longer than {MAX_EVENT_TYPE_LEN} bytes; VOD's are short names such as NewFileUpload")]
    EventTypeTooLong,
}

/// VOD's event types are short names; a longer one is not a VOD event.
pub const MAX_EVENT_TYPE_LEN: usize = 256;

/// Keys that vary between sends of one event and so must not take part in its dedupe hash:
/// the callback signature and its expiry, and the reliable-mode receipt handle.
const VOLATILE_KEYS: [&str; 5] = ["Sign", "T", "sign", "t", "EventHandle"];

/// A callback body as JSON, as vodhook keeps and shows it.
pub fn parse_body(raw: &[u8]) -> Result<Value, CallbackParseError> {
    let mut body: Value =
        serde_json::from_slice(raw).map_err(|e| CallbackParseError::NotJson(e.to_string()))?;
    // Postgres text and jsonb cannot hold U+0000; the raw bytes keep the original.
    replace_nul_characters(&mut body);
    Ok(body)
}

/// Parses a callback body, lenient about everything but the event type (vod-spec.md §1.5, §2).
pub fn parse_callback(raw: &[u8]) -> Result<VodEvent, CallbackParseError> {
    let body = parse_body(raw)?;
    let Value::Object(object) = &body else {
        return Err(CallbackParseError::NotAnObject);
    };
    let (format, event_type) = detect_format(object)?;
    let (file_id, upload, change) = match format {
        EventFormat::V3 => {
            let payload = callback_v3::payload(object, &event_type);
            let upload = match event_type.as_str() {
                VodEvent::NEW_FILE_UPLOAD => callback_v3::upload(payload),
                VodEvent::PULL_COMPLETE if succeeded(payload, "ErrCode") => {
                    callback_v3::upload(payload)
                }
                _ => None,
            };
            let change =
                payload.and_then(|p| record_change(&event_type, p, procedure::v3_processing));
            (payload.and_then(callback_v3::file_id), upload, change)
        }
        EventFormat::V2 => {
            let data = object.get("data");
            let upload = match event_type.as_str() {
                VodEvent::NEW_FILE_UPLOAD => callback_v2::upload(data),
                VodEvent::PULL_COMPLETE if succeeded(data, "status") => callback_v2::upload(data),
                _ => None,
            };
            let change = data.and_then(|d| record_change(&event_type, d, procedure::v2_processing));
            (data.and_then(callback_v2::file_id), upload, change)
        }
    };
    let dedupe_key = dedupe_key(
        &event_type,
        upload.as_ref().map(|u| u.file_id.as_str()),
        &body,
    );
    Ok(VodEvent {
        event_type,
        format,
        file_id,
        dedupe_key,
        body,
        upload,
        change,
    })
}

/// A PullComplete makes a record only when the pull succeeded (error code 0 or absent).
fn succeeded(payload: Option<&Value>, code_key: &str) -> bool {
    payload
        .and_then(|p| p.get(code_key))
        .is_none_or(|code| code.as_i64() == Some(0) || code.as_str() == Some("0"))
}

/// What a ProcedureStateChanged or FileDeleted changes in upload records.
fn record_change(
    event_type: &str,
    payload: &Value,
    processing: fn(&Value) -> Option<ProcessingChange>,
) -> Option<RecordChange> {
    match event_type {
        VodEvent::PROCEDURE_STATE_CHANGED => processing(payload).map(RecordChange::Processing),
        VodEvent::FILE_DELETED => {
            let files = procedure::deleted_files(payload);
            (!files.is_empty()).then_some(RecordChange::Deleted(files))
        }
        _ => None,
    }
}

/// v3 bodies carry `EventType`, v2 bodies `eventType`; the key alone decides.
fn detect_format(object: &Map<String, Value>) -> Result<(EventFormat, String), CallbackParseError> {
    let found = [
        ("EventType", EventFormat::V3),
        ("eventType", EventFormat::V2),
    ]
    .into_iter()
    .find_map(|(key, format)| match object.get(key) {
        Some(Value::String(t)) if !t.trim().is_empty() => Some((format, t.trim().to_owned())),
        _ => None,
    });
    let (format, event_type) = found.ok_or(CallbackParseError::MissingEventType)?;
    if event_type.len() > MAX_EVENT_TYPE_LEN {
        return Err(CallbackParseError::EventTypeTooLong);
    }
    Ok((format, event_type))
}

/// VOD sends no event id, so repeats are recognised by content (vod-spec.md §9): a NewFileUpload
/// by its FileId, in either format; anything else by a hash of its canonical JSON without the
/// keys that differ between sends.
pub fn dedupe_key(event_type: &str, upload_file_id: Option<&str>, body: &Value) -> String {
    if let (VodEvent::NEW_FILE_UPLOAD, Some(file_id)) = (event_type, upload_file_id) {
        return format!("{event_type}:{file_id}");
    }
    let mut canonical = body.clone();
    if let Value::Object(object) = &mut canonical {
        for key in VOLATILE_KEYS {
            object.remove(key);
        }
    }
    // serde_json's map is ordered by key, so this serialisation is canonical.
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    format!("{event_type}:sha256:{}", hex::encode(digest))
}

fn replace_nul_characters(value: &mut Value) {
    match value {
        Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{FFFD}"),
        Value::Array(items) => items.iter_mut().for_each(replace_nul_characters),
        Value::Object(object) => {
            if object.keys().any(|k| k.contains('\0')) {
                *object = std::mem::take(object)
                    .into_iter()
                    .map(|(k, v)| (k.replace('\0', "\u{FFFD}"), v))
                    .collect();
            }
            object.values_mut().for_each(replace_nul_characters);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UploadFields;
    use chrono::{TimeZone, Utc};

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/fixtures/vod/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn parse_fixture(name: &str) -> VodEvent {
        parse_callback(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn upload_of(name: &str) -> UploadFields {
        parse_fixture(name)
            .upload
            .unwrap_or_else(|| panic!("{name}: no upload"))
    }

    #[test]
    fn v3_doc_example_yields_every_record_field() {
        let event = parse_fixture("v3-newfileupload-doc-example.json");
        assert_eq!(event.format, EventFormat::V3);
        assert_eq!(event.event_type, "NewFileUpload");
        assert_eq!(event.dedupe_key, "NewFileUpload:5285890784273533167");
        let upload = event.upload.expect("upload");
        assert_eq!(upload.file_id.as_str(), "5285890784273533167");
        assert_eq!(
            upload.media_url.as_deref(),
            Some("http://125676836723.vod2.myqcloud.com/xxx/xxx/q1BORBPQH1IA.mp4")
        );
        assert_eq!(upload.source_type.as_deref(), Some("Upload"));
        // Empty strings from VOD become null.
        assert_eq!(upload.source_context, None);
        assert_eq!(upload.procedure_task_id, None);
        assert_eq!(upload.review_audio_video_task_id, None);
        assert_eq!(upload.cover_url, None);
        assert_eq!(upload.name.as_deref(), Some("Animal World"));
        assert_eq!(upload.media_type.as_deref(), Some("mp4"));
        assert_eq!(upload.storage_region.as_deref(), Some("ap-chongqing"));
        assert_eq!(upload.class_id, Some(0));
        assert_eq!(upload.size_bytes, None);
        assert_eq!(upload.duration_seconds, None);
        assert_eq!(
            upload.media_created_at,
            Some(Utc.with_ymd_and_hms(2019, 1, 9, 16, 36, 22).unwrap())
        );
    }

    #[test]
    fn v3_full_example_keeps_a_file_id_above_i64_and_all_metadata() {
        let upload = upload_of("v3-newfileupload-full.json");
        assert_eq!(upload.file_id.as_str(), "14508071098244959037");
        assert!("14508071098244959037".parse::<i64>().is_err());
        assert_eq!(
            upload.source_context.as_deref(),
            Some(r#"{"uploadId":"u_42","tenant":"acme","origin":"client"}"#)
        );
        assert_eq!(
            upload.procedure_task_id.as_deref(),
            Some("1500000001-procedurev2-6d3c2e1f0a9b8c7d6e5f4a3b2c1d0e9ft0")
        );
        assert_eq!(
            upload.review_audio_video_task_id.as_deref(),
            Some("1500000001-ReviewAudioVideo-1f2e3d4c5b6a79880716253443526170t0")
        );
        assert_eq!(upload.name.as_deref(), Some("Product demo – 第1集"));
        assert_eq!(upload.class_id, Some(1_183_245));
        assert_eq!(upload.storage_region.as_deref(), Some("ap-singapore"));
        assert_eq!(upload.size_bytes, Some(7_700_180));
        assert_eq!(upload.duration_seconds, Some(60.04700088501));
        assert!(upload
            .cover_url
            .as_deref()
            .is_some_and(|u| u.ends_with(".jpg")));
    }

    #[test]
    fn v3_minimal_example_parses() {
        let upload = upload_of("v3-newfileupload-minimal.json");
        assert_eq!(upload.file_id.as_str(), "3270835013074261123");
        assert_eq!(upload.storage_region.as_deref(), Some("ap-singapore"));
        assert_eq!(upload.size_bytes, None);
    }

    #[test]
    fn v3_explicit_nulls_are_absent_values() {
        let event = parse_fixture("v3-newfileupload-null-fields.json");
        let upload = event.upload.expect("upload");
        assert_eq!(upload.file_id.as_str(), "3270835013074261124");
        assert_eq!(upload.source_type, None);
        assert_eq!(upload.source_context, None);
        assert_eq!(upload.size_bytes, None);
        assert_eq!(upload.media_type.as_deref(), Some("mov"));
    }

    #[test]
    fn v3_omitted_fields_are_absent_values() {
        let upload = upload_of("v3-newfileupload-omitted-fields.json");
        assert_eq!(upload.file_id.as_str(), "3270835013074261125");
        assert_eq!(upload.procedure_task_id, None);
        assert_eq!(upload.review_audio_video_task_id, None);
        assert_eq!(upload.source_type, None);
        assert_eq!(upload.size_bytes, None);
        assert_eq!(upload.name.as_deref(), Some("server-upload-7"));
    }

    #[test]
    fn v3_record_source_keeps_source_type() {
        let upload = upload_of("v3-newfileupload-record-source.json");
        assert_eq!(upload.file_id.as_str(), "243791581352756157");
        assert_eq!(upload.source_type.as_deref(), Some("Record"));
    }

    #[test]
    fn signature_fields_do_not_change_the_dedupe_key() {
        let signed = parse_fixture("v3-newfileupload-signed-assumed-placement.json");
        let plain = parse_fixture("v3-newfileupload-doc-example.json");
        assert_eq!(signed.dedupe_key, plain.dedupe_key);
        assert_eq!(signed.upload, plain.upload);
    }

    #[test]
    fn v3_other_types_are_kept_with_their_file_id() {
        let cases = [
            (
                "v3-procedurestatechanged.json",
                "ProcedureStateChanged",
                Some("5285890784246869930"),
            ),
            (
                "v3-filedeleted.json",
                "FileDeleted",
                Some("24961954183381008"),
            ),
            (
                "v3-pullcomplete.json",
                "PullComplete",
                Some("14508071098244959037"),
            ),
            ("v3-editmediacomplete.json", "EditMediaComplete", None),
            (
                "v3-unknown-future-event.json",
                "HologramRenderComplete",
                None,
            ),
        ];
        for (name, event_type, file_id) in cases {
            let event = parse_fixture(name);
            assert_eq!(event.format, EventFormat::V3, "{name}");
            assert_eq!(event.event_type, event_type, "{name}");
            assert_eq!(
                event.file_id.as_ref().map(|f| f.as_str()),
                file_id,
                "{name}"
            );
            assert_eq!(
                event.upload.is_some(),
                event_type == "PullComplete",
                "{name}: NewFileUpload and PullComplete make records"
            );
            // The FileDeleted fixture removed only transcodes: no change to the record.
            let changes = event_type == "ProcedureStateChanged";
            assert_eq!(event.change.is_some(), changes, "{name}");
            assert!(
                event
                    .dedupe_key
                    .starts_with(&format!("{event_type}:sha256:")),
                "{name}"
            );
        }
    }

    #[test]
    fn v2_doc_example_maps_legacy_names() {
        let event = parse_fixture("v2-newfileupload-doc-example.json");
        assert_eq!(event.format, EventFormat::V2);
        assert_eq!(event.dedupe_key, "NewFileUpload:5285890784273533167");
        let upload = event.upload.expect("upload");
        assert_eq!(
            upload.media_url.as_deref(),
            Some("http://125676836723.vod2.myqcloud.com/xxx/xxx/f0.flv")
        );
        assert_eq!(upload.name.as_deref(), Some("Animal World"));
        assert_eq!(
            upload.cover_url.as_deref(),
            Some("http://125676836723.vod2.myqcloud.com/xxx/xxx/xxx.jpg")
        );
        assert_eq!(upload.source_type.as_deref(), Some("Record"));
        assert_eq!(
            upload.source_context.as_deref(),
            Some("rtmp://54xx.livepush.myqcloud.com/live?bizid=54xx&record=mp4&xx")
        );
        assert_eq!(
            upload.procedure_task_id.as_deref(),
            Some("125676836723-mango-fa2fdf6a0f850d673be119cf51a7603a")
        );
        assert_eq!(upload.storage_region, None);
    }

    #[test]
    fn v2_observed_capture_has_size_and_fractional_duration() {
        let upload = upload_of("v2-newfileupload-observed.json");
        assert_eq!(upload.file_id.as_str(), "5285890790714697960");
        assert_eq!(upload.source_type.as_deref(), Some("ClientUpload"));
        assert_eq!(
            upload.source_context.as_deref(),
            Some(r#"{"sign_type":"post_video"}"#)
        );
        assert_eq!(upload.name.as_deref(), Some("1561433720"));
        assert_eq!(upload.size_bytes, Some(1_266_129));
        assert_eq!(upload.duration_seconds, Some(4.605999946594238));
    }

    #[test]
    fn v2_file_deleted_names_its_file() {
        let event = parse_fixture("v2-filedeleted.json");
        assert_eq!(event.format, EventFormat::V2);
        assert_eq!(event.event_type, "FileDeleted");
        assert_eq!(
            event.file_id.map(|f| f.to_string()).as_deref(),
            Some("24961954183381008")
        );
    }

    #[test]
    fn one_upload_in_both_formats_has_one_dedupe_key() {
        let v2 = parse_fixture("v2-newfileupload-doc-example.json");
        let v3 = parse_fixture("v3-newfileupload-doc-example.json");
        assert_eq!(v2.dedupe_key, v3.dedupe_key);
    }

    #[test]
    fn pulled_events_parse_and_ignore_their_receipt_handle() {
        let response: Value =
            serde_json::from_slice(&fixture("pullevents-response.json")).expect("json");
        let events = response["Response"]["EventSet"]
            .as_array()
            .expect("EventSet");
        let types: Vec<_> = events
            .iter()
            .map(|e| {
                parse_callback(e.to_string().as_bytes())
                    .expect("event")
                    .event_type
            })
            .collect();
        assert_eq!(
            types,
            ["NewFileUpload", "ProcedureStateChanged", "FileDeleted"]
        );

        let first = parse_callback(events[0].to_string().as_bytes()).expect("event");
        let upload = first.upload.expect("upload");
        assert_eq!(upload.file_id.as_str(), "14508071098244959037");

        let mut other_handle = events[1].clone();
        other_handle["EventHandle"] = Value::from("a-new-handle");
        assert_eq!(
            parse_callback(events[1].to_string().as_bytes())
                .expect("event")
                .dedupe_key,
            parse_callback(other_handle.to_string().as_bytes())
                .expect("event")
                .dedupe_key
        );
    }

    #[test]
    fn api_bodies_are_not_callbacks() {
        for name in [
            "api-error-response.json",
            "confirmevents-request.json",
            "confirmevents-response.json",
            "describeeventconfig-response.json",
            "modifyeventconfig-request.json",
            "pullevents-request.json",
            "pullevents-response-empty.json",
        ] {
            assert_eq!(
                parse_callback(&fixture(name)).err(),
                Some(CallbackParseError::MissingEventType),
                "{name}"
            );
        }
    }

    #[test]
    fn version_and_status_may_be_numbers_or_strings() {
        for body in [
            r#"{"version":4,"eventType":"NewFileUpload","data":{"status":0,"fileId":"1"}}"#,
            r#"{"version":"4.0","eventType":"NewFileUpload","data":{"status":"0","fileId":"1"}}"#,
            r#"{"version":"4.0","eventType":"ProcedureStateChanged","data":{"status":"FINISH","fileId":"1"}}"#,
        ] {
            let event = parse_callback(body.as_bytes()).expect(body);
            assert_eq!(event.format, EventFormat::V2);
            assert_eq!(event.file_id.map(|f| f.to_string()).as_deref(), Some("1"));
        }
    }

    #[test]
    fn a_numeric_file_id_is_kept_as_text() {
        let event = parse_callback(
            br#"{"EventType":"NewFileUpload","FileUploadEvent":{"FileId":5285890784273533167}}"#,
        )
        .expect("parses");
        assert_eq!(
            event.upload.expect("upload").file_id.as_str(),
            "5285890784273533167"
        );
    }

    #[test]
    fn inexact_numeric_file_ids_are_not_file_ids() {
        for id in ["123456789012345678901234", "5.0", "-1.5"] {
            let body =
                format!(r#"{{"EventType":"NewFileUpload","FileUploadEvent":{{"FileId":{id}}}}}"#);
            assert!(
                parse_callback(body.as_bytes())
                    .expect(id)
                    .is_upload_without_file_id(),
                "{id}"
            );
        }
    }

    #[test]
    fn whole_floats_are_integers_and_blank_text_is_absent() {
        let body = br#"{"EventType":"NewFileUpload","FileUploadEvent":{"FileId":"9",
            "MediaBasicInfo":{"ClassId":1.0,"Name":"   "},"MetaData":{"Size":7.7e6}}}"#;
        let upload = parse_callback(body)
            .expect("parses")
            .upload
            .expect("upload");
        assert_eq!(upload.class_id, Some(1));
        assert_eq!(upload.size_bytes, Some(7_700_000));
        assert_eq!(upload.name, None);
    }

    #[test]
    fn times_outside_years_1_to_9999_are_absent() {
        for time in ["9999-12-31T23:59:59-01:00", "0000-01-01T00:00:00Z"] {
            let body = format!(
                r#"{{"EventType":"NewFileUpload","FileUploadEvent":{{"FileId":"9","MediaBasicInfo":{{"CreateTime":"{time}"}}}}}}"#
            );
            let upload = parse_callback(body.as_bytes())
                .expect("parses")
                .upload
                .expect("upload");
            assert_eq!(upload.media_created_at, None, "{time}");
        }
    }

    #[test]
    fn wrongly_typed_fields_are_dropped_not_fatal() {
        let body = br#"{"EventType":"NewFileUpload","Unknown":{"x":1},"FileUploadEvent":{"FileId":"9",
            "MediaBasicInfo":{"ClassId":"12","Name":["not","text"],"CreateTime":"yesterday","SourceInfo":"odd"},
            "MetaData":{"Size":"1024","Duration":"n/a"}}}"#;
        let upload = parse_callback(body)
            .expect("parses")
            .upload
            .expect("upload");
        assert_eq!(upload.class_id, Some(12));
        assert_eq!(upload.name, None);
        assert_eq!(upload.media_created_at, None);
        assert_eq!(upload.source_type, None);
        assert_eq!(upload.size_bytes, Some(1024));
        assert_eq!(upload.duration_seconds, None);
    }

    #[test]
    fn new_file_upload_without_file_id_has_no_record() {
        for body in [
            r#"{"EventType":"NewFileUpload","FileUploadEvent":{"FileId":""}}"#,
            r#"{"EventType":"NewFileUpload","FileUploadEvent":null}"#,
            r#"{"EventType":"NewFileUpload"}"#,
            r#"{"version":"4.0","eventType":"NewFileUpload","data":{}}"#,
        ] {
            let event = parse_callback(body.as_bytes()).expect(body);
            assert!(event.is_upload_without_file_id(), "{body}");
            assert!(event.dedupe_key.contains(":sha256:"), "{body}");
        }
    }

    #[test]
    fn non_callbacks_are_refused_with_the_reason() {
        assert!(matches!(
            parse_callback(b"not json"),
            Err(CallbackParseError::NotJson(_))
        ));
        assert!(matches!(
            parse_callback(b""),
            Err(CallbackParseError::NotJson(_))
        ));
        assert_eq!(
            parse_callback(b"[1,2]").err(),
            Some(CallbackParseError::NotAnObject)
        );
        assert_eq!(
            parse_callback(b"\"x\"").err(),
            Some(CallbackParseError::NotAnObject)
        );
        assert_eq!(
            parse_callback(b"{}").err(),
            Some(CallbackParseError::MissingEventType)
        );
        assert_eq!(
            parse_callback(br#"{"EventType":7}"#).err(),
            Some(CallbackParseError::MissingEventType)
        );
        assert_eq!(
            parse_callback(br#"{"EventType":"  "}"#).err(),
            Some(CallbackParseError::MissingEventType)
        );
    }

    #[test]
    fn over_long_event_types_and_file_ids_are_bounded() {
        let long = "A".repeat(300);
        let body = format!(r#"{{"EventType":"{long}"}}"#);
        assert_eq!(
            parse_callback(body.as_bytes()).err(),
            Some(CallbackParseError::EventTypeTooLong)
        );
        let body =
            format!(r#"{{"EventType":"NewFileUpload","FileUploadEvent":{{"FileId":"{long}"}}}}"#);
        let event = parse_callback(body.as_bytes()).expect("parses");
        assert!(event.is_upload_without_file_id());
        assert!(event.dedupe_key.len() < 400);
        let body = format!(
            r#"{{"EventType":"FileDeleted","FileDeleteEvent":{{"FileIdSet":["{long}"]}}}}"#
        );
        assert_eq!(
            parse_callback(body.as_bytes()).expect("parses").file_id,
            None
        );
    }

    #[test]
    fn hash_keys_ignore_key_order_and_whitespace() {
        let a = parse_callback(br#"{"EventType":"X","XEvent":{"A":1,"B":[1,2]}}"#).expect("a");
        let b = parse_callback(b"{ \"XEvent\": {\"B\": [1, 2], \"A\": 1}, \"EventType\": \"X\" }")
            .expect("b");
        let c = parse_callback(br#"{"EventType":"X","XEvent":{"A":2,"B":[1,2]}}"#).expect("c");
        assert_eq!(a.dedupe_key, b.dedupe_key);
        assert_ne!(a.dedupe_key, c.dedupe_key);
    }

    #[test]
    fn nul_characters_are_replaced_in_the_parsed_body() {
        let event =
            parse_callback(br#"{"EventType":"X\u0000","Y\u0000":"a\u0000b"}"#).expect("parses");
        assert_eq!(event.event_type, "X\u{FFFD}");
        assert_eq!(event.body["Y\u{FFFD}"], "a\u{FFFD}b");
    }
}
