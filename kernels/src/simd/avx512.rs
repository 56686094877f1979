//! AVX-512 (F/BW/VL + VNNI) dot products. K-quants use 512-bit `vpdpbusd` with one weight
//! unpack shared by up to 4 tokens (the prefill tile); legacy 32-element types use the 256-bit
//! VNNI form, one block per register.
use super::x86::{cast_or_none, fp16, hsum256, unpack_k4_scales};
use crate::quants::{BlockQ4K, BlockQ6K, BlockQ8K};
use crate::simd::{VecDotFn, VecDotTileFn};
use crate::types::GgmlType;
use std::arch::x86_64::*;

pub fn vec_dot_fn(ty: GgmlType) -> Option<VecDotFn> {
    Some(match ty {
        GgmlType::Q4_K => |x, y| tile_dispatch(x, &[y], q4k::<1>, q4k::<2>, q4k::<3>, q4k::<4>).0,
        GgmlType::Q6_K => |x, y| tile_dispatch(x, &[y], q6k::<1>, q6k::<2>, q6k::<3>, q6k::<4>).0,
        GgmlType::Q4_0 => |x, y| unsafe { super::x86::vnni::vec_dot_q4_0_q8_0(x, y) },
        GgmlType::Q4_1 => |x, y| unsafe { super::x86::vnni::vec_dot_q4_1_q8_1(x, y) },
        GgmlType::Q5_0 => |x, y| unsafe { super::x86::vnni::vec_dot_q5_0_q8_0(x, y) },
        GgmlType::Q8_0 => |x, y| unsafe { super::x86::vnni::vec_dot_q8_0_q8_0(x, y) },
        _ => return None,
    })
}

pub fn tile_fn(ty: GgmlType) -> Option<VecDotTileFn> {
    Some(match ty {
        GgmlType::Q4_K => |x, ys, out| {
            let (first, rest) = tile_dispatch(x, ys, q4k::<1>, q4k::<2>, q4k::<3>, q4k::<4>);
            out[0] = first;
            out[1..ys.len()].copy_from_slice(&rest[..ys.len() - 1]);
        },
        GgmlType::Q6_K => |x, ys, out| {
            let (first, rest) = tile_dispatch(x, ys, q6k::<1>, q6k::<2>, q6k::<3>, q6k::<4>);
            out[0] = first;
            out[1..ys.len()].copy_from_slice(&rest[..ys.len() - 1]);
        },
        _ => return None,
    })
}

type Tile<W, const N: usize> = unsafe fn(&[W], &[&[BlockQ8K]; N]) -> [f32; N];

/// Casts the rows and calls the kernel for ys.len() tokens; returns (out[0], out[1..4]).
/// Falls back to the scalar kernel if an activation row is not 4-byte aligned.
fn tile_dispatch<W: bytemuck::Pod>(
    x: &[u8],
    ys: &[&[u8]],
    k1: Tile<W, 1>,
    k2: Tile<W, 2>,
    k3: Tile<W, 3>,
    k4: Tile<W, 4>,
) -> (f32, [f32; 3]) {
    let Some(w) = cast_or_none::<W>(x) else { return (f32::NAN, [f32::NAN; 3]) };
    let mut yb: [&[BlockQ8K]; 4] = [&[]; 4];
    for (o, y) in yb.iter_mut().zip(ys) {
        match cast_or_none::<BlockQ8K>(y) {
            Some(b) if b.len() == w.len() => *o = b,
            _ => return (f32::NAN, [f32::NAN; 3]),
        }
    }
    // SAFETY: these kernels are only handed out when AVX-512 BW/VL + VNNI were detected.
    unsafe {
        match ys.len() {
            1 => (k1(w, &[yb[0]])[0], [0.0; 3]),
            2 => {
                let r = k2(w, &[yb[0], yb[1]]);
                (r[0], [r[1], 0.0, 0.0])
            }
            3 => {
                let r = k3(w, &[yb[0], yb[1], yb[2]]);
                (r[0], [r[1], r[2], 0.0])
            }
            _ => {
                let r = k4(w, &[yb[0], yb[1], yb[2], yb[3]]);
                (r[0], [r[1], r[2], r[3]])
            }
        }
    }
}

