//! Steps every decoder-only architecture shares: checking and embedding the batch, storing
//! K/V and attending per sequence, and the output head.

use super::attention::{attention, AttnShape};
use super::exec::{grow, Exec, OutputKind, Outputs, SeqInput};
use super::linear::Linear;
use super::ops::{for_rows, for_rows2, rms_norm, Rope};
use crate::error::{EngineError, Result};

/// Tokens the gated FFN takes at a time. Its gate and up products, [tokens][n_ff] each, are the
/// largest batch scratch (SmolLM2: 1.5 MB for a batch of 128, the synthetic 1.1B: 5.8 MB), so a
/// full batch goes through in halves and keeps half of that. Each token's outputs are the same
/// bits in any batch (`kiln_kernels` tests `rows_do_not_depend_on_batch_size`).
pub const FFN_BATCH: usize = 64;

/// Rows of the gate and up buffers a batch of `n` tokens needs (see [`FFN_BATCH`]).
pub fn ffn_rows(n: usize) -> usize {
    n.min(FFN_BATCH)
}

/// The gated FFN over the first `n` rows (`e` wide) of the scratch's `xn`, in place:
/// xn[t] = W_down · act(W_gate·xn[t], W_up·xn[t]), [`FFN_BATCH`] rows at a time (a chunk's rows
/// are quantized before its down product overwrites them). `act(gate, up)` leaves its result
/// in `gate`; gate and up must hold [`ffn_rows`]`(n)` rows of `ff`.
pub fn gated_ffn(ex: &mut Exec, data: &[u8], [gate, up, down]: [&Linear; 3], n: usize, e: usize, ff: usize, act: impl Fn(&mut [f32], &[f32]) + Sync) {
    let Exec { pool, s } = ex;
    for t0 in (0..n).step_by(FFN_BATCH) {
        let m = FFN_BATCH.min(n - t0);
        let rows = t0 * e..(t0 + m) * e;
        s.acts.matmuls(pool, data, &s.xn[rows.clone()], m, &mut [(gate, &mut s.gate[..m * ff]), (up, &mut s.up[..m * ff])]);
        let u = &s.up;
        for_rows(pool, m, &mut s.gate, ff, |r0, g| act(g, &u[r0 * ff..][..g.len()]));
        s.acts.matmul(pool, data, down, &s.gate[..m * ff], m, &mut s.xn[rows]);
    }
}

/// Checks every token id and reserves cache room for every sequence, before any work is done,
/// so a bad batch changes nothing. Returns the batch's total token count.
pub fn begin(seqs: &mut [SeqInput], n_vocab: usize) -> Result<usize> {
    let mut n = 0;
    for s in seqs.iter_mut() {
        if let Some(&bad) = s.tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(EngineError::InvalidRequest(format!("token id {bad} is outside the vocabulary of {n_vocab}")));
        }
        s.cache.reserve(s.tokens.len())?;
        n += s.tokens.len();
    }
    Ok(n)
}

/// `x[row] = token_embd[token] · scale` for every token of the batch, in order.
pub fn embed(data: &[u8], tok_embd: &Linear, seqs: &[SeqInput], x: &mut [f32], scale: f32) -> Result<()> {
    let n_embd = tok_embd.cols;
    let mut row = 0;
    for s in seqs {
        for &t in s.tokens {
            let dst = &mut x[row * n_embd..(row + 1) * n_embd];
            tok_embd.row(data, t as usize, dst)?;
            if scale != 1.0 {
                dst.iter_mut().for_each(|v| *v *= scale);
            }
            row += 1;
        }
    }
    Ok(())
}

/// Per sequence: RoPE on Q and K at each token's position, K/V into the cache, then attention.
/// q: [n][n_head·head_dim], k/v: [n][n_head_kv·head_dim(_v)], out: [n][n_head·head_dim_v].
#[allow(clippy::too_many_arguments)]
pub fn rope_store_attend(ex: &mut Exec, seqs: &mut [SeqInput], layer: usize, rope: &Rope, sh: &AttnShape, q: &mut [f32], k: &mut [f32], v: &[f32], out: &mut [f32]) {
    let (qw, kw, vw) = (sh.n_head * sh.head_dim, sh.n_kv_head * sh.head_dim, sh.n_kv_head * sh.head_dim_v);
    let ow = sh.n_head * sh.head_dim_v;
    let mut row = 0;
    for s in seqs.iter_mut() {
        let start = s.cache.len();
        let n = s.tokens.len();
        let (qs, ks) = (&mut q[row * qw..(row + n) * qw], &mut k[row * kw..(row + n) * kw]);
        for_rows2(&ex.pool, n, qs, qw, ks, kw, |i0, qs, ks| {
            for (i, (q, k)) in qs.chunks_exact_mut(qw).zip(ks.chunks_exact_mut(kw)).enumerate() {
                rope.apply_all(&mut [q, k], sh.head_dim, start + i0 + i);
            }
        });
        for i in 0..n {
            let r = row + i;
            s.cache.store(layer, start + i, &k[r * kw..(r + 1) * kw], &v[r * vw..(r + 1) * vw]);
        }
        attention(&ex.pool, s.cache, layer, start, n, &q[row * qw..(row + n) * qw], &mut out[row * ow..(row + n) * ow], sh);
        row += n;
    }
}

#[allow(clippy::too_many_arguments)]
/// Output head: the rows that produce output are normed with `norm` and, for logits,
/// projected by `output`; one row per output is appended to `out`. Then the caches advance.
pub fn finish(data: &[u8], ex: &mut Exec, seqs: &mut [SeqInput], norm: &[f32], eps: f32, output: &Linear, kind: OutputKind, out: &mut Vec<f32>) {
    let n_embd = norm.len();
    let s = &mut ex.s;
    let n_out: usize = seqs.iter().map(|s| s.n_outputs()).sum();
    grow(&mut s.rows, n_out * n_embd);
    let (mut row, mut dst) = (0, 0);
    for q in seqs.iter() {
        let n = q.tokens.len();
        let first = match q.outputs {
            Outputs::Last => n.saturating_sub(1),
            Outputs::All => 0,
        };
        for r in row + first..row + n {
            s.rows[dst * n_embd..(dst + 1) * n_embd].copy_from_slice(&s.x[r * n_embd..(r + 1) * n_embd]);
            rms_norm(&mut s.rows[dst * n_embd..(dst + 1) * n_embd], norm, eps);
            dst += 1;
        }
        row += n;
    }
    let rows = &s.rows[..n_out * n_embd];
    match kind {
        OutputKind::Hidden => out.extend_from_slice(rows),
        OutputKind::Logits => {
            let base = out.len();
            out.resize(base + n_out * output.rows, 0.0);
            s.acts.matmul(&ex.pool, data, output, rows, n_out, &mut out[base..]);
        }
    }
    for q in seqs.iter_mut() {
        q.cache.advance(q.tokens.len());
    }
}
