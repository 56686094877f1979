//! Causal multi-head attention over the KV cache, with GQA and an optional sliding window.
//!
//! A work item is a token and a range of query heads: scores q·k for every visible position
//! into a per-thread buffer, softmax over them, then the weighted sum of values. The AVX-512
//! (head sizes 64/128/256) and AVX2 (multiples of 32 up to 512) kernels take all heads sharing
//! a KV head; the portable kernel (and AVX2 for other head sizes) takes one head per item.

use std::cell::RefCell;

use half::f16;

use kiln_kernels::ThreadPool;

use super::kv::KvCache;
#[cfg(target_arch = "x86_64")]
use super::kv::V_BLOCK;
use super::ops::SharedMut;

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

thread_local! {
    /// Scores of one work item; grows to the longest context seen, then stays.
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `out[i][h] = softmax(q[i][h] · K[..=p]ᵀ · scale) · V[..=p]` where token i sits at `start + i`.
/// q: [n_tok][n_head·head_dim]; out: [n_tok][n_head·head_dim_v]. The cache must already hold
/// the keys and values of positions up to `start + n_tok − 1` for this layer.
///
/// The arithmetic is llama.cpp's (CPU, no flash attention), so that kiln gives its answers: Q is
/// rounded to f16 as ggml does before multiplying by the f16 K cache, and the softmax weights
/// are rounded to f16 before multiplying by the f16 V cache; the AVX-512 kernel and the portable
/// one also sum in ggml's order and give its bits ([`ggml`]).
#[allow(clippy::too_many_arguments)]
pub fn attention(pool: &ThreadPool, cache: &KvCache, layer: usize, start: usize, n_tok: usize, q: &[f32], out: &mut [f32], sh: &AttnShape) {
    let (hd, hdv) = (sh.head_dim, sh.head_dim_v);
    let out_ptr = SharedMut(out.as_mut_ptr());
    assert!(out.len() >= n_tok * sh.n_head * hdv && q.len() >= n_tok * sh.n_head * hd);
    let group = sh.n_head / sh.n_kv_head.max(1);
    // The AVX-512 and AVX2 kernels take a token and query heads sharing one KV head (each key
    // and value row widened from f16 once for all of them). The portable kernel takes one head.
    #[cfg(target_arch = "x86_64")]
    let wide = x512::kernel(sh).or_else(|| x256::kernel(sh));
    #[cfg(not(target_arch = "x86_64"))]
    let wide: Option<Kernel> = None;
    let (kernel, per) = match wide {
        Some(k) => (k, group),
        None => (ggml::kernel(), 1),
    };
    // Decode (one token) gives each thread an even share of the query heads, cut where the KV
    // head changes, so that no thread waits on another holding one KV head more: SmolLM2's 3
    // KV heads went 2:1 over two threads. A head's arithmetic is the same in any item.
    let split = n_tok == 1 && wide.is_some();
    let per_tok = sh.n_head / per;
    let items = n_tok * per_tok;
    Q16.with(|q16| {
        let mut q16 = q16.borrow_mut();
        q16.clear();
        q16.extend_from_slice(&q[..n_tok * sh.n_head * hd]);
        round_to_f16(&mut q16);
        let q = &q16[..];
        pool.run(|t, nt| {
            SCORES.with(|buf| {
                let mut scores = buf.borrow_mut();
                // Token i, query heads h0..h0 + heads (one KV head's).
                let mut run = |i: usize, h0: usize, heads: usize| {
                    let pos = start + i;
                    let first = sh.window.map_or(0, |w| (pos + 1).saturating_sub(w));
                    let need = heads * (pos + 1 - first);
                    if scores.len() < need {
                        scores.resize(need, 0.0);
                    }
                    let qh = &q[(i * sh.n_head + h0) * hd..][..heads * hd];
                    // SAFETY: every (token, head range) item writes its own disjoint slice of `out`.
                    let o = unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add((i * sh.n_head + h0) * hdv), heads * hdv) };
                    let it = Item { cache, layer, kvh: h0 / group, first, pos, sh };
                    // SAFETY: each kernel is chosen only where its CPU features were detected.
                    unsafe { kernel(&it, qh, heads, &mut scores[..need], o) };
                };
                if split {
                    let (mut h0, end) = (sh.n_head * t / nt, sh.n_head * (t + 1) / nt);
                    while h0 < end {
                        let h1 = end.min((h0 / group + 1) * group);
                        run(0, h0, h1 - h0);
                        h0 = h1;
                    }
                } else {
                    for item in (t..items).step_by(nt) {
                        run(item / per_tok, (item % per_tok) * per, per);
                    }
                }
            });
        });
    });
}

