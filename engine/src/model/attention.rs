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

mod ggml;
#[cfg(target_arch = "x86_64")]
mod x256;
#[cfg(target_arch = "x86_64")]
mod x512;

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
