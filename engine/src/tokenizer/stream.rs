//! Incremental detokenizing for streamed generation: pieces are byte strings
//! that may split a UTF-8 character, so bytes wait until they form whole ones.

use super::Tokenizer;

/// Per-stream decoder; owns the bytes of at most one incomplete character.
#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds token `id`'s piece and returns every complete character so far.
    /// Invalid bytes become U+FFFD; an incomplete tail waits for the next call.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        self.push_bytes(tok.token_bytes(id))
    }

    /// Same for raw piece bytes (e.g. `Tokenizer::token_bytes_special`).
    pub fn push_bytes(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // valid_up_to() marks a UTF-8 boundary, so this cannot fail
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        // an incomplete character at the end: keep it for later
                        None => {
                            rest = after;
                            break;
                        }
                        Some(n) => {
                            out.push('\u{FFFD}');
                            rest = &after[n..];
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    /// Returns whatever is left (an incomplete character becomes U+FFFD).
    pub fn flush(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }

    /// True while bytes of an incomplete character are held back.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::StreamDecoder;

    #[test]
    fn split_characters_wait_for_their_last_byte() {
        let mut d = StreamDecoder::new();
        let bytes = "é😀".as_bytes();
        assert_eq!(d.push_bytes(&bytes[..1]), "");
        assert_eq!(d.push_bytes(&bytes[1..3]), "é");
        assert_eq!(d.push_bytes(&bytes[3..5]), "");
        assert!(d.has_pending());
        assert_eq!(d.push_bytes(&bytes[5..]), "😀");
        assert_eq!(d.flush(), "");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut d = StreamDecoder::new();
        assert_eq!(d.push_bytes(&[b'a', 0xFF, b'b']), "a\u{FFFD}b");
        assert_eq!(d.push_bytes(&[0xE2, 0x82]), "");
        assert_eq!(d.flush(), "\u{FFFD}");
    }
}