thread_local! {
    /// The caller's Q rounded to f16 (read by every worker during one call).
    static Q16: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// x ← the f16 nearest to x (ties to even), as f32.
fn round_to_f16(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("f16c") {
        #[target_feature(enable = "avx2,f16c")]
        unsafe fn wide(x: &mut [f32]) {
            use std::arch::x86_64::*;
            let mut c = x.chunks_exact_mut(8);
            for v in &mut c {
                let r = _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(v.as_ptr())));
                _mm256_storeu_ps(v.as_mut_ptr(), r);
            }
            c.into_remainder().iter_mut().for_each(|v| *v = f16::from_f32(*v).to_f32());
        }
        // SAFETY: AVX2 and F16C were detected.
        return unsafe { wide(x) };
    }
    x.iter_mut().for_each(|v| *v = f16::from_f32(*v).to_f32());
}

/// (item, q of `heads` heads, heads, scores [heads][n], out [heads][hdv]).
type Kernel = unsafe fn(&Item, &[f32], usize, &mut [f32], &mut [f32]);

struct Item<'a> {
    cache: &'a KvCache,
    layer: usize,
    kvh: usize,
    first: usize,
    pos: usize,
    sh: &'a AttnShape,
}

/// Sum of sixteen lanes in the order GCC's `_mm512_reduce_add_ps` adds them (halves, then
/// quarters, then lanes 0+2 and 1+3, then those two): the horizontal sum that ends ggml's and
/// tinyBLAS's AVX-512 products.
#[inline(always)]
fn tree16(x: &[f32; 16]) -> f32 {
    let h: [f32; 8] = std::array::from_fn(|i| x[i] + x[i + 8]);
    let q: [f32; 4] = std::array::from_fn(|i| h[i] + h[i + 4]);
    (q[0] + q[2]) + (q[1] + q[3])
}

#[cfg(target_arch = "x86_64")]
thread_local! {
    /// Σ p·v's plan for one item (see [`pv_plan`]).
    static PV: RefCell<(Vec<usize>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Σ p·v over the transposed value blocks ([`KvCache::value_index`]) for the positions
/// `it.first..=it.pos`, taken a whole block of 16 at a time from `first` rounded down: calls
/// `f(vblk, wpad, span)` with, per block, the index of its value `e0` (lane 0), and per head
/// (`scores`: `heads` rows of `pos + 1 − first` weights) its weights over the `span` positions
/// of the blocks, zero outside first..=pos. A zero weight leaves a sum as it is (the slot's
/// value is finite: a ring's older position or a zero-filled one).
#[cfg(target_arch = "x86_64")]
fn pv_plan<R>(it: &Item, e0: usize, scores: &[f32], heads: usize, f: impl FnOnce(&[usize], &[f32], usize) -> R) -> R {
    let n = it.pos + 1 - it.first;
    let base = it.first - it.first % V_BLOCK;
    let span = (it.pos + 1 - base).next_multiple_of(V_BLOCK);
    PV.with(|pv| {
        let mut pv = pv.borrow_mut();
        let (vblk, wpad) = &mut *pv;
        vblk.clear();
        // Slots of a block are consecutive: a ring holds a whole number of blocks.
        vblk.extend((base..base + span).step_by(V_BLOCK).map(|p| it.cache.value_index(it.cache.slot(it.layer, p), e0)));
        wpad.clear();
        wpad.resize(heads * span, 0.0);
        for h in 0..heads {
            wpad[h * span + it.first - base..][..n].copy_from_slice(&scores[h * n..(h + 1) * n]);
        }
        f(vblk, wpad, span)
    })
}

/// llama.cpp's attention arithmetic one head at a time, portable (`f32::mul_add` for its
/// FMAs): the bits of the AVX-512 kernel, which documents the steps.
mod ggml {
    use super::{tree16, Item, Kernel};

    pub fn kernel() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("fma") {
            return attend_fma;
        }
        attend_plain
    }

    /// Compiled with FMA, where `mul_add` is one instruction; only chosen where it was detected.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "fma")]
    unsafe fn attend_fma(it: &Item, q: &[f32], _heads: usize, scores: &mut [f32], o: &mut [f32]) {
        attend(it, q, scores, o)
    }

    unsafe fn attend_plain(it: &Item, q: &[f32], _heads: usize, scores: &mut [f32], o: &mut [f32]) {
        attend(it, q, scores, o)
    }

    #[inline(always)]
    pub(super) fn attend(it: &Item, q: &[f32], scores: &mut [f32], o: &mut [f32]) {
        let sh = it.sh;
        let (hd, hdv) = (sh.head_dim, sh.head_dim_v);
        let kw = sh.n_kv_head * hd;
        let keys = it.cache.keys(it.layer);
        let values = it.cache.values(it.layer);
        let n = it.pos + 1 - it.first;
        let scores = &mut scores[..n];
        for (j, s) in scores.iter_mut().enumerate() {
            let slot = it.cache.slot(it.layer, it.first + j);
            *s = dot(&q[..hd], &keys[slot * kw + it.kvh * hd..][..hd]) * sh.scale;
        }
        softmax_weights(scores, it.first);
        for c0 in (0..hdv).step_by(16) {
            let w = 16.min(hdv - c0);
            let mut acc = [[0f32; 16]; 16];
            for (j, &p) in scores.iter().enumerate() {
                let pos = it.first + j;
                let slot = it.cache.slot(it.layer, pos);
                let a = &mut acc[pos % 16];
                for (e, a) in a.iter_mut().enumerate().take(w) {
                    let v = values[it.cache.value_index(slot, it.kvh * hdv + c0 + e)];
                    *a = v.to_f32().mul_add(p, *a);
                }
            }
            for (e, out) in o[c0..c0 + w].iter_mut().enumerate() {
                *out = tree16(&std::array::from_fn(|l| acc[l][e]));
            }
        }
    }

    /// q·k: sixteen lanes over the dimensions (FMA), then [`tree16`].
    #[inline(always)]
    fn dot(q: &[f32], k: &[half::f16]) -> f32 {
        let mut acc = [0f32; 16];
        for (i, (a, b)) in q.iter().zip(k).enumerate() {
            acc[i % 16] = a.mul_add(b.to_f32(), acc[i % 16]);
        }
        tree16(&acc)
    }

    /// Scores of positions first.. → softmax weights as ggml computes them: e^(s − max) by
    /// [`expf`], Σ in f64 over 16-cell chunks (position p in lane p mod 16, each chunk's lanes
    /// added by [`tree16`]), each weight times (f32)(1/Σ), then rounded to f16.
    #[inline(always)]
    pub(super) fn softmax_weights(s: &mut [f32], first: usize) {
        let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f64;
        let end = first + s.len();
        let mut base = first - first % 16;
        while base < end {
            let mut e = [0f32; 16];
            for (p, l) in (first.max(base)..end.min(base + 16)).map(|p| (p, p - base)) {
                e[l] = expf(s[p - first] - max);
                s[p - first] = e[l];
            }
            sum += tree16(&e) as f64;
            base += 16;
        }
        let inv = (1.0 / sum) as f32;
        for v in s.iter_mut() {
            *v = half::f16::from_f32(*v * inv).to_f32();
        }
    }

    /// ggml's vector e^x (`ggml_v_expf`, AVX-512 form) one lane at a time: the same operations.
    #[inline(always)]
    pub(super) fn expf(x: f32) -> f32 {
        let r = f32::from_bits(0x4b40_0000); // 0x1.8p23
        let z = x.mul_add(f32::from_bits(0x3fb8_aa3b), r);
        let n = z - r;
        let b = (-n).mul_add(f32::from_bits(0x35bf_be8e), (-n).mul_add(f32::from_bits(0x3f31_7200), x));
        if n.abs() > 192.0 {
            return if n <= 0.0 { 0.0 } else { f32::INFINITY };
        }
        let u = b * b;
        let c = f32::from_bits;
        let j = c(0x3c07_2010)
            .mul_add(b, c(0x3d2b_9f17))
            .mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb)))
            .mul_add(u, c(0x3f7f_fff6).mul_add(b, 1.0));
        scalef(j, n)
    }

    /// j·2^n for an integral n in [−192, 192], rounded once (as `vscalefps`).
    #[inline(always)]
    fn scalef(j: f32, n: f32) -> f32 {
        let pow2 = |k: i32| f32::from_bits(((k + 127) as u32) << 23);
        let n = n as i32;
        if n > 127 {
            j * pow2(127) * pow2(n - 127)
        } else if n < -126 {
            // The first product is exact (normal); the second rounds once.
            j * pow2(n + 100) * pow2(-100)
        } else {
            j * pow2(n)
        }
    }
}

