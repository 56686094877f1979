//! Dot products in llama.cpp's summation order, for a mode that gives llama.cpp's answers as
//! closely as its CPU build computes them (`KILN_LLAMACPP_ORDER=1`, or [`set_enabled`] before
//! loading a model).
//!
//! ggml (AVX2, also on AVX-512 machines) and tinyBLAS sum a Q8_0/Q5_0/Q4_0/Q4_1 row in eight
//! float lanes: per block, lane m takes the exact integer dot of elements 4m..4m+3, converted to
//! f32, times the block's d_w·d_x, added with an FMA to that lane's running sum; the eight sums
//! are added at the end as (l0+l4 + l2+l6) + (l1+l5 + l3+l7). Q4_1 adds Σ m·s per block to a
//! separate f32 sum, added last. Q6_K (which llama.cpp does not repack) is summed the same way
//! per super-block ([`q6_k`]). kiln's own kernels sum each block's exact dot into one
//! accumulator (the same bits for every batch shape and every path, and faster for the row-
//! interleaved kernels), which differs from llama.cpp by an ulp here and there; gemma3, whose
//! first positions amplify such ulps through attention's f16 roundings, comes out at max logit
//! difference 2.07 against llama.cpp's reference with kiln's order and 1.22 with this one (the
//! README's bound is 1.5; tests/reference_llamacpp_order.rs).
//!
//! In this mode those types go through these kernels for every product (one weight row against
//! one to eight tokens), with their rows as the file has them: exact, and slower than kiln's own
//! tiles and GEMMs. Q4_K keeps kiln's kernels (llama.cpp repacks it for its own GEMM and
//! mat-vec, whose order is not matched here).

use crate::quants::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ8_0, BlockQ8_1};
use crate::types::GgmlType;
use std::sync::atomic::{AtomicU8, Ordering};

use super::VecDotFn;

/// 0: not read yet, 1: off, 2: on.
static MODE: AtomicU8 = AtomicU8::new(0);

/// Whether products of the legacy types follow llama.cpp's summation order: set by
/// [`set_enabled`], else `KILN_LLAMACPP_ORDER=1` (read once).
pub fn enabled() -> bool {
    match MODE.load(Ordering::Relaxed) {
        0 => {
            let on = std::env::var("KILN_LLAMACPP_ORDER").is_ok_and(|v| v == "1");
            let _ = MODE.compare_exchange(0, if on { 2 } else { 1 }, Ordering::Relaxed, Ordering::Relaxed);
            MODE.load(Ordering::Relaxed) == 2
        }
        m => m == 2,
    }
}

/// Turns llama.cpp's summation order for the legacy types on or off, process-wide (products
/// already running finish in the order they started with).
pub fn set_enabled(on: bool) {
    MODE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
}

/// The dot kernel in llama.cpp's order for `ty`, if this mode covers the type.
pub fn dot_fn(ty: GgmlType) -> Option<VecDotFn> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("f16c") {
        if let Some(f) = x86::dot_fn(ty) {
            return Some(f);
        }
    }
    Some(match ty {
        GgmlType::Q6_K => q6_k,
        GgmlType::Q8_0 => |x, y| portable::<BlockQ8_0, BlockQ8_0>(x, y, |a, e| a.qs[e] as i32, |_| 0.0),
        GgmlType::Q4_0 => |x, y| portable::<BlockQ4_0, BlockQ8_0>(x, y, |a, e| nibble(&a.qs, e) - 8, |_| 0.0),
        GgmlType::Q5_0 => |x, y| portable::<BlockQ5_0, BlockQ8_0>(x, y, q5_0, |_| 0.0),
        GgmlType::Q4_1 => |x, y| portable::<BlockQ4_1, BlockQ8_1>(x, y, |a, e| nibble(&a.qs, e), |(a, b)| a.m.to_f32() * b.s.to_f32()),
        _ => return None,
    })
}

/// The tile kernel in llama.cpp's order (one weight row against up to 8 tokens, each token's
/// bits those of [`dot_fn`]'s), where there is one (x86 with AVX2).
pub fn tile_fn(ty: GgmlType) -> Option<super::VecDotTileFn> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("f16c") {
        return x86::tile_fn(ty);
    }
    let _ = ty;
    None
}

