//! Optional API key. With a key configured every route except `GET /` / `HEAD /` needs
//! `Authorization: Bearer <key>` (or `x-api-key: <key>`), compared in constant time; without one
//! the header is accepted and ignored, as Ollama does.

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::error::{ApiError, OpenAiError};
use crate::state::AppState;

pub async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(key) = state.config.api_key.as_deref() else {
        return next.run(req).await;
    };
    let public = req.uri().path() == "/" && matches!(*req.method(), Method::GET | Method::HEAD);
    if public || key_matches(&req, key) {
        return next.run(req).await;
    }
    if req.uri().path().starts_with("/v1/") {
        OpenAiError(ApiError::unauthorized()).into_response()
    } else {
        ApiError::unauthorized().into_response()
    }
}

fn key_matches(req: &Request, key: &str) -> bool {
    let headers = req.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let x_api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    [bearer, x_api_key].into_iter().flatten().any(|given| constant_time_eq(given, key))
}

/// Equal-length inputs compare in constant time; a length mismatch leaks only the length.
pub fn constant_time_eq(given: &str, key: &str) -> bool {
    given.len() == key.len() && bool::from(given.as_bytes().ct_eq(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare() {
        assert!(constant_time_eq("secret", "secret"));
        assert!(!constant_time_eq("secreT", "secret"));
        assert!(!constant_time_eq("secret1", "secret"));
        assert!(!constant_time_eq("", "secret"));
    }
}
