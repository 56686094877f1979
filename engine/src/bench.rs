//! llama-bench-style measurement: prompt processing (pp) and token generation (tg) rates.

use std::time::Instant;

use crate::error::{EngineError, Result};
use crate::model::exec::{OutputKind, Outputs};
use crate::model::Model;

#[derive(Clone, Debug, serde::Serialize)]
pub struct Rate {
    pub tokens: usize,
    pub tok_s_mean: f64,
    pub tok_s_sd: f64,
    /// The fastest repetition: the statistic ../shared/tools/llamacpp-bench.py reports for
    /// llama.cpp, so `scripts/bench-vs-llamacpp` compares like with like.
    pub tok_s_best: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchResult {
    pub model: String,
    pub threads: usize,
    /// Tokens already in the context, not timed, before each pp and tg run (llama-bench's `-d`).
    pub depth: usize,
    pub pp: Rate,
    pub tg: Rate,
    pub peak_rss_bytes: u64,
    /// The GGUF file's size and the largest KV cache the runs held: the performance goal keeps
    /// peak RSS within (model_bytes + kv_cache_bytes) · 1.1.
    pub model_bytes: u64,
    pub kv_cache_bytes: u64,
    /// Decode against its own weight traffic read alone, alternately ([`stream`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamRate>,
}

/// Decode steps timed alternately with reads of the same step's weights alone (see
/// [`Model::weight_stream`]), so both see the same moments of the machine's memory.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StreamRate {
    /// Weight bytes a decode step reads, and the dispatches (barriers) they come in.
    pub bytes_per_token: u64,
    pub dispatches: usize,
    /// Decode steps timed, each followed by one read of the weights.
    pub tokens: usize,
    /// The weights read alone: bytes per second, and the tokens per second a decode step
    /// would reach if its products cost only their reads.
    pub read_gb_s: f64,
    pub read_tok_s: f64,
    /// Decode over the same alternation, and its share of `read_tok_s`.
    pub decode_tok_s: f64,
    pub share: f64,
}

/// Mean and standard deviation of the rates `tokens / secs[i]`.
pub(crate) fn rate(tokens: usize, secs: &[f64]) -> Rate {
    let rates: Vec<f64> = secs.iter().map(|s| tokens as f64 / s.max(1e-9)).collect();
    let n = rates.len().max(1) as f64;
    let mean = rates.iter().sum::<f64>() / n;
    let var = rates.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    let best = rates.iter().copied().fold(0.0, f64::max);
    Rate { tokens, tok_s_mean: mean, tok_s_sd: var.sqrt(), tok_s_best: best }
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

/// Rejects runs that do not fit the model's context (`n_ctx` tokens): `depth` context tokens
/// followed by `pp` prompt tokens or `tg` generated ones.
pub(crate) fn check_fits(n_ctx: usize, depth: usize, pp: usize, tg: usize) -> Result<()> {
    let more = pp.max(tg).max(1);
    match depth.checked_add(more) {
        Some(n) if n <= n_ctx => Ok(()),
        _ => Err(EngineError::InvalidRequest(format!("{depth} context tokens and then {more} more do not fit the model's context of {n_ctx}"))),
    }
}

/// The `depth` context tokens and the `pp` prompt tokens of a run, from one stream so they differ.
pub(crate) fn context_and_prompt(n_vocab: usize, depth: usize, pp: usize) -> (Vec<u32>, Vec<u32>) {
    let mut all = tokens(n_vocab, depth + pp.max(1));
    let prompt = all.split_off(depth);
    (all, prompt)
}

/// Prompt processing of `pp` tokens and generation of `tg` tokens, each `reps` times after
/// one warm-up; a fresh context each time, holding `depth` untimed tokens first (llama-bench's
/// `-d`; 0 is llama-bench's default).
pub fn run(model: &Model, name: &str, pp: usize, tg: usize, depth: usize, reps: usize) -> Result<BenchResult> {
    let reps = reps.max(1);
    check_fits(model.info().n_ctx_train.max(1), depth, pp, tg)?;
    let (context, prompt) = context_and_prompt(model.info().n_vocab, depth, pp);
    let mut logits = Vec::new();
    let fresh = |n: usize, logits: &mut Vec<f32>| -> Result<_> {
        let mut cache = model.new_cache(context.len() + n);
        if !context.is_empty() {
            model.eval(&mut cache, &context, Outputs::Last, OutputKind::Logits, logits)?;
        }
        Ok(cache)
    };
    let mut pp_secs = Vec::new();
    let mut kv_bytes = 0;
    for r in 0..=reps {
        let mut cache = fresh(prompt.len(), &mut logits)?;
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
        let mut cache = fresh(gen.len(), &mut logits)?;
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
        depth,
        pp: rate(prompt.len(), &pp_secs),
        tg: rate(gen.len(), &tg_secs),
        peak_rss_bytes: peak_rss_bytes(),
        model_bytes: model.info().file_size,
        kv_cache_bytes: kv_bytes as u64,
        stream: None,
    })
}

