//! Ollama's request and response bodies. Requests ignore unknown fields and treat `null` like an
//! absent field (as Go's decoder does); responses keep Ollama's field order and omit zero metrics.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// Go decodes JSON `null` into a string/bool as "leave the zero value"; serde would reject it.
pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct GenerateBody {
    #[serde(deserialize_with = "null_default")]
    pub model: String,
    #[serde(deserialize_with = "null_default")]
    pub prompt: String,
    #[serde(deserialize_with = "null_default")]
    pub suffix: String,
    pub system: Option<String>,
    pub template: Option<String>,
    pub context: Option<Vec<u32>>,
    pub stream: Option<bool>,
    #[serde(deserialize_with = "null_default")]
    pub raw: bool,
    pub format: Option<Value>,
    pub images: Option<Vec<String>>,
    pub keep_alive: Option<Value>,
    pub options: Option<Map<String, Value>>,
    pub think: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ChatBody {
    #[serde(deserialize_with = "null_default")]
    pub model: String,
    pub messages: Option<Vec<Message>>,
    pub stream: Option<bool>,
    pub format: Option<Value>,
    pub tools: Option<Vec<Value>>,
    pub keep_alive: Option<Value>,
    pub options: Option<Map<String, Value>>,
    pub think: Option<Value>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Message {
    #[serde(deserialize_with = "null_default")]
    pub role: String,
    #[serde(deserialize_with = "null_default")]
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EmbedBody {
    #[serde(deserialize_with = "null_default")]
    pub model: String,
    pub input: Option<Value>,
    pub truncate: Option<bool>,
    pub dimensions: Option<i64>,
    pub keep_alive: Option<Value>,
    pub options: Option<Map<String, Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EmbeddingsBody {
    #[serde(deserialize_with = "null_default")]
    pub model: String,
    #[serde(deserialize_with = "null_default")]
    pub prompt: String,
    pub keep_alive: Option<Value>,
    pub options: Option<Map<String, Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ShowBody {
    #[serde(deserialize_with = "null_default")]
    pub model: String,
    /// Deprecated alias of `model`.
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    #[serde(deserialize_with = "null_default")]
    pub verbose: bool,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// The six metrics of a final chunk, in nanoseconds and token counts; zeros are omitted.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Timings {
    #[serde(skip_serializing_if = "is_zero")]
    pub total_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub load_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub prompt_eval_count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub prompt_eval_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub eval_count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub eval_duration: u64,
}

#[derive(Debug, Serialize)]
pub struct GenerateChunk<'a> {
    pub model: &'a str,
    pub created_at: String,
    pub response: &'a str,
    pub done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<&'a [u32]>,
    #[serde(flatten)]
    pub timings: Timings,
}

#[derive(Debug, Serialize)]
pub struct ChatChunk<'a> {
    pub model: &'a str,
    pub created_at: String,
    pub message: AssistantMessage<'a>,
    pub done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<&'a str>,
    #[serde(flatten)]
    pub timings: Timings,
}

#[derive(Debug, Serialize)]
pub struct AssistantMessage<'a> {
    pub role: &'static str,
    pub content: &'a str,
}

#[derive(Debug, Serialize)]
pub struct ModelDetails {
    pub parent_model: String,
    pub format: String,
    pub family: String,
    pub families: Vec<String>,
    pub parameter_size: String,
    pub quantization_level: String,
}

#[derive(Debug, Serialize)]
pub struct ListModel {
    pub name: String,
    pub model: String,
    pub modified_at: String,
    pub size: u64,
    pub digest: String,
    pub details: ModelDetails,
}

#[derive(Debug, Serialize)]
pub struct PsModel {
    pub name: String,
    pub model: String,
    pub size: u64,
    pub digest: String,
    pub details: ModelDetails,
    pub expires_at: String,
    pub size_vram: u64,
    pub context_length: usize,
}

/// `created_at`: UTC, RFC 3339 with a fractional second.
pub fn now_utc() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// `modified_at` / `expires_at`: local time with its offset, as Ollama writes them.
pub fn local_time(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Local>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Nanos, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_and_unknown_fields_decode() {
        let b: GenerateBody =
            serde_json::from_str(r#"{"model":null,"prompt":"hi","raw":null,"whatever":[1]}"#).unwrap();
        assert_eq!(b.model, "");
        assert_eq!(b.prompt, "hi");
        assert!(!b.raw);
        assert!(serde_json::from_str::<GenerateBody>(r#"{"prompt":5}"#).is_err());
        assert!(serde_json::from_str::<GenerateBody>(r#"{"context":[-1]}"#).is_err());
    }

    #[test]
    fn zero_metrics_are_omitted() {
        let c = GenerateChunk {
            model: "m",
            created_at: "t".into(),
            response: "",
            done: true,
            done_reason: Some("stop"),
            context: None,
            timings: Timings { eval_count: 3, ..Default::default() },
        };
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(s, r#"{"model":"m","created_at":"t","response":"","done":true,"done_reason":"stop","eval_count":3}"#);
    }
}