/// Q6_K as `ggml_vec_dot_q6_K_q8_K` sums it (AVX2; llama.cpp does not repack Q6_K, so this is
/// its order for every batch): per super-block, lane m (0..8) takes the exact integer sum over
/// elements 32c + 4m..32c + 4m + 3 of the eight 32-element chunks c, each product times its
/// sub-block's scale (with the −32 offset), as f32 times d_x·d_w, added with an FMA; then the
/// lanes as `hsum_float_8`.
fn q6_k(x: &[u8], y: &[u8]) -> f32 {
    use crate::quants::{BlockQ6K, BlockQ8K};
    let (Ok(x), Ok(y)) = (bytemuck::try_cast_slice::<u8, BlockQ6K>(x), bytemuck::try_cast_slice::<u8, BlockQ8K>(y)) else { return f32::NAN };
    if x.len() != y.len() {
        return f32::NAN;
    }
    let mut acc = [0f32; 8];
    for (a, b) in x.iter().zip(y) {
        // Element e = 128n + 32g + l: low bits from ql (chunks g = 0, 1 low nibbles, 2, 3 high),
        // high bits from qh[32n + l] >> 2g (as `quants::q6_k::q6`).
        let mut lanes = [0i32; 8];
        for n in 0..2 {
            for g in 0..4 {
                let mut part = [0i32; 8];
                for l in 0..32 {
                    let byte = a.ql[64 * n + 32 * (g & 1) + l];
                    let low = if g < 2 { byte & 0xF } else { byte >> 4 };
                    let q = (low | (((a.qh[32 * n + l] >> (2 * g)) & 3) << 4)) as i32 - 32;
                    let e = 128 * n + 32 * g + l;
                    part[l / 4] += a.scales[e / 16] as i32 * q * b.qs[e] as i32;
                }
                for (s, p) in lanes.iter_mut().zip(part) {
                    *s += p;
                }
            }
        }
        let d = b.d * a.d.to_f32();
        for (l, &s) in acc.iter_mut().zip(&lanes) {
            *l = d.mul_add(s as f32, *l);
        }
    }
    hsum8(&acc)
}

/// Element e (0..32) of a 16-byte nibble array: low nibbles first, then high.
#[inline(always)]
fn nibble(qs: &[u8; 16], e: usize) -> i32 {
    (if e < 16 { qs[e] & 0x0F } else { qs[e - 16] >> 4 }) as i32
}

#[inline(always)]
fn q5_0(a: &BlockQ5_0, e: usize) -> i32 {
    nibble(&a.qs, e) + 16 * ((u32::from_le_bytes(a.qh) >> e) & 1) as i32 - 16
}

/// ggml's final addition of eight lanes (`hsum_float_8`).
#[inline(always)]
fn hsum8(l: &[f32; 8]) -> f32 {
    let h: [f32; 4] = std::array::from_fn(|i| l[i] + l[i + 4]);
    (h[0] + h[2]) + (h[1] + h[3])
}

/// An activation block (Q8_0 or Q8_1): its d and quants.
trait Act {
    fn d(&self) -> f32;
    fn qs(&self) -> &[i8; 32];
}
impl Act for BlockQ8_0 {
    fn d(&self) -> f32 {
        self.d.to_f32()
    }
    fn qs(&self) -> &[i8; 32] {
        &self.qs
    }
}
impl Act for BlockQ8_1 {
    fn d(&self) -> f32 {
        self.d.to_f32()
    }
    fn qs(&self) -> &[i8; 32] {
        &self.qs
    }
}

/// A weight block's d.
trait Scaled {
    fn d(&self) -> f32;
}
macro_rules! scaled {
    ($($t:ty),*) => {$(impl Scaled for $t {
        fn d(&self) -> f32 {
            self.d.to_f32()
        }
    })*};
}
scaled!(BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ8_0);

