//! NEON dot products for aarch64. The i8·i8 dot uses `vmull_s8` + pairwise adds (baseline NEON,
//! no dotprod requirement), so every AArch64 CPU can run them.
use crate::quants::common::get_scale_min_k4;
use crate::quants::{BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1};
use crate::simd::VecDotFn;
use crate::types::GgmlType;
use std::arch::aarch64::*;

fn cast<T: bytemuck::Pod>(b: &[u8]) -> Option<&[T]> {
    bytemuck::try_cast_slice(b).ok()
}

pub fn vec_dot_fn(ty: GgmlType) -> Option<VecDotFn> {
    // SAFETY (all): NEON is part of the aarch64 baseline.
    Some(match ty {
        GgmlType::Q4_K => |x, y| match (cast(x), cast(y)) {
            (Some(a), Some(b)) => unsafe { vec_dot_q4_k_q8_k(a, b) },
            _ => f32::NAN,
        },
        GgmlType::Q6_K => |x, y| match (cast(x), cast(y)) {
            (Some(a), Some(b)) => unsafe { vec_dot_q6_k_q8_k(a, b) },
            _ => f32::NAN,
        },
        GgmlType::Q8_0 => |x, y| match (cast(x), cast(y)) {
            (Some(a), Some(b)) => unsafe { vec_dot_q8_0_q8_0(a, b) },
            _ => f32::NAN,
        },
        GgmlType::Q4_0 => |x, y| match (cast(x), cast(y)) {
            (Some(a), Some(b)) => unsafe { vec_dot_q4_0_q8_0(a, b) },
            _ => f32::NAN,
        },
        GgmlType::Q4_1 => |x, y| match (cast(x), cast(y)) {
            (Some(a), Some(b)) => unsafe { vec_dot_q4_1_q8_1(a, b) },
            _ => f32::NAN,
        },
        GgmlType::Q5_0 => |x, y| match (cast(x), cast(y)) {
            (Some(a), Some(b)) => unsafe { vec_dot_q5_0_q8_0(a, b) },
            _ => f32::NAN,
        },
        _ => return None,
    })
}

/// Σ a[i]·b[i] over 16 signed bytes, as 4 i32 partial sums.
#[inline(always)]
unsafe fn ndot(a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let p0 = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    let p1 = vmull_high_s8(a, b);
    vpaddq_s32(vpaddlq_s16(p0), vpaddlq_s16(p1))
}

#[inline(always)]
unsafe fn ld(p: *const i8) -> int8x16_t {
    vld1q_s8(p)
}

unsafe fn vec_dot_q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0f32;
    for (a, b) in x.iter().zip(y) {
        let s = vaddq_s32(ndot(ld(a.qs.as_ptr()), ld(b.qs.as_ptr())), ndot(ld(a.qs.as_ptr().add(16)), ld(b.qs.as_ptr().add(16))));
        sumf += vaddvq_s32(s) as f32 * (a.d.to_f32() * b.d.to_f32());
    }
    sumf
}

/// Low and high nibbles of 16 packed bytes as unsigned bytes (elements j and j+16).
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> (uint8x16_t, uint8x16_t) {
    let q = vld1q_u8(p);
    (vandq_u8(q, vdupq_n_u8(0x0F)), vshrq_n_u8(q, 4))
}

unsafe fn vec_dot_q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0f32;
    let off = vdupq_n_s8(8);
    for (a, b) in x.iter().zip(y) {
        let (lo, hi) = nibbles(a.qs.as_ptr());
        let lo = vsubq_s8(vreinterpretq_s8_u8(lo), off);
        let hi = vsubq_s8(vreinterpretq_s8_u8(hi), off);
        let s = vaddq_s32(ndot(lo, ld(b.qs.as_ptr())), ndot(hi, ld(b.qs.as_ptr().add(16))));
        sumf += vaddvq_s32(s) as f32 * (a.d.to_f32() * b.d.to_f32());
    }
    sumf
}

