//! The legacy 32-element dot products in llama.cpp's summation order, for a mode that gives
//! llama.cpp's answers as closely as its CPU build computes them (`KILN_LLAMACPP_ORDER=1`, or
//! [`set_enabled`]).
//!
//! ggml (AVX2, also on AVX-512 machines) and tinyBLAS sum a Q8_0/Q5_0/Q4_0/Q4_1 row in eight
//! float lanes: per block, lane m takes the exact integer dot of elements 4m..4m+3, converted to
//! f32, times the block's d_w·d_x, added with an FMA to that lane's running sum; the eight sums
//! are added at the end as (l0+l4 + l2+l6) + (l1+l5 + l3+l7). Q4_1 adds Σ m·s per block to a
//! separate f32 sum, added last. kiln's own kernels sum each block's exact dot into one
//! accumulator (the same bits for every batch shape and every path, and faster for the row-
//! interleaved kernels), which differs from llama.cpp by an ulp here and there; gemma3, whose
//! first positions amplify such ulps through attention's f16 roundings, comes out at max logit
//! difference 2.07 against llama.cpp's reference with kiln's order and 1.16 with this one.
//!
//! In this mode the legacy types go through these dot kernels for every product (one weight row
//! against one token at a time): exact, and slower in prefill than kiln's own tiles and GEMMs.
//! K-quants keep kiln's kernels (llama.cpp's order there depends on its repacking).

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
        return x86::dot_fn(ty);
    }
    Some(match ty {
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
    use super::super::x86::{abs_sign, cast_or_none, fp16, nibbles_j_j16, q5_0_quants};
    use super::*;
    use std::arch::x86_64::*;

    pub fn dot_fn(ty: GgmlType) -> Option<VecDotFn> {
        // SAFETY (each): handed out only when AVX2, FMA and F16C were detected.
        Some(match ty {
            GgmlType::Q8_0 => |x, y| unsafe { q8_0(x, y) },
            GgmlType::Q4_0 => |x, y| unsafe { q4_0(x, y) },
            GgmlType::Q5_0 => |x, y| unsafe { q5_0(x, y) },
            GgmlType::Q4_1 => |x, y| unsafe { q4_1(x, y) },
            _ => return None,
        })
    }

    pub fn tile_fn(ty: GgmlType) -> Option<crate::simd::VecDotTileFn> {
        // SAFETY (each): handed out only when AVX2, FMA and F16C were detected.
        Some(match ty {
            GgmlType::Q8_0 => |x, ys, out| unsafe { signed_tile::<BlockQ8_0>(x, ys, out, |a| _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i)) },
            GgmlType::Q4_0 => |x, ys, out| unsafe { signed_tile::<BlockQ4_0>(x, ys, out, |a| _mm256_sub_epi8(nibbles_j_j16(a.qs.as_ptr()), _mm256_set1_epi8(8))) },
            GgmlType::Q5_0 => |x, ys, out| unsafe { signed_tile::<BlockQ5_0>(x, ys, out, |a| q5_0_quants(a.qh, a.qs.as_ptr())) },
            _ => return None,
        })
    }

    /// [`signed_rows`] for up to 8 tokens at once: the weight block unpacked once, each token's
    /// lanes and FMA as in the dot kernel.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn signed_tile<W: bytemuck::Pod + Scaled>(x: &[u8], ys: &[&[u8]], out: &mut [f32], quants: impl Fn(&W) -> __m256i) {
        let n = ys.len().min(out.len()).min(8);
        let Some(x) = cast_or_none::<W>(x) else { return out.fill(f32::NAN) };
        let mut rows: [&[BlockQ8_0]; 8] = [&[]; 8];
        for (r, y) in rows.iter_mut().zip(&ys[..n]) {
            match cast_or_none::<BlockQ8_0>(y) {
                Some(b) if b.len() == x.len() => *r = b,
                _ => return out.fill(f32::NAN),
            }
        }
        let mut acc = [_mm256_setzero_ps(); 8];
        for (i, a) in x.iter().enumerate() {
            let (qa, dw) = (quants(a), a.d());
            for k in 0..n {
                let b = rows[k].get_unchecked(i);
                acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(dw * fp16(b.d)), lanes_signed(qa, b), acc[k]);
            }
        }
        for k in 0..n {
            out[k] = finish(acc[k]);
        }
    }

    /// Eight lanes of 4-element integer dots of signed weight bytes `qa` with `b`'s quants.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn lanes_signed(qa: __m256i, b: &BlockQ8_0) -> __m256 {
        let (ua, sb) = abs_sign(qa, _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i));
        _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(ua, sb), _mm256_set1_epi16(1)))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn finish(acc: __m256) -> f32 {
        let mut l = [0f32; 8];
        _mm256_storeu_ps(l.as_mut_ptr(), acc);
        hsum8(&l)
    }

    /// Σ over blocks of FMA(d_w·d_x, lanes) for weight blocks whose quants `quants` unpacks.
    #[inline(always)]
    unsafe fn signed_rows<W: bytemuck::Pod + Scaled>(x: &[u8], y: &[u8], quants: impl Fn(&W) -> __m256i) -> f32 {
        let (Some(x), Some(y)) = (cast_or_none::<W>(x), cast_or_none::<BlockQ8_0>(y)) else { return f32::NAN };
        if x.len() != y.len() {
            return f32::NAN;
        }
        let mut acc = _mm256_setzero_ps();
        for (a, b) in x.iter().zip(y) {
            let d = _mm256_set1_ps(a.d() * fp16(b.d));
            acc = _mm256_fmadd_ps(d, lanes_signed(quants(a), b), acc);
        }
        finish(acc)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q8_0(x: &[u8], y: &[u8]) -> f32 {
        signed_rows::<BlockQ8_0>(x, y, |a| _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q4_0(x: &[u8], y: &[u8]) -> f32 {
        signed_rows::<BlockQ4_0>(x, y, |a| _mm256_sub_epi8(nibbles_j_j16(a.qs.as_ptr()), _mm256_set1_epi8(8)))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q5_0(x: &[u8], y: &[u8]) -> f32 {
        signed_rows::<BlockQ5_0>(x, y, |a| q5_0_quants(a.qh, a.qs.as_ptr()))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q4_1(x: &[u8], y: &[u8]) -> f32 {
        let (Some(x), Some(y)) = (cast_or_none::<BlockQ4_1>(x), cast_or_none::<BlockQ8_1>(y)) else { return f32::NAN };
        if x.len() != y.len() {
            return f32::NAN;
        }
        let (mut acc, mut summs) = (_mm256_setzero_ps(), 0f32);
        for (a, b) in x.iter().zip(y) {
            let qb = _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i);
            let lanes = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(nibbles_j_j16(a.qs.as_ptr()), qb), _mm256_set1_epi16(1)));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(a.d) * fp16(b.d)), lanes, acc);
            summs += fp16(a.m) * fp16(b.s);
        }
        finish(acc) + summs
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
