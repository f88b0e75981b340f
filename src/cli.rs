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
        Command::Simulate { .. } => unreachable!("handled above"),
    }
    Ok(())
}
