//! Causal multi-head attention over the KV cache, with GQA and an optional sliding window.
//!
//! Each (token, head) is one work item: scores q·k for every visible position into a
//! per-thread buffer, softmax over them, then the weighted sum of values. The inner loops
//! are compiled twice, for AVX2+FMA (picked at run time) and for the baseline target.

use std::cell::RefCell;

use kiln_kernels::ThreadPool;

use super::kv::KvCache;
use super::ops::exp_neg as exp;

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

thread_local! {
    /// Scores of one work item; grows to the longest context seen, then stays.
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `out[i][h] = softmax(q[i][h] · K[..=p]ᵀ · scale) · V[..=p]` where token i sits at `start + i`.
/// q: [n_tok][n_head·head_dim]; out: [n_tok][n_head·head_dim_v]. The cache must already hold
/// the keys and values of positions up to `start + n_tok − 1` for this layer.
#[allow(clippy::too_many_arguments)]
pub fn attention(pool: &ThreadPool, cache: &KvCache, layer: usize, start: usize, n_tok: usize, q: &[f32], out: &mut [f32], sh: &AttnShape) {
    let (hd, hdv) = (sh.head_dim, sh.head_dim_v);
    let items = n_tok * sh.n_head;
    let out_ptr = SharedMut(out.as_mut_ptr());
    assert!(out.len() >= n_tok * sh.n_head * hdv && q.len() >= n_tok * sh.n_head * hd);
    let avx2 = has_avx2();
    pool.run(|t, nt| {
        // Capture the whole wrapper (Sync), not its raw-pointer field.
        #[allow(clippy::redundant_locals)]
        let out_ptr = out_ptr;
        SCORES.with(|buf| {
            let mut scores = buf.borrow_mut();
            let mut item = t;
            while item < items {
                let (i, h) = (item / sh.n_head, item % sh.n_head);
                let qh = &q[i * sh.n_head * hd + h * hd..][..hd];
                // SAFETY: every (i, h) item writes its own disjoint hdv-wide slice of `out`.
                let o = unsafe { std::slice::from_raw_parts_mut(out_ptr.0.add(i * sh.n_head * hdv + h * hdv), hdv) };
                let pos = start + i;
                let first = sh.window.map_or(0, |w| (pos + 1).saturating_sub(w));
                if scores.len() < pos + 1 - first {
                    scores.resize(pos + 1 - first, 0.0);
                }
                let item_ctx = Item { cache, layer, kvh: h / (sh.n_head / sh.n_kv_head), first, pos, sh };
                #[cfg(target_arch = "x86_64")]
                if avx2 {
                    // SAFETY: AVX2 and FMA were detected at run time.
                    unsafe { attend_avx2(&item_ctx, qh, &mut scores, o) };
                    item += nt;
                    continue;
                }
                let _ = avx2;
                attend(&item_ctx, qh, &mut scores, o);
                item += nt;
            }
        });
    });
}

struct Item<'a> {
    cache: &'a KvCache,
    layer: usize,
    kvh: usize,
    first: usize,
    pos: usize,
    sh: &'a AttnShape,
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_avx2(it: &Item, q: &[f32], scores: &mut [f32], o: &mut [f32]) {
    attend(it, q, scores, o)
}

#[inline(always)]
fn attend(it: &Item, q: &[f32], scores: &mut [f32], o: &mut [f32]) {
    let sh = it.sh;
    let (hd, hdv) = (sh.head_dim, sh.head_dim_v);
    let (kw, vw) = (sh.n_kv_head * hd, sh.n_kv_head * hdv);
    let keys = it.cache.keys(it.layer);
    let values = it.cache.values(it.layer);
    let n = it.pos + 1 - it.first;
    let scores = &mut scores[..n];
    let mut max = f32::NEG_INFINITY;
    for (j, s) in scores.iter_mut().enumerate() {
        let slot = it.cache.slot(it.layer, it.first + j);
        *s = dot(q, &keys[slot * kw + it.kvh * hd..][..hd]) * sh.scale;
        max = max.max(*s);
    }
    let mut sum = 0.0f32;
    for s in scores.iter_mut() {
        *s = exp(*s - max);
        sum += *s;
    }
    let inv = 1.0 / sum;
    o.iter_mut().for_each(|v| *v = 0.0);
    for (j, &s) in scores.iter().enumerate() {
        let slot = it.cache.slot(it.layer, it.first + j);
        let w = s * inv;
        let v = &values[slot * vw + it.kvh * hdv..][..hdv];
        for (a, &b) in o.iter_mut().zip(v) {
            *a += w * b;
        }
    }
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Sixteen independent accumulators: the compiler turns them into two vector registers.
    let mut acc = [0.0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..16 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

