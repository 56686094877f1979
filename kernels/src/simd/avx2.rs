//! AVX2 + FMA dot products (`vpmaddubsw` + `vpmaddwd`), for CPUs without AVX-512 (AMD Zen 1–3,
//! Intel client cores). The K-quants compute exactly what the AVX-512 and AMX paths compute:
//! each super-block's exact integer sums, then [`k_quant_step`] / [`q6_k_step`], so a row's bits
//! are the same on every x86 path, in every batch. A weight super-block is unpacked once
//! ([`Prep`]) for all the tokens of a tile; eight tokens' sums are reduced
//! together and stepped as the eight lanes of one vector (the same IEEE operations per lane).
use super::avx512::{k_quant_step, q6_k_step};
use super::x86::{cast_or_none, fp16, hsum_i32x8x8, unpack_k4_scales, TILE_ROWS_MAX_BLOCKS};
use crate::quants::{BlockQ4K, BlockQ6K, BlockQ8K};
use crate::simd::{MatvecRowsFn, TileRowsFn, VecDotFn, VecDotTileFn};
use crate::types::GgmlType;
use std::arch::x86_64::*;

pub fn vec_dot_fn(ty: GgmlType) -> Option<VecDotFn> {
    Some(match ty {
        GgmlType::Q4_K => q4k::single,
        GgmlType::Q6_K => q6k::single,
        // SAFETY (legacy): handed out only when AVX2/FMA/F16C were detected.
        GgmlType::Q4_0 => |x, y| unsafe { super::x86::plain::vec_dot_q4_0_q8_0(x, y) },
        GgmlType::Q4_1 => |x, y| unsafe { super::x86::plain::vec_dot_q4_1_q8_1(x, y) },
        GgmlType::Q5_0 => |x, y| unsafe { super::x86::plain::vec_dot_q5_0_q8_0(x, y) },
        GgmlType::Q8_0 => |x, y| unsafe { super::x86::plain::vec_dot_q8_0_q8_0(x, y) },
        _ => return None,
    })
}

/// Prefill tiles (one weight row against up to 8 tokens).
pub fn tile_fn(ty: GgmlType) -> Option<VecDotTileFn> {
    Some(match ty {
        GgmlType::Q4_K => q4k::tile,
        GgmlType::Q6_K => q6k::tile,
        // SAFETY (legacy): handed out only when AVX2/FMA/F16C were detected.
        GgmlType::Q8_0 => |x, ys, out| unsafe { super::x86::plain::tile8_q8_0(x, ys, out) },
        GgmlType::Q4_0 => |x, ys, out| unsafe { super::x86::plain::tile8_q4_0(x, ys, out) },
        GgmlType::Q5_0 => |x, ys, out| unsafe { super::x86::plain::tile8_q5_0(x, ys, out) },
        GgmlType::Q4_1 => |x, ys, out| unsafe { super::x86::plain::tile8_q4_1(x, ys, out) },
        _ => return None,
    })
}

/// Prefill tiles of 8 tokens over a chunk of rows (see `simd::TileRowsFn`).
pub fn tile_rows_fn(ty: GgmlType) -> Option<TileRowsFn> {
    Some(match ty {
        GgmlType::Q4_K => q4k::tile_rows,
        GgmlType::Q6_K => q6k::tile_rows,
        // SAFETY (legacy): handed out only when AVX2/FMA/F16C were detected.
        GgmlType::Q8_0 => |w, rb, ys, out| unsafe { super::x86::plain::tile_rows_q8_0(w, rb, ys, out) },
        GgmlType::Q4_0 => |w, rb, ys, out| unsafe { super::x86::plain::tile_rows_q4_0(w, rb, ys, out) },
        GgmlType::Q5_0 => |w, rb, ys, out| unsafe { super::x86::plain::tile_rows_q5_0(w, rb, ys, out) },
        GgmlType::Q4_1 => |w, rb, ys, out| unsafe { super::x86::plain::tile_rows_q4_1(w, rb, ys, out) },
        _ => return None,
    })
}

/// The mat-vec kernels over rows held as `repack::Layout::Interleaved8` (legacy types only).
pub fn matvec_rows_x8_fn(ty: GgmlType) -> Option<MatvecRowsFn> {
    Some(match ty {
        // SAFETY: handed out only when AVX2/FMA/F16C were detected.
        GgmlType::Q4_0 => |w, rb, y, out| unsafe { super::x86::plain::rows_x8_q4_0(w, rb, y, out) },
        GgmlType::Q4_1 => |w, rb, y, out| unsafe { super::x86::plain::rows_x8_q4_1(w, rb, y, out) },
        GgmlType::Q5_0 => |w, rb, y, out| unsafe { super::x86::plain::rows_x8_q5_0(w, rb, y, out) },
        GgmlType::Q8_0 => |w, rb, y, out| unsafe { super::x86::plain::rows_x8_q8_0(w, rb, y, out) },
        _ => return None,
    })
}

/// The K-quant kernels over super-blocks held as `repack::Layout::Transposed`: the mat-vec,
/// the prefill tile and its many-rows form (every product such a matrix takes).
pub fn transposed_fns(ty: GgmlType) -> Option<(MatvecRowsFn, VecDotTileFn, TileRowsFn)> {
    Some(match ty {
        GgmlType::Q4_K => (q4kt::rows, q4kt::tile, q4kt::tile_rows),
        GgmlType::Q6_K => (q6kt::rows, q6kt::tile, q6kt::tile_rows),
        _ => return None,
    })
}

