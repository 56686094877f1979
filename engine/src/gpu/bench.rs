//! `kiln bench --device gpu`: the llama-bench measurement (engine/src/bench.rs) on a GPU session.

use std::sync::Arc;
use std::time::Instant;

use super::{GpuModel, GpuSession};
use crate::bench::{check_fits, context_and_prompt, peak_rss_bytes, rate, tokens, BenchResult};
use crate::error::Result;
use crate::model::exec::Outputs;

/// Prompt processing of `pp` tokens and generation of `tg` tokens, each `reps` times after one
/// warm-up, on one session whose cache is emptied between runs down to `depth` untimed context
/// tokens. `threads` reports 0.
pub fn run(gpu: &Arc<GpuModel>, name: &str, pp: usize, tg: usize, depth: usize, reps: usize) -> Result<BenchResult> {
    let reps = reps.max(1);
    let n_vocab = gpu.model().info().n_vocab;
    check_fits(gpu.model().info().n_ctx_train.max(1), depth, pp, tg)?;
    let (context, prompt) = context_and_prompt(n_vocab, depth, pp);
    let gen = tokens(n_vocab, tg.max(1));
    let mut session = GpuSession::new(gpu, context.len() + prompt.len().max(gen.len()))?;
    let mut logits = Vec::new();
    if !context.is_empty() {
        session.eval(&context, Outputs::Last, &mut logits)?;
    }
    let mut pp_secs = Vec::new();
    for r in 0..=reps {
        session.truncate(context.len());
        logits.clear();
        let t = Instant::now();
        session.eval(&prompt, Outputs::Last, &mut logits)?;
        if r > 0 {
            pp_secs.push(t.elapsed().as_secs_f64());
        }
    }
    let mut tg_secs = Vec::new();
    for r in 0..=reps {
        session.truncate(context.len());
        let t = Instant::now();
        for &tok in &gen {
            logits.clear();
            session.eval(&[tok], Outputs::Last, &mut logits)?;
        }
        if r > 0 {
            tg_secs.push(t.elapsed().as_secs_f64());
        }
    }
    Ok(BenchResult {
        model: name.to_string(),
        threads: 0,
        depth,
        pp: rate(prompt.len(), &pp_secs),
        tg: rate(gen.len(), &tg_secs),
        peak_rss_bytes: peak_rss_bytes(),
        model_bytes: gpu.model().info().file_size,
        // The KV cache lives in GPU memory.
        kv_cache_bytes: 0,
        stream: None,
    })
}