/// The order above, one element at a time (`f32::mul_add` for the FMAs); NaN on bad shapes, as
/// the other dot kernels.
#[inline(always)]
fn portable<W: bytemuck::Pod + Scaled, Y: bytemuck::Pod + Act>(x: &[u8], y: &[u8], q: impl Fn(&W, usize) -> i32, bias: impl Fn((&W, &Y)) -> f32) -> f32 {
    let (Ok(x), Ok(y)) = (bytemuck::try_cast_slice::<u8, W>(x), bytemuck::try_cast_slice::<u8, Y>(y)) else { return f32::NAN };
    if x.len() != y.len() {
        return f32::NAN;
    }
    let (mut acc, mut summs) = ([0f32; 8], 0f32);
    for (a, b) in x.iter().zip(y) {
        let (d, qy) = (a.d() * b.d(), b.qs());
        for (m, l) in acc.iter_mut().enumerate() {
            let s: i32 = (4 * m..4 * m + 4).map(|e| q(a, e) * qy[e] as i32).sum();
            *l = d.mul_add(s as f32, *l);
        }
        summs += bias((a, b));
    }
    hsum8(&acc) + summs
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::x86::{abs_sign, cast_or_none, cast_rows, dot_u8i8_avx2, fp16, nibbles_j_j16, q5_0_quants};
    use super::*;
    use std::arch::x86_64::*;

    /// A tile kernel (see [`crate::simd::VecDotTileFn`]) compiled for AVX2.
    type Tile = unsafe fn(&[u8], &[&[u8]], &mut [f32]);

    pub fn dot_fn(ty: GgmlType) -> Option<VecDotFn> {
        // SAFETY (each): handed out only when AVX2, FMA and F16C were detected. The legacy dots
        // are their one-token tiles: the same bits by construction.
        Some(match ty {
            GgmlType::Q8_0 => |x, y| unsafe { one(tile_q8_0, x, y) },
            GgmlType::Q4_0 => |x, y| unsafe { one(tile_q4_0, x, y) },
            GgmlType::Q5_0 => |x, y| unsafe { one(tile_q5_0, x, y) },
            GgmlType::Q4_1 => |x, y| unsafe { one(tile_q4_1, x, y) },
            GgmlType::Q6_K => |x, y| unsafe { q6_k(x, y) },
            _ => return None,
        })
    }

    pub fn tile_fn(ty: GgmlType) -> Option<crate::simd::VecDotTileFn> {
        // SAFETY (each): handed out only when AVX2, FMA and F16C were detected.
        Some(match ty {
            GgmlType::Q8_0 => |x, ys, out| unsafe { tile_q8_0(x, ys, out) },
            GgmlType::Q4_0 => |x, ys, out| unsafe { tile_q4_0(x, ys, out) },
            GgmlType::Q5_0 => |x, ys, out| unsafe { tile_q5_0(x, ys, out) },
            GgmlType::Q4_1 => |x, ys, out| unsafe { tile_q4_1(x, ys, out) },
            _ => return None,
        })
    }

    /// `tile` for one token.
    #[inline]
    unsafe fn one(tile: Tile, x: &[u8], y: &[u8]) -> f32 {
        let mut out = [f32::NAN];
        tile(x, &[y], &mut out);
        out[0]
    }

    /// [`super::q6_k`] as ggml computes it: per half super-block, the four 32-element chunks as
    /// unsigned 6-bit quants, `vpmaddubsw` against the activations less 32·Σ pairs, `vpmaddwd`
    /// by the sub-block scales, summed as i32 lanes (exact), then one FMA per super-block.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q6_k(x: &[u8], y: &[u8]) -> f32 {
        use crate::quants::{BlockQ6K, BlockQ8K};
        let (Some(x), Some(y)) = (cast_or_none::<BlockQ6K>(x), cast_or_none::<BlockQ8K>(y)) else { return f32::NAN };
        if x.len() != y.len() {
            return f32::NAN;
        }
        let (m4, m3, m32) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(3), _mm256_set1_epi8(32));
        let mut acc = _mm256_setzero_ps();
        for (a, b) in x.iter().zip(y) {
            let mut sumi = _mm256_setzero_si256();
            for n in 0..2 {
                let ql = a.ql.as_ptr().add(64 * n);
                let bits1 = _mm256_loadu_si256(ql as *const __m256i);
                let bits2 = _mm256_loadu_si256(ql.add(32) as *const __m256i);
                let high = _mm256_loadu_si256(a.qh.as_ptr().add(32 * n) as *const __m256i);
                let hi = |g: i32| _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(high, _mm_cvtsi32_si128(2 * g)), m3), 4);
                let q: [__m256i; 4] = [
                    _mm256_or_si256(_mm256_and_si256(bits1, m4), hi(0)),
                    _mm256_or_si256(_mm256_and_si256(bits2, m4), hi(1)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits1, 4), m4), hi(2)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits2, 4), m4), hi(3)),
                ];
                for (g, &qg) in q.iter().enumerate() {
                    let q8 = _mm256_loadu_si256(b.qs.as_ptr().add(128 * n + 32 * g) as *const __m256i);
                    let p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(qg, q8), _mm256_maddubs_epi16(m32, q8));
                    let sb = 8 * n + 2 * g;
                    let sc = _mm256_set_m128i(_mm_set1_epi16(a.scales[sb + 1] as i16), _mm_set1_epi16(a.scales[sb] as i16));
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(sc, p16));
                }
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(b.d * fp16(a.d)), _mm256_cvtepi32_ps(sumi), acc);
        }
        finish(acc)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile_q8_0(x: &[u8], ys: &[&[u8]], out: &mut [f32]) {
        signed_tile::<BlockQ8_0>(x, ys, out, |a| _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile_q4_0(x: &[u8], ys: &[&[u8]], out: &mut [f32]) {
        signed_tile::<BlockQ4_0>(x, ys, out, |a| _mm256_sub_epi8(nibbles_j_j16(a.qs.as_ptr()), _mm256_set1_epi8(8)))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile_q5_0(x: &[u8], ys: &[&[u8]], out: &mut [f32]) {
        signed_tile::<BlockQ5_0>(x, ys, out, |a| q5_0_quants(a.qh, a.qs.as_ptr()))
    }

    /// Up to 8 tokens against one weight row of signed quants (`quants` unpacks a block once):
    /// per token, Σ over blocks of FMA(d_w·d_x, lanes), then [`finish`].
    #[inline(always)]
    unsafe fn signed_tile<W: bytemuck::Pod + Scaled>(x: &[u8], ys: &[&[u8]], out: &mut [f32], quants: impl Fn(&W) -> __m256i) {
        let n = ys.len().min(out.len()).min(8);
        let Some(x) = cast_or_none::<W>(x) else { return out.fill(f32::NAN) };
        let Some(rows) = cast_rows::<BlockQ8_0>(&ys[..n], x.len()) else { return out.fill(f32::NAN) };
        let mut acc = [_mm256_setzero_ps(); 8];
        for (i, a) in x.iter().enumerate() {
            let (qa, dw) = (quants(a), a.d());
            for k in 0..n {
                let b = rows[k].get_unchecked(i);
                let (ua, sb) = abs_sign(qa, _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i));
                acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(dw * fp16(b.d)), _mm256_cvtepi32_ps(dot_u8i8_avx2(ua, sb)), acc[k]);
            }
        }
        for k in 0..n {
            out[k] = finish(acc[k]);
        }
    }

    /// Q4_1 (unsigned nibbles against Q8_1) for up to 8 tokens, with each token's Σ m·s.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile_q4_1(x: &[u8], ys: &[&[u8]], out: &mut [f32]) {
        let n = ys.len().min(out.len()).min(8);
        let Some(x) = cast_or_none::<BlockQ4_1>(x) else { return out.fill(f32::NAN) };
        let Some(rows) = cast_rows::<BlockQ8_1>(&ys[..n], x.len()) else { return out.fill(f32::NAN) };
        let (mut acc, mut summs) = ([_mm256_setzero_ps(); 8], [0f32; 8]);
        for (i, a) in x.iter().enumerate() {
            let (qa, dw, mw) = (nibbles_j_j16(a.qs.as_ptr()), fp16(a.d), fp16(a.m));
            for k in 0..n {
                let b = rows[k].get_unchecked(i);
                let lanes = _mm256_cvtepi32_ps(dot_u8i8_avx2(qa, _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i)));
                acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(dw * fp16(b.d)), lanes, acc[k]);
                summs[k] += mw * fp16(b.s);
            }
        }
        for k in 0..n {
            out[k] = finish(acc[k]) + summs[k];
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn finish(acc: __m256) -> f32 {
        let mut l = [0f32; 8];
        _mm256_storeu_ps(l.as_mut_ptr(), acc);
        hsum8(&l)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn simd_gives_the_portable_bits() {
            if !(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("f16c")) {
                eprintln!("no AVX2: only the portable kernels run here");
                return;
            }
            let mut seed = 11u64;
            let mut rnd = || {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
            };
            for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q4_1] {
                let cols = 640;
                let w: Vec<f32> = (0..cols).map(|_| rnd()).collect();
                let a: Vec<f32> = (0..cols).map(|_| rnd() * 3.0).collect();
                let mut wq = vec![0u8; ty.row_bytes(cols).unwrap()];
                crate::quantize_row(ty, &w, &mut wq).unwrap();
                let aty = ty.vec_dot_type();
                let mut aq = vec![0u8; aty.row_bytes(cols).unwrap()];
                crate::quantize_row(aty, &a, &mut aq).unwrap();
                let simd = dot_fn(ty).unwrap()(&wq, &aq);
                let portable = match ty {
                    GgmlType::Q8_0 => portable::<BlockQ8_0, BlockQ8_0>(&wq, &aq, |a, e| a.qs[e] as i32, |_| 0.0),
                    GgmlType::Q4_0 => portable::<BlockQ4_0, BlockQ8_0>(&wq, &aq, |a, e| nibble(&a.qs, e) - 8, |_| 0.0),
                    GgmlType::Q5_0 => portable::<BlockQ5_0, BlockQ8_0>(&wq, &aq, super::super::q5_0, |_| 0.0),
                    _ => portable::<BlockQ4_1, BlockQ8_1>(&wq, &aq, |a, e| nibble(&a.qs, e), |(a, b)| a.m.to_f32() * b.s.to_f32()),
                };
                assert_eq!(simd.to_bits(), portable.to_bits(), "{ty}: {simd} vs {portable}");
                if let Some(tile) = tile_fn(ty) {
                    let mut out = [0f32; 8];
                    for n in 1..=8 {
                        let ys = vec![&aq[..]; n];
                        tile(&wq, &ys, &mut out[..n]);
                        assert!(out[..n].iter().all(|o| o.to_bits() == simd.to_bits()), "{ty} tile of {n}: {out:?} vs {simd}");
                    }
                }
                // And it is the dot product: close to kiln's own kernel.
                let own = super::super::super::vec_dot_fn(ty)(&wq, &aq);
                assert!((simd - own).abs() <= 1e-4 * (1.0 + own.abs()), "{ty}: {simd} vs {own}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q6_k_in_ggml_order_is_the_dot_product() {
        let cols = 768;
        let w: Vec<f32> = (0..cols).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
        let a: Vec<f32> = (0..cols).map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.021).collect();
        let mut wq = vec![0u8; GgmlType::Q6_K.row_bytes(cols).unwrap()];
        crate::quantize_row(GgmlType::Q6_K, &w, &mut wq).unwrap();
        let mut aq = vec![0u8; GgmlType::Q8_K.row_bytes(cols).unwrap()];
        crate::quantize_row(GgmlType::Q8_K, &a, &mut aq).unwrap();
        let ours = dot_fn(GgmlType::Q6_K).unwrap()(&wq, &aq);
        assert_eq!(ours.to_bits(), q6_k(&wq, &aq).to_bits(), "SIMD and portable orders");
        let own = super::super::vec_dot_fn(GgmlType::Q6_K)(&wq, &aq);
        assert!((ours - own).abs() <= 1e-4 * (1.0 + own.abs()), "{ours} vs {own}");
        assert!(dot_fn(GgmlType::Q6_K).unwrap()(&wq, &aq[..aq.len() - 1]).is_nan());
    }
}