/// Mat-vec kernels (decode): a whole chunk of rows inside one target-feature function.
pub fn matvec_rows_fn(ty: GgmlType) -> Option<MatvecRowsFn> {
    Some(match ty {
        GgmlType::Q4_K => q4k::rows,
        GgmlType::Q6_K => q6k::rows,
        // SAFETY (legacy): handed out only when AVX2/FMA/F16C were detected.
        GgmlType::Q4_0 => |w, rb, y, out| unsafe { super::x86::plain::rows_q4_0(w, rb, y, out) },
        GgmlType::Q4_1 => |w, rb, y, out| unsafe { super::x86::plain::rows_q4_1(w, rb, y, out) },
        GgmlType::Q5_0 => |w, rb, y, out| unsafe { super::x86::plain::rows_q5_0(w, rb, y, out) },
        GgmlType::Q8_0 => |w, rb, y, out| unsafe { super::x86::plain::rows_q8_0(w, rb, y, out) },
        _ => return None,
    })
}

/// A K-quant super-block unpacked for `vpmaddubsw`: eight 32-element groups of unsigned quants
/// in element order (against `q8[32j..32j + 32]`), the i16 scale(s) of each group, and the i16
/// factors of the 16 bsums (Q4_K: the mins; Q6_K: the scales).
struct Prep {
    q: [__m256i; 8],
    sc: [__m256i; 8],
    f: __m256i,
}

/// `vpshufb` masks that broadcast the i16 element `lo` of a 128-bit lane over the low lane and
/// element `hi` over the high lane.
const fn bcast16(lo: usize, hi: usize) -> [u8; 32] {
    let mut m = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        let e = if i < 16 { lo } else { hi };
        m[i] = (2 * e + i % 2) as u8;
        i += 1;
    }
    m
}

/// Q4_K group j: scale j over both lanes.
static Q4K_SHUF: [[u8; 32]; 8] = [bcast16(0, 0), bcast16(1, 1), bcast16(2, 2), bcast16(3, 3), bcast16(4, 4), bcast16(5, 5), bcast16(6, 6), bcast16(7, 7)];
/// Q6_K group j (scales 2j, 2j + 1), within the 8 scales of its half of the block.
static Q6K_SHUF: [[u8; 32]; 4] = [bcast16(0, 1), bcast16(2, 3), bcast16(4, 5), bcast16(6, 7)];

#[inline(always)]
unsafe fn shuf(v: __m256i, m: &[u8; 32]) -> __m256i {
    _mm256_shuffle_epi8(v, _mm256_loadu_si256(m.as_ptr() as *const __m256i))
}

/// Q4_K: group j is the low (j even) or high nibbles of qs[32(j/2)..]; its scale is scale j and
/// its min multiplies bsums 2j and 2j+1 (spec §2.2).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn prep_q4k(b: &BlockQ4K) -> Prep {
    let m4 = _mm256_set1_epi8(0x0F);
    let (v, s16, f) = q4k_parts(b);
    Prep {
        q: std::array::from_fn(|j| if j % 2 == 0 { _mm256_and_si256(v[j / 2], m4) } else { _mm256_and_si256(_mm256_srli_epi16(v[j / 2], 4), m4) }),
        sc: std::array::from_fn(|j| shuf(s16, &Q4K_SHUF[j])),
        f,
    }
}

/// A Q4_K block's four 32-byte chunks of qs, its eight 6-bit scales as i16 (both 128-bit lanes),
/// and the bsums' factors: each min twice.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4k_parts(b: &BlockQ4K) -> ([__m256i; 4], __m256i, __m256i) {
    let u = unpack_k4_scales(&b.scales);
    let s16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_set_epi32(0, 0, u[1] as i32, u[0] as i32)));
    let mins8 = _mm_set_epi32(0, 0, u[3] as i32, u[2] as i32);
    let qp = b.qs.as_ptr();
    let v = std::array::from_fn(|c| _mm256_loadu_si256(qp.add(32 * c) as *const __m256i));
    (v, s16, _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mins8, mins8)))
}

/// Q6_K: group j = 4n + g takes its low nibbles from ql[64n + 32(g & 1)..] (shifted by 4 for
/// g ≥ 2) and its top bits, bits 2g and 2g+1 of qh[32n..], as bits 4 and 5; unsigned 0..63, the
/// −32 goes through the bsums. Its 16-element halves have scales 2j and 2j + 1. The eight groups
/// in element order, the 16 i8 scales, and their two halves as i16 broadcast to both 128-bit lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6k_groups(b: &BlockQ6K) -> ([__m256i; 8], __m128i, [__m256i; 2]) {
    let (m4, m30) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x30));
    let ql: [__m256i; 4] = std::array::from_fn(|i| _mm256_loadu_si256(b.ql.as_ptr().add(32 * i) as *const __m256i));
    let qh: [__m256i; 2] = std::array::from_fn(|n| _mm256_loadu_si256(b.qh.as_ptr().add(32 * n) as *const __m256i));
    let hi = |n: usize, g: usize| match g {
        0 => _mm256_and_si256(_mm256_slli_epi16(qh[n], 4), m30),
        1 => _mm256_and_si256(_mm256_slli_epi16(qh[n], 2), m30),
        2 => _mm256_and_si256(qh[n], m30),
        _ => _mm256_and_si256(_mm256_srli_epi16(qh[n], 2), m30),
    };
    let q = std::array::from_fn(|j| {
        let (n, g) = (j / 4, j % 4);
        let l = ql[2 * n + (g & 1)];
        let lo = if g < 2 { _mm256_and_si256(l, m4) } else { _mm256_and_si256(_mm256_srli_epi16(l, 4), m4) };
        _mm256_or_si256(lo, hi(n, g))
    });
    let s8 = _mm_loadu_si128(b.scales.as_ptr() as *const __m128i);
    let halves = [_mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(s8)), _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(_mm_srli_si128(s8, 8)))];
    (q, s8, halves)
}

