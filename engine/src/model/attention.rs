//! Causal multi-head attention over the KV cache, with GQA and an optional sliding window.
//!
//! Each (token, head) is one work item: scores q·k for every visible position into a
//! per-thread buffer, softmax over them, then the weighted sum of values. The inner loops
//! are compiled twice, for AVX2+FMA (picked at run time) and for the baseline target.

use std::cell::RefCell;

use half::f16;

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
                attend(&item_ctx, qh, &mut scores, o, dot, axpy);
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
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn attend_avx2(it: &Item, q: &[f32], scores: &mut [f32], o: &mut [f32]) {
    // SAFETY: AVX2, FMA and F16C are enabled here.
    attend(it, q, scores, o, |a, b| unsafe { f16x86::dot(a, b) }, |o, w, v| unsafe { f16x86::axpy(o, w, v) })
}

#[inline(always)]
fn attend(it: &Item, q: &[f32], scores: &mut [f32], o: &mut [f32], dot: impl Fn(&[f32], &[f16]) -> f32, axpy: impl Fn(&mut [f32], f32, &[f16])) {
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
        axpy(o, w, &values[slot * vw + it.kvh * hdv..][..hdv]);
    }
}

/// `o += w·v`, v widened from f16.
#[inline(always)]
fn axpy(o: &mut [f32], w: f32, v: &[f16]) {
    for (a, &b) in o.iter_mut().zip(v) {
        *a += w * b.to_f32();
    }
}

/// q·k, k widened from f16.
#[inline(always)]
fn dot(a: &[f32], b: &[f16]) -> f32 {
    // Sixteen independent accumulators.
    let mut acc = [0.0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..16 {
            acc[l] += x[l] * y[l].to_f32();
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y.to_f32();
    }
    s
}

/// `dot` and `axpy` with F16C widening: the same lanes, the same unfused multiply-then-add and
/// the same final summation order, so both paths give the same bits.
#[cfg(target_arch = "x86_64")]
mod f16x86 {
    use half::f16;
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot(a: &[f32], b: &[f16]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr() as *const __m128i);
        let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 16 <= n {
            lo = _mm256_add_ps(lo, _mm256_mul_ps(_mm256_loadu_ps(pa.add(i)), _mm256_cvtph_ps(_mm_loadu_si128(pb.add(i / 8)))));
            hi = _mm256_add_ps(hi, _mm256_mul_ps(_mm256_loadu_ps(pa.add(i + 8)), _mm256_cvtph_ps(_mm_loadu_si128(pb.add(i / 8 + 1)))));
            i += 16;
        }
        let mut lanes = [0f32; 16];
        _mm256_storeu_ps(lanes.as_mut_ptr(), lo);
        _mm256_storeu_ps(lanes.as_mut_ptr().add(8), hi);
        let mut s: f32 = lanes.iter().sum();
        while i < n {
            s += a[i] * b[i].to_f32();
            i += 1;
        }
        s
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn axpy(o: &mut [f32], w: f32, v: &[f16]) {
        let n = o.len().min(v.len());
        let (po, pv) = (o.as_mut_ptr(), v.as_ptr() as *const __m128i);
        let wv = _mm256_set1_ps(w);
        let mut i = 0;
        while i + 8 <= n {
            let x = _mm256_add_ps(_mm256_loadu_ps(po.add(i)), _mm256_mul_ps(wv, _mm256_cvtph_ps(_mm_loadu_si128(pv.add(i / 8)))));
            _mm256_storeu_ps(po.add(i), x);
            i += 8;
        }
        while i < n {
            o[i] += w * v[i].to_f32();
            i += 1;
        }
    }
}