/// AVX2 attention for head sizes that are multiples of 32 up to 512, the AVX-512 kernel's shape
/// with 8-lane registers: each f16 key row widened once for up to 8 heads of the item (one
/// accumulator per head), softmax, then Σ p·v per head and four dimensions over the transposed
/// values, sixteen positions a step in two 8-lane halves.
#[cfg(target_arch = "x86_64")]
mod x256 {
    use super::super::ops::exp_neg as exp;
    use super::{pv_plan, Item, Kernel};
    use std::arch::x86_64::*;

    pub fn kernel(sh: &super::AttnShape) -> Option<Kernel> {
        let ok = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("f16c");
        let shape = sh.n_kv_head > 0 && sh.n_head.is_multiple_of(sh.n_kv_head) && sh.head_dim == sh.head_dim_v;
        (ok && shape && sh.head_dim.is_multiple_of(32) && (32..=512).contains(&sh.head_dim)).then_some(attend as Kernel)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn attend(it: &Item, q: &[f32], heads: usize, scores: &mut [f32], o: &mut [f32]) {
        let sh = it.sh;
        let hd = sh.head_dim;
        let w = sh.n_kv_head * hd;
        let keys = it.cache.keys(it.layer);
        let values = it.cache.values(it.layer);
        let n = it.pos + 1 - it.first;
        assert!(q.len() >= heads * hd && o.len() >= heads * hd && scores.len() >= heads * n && hd.is_multiple_of(4));
        let widen = |p: *const half::f16| _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
        // Scores, 8 heads per pass over the keys.
        for h0 in (0..heads).step_by(8) {
            let hs = 8.min(heads - h0);
            for j in 0..n {
                let slot = it.cache.slot(it.layer, it.first + j);
                let kp = keys[slot * w + it.kvh * hd..][..hd].as_ptr();
                let mut acc = [_mm256_setzero_ps(); 8];
                for c in (0..hd).step_by(8) {
                    let k = widen(kp.add(c));
                    for (h, a) in acc.iter_mut().enumerate().take(hs) {
                        *a = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add((h0 + h) * hd + c)), k, *a);
                    }
                }
                for (h, a) in acc.iter().enumerate().take(hs) {
                    *scores.get_unchecked_mut((h0 + h) * n + j) = hsum(*a) * sh.scale;
                }
            }
        }
        for h in 0..heads {
            let s = &mut scores[h * n..(h + 1) * n];
            let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            for v in s.iter_mut() {
                *v = exp(*v - max);
                sum += *v;
            }
            let inv = 1.0 / sum;
            s.iter_mut().for_each(|v| *v = half::f16::from_f32(*v * inv).to_f32());
        }
        // Σ p·v over the transposed values (`kv`): per head and four dimensions, sixteen
        // positions a step in two 8-lane halves, each dimension's lanes added at the end.
        pv_plan(it, it.kvh * hd, scores, heads, |vblk, wpad, span| {
            for h in 0..heads {
                for d0 in (0..hd).step_by(4) {
                    let mut acc = [[_mm256_setzero_ps(); 2]; 4];
                    for (b, &vb) in vblk.iter().enumerate() {
                        let wp = wpad.as_ptr().add(h * span + 16 * b);
                        let w = [_mm256_loadu_ps(wp), _mm256_loadu_ps(wp.add(8))];
                        for (d, a) in acc.iter_mut().enumerate() {
                            let vp = values.as_ptr().add(vb + (d0 + d) * 16);
                            a[0] = _mm256_fmadd_ps(widen(vp), w[0], a[0]);
                            a[1] = _mm256_fmadd_ps(widen(vp.add(8)), w[1], a[1]);
                        }
                    }
                    for (d, a) in acc.iter().enumerate() {
                        *o.get_unchecked_mut(h * hd + d0 + d) = hsum(_mm256_add_ps(a[0], a[1]));
                    }
                }
            }
        });
    }
}

