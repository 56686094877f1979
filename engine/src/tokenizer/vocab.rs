//! The vocabulary table: token strings, scores, llama.cpp token attributes, and
//! the string -> id index every tokenizer looks pieces up in.

use std::collections::HashMap;

use super::TokenizerError;

/// llama.cpp's `llama_token_attr` bits.
pub mod attr {
    pub const UNDEFINED: u32 = 0;
    pub const UNKNOWN: u32 = 1 << 0;
    pub const UNUSED: u32 = 1 << 1;
    pub const NORMAL: u32 = 1 << 2;
    pub const CONTROL: u32 = 1 << 3;
    pub const USER_DEFINED: u32 = 1 << 4;
    pub const BYTE: u32 = 1 << 5;
    pub const LSTRIP: u32 = 1 << 7;
    pub const RSTRIP: u32 = 1 << 8;

    /// GGUF `tokenizer.ggml.token_type` value -> attribute.
    pub fn from_token_type(t: i32) -> u32 {
        match t {
            1 => NORMAL,
            2 => UNKNOWN,
            3 => CONTROL,
            4 => USER_DEFINED,
            5 => UNUSED,
            6 => BYTE,
            _ => UNDEFINED,
        }
    }
}

pub struct Vocab {
    pub texts: Vec<String>,
    pub scores: Vec<f32>,
    pub attrs: Vec<u32>,
    index: HashMap<String, u32>,
}

impl Vocab {
    pub fn new(tokens: Vec<String>, scores: Option<Vec<f32>>, types: Option<Vec<i32>>) -> Result<Vocab, TokenizerError> {
        let n = tokens.len();
        if n == 0 || n > i32::MAX as usize {
            return Err(TokenizerError::BadVocabSize(n));
        }
        let scores = match scores {
            Some(s) if s.len() < n => return Err(TokenizerError::ShortArray { what: "scores", got: s.len(), want: n }),
            Some(mut s) => {
                s.truncate(n);
                s
            }
            None => vec![0.0; n],
        };
        let attrs = match types {
            Some(t) if t.len() < n => {
                return Err(TokenizerError::ShortArray { what: "token_type", got: t.len(), want: n })
            }
            Some(t) => t[..n].iter().map(|&t| attr::from_token_type(t)).collect(),
            None => vec![attr::NORMAL; n],
        };
        let mut texts = tokens;
        let mut index = HashMap::with_capacity(n);
        for (i, text) in texts.iter_mut().enumerate() {
            if text.is_empty() {
                *text = format!("[EMPTY_{i}]");
            }
            if let Some(first) = index.insert(text.clone(), i as u32) {
                return Err(TokenizerError::DuplicateToken { text: text.clone(), first, second: i as u32 });
            }
        }
        Ok(Vocab { texts, scores, attrs, index })
    }

    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.index.get(text).copied()
    }

    pub fn score(&self, id: u32) -> f32 {
        self.scores.get(id as usize).copied().unwrap_or(f32::NEG_INFINITY)
    }

    pub fn attr(&self, id: u32) -> u32 {
        self.attrs.get(id as usize).copied().unwrap_or(attr::UNDEFINED)
    }

    pub fn has_attr(&self, id: u32, bits: u32) -> bool {
        self.attr(id) & bits != 0
    }

    /// SPM byte fallback: `<0xXX>`, else the byte itself as a one-character token.
    pub fn byte_to_token(&self, b: u8) -> Option<u32> {
        self.token_id(&format!("<0x{b:02X}>"))
            .or_else(|| if b.is_ascii() { self.token_id(&char::from(b).to_string()) } else { None })
    }
}

/// Strict parse of a BYTE token's text: exactly `<0x` two hex digits `>`.
pub fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_tokens_parse_strictly() {
        assert_eq!(parse_byte_token("<0x0A>"), Some(10));
        assert_eq!(parse_byte_token("<0xff>"), Some(255));
        for bad in ["<0x-1>", "<0x100>", "<0xZZ>", "<0x0A", "0x0A>", "<0x+A>", "<0x>"] {
            assert_eq!(parse_byte_token(bad), None, "{bad}");
        }
    }

    #[test]
    fn duplicate_tokens_are_rejected() {
        let r = Vocab::new(vec!["a".into(), "b".into(), "a".into()], None, None);
        assert!(matches!(r, Err(TokenizerError::DuplicateToken { first: 0, second: 2, .. })));
    }
}
