//! Byte-level BPE ("gpt2" vocabularies): llama.cpp's `llm_tokenizer_bpe_session`.
//!
//! Each pre-token is byte-encoded with GPT-2's `bytes_to_unicode`, split into
//! characters, and the adjacent pair with the lowest merge rank (leftmost on ties)
//! is merged until none is left. Merges are keyed by the token ids of both halves;
//! `Tokenizer` construction rejects merges whose halves or result are not tokens,
//! which makes id keys equivalent to llama.cpp's string keys.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use super::Vocab;

/// `(left id << 32 | right id)` -> rank (index in `tokenizer.ggml.merges`).
pub type MergeRanks = HashMap<u64, u32>;

pub fn pair_key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

#[derive(Clone, Copy)]
struct Symbol {
    prev: Option<usize>,
    next: Option<usize>,
    start: usize,
    /// 0 once merged away.
    len: usize,
    /// Token id of the symbol's text, if it is a token.
    id: Option<u32>,
}

#[derive(PartialEq, Eq)]
struct Bigram {
    rank: u32,
    left: usize,
    right: usize,
    left_id: u32,
    right_id: u32,
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Max-heap order: lowest rank first, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        other.rank.cmp(&self.rank).then_with(|| other.left.cmp(&self.left))
    }
}

/// Tokenizes one byte-encoded pre-token.
pub fn tokenize_word(vocab: &Vocab, ranks: &MergeRanks, word: &str, ignore_merges: bool, out: &mut Vec<u32>) {
    if ignore_merges {
        if let Some(id) = vocab.token_id(word) {
            out.push(id);
            return;
        }
    }
    let n_chars = word.chars().count();
    let mut symbols: Vec<Symbol> = word
        .char_indices()
        .enumerate()
        .map(|(i, (start, c))| {
            let len = c.len_utf8();
            Symbol {
                prev: i.checked_sub(1),
                next: (i + 1 < n_chars).then_some(i + 1),
                start,
                len,
                id: vocab.token_id(&word[start..start + len]),
            }
        })
        .collect();
    let mut queue = BinaryHeap::new();
    let add_bigram = |queue: &mut BinaryHeap<Bigram>, symbols: &[Symbol], left: Option<usize>, right: Option<usize>| {
        let (Some(left), Some(right)) = (left, right) else { return };
        let (Some(left_id), Some(right_id)) = (symbols[left].id, symbols[right].id) else { return };
        if let Some(&rank) = ranks.get(&pair_key(left_id, right_id)) {
            queue.push(Bigram { rank, left, right, left_id, right_id });
        }
    };
    for i in 1..symbols.len() {
        add_bigram(&mut queue, &symbols, Some(i - 1), Some(i));
    }
    while let Some(b) = queue.pop() {
        let (l, r) = (symbols[b.left], symbols[b.right]);
        if l.len == 0 || r.len == 0 || l.id != Some(b.left_id) || r.id != Some(b.right_id) {
            continue; // stale: a side changed since this pair was queued
        }
        let merged = &word[l.start..l.start + l.len + r.len];
        symbols[b.left].len += r.len;
        symbols[b.left].id = vocab.token_id(merged);
        symbols[b.left].next = r.next;
        symbols[b.right].len = 0;
        if let Some(n) = r.next {
            symbols[n].prev = Some(b.left);
        }
        add_bigram(&mut queue, &symbols, l.prev, Some(b.left));
        add_bigram(&mut queue, &symbols, Some(b.left), r.next);
    }
    for s in symbols.iter().filter(|s| s.len > 0) {
        match s.id {
            Some(id) => out.push(id),
            // llama.cpp looks each byte of the encoded text up as a one-byte
            // token; only ASCII bytes can ever match.
            None => out.extend(word[s.start..s.start + s.len].bytes().filter_map(|b| {
                if b.is_ascii() {
                    vocab.token_id(std::str::from_utf8(&[b]).unwrap_or(""))
                } else {
                    None
                }
            })),
        }
    }
}
