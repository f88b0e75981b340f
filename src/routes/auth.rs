//! Bearer-token authentication for the app-facing API: configured tokens or stored ones.

use super::AppState;
use crate::domain::hash_token;
use crate::error::ApiError;
use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use std::future::Future;
use std::pin::Pin;

/// Proof that the request carried a valid API token; take it as a handler argument.
#[derive(Debug)]
pub struct Authenticated;

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Authenticated, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer_token(req);
        Box::pin(async move {
            let state = state.ok_or_else(|| {
                ApiError::storage_unavailable(anyhow::anyhow!("application state missing"))
            })?;
            let token = token.ok_or_else(|| {
                ApiError::unauthorized(
                    "unauthorized",
                    "missing bearer token: send `Authorization: Bearer <token>`",
                )
            })?;
            if state.settings.is_configured_api_token(&token)
                || state.store.is_active_token(&hash_token(&token)).await?
            {
                Ok(Authenticated)
            } else {
                Err(ApiError::unauthorized(
                    "unauthorized",
                    "the bearer token is not valid",
                ))
            }
        })
    }
}

fn bearer_token(req: &HttpRequest) -> Option<String> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}
