//! ProcedureStateChanged (v3 and v2) and FileDeleted, as changes to upload records.
//!
//! A task flow reports PROCESSING and then FINISH, and with `TasksNotifyMode=Change` once per
//! sub-task state change. VOD gives no time or sequence number, so states are ordered by progress:
//! FINISH above PROCESSING, then by how many sub-tasks have ended.

use super::lenient;
use crate::domain::{FileId, ProcessingChange, ProcessingStatus};
use serde_json::{json, Map, Value};

/// One sub-task of a task flow, in either format.
struct SubTask<'a> {
    kind: String,
    status: Option<String>,
    err_code: Option<i64>,
    message: Option<String>,
    /// What the sub-task was asked for (a transcode's template `Definition`).
    input: Option<&'a Value>,
    output: Option<&'a Value>,
}

impl SubTask<'_> {
    fn ended(&self) -> bool {
        matches!(self.status.as_deref(), Some("SUCCESS" | "FAIL"))
    }

    fn failed(&self) -> bool {
        self.status.as_deref() == Some("FAIL") || self.err_code.is_some_and(|c| c != 0)
    }
}

/// A v3 `ProcedureStateChangeEvent`.
pub fn v3_processing(payload: &Value) -> Option<ProcessingChange> {
    let file_id = payload.get("FileId").and_then(lenient::file_id)?;
    // Each result set entry is {"Type": ..., "<Type>Task": {"Status", "ErrCode", "Message",
    // "Output", ...}}: the task object is the entry's object-valued field with a Status.
    let sets = [
        "MediaProcessResultSet",
        "AiContentReviewResultSet",
        "AiAnalysisResultSet",
        "AiRecognitionResultSet",
    ];
    let subtasks = sets
        .iter()
        .filter_map(|set| payload.get(*set)?.as_array())
        .flatten()
        .filter_map(|entry| {
            let entry = entry.as_object()?;
            let task = entry
                .values()
                .find(|v| v.get("Status").is_some())
                .unwrap_or(&Value::Null);
            Some(SubTask {
                kind: text(entry.get("Type")).unwrap_or_else(|| "Unknown".to_owned()),
                status: text(task.get("Status")),
                err_code: int(task.get("ErrCode")),
                message: text(task.get("Message")),
                input: task.get("Input"),
                output: task.get("Output"),
            })
        })
        .collect();
    Some(change(
        file_id,
        text(payload.get("TaskId")),
        text(payload.get("Status")),
        int(payload.get("ErrCode")),
        text(payload.get("Message")),
        subtasks,
        text(payload.get("SessionContext")),
    ))
}

/// A v2 ProcedureStateChanged `data`: `status` is the task's state there, `processTaskList` its
/// sub-tasks.
pub fn v2_processing(data: &Value) -> Option<ProcessingChange> {
    let file_id = data.get("fileId").and_then(lenient::file_id)?;
    let subtasks = data
        .get("processTaskList")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|task| SubTask {
            kind: text(task.get("taskType")).unwrap_or_else(|| "Unknown".to_owned()),
            status: text(task.get("status")),
            err_code: int(task.get("errCode")),
            message: text(task.get("message")),
            input: task.get("input"),
            output: task.get("output"),
        })
        .collect();
    Some(change(
        file_id,
        text(data.get("vodTaskId")),
        text(data.get("status")),
        int(data.get("errCode")),
        text(data.get("message")),
        subtasks,
        text(data.get("sessionContext")),
    ))
}

