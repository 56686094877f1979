//! The JSON body extractor: every rejection (empty body, bad JSON, wrong types, too large) comes
//! back in Ollama's `{"error": "..."}` shape instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large()
            } else {
                ApiError::bad_request(e.body_text())
            }
        })?;
        parse_body(&bytes).map(JsonBody)
    }
}

/// Ollama does not check Content-Type; `null` decodes like `{}` and fails later validation.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let trimmed = bytes.trim_ascii();
    if trimmed.is_empty() {
        return Err(ApiError::bad_request("missing request body"));
    }
    let text: &[u8] = if trimmed == b"null" { b"{}" } else { trimmed };
    serde_json::from_slice(text).map_err(|e| ApiError::bad_request(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Req {
        #[serde(default)]
        model: String,
    }

    #[test]
    fn empty_null_and_malformed_bodies() {
        assert_eq!(parse_body::<Req>(b"").unwrap_err().message, "missing request body");
        assert_eq!(parse_body::<Req>(b"  \n").unwrap_err().message, "missing request body");
        assert_eq!(parse_body::<Req>(b"null").unwrap().model, "");
        let e = parse_body::<Req>(b"{\"model\": 3}").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("invalid type"), "{}", e.message);
        assert!(parse_body::<Req>(b"{x").is_err());
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(parse_body::<serde_json::Value>(deep.as_bytes()).is_err());
    }
}
