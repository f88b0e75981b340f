//! `GET /v1/uploads/{file_id}` and `GET /v1/uploads`: upload records for app backends.

use super::{list_params, ok_json, AppState, Authenticated};
use crate::domain::ProcessingStatus;
use crate::error::ApiError;
use crate::storage::UploadFilter;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

pub async fn get_upload(
    _: Authenticated,
    file_id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    match state.store.get_upload(&file_id).await? {
        Some(upload) => Ok(ok_json(&upload)),
        None => Err(ApiError::not_found(
            "upload_not_found",
            format!("no upload record for FileId {:?}", file_id.as_str()),
        )),
    }
}

#[derive(Debug, Deserialize)]
pub struct ListUploadsParams {
    source_context: Option<String>,
    source_type: Option<String>,
    procedure_task_id: Option<String>,
    storage_region: Option<String>,
    received_after: Option<String>,
    received_before: Option<String>,
    processing_status: Option<String>,
    deleted: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

pub async fn list_uploads(
    _: Authenticated,
    params: web::Query<ListUploadsParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let filter = UploadFilter {
        received_after: list_params::time("received_after", params.received_after.as_deref())?,
        received_before: list_params::time("received_before", params.received_before.as_deref())?,
        source_context: list_params::text(params.source_context),
        source_type: list_params::text(params.source_type),
        procedure_task_id: list_params::text(params.procedure_task_id),
        storage_region: list_params::text(params.storage_region),
        processing_status: processing_status(params.processing_status)?,
        deleted: list_params::boolean("deleted", params.deleted.as_deref())?,
    };
    let limit = list_params::limit(params.limit.as_deref())?;
    let cursor = list_params::cursor(params.cursor.as_deref())?;
    let page = state
        .store
        .list_uploads_json(&filter, cursor.as_ref(), limit)
        .await?;
    Ok(HttpResponse::Ok()
        .content_type(actix_web::http::header::ContentType::json())
        .body(page))
}

fn processing_status(raw: Option<String>) -> Result<Option<ProcessingStatus>, ApiError> {
    match list_params::text(raw) {
        None => Ok(None),
        Some(text) => ProcessingStatus::parse(&text).map(Some).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_processing_status",
                format!("processing_status must be processing, finished or failed, got {text:?}"),
            )
        }),
    }
}
