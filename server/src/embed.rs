//! `/api/embed` (batch, L2-normalized, `truncate`, `dimensions`) and the legacy `/api/embeddings`
//! (one prompt, the raw pooled vector). Embedding runs on the blocking pool, beside the scheduler.

use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::json::JsonBody;
use crate::models::Lease;
use crate::ollama::keep_alive;
use crate::options::Options;
use crate::state::AppState;
use crate::types::{EmbedBody, EmbeddingsBody};

/// Default context for embedding inputs when `num_ctx` is not given.
const DEFAULT_NUM_CTX: usize = 4096;

pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: usize,
}

/// `input`: a string or an array of strings; `""`, missing or `[]` mean no inputs.
pub fn inputs(v: Option<&Value>) -> Result<Vec<String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|x| x.as_str().map(str::to_string).ok_or_else(|| ApiError::bad_request("invalid input type")))
            .collect(),
        Some(_) => Err(ApiError::bad_request("invalid input type")),
    }
}

/// L2 normalization with Ollama's epsilon; NaN or Inf is an error.
pub fn normalize(v: &mut [f32]) -> Result<(), ApiError> {
    if v.iter().any(|x| !x.is_finite()) {
        return Err(ApiError::internal("embedding contains NaN or Inf values"));
    }
    let norm = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    let scale = 1.0 / norm.max(1e-12);
    for x in v.iter_mut() {
        *x = (f64::from(*x) * scale) as f32;
    }
    Ok(())
}

/// Tokenizes and embeds every input (truncating to the context, or refusing when `!truncate`),
/// normalizes and cuts to `dimensions`.
pub async fn embed_inputs(
    lease: &Lease,
    texts: Vec<String>,
    truncate: bool,
    dimensions: Option<i64>,
    num_ctx: usize,
) -> Result<Embedded, ApiError> {
    let dims = match dimensions {
        None | Some(0) => None,
        Some(d) if d < 0 => return Err(ApiError::bad_request("dimensions must be positive")),
        Some(d) => Some(usize::try_from(d).unwrap_or(usize::MAX)),
    };
    let model = lease.model.clone();
    let limit = if num_ctx == 0 { DEFAULT_NUM_CTX } else { num_ctx }.min(model.info().n_ctx_train.max(1));
    tokio::task::spawn_blocking(move || {
        let mut vectors = Vec::with_capacity(texts.len());
        let mut prompt_tokens = 0;
        for text in &texts {
            let mut tokens = model
                .tokenize(text, false)
                .map_err(|e| ApiError::bad_request(format!("cannot tokenize input: {e}")))?;
            if tokens.len() > limit {
                if !truncate {
                    return Err(ApiError::bad_request("the input length exceeds the context length"));
                }
                tokens.truncate(limit);
            }
            prompt_tokens += tokens.len();
            let mut v = model.embed_tokens(&tokens).map_err(|e| crate::generate::engine_error(&e))?;
            normalize(&mut v)?;
            if let Some(d) = dims.filter(|d| *d < v.len()) {
                v.truncate(d);
                normalize(&mut v)?;
            }
            vectors.push(v);
        }
        Ok(Embedded { vectors, prompt_tokens })
    })
    .await
    .map_err(|e| ApiError::internal(format!("embedding task failed: {e}")))?
}

pub async fn embed(State(state): State<AppState>, body: Result<JsonBody<EmbedBody>, ApiError>) -> Response {
    let run = async move {
        let JsonBody(body) = body?;
        let started = Instant::now();
        if body.model.is_empty() {
            return Err(ApiError::bad_request("model is required"));
        }
        let entry = state.models.resolve(&body.model, ApiError::model_not_found_pull)?;
        let opts = Options::from_map(body.options.as_ref())?;
        let texts = inputs(body.input.as_ref())?;
        let keep_alive = keep_alive(&state, body.keep_alive.as_ref())?;
        let (lease, load) = state.models.acquire(&entry, keep_alive).await?;
        let out = embed_inputs(&lease, texts, body.truncate.unwrap_or(true), body.dimensions, opts.num_ctx()).await?;
        state.metrics.record_tokens(out.prompt_tokens, 0);
        let mut resp = json!({
            "model": body.model,
            "embeddings": out.vectors,
            "total_duration": started.elapsed().as_nanos() as u64,
            "load_duration": load.as_nanos() as u64,
        });
        if out.prompt_tokens > 0 {
            resp["prompt_eval_count"] = json!(out.prompt_tokens);
        }
        Ok(Json(resp).into_response())
    };
    run.await.unwrap_or_else(|e: ApiError| e.into_response())
}

pub async fn embeddings(State(state): State<AppState>, body: Result<JsonBody<EmbeddingsBody>, ApiError>) -> Response {
    let run = async move {
        let JsonBody(body) = body?;
        if body.model.is_empty() {
            return Err(ApiError::bad_request("model is required"));
        }
        let entry = state.models.resolve(&body.model, ApiError::model_not_found_pull)?;
        Options::from_map(body.options.as_ref())?;
        let keep_alive = keep_alive(&state, body.keep_alive.as_ref())?;
        let (lease, _) = state.models.acquire(&entry, keep_alive).await?;
        if body.prompt.is_empty() {
            return Ok(Json(json!({ "embedding": [] })).into_response());
        }
        let model = lease.model.clone();
        let prompt = body.prompt;
        let v = tokio::task::spawn_blocking(move || model.embed(&prompt))
            .await
            .map_err(|e| ApiError::internal(format!("embedding task failed: {e}")))?
            .map_err(|e| crate::generate::engine_error(&e))?;
        drop(lease);
        Ok(Json(json!({ "embedding": v })).into_response())
    };
    run.await.unwrap_or_else(|e: ApiError| e.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_forms() {
        assert!(inputs(None).unwrap().is_empty());
        assert!(inputs(Some(&json!(""))).unwrap().is_empty());
        assert!(inputs(Some(&json!([]))).unwrap().is_empty());
        assert_eq!(inputs(Some(&json!("a"))).unwrap(), vec!["a"]);
        assert_eq!(inputs(Some(&json!(["a", "b"]))).unwrap(), vec!["a", "b"]);
        assert_eq!(inputs(Some(&json!(["a", 1]))).unwrap_err().message, "invalid input type");
        assert!(inputs(Some(&json!(5))).is_err());
    }

    #[test]
    fn normalizes() {
        let mut v = vec![3.0, 4.0];
        normalize(&mut v).unwrap();
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        let mut z = vec![0.0, 0.0];
        normalize(&mut z).unwrap();
        assert_eq!(z, vec![0.0, 0.0]);
        assert!(normalize(&mut [f32::NAN]).is_err());
    }
}