/// AVX-512 attention for head sizes 64, 128 and 256: q·k with the key row widened once for
/// every head of the item, softmax, then Σ p·v accumulated in registers and scaled by 1/Σp.
#[cfg(target_arch = "x86_64")]
mod x512 {
    use super::{tree16, Item, Kernel};
    use std::arch::x86_64::*;

    pub fn kernel(sh: &super::AttnShape) -> Option<Kernel> {
        let ok = std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c");
        if !ok || sh.n_kv_head == 0 || !sh.n_head.is_multiple_of(sh.n_kv_head) || sh.head_dim != sh.head_dim_v || sh.n_head / sh.n_kv_head > MAX_GROUP
        {
            return None;
        }
        Some(match sh.head_dim {
            64 => attend::<4>,
            128 => attend::<8>,
            256 => attend::<16>,
            _ => return None,
        })
    }

    /// Most query heads sharing a KV head that this kernel takes.
    const MAX_GROUP: usize = 128;

    /// llama.cpp's arithmetic (its CPU build with AVX-512, no flash attention) step by step, so
    /// that kiln's attention gives its bits (Q comes already rounded to f16, as ggml converts the
    /// product's f32 operand to the K cache's type):
    /// - q·k: one 16-lane FMA accumulator over the head's dimensions, then [`tree16`]'s additions
    ///   (tinyBLAS), sixteen positions at once ([`hsum16`]);
    /// - softmax: e^(s − max) with ggml's vector exp ([`expf`]), summed per 16 cache cells
    ///   (position p in lane p mod 16) into an f64, each weight times (f32)(1/Σ), rounded to f16;
    /// - Σ p·v: every output element sums its positions in 16 lanes by position (lane p mod 16),
    ///   then [`tree16`]'s additions element-wise: tinyBLAS's order for a matrix product whose
    ///   inner dimension is the cache cells.
    ///
    /// NC: 16-lane chunks per head row.
    #[target_feature(enable = "avx512f,fma,f16c")]
    unsafe fn attend<const NC: usize>(
        it: &Item,
        q: &[f32],
        heads: usize,
        scores: &mut [f32],
        o: &mut [f32],
    ) {
        let sh = it.sh;
        let hd = 16 * NC;
        let kw = sh.n_kv_head * hd;
        let keys = it.cache.keys(it.layer);
        let values = it.cache.values(it.layer);
        let n = it.pos + 1 - it.first;
        debug_assert!(q.len() >= heads * hd && o.len() >= heads * hd && scores.len() >= heads * n);
        let widen = |p: *const half::f16, c: usize| {
            _mm512_cvtph_ps(_mm256_loadu_si256(p.add(16 * c) as *const __m256i))
        };
        // Scores: up to 8 heads × 16 positions of accumulators, then the sixteen sums of each
        // head at once ([`hsum16`]); each key row is widened once for the heads of a pass.
        // Lanes past a short last block keep earlier values; their sums are not stored.
        let scale = _mm512_set1_ps(sh.scale);
        let mut accs = [[_mm512_setzero_ps(); 16]; 8];
        for h0 in (0..heads).step_by(8) {
            let hs = 8.min(heads - h0);
            for j0 in (0..n).step_by(16) {
                let m = 16.min(n - j0);
                for j in 0..m {
                    let p = it.first + j0 + j;
                    // Key rows 16 positions ahead: a thread's rows of one KV head lie a row
                    // apart, a stride the hardware prefetcher left waiting on memory once the
                    // caches outgrow L3 (`cargo bench --bench attention`, depth 2048,
                    // alternated in one process: 6-18% faster).
                    if p + 16 <= it.pos {
                        let kp = keys.as_ptr().add(it.cache.slot(it.layer, p + 16) * kw + it.kvh * hd) as *const i8;
                        for l in (0..2 * hd).step_by(64) {
                            _mm_prefetch::<_MM_HINT_T0>(kp.add(l));
                        }
                    }
                    let slot = it.cache.slot(it.layer, p);
                    let kp = keys[slot * kw + it.kvh * hd..][..hd].as_ptr();
                    let k: [__m512; NC] = std::array::from_fn(|c| widen(kp, c));
                    for (h, a) in accs.iter_mut().enumerate().take(hs) {
                        let qp = q.as_ptr().add((h0 + h) * hd);
                        let mut acc = _mm512_mul_ps(_mm512_loadu_ps(qp), k[0]);
                        for (c, kc) in k.iter().enumerate().skip(1) {
                            acc = _mm512_fmadd_ps(_mm512_loadu_ps(qp.add(16 * c)), *kc, acc);
                        }
                        a[j] = acc;
                    }
                }
                for (h, a) in accs.iter().enumerate().take(hs) {
                    let sums = _mm512_mul_ps(hsum16(a), scale);
                    _mm512_mask_storeu_ps(scores.as_mut_ptr().add((h0 + h) * n + j0), ((1u32 << m) - 1) as u16, sums);
                }
            }
        }
        for h in 0..heads {
            softmax_weights(&mut scores[h * n..(h + 1) * n], it.first);
        }
        // Σ p·v over the transposed values: lane l of a dimension's accumulator sums the
        // positions ≡ l (mod 16) in order, then [`hsum16`] adds each dimension's lanes by
        // [`tree16`]: tinyBLAS's order for a product whose inner dimension is the cache cells,
        // and the portable kernel's. Up to 3 heads × 8 dimensions of accumulators per pass, so
        // each widened vector of 16 positions serves every head of the pass.
        super::pv_plan(it, it.kvh * hd, scores, heads, |vblk, wpad, span| {
            let mut h0 = 0;
            while h0 < heads {
                let ht = 3.min(heads - h0);
                let tile = Tile { values: values.as_ptr(), vblk, wpad, span, h0, hd };
                match ht {
                    3 => pv_tile::<NC, 3>(&tile, o),
                    2 => pv_tile::<NC, 2>(&tile, o),
                    _ => pv_tile::<NC, 1>(&tile, o),
                }
                h0 += ht;
            }
        });
    }