unsafe fn vec_dot_q4_1_q8_1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    let mut sumf = 0f32;
    for (a, b) in x.iter().zip(y) {
        let (lo, hi) = nibbles(a.qs.as_ptr());
        let s = vaddq_s32(
            ndot(vreinterpretq_s8_u8(lo), ld(b.qs.as_ptr())),
            ndot(vreinterpretq_s8_u8(hi), ld(b.qs.as_ptr().add(16))),
        );
        sumf += vaddvq_s32(s) as f32 * (a.d.to_f32() * b.d.to_f32()) + a.m.to_f32() * b.s.to_f32();
    }
    sumf
}

unsafe fn vec_dot_q5_0_q8_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0f32;
    let off = vdupq_n_s8(16);
    for (a, b) in x.iter().zip(y) {
        let qh = u32::from_le_bytes(a.qh);
        let mut hb = [0u8; 32];
        for (j, h) in hb.iter_mut().enumerate() {
            *h = (((qh >> j) & 1) << 4) as u8;
        }
        let (lo, hi) = nibbles(a.qs.as_ptr());
        let lo = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo, vld1q_u8(hb.as_ptr()))), off);
        let hi = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(hi, vld1q_u8(hb.as_ptr().add(16)))), off);
        let s = vaddq_s32(ndot(lo, ld(b.qs.as_ptr())), ndot(hi, ld(b.qs.as_ptr().add(16))));
        sumf += vaddvq_s32(s) as f32 * (a.d.to_f32() * b.d.to_f32());
    }
    sumf
}

unsafe fn vec_dot_q4_k_q8_k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    let mut sumf = 0f32;
    for (b, a) in x.iter().zip(y) {
        let (mut sumi, mut summ) = (0i32, 0i32);
        for c in 0..4 {
            let (lo0, hi0) = nibbles(b.qs.as_ptr().add(32 * c));
            let (lo1, hi1) = nibbles(b.qs.as_ptr().add(32 * c + 16));
            let yp = a.qs.as_ptr().add(64 * c);
            let s_lo = vaddq_s32(ndot(vreinterpretq_s8_u8(lo0), ld(yp)), ndot(vreinterpretq_s8_u8(lo1), ld(yp.add(16))));
            let s_hi = vaddq_s32(ndot(vreinterpretq_s8_u8(hi0), ld(yp.add(32))), ndot(vreinterpretq_s8_u8(hi1), ld(yp.add(48))));
            let (sc0, m0) = get_scale_min_k4(2 * c, &b.scales);
            let (sc1, m1) = get_scale_min_k4(2 * c + 1, &b.scales);
            sumi += sc0 as i32 * vaddvq_s32(s_lo) + sc1 as i32 * vaddvq_s32(s_hi);
            summ += m0 as i32 * (a.bsums[4 * c] as i32 + a.bsums[4 * c + 1] as i32)
                + m1 as i32 * (a.bsums[4 * c + 2] as i32 + a.bsums[4 * c + 3] as i32);
        }
        sumf += a.d * b.d.to_f32() * sumi as f32 - a.d * b.dmin.to_f32() * summ as f32;
    }
    sumf
}

unsafe fn vec_dot_q6_k_q8_k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    let mut sumf = 0f32;
    let off = vdupq_n_s8(32);
    for (b, a) in x.iter().zip(y) {
        let mut sumi = 0i32;
        for n in 0..2 {
            for half in 0..2 {
                let qh = vld1q_u8(b.qh.as_ptr().add(32 * n + 16 * half));
                for g in 0..4 {
                    let ql = vld1q_u8(b.ql.as_ptr().add(64 * n + 32 * (g & 1) + 16 * half));
                    let lo = if g < 2 { vandq_u8(ql, vdupq_n_u8(0x0F)) } else { vshrq_n_u8(ql, 4) };
                    let hi = vandq_u8(vshlq_u8(qh, vdupq_n_s8(-2 * g as i8)), vdupq_n_u8(3));
                    let q = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo, vshlq_n_u8(hi, 4))), off);
                    let e = 128 * n + 32 * g + 16 * half;
                    let s = vaddvq_s32(ndot(q, ld(a.qs.as_ptr().add(e))));
                    sumi += b.scales[e / 16] as i32 * s;
                }
            }
        }
        sumf += b.d.to_f32() * a.d * sumi as f32;
    }
    sumf
}
