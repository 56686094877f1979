//! OpenAI-compatible routes, translated onto the native machinery as Ollama does:
//! `/v1/chat/completions` (chat), `/v1/completions` (generate), `/v1/embeddings` (embed),
//! `/v1/models`. Streams are SSE (`data: {...}\n\n`, ending with `data: [DONE]`).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kiln_engine::GenerateOutput;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::{openai_error_body, ApiError, OpenAiError};
use crate::generate::{engine_error, stream_response, Generation, Item};
use crate::json::JsonBody;
use crate::ollama::{keep_alive, start, PromptSpec};
use crate::options::Options;
use crate::prompt;
use crate::state::AppState;
use crate::types::null_default;

const SSE: &str = "text/event-stream";

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct StreamOptions {
    #[serde(deserialize_with = "null_default")]
    pub include_usage: bool,
}

/// The sampling fields shared by chat and text completions.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Sampling {
    pub max_tokens: Option<i64>,
    pub max_completion_tokens: Option<i64>,
    pub seed: Option<i64>,
    pub stop: Option<Value>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ChatCompletionBody {
    #[serde(deserialize_with = "null_default")]
    pub model: String,
    pub messages: Option<Vec<OaMessage>>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    #[serde(flatten)]
    pub sampling: Sampling,
    pub response_format: Option<Value>,
    pub tools: Option<Vec<Value>>,
    pub keep_alive: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct OaMessage {
    #[serde(deserialize_with = "null_default")]
    pub role: String,
    pub content: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CompletionBody {
    #[serde(deserialize_with = "null_default")]
    pub model: String,
    pub prompt: Option<Value>,
    pub suffix: Option<String>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    #[serde(flatten)]
    pub sampling: Sampling,
    pub keep_alive: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EmbeddingBody {
    #[serde(deserialize_with = "null_default")]
    pub model: String,
    pub input: Option<Value>,
    pub dimensions: Option<i64>,
    pub encoding_format: Option<String>,
    pub keep_alive: Option<Value>,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn completion_id(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}-{}", nanos % 999)
}

/// OpenAI defaults differ from native: temperature and top_p default to 1.0.
fn options_from(s: &Sampling) -> Result<Options, ApiError> {
    let stop = match &s.stop {
        None | Some(Value::Null) => None,
        Some(Value::String(x)) => Some(vec![x.clone()]),
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|x| x.as_str().map(str::to_string).ok_or_else(|| ApiError::bad_request("invalid stop: expected strings")))
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => return Err(ApiError::bad_request("invalid stop: expected a string or an array of strings")),
    };
    let max_tokens = s.max_completion_tokens.or(s.max_tokens);
    if let Some(m) = max_tokens {
        if m <= 0 {
            return Err(ApiError::bad_request(format!("invalid max_tokens: {m} (must be positive)")));
        }
    }
    let opts = Options {
        temperature: Some(s.temperature.unwrap_or(1.0)),
        top_p: Some(s.top_p.filter(|p| *p != 0.0).unwrap_or(1.0)),
        seed: s.seed,
        stop,
        num_predict: max_tokens,
        frequency_penalty: s.frequency_penalty,
        presence_penalty: s.presence_penalty,
        ..Options::default()
    };
    opts.validate()?;
    Ok(opts)
}

fn finish_reason(out: &GenerateOutput) -> &'static str {
    match out.done_reason.as_str() {
        "length" => "length",
        _ => "stop",
    }
}

fn usage(out: &GenerateOutput) -> Value {
    json!({
        "prompt_tokens": out.prompt_eval_count,
        "completion_tokens": out.eval_count,
        "total_tokens": out.prompt_eval_count + out.eval_count,
    })
}

fn sse(v: &Value) -> String {
    format!("data: {v}\n\n")
}

fn message_text(m: &OaMessage) -> Result<String, ApiError> {
    match &m.content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => text.push_str(p.get("text").and_then(Value::as_str).unwrap_or("")),
                    Some("image_url") | Some("input_audio") => {
                        return Err(ApiError::bad_request("images and audio are not supported by this model"))
                    }
                    _ => return Err(ApiError::bad_request("invalid message content part")),
                }
            }
            Ok(text)
        }
        Some(_) => Err(ApiError::bad_request("invalid message content")),
    }
}

