//! AVX-512 (F/BW/VL + VNNI) dot products. K-quants use 512-bit `vpdpbusd` with one weight
//! unpack shared by up to 4 tokens (the prefill tile); legacy 32-element types use the 256-bit
//! VNNI form, one block per register.
use super::x86::{cast_or_none, fp16x16, unpack_k4_scales};
use crate::quants::{BlockQ4K, BlockQ6K, BlockQ8K};
use crate::simd::{MatvecRowsFn, VecDotFn, VecDotTileFn};
use crate::types::GgmlType;
use std::arch::x86_64::*;

pub fn vec_dot_fn(ty: GgmlType) -> Option<VecDotFn> {
    Some(match ty {
        // SAFETY (both): handed out only when AVX-512 BW/VL + VNNI were detected.
        // Without precomputed bsums (matmul passes them through the tile path): build them here.
        GgmlType::Q4_K => |x, y| single(x, y, Kernels::Q4K),
        GgmlType::Q6_K => |x, y| single(x, y, Kernels::Q6K),
        GgmlType::Q4_0 => |x, y| unsafe { super::x86::vnni::vec_dot_q4_0_q8_0(x, y) },
        GgmlType::Q4_1 => |x, y| unsafe { super::x86::vnni::vec_dot_q4_1_q8_1(x, y) },
        GgmlType::Q5_0 => |x, y| unsafe { super::x86::vnni::vec_dot_q5_0_q8_0(x, y) },
        GgmlType::Q8_0 => |x, y| unsafe { super::x86::vnni::vec_dot_q8_0_q8_0(x, y) },
        _ => return None,
    })
}

pub fn tile_fn(ty: GgmlType) -> Option<VecDotTileFn> {
    Some(match ty {
        GgmlType::Q4_K => |x, ys, aux, out| tile::<BlockQ4K>(x, ys, aux, out, Kernels::Q4K),
        GgmlType::Q6_K => |x, ys, aux, out| tile::<BlockQ6K>(x, ys, aux, out, Kernels::Q6K),
        // SAFETY (legacy): handed out only when AVX-512 BW/VL + VNNI were detected.
        GgmlType::Q8_0 => |x, ys, _, out| unsafe { super::x86::vnni::tile_q8_0_q8_0(x, ys, out) },
        GgmlType::Q4_0 => |x, ys, _, out| unsafe { super::x86::vnni::tile_q4_0_q8_0(x, ys, out) },
        GgmlType::Q5_0 => |x, ys, _, out| unsafe { super::x86::vnni::tile_q5_0_q8_0(x, ys, out) },
        GgmlType::Q4_1 => |x, ys, _, out| unsafe { super::x86::vnni::tile_q4_1_q8_1(x, ys, out) },
        _ => return None,
    })
}

pub fn matvec_rows_fn(ty: GgmlType) -> Option<MatvecRowsFn> {
    Some(match ty {
        GgmlType::Q4_K => |w, rb, y, aux, out| rows::<BlockQ4K>(w, rb, y, aux, out, Kernels::Q4K),
        GgmlType::Q6_K => |w, rb, y, aux, out| rows::<BlockQ6K>(w, rb, y, aux, out, Kernels::Q6K),
        // SAFETY (legacy): handed out only when AVX-512 BW/VL + VNNI were detected.
        GgmlType::Q4_0 => |w, rb, y, _, out| unsafe { super::x86::vnni::rows_q4_0(w, rb, y, out) },
        GgmlType::Q4_1 => |w, rb, y, _, out| unsafe { super::x86::vnni::rows_q4_1(w, rb, y, out) },
        GgmlType::Q5_0 => |w, rb, y, _, out| unsafe { super::x86::vnni::rows_q5_0(w, rb, y, out) },
        GgmlType::Q8_0 => |w, rb, y, _, out| unsafe { super::x86::vnni::rows_q8_0(w, rb, y, out) },
        _ => return None,
    })
}

