//! Ollama's native generation endpoints: `/api/generate` and `/api/chat`.

use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{Map, Value};

use kiln_engine::store::ModelEntry;
use kiln_engine::template::ChatMessage;

use crate::duration::KeepAlive;
use crate::error::ApiError;
use crate::generate::{error_line, ndjson_line, stream_response, Generation, Item};
use crate::json::JsonBody;
use crate::options::Options;
use crate::prompt;
use crate::state::AppState;
use crate::types::{AssistantMessage, ChatBody, ChatChunk, GenerateBody, GenerateChunk, Timings, now_utc};

pub const NDJSON: &str = "application/x-ndjson";

pub fn keep_alive(state: &AppState, v: Option<&Value>) -> Result<KeepAlive, ApiError> {
    match v {
        None => Ok(state.models.default_keep_alive()),
        Some(v) => Ok(KeepAlive::from_json(v).map_err(ApiError::bad_request)?.unwrap_or(state.models.default_keep_alive())),
    }
}

/// Features these models lack: structured output, thinking, images.
pub fn reject_unsupported(model: &str, format: Option<&Value>, think: Option<&Value>) -> Result<(), ApiError> {
    match format {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(_) => return Err(ApiError::bad_request("format (structured output) is not supported")),
    }
    match think {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(()),
        Some(Value::Bool(true)) | Some(Value::String(_)) => {
            Err(ApiError::bad_request(format!("\"{model}\" does not support thinking")))
        }
        Some(other) => Err(ApiError::bad_request(format!("invalid think value: {other}"))),
    }
}

/// Request options over the model's own defaults (an Ollama store's `params` layer).
pub fn merged_options(entry: &ModelEntry, req: Option<&Map<String, Value>>) -> Result<Options, ApiError> {
    let Some(Value::Object(params)) = &entry.params else { return Options::from_map(req) };
    let mut merged = params.clone();
    // Defaults from disk that do not parse are dropped, not blamed on the request.
    merged.retain(|k, v| {
        let one: Map<String, Value> = [(k.clone(), v.clone())].into_iter().collect();
        Options::from_map(Some(&one)).is_ok()
    });
    if let Some(req) = req {
        Options::from_map(Some(req))?;
        merged.extend(req.clone());
    }
    Options::from_map(Some(&merged))
}

pub enum PromptSpec {
    /// Rendered with the model's chat template, assistant turn left open.
    Chat(Vec<ChatMessage>),
    /// Used verbatim.
    Raw(String),
}

/// Leases the model, builds the prompt tokens and submits; returns once the first event is in,
/// so an error before any output (over-long prompt, queue full) keeps its own status code.
pub async fn start(
    state: &AppState,
    entry: &ModelEntry,
    keep_alive: KeepAlive,
    opts: &Options,
    spec: PromptSpec,
    context: Option<&[u32]>,
    started: Instant,
) -> Result<Generation, ApiError> {
    let (lease, load) = state.models.acquire(entry, keep_alive).await?;
    let text = match spec {
        PromptSpec::Chat(msgs) => prompt::render_chat(&lease.model, &msgs)?,
        PromptSpec::Raw(text) => text,
    };
    let tokens = prompt::tokenize(&lease.model, &text, context)?;
    let req = prompt::engine_request(tokens, opts, false)?;
    let mut gen = Generation::start(state, lease, req, started, load)?;
    gen.first_error().await?;
    Ok(gen)
}

pub async fn generate(State(state): State<AppState>, body: Result<JsonBody<GenerateBody>, ApiError>) -> Response {
    match body {
        Ok(JsonBody(b)) => generate_inner(state, b).await.unwrap_or_else(IntoResponse::into_response),
        Err(e) => e.into_response(),
    }
}

