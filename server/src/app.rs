//! The router: every route, and the layers (body limit, auth, metrics, CORS, Host guard, tracing,
//! panic catching) set in one place. `main` and the in-process tests both build it with [`app`].

use std::any::Any;

use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::state::AppState;
use crate::{auth, cors, embed, metrics, ollama, openai, show, tags};

pub fn app(state: AppState) -> Router {
    let routes = Router::new()
        .route("/", get(tags::root))
        .route("/api/version", get(tags::version))
        .route("/api/tags", get(tags::tags))
        .route("/api/ps", get(tags::ps))
        .route("/api/show", post(show::show))
        .route("/api/generate", post(ollama::generate))
        .route("/api/chat", post(ollama::chat))
        .route("/api/embed", post(embed::embed))
        .route("/api/embeddings", post(embed::embeddings))
        .route("/v1/models", get(openai::models))
        .route("/v1/models/{*model}", get(openai::model))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/metrics", get(metrics::metrics_handler))
        // Route layers: the last added runs first, so metrics also count 401s.
        .layer(from_fn_with_state(state.clone(), auth::require_key))
        .layer(from_fn_with_state(state.clone(), metrics::track))
        .layer(DefaultBodyLimit::max(state.config.body_limit))
        .with_state(state.clone());
    routes.layer(
        ServiceBuilder::new()
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(TraceLayer::new_for_http())
            .layer(cors::layer(state.config.origins.clone()))
            .layer(from_fn_with_state(state, cors::host_guard)),
    )
}

fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("request handler panicked");
    ApiError::internal("internal error").into_response()
}
