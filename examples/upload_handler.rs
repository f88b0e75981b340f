//! An app's own vodhook binary with an in-process handler: every NewFileUpload reaches
//! `RecordUploader` durably (outbox row, retries, attempt log, dead letters, replay), exactly as
//! an HTTP subscriber would. Run it like `vodhook serve`:
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/vodhook VODHOOK_API_TOKENS=dev-token-change-me \
//!   cargo run --example upload_handler
//! ```

use vodhook::config::Settings;
use vodhook::fanout::{EventHandler, Notification};
use vodhook::startup::Application;

/// Tells the app which of its users uploaded which file.
struct RecordUploader;

#[async_trait::async_trait]
impl EventHandler for RecordUploader {
    async fn handle(&self, notification: &Notification) -> anyhow::Result<()> {
        let Some(upload) = &notification.data.upload else {
            // An upload event always carries its record; retry later if not (it cannot happen).
            anyhow::bail!("NewFileUpload {} without an upload record", notification.id);
        };
        // A real app would write to its own database here; an `Err` makes vodhook retry.
        tracing::info!(
            file_id = upload.fields.file_id.as_str(),
            user = upload
                .fields
                .source_context
                .as_deref()
                .unwrap_or("(unknown)"),
            media_url = upload.fields.media_url.as_deref().unwrap_or(""),
            "new upload"
        );
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load(None)?;
    vodhook::telemetry::init(settings.log_format);
    let app = Application::builder(settings)
        // The name is stored with each delivery: keep it stable across releases.
        .handler("record-uploader", &["NewFileUpload"], RecordUploader)?
        .build()
        .await?;
    app.run_until_stopped().await?;
    Ok(())
}
