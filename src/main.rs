//! The `vodhook` binary: parse the command line, then hand over to `cli::run`.

use clap::Parser;
use std::process::ExitCode;

/// Every request allocates (bodies, JSON, SQL parameters) on many threads at once: mimalloc's
/// thread-local heaps measured cheaper than glibc malloc on the ingest path (README, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = vodhook::cli::Cli::parse();
    match vodhook::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
