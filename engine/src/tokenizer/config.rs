//! Everything a [`super::Tokenizer`] is built from, as plain data: filled from
//! GGUF `tokenizer.ggml.*` keys, or by hand in tests.

use crate::gguf::{GgufError, GgufFile};

use super::TokenizerError;

/// `None` means "key absent": llama.cpp's per-model default applies.
#[derive(Clone, Debug, Default)]
pub struct TokenizerConfig {
    /// `tokenizer.ggml.model`: "llama" (SPM) or "gpt2" (byte-level BPE).
    pub model: String,
    /// `tokenizer.ggml.pre`: pre-tokenizer regex family for "gpt2".
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    pub scores: Option<Vec<f32>>,
    /// GGUF token types: 1 NORMAL, 2 UNKNOWN, 3 CONTROL, 4 USER_DEFINED, 5 UNUSED, 6 BYTE.
    pub token_types: Option<Vec<i32>>,
    /// `"left right"` per entry, rank = index.
    pub merges: Vec<String>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub eot_id: Option<u32>,
    pub eom_id: Option<u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub add_space_prefix: Option<bool>,
    /// `general.name`: llama.cpp keys a few per-model quirks (Phi-3) on it.
    pub model_name: Option<String>,
}

impl TokenizerConfig {
    pub fn from_gguf(f: &GgufFile) -> Result<TokenizerConfig, TokenizerError> {
        let tokens = f.get_str_array("tokenizer.ggml.tokens").map_err(|e| TokenizerError::Metadata(e.to_string()))?;
        Ok(TokenizerConfig { tokens: tokens.into_iter().map(str::to_string).collect(), ..Self::from_gguf_without_tokens(f)? })
    }

    /// Everything but `tokens` (left empty; the tokenizer reads them from the file itself).
    pub(super) fn from_gguf_without_tokens(f: &GgufFile) -> Result<TokenizerConfig, TokenizerError> {
        let err = |e: GgufError| TokenizerError::Metadata(e.to_string());
        // Present keys must have the right type; absent ones fall back to defaults.
        let opt = |key: &str| f.get(key).is_some();
        Ok(TokenizerConfig {
            model: f.get_str("tokenizer.ggml.model").map_err(err)?.to_string(),
            pre: opt("tokenizer.ggml.pre")
                .then(|| f.get_str("tokenizer.ggml.pre").map(str::to_string))
                .transpose()
                .map_err(err)?,
            tokens: Vec::new(),
            scores: opt("tokenizer.ggml.scores")
                .then(|| f.get_f32_array("tokenizer.ggml.scores"))
                .transpose()
                .map_err(err)?,
            token_types: opt("tokenizer.ggml.token_type")
                .then(|| f.get_i32_array("tokenizer.ggml.token_type"))
                .transpose()
                .map_err(err)?,
            merges: if opt("tokenizer.ggml.merges") {
                f.get_str_array("tokenizer.ggml.merges").map_err(err)?.into_iter().map(str::to_string).collect()
            } else {
                Vec::new()
            },
            bos_id: opt_u32(f, "tokenizer.ggml.bos_token_id")?,
            eos_id: opt_u32(f, "tokenizer.ggml.eos_token_id")?,
            eot_id: opt_u32(f, "tokenizer.ggml.eot_token_id")?,
            eom_id: opt_u32(f, "tokenizer.ggml.eom_token_id")?,
            add_bos: opt_bool(f, "tokenizer.ggml.add_bos_token")?,
            add_eos: opt_bool(f, "tokenizer.ggml.add_eos_token")?,
            add_space_prefix: opt_bool(f, "tokenizer.ggml.add_space_prefix")?,
            model_name: f.get("general.name").and_then(|_| f.get_str("general.name").ok()).map(str::to_string),
        })
    }
}

/// Special ids: a present key that is not a u32 (e.g. -1) counts as absent, as in llama.cpp.
fn opt_u32(f: &GgufFile, key: &str) -> Result<Option<u32>, TokenizerError> {
    Ok(f.get(key).and_then(|_| f.get_u32(key).ok()))
}

fn opt_bool(f: &GgufFile, key: &str) -> Result<Option<bool>, TokenizerError> {
    match f.get(key) {
        None => Ok(None),
        Some(_) => f.get_bool(key).map(Some).map_err(|e| TokenizerError::Metadata(e.to_string())),
    }
}