/// Q6_K for the mat-vec: each group against its own scale vector.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn prep_q6k(b: &BlockQ6K) -> Prep {
    let (q, s8, halves) = q6k_groups(b);
    Prep { q, sc: std::array::from_fn(|j| shuf(halves[j / 4], &Q6K_SHUF[j % 4])), f: _mm256_cvtepi8_epi16(s8) }
}

/// Lanes summing to Σ scale·(q·q8) and lanes summing to Σ factor·bsum, both exact
/// (|vpmaddubsw pairs| ≤ 2·63·128 < 2^15).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn lanes(p: &Prep, y: &BlockQ8K) -> (__m256i, __m256i) {
    let yp = y.qs.as_ptr();
    let mut s = _mm256_setzero_si256();
    for j in 0..8 {
        let yv = _mm256_loadu_si256(yp.add(32 * j) as *const __m256i);
        s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(p.q[j], yv), p.sc[j]));
    }
    (s, _mm256_madd_epi16(_mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i), p.f))
}

/// A K-quant super-block unpacked for the prefill tiles: eight vectors of 32 unsigned quants,
/// each against the same vector of the activation block reordered by the type's [`XPerm`]
/// function, the i16 scales of each run of `G` vectors (see [`tile_lanes`]; Q4_K fills two, Q6_K
/// four), and the i16 factors of the 16 bsums (Q4_K: the mins; Q6_K: the scales).
///
/// The quants are laid out so that a given i16 lane of the `vpmaddubsw` products belongs to the
/// same scale group in `G` consecutive vectors: those products are summed as i16 first (exact,
/// see [`tile_lanes`]) and multiplied by their scales once, one `vpmaddwd` for `G` vectors
/// instead of one each ([`Prep`]'s way). On AMD Zen 1 both run on one pipe at one ymm per two cycles,
/// which bounded the tiles. The row-major mat-vec keeps [`Prep`]: there one row waits on its
/// own latency, and the transposes made it slower (`vec_dot/Q4_K` 7.57 → 6.95 GiB/s). Blocks
/// held as `repack::Layout::Transposed` come laid out this way (all eight Q4_K vectors share
/// one scale vector), so every product over them takes this form.
struct TilePrep {
    q: [__m256i; 8],
    sc: [__m256i; 4],
    f: __m256i,
}

/// An activation super-block's quants in the order of a [`TilePrep`]'s vectors.
type XPerm = [__m256i; 8];

/// `vpshufb` masks that put i16 element `lo[k]` of a 128-bit lane in i16 lane k of the low lane
/// and `hi[k]` in lane k of the high lane.
const fn pick16(lo: [usize; 8], hi: [usize; 8]) -> [u8; 32] {
    let mut m = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        let e = if i < 16 { lo[(i % 16) / 2] } else { hi[(i % 16) / 2] };
        m[i] = (2 * e + i % 2) as u8;
        i += 1;
    }
    m
}

/// Q4_K: the even groups' scales (0, 2, 4, 6, two i16 lanes each), then the odd groups'.
static Q4K_TILE_SHUF: [[u8; 32]; 2] = [pick16([0, 0, 2, 2, 4, 4, 6, 6], [0, 0, 2, 2, 4, 4, 6, 6]), pick16([1, 1, 3, 3, 5, 5, 7, 7], [1, 1, 3, 3, 5, 5, 7, 7])];
/// Q6_K pair p (of four within a half of the block's 16 scales): scales 4p, 4p + 2 (four
/// lanes each) in the low 128-bit lane, 4p + 1, 4p + 3 in the high lane.
static Q6K_TILE_SHUF: [[u8; 32]; 2] = [pick16([0, 0, 0, 0, 2, 2, 2, 2], [1, 1, 1, 1, 3, 3, 3, 3]), pick16([4, 4, 4, 4, 6, 6, 6, 6], [5, 5, 5, 5, 7, 7, 7, 7])];

/// A 4×8 transpose of dwords: `out[k]` holds dword k of each of `v[0..4]` in its low 128-bit
/// lane and dword k + 4 of each in its high lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn transpose_dwords(v: [__m256i; 4]) -> [__m256i; 4] {
    let t0 = _mm256_unpacklo_epi32(v[0], v[1]);
    let t1 = _mm256_unpacklo_epi32(v[2], v[3]);
    let t2 = _mm256_unpackhi_epi32(v[0], v[1]);
    let t3 = _mm256_unpackhi_epi32(v[2], v[3]);
    [_mm256_unpacklo_epi64(t0, t1), _mm256_unpackhi_epi64(t0, t1), _mm256_unpacklo_epi64(t2, t3), _mm256_unpackhi_epi64(t2, t3)]
}