/// Checks the shapes once, then runs the one-token kernel row after row inside one
/// target-feature function (no per-row dispatch), prefetching the weights ahead.
fn rows<W: bytemuck::Pod>(w: &[u8], rb: usize, y: &[u8], aux: &[f32], out: &mut [f32], k: Kernels) {
    let Some(yb) = cast_or_none::<BlockQ8K>(y) else { return out.fill(f32::NAN) };
    let ok = rb == yb.len() * std::mem::size_of::<W>() && aux.len() == 16 * yb.len() && w.len() >= out.len() * rb;
    let align = std::mem::align_of::<W>();
    if !ok || !(w.as_ptr() as usize).is_multiple_of(align) || !rb.is_multiple_of(align) {
        return out.fill(f32::NAN);
    }
    let ys = [(yb, aux)];
    // SAFETY: only handed out when AVX-512 BW/VL + VNNI were detected; shapes checked above.
    unsafe {
        match k {
            Kernels::Q4K => rows_q4k(w, rb, &ys, out),
            Kernels::Q6K => rows_q6k(w, rb, &ys, out),
        }
    }
}

macro_rules! rows_kernel {
    ($name:ident, $block:ty, $kernel:ident) => {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        unsafe fn $name(w: &[u8], rb: usize, ys: &[(&[BlockQ8K], &[f32]); 1], out: &mut [f32]) {
            // The caller checked length and alignment, so every row casts.
            // SAFETY (closure): runs inside this function, with its features.
            crate::matmul::for_each_row(w, rb, out, |row| unsafe { $kernel::<1>(bytemuck::cast_slice::<u8, $block>(row), ys)[0] })
        }
    };
}
rows_kernel!(rows_q4k, BlockQ4K, q4k);
rows_kernel!(rows_q6k, BlockQ6K, q6k);

/// One row · one activation row, computing the scaled bsums on the fly.
fn single(x: &[u8], y: &[u8], k: Kernels) -> f32 {
    let Some(yb) = cast_or_none::<BlockQ8K>(y) else { return f32::NAN };
    // Rows up to 16384 columns stay on the stack.
    let mut stack = [0f32; 16 * 64];
    let mut heap = Vec::new();
    let aux: &mut [f32] = if yb.len() <= 64 {
        &mut stack[..16 * yb.len()]
    } else {
        heap.resize(16 * yb.len(), 0.0);
        &mut heap
    };
    crate::quants::q8_k::scaled_bsums(yb, aux);
    let mut out = [0f32; 1];
    match k {
        Kernels::Q4K => tile::<BlockQ4K>(x, &[y], &[aux], &mut out, k),
        Kernels::Q6K => tile::<BlockQ6K>(x, &[y], &[aux], &mut out, k),
    }
    out[0]
}

#[derive(Clone, Copy)]
enum Kernels {
    Q4K,
    Q6K,
}

/// Casts the rows and runs the kernel for ys.len() (1..=TILE_MAX) tokens into out.
/// Misaligned or mismatched activation rows give NaN (never produced by `QuantizedActs`).
fn tile<W: bytemuck::Pod>(x: &[u8], ys: &[&[u8]], aux: &[&[f32]], out: &mut [f32], k: Kernels) {
    let Some(w) = cast_or_none::<W>(x) else { return out.fill(f32::NAN) };
    let nb = w.len();
    let mut yb: [(&[BlockQ8K], &[f32]); TILE_MAX] = [(&[], &[]); TILE_MAX];
    for ((o, y), a) in yb.iter_mut().zip(ys).zip(aux) {
        match cast_or_none::<BlockQ8K>(y) {
            Some(b) if b.len() == nb && a.len() == 16 * nb => *o = (b, a),
            _ => return out.fill(f32::NAN),
        }
    }
    if ys.len() != aux.len() {
        return out.fill(f32::NAN);
    }
    let w_bytes: &[u8] = bytemuck::cast_slice(w);
    macro_rules! run {
        ($n:literal) => {{
            let ys: &[(&[BlockQ8K], &[f32]); $n] = match yb[..$n].try_into() {
                Ok(a) => a,
                Err(_) => return,
            };
            // SAFETY: only handed out when AVX-512 BW/VL + VNNI were detected.
            let r: [f32; $n] = unsafe {
                match k {
                    Kernels::Q4K => q4k::<$n>(bytemuck::cast_slice(w_bytes), ys),
                    Kernels::Q6K => q6k::<$n>(bytemuck::cast_slice(w_bytes), ys),
                }
            };
            out[..$n].copy_from_slice(&r);
        }};
    }
    match ys.len() {
        1 => run!(1),
        2 => run!(2),
        3 => run!(3),
        4 => run!(4),
        5 => run!(5),
        6 => run!(6),
        7 => run!(7),
        8 => run!(8),
        _ => out.fill(f32::NAN),
    }
}

