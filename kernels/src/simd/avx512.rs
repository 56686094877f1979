//! AVX-512 (F/BW/VL + VNNI) dot products. K-quants use 512-bit `vpdpbusd` with one weight
//! unpack shared by up to 8 tokens (the prefill tile); legacy 32-element types use the 256-bit
//! VNNI form, one block per register.
use super::x86::{cast_or_none, cast_rows, fp16, hsum_i32x8, hsum_i32x8x8, unpack_k4_scales, TILE_ROWS_MAX_BLOCKS};
use crate::quants::{BlockQ4K, BlockQ6K, BlockQ8K};
use crate::simd::{MatvecRowsFn, VecDotFn, VecDotTileFn};
use crate::types::GgmlType;
use std::arch::x86_64::*;

pub fn vec_dot_fn(ty: GgmlType) -> Option<VecDotFn> {
    Some(match ty {
        // SAFETY (legacy): handed out only when AVX-512 BW/VL + VNNI were detected.
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
        GgmlType::Q4_K => |x, ys, out| tile::<BlockQ4K>(x, ys, out, Kernels::Q4K),
        GgmlType::Q6_K => |x, ys, out| tile::<BlockQ6K>(x, ys, out, Kernels::Q6K),
        // SAFETY (legacy): handed out only when AVX-512 BW/VL + VNNI were detected.
        GgmlType::Q8_0 => |x, ys, out| unsafe { super::x86::vnni::tile8_q8_0(x, ys, out) },
        GgmlType::Q4_0 => |x, ys, out| unsafe { super::x86::vnni::tile8_q4_0(x, ys, out) },
        GgmlType::Q5_0 => |x, ys, out| unsafe { super::x86::vnni::tile8_q5_0(x, ys, out) },
        GgmlType::Q4_1 => |x, ys, out| unsafe { super::x86::vnni::tile8_q4_1(x, ys, out) },
        _ => return None,
    })
}

/// Legacy-type prefill tiles of 8 tokens over a chunk of rows (see `simd::TileRowsFn`); the
/// K-quants keep their per-row tiles (batches of 16+ go through AMX where it exists).
pub fn tile_rows_fn(ty: GgmlType) -> Option<super::TileRowsFn> {
    Some(match ty {
        GgmlType::Q4_K => |w, rb, ys, out| tile_rows::<BlockQ4K>(w, rb, ys, out, Kernels::Q4K),
        GgmlType::Q6_K => |w, rb, ys, out| tile_rows::<BlockQ6K>(w, rb, ys, out, Kernels::Q6K),
        // SAFETY (all): handed out only when AVX-512 BW/VL + VNNI were detected.
        GgmlType::Q8_0 => |w, rb, ys, out| unsafe { super::x86::vnni::tile_rows_q8_0(w, rb, ys, out) },
        GgmlType::Q4_0 => |w, rb, ys, out| unsafe { super::x86::vnni::tile_rows_q4_0(w, rb, ys, out) },
        GgmlType::Q5_0 => |w, rb, ys, out| unsafe { super::x86::vnni::tile_rows_q5_0(w, rb, ys, out) },
        GgmlType::Q4_1 => |w, rb, ys, out| unsafe { super::x86::vnni::tile_rows_q4_1(w, rb, ys, out) },
        _ => return None,
    })
}

/// The mat-vec kernels over rows held as `repack::Layout::Interleaved8` (legacy types only).
pub fn matvec_rows_x8_fn(ty: GgmlType) -> Option<MatvecRowsFn> {
    Some(match ty {
        // SAFETY: handed out only when AVX-512 BW/VL + VNNI were detected.
        GgmlType::Q4_0 => |w, rb, y, out| unsafe { super::x86::vnni::rows_x8_q4_0(w, rb, y, out) },
        GgmlType::Q4_1 => |w, rb, y, out| unsafe { super::x86::vnni::rows_x8_q4_1(w, rb, y, out) },
        GgmlType::Q5_0 => |w, rb, y, out| unsafe { super::x86::vnni::rows_x8_q5_0(w, rb, y, out) },
        GgmlType::Q8_0 => |w, rb, y, out| unsafe { super::x86::vnni::rows_x8_q8_0(w, rb, y, out) },
        _ => return None,
    })
}