/// Q4_K · Q8_K for N tokens. Per super-block: each 32-byte chunk c of qs is broadcast to both
/// halves of a zmm and shifted by [0 | 4] so the register holds sub-blocks 2c and 2c+1 in
/// element order (matching q8[64c..64c+64]); vpdpbusd gives 16 partial sums of 4 products,
/// weighted by d·scale per half; the mins go through bsums (spec §2.2).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q4k<const N: usize>(x: &[BlockQ4K], ys: &[&[BlockQ8K]; N]) -> [f32; N] {
    let m4 = _mm512_set1_epi8(0x0F);
    let shift = _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0);
    let idx: [__m512i; 4] = std::array::from_fn(|c| {
        let (a, b) = (2 * c as i32, 2 * c as i32 + 1);
        _mm512_set_epi32(b, b, b, b, b, b, b, b, a, a, a, a, a, a, a, a)
    });
    let mut acc = [_mm512_setzero_ps(); N];
    let mut accm = [_mm256_setzero_ps(); N];
    for (i, b) in x.iter().enumerate() {
        let u = unpack_k4_scales(&b.scales);
        let (d, dmin) = (fp16(b.d), fp16(b.dmin));
        let sc = _mm512_cvtepu8_epi32(_mm_set_epi32(0, 0, u[1] as i32, u[0] as i32));
        let scf = _mm512_mul_ps(_mm512_cvtepi32_ps(sc), _mm512_set1_ps(d));
        let dsc: [__m512; 4] = std::array::from_fn(|c| _mm512_permutexvar_ps(idx[c], scf));
        let mins8 = _mm_set_epi32(0, 0, u[3] as i32, u[2] as i32);
        let mins16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mins8, mins8));
        let qp = b.qs.as_ptr();
        let q: [__m512i; 4] = std::array::from_fn(|c| {
            let v = _mm512_broadcast_i64x4(_mm256_loadu_si256(qp.add(32 * c) as *const __m256i));
            _mm512_and_si512(_mm512_srlv_epi64(v, shift), m4)
        });
        for t in 0..N {
            let y = ys[t].get_unchecked(i);
            let yp = y.qs.as_ptr();
            let mut s = _mm512_setzero_ps();
            for c in 0..4 {
                let a = _mm512_loadu_si512(yp.add(64 * c) as *const __m512i);
                let p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[c], a);
                s = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), dsc[c], s);
            }
            acc[t] = _mm512_fmadd_ps(s, _mm512_set1_ps(y.d), acc[t]);
            let bs = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
            let pm = _mm256_madd_epi16(bs, mins16);
            accm[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pm), _mm256_set1_ps(-dmin * y.d), accm[t]);
        }
    }
    std::array::from_fn(|t| _mm512_reduce_add_ps(acc[t]) + hsum256(accm[t]))
}

/// Q6_K · Q8_K for N tokens. The 64-element chunk k = 2n + h of the super-block takes its low
/// nibbles from ql[64n..64n+64] (shifted by 4h) and its top bits from qh[32n..32n+32]
/// (shifted by 4h | 4h+2); the unsigned 0..63 quants go through vpdpbusd and the −32 offset is
/// folded in as −32·Σ scale·bsum.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q6k<const N: usize>(x: &[BlockQ6K], ys: &[&[BlockQ8K]; N]) -> [f32; N] {
    let m4 = _mm512_set1_epi8(0x0F);
    let m2 = _mm512_set1_epi8(0x03);
    let idx: [__m512i; 4] = std::array::from_fn(|k| {
        let b = 4 * k as i32;
        _mm512_set_epi32(b + 3, b + 3, b + 3, b + 3, b + 2, b + 2, b + 2, b + 2, b + 1, b + 1, b + 1, b + 1, b, b, b, b)
    });
    let lo_shift = [_mm512_set1_epi64(0), _mm512_set1_epi64(4)];
    let hi_shift = [_mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0), _mm512_set_epi64(6, 6, 6, 6, 4, 4, 4, 4)];
    let mut acc = [_mm512_setzero_ps(); N];
    let mut accb = [_mm256_setzero_ps(); N];
    for (i, b) in x.iter().enumerate() {
        let d = fp16(b.d);
        let sc128 = _mm_loadu_si128(b.scales.as_ptr() as *const __m128i);
        let scf = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(sc128)), _mm512_set1_ps(d));
        let dsc: [__m512; 4] = std::array::from_fn(|k| _mm512_permutexvar_ps(idx[k], scf));
        let sc16 = _mm256_cvtepi8_epi16(sc128);
        let q: [__m512i; 4] = std::array::from_fn(|k| {
            let (n, h) = (k / 2, k % 2);
            let ql = _mm512_loadu_si512(b.ql.as_ptr().add(64 * n) as *const __m512i);
            let lo = _mm512_and_si512(_mm512_srlv_epi64(ql, lo_shift[h]), m4);
            let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(b.qh.as_ptr().add(32 * n) as *const __m256i));
            let hi = _mm512_and_si512(_mm512_srlv_epi64(qh, hi_shift[h]), m2);
            _mm512_or_si512(lo, _mm512_slli_epi16(hi, 4))
        });
        for t in 0..N {
            let y = ys[t].get_unchecked(i);
            let yp = y.qs.as_ptr();
            let mut s = _mm512_setzero_ps();
            for k in 0..4 {
                let a = _mm512_loadu_si512(yp.add(64 * k) as *const __m512i);
                let p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[k], a);
                s = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), dsc[k], s);
            }
            acc[t] = _mm512_fmadd_ps(s, _mm512_set1_ps(y.d), acc[t]);
            let bs = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
            let pb = _mm256_madd_epi16(bs, sc16);
            accb[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pb), _mm256_set1_ps(-32.0 * d * y.d), accb[t]);
        }
    }
    std::array::from_fn(|t| _mm512_reduce_add_ps(acc[t]) + hsum256(accb[t]))
}