/// Most tokens one tile kernel call handles.
pub const TILE_MAX: usize = 8;

/// vpermw indexes that expand per-sub-block i16 scales to match `packs_epi32(p_a, p_b)`:
/// 128-bit lane k holds p_a lanes 4k..4k+4 then p_b lanes 4k..4k+4 (as i16), and those 4
/// i32 lanes each belong to sub-block `a·per + k/div` (chunks a, b = a + 1).
const fn pack_scale_index(a: usize, per: usize, div: usize) -> [i16; 32] {
    let mut idx = [0i16; 32];
    let mut i = 0;
    while i < 32 {
        let (k, pos) = (i / 8, i % 8);
        let c = if pos < 4 { a } else { a + 1 };
        idx[i] = (c * per + k / div) as i16;
        i += 1;
    }
    idx
}

/// Q4_K chunk c, lane k: sub-block 2c + k/2. Q6_K chunk c, lane k: sub-block 4c + k.
static Q4K_IDX: [[i16; 32]; 2] = [pack_scale_index(0, 2, 2), pack_scale_index(2, 2, 2)];
static Q6K_IDX: [[i16; 32]; 2] = [pack_scale_index(0, 4, 1), pack_scale_index(2, 4, 1)];

#[inline(always)]
unsafe fn load_idx(a: &[i16; 32]) -> __m512i {
    _mm512_loadu_si512(a.as_ptr() as *const __m512i)
}

/// Q4_K · Q8_K for N tokens. Per super-block: each 32-byte chunk c of qs is broadcast to both
/// halves of a zmm and shifted by [0 | 4] so the register holds sub-blocks 2c and 2c+1 in
/// element order (matching q8[64c..64c+64]); vpdpbusd gives 16 partial sums of 4 products
/// (|sum| <= 7620, so two results pack to i16 losslessly), and one vpmaddwd per chunk pair
/// applies the sub-block scales. The mins go through bsums (spec §2.2).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q4k<const N: usize>(x: &[BlockQ4K], ys: &[(&[BlockQ8K], &[f32]); N]) -> [f32; N] {
    let m4 = _mm512_set1_epi8(0x0F);
    let shift = _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0);
    let (idx01, idx23) = (load_idx(&Q4K_IDX[0]), load_idx(&Q4K_IDX[1]));
    let mut acc = [_mm512_setzero_ps(); N];
    for (i, b) in x.iter().enumerate() {
        let u = unpack_k4_scales(&b.scales);
        let dv = fp16x16(b.d);
        let sc16 = _mm512_cvtepu8_epi16(_mm256_set_epi32(0, 0, 0, 0, 0, 0, u[1] as i32, u[0] as i32));
        let s01 = _mm512_permutexvar_epi16(idx01, sc16);
        let s23 = _mm512_permutexvar_epi16(idx23, sc16);
        // −dmin·min[g/2] for the 16 bsum groups, against d8·bsums[g] from `aux`.
        let mins8 = _mm_set_epi32(0, 0, u[3] as i32, u[2] as i32);
        let mins = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(mins8, mins8)));
        let minsv = _mm512_mul_ps(mins, _mm512_sub_ps(_mm512_setzero_ps(), fp16x16(b.dmin)));
        let qp = b.qs.as_ptr();
        let q: [__m512i; 4] = std::array::from_fn(|c| {
            let v = _mm512_broadcast_i64x4(_mm256_loadu_si256(qp.add(32 * c) as *const __m256i));
            _mm512_and_si512(_mm512_srlv_epi64(v, shift), m4)
        });
        for t in 0..N {
            let (yb, aux) = ys[t];
            let y = yb.get_unchecked(i);
            let yp = y.qs.as_ptr() as *const __m512i;
            let z = _mm512_setzero_si512();
            let p0 = _mm512_dpbusd_epi32(z, q[0], _mm512_loadu_si512(yp));
            let p1 = _mm512_dpbusd_epi32(z, q[1], _mm512_loadu_si512(yp.add(1)));
            let p2 = _mm512_dpbusd_epi32(z, q[2], _mm512_loadu_si512(yp.add(2)));
            let p3 = _mm512_dpbusd_epi32(z, q[3], _mm512_loadu_si512(yp.add(3)));
            let s = _mm512_add_epi32(
                _mm512_madd_epi16(_mm512_packs_epi32(p0, p1), s01),
                _mm512_madd_epi16(_mm512_packs_epi32(p2, p3), s23),
            );
            let sd = _mm512_mul_ps(_mm512_cvtepi32_ps(s), dv);
            acc[t] = _mm512_fmadd_ps(sd, _mm512_set1_ps(y.d), acc[t]);
            acc[t] = _mm512_fmadd_ps(minsv, _mm512_loadu_ps(aux.as_ptr().add(16 * i)), acc[t]);
        }
    }
    std::array::from_fn(|t| _mm512_reduce_add_ps(acc[t]))
}

