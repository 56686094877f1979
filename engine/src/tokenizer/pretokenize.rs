//! BPE pre-tokenizers: the regex lists llama.cpp selects by `tokenizer.ggml.pre`
//! (`llm_tokenizer_bpe` constructor), written as hand splitters over code points.
//!
//! As in llama.cpp's `unicode_regex_split`, the regexes run in sequence: each one
//! splits every fragment the previous one produced, and both the matches and the
//! text between them become fragments ("isolated" splitting). A fragment's edges
//! act as the text's edges for the next regex (lookahead sees nothing past them).

use super::unicode::{cpt_flags, CptFlags};

/// One regex of a pre-tokenizer list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)` (+ `\s+`)
    Gpt2,
    /// `(?:'[sS]|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,K}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    /// with K = 3 (LLAMA3) or 1 (QWEN2).
    Llama3 { max_digits: usize },
    /// `\p{N}`: every number code point alone.
    EachNumber,
    /// `\p{N}+`
    NumberRuns,
    /// `[\p{P}\$\+<=>\^~\|]+`
    PunctRuns,
    /// `[0-9][0-9][0-9]`
    AsciiDigitTriples,
}

/// The regex list of a pre-tokenizer family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreType {
    Default,
    Llama3,
    Qwen2,
    /// smollm, starcoder, refact, command-r, codeshell, exaone, minerva, mellum2
    Starcoder,
    Gpt2,
}

impl PreType {
    pub fn splits(self) -> &'static [Split] {
        match self {
            PreType::Default => {
                &[Split::PunctRuns, Split::Gpt2, Split::NumberRuns, Split::AsciiDigitTriples]
            }
            PreType::Llama3 => &[Split::Llama3 { max_digits: 3 }],
            PreType::Qwen2 => &[Split::Llama3 { max_digits: 1 }],
            PreType::Starcoder => &[Split::EachNumber, Split::Gpt2],
            PreType::Gpt2 => &[Split::Gpt2],
        }
    }
}

/// Per-`pre` settings as llama.cpp's `llama_vocab::impl::load` assigns them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreConfig {
    pub pre: PreType,
    pub ignore_merges: bool,
    /// Default for `add_bos` before `tokenizer.ggml.add_bos_token` overrides it.
    pub add_bos: bool,
    pub clean_spaces: bool,
}

/// `None` for a `pre` value whose regexes kiln does not implement.
pub fn pre_config(pre: &str) -> Option<PreConfig> {
    let c = |pre, ignore_merges, add_bos, clean_spaces| {
        Some(PreConfig { pre, ignore_merges, add_bos, clean_spaces })
    };
    match pre {
        "" | "default" => c(PreType::Default, false, false, true),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2"
        | "jina-v5-nano" => c(PreType::Llama3, true, true, true),
        "dbrx" | "smaug-bpe" => c(PreType::Llama3, false, false, true),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "hunyuan" | "solar-open" => {
            c(PreType::Qwen2, false, false, false)
        }
        "stablelm2" | "megrez" => c(PreType::Qwen2, false, false, true),
        "smollm" | "command-r" => c(PreType::Starcoder, false, false, false),
        "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
            c(PreType::Starcoder, false, false, true)
        }
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de" | "a.x-4.0"
        | "mellum" | "modern-bert" | "mpt" | "olmo" | "jais" | "exaone4" => c(PreType::Gpt2, false, false, true),
        "trillion" | "granite-docling" => c(PreType::Gpt2, false, false, false),
        _ => None,
    }
}

/// Splits `text` into pre-tokens (still plain UTF-8, not byte-encoded).
pub fn pre_split(text: &str, pre: PreType) -> Vec<&str> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut frags: Vec<(usize, usize)> = vec![(0, chars.len())];
    for split in pre.splits() {
        let mut out = Vec::with_capacity(frags.len() * 2);
        for &(a, b) in &frags {
            let view = Frag { chars: &chars, ini: a, end: b };
            let mut adder = Adder { prev: a, out: &mut out };
            view.split(*split, &mut adder);
            adder.add(b);
        }
        frags = out;
    }
    let byte_at = |i: usize| chars.get(i).map_or(text.len(), |&(o, _)| o);
    frags.into_iter().map(|(a, b)| &text[byte_at(a)..byte_at(b)]).collect()
}