/// The files a FileDeleted removed entirely. v3 lists what each deletion removed
/// (`FileDeleteResultInfo[].DeleteParts`): no parts, or the original files, mean the whole media;
/// other parts (transcodes, covers) leave the file. A file in `FileIdSet` without result info is
/// taken as deleted whole; v2 (`fileInfo[].fileId`) only reports whole deletions.
pub fn deleted_files(payload: &Value) -> Vec<FileId> {
    let results: Vec<&Value> = payload
        .get("FileDeleteResultInfo")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let whole = |info: &Value| {
        let parts = info.get("DeleteParts").and_then(Value::as_array);
        parts.is_none_or(|parts| {
            parts.is_empty()
                || parts
                    .iter()
                    .any(|p| p.get("Type").and_then(Value::as_str) == Some("OriginalFiles"))
        })
    };
    let about = |info: &&Value, file: &FileId| {
        info.get("FileId").and_then(lenient::file_id).as_ref() == Some(file)
    };
    let listed = payload
        .get("FileIdSet")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(lenient::file_id)
        .filter(|file| {
            let mut infos = results.iter().filter(|info| about(info, file)).peekable();
            infos.peek().is_none() || infos.any(|info| whole(info))
        });
    let only_described = results
        .iter()
        .filter(|info| whole(info))
        .filter_map(|info| info.get("FileId").and_then(lenient::file_id));
    let v2 = payload
        .get("fileInfo")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| f.get("fileId").and_then(lenient::file_id));
    let mut files: Vec<FileId> = listed.chain(only_described).chain(v2).collect();
    files.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    files.dedup();
    files
}

fn change(
    file_id: FileId,
    task_id: Option<String>,
    task_status: Option<String>,
    err_code: Option<i64>,
    message: Option<String>,
    subtasks: Vec<SubTask<'_>>,
    session_context: Option<String>,
) -> ProcessingChange {
    let finished = task_status.as_deref() == Some("FINISH");
    let task_failed = err_code.is_some_and(|c| c != 0);
    let status = match (
        finished,
        task_failed || subtasks.iter().any(SubTask::failed),
    ) {
        (false, _) => ProcessingStatus::Processing,
        (true, false) => ProcessingStatus::Finished,
        (true, true) => ProcessingStatus::Failed,
    };
    let ended = subtasks.iter().filter(|t| t.ended()).count();
    let rank = (i64::from(finished) << 32) + i64::try_from(ended).unwrap_or(i64::MAX >> 1);
    let mut errors: Vec<Value> = subtasks
        .iter()
        .filter(|t| t.failed())
        .map(|t| json!({"type": t.kind, "code": t.err_code, "message": t.message}))
        .collect();
    if task_failed {
        errors.insert(
            0,
            json!({"type": "Procedure", "code": err_code, "message": message}),
        );
    }
    let outputs: Vec<Value> = subtasks
        .iter()
        .filter(|t| matches!(t.kind.as_str(), "Transcode" | "AdaptiveDynamicStreaming"))
        .filter(|t| t.status.as_deref() == Some("SUCCESS"))
        .filter_map(|t| {
            let output = t.output?.as_object()?;
            // The template is the input's Definition; some outputs report 0 there.
            let definition = t
                .input
                .and_then(Value::as_object)
                .and_then(|input| int(field(input, "Definition")))
                .or_else(|| int(field(output, "Definition")));
            Some(json!({
                "type": t.kind,
                "definition": definition,
                "url": text(field(output, "Url")),
                "size": int(field(output, "Size")),
                "duration": float(field(output, "Duration")),
            }))
        })
        .collect();
    ProcessingChange {
        file_id,
        task_id,
        status,
        rank,
        results: json!({"outputs": outputs, "errors": errors}),
        session_context,
    }
}

