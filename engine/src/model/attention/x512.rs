//! AVX-512 attention for head sizes 64, 128 and 256: q·k with the key row widened once for
//! every head of the item, softmax, then Σ p·v over the transposed values, several heads a pass.

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