pub fn matvec_rows_fn(ty: GgmlType) -> Option<MatvecRowsFn> {
    Some(match ty {
        GgmlType::Q4_K => |w, rb, y, out| rows::<BlockQ4K>(w, rb, y, out, Kernels::Q4K),
        GgmlType::Q6_K => |w, rb, y, out| rows::<BlockQ6K>(w, rb, y, out, Kernels::Q6K),
        // SAFETY (legacy): handed out only when AVX-512 BW/VL + VNNI were detected.
        GgmlType::Q4_0 => |w, rb, y, out| unsafe { super::x86::vnni::rows_q4_0(w, rb, y, out) },
        GgmlType::Q4_1 => |w, rb, y, out| unsafe { super::x86::vnni::rows_q4_1(w, rb, y, out) },
        GgmlType::Q5_0 => |w, rb, y, out| unsafe { super::x86::vnni::rows_q5_0(w, rb, y, out) },
        GgmlType::Q8_0 => |w, rb, y, out| unsafe { super::x86::vnni::rows_q8_0(w, rb, y, out) },
        _ => return None,
    })
}

/// Checks the shapes once, then runs the one-token kernel row after row inside one
/// target-feature function (no per-row dispatch), prefetching the weights ahead.
fn rows<W: bytemuck::Pod>(w: &[u8], rb: usize, y: &[u8], out: &mut [f32], k: Kernels) {
    let Some(yb) = cast_or_none::<BlockQ8K>(y) else { return out.fill(f32::NAN) };
    let ok = rb == yb.len() * std::mem::size_of::<W>() && w.len() >= out.len() * rb;
    let align = std::mem::align_of::<W>();
    if !ok || !(w.as_ptr() as usize).is_multiple_of(align) || !rb.is_multiple_of(align) {
        return out.fill(f32::NAN);
    }
    // SAFETY: only handed out when AVX-512 BW/VL + VNNI were detected; shapes checked above.
    unsafe {
        match k {
            Kernels::Q4K => rows_q4k(w, rb, yb, out),
            Kernels::Q6K => rows_q6k(w, rb, yb, out),
        }
    }
}

/// The mat-vec: one row after another (streaming each row beats reading several side by side:
/// `kiln bench -p 16 -n 128`, synthetic 1.1B tg, one row 29.4 tok/s, four interleaved 24.0,
/// eight as vector lanes 25.4).
macro_rules! rows_kernel {
    ($name:ident, $block:ty, $prep:ident, $step:expr) => {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        unsafe fn $name(w: &[u8], rb: usize, y: &[BlockQ8K], out: &mut [f32]) {
            // The caller checked length and alignment, so every row casts.
            // SAFETY (closure): runs inside this function, with its features.
            crate::matmul::for_each_row(w, rb, out, |row| unsafe {
                let mut acc = 0f32;
                for (b, yb) in bytemuck::cast_slice::<u8, $block>(row).iter().zip(y) {
                    let (s, m) = dot_prep(&$prep(b), yb);
                    acc = $step(acc, b, _mm512_reduce_add_epi32(s), hsum_i32x8(m), yb.d);
                }
                acc
            })
        }
    };
}
rows_kernel!(rows_q4k, BlockQ4K, prep_q4k, |acc, b: &BlockQ4K, s, m, d8| k_quant_step(acc, s, fp16(b.d), m, -fp16(b.dmin), d8));
rows_kernel!(rows_q6k, BlockQ6K, prep_q6k, |acc, b: &BlockQ6K, s, o, d8| q6_k_step(acc, s, o, fp16(b.d), d8));

