//! `TokenStore`: API token hashes, one active token per name, revocation.

use crate::support::TestStore;
use vodhook::domain::hash_token;
use vodhook::storage::StorageError;

pub async fn token_names_are_unique_among_active_tokens(store: TestStore) {
    let (first, second) = (hash_token("vh_first"), hash_token("vh_second"));
    store
        .create_token("ci", &first)
        .await
        .expect("create_token");
    let refused = store.create_token("ci", &second).await;
    assert!(
        matches!(refused, Err(StorageError::Conflict(_))),
        "a second active token of one name: {refused:?}"
    );
    assert!(store
        .is_active_token(&first)
        .await
        .expect("is_active_token"));
    assert!(
        !store
            .is_active_token(&second)
            .await
            .expect("is_active_token"),
        "the refused token was not stored"
    );
    let tokens = store.list_tokens().await.expect("list_tokens");
    assert_eq!(tokens.len(), 1, "{tokens:?}");

    store
        .create_token("deploy", &second)
        .await
        .expect("another name is free");
    assert!(store
        .is_active_token(&second)
        .await
        .expect("is_active_token"));
    assert!(!store
        .is_active_token(&hash_token("vh_never_made"))
        .await
        .expect("is_active_token"));
}

pub async fn tokens_list_oldest_first_with_revoked_ones(store: TestStore) {
    for name in ["alpha", "bravo", "charlie"] {
        store
            .create_token(name, &hash_token(&format!("vh_{name}")))
            .await
            .expect("create_token");
    }
    assert!(store.revoke_token("bravo").await.expect("revoke_token"));
    store
        .create_token("bravo", &hash_token("vh_bravo_2"))
        .await
        .expect("create_token after revoking");

    let tokens = store.list_tokens().await.expect("list_tokens");
    let names: Vec<&str> = tokens.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["alpha", "bravo", "charlie", "bravo"],
        "oldest first"
    );
    for pair in tokens.windows(2) {
        assert!(pair[0].created_at <= pair[1].created_at, "{tokens:?}");
    }
    let revoked: Vec<bool> = tokens.iter().map(|t| t.revoked_at.is_some()).collect();
    assert_eq!(revoked, [false, true, false, false], "{tokens:?}");
    let revoked_at = tokens[1].revoked_at.expect("revoked");
    assert!(revoked_at >= tokens[1].created_at);
}

pub async fn revoked_tokens_are_inactive_and_names_reusable(store: TestStore) {
    let (old, new) = (hash_token("vh_old"), hash_token("vh_new"));
    store.create_token("ci", &old).await.expect("create_token");
    assert!(store.is_active_token(&old).await.expect("is_active_token"));

    assert!(store.revoke_token("ci").await.expect("revoke_token"));
    assert!(!store.is_active_token(&old).await.expect("is_active_token"));
    assert!(
        !store.revoke_token("ci").await.expect("revoke_token"),
        "no active token of that name is left"
    );
    assert!(!store.revoke_token("unknown").await.expect("revoke_token"));

    store
        .create_token("ci", &new)
        .await
        .expect("the name is free again after revoking");
    assert!(store.is_active_token(&new).await.expect("is_active_token"));
    assert!(!store.is_active_token(&old).await.expect("is_active_token"));
    assert!(store.revoke_token("ci").await.expect("revoke_token"));
    assert!(!store.is_active_token(&new).await.expect("is_active_token"));
}