    /// What [`pv_tile`] reads: the layer's values, [`super::pv_plan`]'s blocks and weights,
    /// and the pass's first head.
    struct Tile<'a> {
        values: *const half::f16,
        vblk: &'a [usize],
        wpad: &'a [f32],
        span: usize,
        h0: usize,
        hd: usize,
    }

    /// Heads h0..h0 + HT of Σ p·v into `o` (head h at `h·hd`), 16 dimensions per pass over the
    /// blocks in two halves of 8.
    #[inline]
    #[target_feature(enable = "avx512f,fma,f16c")]
    unsafe fn pv_tile<const NC: usize, const HT: usize>(t: &Tile, o: &mut [f32]) {
        debug_assert!(o.len() >= (t.h0 + HT) * t.hd && t.wpad.len() >= (t.h0 + HT) * t.span);
        for g in 0..NC {
            let mut sums = [[_mm512_setzero_ps(); 16]; HT];
            for half in 0..2 {
                let d0 = 16 * g + 8 * half;
                let mut acc = [[_mm512_setzero_ps(); 8]; HT];
                for (b, &vb) in t.vblk.iter().enumerate() {
                    let w: [__m512; HT] = std::array::from_fn(|h| _mm512_loadu_ps(t.wpad.as_ptr().add((t.h0 + h) * t.span + 16 * b)));
                    for d in 0..8 {
                        let v = _mm512_cvtph_ps(_mm256_loadu_si256(t.values.add(vb + (d0 + d) * 16) as *const __m256i));
                        for (a, wh) in acc.iter_mut().zip(&w) {
                            a[d] = _mm512_fmadd_ps(v, *wh, a[d]);
                        }
                    }
                }
                for (s, a) in sums.iter_mut().zip(&acc) {
                    s[8 * half..8 * half + 8].copy_from_slice(a);
                }
            }
            for (h, s) in sums.iter().enumerate() {
                _mm512_storeu_ps(o.as_mut_ptr().add((t.h0 + h) * t.hd + 16 * g), hsum16(s));
            }
        }
    }

    /// [`tree16`] of a vector's lanes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn hsum(v: __m512) -> f32 {
        let mut x = [0f32; 16];
        _mm512_storeu_ps(x.as_mut_ptr(), v);
        tree16(&x)
    }

    /// [`tree16`] of each of sixteen vectors, as one vector (lane p: the sum of a[p]): the same
    /// additions, done for all sixteen at once by shuffling halves, quarters and pairs together.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn hsum16(a: &[__m512; 16]) -> __m512 {
        // x[i] + x[i+8]: X[m] holds a[2m] then a[2m+1], eight sums each.
        let x: [__m512; 8] = std::array::from_fn(|m| {
            let (p, q) = (a[2 * m], a[2 * m + 1]);
            _mm512_add_ps(_mm512_shuffle_f32x4::<0b01_00_01_00>(p, q), _mm512_shuffle_f32x4::<0b11_10_11_10>(p, q))
        });
        // h[i] + h[i+4]: Y[n] holds a[4n..4n+4], four sums each.
        let y: [__m512; 4] = std::array::from_fn(|n| {
            let (p, q) = (x[2 * n], x[2 * n + 1]);
            _mm512_add_ps(_mm512_shuffle_f32x4::<0b10_00_10_00>(p, q), _mm512_shuffle_f32x4::<0b11_01_11_01>(p, q))
        });
        // (q0 + q2, q1 + q3) within each 128-bit lane.
        let u: [__m512; 2] = std::array::from_fn(|t| {
            let (p, q) = (y[2 * t], y[2 * t + 1]);
            _mm512_add_ps(_mm512_shuffle_ps::<0b01_00_01_00>(p, q), _mm512_shuffle_ps::<0b11_10_11_10>(p, q))
        });
        // The last addition; element 4k + m then holds a[4m + k].
        let f = _mm512_add_ps(_mm512_shuffle_ps::<0b10_00_10_00>(u[0], u[1]), _mm512_shuffle_ps::<0b11_01_11_01>(u[0], u[1]));
        let idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        _mm512_permutexvar_ps(idx, f)
    }

    /// [`ggml::softmax_weights`](super::ggml) sixteen cells at a time: the same bits.
    #[inline]
    #[target_feature(enable = "avx512f,fma,f16c")]
    unsafe fn softmax_weights(s: &mut [f32], first: usize) {
        let n = s.len();
        // Lanes [lo, hi) of the chunk at position `base` are scores s[base + lo − first ..].
        let mask = |lo: usize, hi: usize| -> u16 { (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16 };
        let end = first + n;
        let chunks = || (first - first % 16..end).step_by(16).map(move |base| (base, first.max(base) - base, end.min(base + 16) - base));
        // Chunk lanes [lo, hi) as a vector, `fill` elsewhere. Only the first chunk can start
        // before s (lo > 0); it is read through a local copy, the others straight from s with
        // the lanes past its end masked off.
        #[inline(always)]
        unsafe fn load(s: &[f32], at: isize, lo: usize, hi: usize, m: u16, fill: __m512) -> __m512 {
            if lo == 0 {
                _mm512_mask_loadu_ps(fill, m, s.as_ptr().add(at as usize))
            } else {
                let mut x = [0f32; 16];
                x[lo..hi].copy_from_slice(&s[(at + lo as isize) as usize..(at + hi as isize) as usize]);
                _mm512_mask_loadu_ps(fill, m, x.as_ptr())
            }
        }
        let at = |base: usize| base as isize - first as isize;
        let mut mv = _mm512_set1_ps(f32::NEG_INFINITY);
        for (base, lo, hi) in chunks() {
            mv = _mm512_max_ps(mv, load(s, at(base), lo, hi, mask(lo, hi), _mm512_set1_ps(f32::NEG_INFINITY)));
        }
        let max = _mm512_set1_ps(_mm512_reduce_max_ps(mv));
        let mut sum = 0f64;
        for (base, lo, hi) in chunks() {
            let m = mask(lo, hi);
            let e = _mm512_maskz_mov_ps(m, expf(_mm512_sub_ps(load(s, at(base), lo, hi, m, max), max)));
            sum += hsum(e) as f64;
            let mut x = [0f32; 16];
            _mm512_storeu_ps(x.as_mut_ptr(), e);
            s[base + lo - first..base + hi - first].copy_from_slice(&x[lo..hi]);
        }
        let inv = _mm512_set1_ps((1.0 / sum) as f32);
        let mut c = s.chunks_exact_mut(16);
        for v in &mut c {
            let w = _mm512_mul_ps(_mm512_loadu_ps(v.as_ptr()), inv);
            _mm512_storeu_ps(v.as_mut_ptr(), _mm512_cvtph_ps(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(w)));
        }
        let r = c.into_remainder();
        if !r.is_empty() {
            let m = ((1u32 << r.len()) - 1) as u16;
            let w = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, r.as_ptr()), inv);
            _mm512_mask_storeu_ps(r.as_mut_ptr(), m, _mm512_cvtph_ps(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(w)));
        }
    }

    /// ggml's AVX-512 `ggml_v_expf` (after ARM's optimized routines): the same operations in the
    /// same order, so the same bits; e^−∞ = 0.
    #[inline]
    #[target_feature(enable = "avx512f,fma")]
    pub(super) unsafe fn expf(x: __m512) -> __m512 {
        let c = _mm512_set1_ps;
        let r = c(f32::from_bits(0x4b40_0000)); // 0x1.8p23
        let z = _mm512_fmadd_ps(x, c(f32::from_bits(0x3fb8_aa3b)), r); // 0x1.715476p+0
        let n = _mm512_sub_ps(z, r);
        let b = _mm512_fnmadd_ps(n, c(f32::from_bits(0x35bf_be8e)), _mm512_fnmadd_ps(n, c(f32::from_bits(0x3f31_7200)), x));
        let d = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_abs_ps(n), c(192.0));
        let u = _mm512_mul_ps(b, b);
        let j = _mm512_fmadd_ps(
            _mm512_fmadd_ps(_mm512_fmadd_ps(c(f32::from_bits(0x3c07_2010)), b, c(f32::from_bits(0x3d2b_9f17))), u, _mm512_fmadd_ps(c(f32::from_bits(0x3e2a_af33)), b, c(f32::from_bits(0x3eff_fedb)))),
            u,
            _mm512_fmadd_ps(c(f32::from_bits(0x3f7f_fff6)), b, c(1.0)),
        );
        let res = _mm512_scalef_ps(j, n);
        if d == 0 {
            return res;
        }
        let alt = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LE_OQ>(n, _mm512_setzero_ps()), c(f32::INFINITY), _mm512_setzero_ps());
        _mm512_mask_blend_ps(d, res, alt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The portable path for every (token, head), as the reference for the SIMD ones (Q rounded
    /// to f16 here, as `attention` does).
    fn portable(
        cache: &KvCache,
        layer: usize,
        start: usize,
        n_tok: usize,
        q: &[f32],
        sh: &AttnShape,
    ) -> Vec<f32> {
        let mut out = vec![0f32; n_tok * sh.n_head * sh.head_dim_v];
        let mut scores = Vec::new();
        for i in 0..n_tok {
            for h in 0..sh.n_head {
                let pos = start + i;
                let first = sh.window.map_or(0, |w| (pos + 1).saturating_sub(w));
                scores.resize(pos + 1 - first, 0.0);
                let it = Item {
                    cache,
                    layer,
                    kvh: h / (sh.n_head / sh.n_kv_head),
                    first,
                    pos,
                    sh,
                };
                let mut qh = q[(i * sh.n_head + h) * sh.head_dim..][..sh.head_dim].to_vec();
                qh.iter_mut().for_each(|v| *v = f16::from_f32(*v).to_f32());
                let o = &mut out[(i * sh.n_head + h) * sh.head_dim_v..][..sh.head_dim_v];
                ggml::attend(&it, &qh, &mut scores, o);
            }
        }
        out
    }

    #[test]
    fn ggml_exp_is_exp() {
        // Within 2 ulp of e^x over softmax's range; e^0 = 1, e^−∞ = 0, and tiny results are
        // denormal or zero, not garbage.
        for i in 0..200_000 {
            let x = -(i as f32) * 0.000_52 - 1e-5 * (i % 11) as f32;
            let (got, want) = (ggml::expf(x), (x as f64).exp());
            if want > f32::MIN_POSITIVE as f64 {
                assert!(((got as f64) - want).abs() <= 2.5 * f32::EPSILON as f64 * want, "e^{x}: {got} vs {want}");
            } else {
                assert!((0.0..1e-37).contains(&got), "e^{x}: {got}");
            }
        }
        assert_eq!(ggml::expf(0.0), 1.0);
        assert_eq!(ggml::expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(ggml::expf(-200.0), 0.0);
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn vector_exp_has_the_bits_of_the_portable_one() {
        if !std::is_x86_feature_detected!("avx512f") || !std::is_x86_feature_detected!("fma") {
            eprintln!("no AVX-512: the vector exp is not used on this CPU");
            return;
        }
        use std::arch::x86_64::*;
        let xs: Vec<f32> = (0..40_000).map(|i| -(i as f32) * 0.0023 - 1e-4 * (i % 7) as f32).chain([0.0, -0.0, -87.0, -88.5, -103.0, -1e30, f32::NEG_INFINITY]).collect();
        for c in xs.chunks(16) {
            let mut buf = [0f32; 16];
            buf[..c.len()].copy_from_slice(c);
            let mut out = [0f32; 16];
            // SAFETY: AVX-512F and FMA were detected.
            unsafe { _mm512_storeu_ps(out.as_mut_ptr(), x512::expf(_mm512_loadu_ps(buf.as_ptr()))) };
            for (x, e) in c.iter().zip(out) {
                assert_eq!(e.to_bits(), ggml::expf(*x).to_bits(), "e^{x}");
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn sixteen_sums_at_once_have_the_bits_of_each() {
        if !std::is_x86_feature_detected!("avx512f") {
            eprintln!("no AVX-512: hsum16 is not used on this CPU");
            return;
        }
        use std::arch::x86_64::*;
        let mut seed = 3u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 10f32.powi((seed >> 20) as i32 % 7 - 3)
        };
        for _ in 0..200 {
            let x: [[f32; 16]; 16] = std::array::from_fn(|_| std::array::from_fn(|_| rnd()));
            let mut got = [0f32; 16];
            // SAFETY: AVX-512F was detected.
            unsafe {
                let a: [__m512; 16] = std::array::from_fn(|p| _mm512_loadu_ps(x[p].as_ptr()));
                _mm512_storeu_ps(got.as_mut_ptr(), x512::hsum16(&a));
            }
            for p in 0..16 {
                assert_eq!(got[p].to_bits(), tree16(&x[p]).to_bits(), "sum {p}");
            }
        }
    }

    #[test]
    fn softmax_weights_sum_per_sixteen_cells() {
        // Weights are f16 values summing to 1 within f16 rounding, and the 16-cell chunks follow
        // the absolute position: the same scores give the same weights from any first position
        // with the same phase mod 16.
        let scores: Vec<f32> = (0..45).map(|i| ((i * 37 % 23) as f32) * 0.31 - 3.0).collect();
        let mut a = scores.clone();
        ggml::softmax_weights(&mut a, 5);
        let total: f32 = a.iter().sum();
        assert!((total - 1.0).abs() < 1e-2, "{total}");
        assert!(a.iter().all(|&w| f16::from_f32(w).to_f32() == w && w > 0.0));
        let mut b = scores.clone();
        ggml::softmax_weights(&mut b, 21);
        assert_eq!(a, b);
    }

    #[test]
    fn simd_attention_matches_the_portable_path() {
        let pool = ThreadPool::new(2);
        let mut seed = 7u64;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        // (heads, kv heads, head size, window): GQA groups of 8, 3, 4, 10 and 8, the three
        // AVX-512 head sizes and two that only the AVX2 kernel takes (96, 32).
        for (n_head, n_kv_head, hd, window) in [
            (8, 1, 64, None),
            (9, 3, 64, None),
            (4, 1, 256, Some(5)),
            (4, 2, 128, None),
            (10, 1, 96, Some(7)),
            (16, 2, 32, None),
        ] {
            let sh = AttnShape {
                n_head,
                n_kv_head,
                head_dim: hd,
                head_dim_v: hd,
                scale: 1.0 / (hd as f32).sqrt(),
                window,
            };
            // Windowed layers run past their ring (window + MAX_BATCH slots, rounded to value
            // blocks), so that it wraps.
            let kw = n_kv_head * hd;
            let (n_pos, capacity) = if window.is_some() { (300, 512) } else { (37, 64) };
            let mut cache = KvCache::new(&[window], kw, kw, capacity);
            for pos in 0..n_pos {
                let k: Vec<f32> = (0..kw).map(|_| 3.0 * rnd()).collect();
                let v: Vec<f32> = (0..kw).map(|_| rnd()).collect();
                cache.reserve(1).unwrap();
                cache.store(0, pos, &k, &v);
                cache.advance(1);
            }
            // A prompt batch (the last 17 positions) and one decode step (the last position).
            for (start, n_tok) in [(n_pos - 17, 17), (n_pos - 1, 1)] {
                let q: Vec<f32> = (0..n_tok * n_head * hd).map(|_| rnd()).collect();
                let mut got = vec![f32::NAN; n_tok * n_head * hd];
                attention(&pool, &cache, 0, start, n_tok, &q, &mut got, &sh);
                let want = portable(&cache, 0, start, n_tok, &q, &sh);
                // The AVX-512 kernel gives the portable path's bits; the AVX2 one sums in another
                // order, so a softmax weight may round to the neighbouring f16 (2^-11 apart).
                #[cfg(target_arch = "x86_64")]
                let exact = x512::kernel(&sh).is_some();
                #[cfg(not(target_arch = "x86_64"))]
                let exact = true;
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    if exact {
                        assert_eq!(g.to_bits(), w.to_bits(), "{n_head}/{n_kv_head}x{hd} start {start}: [{i}] {g} vs {w}");
                    } else {
                        assert!((g - w).abs() <= 2e-3 * (1.0 + w.abs()), "{n_head}/{n_kv_head}x{hd} start {start}: [{i}] {g} vs {w}");
                    }
                }
            }
        }
    }
}
