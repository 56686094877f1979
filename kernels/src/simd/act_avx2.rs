//! AVX2 activation quantizers for Q8_0 / Q8_1: the same arithmetic as the AVX-512 ones
//! (`act_avx512`): d = amax/127, each element times 1/d rounded half to even (`vcvtps2dq`, as
//! ggml's SIMD quantizers round), s = d·Σq for Q8_1. So a model's activations, and with them its
//! results, are the same bits on AVX2 and AVX-512 machines. Q8_K needs none: its scalar
//! reference already rounds half to even and is what both paths compute.
use crate::quants::{BlockQ8_0, BlockQ8_1, Half};
use crate::types::QK8_0;
use std::arch::x86_64::*;

/// Quantizes 32 floats to i8 with scale amax/127; returns (d, Σq).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_32(x: &[f32], qs: &mut [i8; QK8_0]) -> (f32, i32) {
    let sign = _mm256_set1_ps(-0.0);
    let v: [__m256; 4] = std::array::from_fn(|k| _mm256_loadu_ps(x.as_ptr().add(8 * k)));
    let m = v.iter().fold(_mm256_setzero_ps(), |m, vk| _mm256_max_ps(m, _mm256_andnot_ps(sign, *vk)));
    let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let idv = _mm256_set1_ps(id);
    let q: [__m256i; 4] = std::array::from_fn(|k| _mm256_cvtps_epi32(_mm256_mul_ps(v[k], idv)));
    // |q| <= 127, so the saturating packs are exact; packs interleave 128-bit lanes, and the
    // permute puts the 32 bytes back in element order.
    let p01 = _mm256_packs_epi32(q[0], q[1]);
    let p23 = _mm256_packs_epi32(q[2], q[3]);
    let b = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p01, p23), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(qs.as_mut_ptr() as *mut __m256i, b);
    let s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    (d, super::x86::hsum_i32x8(s))
}

/// Callers must have detected AVX2/FMA/F16C (see `simd::isa`). `x.len() == 32·y.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_row_q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    for (x, b) in x.chunks_exact(QK8_0).zip(y.iter_mut()) {
        let (d, _) = q8_32(x, &mut b.qs);
        b.d = Half::from_f32(d);
    }
}

/// Callers must have detected AVX2/FMA/F16C (see `simd::isa`). `x.len() == 32·y.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_row_q8_1(x: &[f32], y: &mut [BlockQ8_1]) {
    for (x, b) in x.chunks_exact(QK8_0).zip(y.iter_mut()) {
        let (d, sum) = q8_32(x, &mut b.qs);
        b.d = Half::from_f32(d);
        b.s = Half::from_f32(sum as f32 * d);
    }
}

/// The SIMD quantizers' arithmetic written plainly: (d, qs, Σq) of one 32-element block.
#[cfg(test)]
pub(crate) fn q8_32_plain(x: &[f32]) -> (f32, [i8; QK8_0], i32) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let q: [i8; QK8_0] = std::array::from_fn(|i| (x[i] * id).round_ties_even() as i8);
    (d, q, q.iter().map(|&v| v as i32).sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytemuck::Zeroable;

    #[test]
    fn q8_0_and_q8_1_are_the_plain_arithmetic_bit_for_bit() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")) {
            eprintln!("SKIPPED: no AVX2 on this CPU");
            return;
        }
        // Smooth data, exact .5 ties (x·(1/d) = k + 0.5 for d = 1), a zero block, negatives.
        let mut x: Vec<f32> = (0..1024).map(|i| ((i as f32 * 0.731).sin() + 0.2 * (i as f32 * 3.1).cos()) * 2.5).collect();
        for (i, v) in x[128..160].iter_mut().enumerate() {
            *v = if i == 0 { 127.0 } else { (i as f32 - 16.0) + 0.5 };
        }
        x[160..192].fill(0.0);
        let n = x.len() / QK8_0;
        let (mut a, mut b) = (vec![BlockQ8_0::zeroed(); n], vec![BlockQ8_1::zeroed(); n]);
        unsafe {
            quantize_row_q8_0(&x, &mut a);
            quantize_row_q8_1(&x, &mut b);
        }
        for (k, xb) in x.chunks_exact(QK8_0).enumerate() {
            let (d, q, s) = q8_32_plain(xb);
            assert_eq!((a[k].d, a[k].qs), (Half::from_f32(d), q), "q8_0 block {k}");
            assert_eq!((b[k].d, b[k].qs, b[k].s), (Half::from_f32(d), q, Half::from_f32(s as f32 * d)), "q8_1 block {k}");
        }
    }
}