#[inline(always)]
unsafe fn load32(p: *const i8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

/// Q4_K: bytes qs[32c..32c + 32] hold group 2c in their low nibbles and group 2c + 1 in their
/// high ones (spec §2.2). Transposing the four chunks by dwords puts group 2c at dword c of
/// every 128-bit lane: vectors 0..4 are the low nibbles (even groups), 4..8 the high nibbles
/// (odd groups), and one scale vector serves each run of four. Each group's min multiplies
/// bsums 2j and 2j + 1.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_prep_q4k(b: &BlockQ4K) -> TilePrep {
    let m4 = _mm256_set1_epi8(0x0F);
    let (v, s16, f) = q4k_parts(b);
    let t = transpose_dwords(v);
    let zero = _mm256_setzero_si256();
    TilePrep {
        q: std::array::from_fn(|j| if j < 4 { _mm256_and_si256(t[j], m4) } else { _mm256_and_si256(_mm256_srli_epi16(t[j - 4], 4), m4) }),
        sc: [shuf(s16, &Q4K_TILE_SHUF[0]), shuf(s16, &Q4K_TILE_SHUF[1]), zero, zero],
        f,
    }
}

/// The activation order of [`tile_prep_q4k`]: the same dword transpose of elements
/// 0..32, 64..96, 128..160, 192..224 (against the low nibbles), then of the other four runs.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn xperm_q4k(y: &BlockQ8K) -> XPerm {
    let yp = y.qs.as_ptr();
    let lo = transpose_dwords(std::array::from_fn(|c| load32(yp.add(64 * c))));
    let hi = transpose_dwords(std::array::from_fn(|c| load32(yp.add(64 * c + 32))));
    [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]]
}

/// Q6_K for the tiles: the groups of [`q6k_groups`], 2p and 2p + 1 interleaved by qwords
/// (elements 0..8, 16..24 of both, then 8..16, 24..32), so both vectors of pair p meet scales
/// 4p, 4p + 2, 4p + 1, 4p + 3 lane for lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_prep_q6k(b: &BlockQ6K) -> TilePrep {
    let (q, s8, halves) = q6k_groups(b);
    TilePrep {
        q: interleave_qwords(q),
        sc: std::array::from_fn(|p| shuf(halves[p / 2], &Q6K_TILE_SHUF[p % 2])),
        f: _mm256_cvtepi8_epi16(s8),
    }
}

/// Pairs (2p, 2p + 1) of element-order vectors interleaved by qwords (see [`tile_prep_q6k`]).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn interleave_qwords(v: [__m256i; 8]) -> [__m256i; 8] {
    std::array::from_fn(|j| {
        let (a, b) = (v[j & !1], v[j | 1]);
        if j % 2 == 0 {
            _mm256_unpacklo_epi64(a, b)
        } else {
            _mm256_unpackhi_epi64(a, b)
        }
    })
}

/// The activation order of [`tile_prep_q6k`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn xperm_q6k(y: &BlockQ8K) -> XPerm {
    let yp = y.qs.as_ptr();
    interleave_qwords(std::array::from_fn(|j| load32(yp.add(32 * j))))
}

/// Q4_K held transposed (`repack::Layout::Transposed`): slot j of the unpacking (the low, j
/// even, or high nibbles of qs[32(j/2)..]) holds dword j of each of the eight groups, group i in
/// dword lane i, so all eight vectors share one scale vector (scale i twice in dword lane i)
/// and nothing is shuffled per block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_prep_q4kt(b: &BlockQ4K) -> TilePrep {
    let m4 = _mm256_set1_epi8(0x0F);
    let u = unpack_k4_scales(&b.scales);
    let pairs = |lo: u32, hi: u32| {
        let x = _mm_cvtsi64_si128((u64::from(hi) << 32 | u64::from(lo)) as i64);
        _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(x, x))
    };
    let (sc, f) = (pairs(u[0], u[1]), pairs(u[2], u[3]));
    let qp = b.qs.as_ptr();
    let v: [__m256i; 4] = std::array::from_fn(|c| _mm256_loadu_si256(qp.add(32 * c) as *const __m256i));
    TilePrep {
        q: std::array::from_fn(|j| if j % 2 == 0 { _mm256_and_si256(v[j / 2], m4) } else { _mm256_and_si256(_mm256_srli_epi16(v[j / 2], 4), m4) }),
        sc: [sc, sc, sc, sc],
        f,
    }
}

/// The activation order of [`tile_prep_q4kt`]: vector j holds dword j of each 32-element group,
/// group i in dword lane i (an 8×8 transpose of dwords).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn xperm_q4kt(y: &BlockQ8K) -> XPerm {
    let p = y.qs.as_ptr();
    // Groups i and i + 4 side by side, dwords 0..4 then 4..8: in-lane transposes finish it.
    let pair = |i: usize, h: usize| {
        let lo = _mm_loadu_si128(p.add(32 * i + 16 * h) as *const __m128i);
        _mm256_inserti128_si256(_mm256_castsi128_si256(lo), _mm_loadu_si128(p.add(32 * (i + 4) + 16 * h) as *const __m128i), 1)
    };
    let lo = transpose_dwords(std::array::from_fn(|i| pair(i, 0)));
    let hi = transpose_dwords(std::array::from_fn(|i| pair(i, 1)));
    [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]]
}