/// Collects fragment ends, dropping empty ones (llama.cpp's `_add_token`).
struct Adder<'o> {
    prev: usize,
    out: &'o mut Vec<(usize, usize)>,
}

impl Adder<'_> {
    fn add(&mut self, end: usize) {
        if end > self.prev {
            self.out.push((self.prev, end));
        }
        self.prev = self.prev.max(end);
    }
}

/// A fragment `[ini, end)` of the code point array; reads outside it see nothing.
struct Frag<'c> {
    chars: &'c [(usize, char)],
    ini: usize,
    end: usize,
}

impl Frag<'_> {
    fn cpt(&self, pos: usize) -> Option<char> {
        (self.ini <= pos && pos < self.end).then(|| self.chars[pos].1)
    }

    fn flags(&self, pos: usize) -> CptFlags {
        self.cpt(pos).map(cpt_flags).unwrap_or_default()
    }

    fn split(&self, split: Split, add: &mut Adder) {
        match split {
            Split::Gpt2 => self.gpt2(add),
            Split::Llama3 { max_digits } => self.llama3(add, max_digits),
            Split::EachNumber => self.isolate_runs(add, |f, _| f.number, false),
            Split::NumberRuns => self.isolate_runs(add, |f, _| f.number, true),
            Split::PunctRuns => {
                self.isolate_runs(add, |f, c| f.punctuation || "$+<=>^~|".contains(c), true)
            }
            Split::AsciiDigitTriples => self.ascii_digit_triples(add),
        }
    }

    /// Isolates code points matching `pred`, one by one or as maximal runs.
    fn isolate_runs(&self, add: &mut Adder, pred: impl Fn(CptFlags, char) -> bool, runs: bool) {
        let mut pos = self.ini;
        while pos < self.end {
            let c = self.chars[pos].1;
            if pred(cpt_flags(c), c) {
                add.add(pos);
                pos += 1;
                while runs && pos < self.end && pred(cpt_flags(self.chars[pos].1), self.chars[pos].1) {
                    pos += 1;
                }
                add.add(pos);
            } else {
                pos += 1;
            }
        }
    }

    fn ascii_digit_triples(&self, add: &mut Adder) {
        let digit = |p: usize| self.cpt(p).is_some_and(|c| c.is_ascii_digit());
        let mut pos = self.ini;
        while pos < self.end {
            if digit(pos) && digit(pos + 1) && digit(pos + 2) {
                add.add(pos);
                pos += 3;
                add.add(pos);
            } else {
                pos += 1;
            }
        }
    }

    /// Counts whitespace from `pos`; returns (count, end of the last `\r`/`\n` + 1).
    fn whitespace_run(&self, pos: usize) -> (usize, Option<usize>) {
        let mut n = 0;
        let mut last_nl = None;
        while self.flags(pos + n).whitespace {
            if matches!(self.cpt(pos + n), Some('\r' | '\n')) {
                last_nl = Some(pos + n + 1);
            }
            n += 1;
        }
        (n, last_nl)
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d` at `pos` (case-folded when `fold`): its length.
    fn contraction(&self, pos: usize, fold: bool) -> Option<usize> {
        if self.cpt(pos) != Some('\'') || pos + 1 >= self.end {
            return None;
        }
        let low = |p: usize| self.cpt(p).map(|c| if fold { c.to_ascii_lowercase() } else { c });
        let n1 = low(pos + 1);
        if matches!(n1, Some('s' | 't' | 'm' | 'd')) {
            return Some(2);
        }
        if pos + 2 < self.end {
            let n2 = low(pos + 2);
            if matches!((n1, n2), (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l'))) {
                return Some(3);
            }
        }
        None
    }

    /// llama.cpp's `unicode_regex_split_custom_gpt2`.
    fn gpt2(&self, add: &mut Adder) {
        let mut pos = self.ini;
        while pos < self.end {
            let c = self.chars[pos].1;
            if let Some(n) = self.contraction(pos, false) {
                pos += n;
                add.add(pos);
                continue;
            }
            let mut f2 = if c == ' ' { self.flags(pos + 1) } else { cpt_flags(c) };
            let classes: [fn(&CptFlags) -> bool; 3] = [
                |f| f.letter,
                |f| f.number,
                |f| !(f.whitespace || f.letter || f.number) && f.defined,
            ];
            if let Some(class) = classes.iter().find(|class| class(&f2)) {
                pos += usize::from(c == ' ');
                while class(&f2) {
                    pos += 1;
                    f2 = self.flags(pos);
                }
                add.add(pos);
                continue;
            }
            let (n_ws, _) = self.whitespace_run(pos);
            if n_ws > 1 && self.cpt(pos + n_ws).is_some() {
                // \s+(?!\S): leave the last space to prefix the next word
                pos += n_ws - 1;
            } else if n_ws > 0 {
                pos += n_ws;
            } else {
                pos += 1;
            }
            add.add(pos);
        }
    }

    /// llama.cpp's `unicode_regex_split_custom_llama3`, digits grouped by `max_digits`.
    fn llama3(&self, add: &mut Adder, max_digits: usize) {
        let mut pos = self.ini;
        while pos < self.end {
            let c = self.chars[pos].1;
            let flags = cpt_flags(c);
            if let Some(n) = self.contraction(pos, true) {
                pos += n;
                add.add(pos);
                continue;
            }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !(c == '\r' || c == '\n' || flags.number) && (flags.letter || self.flags(pos + 1).letter) {
                pos += 1;
                while self.flags(pos).letter {
                    pos += 1;
                }
                add.add(pos);
                continue;
            }
            // \p{N}{1,K}
            if flags.number {
                let mut ini = pos;
                while self.flags(pos).number {
                    pos += 1;
                    if pos - ini >= max_digits {
                        add.add(pos);
                        ini = pos;
                    }
                }
                add.add(pos);
                continue;
            }
            // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
            let mut f2 = if c == ' ' { self.flags(pos + 1) } else { flags };
            if !(f2.whitespace || f2.letter || f2.number) && flags.defined {
                pos += usize::from(c == ' ');
                while !(f2.whitespace || f2.letter || f2.number) && f2.defined {
                    pos += 1;
                    f2 = self.flags(pos);
                }
                while matches!(self.cpt(pos), Some('\r' | '\n')) {
                    pos += 1;
                }
                add.add(pos);
                continue;
            }
            let (n_ws, last_nl) = self.whitespace_run(pos);
            if let Some(end) = last_nl {
                pos = end; // \s*[\r\n]+
            } else if n_ws > 1 && self.cpt(pos + n_ws).is_some() {
                pos += n_ws - 1; // \s+(?!\S)
            } else if n_ws > 0 {
                pos += n_ws;
            } else {
                pos += 1;
            }
            add.add(pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_keeps_space_before_words_and_last_space_of_runs() {
        let got = pre_split("Hello  world's 42!!\n", PreType::Gpt2);
        assert_eq!(got, vec!["Hello", " ", " world", "'s", " 42", "!!", "\n"]);
    }

    #[test]
    fn starcoder_isolates_each_digit_first() {
        let got = pre_split("a 123", PreType::Starcoder);
        assert_eq!(got, vec!["a", " ", "1", "2", "3"]);
    }

    #[test]
    fn llama3_groups_three_digits_and_newlines() {
        let got = pre_split("x 12345\n\n  y", PreType::Llama3);
        assert_eq!(got, vec!["x", " ", "123", "45", "\n\n", " ", " y"]);
        let got = pre_split("I'VE 12", PreType::Qwen2);
        assert_eq!(got, vec!["I", "'VE", " ", "1", "2"]);
    }

    #[test]
    fn default_splits_punctuation_then_digit_triples() {
        let got = pre_split("a+b 12345", PreType::Default);
        assert_eq!(got, vec!["a", "+", "b", " ", "123", "45"]);
    }
}
