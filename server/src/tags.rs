//! Listing endpoints: `/api/tags`, `/api/ps`, `/api/version`, `/`.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kiln_engine::store::ModelEntry;
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;
use crate::types::{local_time, ListModel, ModelDetails, PsModel};

pub fn details(entry: &ModelEntry) -> ModelDetails {
    let d = &entry.details;
    ModelDetails {
        parent_model: String::new(),
        format: d.format.clone(),
        family: d.family.clone(),
        families: d.families.clone(),
        parameter_size: d.parameter_size.clone(),
        quantization_level: d.quantization_level.clone(),
    }
}

pub fn list_entries(state: &AppState) -> Result<Vec<ModelEntry>, ApiError> {
    let mut entries = state.models.store().list().map_err(|e| {
        tracing::error!(error = %e, "cannot list models");
        ApiError::internal("cannot list models")
    })?;
    entries.sort_by_key(|e| std::cmp::Reverse(e.modified));
    Ok(entries)
}

pub async fn tags(State(state): State<AppState>) -> Response {
    let entries = match list_entries(&state) {
        Ok(e) => e,
        Err(e) => return e.into_response(),
    };
    let models: Vec<ListModel> = entries
        .iter()
        .map(|e| ListModel {
            name: e.name.clone(),
            model: e.name.clone(),
            modified_at: local_time(e.modified),
            size: e.size,
            digest: e.digest.clone(),
            details: details(e),
        })
        .collect();
    Json(json!({ "models": models })).into_response()
}

pub async fn ps(State(state): State<AppState>) -> Response {
    state.models.reap();
    let mut loaded = state.models.loaded();
    loaded.sort_by_key(|l| std::cmp::Reverse(l.expires_at()));
    let models: Vec<PsModel> = loaded
        .iter()
        .map(|l| PsModel {
            name: l.entry.name.clone(),
            model: l.entry.name.clone(),
            size: l.entry.size,
            digest: l.entry.digest.clone(),
            details: details(&l.entry),
            expires_at: local_time(l.expires_at()),
            size_vram: 0,
            context_length: l.model.info().n_ctx_train,
        })
        .collect();
    Json(json!({ "models": models })).into_response()
}

pub async fn version() -> Response {
    Json(json!({ "version": env!("CARGO_PKG_VERSION") })).into_response()
}

pub async fn root() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "kiln is running").into_response()
}
