//! Ids -> bytes: llama.cpp's `token_to_piece` and `detokenize`.

use super::vocab::{attr, parse_byte_token};
use super::{Kind, Tokenizer, TokenizerError};

/// Appends the piece of `id` as plain output shows it (`special = false`):
/// CONTROL/UNKNOWN/UNUSED give nothing, USER_DEFINED its text, NORMAL its text
/// with `▁` -> space (SPM) or GPT-2 byte decoding (BPE), BYTE its byte.
pub(super) fn push_piece(tok: &Tokenizer, id: u32, out: &mut Vec<u8>) -> Result<(), TokenizerError> {
    let a = tok.vocab.attr(id);
    let text = tok.vocab.text(id);
    if a & (attr::CONTROL | attr::UNKNOWN) != 0 {
        return Ok(());
    }
    if a & attr::USER_DEFINED != 0 {
        out.extend_from_slice(text.as_bytes());
    } else if a & attr::NORMAL != 0 {
        match tok.kind {
            Kind::Spm => out.extend_from_slice(text.replace('\u{2581}', " ").as_bytes()),
            Kind::Bpe(_) => {
                for c in text.chars() {
                    match tok.char_bytes.get(&c) {
                        Some(&b) => out.push(b),
                        // Not a GPT-2 byte character: keep it as UTF-8.
                        None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                    }
                }
            }
        }
    } else if a & attr::BYTE != 0 {
        let b = parse_byte_token(text).ok_or_else(|| TokenizerError::BadByteToken { id, text: text.into() })?;
        out.push(b);
    }
    Ok(())
}

/// `llama_detokenize(ids, remove_special = false, unparse_special = special)`.
pub(super) fn detokenize(tok: &Tokenizer, ids: &[u32], special: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * 4);
    // With a space prefix, the first piece's leading space is the prefix.
    let mut remove_space = tok.add_space_prefix;
    for &id in ids {
        let piece = if special { tok.token_bytes_special(id) } else { tok.token_bytes(id) };
        let piece = if remove_space { piece.strip_prefix(b" ").unwrap_or(piece) } else { piece };
        remove_space = false;
        out.extend_from_slice(piece);
    }
    if tok.clean_spaces {
        clean_up_spaces(&mut out);
    }
    out
}

/// llama.cpp's `clean_spaces` passes (HF `clean_up_tokenization_spaces`):
/// drop the space in " ?", " !", " .", " ,", around a lone " ' ", and before
/// "'s", "'m", "'re", "'ve".
fn clean_up_spaces(text: &mut Vec<u8>) {
    let mut t = std::mem::take(text);
    // pass 1: " ?", " !", " .", " ,"
    let mut o: Vec<u8> = Vec::with_capacity(t.len());
    for (i, &x) in t.iter().enumerate() {
        if i > 0 && t[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            o.pop();
        }
        o.push(x);
    }
    // pass 2: " ' " -> "'"
    // (llama.cpp overwrites the dropped space with NUL, which later checks see)
    t = o;
    let mut o: Vec<u8> = Vec::with_capacity(t.len());
    let mut i = 0;
    while i < t.len() {
        let x = t[i];
        if i > 0 && x == b'\'' && i + 1 < t.len() && t[i - 1] == b' ' && t[i + 1] == b' ' {
            o.pop();
            o.push(x);
            t[i + 1] = 0;
            i += 2;
            continue;
        }
        o.push(x);
        i += 1;
    }
    // pass 3: " 's", " 'm", " 're", " 've"
    t = o;
    let mut o: Vec<u8> = Vec::with_capacity(t.len());
    for (i, &x) in t.iter().enumerate() {
        if i > 0 && t[i - 1] == b' ' && x == b'\'' && i + 1 < t.len() {
            let x1 = t[i + 1];
            let x2 = t.get(i + 2).copied();
            let drop = matches!(x1, b's' | b'm') || (x2.is_some() && matches!((x1, x2), (b'r', Some(b'e')) | (b'v', Some(b'e'))));
            if drop {
                o.pop();
            }
        }
        o.push(x);
    }
    *text = o;
}

#[cfg(test)]
mod tests {
    use super::clean_up_spaces;

    #[test]
    fn clean_spaces_matches_llama_cpp_passes() {
        let mut t = b"Hi , you ! it 's a ' b I 'd".to_vec();
        clean_up_spaces(&mut t);
        assert_eq!(String::from_utf8_lossy(&t), "Hi, you! it's a'b I 'd");
    }
}