/// A field by its v3 (PascalCase) or v2 (camelCase) name.
fn field<'a>(object: &'a Map<String, Value>, pascal: &str) -> Option<&'a Value> {
    object.get(pascal).or_else(|| {
        let mut camel = pascal.to_owned();
        camel[..1].make_ascii_lowercase();
        object.get(&camel)
    })
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn int(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn float(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/vod")
            .join(name);
        serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json")
    }

    #[test]
    fn a_finished_v3_task_reports_its_outputs() {
        let body = fixture("v3-procedurestatechanged.json");
        let change = v3_processing(&body["ProcedureStateChangeEvent"]).expect("change");
        assert_eq!(change.file_id.as_str(), "5285890784246869930");
        assert_eq!(
            change.task_id.as_deref(),
            Some("1256768367-Procedure-475b7237438a39560b9879a4556cb177t1")
        );
        assert_eq!(change.status, ProcessingStatus::Finished);
        assert_eq!(change.rank, (1 << 32) + 2, "finished, two sub-tasks ended");
        assert_eq!(
            change.session_context.as_deref(),
            Some("{\"uploadId\":\"u_42\"}")
        );
        let outputs = change.results["outputs"].as_array().expect("outputs");
        assert_eq!(outputs.len(), 1);
        assert_eq!(
            outputs[0]["url"],
            "https://1256768367.vod2.myqcloud.com/xxx/xxx/v.f20.mp4"
        );
        assert_eq!(outputs[0]["size"], 4189073);
        assert_eq!(outputs[0]["definition"], 20, "the template, from the input");
        assert_eq!(change.results["errors"], json!([]));
    }

    #[test]
    fn a_failed_sub_task_fails_the_task_and_is_reported() {
        let mut body = fixture("v3-procedurestatechanged.json");
        let task =
            &mut body["ProcedureStateChangeEvent"]["MediaProcessResultSet"][0]["TranscodeTask"];
        task["Status"] = json!("FAIL");
        task["ErrCode"] = json!(40000);
        task["Message"] = json!("source unreadable");
        let change = v3_processing(&body["ProcedureStateChangeEvent"]).expect("change");
        assert_eq!(change.status, ProcessingStatus::Failed);
        assert_eq!(
            change.results["errors"],
            json!([{"type": "Transcode", "code": 40000, "message": "source unreadable"}])
        );
        assert_eq!(change.results["outputs"], json!([]));
    }

    #[test]
    fn processing_states_rank_below_finished_and_by_progress() {
        let mut body = fixture("v3-procedurestatechanged.json");
        let event = &mut body["ProcedureStateChangeEvent"];
        event["Status"] = json!("PROCESSING");
        event["MediaProcessResultSet"][1]["CoverBySnapshotTask"]["Status"] = json!("PROCESSING");
        let one_done = v3_processing(event).expect("change");
        event["MediaProcessResultSet"][1]["CoverBySnapshotTask"]["Status"] = json!("SUCCESS");
        let two_done = v3_processing(event).expect("change");
        assert_eq!(one_done.status, ProcessingStatus::Processing);
        assert!(one_done.rank < two_done.rank);
        event["Status"] = json!("FINISH");
        assert!(two_done.rank < v3_processing(event).expect("change").rank);
    }

    #[test]
    fn v2_tasks_and_deletions_are_read() {
        let data = json!({
            "vodTaskId": "1400155958-Procedure-2e1af2456351812be963e309cc133403t0",
            "status": "FINISH",
            "errCode": 0,
            "fileId": "7447398155106025700",
            "sessionContext": "s-1",
            "processTaskList": [{
                "taskType": "Transcode", "status": "SUCCESS", "errCode": 0,
                "output": {"url": "http://x/v.f20.mp4", "size": 10, "duration": 1.5, "definition": 20}
            }]
        });
        let change = v2_processing(&data).expect("change");
        assert_eq!(change.status, ProcessingStatus::Finished);
        assert_eq!(change.results["outputs"][0]["definition"], 20);
        assert_eq!(change.results["outputs"][0]["duration"], 1.5);
        // The fixture removed only the file's transcodes: the file stays.
        let mut v3 = fixture("v3-filedeleted.json");
        assert_eq!(deleted_files(&v3["FileDeleteEvent"]), []);
        v3["FileDeleteEvent"]["FileDeleteResultInfo"][0]["DeleteParts"] = json!([]);
        let files = deleted_files(&v3["FileDeleteEvent"]);
        assert_eq!(
            files.iter().map(FileId::as_str).collect::<Vec<_>>(),
            ["24961954183381008"]
        );
        v3["FileDeleteEvent"]["FileDeleteResultInfo"][0]["DeleteParts"] =
            json!([{"Type": "OriginalFiles"}, {"Type": "TranscodeFiles", "Definition": 20}]);
        assert_eq!(deleted_files(&v3["FileDeleteEvent"]), files);
        // Result info alone (no FileIdSet) is read too.
        let only_info = json!({"FileDeleteResultInfo": [{"FileId": "1005", "DeleteParts": []}]});
        assert_eq!(deleted_files(&only_info).len(), 1);
        let v2 = fixture("v2-filedeleted.json");
        assert_eq!(deleted_files(&v2["data"]), files);
    }
}