/// Q6_K · Q8_K for N tokens. The 64-element chunk k = 2n + h of the super-block takes its low
/// nibbles from ql[64n..64n+64] (shifted by 4h) and its top bits from qh[32n..32n+32]
/// (shifted by 4h | 4h+2); the unsigned 0..63 quants go through vpdpbusd (|sum| <= 32004,
/// packs to i16), vpmaddwd applies the signed scales, and the −32 offset is folded in as
/// −32·Σ scale·bsum.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q6k<const N: usize>(x: &[BlockQ6K], ys: &[(&[BlockQ8K], &[f32]); N]) -> [f32; N] {
    let m4 = _mm512_set1_epi8(0x0F);
    let m2 = _mm512_set1_epi8(0x03);
    let (idx01, idx23) = (load_idx(&Q6K_IDX[0]), load_idx(&Q6K_IDX[1]));
    let lo_shift = [_mm512_set1_epi64(0), _mm512_set1_epi64(4)];
    let hi_shift = [_mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0), _mm512_set_epi64(6, 6, 6, 6, 4, 4, 4, 4)];
    let mut acc = [_mm512_setzero_ps(); N];
    for (i, b) in x.iter().enumerate() {
        let dv = fp16x16(b.d);
        let sc128 = _mm_loadu_si128(b.scales.as_ptr() as *const __m128i);
        let sc16 = _mm512_cvtepi8_epi16(_mm256_castsi128_si256(sc128));
        let s01 = _mm512_permutexvar_epi16(idx01, sc16);
        let s23 = _mm512_permutexvar_epi16(idx23, sc16);
        // −32·d·scale[g] against d8·bsums[g] from `aux`.
        let biasv = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(sc128)), _mm512_mul_ps(dv, _mm512_set1_ps(-32.0)));
        let q: [__m512i; 4] = std::array::from_fn(|k| {
            let (n, h) = (k / 2, k % 2);
            let ql = _mm512_loadu_si512(b.ql.as_ptr().add(64 * n) as *const __m512i);
            let lo = _mm512_and_si512(_mm512_srlv_epi64(ql, lo_shift[h]), m4);
            let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(b.qh.as_ptr().add(32 * n) as *const __m256i));
            let hi = _mm512_and_si512(_mm512_srlv_epi64(qh, hi_shift[h]), m2);
            _mm512_or_si512(lo, _mm512_slli_epi16(hi, 4))
        });
        for t in 0..N {
            let (yb, aux) = ys[t];
            let y = yb.get_unchecked(i);
            let yp = y.qs.as_ptr() as *const __m512i;
            let z = _mm512_setzero_si512();
            let p0 = _mm512_dpbusd_epi32(z, q[0], _mm512_loadu_si512(yp));
            let p1 = _mm512_dpbusd_epi32(z, q[1], _mm512_loadu_si512(yp.add(1)));
            let p2 = _mm512_dpbusd_epi32(z, q[2], _mm512_loadu_si512(yp.add(2)));
            let p3 = _mm512_dpbusd_epi32(z, q[3], _mm512_loadu_si512(yp.add(3)));
            let s = _mm512_add_epi32(
                _mm512_madd_epi16(_mm512_packs_epi32(p0, p1), s01),
                _mm512_madd_epi16(_mm512_packs_epi32(p2, p3), s23),
            );
            let sd = _mm512_mul_ps(_mm512_cvtepi32_ps(s), dv);
            acc[t] = _mm512_fmadd_ps(sd, _mm512_set1_ps(y.d), acc[t]);
            acc[t] = _mm512_fmadd_ps(biasv, _mm512_loadu_ps(aux.as_ptr().add(16 * i)), acc[t]);
        }
    }
    std::array::from_fn(|t| _mm512_reduce_add_ps(acc[t]))
}
