//! Shared by the HTTP tests: the model directory (KILN_MODELS, default ~/.kiln/models; a missing
//! model FAILS unless KILN_SKIP_MODEL_TESTS=1), an AppState over it, and request helpers.
#![allow(dead_code)]

use std::path::PathBuf;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use kiln_server::{app, AppState, ServerConfig};
use serde_json::Value;
use tower::ServiceExt;

pub const SMOLLM: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GEMMA: &str = "gemma-3-270m-q4_k_m.gguf";

pub fn models_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("KILN_MODELS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".kiln/models")
    });
    let missing: Vec<_> = [SMOLLM, GEMMA].iter().filter(|f| !dir.join(f).is_file()).collect();
    if missing.is_empty() {
        return Some(dir);
    }
    if std::env::var("KILN_SKIP_MODEL_TESTS").as_deref() == Ok("1") {
        eprintln!("SKIPPED: models {missing:?} not in {} and KILN_SKIP_MODEL_TESTS=1", dir.display());
        return None;
    }
    panic!("models {missing:?} not found in {} (set KILN_MODELS, or KILN_SKIP_MODEL_TESTS=1)", dir.display());
}

pub fn state_with(config: ServerConfig) -> Option<AppState> {
    let dir = models_dir()?;
    Some(AppState::new(config, kiln_engine::store::ModelStore::new(dir, None)))
}

pub fn state() -> Option<AppState> {
    state_with(ServerConfig::default())
}

/// The store name of the model whose file is `file`.
pub fn name_of(state: &AppState, file: &str) -> String {
    let list = state.models.store().list().expect("list models");
    list.iter()
        .find(|e| e.path.file_name().and_then(|f| f.to_str()) == Some(file))
        .map(|e| e.name.clone())
        .unwrap_or_else(|| panic!("{file} not listed by the store: {:?}", list.iter().map(|e| &e.name).collect::<Vec<_>>()))
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn content_type(&self) -> String {
        self.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
    }
    /// NDJSON lines as values.
    pub fn lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad NDJSON line ({e}): {l}")))
            .collect()
    }
    /// SSE `data:` payloads (`[DONE]` kept as the string "[DONE]").
    pub fn sse(&self) -> Vec<String> {
        self.text().split("\n\n").filter_map(|ev| ev.strip_prefix("data: ")).map(str::to_string).collect()
    }
}

pub async fn request(app: &Router, req: Request<Body>) -> Resp {
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Resp { status, headers, body }
}

pub async fn call(app: &Router, method: Method, path: &str, body: &str) -> Resp {
    let req = Request::builder().method(method).uri(path).body(Body::from(body.to_string())).expect("request");
    request(app, req).await
}

pub async fn post(app: &Router, path: &str, body: Value) -> Resp {
    call(app, Method::POST, path, &body.to_string()).await
}

pub async fn get(app: &Router, path: &str) -> Resp {
    call(app, Method::GET, path, "").await
}

pub fn router(state: &AppState) -> Router {
    app(state.clone())
}
