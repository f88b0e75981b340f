use crate::helpers::{error_code, json_of, spawn_app};
use reqwest::StatusCode;

#[tokio::test]
async fn healthz_and_readyz_answer_without_a_token() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let (status, _) = json_of(app.get_with_token(path, None).await).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn readyz_fails_when_the_database_is_gone_but_healthz_does_not() {
    let app = spawn_app().await;
    app.db.drop_now().await;
    let (status, body) = json_of(app.get_with_token("/readyz", None).await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&body), "storage_unavailable");
    let (status, _) = json_of(app.get_with_token("/healthz", None).await).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_paths_and_methods_get_json_errors() {
    let app = spawn_app().await;
    let (status, body) = app.get("/v1/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not_found");
    let (status, body) = json_of(app.get_with_token("/v1/callbacks/vod", None).await).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(&body), "method_not_allowed");
}

#[tokio::test]
async fn head_is_served_and_errors_carry_their_http_headers() {
    let app = spawn_app().await;
    let head = |path: &str, token: Option<&str>| {
        let mut request = app.client.head(format!("{}{path}", app.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(
        head("/healthz", None).await.expect("sent").status(),
        StatusCode::OK
    );
    assert_eq!(
        head("/v1/uploads", Some(crate::helpers::API_TOKEN))
            .await
            .expect("sent")
            .status(),
        StatusCode::OK
    );

    let response = app.get_with_token("/v1/uploads", None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .starts_with("Bearer"));

    let response = app
        .client
        .delete(format!("{}/v1/uploads", app.address))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "GET, HEAD");
    let response = app.get_with_token("/v1/callbacks/vod", None).await;
    assert_eq!(response.headers()["allow"], "POST");
}
