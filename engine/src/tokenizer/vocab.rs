//! The vocabulary table: token strings, scores, llama.cpp token attributes, and
//! the string -> id index every tokenizer looks pieces up in.

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

/// Token texts live in one string (`text`, token `i` ending at `ends[i]`) and the string -> id
/// index is the ids sorted by text, searched by bisection: for Gemma 3's 262,144 tokens that is
/// ~4 MB, where a `Vec<String>` plus a `HashMap<String, u32>` held ~35 MB of heap.
pub struct Vocab {
    text: String,
    ends: Vec<u32>,
    sorted: Vec<u32>,
    pub scores: Vec<f32>,
    pub attrs: Vec<u32>,
}

impl Vocab {
    pub fn new<S: AsRef<str>>(tokens: &[S], scores: Option<Vec<f32>>, types: Option<Vec<i32>>) -> Result<Vocab, TokenizerError> {
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
        let mut text = String::with_capacity(tokens.iter().map(|t| t.as_ref().len()).sum());
        let mut ends = Vec::with_capacity(n);
        for (i, t) in tokens.iter().enumerate() {
            match t.as_ref() {
                "" => text.push_str(&format!("[EMPTY_{i}]")),
                t => text.push_str(t),
            }
            ends.push(u32::try_from(text.len()).map_err(|_| TokenizerError::BadVocabSize(n))?);
        }
        let mut vocab = Vocab { text, ends, sorted: Vec::new(), scores, attrs };
        // Stable: equal texts stay in id order, so a duplicate names its first and second id.
        let mut sorted: Vec<u32> = (0..n as u32).collect();
        sorted.sort_by(|&a, &b| vocab.text(a).cmp(vocab.text(b)));
        if let Some(w) = sorted.windows(2).find(|w| vocab.text(w[0]) == vocab.text(w[1])) {
            return Err(TokenizerError::DuplicateToken { text: vocab.text(w[0]).to_string(), first: w[0], second: w[1] });
        }
        vocab.sorted = sorted;
        Ok(vocab)
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// The text of token `id` ("" for an id outside the vocabulary).
    pub fn text(&self, id: u32) -> &str {
        let i = id as usize;
        let Some(&end) = self.ends.get(i) else { return "" };
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start as usize..end as usize]
    }

    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.sorted.binary_search_by(|&id| self.text(id).cmp(text)).ok().map(|i| self.sorted[i])
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
    fn lookups_find_every_token_and_nothing_else() {
        let v = Vocab::new(&["b", "", "ab", "a", "\u{2581}x"], None, None).unwrap();
        for (id, t) in ["b", "[EMPTY_1]", "ab", "a", "\u{2581}x"].iter().enumerate() {
            assert_eq!(v.text(id as u32), *t);
            assert_eq!(v.token_id(t), Some(id as u32), "{t}");
        }
        assert_eq!(v.token_id("c"), None);
        assert_eq!(v.token_id(""), None);
        assert_eq!(v.text(99), "");
    }

    #[test]
    fn duplicate_tokens_are_rejected() {
        let r = Vocab::new(&["a", "b", "a"], None, None);
        assert!(matches!(r, Err(TokenizerError::DuplicateToken { first: 0, second: 2, .. })));
    }
}
