//! The command line: `serve`, `migrate`, `token`, `simulate`.

use crate::config::Settings;
use crate::domain::ApiToken;
use crate::first_run;
use crate::simulate::{self, SimulatedEvent};
use crate::startup::{self, Application};
use crate::storage::Access;
use crate::telemetry;
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "vodhook",
    version,
    about = "Receiver for Tencent Cloud VOD event notifications"
)]
pub struct Cli {
    /// TOML file with settings; environment variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending migrations, then serve the HTTP API until SIGTERM/SIGINT.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage API tokens for the query API.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Post a realistic VOD callback to a running vodhook and print the response.
    Simulate {
        /// Callback URL, e.g. http://127.0.0.1:8080/v1/callbacks/vod
        #[arg(long)]
        url: String,
        /// Post this file's bytes as the body instead of a generated event.
        #[arg(long, conflicts_with_all = ["event", "source_context", "file_id"])]
        file: Option<PathBuf>,
        /// Which event to generate.
        #[arg(long, value_enum, default_value_t = SimulatedEvent::NewFileUpload)]
        event: SimulatedEvent,
        /// SourceContext of the generated upload (e.g. your user id).
        #[arg(long)]
        source_context: Option<String>,
        /// FileId of the generated upload (default: a fresh random one).
        #[arg(long)]
        file_id: Option<String>,
    },
    /// Print a VOD client-upload signature (stdout) and its expiry (stderr), signed with
    /// VODHOOK_TENCENT_SECRET_ID/KEY; defaults come from the VOD settings, as for the API.
    SignUpload {
        /// sourceContext, returned in the upload callback (at most 250 characters).
        #[arg(long)]
        source_context: Option<String>,
        /// Task-flow template to run after the upload (default: VODHOOK_VOD_PROCEDURE).
        #[arg(long)]
        procedure: Option<String>,
        /// Storage region such as ap-singapore (default: VODHOOK_VOD_STORAGE_REGION).
        #[arg(long)]
        storage_region: Option<String>,
        /// Media category ID.
        #[arg(long)]
        class_id: Option<u64>,
        /// Make the signature usable for one upload only.
        #[arg(long)]
        one_time: bool,
        /// Validity in seconds, 1 to 7776000 (default: 3600).
        #[arg(long)]
        expire_seconds: Option<u64>,
        /// VOD sub-application ID (default: VODHOOK_VOD_SUB_APP_ID).
        #[arg(long)]
        vod_sub_app_id: Option<u64>,
        /// sessionContext, returned in ProcedureStateChanged (needs a procedure).
        #[arg(long)]
        session_context: Option<String>,
        /// Priority of the procedure's task, -10 to 10 (needs a procedure).
        #[arg(long, allow_negative_numbers = true)]
        task_priority: Option<i64>,
        /// Finish, Change or None: when ProcedureStateChanged is sent (needs a procedure).
        #[arg(long)]
        task_notify_mode: Option<crate::tencent::upload_signature::TaskNotifyMode>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Create a token, print it once, store only its hash.
    Create {
        #[arg(long)]
        name: String,
    },
    /// List stored tokens (names and dates, never the tokens).
    List,
    /// Revoke the active token with this name.
    Revoke { name: String },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Simulate {
        url,
        file,
        event,
        source_context,
        file_id,
    } = cli.command
    {
        let body = match file {
            Some(path) => {
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?
            }
            None => simulate::body(event, file_id.as_deref(), source_context.as_deref()),
        };
        return simulate::post(&url, body).await;
    }

    let settings = Settings::load(cli.config.as_deref())?;
    telemetry::init(settings.log_format);
    match cli.command {
        Command::Serve => {
            let store = startup::connect_and_migrate(&settings, Access::Owner).await?;
            first_run::ensure_api_token(&settings, &store).await?;
            let app = Application::builder(settings).store(store).build().await?;
            app.run_until_stopped()
                .await
                .context("the HTTP server failed")?;
        }
        Command::Migrate => {
            startup::connect_and_migrate(&settings, Access::Create).await?;
            println!("migrations applied");
        }
        Command::Token { action } => {
            let store = startup::connect_and_migrate(&settings, Access::Existing).await?;
            match action {
                TokenAction::Create { name } => {
                    let name = name.trim();
                    anyhow::ensure!(!name.is_empty(), "--name must not be empty");
                    let token = ApiToken::generate();
                    store.create_token(name, &token.hash()).await?;
                    println!("{}", token.expose());
                    eprintln!("token {name:?} created; it is shown only this once");
                }
                TokenAction::List => {
                    for token in store.list_tokens().await? {
                        let status = match token.revoked_at {
                            Some(at) => format!("revoked {}", at.to_rfc3339()),
                            None => "active".to_owned(),
                        };
                        println!(
                            "{}\t{}\t{status}",
                            token.name,
                            token.created_at.to_rfc3339()
                        );
                    }
                }
                TokenAction::Revoke { name } => {
                    anyhow::ensure!(
                        store.revoke_token(&name).await?,
                        "no active token named {name:?}"
                    );
                    println!("token {name:?} revoked");
                }
            }
            store.close().await;
        }
        Command::SignUpload {
            source_context,
            procedure,
            storage_region,
            class_id,
            one_time,
            expire_seconds,
            vod_sub_app_id,
            session_context,
            task_priority,
            task_notify_mode,
        } => {
            use crate::tencent::upload_signature::{self, UploadSignatureRequest};
            let credentials = settings
                .vod
                .credentials
                .as_ref()
                .context(upload_signature::NOT_CONFIGURED)?;
            upload_signature::check_defaults(&settings.vod).map_err(anyhow::Error::msg)?;
            let mut request = UploadSignatureRequest {
                source_context,
                procedure,
                storage_region,
                class_id,
                one_time_valid: one_time,
                expire_seconds,
                vod_sub_app_id,
                session_context,
                task_priority,
                task_notify_mode,
            };
            request.apply_defaults(&settings.vod);
            let now = chrono::Utc::now().timestamp();
            let signed = upload_signature::sign_with_os_random(&request, credentials, now)?;
            println!("{}", signed.signature);
            match chrono::DateTime::from_timestamp(signed.expires_at, 0) {
                Some(at) => eprintln!(
                    "expires at {}",
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
                None => eprintln!("expires at Unix time {}", signed.expires_at),
            }
        }
        Command::Simulate { .. } => unreachable!("handled above"),
    }
    Ok(())
}
