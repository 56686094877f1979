//! Tokenizers built from GGUF metadata alone, reproducing llama.cpp's
//! `llama_tokenize` / `llama_detokenize` (see spec kernels-and-models.md §6).
//!
//! * `"llama"` vocabularies: SentencePiece-BPE by score ([`spm`]).
//! * `"gpt2"` vocabularies: byte-level BPE by merge rank ([`bpe`]) after the
//!   pre-tokenizer regexes selected by `tokenizer.ggml.pre` ([`pretokenize`]).
//!
//! Both first cut the text around special-token strings ([`special`]).

mod bpe;
mod config;
mod decode;
mod pretokenize;
mod special;
mod spm;
mod stream;
mod unicode;
mod vocab;

use std::collections::{BTreeSet, HashMap};

pub use config::TokenizerConfig;
pub use stream::StreamDecoder;

use bpe::MergeRanks;
use pretokenize::PreConfig;
use special::Fragment;
use vocab::{attr, Vocab};

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("unsupported tokenizer model '{0}' (kiln supports 'llama' and 'gpt2')")]
    UnsupportedModel(String),
    #[error("unsupported pre-tokenizer '{0}'")]
    UnsupportedPre(String),
    #[error("vocabulary size {0} is out of range")]
    BadVocabSize(usize),
    #[error("tokenizer.ggml.{what} has {got} entries, fewer than the {want} tokens")]
    ShortArray { what: &'static str, got: usize, want: usize },
    #[error("duplicate token {text:?} at ids {first} and {second}")]
    DuplicateToken { text: String, first: u32, second: u32 },
    #[error("byte token {id} has malformed text {text:?} (want <0xXX>)")]
    BadByteToken { id: u32, text: String },
    #[error("merge {index} ({merge:?}) does not name two vocabulary tokens")]
    BadMerge { index: usize, merge: String },
    #[error("{flag} is set but the model has no {what} token")]
    MissingSpecial { flag: &'static str, what: &'static str },
    #[error("token id {id} is out of range for a vocabulary of {n_vocab}")]
    TokenOutOfRange { id: u32, n_vocab: usize },
    #[error("tokenizer metadata: {0}")]
    Metadata(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Spm,
    Bpe(PreConfig),
}

/// A vocabulary plus the rules to encode text into ids and decode ids into
/// bytes. Immutable after construction, so `Send + Sync` and shareable.
pub struct Tokenizer {
    vocab: Vocab,
    kind: Kind,
    ranks: MergeRanks,
    /// GPT-2 `bytes_to_unicode` and its inverse (BPE only).
    byte_chars: [char; 256],
    char_bytes: HashMap<char, u8>,
    /// CONTROL / USER_DEFINED / UNKNOWN ids, longest text first.
    special_cache: Vec<u32>,
    /// Concatenated non-special pieces; token `i` is `pieces[offsets[i]..offsets[i + 1]]`.
    pieces: Vec<u8>,
    piece_offsets: Vec<u32>,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    eog: BTreeSet<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    clean_spaces: bool,
}

impl Tokenizer {
    /// Reads `tokenizer.ggml.*` from a GGUF file.
    pub fn from_gguf(f: &crate::gguf::GgufFile) -> Result<Tokenizer, TokenizerError> {
        // The token texts go straight from the file into the vocabulary, never one String each.
        let tokens = f.get_str_array("tokenizer.ggml.tokens").map_err(|e| TokenizerError::Metadata(e.to_string()))?;
        Tokenizer::build(TokenizerConfig::from_gguf_without_tokens(f)?, &tokens)
    }

    /// Builds a tokenizer, applying llama.cpp's defaults for whatever the
    /// config leaves unset (`llama_vocab::impl::load`).
    pub fn from_config(mut cfg: TokenizerConfig) -> Result<Tokenizer, TokenizerError> {
        let tokens = std::mem::take(&mut cfg.tokens);
        Tokenizer::build(cfg, &tokens)
    }

    /// `from_config` with the token texts passed apart (`cfg.tokens` is ignored).
    fn build<S: AsRef<str>>(cfg: TokenizerConfig, tokens: &[S]) -> Result<Tokenizer, TokenizerError> {
        let kind = match cfg.model.as_str() {
            "llama" => Kind::Spm,
            "gpt2" => {
                let pre = cfg.pre.as_deref().unwrap_or("");
                Kind::Bpe(pretokenize::pre_config(pre).ok_or_else(|| TokenizerError::UnsupportedPre(pre.into()))?)
            }
            other => return Err(TokenizerError::UnsupportedModel(other.into())),
        };
        let mut vocab = Vocab::new(tokens, cfg.scores, cfg.token_types)?;
        let n = vocab.len();
        let in_range = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        // Defaults per model type; ids from the file win when in range.
        let (def_bos, def_eos) = match kind {
            Kind::Spm => (Some(1), Some(2)),
            Kind::Bpe(_) => (Some(11), Some(11)),
        };
        let bos = in_range(cfg.bos_id).or(in_range(def_bos));
        let eos = in_range(cfg.eos_id).or(in_range(def_eos));
        let (def_add_bos, def_space_prefix, clean_spaces) = match kind {
            Kind::Spm => (true, true, false),
            Kind::Bpe(p) => (p.add_bos, false, p.clean_spaces),
        };
        let add_space_prefix = cfg.add_space_prefix.unwrap_or(def_space_prefix);
        let add_bos = cfg.add_bos.unwrap_or(def_add_bos);
        let add_eos = cfg.add_eos.unwrap_or(false);
        if add_bos && bos.is_none() {
            return Err(TokenizerError::MissingSpecial { flag: "tokenizer.ggml.add_bos_token", what: "BOS" });
        }
        if add_eos && eos.is_none() {
            return Err(TokenizerError::MissingSpecial { flag: "tokenizer.ggml.add_eos_token", what: "EOS" });
        }

        let mut ids = special::SpecialIds { eot: in_range(cfg.eot_id), eom: in_range(cfg.eom_id), eos };
        let eog = special::detect_eog(&mut vocab, &mut ids);
        if is_phi3(cfg.model_name.as_deref()) {
            set_phi3_rstrip(&mut vocab);
        }
        let special_cache = special::special_cache(&vocab);
        let ranks = match kind {
            Kind::Bpe(_) => parse_merges(&vocab, &cfg.merges)?,
            Kind::Spm => MergeRanks::new(),
        };
        let byte_chars = unicode::byte_to_char_table();
        let char_bytes = byte_chars.iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();
        let mut tok = Tokenizer {
            vocab,
            kind,
            ranks,
            byte_chars,
            char_bytes,
            special_cache,
            pieces: Vec::new(),
            piece_offsets: Vec::new(),
            bos,
            eos,
            eot: ids.eot,
            eog,
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces,
        };
        tok.build_pieces()?;
        Ok(tok)
    }

    /// `llama_tokenize(text, add_special, parse_special)`: `add_special` adds BOS
    /// (and EOS) only where the model's rules say so.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>, TokenizerError> {
        let frags = special::partition(&self.vocab, &self.special_cache, text, parse_special);
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        match self.kind {
            Kind::Spm => {
                let mut prev_special = true; // the first fragment gets the space prefix too
                for f in frags {
                    match f {
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                        Fragment::Raw(s, e) => {
                            let prefix = if self.add_space_prefix && prev_special { " " } else { "" };
                            let escaped = format!("{prefix}{}", &text[s..e]).replace(' ', "\u{2581}");
                            spm::tokenize(&self.vocab, &escaped, &mut out);
                            prev_special = false;
                        }
                    }
                }
            }
            Kind::Bpe(pre) => {
                let mut encoded = String::new();
                for f in frags {
                    match f {
                        Fragment::Token(id) => out.push(id),
                        Fragment::Raw(s, e) => {
                            for word in pretokenize::pre_split(&text[s..e], pre.pre) {
                                encoded.clear();
                                encoded.extend(word.bytes().map(|b| self.byte_chars[b as usize]));
                                bpe::tokenize_word(&self.vocab, &self.ranks, &encoded, pre.ignore_merges, &mut out);
                            }
                        }
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        Ok(out)
    }

    /// Raw bytes of a token's piece as generated text shows it: CONTROL and
    /// UNKNOWN tokens (and ids out of range) give `b""`.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        let i = id as usize;
        match (self.piece_offsets.get(i), self.piece_offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => &self.pieces[a as usize..b as usize],
            _ => b"",
        }
    }

    /// Like [`Tokenizer::token_bytes`] but CONTROL/UNKNOWN tokens render their text.
    pub fn token_bytes_special(&self, id: u32) -> &[u8] {
        if self.vocab.has_attr(id, attr::CONTROL | attr::UNKNOWN) {
            return self.token_text(id).map_or(b"", str::as_bytes);
        }
        self.token_bytes(id)
    }

    /// The vocabulary string as stored in the file.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        (id < self.vocab.len() as u32).then(|| self.vocab.text(id))
    }

    /// `llama_detokenize(ids, remove_special = false, unparse_special = false)`;
    /// ids out of range are skipped, invalid UTF-8 is replaced at the very end.
    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids, false)).into_owned()
    }

    /// [`Tokenizer::decode`] that rejects ids outside the vocabulary.
    pub fn try_decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.vocab.len()) {
            return Err(TokenizerError::TokenOutOfRange { id, n_vocab: self.vocab.len() });
        }
        Ok(self.decode(ids))
    }

    /// Decodes to bytes; `special` renders CONTROL tokens' text.
    pub fn decode_bytes(&self, ids: &[u32], special: bool) -> Vec<u8> {
        decode::detokenize(self, ids, special)
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// End-of-turn token (`<end_of_turn>`, `<|im_end|>`, `<|eot_id|>`, ...), if any.
    pub fn eot_id(&self) -> Option<u32> {
        self.eot
    }

    /// True for every token that ends generation: EOS, EOT, EOM and the texts
    /// llama.cpp lists (`<end_of_turn>`, `<|im_end|>`, `<|endoftext|>`, ...).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// All end-of-generation ids, ascending.
    pub fn eog_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.eog.iter().copied()
    }

    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos && self.bos.is_some()
    }

    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.token_id(text)
    }

    /// CONTROL tokens (`<bos>`, `<|im_start|>`, ...) never appear in plain text output.
    pub fn is_control(&self, id: u32) -> bool {
        self.vocab.has_attr(id, attr::CONTROL)
    }

    fn build_pieces(&mut self) -> Result<(), TokenizerError> {
        let n = self.vocab.len();
        let mut pieces = Vec::with_capacity(n * 4);
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        for id in 0..n as u32 {
            decode::push_piece(self, id, &mut pieces)?;
            let end = u32::try_from(pieces.len()).map_err(|_| TokenizerError::Metadata(format!("token texts exceed 4 GiB at token {id}")))?;
            offsets.push(end);
        }
        pieces.shrink_to_fit();
        self.pieces = pieces;
        self.piece_offsets = offsets;
        Ok(())
    }
}