/// Q6_K held transposed: vector j holds word j of each of the sixteen 16-element groups, group
/// k in i16 lane k, against its scale in lane k of every vector. Each 96 bytes of quants hold
/// four vectors, three in the low 6 bits of their own 32 bytes (one mask each) and the fourth
/// in those bytes' top two bits (`repack` stores them so): 22 unpacking operations a block
/// instead of [`q6k_groups`]' 34.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_prep_q6kt(b: &BlockQ6K) -> TilePrep {
    let p = b.ql.as_ptr();
    let m = |v: u8| _mm256_set1_epi8(v as i8);
    let mut q = [_mm256_setzero_si256(); 8];
    for h in 0..2 {
        let v: [__m256i; 3] = std::array::from_fn(|k| _mm256_loadu_si256(p.add(96 * h + 32 * k) as *const __m256i));
        for k in 0..3 {
            q[4 * h + k] = _mm256_and_si256(v[k], m(0x3F));
        }
        let t0 = _mm256_and_si256(_mm256_srli_epi16(v[0], 6), m(0x03));
        let t1 = _mm256_and_si256(_mm256_srli_epi16(v[1], 4), m(0x0C));
        let t2 = _mm256_and_si256(_mm256_srli_epi16(v[2], 2), m(0x30));
        q[4 * h + 3] = _mm256_or_si256(_mm256_or_si256(t0, t1), t2);
    }
    let sc = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.scales.as_ptr() as *const __m128i));
    TilePrep { q, sc: [sc, sc, sc, sc], f: sc }
}

/// The activation order of [`tile_prep_q6kt`]: vector j holds word j of each 16-element group
/// (groups 0..8 in the low 128-bit lane, 8..16 in the high one; an 8×8 transpose of words in
/// each lane).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn xperm_q6kt(y: &BlockQ8K) -> XPerm {
    let p = y.qs.as_ptr();
    let g: [__m256i; 8] = std::array::from_fn(|k| {
        let lo = _mm_loadu_si128(p.add(16 * k) as *const __m128i);
        _mm256_inserti128_si256(_mm256_castsi128_si256(lo), _mm_loadu_si128(p.add(16 * (k + 8)) as *const __m128i), 1)
    });
    // Words, then dwords, then qwords of pairs: t[2m], t[2m+1] hold groups 2m, 2m+1 word by
    // word (words 0..4, 4..8); u[4h + c] holds words 2c, 2c+1 of groups 4h..4h+4.
    let t: [__m256i; 8] = std::array::from_fn(|k| {
        let (x, y) = (g[k & !1], g[k | 1]);
        if k % 2 == 0 { _mm256_unpacklo_epi16(x, y) } else { _mm256_unpackhi_epi16(x, y) }
    });
    let u: [__m256i; 8] = std::array::from_fn(|k| {
        let (h, c) = (k / 4, k % 4);
        let (x, y) = (t[4 * h + c / 2], t[4 * h + 2 + c / 2]);
        if c % 2 == 0 { _mm256_unpacklo_epi32(x, y) } else { _mm256_unpackhi_epi32(x, y) }
    });
    std::array::from_fn(|j| {
        let (x, y) = (u[j / 2], u[4 + j / 2]);
        if j % 2 == 0 { _mm256_unpacklo_epi64(x, y) } else { _mm256_unpackhi_epi64(x, y) }
    })
}

/// Lanes summing to Σ scale·(q·q8) and lanes summing to Σ factor·bsum, both exact. `G` vectors
/// share one scale vector: their `vpmaddubsw` pairs (|pair| ≤ 2·15·128 for Q4_K, 2·63·128 for
/// Q6_K) are summed as i16 first, which stays below 2^15 for G ≤ 8 with Q4_K (30,720) and G = 2
/// with Q6_K (32,256).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_lanes<const G: usize>(p: &TilePrep, x: &XPerm, y: &BlockQ8K) -> (__m256i, __m256i) {
    let mut s = _mm256_setzero_si256();
    for g in 0..8 / G {
        let mut t = _mm256_maddubs_epi16(p.q[g * G], x[g * G]);
        for i in 1..G {
            t = _mm256_add_epi16(t, _mm256_maddubs_epi16(p.q[g * G + i], x[g * G + i]));
        }
        s = _mm256_add_epi32(s, _mm256_madd_epi16(t, p.sc[g]));
    }
    (s, _mm256_madd_epi16(_mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i), p.f))
}

/// (Σ lanes of s, Σ lanes of m), exact.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hsum_pair(s: __m256i, m: __m256i) -> (i32, i32) {
    let h = hsum_sm(s, m);
    (_mm_cvtsi128_si32(h), _mm_extract_epi32(h, 1))
}

/// [Σ lanes of s, Σ lanes of m, .., ..], exact, with unpacks and adds only (`vphaddd` is slow on
/// AMD Zen 1).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hsum_sm(s: __m256i, m: __m256i) -> __m128i {
    let t = _mm256_add_epi32(_mm256_unpacklo_epi32(s, m), _mm256_unpackhi_epi32(s, m));
    let u = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
    _mm_add_epi32(u, _mm_unpackhi_epi64(u, u))
}

