//! AVX2 + FMA dot products (llama.cpp `arch/x86/quants.c` style, `vpmaddubsw` + `vpmaddwd`).
use super::x86::{cast_or_none, fp16, hsum256, unpack_k4_scales};
use crate::quants::{BlockQ4K, BlockQ6K, BlockQ8K};
use crate::simd::VecDotFn;
use crate::types::GgmlType;
use std::arch::x86_64::*;

pub fn vec_dot_fn(ty: GgmlType) -> Option<VecDotFn> {
    Some(match ty {
        GgmlType::Q4_K => |x, y| match (cast_or_none(x), cast_or_none(y)) {
            // SAFETY: handed out only when AVX2/FMA/F16C were detected.
            (Some(a), Some(b)) => unsafe { vec_dot_q4_k_q8_k(a, b) },
            _ => f32::NAN,
        },
        GgmlType::Q6_K => |x, y| match (cast_or_none(x), cast_or_none(y)) {
            (Some(a), Some(b)) => unsafe { vec_dot_q6_k_q8_k(a, b) },
            _ => f32::NAN,
        },
        GgmlType::Q4_0 => |x, y| unsafe { super::x86::plain::vec_dot_q4_0_q8_0(x, y) },
        GgmlType::Q4_1 => |x, y| unsafe { super::x86::plain::vec_dot_q4_1_q8_1(x, y) },
        GgmlType::Q5_0 => |x, y| unsafe { super::x86::plain::vec_dot_q5_0_q8_0(x, y) },
        GgmlType::Q8_0 => |x, y| unsafe { super::x86::plain::vec_dot_q8_0_q8_0(x, y) },
        _ => return None,
    })
}

/// Prefill tiles for the legacy types (one weight row against up to 8 tokens).
pub fn tile_fn(ty: GgmlType) -> Option<super::VecDotTileFn> {
    Some(match ty {
        // SAFETY (all): handed out only when AVX2/FMA/F16C were detected.
        GgmlType::Q8_0 => |x, ys, out| unsafe { super::x86::plain::tile_q8_0_q8_0(x, ys, out) },
        GgmlType::Q4_0 => |x, ys, out| unsafe { super::x86::plain::tile_q4_0_q8_0(x, ys, out) },
        GgmlType::Q5_0 => |x, ys, out| unsafe { super::x86::plain::tile_q5_0_q8_0(x, ys, out) },
        GgmlType::Q4_1 => |x, ys, out| unsafe { super::x86::plain::tile_q4_1_q8_1(x, ys, out) },
        _ => return None,
    })
}

/// Q4_K · Q8_K: per 64 elements, low/high nibbles of 32 qs bytes against two 32-byte q8 runs,
/// maddubs to i16, madd with the broadcast sub-block scale to i32 (spec §2.3).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn vec_dot_q4_k_q8_k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    let m4 = _mm256_set1_epi8(0x0F);
    let mut acc = _mm256_setzero_ps();
    let mut accm = _mm256_setzero_ps();
    for (b, a) in x.iter().zip(y) {
        let u = unpack_k4_scales(&b.scales);
        let (d, dmin) = (fp16(b.d) * a.d, -fp16(b.dmin) * a.d);
        let mins8 = _mm_set_epi32(0, 0, u[3] as i32, u[2] as i32);
        let mins16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mins8, mins8));
        let bs = _mm256_loadu_si256(a.bsums.as_ptr() as *const __m256i);
        accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(bs, mins16)), _mm256_set1_ps(dmin), accm);
        let sc = [u[0].to_le_bytes(), u[1].to_le_bytes()];
        let mut sumi = _mm256_setzero_si256();
        for c in 0..4 {
            let q = _mm256_loadu_si256(b.qs.as_ptr().add(32 * c) as *const __m256i);
            let lo = _mm256_and_si256(q, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            let y0 = _mm256_loadu_si256(a.qs.as_ptr().add(64 * c) as *const __m256i);
            let y1 = _mm256_loadu_si256(a.qs.as_ptr().add(64 * c + 32) as *const __m256i);
            let (s0, s1) = (sc[(2 * c) / 4][(2 * c) % 4], sc[(2 * c + 1) / 4][(2 * c + 1) % 4]);
            let p0 = _mm256_madd_epi16(_mm256_set1_epi16(s0 as i16), _mm256_maddubs_epi16(lo, y0));
            let p1 = _mm256_madd_epi16(_mm256_set1_epi16(s1 as i16), _mm256_maddubs_epi16(hi, y1));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum256(acc) + hsum256(accm)
}

/// Q6_K · Q8_K with unsigned 0..63 quants and the −32 folded in through bsums.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn vec_dot_q6_k_q8_k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    let m4 = _mm256_set1_epi8(0x0F);
    let m2 = _mm256_set1_epi8(0x03);
    let mut acc = _mm256_setzero_ps();
    for (b, a) in x.iter().zip(y) {
        let d = fp16(b.d) * a.d;
        let sc128 = _mm_loadu_si128(b.scales.as_ptr() as *const __m128i);
        let bs = _mm256_loadu_si256(a.bsums.as_ptr() as *const __m256i);
        let bias = _mm256_madd_epi16(bs, _mm256_cvtepi8_epi16(sc128));
        let mut sumi = _mm256_mullo_epi32(bias, _mm256_set1_epi32(-32));
        for n in 0..2 {
            let qh = _mm256_loadu_si256(b.qh.as_ptr().add(32 * n) as *const __m256i);
            for g in 0..4 {
                let ql = _mm256_loadu_si256(b.ql.as_ptr().add(64 * n + 32 * (g & 1)) as *const __m256i);
                let lo = if g < 2 { _mm256_and_si256(ql, m4) } else { _mm256_and_si256(_mm256_srli_epi16(ql, 4), m4) };
                let hi = _mm256_and_si256(_mm256_srlv_epi64(qh, _mm256_set1_epi64x(2 * g as i64)), m2);
                let q = _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
                let yv = _mm256_loadu_si256(a.qs.as_ptr().add(128 * n + 32 * g) as *const __m256i);
                let p = _mm256_maddubs_epi16(q, yv);
                // Two sub-blocks of 16: scales [8n + 2g] (lanes 0..3) and [8n + 2g + 1] (4..7).
                let (s0, s1) = (b.scales[8 * n + 2 * g] as i16, b.scales[8 * n + 2 * g + 1] as i16);
                let sv = _mm256_set_m128i(_mm_set1_epi16(s1), _mm_set1_epi16(s0));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, sv));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum256(acc)
}
