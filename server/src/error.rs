//! One error type for the HTTP edge: `{"error": "..."}` with a status code, as Ollama sends it.
//! The OpenAI-compatible routes wrap it in [`OpenAiError`] for `{"error": {"message", "type"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    /// Ollama's queue-full message (with its two spaces).
    pub fn busy() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server busy, please try again.  maximum pending requests exceeded",
        )
    }
    pub fn too_large() -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
    }
    pub fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized: missing or invalid API key")
    }
    /// `/api/generate`, `/api/chat`, `/api/show`: `model 'x' not found`.
    pub fn model_not_found(name: &str) -> ApiError {
        ApiError::not_found(format!("model '{name}' not found"))
    }
    /// `/api/embed`, `/api/embeddings` and the scheduler path: Go's `%q` quoting plus the hint.
    pub fn model_not_found_pull(name: &str) -> ApiError {
        let quoted = serde_json::to_string(name).unwrap_or_else(|_| format!("\"{name}\""));
        ApiError::not_found(format!("model {quoted} not found, try pulling it first"))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

/// The OpenAI error shape: `{"error":{"message","type","param":null,"code":null}}`, status kept.
#[derive(Debug)]
pub struct OpenAiError(pub ApiError);

impl From<ApiError> for OpenAiError {
    fn from(e: ApiError) -> OpenAiError {
        OpenAiError(e)
    }
}

pub fn openai_error_type(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => "invalid_request_error",
        StatusCode::NOT_FOUND => "not_found_error",
        StatusCode::UNAUTHORIZED => "authentication_error",
        _ => "api_error",
    }
}

pub fn openai_error_body(e: &ApiError) -> serde_json::Value {
    json!({"error": {"message": e.message, "type": openai_error_type(e.status), "param": null, "code": null}})
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        (self.0.status, Json(openai_error_body(&self.0))).into_response()
    }
}
