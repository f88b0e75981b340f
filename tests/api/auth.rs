use crate::helpers::{error_code, json_of, spawn_app, API_TOKEN};
use reqwest::StatusCode;
use vodhook::domain::ApiToken;

const PROTECTED: [&str; 4] = [
    "/v1/uploads",
    "/v1/uploads/123",
    "/v1/events",
    "/v1/events/0190f0e4-0000-7000-8000-000000000000",
];

#[tokio::test]
async fn query_api_refuses_missing_and_wrong_tokens() {
    let app = spawn_app().await;
    for path in PROTECTED {
        for token in [None, Some("wrong-token-0123456789"), Some("")] {
            let (status, body) = json_of(app.get_with_token(path, token).await).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} with {token:?}");
            assert_eq!(error_code(&body), "unauthorized");
        }
    }
    let response = app
        .client
        .get(format!("{}/v1/uploads", app.address))
        .header("authorization", format!("Basic {API_TOKEN}"))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "only the Bearer scheme is accepted"
    );
}

#[tokio::test]
async fn configured_token_is_accepted() {
    let app = spawn_app().await;
    let (status, body) = app.get("/v1/uploads").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"], serde_json::json!([]));
}

#[tokio::test]
async fn stored_tokens_work_until_revoked() {
    let app = spawn_app().await;
    let token = ApiToken::generate();
    app.store
        .create_token("backend", &token.hash())
        .await
        .expect("created");
    let response = app
        .get_with_token("/v1/uploads", Some(token.expose()))
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    assert!(
        app.store
            .create_token("backend", &ApiToken::generate().hash())
            .await
            .is_err(),
        "names are unique"
    );
    assert!(app.store.revoke_token("backend").await.expect("revoked"));
    let response = app
        .get_with_token("/v1/uploads", Some(token.expose()))
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        !app.store.revoke_token("backend").await.expect("query"),
        "nothing left to revoke"
    );
    app.store
        .create_token("backend", &ApiToken::generate().hash())
        .await
        .expect("name free again");
}