pub async fn chat_completions(
    State(state): State<AppState>,
    body: Result<JsonBody<ChatCompletionBody>, ApiError>,
) -> Response {
    let run = async move {
        let JsonBody(body) = body?;
        let started = Instant::now();
        if body.model.is_empty() {
            return Err(ApiError::bad_request("model is required"));
        }
        let entry = state.models.resolve(&body.model, ApiError::model_not_found)?;
        let messages = body.messages.unwrap_or_default();
        if messages.is_empty() {
            return Err(ApiError::bad_request("[] is too short - 'messages'"));
        }
        if body.tools.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(ApiError::bad_request(format!("\"{}\" does not support tools", body.model)));
        }
        match body.response_format.as_ref().and_then(|f| f.get("type")).and_then(Value::as_str) {
            None | Some("text") => {}
            Some(_) => return Err(ApiError::bad_request("response_format (structured output) is not supported")),
        }
        let mut msgs = Vec::with_capacity(messages.len());
        for m in &messages {
            let role = match m.role.to_lowercase().as_str() {
                "developer" => "system".to_string(),
                r => r.to_string(),
            };
            if !prompt::ROLES.contains(&role.as_str()) {
                return Err(ApiError::bad_request(format!("invalid message role {:?}", m.role)));
            }
            msgs.push(prompt::message(&role, &message_text(m)?));
        }
        let opts = options_from(&body.sampling)?;
        let keep_alive = keep_alive(&state, body.keep_alive.as_ref())?;
        let gen = start(&state, &entry, keep_alive, &opts, PromptSpec::Chat(msgs), None, started).await?;
        let include_usage = body.stream_options.is_some_and(|o| o.include_usage);
        let (id, created, model) = (completion_id("chatcmpl"), unix_now(), body.model);
        if body.stream == Some(true) {
            return Ok(chat_stream(gen, id, created, model, include_usage));
        }
        let mut gen = gen;
        let (text, out) = gen.collect().await?;
        Ok(Json(json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "system_fingerprint": "fp_ollama",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason(&out)}],
            "usage": usage(&out),
        }))
        .into_response())
    };
    run.await.unwrap_or_else(|e: ApiError| OpenAiError(e).into_response())
}

fn chat_stream(gen: Generation, id: String, created: u64, model: String, include_usage: bool) -> Response {
    let mut first = true;
    let chunk = move |delta: Value, finish: Value| {
        json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
               "system_fingerprint": "fp_ollama",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    stream_response(gen, SSE, move |_, item| match item {
        Item::Text(t) => {
            let delta = if first { json!({"role": "assistant", "content": t}) } else { json!({"content": t}) };
            first = false;
            Some(sse(&chunk(delta, Value::Null)))
        }
        Item::Done(out) => {
            let mut last = chunk(json!({}), json!(finish_reason(&out)));
            let mut s = sse(&last);
            if include_usage {
                last["choices"] = json!([]);
                last["usage"] = usage(&out);
                s.push_str(&sse(&last));
            }
            s.push_str("data: [DONE]\n\n");
            Some(s)
        }
        Item::Failed(e) => Some(sse(&openai_error_body(&engine_error(&e)))),
    })
}

pub async fn completions(State(state): State<AppState>, body: Result<JsonBody<CompletionBody>, ApiError>) -> Response {
    let run = async move {
        let JsonBody(body) = body?;
        let started = Instant::now();
        if body.model.is_empty() {
            return Err(ApiError::bad_request("model is required"));
        }
        let entry = state.models.resolve(&body.model, ApiError::model_not_found)?;
        let prompt_text = match &body.prompt {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => a[0].as_str().unwrap_or("").to_string(),
            _ => return Err(ApiError::bad_request("invalid prompt: expected a string")),
        };
        if body.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
            return Err(ApiError::bad_request(format!("\"{}\" does not support insert", body.model)));
        }
        let opts = options_from(&body.sampling)?;
        let keep_alive = keep_alive(&state, body.keep_alive.as_ref())?;
        let spec = PromptSpec::Chat(vec![prompt::message("user", &prompt_text)]);
        let gen = start(&state, &entry, keep_alive, &opts, spec, None, started).await?;
        let include_usage = body.stream_options.is_some_and(|o| o.include_usage);
        let (id, created, model) = (completion_id("cmpl"), unix_now(), body.model);
        let chunk = move |text: &str, finish: Value| {
            json!({"id": id, "object": "text_completion", "created": created, "model": model,
                   "system_fingerprint": "fp_ollama",
                   "choices": [{"text": text, "index": 0, "finish_reason": finish}]})
        };
        if body.stream == Some(true) {
            return Ok(stream_response(gen, SSE, move |_, item| match item {
                Item::Text(t) => Some(sse(&chunk(&t, Value::Null))),
                Item::Done(out) => {
                    let mut last = chunk("", json!(finish_reason(&out)));
                    let mut s = sse(&last);
                    if include_usage {
                        last["choices"] = json!([]);
                        last["usage"] = usage(&out);
                        s.push_str(&sse(&last));
                    }
                    s.push_str("data: [DONE]\n\n");
                    Some(s)
                }
                Item::Failed(e) => Some(sse(&openai_error_body(&engine_error(&e)))),
            }));
        }
        let mut gen = gen;
        let (text, out) = gen.collect().await?;
        let mut resp = chunk(&text, json!(finish_reason(&out)));
        resp["usage"] = usage(&out);
        Ok(Json(resp).into_response())
    };
    run.await.unwrap_or_else(|e: ApiError| OpenAiError(e).into_response())
}

