//! First start: when no API token exists anywhere, `vodhook serve` makes one and shows it once.

use crate::config::Settings;
use crate::domain::ApiToken;
use crate::storage::{StorageError, Store};

/// The name the first-run token is stored under (`vodhook token revoke first-run`).
pub const FIRST_TOKEN_NAME: &str = "first-run";

/// On a fresh install (no `VODHOOK_API_TOKENS`, no token ever stored) creates, stores (as a
/// hash) and prints a token, so the API can be queried at once. Once any token was stored, even
/// if all are revoked now, nothing is made: revoking every token closes the API. Returns whether
/// it made one.
pub async fn ensure_api_token(settings: &Settings, store: &Store) -> anyhow::Result<bool> {
    if !settings.api_tokens.is_empty() || !store.list_tokens().await?.is_empty() {
        return Ok(false);
    }
    let token = ApiToken::generate();
    match store.create_token(FIRST_TOKEN_NAME, &token.hash()).await {
        Ok(()) => {}
        // Another process starting on the same database made it first.
        Err(StorageError::Conflict(_)) => return Ok(false),
        Err(error) => return Err(error.into()),
    }
    println!(
        "\nNo API token existed, so vodhook created one. It is shown only this once; only its hash \
         is stored:\n\n    {}\n\nSend it as \"Authorization: Bearer <token>\". Create more with \
         `vodhook token create --name <name>`, list them with `vodhook token list`, or set \
         VODHOOK_API_TOKENS.\n",
        token.expose()
    );
    Ok(true)
}