thread_local! {
    /// A worker's reordered activation blocks ([`XPerm`]) for the call at hand; only grows.
    static XPERMS: std::cell::RefCell<Vec<XPerm>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The kernels of one K-quant type: `$prep` unpacks a block for the mat-vec, `$tile_prep` for
/// the tiles, `$xperm` reorders an activation block to match it, `$g` of its vectors share a
/// scale vector, `$scales` gives the block's float factors,
/// `$step` is the scalar super-block step and `$step8` the same operations on eight lanes.
macro_rules! k_quant_kernels {
    ($m:ident, $block:ty, matvec: $mv:ident($($mvarg:tt)*), $tile_prep:ident, $xperm:ident, $g:literal, |$b:ident| $scales:expr, $step:expr, $step8:expr) => {
        mod $m {
            use super::*;

            k_quant_kernels!(@$mv $($mvarg)*);

            /// Checks the shapes once, then the one-token kernel row after row (prefetching).
            pub(super) fn rows(w: &[u8], rb: usize, y: &[u8], out: &mut [f32]) {
                let Some(yb) = cast_or_none::<BlockQ8K>(y) else { return out.fill(f32::NAN) };
                let align = std::mem::align_of::<$block>();
                let ok = rb == yb.len() * std::mem::size_of::<$block>() && w.len() >= out.len() * rb;
                if !ok || !(w.as_ptr() as usize).is_multiple_of(align) || !rb.is_multiple_of(align) {
                    return out.fill(f32::NAN);
                }
                // SAFETY: handed out only when AVX2/FMA/F16C were detected; shapes checked above.
                unsafe { rows_avx2(w, rb, yb, out) }
            }

            /// `f` with the tokens' blocks reordered, token t's block i at `xp[i·ys.len() + t]`.
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn with_xperm<R>(ys: &[&[BlockQ8K]], nb: usize, f: impl FnOnce(&[XPerm]) -> R) -> R {
                XPERMS.with_borrow_mut(|buf| {
                    buf.clear();
                    for i in 0..nb {
                        for y in ys {
                            buf.push($xperm(y.get_unchecked(i)));
                        }
                    }
                    f(buf)
                })
            }

            /// One weight row against ys.len() (1..=8) tokens: eight as vector lanes, fewer one
            /// after another (the same operations, so the same bits).
            pub(super) fn tile(x: &[u8], ys: &[&[u8]], out: &mut [f32]) {
                let Some(w) = cast_or_none::<$block>(x) else { return out.fill(f32::NAN) };
                let n = ys.len().min(out.len());
                let mut yb: [&[BlockQ8K]; 8] = [&[]; 8];
                for (o, y) in yb.iter_mut().zip(&ys[..n]) {
                    match cast_or_none::<BlockQ8K>(y) {
                        Some(b) if b.len() == w.len() => *o = b,
                        _ => return out.fill(f32::NAN),
                    }
                }
                // SAFETY: handed out only when AVX2/FMA/F16C were detected; rows fit w.
                unsafe {
                    with_xperm(&yb[..n], w.len(), |xp| {
                        if n == 8 {
                            tile8(w, &yb, xp, &mut out[..8]);
                        } else {
                            tile_n(w, &yb[..n], xp, &mut out[..n]);
                        }
                    })
                }
            }

            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn tile_n(x: &[$block], ys: &[&[BlockQ8K]], xp: &[XPerm], out: &mut [f32]) {
                out.fill(0.0);
                for (i, $b) in x.iter().enumerate() {
                    let p = $tile_prep($b);
                    let (d, dm): (f32, f32) = $scales;
                    for (t, (acc, y)) in out.iter_mut().zip(ys).enumerate() {
                        let yb = y.get_unchecked(i);
                        let (s, m) = tile_lanes::<$g>(&p, xp.get_unchecked(i * ys.len() + t), yb);
                        let (s, m) = hsum_pair(s, m);
                        *acc = $step(*acc, s, m, d, dm, yb.d);
                    }
                }
            }

            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn tile8(x: &[$block], ys: &[&[BlockQ8K]; 8], xp: &[XPerm], out: &mut [f32]) {
                let mut acc = _mm256_setzero_ps();
                for (i, b) in x.iter().enumerate() {
                    acc = step8(b, ys, xp, i, d8(ys, i), acc);
                }
                _mm256_storeu_ps(out.as_mut_ptr(), acc);
            }

            /// The eight tokens' Q8_K scales of block i as vector lanes.
            #[inline]
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn d8(ys: &[&[BlockQ8K]; 8], i: usize) -> __m256 {
                let e = |t: usize| ys[t].get_unchecked(i).d;
                _mm256_set_ps(e(7), e(6), e(5), e(4), e(3), e(2), e(1), e(0))
            }

            /// Block i of one weight row against block i of eight tokens, stepped lane-wise.
            #[inline]
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn step8($b: &$block, ys: &[&[BlockQ8K]; 8], xp: &[XPerm], i: usize, d8: __m256, acc: __m256) -> __m256 {
                let p = $tile_prep($b);
                let (d, dm): (f32, f32) = $scales;
                let mut s = [_mm256_setzero_si256(); 8];
                let mut m = [_mm256_setzero_si256(); 8];
                for t in 0..8 {
                    (s[t], m[t]) = tile_lanes::<$g>(&p, xp.get_unchecked(8 * i + t), ys[t].get_unchecked(i));
                }
                $step8(acc, hsum_i32x8x8(&s), hsum_i32x8x8(&m), _mm256_set1_ps(d), _mm256_set1_ps(dm), d8)
            }

            /// [`tile`] for 8 tokens over the consecutive `rb`-byte rows of `w`, out =
            /// [row][8 tokens]: the activations are checked, reordered, and their scales
            /// gathered, once.
            pub(super) fn tile_rows(w: &[u8], rb: usize, ys: &[&[u8]], out: &mut [f32]) {
                let nb = rb / std::mem::size_of::<$block>();
                let rows = out.len() / 8;
                let fits = ys.len() == 8 && out.len() == 8 * rows && rb == nb * std::mem::size_of::<$block>() && nb <= TILE_ROWS_MAX_BLOCKS && w.len() >= rows * rb;
                let mut yb: [&[BlockQ8K]; 8] = [&[]; 8];
                let cast = fits && yb.iter_mut().zip(ys).all(|(o, y)| match cast_or_none::<BlockQ8K>(y) {
                    Some(b) if b.len() == nb => {
                        *o = b;
                        true
                    }
                    _ => false,
                });
                if !cast {
                    for (r, o) in out.chunks_exact_mut(ys.len().max(1)).enumerate() {
                        tile(w.get(r * rb..(r + 1) * rb).unwrap_or(&[]), ys, o);
                    }
                    return;
                }
                // SAFETY: handed out only when AVX2/FMA/F16C were detected; every activation
                // row has nb blocks, each weight row is checked as it is cast.
                unsafe { with_xperm(&yb, nb, |xp| tile_rows_avx2(w, rb, &yb, xp, out)) }
            }

            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn tile_rows_avx2(w: &[u8], rb: usize, ys: &[&[BlockQ8K]; 8], xp: &[XPerm], out: &mut [f32]) {
                let nb = ys[0].len();
                // Only the row's nb blocks are written and read (no 16 KiB clear per call).
                let mut dv = [std::mem::MaybeUninit::<__m256>::uninit(); TILE_ROWS_MAX_BLOCKS];
                for (i, d) in dv.iter_mut().enumerate().take(nb) {
                    d.write(d8(ys, i));
                }
                let dv = &dv[..nb];
                for (r, o) in out.chunks_exact_mut(8).enumerate() {
                    let Some(x) = cast_or_none::<$block>(&w[r * rb..(r + 1) * rb]) else { o.fill(f32::NAN); continue };
                    let mut acc = _mm256_setzero_ps();
                    for (i, b) in x.iter().enumerate().take(nb) {
                        // SAFETY: entries 0..nb were written above.
                        acc = step8(b, ys, xp, i, dv[i].assume_init_read(), acc);
                    }
                    _mm256_storeu_ps(o.as_mut_ptr(), acc);
                }
            }
        }
    };
    // The mat-vec of row-major blocks: each block unpacked by `$prep` against the activations
    // in element order (one row waits on its own latency, and the tiles' transposes made it
    // slower, see [`TilePrep`]).
    (@prep $block:ty, $prep:ident, |$b:ident| $scales:expr, $step:expr) => {
            /// One row against one token, block after block.

            #[inline]
            #[target_feature(enable = "avx2,fma,f16c")]
            pub(super) unsafe fn row_dot(x: &[$block], y: &[BlockQ8K]) -> f32 {
                let mut acc = 0f32;
                for ($b, yb) in x.iter().zip(y) {
                    let (s, m) = lanes(&$prep($b), yb);
                    let (s, m) = hsum_pair(s, m);
                    let (d, dm): (f32, f32) = $scales;
                    acc = $step(acc, s, m, d, dm, yb.d);
                }
                acc
            }

            pub(super) fn single(x: &[u8], y: &[u8]) -> f32 {
                match (cast_or_none::<$block>(x), cast_or_none::<BlockQ8K>(y)) {
                    // SAFETY: handed out only when AVX2/FMA/F16C were detected.
                    (Some(a), Some(b)) if a.len() == b.len() => unsafe { row_dot(a, b) },
                    _ => f32::NAN,
                }
            }

            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn rows_avx2(w: &[u8], rb: usize, y: &[BlockQ8K], out: &mut [f32]) {
                // SAFETY (closure): runs inside this function, with its features; rows cast.
                crate::matmul::for_each_row(w, rb, out, |row| unsafe { row_dot(bytemuck::cast_slice(row), y) })
            }
    };
    // The mat-vec of transposed blocks: the one-token tile, the activation reordered once a call.
    (@tiles $block:ty, $tile_prep:ident, $g:literal, $stepv:expr) => {
            /// One row after another, the activation reordered once. Two or eight rows side by
            /// side (sums reduced together, stepped as vector lanes) were slower: `kiln bench`
            /// 1.1B tg 20.8 → 13.6 / 15.4 tok/s, and no faster in L1.
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn rows_avx2(w: &[u8], rb: usize, y: &[BlockQ8K], out: &mut [f32]) {
                with_xperm(&[y], y.len(), |xp| {
                    // SAFETY (closure): runs inside this function, with its features; rows cast.
                    crate::matmul::for_each_row(w, rb, out, |row| unsafe { row_dot(bytemuck::cast_slice(row), y, xp) })
                })
            }

            /// One row against one token: [`tile_n`]'s sums and step, kept in vector registers
            /// ([`hsum_sm`] then `$stepv`, the same IEEE operations as the scalar step): the
            /// `vphaddd` reduction and the round trip through general registers cost a third of
            /// the row's time on AMD Zen 1 (`cargo bench --bench kernels -- vec_dot`).
            #[inline]
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn row_dot(x: &[$block], y: &[BlockQ8K], xp: &[XPerm]) -> f32 {
                let mut acc = _mm_setzero_ps();
                for (i, b) in x.iter().enumerate() {
                    let yb = y.get_unchecked(i);
                    let (s, m) = tile_lanes::<$g>(&$tile_prep(b), xp.get_unchecked(i), yb);
                    acc = $stepv(acc, hsum_sm(s, m), b, yb.d);
                }
                _mm_cvtss_f32(acc)
            }
    };
}

/// The K-quant steps of Q4_K ([`k_quant_step`]): for one token, for eight token lanes, and in
/// vector registers for the transposed mat-vec (`v` = [s, m, ..]: (s·d)·d8 then (m·−dmin)·d8 as
/// an FMA each, −(m·dmin)·d8 through `vfnmadd` being the same number).
macro_rules! q4k_kernels {
    ($m:ident, matvec: prep, $tile_prep:ident, $xperm:ident, $g:literal) => {
        q4k_kernels!(@ $m, prep(BlockQ4K, prep_q4k, |b| (fp16(b.d), -fp16(b.dmin)), |acc, s, m, d, dm, d8| k_quant_step(acc, s, d, m, dm, d8)), $tile_prep, $xperm, $g);
    };
    ($m:ident, matvec: tiles, $tile_prep:ident, $xperm:ident, $g:literal) => {
        q4k_kernels!(@ $m, tiles(BlockQ4K, $tile_prep, $g, |acc: __m128, v: __m128i, b: &BlockQ4K, d8: f32| {
            let dd = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes([b.d.0[0], b.d.0[1], b.dmin.0[0], b.dmin.0[1]])));
            let p = _mm_mul_ps(_mm_cvtepi32_ps(v), dd);
            let d8 = _mm_set_ss(d8);
            _mm_fnmadd_ss(_mm_movehdup_ps(p), d8, _mm_fmadd_ss(p, d8, acc))
        }), $tile_prep, $xperm, $g);
    };
    (@ $m:ident, $mv:ident($($mvarg:tt)*), $tile_prep:ident, $xperm:ident, $g:literal) => {
        k_quant_kernels!($m, BlockQ4K, matvec: $mv($($mvarg)*), $tile_prep, $xperm, $g, |b| (fp16(b.d), -fp16(b.dmin)),
            |acc, s, m, d, dm, d8| k_quant_step(acc, s, d, m, dm, d8),
            |acc, s, m, d, dm, d8| {
                let acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s), d), d8, acc);
                _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(m), dm), d8, acc)
            });
    };
}

