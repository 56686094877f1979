//! AVX-512 activation quantizers (`quantize_row_q8_K` / `q8_0` / `q8_1`), run once per matrix
//! input. Q8_K is bit-identical to the scalar reference (`vcvtps2dq` rounds half to even like
//! `nearest_int`); Q8_0/Q8_1 round half to even like ggml's SIMD quantizers, where the scalar
//! reference uses `roundf` (the two differ only on exact .5 ties).
use crate::quants::{BlockQ8K, BlockQ8_0, BlockQ8_1, Half};
use crate::types::{QK8_0, QK_K};
use std::arch::x86_64::*;

/// Callers must have detected AVX-512 F/BW (see `simd::isa`). `x.len() == 256·y.len()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
pub unsafe fn quantize_row_q8_k(x: &[f32], y: &mut [BlockQ8K]) {
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let v: [__m512; 16] = std::array::from_fn(|k| _mm512_loadu_ps(x.as_ptr().add(16 * k)));
        let mut m = _mm512_setzero_ps();
        for vk in &v {
            m = _mm512_max_ps(m, _mm512_abs_ps(*vk));
        }
        let amax = _mm512_reduce_max_ps(m);
        if amax == 0.0 {
            *b = bytemuck::Zeroable::zeroed();
            continue;
        }
        // The reference keeps the first element of largest magnitude, with its sign.
        let am = _mm512_set1_ps(amax);
        let mut max = amax;
        for (k, vk) in v.iter().enumerate() {
            let hit = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(_mm512_abs_ps(*vk), am);
            if hit != 0 {
                max = x[16 * k + hit.trailing_zeros() as usize];
                break;
            }
        }
        let iscale = -127.0 / max;
        let is = _mm512_set1_ps(iscale);
        let q127 = _mm512_set1_epi32(127);
        for (k, vk) in v.iter().enumerate() {
            let q = _mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(*vk, is)), q127);
            _mm_storeu_si128(b.qs.as_mut_ptr().add(16 * k) as *mut __m128i, _mm512_cvtsepi32_epi8(q));
            b.bsums[k] = _mm512_reduce_add_epi32(q) as i16;
        }
        b.d = 1.0 / iscale;
    }
}

/// Quantizes 32 floats to i8 with scale amax/127; returns (d, Σq).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn q8_32(x: &[f32], qs: &mut [i8; QK8_0]) -> (f32, i32) {
    let v0 = _mm512_loadu_ps(x.as_ptr());
    let v1 = _mm512_loadu_ps(x.as_ptr().add(16));
    let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let idv = _mm512_set1_ps(id);
    let q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, idv));
    let q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, idv));
    _mm_storeu_si128(qs.as_mut_ptr() as *mut __m128i, _mm512_cvtsepi32_epi8(q0));
    _mm_storeu_si128(qs.as_mut_ptr().add(16) as *mut __m128i, _mm512_cvtsepi32_epi8(q1));
    (d, _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1)))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
pub unsafe fn quantize_row_q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    for (x, b) in x.chunks_exact(QK8_0).zip(y.iter_mut()) {
        let (d, _) = q8_32(x, &mut b.qs);
        b.d = Half::from_f32(d);
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
pub unsafe fn quantize_row_q8_1(x: &[f32], y: &mut [BlockQ8_1]) {
    for (x, b) in x.chunks_exact(QK8_0).zip(y.iter_mut()) {
        let (d, sum) = q8_32(x, &mut b.qs);
        b.d = Half::from_f32(d);
        b.s = Half::from_f32(sum as f32 * d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quants::{q8_0, q8_1, q8_k};

    fn have() -> bool {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vl")
    }

    fn data(n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32 * 0.731).sin() + 0.2 * (i as f32 * 3.1).cos()) * scale).collect()
    }

    #[test]
    fn q8_k_is_bit_identical_to_reference() {
        if !have() {
            return;
        }
        for (scale, n) in [(1.0, 1024), (-300.0, 512), (1e-20, 256), (0.0, 256)] {
            let mut x = data(n, scale);
            if n == 256 && scale == 1e-20 {
                // Tie between +max and −max: the first one wins.
                x[3] = 5e-20;
                x[7] = -5e-20;
            }
            let mut a = vec![BlockQ8K::zeroed(); n / 256];
            let mut b = a.clone();
            q8_k::quantize_row_q8_k_ref(&x, &mut a);
            unsafe { quantize_row_q8_k(&x, &mut b) };
            assert_eq!(bytemuck::cast_slice::<_, u8>(&a), bytemuck::cast_slice::<_, u8>(&b), "scale {scale}");
        }
    }

    #[test]
    fn q8_0_and_q8_1_match_reference_within_one_step() {
        if !have() {
            return;
        }
        let x = data(1024, 2.5);
        let (mut a, mut b) = (vec![BlockQ8_0::zeroed(); 32], vec![BlockQ8_0::zeroed(); 32]);
        q8_0::quantize_row_q8_0_ref(&x, &mut a);
        unsafe { quantize_row_q8_0(&x, &mut b) };
        for (k, (p, q)) in a.iter().zip(&b).enumerate() {
            assert_eq!(p.d, q.d);
            assert!(p.qs.iter().zip(&q.qs).all(|(u, v)| (*u as i32 - *v as i32).abs() <= 1));
            // The same bits as the AVX2 quantizer's arithmetic (act_avx2).
            let (d, qs, _) = crate::simd::act_avx2::q8_32_plain(&x[32 * k..32 * k + 32]);
            assert_eq!((q.d, q.qs), (Half::from_f32(d), qs), "block {k}");
        }
        let (mut a, mut b) = (vec![BlockQ8_1::zeroed(); 32], vec![BlockQ8_1::zeroed(); 32]);
        q8_1::quantize_row_q8_1_ref(&x, &mut a);
        unsafe { quantize_row_q8_1(&x, &mut b) };
        for (p, q) in a.iter().zip(&b) {
            assert_eq!(p.d, q.d);
            assert!((p.s.to_f32() - q.s.to_f32()).abs() <= 2.0 * p.d.to_f32().abs() + 1e-3);
        }
    }

    use bytemuck::Zeroable;
}
