//! llama-bench-style measurement: prompt processing (pp) and token generation (tg) rates.

use std::time::Instant;

use crate::error::Result;
use crate::model::exec::{OutputKind, Outputs};
use crate::model::Model;

#[derive(Clone, Debug, serde::Serialize)]
pub struct Rate {
    pub tokens: usize,
    pub tok_s_mean: f64,
    pub tok_s_sd: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchResult {
    pub model: String,
    pub threads: usize,
    pub pp: Rate,
    pub tg: Rate,
    pub peak_rss_bytes: u64,
    /// The GGUF file's size and the largest KV cache the runs held: the performance goal keeps
    /// peak RSS within (model_bytes + kv_cache_bytes) · 1.1.
    pub model_bytes: u64,
    pub kv_cache_bytes: u64,
}

/// Mean and standard deviation of the rates `tokens / secs[i]`.
pub(crate) fn rate(tokens: usize, secs: &[f64]) -> Rate {
    let rates: Vec<f64> = secs.iter().map(|s| tokens as f64 / s.max(1e-9)).collect();
    let n = rates.len().max(1) as f64;
    let mean = rates.iter().sum::<f64>() / n;
    let var = rates.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    Rate { tokens, tok_s_mean: mean, tok_s_sd: var.sqrt() }
}

/// Deterministic pseudo-random prompt tokens (llama-bench also uses random tokens).
pub(crate) fn tokens(n_vocab: usize, n: usize) -> Vec<u32> {
    let vocab = n_vocab as u64;
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % vocab) as u32
        })
        .collect()
}

/// Prompt processing of `pp` tokens and generation of `tg` tokens, each `reps` times after
/// one warm-up; a fresh context each time, as llama-bench does.
pub fn run(model: &Model, name: &str, pp: usize, tg: usize, reps: usize) -> Result<BenchResult> {
    let reps = reps.max(1);
    let prompt = tokens(model.info().n_vocab, pp.max(1));
    let mut logits = Vec::new();
    let mut pp_secs = Vec::new();
    let mut kv_bytes = 0;
    for r in 0..=reps {
        let mut cache = model.new_cache(prompt.len());
        logits.clear();
        let t = Instant::now();
        model.eval(&mut cache, &prompt, Outputs::Last, OutputKind::Logits, &mut logits)?;
        if r > 0 {
            pp_secs.push(t.elapsed().as_secs_f64());
        }
        kv_bytes = kv_bytes.max(cache.bytes());
    }
    let mut tg_secs = Vec::new();
    let gen = tokens(model.info().n_vocab, tg.max(1));
    for r in 0..=reps {
        let mut cache = model.new_cache(gen.len() + 1);
        let t = Instant::now();
        for &tok in &gen {
            logits.clear();
            model.eval(&mut cache, &[tok], Outputs::Last, OutputKind::Logits, &mut logits)?;
        }
        if r > 0 {
            tg_secs.push(t.elapsed().as_secs_f64());
        }
        kv_bytes = kv_bytes.max(cache.bytes());
    }
    Ok(BenchResult {
        model: name.to_string(),
        threads: model.info().threads,
        pp: rate(prompt.len(), &pp_secs),
        tg: rate(gen.len(), &tg_secs),
        peak_rss_bytes: peak_rss_bytes(),
        model_bytes: model.info().file_size,
        kv_cache_bytes: kv_bytes as u64,
    })
}

/// The process's peak resident set size (VmHWM), 0 where /proc is not available.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()))
        })
        .map_or(0, |kb| kb * 1024)
}