/// The same for Q6_K ([`q6_k_step`]; `v` = [s, o, ..]: ((s − 32·o)·d)·d8).
macro_rules! q6k_kernels {
    ($m:ident, matvec: prep, $tile_prep:ident, $xperm:ident, $g:literal) => {
        q6k_kernels!(@ $m, prep(BlockQ6K, prep_q6k, |b| (fp16(b.d), 0.0), |acc, s, o, d, _dm, d8| q6_k_step(acc, s, o, d, d8)), $tile_prep, $xperm, $g);
    };
    ($m:ident, matvec: tiles, $tile_prep:ident, $xperm:ident, $g:literal) => {
        q6k_kernels!(@ $m, tiles(BlockQ6K, $tile_prep, $g, |acc: __m128, v: __m128i, b: &BlockQ6K, d8: f32| {
            let c = _mm_cvtepi32_ps(_mm_sub_epi32(v, _mm_slli_epi32(_mm_srli_si128(v, 4), 5)));
            let d = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(u16::from_le_bytes(b.d.0))));
            _mm_fmadd_ss(_mm_mul_ss(c, d), _mm_set_ss(d8), acc)
        }), $tile_prep, $xperm, $g);
    };
    (@ $m:ident, $mv:ident($($mvarg:tt)*), $tile_prep:ident, $xperm:ident, $g:literal) => {
        k_quant_kernels!($m, BlockQ6K, matvec: $mv($($mvarg)*), $tile_prep, $xperm, $g, |b| (fp16(b.d), 0.0),
            |acc, s, o, d, _dm, d8| q6_k_step(acc, s, o, d, d8),
            |acc, s, o, d, _dm, d8| {
                let c = _mm256_sub_epi32(s, _mm256_slli_epi32(o, 5));
                _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(c), d), d8, acc)
            });
    };
}

q4k_kernels!(q4k, matvec: prep, tile_prep_q4k, xperm_q4k, 4);
q6k_kernels!(q6k, matvec: prep, tile_prep_q6k, xperm_q6k, 2);
// Transposed blocks (`repack::Layout::Transposed`): no shuffles per block, and Q4_K's eight
// vectors share one scale vector.
q4k_kernels!(q4kt, matvec: tiles, tile_prep_q4kt, xperm_q4kt, 8);
q6k_kernels!(q6kt, matvec: tiles, tile_prep_q6kt, xperm_q6kt, 2);
