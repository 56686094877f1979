//! From request text to engine input: chat-template rendering, tokenization (with a previous
//! `context`), and the engine's GenerateRequest from validated options.

use kiln_engine::sampling::SamplerConfig;
use kiln_engine::template::ChatMessage;
use kiln_engine::{GenerateRequest, Model};

use crate::error::ApiError;
use crate::options::Options;

pub const ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];

pub fn message(role: &str, content: &str) -> ChatMessage {
    ChatMessage { role: role.to_string(), content: content.to_string() }
}

/// Renders the conversation with the model's chat template, leaving the assistant turn open.
pub fn render_chat(model: &Model, messages: &[ChatMessage]) -> Result<String, ApiError> {
    model
        .chat_template()
        .render(messages, true)
        .map_err(|e| ApiError::bad_request(format!("chat template: {e}")))
}

/// Prompt tokens: `context` (a previous response's tokens, already starting with BOS) followed by
/// the new text without a second BOS; or the text alone with BOS per the model's rules, unless the
/// rendered chat template already wrote the BOS text itself.
pub fn tokenize(model: &Model, text: &str, context: Option<&[u32]>) -> Result<Vec<u32>, ApiError> {
    let bad = |e: &dyn std::fmt::Display| ApiError::bad_request(format!("cannot tokenize prompt: {e}"));
    let tok = model.tokenizer();
    match context.filter(|c| !c.is_empty()) {
        None => {
            let add_bos = !model.chat_template().starts_with_bos(text, tok);
            tok.encode(text, add_bos, true).map_err(|e| bad(&e))
        }
        Some(ctx) => {
            let n_vocab = model.info().n_vocab;
            if let Some(bad_id) = ctx.iter().find(|&&t| t as usize >= n_vocab) {
                return Err(ApiError::bad_request(format!(
                    "invalid context: token id {bad_id} is outside the vocabulary ({n_vocab})"
                )));
            }
            let mut tokens = ctx.to_vec();
            tokens.extend(tok.encode(text, false, true).map_err(|e| bad(&e))?);
            Ok(tokens)
        }
    }
}

pub fn sampler(opts: &Options) -> Result<SamplerConfig, ApiError> {
    let mut s = SamplerConfig::default();
    if let Some(v) = opts.temperature {
        s.temperature = v;
    }
    if let Some(v) = opts.top_p {
        s.top_p = v;
    }
    if let Some(v) = opts.top_k {
        s.top_k = i32::try_from(v).unwrap_or(i32::MAX);
    }
    if let Some(v) = opts.min_p {
        s.min_p = v;
    }
    // Ollama's -1 (any negative) means a fresh random seed.
    s.seed = opts.seed.and_then(|v| u64::try_from(v).ok());
    if let Some(v) = opts.repeat_penalty {
        s.repeat_penalty = v;
    }
    if let Some(v) = opts.repeat_last_n {
        s.repeat_last_n = i32::try_from(v).unwrap_or(i32::MAX);
    }
    if let Some(v) = opts.presence_penalty {
        s.presence_penalty = v;
    }
    if let Some(v) = opts.frequency_penalty {
        s.frequency_penalty = v;
    }
    s.validate().map_err(|e| ApiError::bad_request(format!("invalid options: {e}")))?;
    Ok(s)
}

pub fn engine_request(prompt: Vec<u32>, opts: &Options, truncate: bool) -> Result<GenerateRequest, ApiError> {
    Ok(GenerateRequest {
        prompt,
        sampling: sampler(opts)?,
        num_predict: opts.num_predict(),
        stop: opts.stop.clone().unwrap_or_default(),
        num_ctx: opts.num_ctx(),
        truncate,
    })
}