/// One row · one activation row: the tile kernel for one token.
fn single(x: &[u8], y: &[u8], k: Kernels) -> f32 {
    let mut out = [0f32; 1];
    match k {
        Kernels::Q4K => tile::<BlockQ4K>(x, &[y], &mut out, k),
        Kernels::Q6K => tile::<BlockQ6K>(x, &[y], &mut out, k),
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
fn tile<W: bytemuck::Pod>(x: &[u8], ys: &[&[u8]], out: &mut [f32], k: Kernels) {
    let Some(w) = cast_or_none::<W>(x) else { return out.fill(f32::NAN) };
    let nb = w.len();
    let mut yb: [&[BlockQ8K]; TILE_MAX] = [&[]; TILE_MAX];
    for (o, y) in yb.iter_mut().zip(ys) {
        match cast_or_none::<BlockQ8K>(y) {
            Some(b) if b.len() == nb => *o = b,
            _ => return out.fill(f32::NAN),
        }
    }
    let w_bytes: &[u8] = bytemuck::cast_slice(w);
    macro_rules! run {
        ($n:literal) => {{
            let ys: &[&[BlockQ8K]; $n] = match yb[..$n].try_into() {
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

/// The prefill tile over a chunk of rows, 8 tokens (see `simd::TileRowsFn`): each weight
/// super-block unpacked once, the eight tokens' exact sums reduced together and stepped as the
/// eight lanes of one vector (per lane the operations of [`k_quant_step`] / [`q6_k_step`], so
/// the same bits as [`tile`]). Per-token reductions and scalar steps made [`tile`] the slower
/// prefill on a Zen 4 without AMX, even than AVX2's 8-lane tiles (`kiln bench -p 256 -n 4
/// -t 2 -r 2`, synthetic 1.1B pp, two runs: 62.7 / 72.6 tok/s with [`tile`], 78.4 / 90.9 with
/// AVX2's `tile_rows`).
fn tile_rows<W: bytemuck::Pod>(w: &[u8], rb: usize, ys: &[&[u8]], out: &mut [f32], k: Kernels) {
    let nb = rb / std::mem::size_of::<W>();
    let rows = out.len() / 8;
    let fits = ys.len() == 8 && out.len() == 8 * rows && rb == nb * std::mem::size_of::<W>() && nb <= TILE_ROWS_MAX_BLOCKS && w.len() >= rows * rb;
    let yb = if fits { cast_rows::<BlockQ8K>(ys, nb) } else { None };
    let Some(yb) = yb else {
        for (r, o) in out.chunks_exact_mut(ys.len().max(1)).enumerate() {
            tile::<W>(w.get(r * rb..(r + 1) * rb).unwrap_or(&[]), ys, o, k);
        }
        return;
    };
    // SAFETY: only handed out when AVX-512 BW/VL + VNNI were detected; every activation row has
    // at least nb blocks, and each weight row is checked as it is cast.
    unsafe {
        match k {
            Kernels::Q4K => tile_rows_q4k(w, rb, nb, &yb, out),
            Kernels::Q6K => tile_rows_q6k(w, rb, nb, &yb, out),
        }
    }
}

/// `tile_rows` for one K-quant type: `$prep` unpacks a block, `$step8` steps the eight lanes
/// given the block and the eight tokens' (Σ scale·(q·q8), Σ factor·bsum) and scales.
macro_rules! tile_rows_kernel {
    ($name:ident, $block:ty, $prep:ident, $step8:expr) => {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        unsafe fn $name(w: &[u8], rb: usize, nb: usize, ys: &[&[BlockQ8K]; 8], out: &mut [f32]) {
            // The eight tokens' scales of each block, once for all rows (only nb entries).
            let mut dv = [std::mem::MaybeUninit::<__m256>::uninit(); TILE_ROWS_MAX_BLOCKS];
            for (i, d) in dv.iter_mut().enumerate().take(nb) {
                let e = |t: usize| ys[t].get_unchecked(i).d;
                d.write(_mm256_set_ps(e(7), e(6), e(5), e(4), e(3), e(2), e(1), e(0)));
            }
            for (r, o) in out.chunks_exact_mut(8).enumerate() {
                let Some(x) = cast_or_none::<$block>(&w[r * rb..(r + 1) * rb]) else { o.fill(f32::NAN); continue };
                let mut acc = _mm256_setzero_ps();
                for (i, b) in x.iter().enumerate().take(nb) {
                    let p = $prep(b);
                    let mut s = [_mm256_setzero_si256(); 8];
                    let mut m = [_mm256_setzero_si256(); 8];
                    for t in 0..8 {
                        let (s16, m8) = dot_prep(&p, ys[t].get_unchecked(i));
                        s[t] = _mm256_add_epi32(_mm512_castsi512_si256(s16), _mm512_extracti64x4_epi64(s16, 1));
                        m[t] = m8;
                    }
                    // SAFETY: entries 0..nb were written above.
                    acc = $step8(acc, b, hsum_i32x8x8(&s), hsum_i32x8x8(&m), dv[i].assume_init_read());
                }
                _mm256_storeu_ps(o.as_mut_ptr(), acc);
            }
        }
    };
}
tile_rows_kernel!(tile_rows_q4k, BlockQ4K, prep_q4k, |acc, b: &BlockQ4K, s, m, d8| {
    let acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(fp16(b.d))), d8, acc);
    _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(m), _mm256_set1_ps(-fp16(b.dmin))), d8, acc)
});
tile_rows_kernel!(tile_rows_q6k, BlockQ6K, prep_q6k, |acc, b: &BlockQ6K, s, o, d8| {
    let c = _mm256_sub_epi32(s, _mm256_slli_epi32(o, 5));
    _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(c), _mm256_set1_ps(fp16(b.d))), d8, acc)
});

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

/// A weight super-block unpacked for vpdpbusd: the four 64-element chunks as unsigned bytes,
/// the sub-block scales expanded for vpmaddwd against `packs_epi32` pairs, and the i16 factors
/// of the bsums (Q4_K: min[g/2]; Q6_K: scale[g]).
struct Prep {
    q: [__m512i; 4],
    s01: __m512i,
    s23: __m512i,
    bsum_w: __m256i,
}

/// Q4_K: each 32-byte chunk c of qs is broadcast to both halves of a zmm and shifted by
/// [0 | 4] so the register holds sub-blocks 2c and 2c+1 in element order (matching
/// q8[64c..64c+64]). The mins go through the bsums (spec §2.2).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn prep_q4k(b: &BlockQ4K) -> Prep {
    let (m4, shift) = (_mm512_set1_epi8(0x0F), _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0));
    let u = unpack_k4_scales(&b.scales);
    let sc16 = _mm512_cvtepu8_epi16(_mm256_set_epi32(0, 0, 0, 0, 0, 0, u[1] as i32, u[0] as i32));
    let mins8 = _mm_set_epi32(0, 0, u[3] as i32, u[2] as i32);
    let qp = b.qs.as_ptr();
    Prep {
        q: std::array::from_fn(|c| {
            let v = _mm512_broadcast_i64x4(_mm256_loadu_si256(qp.add(32 * c) as *const __m256i));
            _mm512_and_si512(_mm512_srlv_epi64(v, shift), m4)
        }),
        s01: _mm512_permutexvar_epi16(load_idx(&Q4K_IDX[0]), sc16),
        s23: _mm512_permutexvar_epi16(load_idx(&Q4K_IDX[1]), sc16),
        bsum_w: _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mins8, mins8)),
    }
}

