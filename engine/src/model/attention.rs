//! Causal multi-head attention over the KV cache, with GQA and an optional sliding window.

use kiln_kernels::ThreadPool;

use super::kv::KvCache;
use super::ops::{axpy, dot};

#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub head_dim_v: usize,
    /// Multiplies q·k (1.0 when the architecture scales Q itself).
    pub scale: f32,
    /// A query at position p sees keys at p' with p − p' < window.
    pub window: Option<usize>,
}

/// A raw pointer that threads write through at disjoint offsets.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

/// `out[i][h] = softmax(q[i][h] · K[..=p]ᵀ · scale) · V[..=p]` where token i sits at `start + i`.
/// q: [n_tok][n_head·head_dim]; out: [n_tok][n_head·head_dim_v]. The cache must already hold
/// the keys and values of positions up to `start + n_tok − 1` for this layer.
pub fn attention(pool: &ThreadPool, cache: &KvCache, layer: usize, start: usize, n_tok: usize, q: &[f32], out: &mut [f32], sh: &AttnShape) {
    let (hd, hdv) = (sh.head_dim, sh.head_dim_v);
    let group = sh.n_head / sh.n_kv_head;
    let (kw, vw) = (sh.n_kv_head * hd, sh.n_kv_head * hdv);
    let keys = cache.keys(layer);
    let values = cache.values(layer);
    let items = n_tok * sh.n_head;
    let out_ptr = SharedMut(out.as_mut_ptr());
    assert!(out.len() >= n_tok * sh.n_head * hdv && q.len() >= n_tok * sh.n_head * hd);
    pool.run(|t, nt| {
        let out_ptr = out_ptr;
        let mut item = t;
        while item < items {
            let (i, h) = (item / sh.n_head, item % sh.n_head);
            let pos = start + i;
            let first = sh.window.map_or(0, |w| (pos + 1).saturating_sub(w));
            let kvh = h / group;
            let qh = &q[i * sh.n_head * hd + h * hd..][..hd];
            // SAFETY: every (i, h) item writes its own disjoint hdv-wide slice of `out`.
            let o = unsafe { std::slice::from_raw_parts_mut(out_ptr.0.add(i * sh.n_head * hdv + h * hdv), hdv) };
            o.iter_mut().for_each(|v| *v = 0.0);
            // Online softmax: one pass, running max and sum, no score buffer.
            let (mut m, mut s) = (f32::NEG_INFINITY, 0.0f32);
            for p in first..=pos {
                let slot = cache.slot(layer, p);
                let k = &keys[slot * kw + kvh * hd..][..hd];
                let score = dot(qh, k) * sh.scale;
                if score > m {
                    let c = (m - score).exp();
                    s *= c;
                    o.iter_mut().for_each(|v| *v *= c);
                    m = score;
                }
                let w = (score - m).exp();
                s += w;
                axpy(o, w, &values[slot * vw + kvh * hdv..][..hdv]);
            }
            let inv = 1.0 / s;
            o.iter_mut().for_each(|v| *v *= inv);
            item += nt;
        }
    });
}