pub async fn embeddings(State(state): State<AppState>, body: Result<JsonBody<EmbeddingBody>, ApiError>) -> Response {
    let run = async move {
        let JsonBody(body) = body?;
        if body.model.is_empty() {
            return Err(ApiError::bad_request("model is required"));
        }
        let entry = state.models.resolve(&body.model, ApiError::model_not_found)?;
        let texts = match &body.input {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) if !a.is_empty() => crate::embed::inputs(body.input.as_ref())
                .map_err(|_| ApiError::bad_request(format!("invalid input: {} items must be strings", a.len())))?,
            _ => return Err(ApiError::bad_request("invalid input")),
        };
        let base64 = match body.encoding_format.as_deref() {
            None | Some("float") | Some("") => false,
            Some("base64") => true,
            Some(f) => return Err(ApiError::bad_request(format!("invalid encoding_format {f:?}"))),
        };
        let keep_alive = keep_alive(&state, body.keep_alive.as_ref())?;
        let (lease, _) = state.models.acquire(&entry, keep_alive).await?;
        let out = crate::embed::embed_inputs(&lease, texts, true, body.dimensions, 0).await?;
        state.metrics.record_tokens(out.prompt_tokens, 0);
        let data: Vec<Value> = out
            .vectors
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let embedding = if base64 { json!(base64_f32(v)) } else { json!(v) };
                json!({"object": "embedding", "embedding": embedding, "index": i})
            })
            .collect();
        Ok(Json(json!({
            "object": "list", "data": data, "model": body.model,
            "usage": {"prompt_tokens": out.prompt_tokens, "total_tokens": out.prompt_tokens},
        }))
        .into_response())
    };
    run.await.unwrap_or_else(|e: ApiError| OpenAiError(e).into_response())
}

/// Little-endian f32 bytes, standard base64 with padding (what the `openai` package asks for).
pub fn base64_f32(v: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn model_object(name: &str, modified: SystemTime) -> Value {
    let created = modified.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let owned_by = name.rsplit_once('/').map(|(ns, _)| ns).unwrap_or("library");
    json!({"id": name, "object": "model", "created": created, "owned_by": owned_by})
}

pub async fn models(State(state): State<AppState>) -> Response {
    match crate::tags::list_entries(&state) {
        Ok(entries) => {
            let data: Vec<Value> = entries.iter().map(|e| model_object(&e.name, e.modified)).collect();
            let mut m = Map::new();
            m.insert("object".into(), json!("list"));
            m.insert("data".into(), json!(data));
            Json(Value::Object(m)).into_response()
        }
        Err(e) => OpenAiError(e).into_response(),
    }
}

pub async fn model(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match state.models.resolve(&name, ApiError::model_not_found) {
        Ok(entry) => Json(model_object(&name, entry.modified)).into_response(),
        Err(e) => OpenAiError(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_known_encoding() {
        // 1.0f32 = 00 00 80 3f -> "AACAPw=="
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[1.0, -2.0]), "AACAPwAAAMA=");
        assert_eq!(base64_f32(&[]), "");
    }

    #[test]
    fn openai_defaults_and_stop_forms() {
        let o = options_from(&Sampling::default()).unwrap();
        assert_eq!((o.temperature, o.top_p), (Some(1.0), Some(1.0)));
        let s = Sampling { stop: Some(json!("x")), max_tokens: Some(5), ..Default::default() };
        let o = options_from(&s).unwrap();
        assert_eq!(o.stop, Some(vec!["x".to_string()]));
        assert_eq!(o.num_predict(), Some(5));
        assert!(options_from(&Sampling { max_tokens: Some(0), ..Default::default() }).is_err());
        assert!(options_from(&Sampling { stop: Some(json!(3)), ..Default::default() }).is_err());
        assert!(options_from(&Sampling { temperature: Some(f32::NAN), ..Default::default() }).is_err());
    }
}