/// Q6_K: the 64-element chunk k = 2n + h takes its low nibbles from ql[64n..64n+64] (shifted
/// by 4h) and its top bits from qh[32n..32n+32] (shifted by 4h | 4h+2); the quants stay
/// unsigned (0..63) and the −32 offset goes through the bsums.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn prep_q6k(b: &BlockQ6K) -> Prep {
    let (m4, m2) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(0x03));
    let lo_shift = [_mm512_set1_epi64(0), _mm512_set1_epi64(4)];
    let hi_shift = [_mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0), _mm512_set_epi64(6, 6, 6, 6, 4, 4, 4, 4)];
    let sc128 = _mm_loadu_si128(b.scales.as_ptr() as *const __m128i);
    let sc16 = _mm512_cvtepi8_epi16(_mm256_castsi128_si256(sc128));
    Prep {
        q: std::array::from_fn(|k| {
            let (n, h) = (k / 2, k % 2);
            let ql = _mm512_loadu_si512(b.ql.as_ptr().add(64 * n) as *const __m512i);
            let lo = _mm512_and_si512(_mm512_srlv_epi64(ql, lo_shift[h]), m4);
            let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(b.qh.as_ptr().add(32 * n) as *const __m256i));
            let hi = _mm512_and_si512(_mm512_srlv_epi64(qh, hi_shift[h]), m2);
            _mm512_or_si512(lo, _mm512_slli_epi16(hi, 4))
        }),
        s01: _mm512_permutexvar_epi16(load_idx(&Q6K_IDX[0]), sc16),
        s23: _mm512_permutexvar_epi16(load_idx(&Q6K_IDX[1]), sc16),
        bsum_w: _mm256_cvtepi8_epi16(sc128),
    }
}

