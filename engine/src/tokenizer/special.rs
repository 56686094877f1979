//! Special tokens: end-of-generation detection by text, and llama.cpp's
//! `tokenizer_st_partition`, which cuts the input around the literal strings of
//! CONTROL, USER_DEFINED and UNKNOWN tokens before any model-specific tokenizing.

use std::collections::BTreeSet;

use super::vocab::{attr, Vocab};

/// End-of-turn texts llama.cpp uses to find `special_eot_id` when the file has none.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
    "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>",
];

/// Texts that always end generation (llama.cpp's `special_eog_ids` list).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<｜end▁of▁sentence｜>", "[e~[",
];

/// FIM tokens: llama.cpp marks them CONTROL; pad/repo/file-sep also end generation.
const FIM_PRE: &[&str] = &["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"];
const FIM_SUF: &[&str] = &["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"];
const FIM_MID: &[&str] = &["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"];
const FIM_PAD: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP: &[&str] = &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"];
const FIM_SEP: &[&str] = &["<|file_sep|>"];

pub struct SpecialIds {
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub eos: Option<u32>,
}

/// Fills missing EOT/EOM ids by text, marks the tokens llama.cpp forces to
/// CONTROL, and returns the end-of-generation set. Scans in id order, so where
/// several texts match, the lowest id wins (llama.cpp's order is a hash order).
pub fn detect_eog(vocab: &mut Vocab, ids: &mut SpecialIds) -> BTreeSet<u32> {
    let mut eog = BTreeSet::new();
    let mut fim: [Option<u32>; 6] = [None; 6];
    let fim_lists = [FIM_PRE, FIM_SUF, FIM_MID, FIM_PAD, FIM_REP, FIM_SEP];
    for id in 0..vocab.len() as u32 {
        let text = vocab.text(id);
        let mut force_control = false;
        if ids.eot.is_none() && EOT_TEXTS.contains(&text) {
            ids.eot = Some(id);
            force_control = true;
        }
        if ids.eom.is_none() && text == "<|eom_id|>" {
            ids.eom = Some(id);
            force_control = true;
        }
        for (slot, list) in fim.iter_mut().zip(fim_lists) {
            if slot.is_none() && list.contains(&text) {
                *slot = Some(id);
                force_control = true;
            }
        }
        if EOG_TEXTS.contains(&text) {
            eog.insert(id);
            force_control = true;
        }
        let named_unused = text.contains("unused");
        if force_control {
            vocab.attrs[id as usize] |= attr::CONTROL;
        }
        // llama.cpp: control tokens named "unused" are unused
        if vocab.attrs[id as usize] & attr::CONTROL != 0 && named_unused {
            vocab.attrs[id as usize] |= attr::UNUSED;
        }
    }
    eog.extend(fim[3..].iter().flatten());
    eog.extend([ids.eos, ids.eot, ids.eom].into_iter().flatten());
    eog
}

/// Ids of CONTROL, USER_DEFINED and UNKNOWN tokens, longest text first (ties by id).
pub fn special_cache(vocab: &Vocab) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..vocab.len() as u32)
        .filter(|&id| vocab.has_attr(id, attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN))
        .collect();
    ids.sort_by_key(|&id| std::cmp::Reverse(vocab.text(id).len()));
    ids
}

/// A piece of the input: a special token already recognised, or raw text
/// (a byte range of the input) still to tokenize.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment {
    Token(u32),
    Raw(usize, usize),
}

/// `tokenizer_st_partition`: USER_DEFINED tokens always match; CONTROL and
/// UNKNOWN ones only with `parse_special`. Longer tokens are cut out first.
pub fn partition(vocab: &Vocab, cache: &[u32], text: &str, parse_special: bool) -> Vec<Fragment> {
    let mut frags = if text.is_empty() { vec![] } else { vec![Fragment::Raw(0, text.len())] };
    for &id in cache {
        let a = vocab.attr(id);
        if !parse_special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
            continue;
        }
        let special = vocab.text(id);
        if !frags.iter().any(|f| matches!(*f, Fragment::Raw(s, e) if text[s..e].contains(special))) {
            continue;
        }
        let mut out = Vec::with_capacity(frags.len() + 2);
        for f in frags {
            match f {
                Fragment::Raw(start, end) => split_raw(text, start, end, special, id, a, &mut out),
                tok => out.push(tok),
            }
        }
        frags = out;
    }
    frags
}

fn split_raw(text: &str, mut start: usize, end: usize, special: &str, id: u32, a: u32, out: &mut Vec<Fragment>) {
    let bytes = text.as_bytes();
    while let Some(rel) = text[start..end].find(special) {
        let m = start + rel;
        let mut left_end = m;
        if a & attr::LSTRIP != 0 {
            while left_end > start && is_c_space(bytes[left_end - 1]) {
                left_end -= 1;
            }
        }
        if left_end > start {
            out.push(Fragment::Raw(start, left_end));
        }
        out.push(Fragment::Token(id));
        start = m + special.len();
        if a & attr::RSTRIP != 0 {
            while start < end && is_c_space(bytes[start]) {
                start += 1;
            }
        }
    }
    if start < end {
        out.push(Fragment::Raw(start, end));
    }
}

/// C's `isspace` in the "C" locale (includes `\v`, unlike `u8::is_ascii_whitespace`).
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}
