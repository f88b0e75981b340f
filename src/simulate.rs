//! `vodhook simulate`: realistic VOD callbacks for demos, first runs and the benchmark.

use anyhow::Context;
use chrono::{SecondsFormat, Utc};
use rand::Rng;
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SimulatedEvent {
    /// v3 NewFileUpload, the format VOD sends today.
    NewFileUpload,
    /// The same upload in the legacy v2 format.
    NewFileUploadV2,
}

/// A fresh FileId: 19 or 20 decimal digits, like VOD's (some exceed i64).
pub fn random_file_id() -> String {
    rand::thread_rng()
        .gen_range(1_000_000_000_000_000_000u64..=u64::MAX)
        .to_string()
}

/// The JSON body VOD would send for `event`.
pub fn body(event: SimulatedEvent, file_id: Option<&str>, source_context: Option<&str>) -> Vec<u8> {
    let file_id = file_id.map_or_else(random_file_id, str::to_owned);
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let media_url =
        format!("https://1500000001.vod-qcloud.com/a1b2c3d4vodsgp1500000001/{file_id}/demo.mp4");
    let value = match event {
        SimulatedEvent::NewFileUpload => json!({
            "EventType": "NewFileUpload",
            "FileUploadEvent": {
                "FileId": file_id,
                "MediaBasicInfo": {
                    "Name": "demo-upload",
                    "Description": "",
                    "CreateTime": now,
                    "UpdateTime": now,
                    "ExpireTime": "9999-12-31T23:59:59Z",
                    "ClassId": 0,
                    "ClassName": "Other",
                    "ClassPath": "Other",
                    "CoverUrl": "",
                    "Type": "mp4",
                    "MediaUrl": media_url,
                    "SourceInfo": {"SourceType": "Upload", "SourceContext": source_context.unwrap_or("")},
                    "StorageRegion": "ap-singapore",
                    "StoragePath": "",
                    "TagSet": [],
                    "Vid": "",
                    "Category": "Video",
                    "Status": "Normal",
                    "StorageClass": "STANDARD"
                },
                "ProcedureTaskId": "",
                "ReviewAudioVideoTaskId": "",
                "MetaData": {
                    "Size": 7_700_180, "Container": "mov,mp4,m4a,3gp,3g2,mj2", "Bitrate": 1_021_028,
                    "Height": 1080, "Width": 1920, "Duration": 60.047, "Rotate": 0,
                    "VideoStreamSet": [{"Bitrate": 637_174, "Height": 1080, "Width": 1920, "Codec": "h264", "Fps": 30}],
                    "AudioStreamSet": [{"Bitrate": 383_854, "SamplingRate": 48000, "Codec": "aac"}],
                    "VideoDuration": 60.047, "AudioDuration": 59.99, "Md5": ""
                }
            }
        }),
        SimulatedEvent::NewFileUploadV2 => json!({
            "version": "4.0",
            "eventType": "NewFileUpload",
            "data": {
                "status": 0, "message": "", "vodTaskId": "",
                "fileId": file_id, "fileName": "demo-upload", "fileUrl": media_url, "coverUrl": "",
                "sourceType": "ClientUpload", "sourceContext": source_context.unwrap_or(""),
                "procedureTaskId": "", "author": "", "continued": 0,
                "metaData": {"size": 7_700_180, "duration": 60, "floatDuration": 60.047, "width": 1920, "height": 1080}
            }
        }),
    };
    value.to_string().into_bytes()
}

/// Posts `body` as VOD would and prints the answer; fails unless it is a 2xx.
pub async fn post(url: &str, body: Vec<u8>) -> anyhow::Result<()> {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let text = response.text().await.context("cannot read the response")?;
    println!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    println!("{text}");
    anyhow::ensure!(status.is_success(), "vodhook answered {status}");
    Ok(())
}