async fn generate_inner(state: AppState, body: GenerateBody) -> Result<Response, ApiError> {
    let started = Instant::now();
    if body.model.is_empty() {
        return Err(ApiError::model_not_found(""));
    }
    let entry = state.models.resolve(&body.model, ApiError::model_not_found)?;
    let opts = merged_options(&entry, body.options.as_ref())?;
    let keep_alive = keep_alive(&state, body.keep_alive.as_ref())?;
    reject_unsupported(&body.model, body.format.as_ref(), body.think.as_ref())?;
    if body.images.as_ref().is_some_and(|i| !i.is_empty()) {
        return Err(ApiError::bad_request(format!("\"{}\" does not support vision", body.model)));
    }
    if !body.suffix.is_empty() {
        return Err(ApiError::bad_request(format!("\"{}\" does not support insert", body.model)));
    }
    if body.raw && (body.template.is_some() || body.system.is_some() || body.context.is_some()) {
        return Err(ApiError::bad_request("raw mode does not support template, system, or context"));
    }
    let model_name = body.model.clone();
    if body.prompt.is_empty() {
        let reason = if keep_alive.is_zero() {
            state.models.unload(&entry);
            "unload"
        } else {
            drop(state.models.acquire(&entry, keep_alive).await?);
            "load"
        };
        let chunk = GenerateChunk {
            model: &model_name,
            created_at: now_utc(),
            response: "",
            done: true,
            done_reason: Some(reason),
            context: None,
            timings: Timings::default(),
        };
        return Ok(Json(chunk).into_response());
    }

    let spec = if body.raw {
        PromptSpec::Raw(body.prompt.clone())
    } else if let Some(t) = &body.template {
        PromptSpec::Raw(crate::gotmpl::render(t, body.system.as_deref().unwrap_or(""), &body.prompt)?)
    } else {
        let mut msgs = Vec::new();
        let system = body.system.as_deref().or(entry.system.as_deref()).filter(|s| !s.is_empty());
        if let Some(s) = system {
            msgs.push(prompt::message("system", s));
        }
        msgs.push(prompt::message("user", &body.prompt));
        PromptSpec::Chat(msgs)
    };
    let raw = body.raw;
    let mut gen = start(&state, &entry, keep_alive, &opts, spec, body.context.as_deref(), started).await?;

    if body.stream == Some(false) {
        let (text, out) = gen.collect().await?;
        let chunk = GenerateChunk {
            model: &model_name,
            created_at: now_utc(),
            response: &text,
            done: true,
            done_reason: Some(out.done_reason.as_str()),
            context: (!raw).then_some(&out.context[..]),
            timings: gen.timings(&out),
        };
        return Ok(Json(chunk).into_response());
    }
    Ok(stream_response(gen, NDJSON, move |gen, item| {
        Some(match item {
            Item::Text(t) => ndjson_line(&GenerateChunk {
                model: &model_name,
                created_at: now_utc(),
                response: &t,
                done: false,
                done_reason: None,
                context: None,
                timings: Timings::default(),
            }),
            Item::Done(out) => ndjson_line(&GenerateChunk {
                model: &model_name,
                created_at: now_utc(),
                response: "",
                done: true,
                done_reason: Some(out.done_reason.as_str()),
                context: (!raw).then_some(&out.context[..]),
                timings: gen.timings(&out),
            }),
            Item::Failed(e) => error_line(&e),
        })
    }))
}

pub async fn chat(State(state): State<AppState>, body: Result<JsonBody<ChatBody>, ApiError>) -> Response {
    match body {
        Ok(JsonBody(b)) => chat_inner(state, b).await.unwrap_or_else(IntoResponse::into_response),
        Err(e) => e.into_response(),
    }
}

async fn chat_inner(state: AppState, body: ChatBody) -> Result<Response, ApiError> {
    let started = Instant::now();
    if body.model.is_empty() {
        return Err(ApiError::bad_request("model is required"));
    }
    let entry = state.models.resolve(&body.model, ApiError::model_not_found)?;
    let opts = merged_options(&entry, body.options.as_ref())?;
    let keep_alive = keep_alive(&state, body.keep_alive.as_ref())?;
    reject_unsupported(&body.model, body.format.as_ref(), body.think.as_ref())?;
    if body.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::bad_request(format!("\"{}\" does not support tools", body.model)));
    }
    let messages = body.messages.unwrap_or_default();
    let mut msgs = Vec::with_capacity(messages.len() + 1);
    if let Some(system) = entry.system.as_deref().filter(|s| !s.is_empty()) {
        if messages.first().is_some_and(|m| !m.role.eq_ignore_ascii_case("system")) {
            msgs.push(prompt::message("system", system));
        }
    }
    for m in &messages {
        let role = m.role.to_lowercase();
        if !prompt::ROLES.contains(&role.as_str()) {
            return Err(ApiError::bad_request(format!("invalid message role {:?}", m.role)));
        }
        if m.images.as_ref().is_some_and(|i| !i.is_empty()) {
            return Err(ApiError::bad_request(format!("\"{}\" does not support vision", body.model)));
        }
        msgs.push(prompt::message(&role, &m.content));
    }
    let model_name = body.model.clone();
    if msgs.is_empty() {
        let reason = if keep_alive.is_zero() {
            state.models.unload(&entry);
            "unload"
        } else {
            drop(state.models.acquire(&entry, keep_alive).await?);
            "load"
        };
        return Ok(Json(chat_chunk(&model_name, "", true, Some(reason), Timings::default())).into_response());
    }

    let mut gen = start(&state, &entry, keep_alive, &opts, PromptSpec::Chat(msgs), None, started).await?;

    // Our API description makes `stream` default to false on /api/chat (clients send it explicitly).
    if body.stream != Some(true) {
        let (text, out) = gen.collect().await?;
        return Ok(Json(chat_chunk(&model_name, &text, true, Some(out.done_reason.as_str()), gen.timings(&out))).into_response());
    }
    Ok(stream_response(gen, NDJSON, move |gen, item| {
        Some(match item {
            Item::Text(t) => ndjson_line(&chat_chunk(&model_name, &t, false, None, Timings::default())),
            Item::Done(out) => ndjson_line(&chat_chunk(&model_name, "", true, Some(out.done_reason.as_str()), gen.timings(&out))),
            Item::Failed(e) => error_line(&e),
        })
    }))
}

fn chat_chunk<'a>(model: &'a str, content: &'a str, done: bool, reason: Option<&'a str>, timings: Timings) -> ChatChunk<'a> {
    ChatChunk {
        model,
        created_at: now_utc(),
        message: AssistantMessage { role: "assistant", content },
        done,
        done_reason: reason,
        timings,
    }
}