fn parse_merges(vocab: &Vocab, merges: &[String]) -> Result<MergeRanks, TokenizerError> {
    let mut ranks = MergeRanks::with_capacity(merges.len());
    for (i, m) in merges.iter().enumerate() {
        // llama.cpp splits at the first space after the first byte
        let first = m.chars().next().map_or(0, char::len_utf8);
        let split = m[first..].find(' ').map(|p| p + first);
        let pair = split.and_then(|p| Some((vocab.token_id(&m[..p])?, vocab.token_id(&m[p + 1..])?)));
        let Some((l, r)) = pair else {
            return Err(TokenizerError::BadMerge { index: i, merge: m.clone() });
        };
        ranks.entry(bpe::pair_key(l, r)).or_insert(i as u32);
    }
    Ok(ranks)
}

fn is_phi3(model_name: Option<&str>) -> bool {
    model_name.is_some_and(|n| {
        let n = n.to_lowercase();
        n.contains("phi-3") || n.contains("phi3")
    })
}

/// llama.cpp strips spaces after Phi-3's special tokens.
fn set_phi3_rstrip(vocab: &mut Vocab) {
    for id in special::special_cache(vocab) {
        vocab.attrs[id as usize] |= attr::RSTRIP;
    }
    for (text, on) in [("</s>", true), ("<unk>", false), ("<s>", false), ("<|endoftext|>", false)] {
        if let Some(id) = vocab.token_id(text) {
            let a = &mut vocab.attrs[id as usize];
            *a = if on { *a | attr::RSTRIP } else { *a & !attr::RSTRIP };
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shared_types_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<super::Tokenizer>();
        check::<super::StreamDecoder>();
        check::<crate::template::ChatTemplate>();
        check::<crate::sampling::Sampler>();
    }
}