/// One prepared weight super-block against one Q8_K block: (16 lanes summing to the exact
/// Σ scale·(q·q8), 8 lanes summing to the exact Σ factor·bsum). vpdpbusd partial sums of 4
/// products stay below 2^15 (Q4_K 7620, Q6_K 32004), so pairs pack to i16 losslessly.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_prep(p: &Prep, y: &BlockQ8K) -> (__m512i, __m256i) {
    let yp = y.qs.as_ptr() as *const __m512i;
    let z = _mm512_setzero_si512();
    let d: [__m512i; 4] = std::array::from_fn(|c| _mm512_dpbusd_epi32(z, p.q[c], _mm512_loadu_si512(yp.add(c))));
    let s = _mm512_add_epi32(_mm512_madd_epi16(_mm512_packs_epi32(d[0], d[1]), p.s01), _mm512_madd_epi16(_mm512_packs_epi32(d[2], d[3]), p.s23));
    (s, _mm256_madd_epi16(_mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i), p.bsum_w))
}

/// Q4_K · Q8_K for N tokens: one unpack per super-block, then per token the exact sums and
/// [`k_quant_step`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q4k<const N: usize>(x: &[BlockQ4K], ys: &[&[BlockQ8K]; N]) -> [f32; N] {
    let mut acc = [0f32; N];
    for (i, b) in x.iter().enumerate() {
        let (d, ndmin) = (fp16(b.d), -fp16(b.dmin));
        let p = prep_q4k(b);
        for t in 0..N {
            let y = ys[t].get_unchecked(i);
            let (s, m) = dot_prep(&p, y);
            acc[t] = k_quant_step(acc[t], _mm512_reduce_add_epi32(s), d, hsum_i32x8(m), ndmin, y.d);
        }
    }
    acc
}

/// The K-quant super-block step every path takes (tiles, mat-vec, AMX), so a row's bits do not
/// depend on which path or batch computed it: `s` = Σ scale·(q·q8) and `m` = Σ min·bsum are exact
/// integers; acc += (s·d)·d8, then acc += (m·(−dmin))·d8 (each an FMA after a rounded product).
#[inline(always)]
pub(crate) fn k_quant_step(acc: f32, s: i32, d: f32, m: i32, dm: f32, d8: f32) -> f32 {
    let acc = (s as f32 * d).mul_add(d8, acc);
    (m as f32 * dm).mul_add(d8, acc)
}

/// Q6_K · Q8_K for N tokens, through [`q6_k_step`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q6k<const N: usize>(x: &[BlockQ6K], ys: &[&[BlockQ8K]; N]) -> [f32; N] {
    let mut acc = [0f32; N];
    for (i, b) in x.iter().enumerate() {
        let d = fp16(b.d);
        let p = prep_q6k(b);
        for t in 0..N {
            let y = ys[t].get_unchecked(i);
            let (s, o) = dot_prep(&p, y);
            acc[t] = q6_k_step(acc[t], _mm512_reduce_add_epi32(s), hsum_i32x8(o), d, y.d);
        }
    }
    acc
}

/// Q6_K's super-block step on every path: `s` = Σ scale·(q·q8) over the unsigned quants and
/// `o` = Σ scale·bsum are exact; acc += ((s − 32·o)·d)·d8 (|s − 32·o| < 2^31 for int8 scales).
#[inline(always)]
pub(crate) fn q6_k_step(acc: f32, s: i32, o: i32, d: f32, d8: f32) -> f32 {
    ((s - 32 * o) as f32 * d).mul_add(d8, acc)
}
