//! SentencePiece-BPE ("llama" vocabularies): llama.cpp's `llm_tokenizer_spm_session`.
//!
//! Start from single UTF-8 characters, repeatedly merge the adjacent pair whose
//! concatenation is the highest-scoring vocabulary entry (leftmost on ties), then
//! emit each final symbol: as a token if it is one, else by undoing its merges
//! (`rev_merge`), else as byte tokens `<0xXX>`.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use super::Vocab;

#[derive(Clone, Copy)]
struct Symbol {
    prev: Option<usize>,
    next: Option<usize>,
    /// Byte range of the symbol in the text; `len == 0` once merged away.
    start: usize,
    len: usize,
}

struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Max-heap order: higher score first, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then_with(|| other.left.cmp(&self.left))
    }
}

/// Tokenizes one raw fragment whose spaces are already replaced by `▁`.
pub fn tokenize(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    let n_chars = text.chars().count();
    for (i, (start, c)) in text.char_indices().enumerate() {
        symbols.push(Symbol {
            prev: i.checked_sub(1),
            next: (i + 1 < n_chars).then_some(i + 1),
            start,
            len: c.len_utf8(),
        });
    }
    let mut session = Session { vocab, text, symbols, queue: BinaryHeap::new(), rev_merge: HashMap::new() };
    for i in 1..session.symbols.len() {
        session.try_add_bigram(Some(i - 1), Some(i));
    }
    while let Some(bigram) = session.queue.pop() {
        let (l, r) = (session.symbols[bigram.left], session.symbols[bigram.right]);
        // Stale entry: one side was merged since this pair was queued.
        if l.len == 0 || r.len == 0 || l.len + r.len != bigram.size {
            continue;
        }
        session.symbols[bigram.left].len += r.len;
        session.symbols[bigram.right].len = 0;
        session.symbols[bigram.left].next = r.next;
        if let Some(n) = r.next {
            session.symbols[n].prev = Some(bigram.left);
        }
        session.try_add_bigram(l.prev, Some(bigram.left));
        session.try_add_bigram(Some(bigram.left), r.next);
    }
    let mut i = if session.symbols.is_empty() { None } else { Some(0) };
    while let Some(idx) = i {
        session.resegment(idx, out);
        i = session.symbols[idx].next;
    }
}

/// (start, len) byte range of a symbol in the text.
type Span = (usize, usize);

struct Session<'a> {
    vocab: &'a Vocab,
    text: &'a str,
    symbols: Vec<Symbol>,
    queue: BinaryHeap<Bigram>,
    /// Merged text -> the byte ranges of the two halves it was last built from.
    /// Every merge result is a vocabulary entry, so in practice only single
    /// characters reach the byte fallback; the halves are strictly shorter, so
    /// the recursion always ends.
    rev_merge: HashMap<&'a str, (Span, Span)>,
}

impl<'a> Session<'a> {
    fn try_add_bigram(&mut self, left: Option<usize>, right: Option<usize>) {
        let (Some(left), Some(right)) = (left, right) else { return };
        let (l, r) = (self.symbols[left], self.symbols[right]);
        let text = &self.text[l.start..l.start + l.len + r.len];
        let Some(id) = self.vocab.token_id(text) else { return };
        self.queue.push(Bigram { left, right, score: self.vocab.score(id), size: text.len() });
        self.rev_merge.insert(text, ((l.start, l.len), (r.start, r.len)));
    }

    fn resegment(&self, idx: usize, out: &mut Vec<u32>) {
        let s = self.symbols[idx];
        self.resegment_range(s.start, s.len, out);
    }

    fn resegment_range(&self, start: usize, len: usize, out: &mut Vec<u32>) {
        let text = &self.text[start..start + len];
        if let Some(id) = self.vocab.token_id(text) {
            out.push(id);
            return;
        }
        match self.rev_merge.get(text) {
            Some(&((ls, ll), (rs, rl))) if ll < len && rl < len => {
                self.resegment_range(ls, ll, out);
                self.resegment_range(rs, rl, out);
            }
            _ => out.extend(text.bytes().filter_map(|b| self.vocab.byte_to_token(b))),
        }
    }
}