/// Rejects a [`stream`] run that does not fit the model's context: `depth` context tokens, then
/// an untimed step and `tokens` timed ones.
pub fn check_stream(model: &Model, depth: usize, tokens: usize) -> Result<()> {
    check_fits(model.info().n_ctx_train.max(1), depth, 0, tokens.max(1) + 1)
}

/// `tokens` decode steps after `depth` context tokens, each followed by a read of one step's
/// weights with no arithmetic ([`Model::read_weight_stream`]); one untimed pair first. A step
/// and a read take milliseconds, so each pair sees the same state of a VM's memory, whose speed
/// changes from one second to the next: the share is how close decode runs to what the memory
/// gives this engine's reads at that moment, on any machine.
pub fn stream(model: &Model, depth: usize, tokens: usize) -> Result<StreamRate> {
    check_stream(model, depth, tokens)?;
    let tokens = tokens.max(1);
    let weights = model.weight_stream()?;
    let (context, _) = context_and_prompt(model.info().n_vocab, depth, 0);
    let gen = self::tokens(model.info().n_vocab, tokens + 1);
    let mut cache = model.new_cache(depth + gen.len());
    let mut logits = Vec::new();
    if !context.is_empty() {
        model.eval(&mut cache, &context, Outputs::Last, OutputKind::Logits, &mut logits)?;
    }
    let (mut decode, mut read) = (0.0, 0.0);
    let mut sum = 0u64;
    for (i, &tok) in gen.iter().enumerate() {
        logits.clear();
        let t = Instant::now();
        model.eval(&mut cache, &[tok], Outputs::Last, OutputKind::Logits, &mut logits)?;
        let t1 = Instant::now();
        sum ^= model.read_weight_stream(&weights);
        if i > 0 {
            decode += (t1 - t).as_secs_f64();
            read += t1.elapsed().as_secs_f64();
        }
    }
    std::hint::black_box(sum);
    let (decode, read) = (decode.max(1e-9), read.max(1e-9));
    let bytes = weights.bytes();
    Ok(StreamRate {
        bytes_per_token: bytes,
        dispatches: weights.dispatches(),
        tokens,
        read_gb_s: (bytes as f64 * tokens as f64) / read / 1e9,
        read_tok_s: tokens as f64 / read,
        decode_tok_s: tokens as f64 / decode,
        share: read / decode,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_report_mean_spread_and_best() {
        let r = rate(100, &[1.0, 0.5, 2.0]);
        assert_eq!(r.tokens, 100);
        assert!((r.tok_s_mean - (100.0 + 200.0 + 50.0) / 3.0).abs() < 1e-9);
        assert_eq!(r.tok_s_best, 200.0);
        assert!(r.tok_s_sd > 0.0);
        let one = rate(10, &[2.0]);
        assert_eq!((one.tok_s_mean, one.tok_s_best, one.tok_s_sd), (5.0, 5.0, 0.0));
    }

    #[test]
    fn runs_longer_than_the_context_are_refused() {
        assert!(check_fits(2048, 16, 512, 128).is_ok());
        assert!(check_fits(2048, 0, 2048, 1).is_ok());
        let refused = |depth, pp, tg| match check_fits(2048, depth, pp, tg) {
            Err(EngineError::InvalidRequest(m)) => m,
            other => panic!("{depth}+{pp}/{tg}: {other:?}"),
        };
        assert_eq!(refused(1537, 512, 128), "1537 context tokens and then 512 more do not fit the model's context of 2048");
        assert!(refused(0, 1, 4096).contains("4096 more"));
        assert!(refused(usize::MAX, 512, 0).contains(&usize::MAX.to_string()));
    }

    #[test]
    fn depth_tokens_precede_the_prompt_and_stay_in_the_vocabulary() {
        let (context, prompt) = context_and_prompt(1000, 16, 32);
        assert_eq!((context.len(), prompt.len()), (16, 32));
        assert!(context.iter().chain(&prompt).all(|&t| t < 1000));
        // Without depth the prompt is what it always was, so runs stay comparable.
        let (none, plain) = context_and_prompt(1000, 0, 32);
        assert!(none.is_empty());
        assert_eq!(plain, tokens(1000, 32));
        assert_ne!(&prompt[..], &plain[..]);
    }
}
