//! Prefill products with AVX-512 VNNI, weight rows as vector lanes: the legacy types (Q4_0,
//! Q4_1, Q5_0, Q8_0) held as [`crate::repack::Layout::Interleaved8`], and Q4_K / Q6_K row-major.
//!
//! ## Legacy types
//!
//! The 8-token tiles (`x86::legacy_rows`) keep one (row, token) pair's block in a vector and
//! reduce it horizontally: per row, block and token about seven instructions, most of them
//! reductions and sign fixes. Here a 512-bit lane is a weight row instead. Two interleaved
//! groups (16 rows) are unpacked once per call into a panel where vector j of a block holds
//! elements 4j..4j+3 of every row (u8, made unsigned by the type's offset); a token's block is
//! then eight `vpdpbusd` against its quants broadcast four at a time, with no reduction:
//!
//! ```text
//! c[r]   = Σ_j dpbusd(panel[i][j][r], a[t][i][4j..4j+4]) − off·Σ a[t][i]   (exact integers)
//! acc[r] = fma(c[r]·d_w[r], d_a[t][i], acc[r])                             (legacy_step)
//! ```
//!
//! The exact block dot and the float step per lane are those of every other path
//! ([`super::x86::legacy_step`]), so each output has the same bits as the mat-vec and tiles.
//! The panel's unpacking and transposition are paid once per 16 rows and all the call's tokens.
//!
//! ## K-quants
//!
//! The same panel of 16 rows (read row-major), unit u holding elements 4u..4u+3 of every row,
//! plus each row's sub-block scales as i32 lanes, its (min or scale) pairs as i16 lanes for
//! `vpmaddwd` against the activation's bsums, and d (and −dmin) as f32. Per token and
//! super-block, a sub-block's dot is four or eight `vpdpbusd` and one `vpmulld` by its scale,
//! giving the exact Σ scale·(q·q8) and Σ factor·bsum of [`super::avx512::k_quant_step`] /
//! [`super::avx512::q6_k_step`], which then run lane-wise: the same bits as every other path.
use super::x86::{bytes_from_bits_32, fp16, nibbles_j_j16, unpack_k4_scales};
use super::GemmFn;
use crate::types::GgmlType;
use std::arch::x86_64::*;
use std::cell::RefCell;

/// The kernel for `ty`, if it has one (the caller checked AVX-512 VNNI).
pub fn gemm_fn(ty: GgmlType, layout: crate::repack::Layout) -> Option<GemmFn> {
    use crate::repack::Layout;
    // SAFETY (all): handed out only where AVX-512 BW/VL + VNNI were detected (`simd::isa`).
    Some(match (ty, layout) {
        (GgmlType::Q4_K, Layout::RowMajor) => |w, rb, r, a, arb, n, y, ys| unsafe { gemm_k::<Q4_K>(w, rb, r, a, arb, n, y, ys) },
        (GgmlType::Q6_K, Layout::RowMajor) => |w, rb, r, a, arb, n, y, ys| unsafe { gemm_k::<Q6_K>(w, rb, r, a, arb, n, y, ys) },
        (_, Layout::Interleaved8) => legacy_fn(ty)?,
        (_, Layout::Lanes16) => super::lanes::lanes_fn(ty)?,
        _ => return None,
    })
}

fn legacy_fn(ty: GgmlType) -> Option<GemmFn> {
    // SAFETY (all): handed out only where AVX-512 BW/VL + VNNI were detected (`simd::isa`).
    Some(match ty {
        GgmlType::Q4_0 => |w, rb, r, a, arb, n, y, ys| unsafe { gemm::<Q4_0>(w, rb, r, a, arb, n, y, ys) },
        GgmlType::Q4_1 => |w, rb, r, a, arb, n, y, ys| unsafe { gemm::<Q4_1>(w, rb, r, a, arb, n, y, ys) },
        GgmlType::Q5_0 => |w, rb, r, a, arb, n, y, ys| unsafe { gemm::<Q5_0>(w, rb, r, a, arb, n, y, ys) },
        GgmlType::Q8_0 => |w, rb, r, a, arb, n, y, ys| unsafe { gemm::<Q8_0>(w, rb, r, a, arb, n, y, ys) },
        _ => return None,
    })
}

/// One legacy weight type as the interleaved layout holds it.
const Q4_0: u8 = 0;
const Q4_1: u8 = 1;
const Q5_0: u8 = 2;
const Q8_0: u8 = 3;

/// (block bytes, f16 head bytes per row, offset that makes the quants unsigned, has Q4_1's
/// m·s term, activation block bytes, offset of the activation's quants in its block).
const fn shape(t: u8) -> (usize, usize, i32, bool, usize, usize) {
    match t {
        Q4_0 => (18, 2, 8, false, 34, 2),
        Q4_1 => (20, 4, 0, true, 36, 4),
        Q5_0 => (22, 2, 16, false, 34, 2),
        _ => (34, 2, 128, false, 34, 2),
    }
}

/// The 32 quants of one block body (what follows the f16 fields) as unsigned bytes, q + offset.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn quants<const T: u8>(p: *const u8) -> __m256i {
    match T {
        Q4_0 | Q4_1 => nibbles_j_j16(p),
        Q5_0 => {
            let hi = _mm256_and_si256(bytes_from_bits_32(u32::from_le_bytes((p as *const [u8; 4]).read_unaligned())), _mm256_set1_epi8(0x10));
            _mm256_or_si256(nibbles_j_j16(p.add(4)), hi)
        }
        _ => _mm256_xor_si256(_mm256_loadu_si256(p as *const __m256i), _mm256_set1_epi8(-128)),
    }
}

/// The f16 at `p` as f32 (block scales read by address).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn fp16_at(p: *const u8) -> f32 {
    fp16(crate::quants::Half([*p, *p.add(1)]))
}

/// 64 bytes, the panel's unit (one zmm).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Z([u8; 64]);

/// Per-worker scratch: the panel of 16 rows, and the activations' per-block f32 scales,
/// Q8_1 sums and offset corrections. Only grows.
#[derive(Default)]
struct Scratch {
    panel: Vec<Z>,
    dx: Vec<f32>,
    sx: Vec<f32>,
    corr: Vec<i32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Panel units per block: 8 quant vectors, the 16 rows' d as f32 and (Q4_1) m as f32.
const UNITS: usize = 10;

/// Tokens a pass over the panel carries in registers.
const TOKENS: usize = 8;

/// Runs `$pass::<$t, N>(&$args)` for the tokens in tiles of [`TOKENS`] (N a literal, so each
/// tile size keeps its accumulators in registers), `$t0` the tile's first token.
macro_rules! token_tiles {
    ($n:expr, $t0:ident => $pass:ident::<$t:ident>($args:expr)) => {{
        let mut $t0 = 0;
        while $t0 < $n {
            let nt = TOKENS.min($n - $t0);
            let args = $args;
            match nt {
                8 => $pass::<$t, 8>(&args),
                7 => $pass::<$t, 7>(&args),
                6 => $pass::<$t, 6>(&args),
                5 => $pass::<$t, 5>(&args),
                4 => $pass::<$t, 4>(&args),
                3 => $pass::<$t, 3>(&args),
                2 => $pass::<$t, 2>(&args),
                _ => $pass::<$t, 1>(&args),
            }
            $t0 += nt;
        }
    }};
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm<const T: u8>(w: &[u8], rb: usize, rows: usize, acts: &[u8], act_rb: usize, n_tokens: usize, y: *mut f32, y_stride: usize) {
    let (b, _, _, _, ab, _) = shape(T);
    let nb = rb / b;
    let ok = rb == nb * b && act_rb == nb * ab && rows.is_multiple_of(8) && w.len() >= rows * rb && acts.len() >= n_tokens * act_rb;
    if !ok {
        return nan_out(rows, n_tokens, y, y_stride);
    }
    SCRATCH.with_borrow_mut(|s| {
        s.prepare_acts::<T>(acts, act_rb, nb, n_tokens);
        if s.panel.len() < nb * UNITS {
            s.panel.resize(nb * UNITS, Z([0; 64]));
        }
        let Scratch { panel, dx, sx, corr } = s;
        let (dx, sx, corr) = (&dx[..], &sx[..], &corr[..]);
        for r0 in (0..rows).step_by(16) {
            fill_panel::<T>(w, rb, r0, 16.min(rows - r0), nb, panel);
            let mask = row_mask(rows - r0);
            token_tiles!(n_tokens, t0 => pass::<T>(Pass { panel, nb, acts, act_rb, t0, dx, sx, corr, y: y.add(r0), y_stride, mask }));
        }
    });
}

/// Lanes of a panel's rows that exist when `left` rows remain (bit r: row r).
fn row_mask(left: usize) -> u16 {
    ((1u32 << left.min(16)) - 1) as u16
}

/// NaN in every output (the kernels' answer to shapes that do not fit).
///
/// # Safety
/// As for the kernels: y valid for writes at t·y_stride + r, r < rows, t < n_tokens.
pub(super) unsafe fn nan_out(rows: usize, n_tokens: usize, y: *mut f32, y_stride: usize) {
    for t in 0..n_tokens {
        for r in 0..rows {
            *y.add(t * y_stride + r) = f32::NAN;
        }
    }
}

impl Scratch {
    /// Per token and block: d as f32, (Q4_1) s as f32, and offset·Σ quants.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn prepare_acts<const T: u8>(&mut self, acts: &[u8], act_rb: usize, nb: usize, n_tokens: usize) {
        let (_, _, off, bias, ab, aq) = shape(T);
        let n = nb * n_tokens;
        for v in [&mut self.dx, &mut self.sx] {
            if v.len() < n {
                v.resize(n, 0.0);
            }
        }
        if self.corr.len() < n {
            self.corr.resize(n, 0);
        }
        for t in 0..n_tokens {
            for i in 0..nb {
                let blk = acts.as_ptr().add(t * act_rb + i * ab);
                let k = t * nb + i;
                *self.dx.get_unchecked_mut(k) = fp16_at(blk);
                if bias {
                    *self.sx.get_unchecked_mut(k) = fp16_at(blk.add(2));
                }
                if off != 0 {
                    let q = _mm256_loadu_si256(blk.add(aq) as *const __m256i);
                    let sum = super::x86::hsum_i32x8(_mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), q));
                    *self.corr.get_unchecked_mut(k) = off * sum;
                }
            }
        }
    }
}

/// Unpacks rows r0..r0+nr (nr is 8 or 16; missing rows are zeros) into the panel: per block, unit j
/// (j < 8) holds elements 4j..4j+4 of row r in dword lane r, unit 8 the rows' d, unit 9 their m.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn fill_panel<const T: u8>(w: &[u8], rb: usize, r0: usize, nr: usize, nb: usize, panel: &mut [Z]) {
    let (b, h, _, bias, _, _) = shape(T);
    let group = |g: usize| w.as_ptr().add((r0 + 8 * g) * rb);
    for i in 0..nb {
        let half_panel = |g: usize| -> ([__m256i; 8], __m256, __m256) {
            if 8 * g >= nr {
                return ([_mm256_setzero_si256(); 8], _mm256_setzero_ps(), _mm256_setzero_ps());
            }
            let gb = group(g).add(i * 8 * b);
            let rows: [__m256i; 8] = std::array::from_fn(|k| quants::<T>(gb.add(8 * h + k * (b - h))));
            let d = _mm256_cvtph_ps(_mm_loadu_si128(gb as *const __m128i));
            let m = if bias { _mm256_cvtph_ps(_mm_loadu_si128(gb.add(16) as *const __m128i)) } else { _mm256_setzero_ps() };
            (transpose8x8(rows), d, m)
        };
        let (lo, dlo, mlo) = half_panel(0);
        let (hi, dhi, mhi) = half_panel(1);
        let unit = panel.as_mut_ptr().add(i * UNITS);
        store_units(unit, lo, hi);
        _mm512_store_ps(unit.add(8) as *mut f32, join(dlo, dhi));
        if bias {
            _mm512_store_ps(unit.add(9) as *mut f32, join(mlo, mhi));
        }
    }
}

/// [lo | hi] as one vector (AVX-512F only: `_mm512_insertf32x8` would need DQ, and outside it
/// is a call, not an instruction).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn join(lo: __m256, hi: __m256) -> __m512 {
    _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(lo)), _mm256_castps_pd(hi), 1))
}

/// Units j = 0..8 from rows 0..8 (`lo[j]`) and rows 8..16 (`hi[j]`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn store_units(unit: *mut Z, lo: [__m256i; 8], hi: [__m256i; 8]) {
    for (j, (l, h)) in lo.into_iter().zip(hi).enumerate() {
        _mm512_store_si512(unit.add(j) as *mut __m512i, _mm512_inserti64x4(_mm512_castsi256_si512(l), h, 1));
    }
}

/// 8×8 transpose of dwords: out[j] lane k = rows[k] lane j.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn transpose8x8(r: [__m256i; 8]) -> [__m256i; 8] {
    let t: [__m256i; 8] = std::array::from_fn(|k| {
        let (a, b) = (r[2 * (k / 2)], r[2 * (k / 2) + 1]);
        if k % 2 == 0 { _mm256_unpacklo_epi32(a, b) } else { _mm256_unpackhi_epi32(a, b) }
    });
    // t[2p] = rows 2p, 2p+1 dwords [0 1 | 4 5] interleaved; t[2p+1] = dwords [2 3 | 6 7].
    let u: [__m256i; 8] = std::array::from_fn(|k| {
        let (half, q) = (k / 4, k % 4);
        let (a, b) = (t[4 * half + q / 2], t[4 * half + 2 + q / 2]);
        if q % 2 == 0 { _mm256_unpacklo_epi64(a, b) } else { _mm256_unpackhi_epi64(a, b) }
    });
    // u[4h + q] = rows 4h..4h+4, dword q in the low 128 bits and dword q + 4 in the high.
    std::array::from_fn(|j| {
        let q = j % 4;
        if j < 4 { _mm256_permute2x128_si256(u[q], u[4 + q], 0x20) } else { _mm256_permute2x128_si256(u[q], u[4 + q], 0x31) }
    })
}

/// What one pass of up to [`TOKENS`] tokens over a panel reads and writes (the activations'
/// scales and corrections only for the legacy types).
struct Pass<'a> {
    panel: &'a [Z],
    nb: usize,
    acts: &'a [u8],
    act_rb: usize,
    t0: usize,
    dx: &'a [f32],
    sx: &'a [f32],
    corr: &'a [i32],
    y: *mut f32,
    y_stride: usize,
    /// The panel's rows that exist (bit r: row r).
    mask: u16,
}

/// N tokens (t0..t0+N) against the panel's 16 rows, every block, accumulators in registers.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn pass<const T: u8, const N: usize>(a: &Pass) {
    let (_, _, off, bias, ab, aq) = shape(T);
    let mut acc = [_mm512_setzero_ps(); N];
    let act: [*const u8; N] = std::array::from_fn(|t| a.acts.as_ptr().add((a.t0 + t) * a.act_rb + aq));
    for i in 0..a.nb {
        let unit = a.panel.as_ptr().add(i * UNITS);
        let wq: [__m512i; 8] = std::array::from_fn(|j| _mm512_load_si512(unit.add(j) as *const __m512i));
        let dw = _mm512_load_ps(unit.add(8) as *const f32);
        let mw = if bias { _mm512_load_ps(unit.add(9) as *const f32) } else { _mm512_setzero_ps() };
        for t in 0..N {
            let q = act[t].add(i * ab) as *const i32;
            let mut c = _mm512_setzero_si512();
            for (j, wj) in wq.iter().enumerate() {
                c = _mm512_dpbusd_epi32(c, *wj, _mm512_set1_epi32(q.add(j).read_unaligned()));
            }
            let k = (a.t0 + t) * a.nb + i;
            if off != 0 {
                c = _mm512_sub_epi32(c, _mm512_set1_epi32(*a.corr.get_unchecked(k)));
            }
            let cw = _mm512_mul_ps(_mm512_cvtepi32_ps(c), dw);
            acc[t] = _mm512_fmadd_ps(cw, _mm512_set1_ps(*a.dx.get_unchecked(k)), acc[t]);
            if bias {
                acc[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(*a.sx.get_unchecked(k)), acc[t]);
            }
        }
    }
    for (t, v) in acc.iter().enumerate() {
        _mm512_mask_storeu_ps(a.y.add((a.t0 + t) * a.y_stride), a.mask, *v);
    }
}

const Q4_K: u8 = 4;
const Q6_K: u8 = 5;

/// K-quant panel shapes: (block bytes, sub-blocks, element dwords per sub-block, panel units
/// per block). Units: 0..64 the quants, then the sub-block scales, then the 8 pair units, then
/// d (and Q4_K's −dmin).
const fn kshape(t: u8) -> (usize, usize, usize, usize) {
    match t {
        Q4_K => (144, 8, 8, 64 + 8 + 8 + 2),
        _ => (210, 16, 4, 64 + 16 + 8 + 1),
    }
}

/// Bytes of a Q8_K block, and the offsets of its quants and bsums.
pub(super) const Q8K_BYTES: usize = 292;
pub(super) const Q8K_QS: usize = 4;
pub(super) const Q8K_BSUMS: usize = 260;

thread_local! {
    static PANEL_K: RefCell<Vec<Z>> = const { RefCell::new(Vec::new()) };
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_k<const T: u8>(w: &[u8], rb: usize, rows: usize, acts: &[u8], act_rb: usize, n_tokens: usize, y: *mut f32, y_stride: usize) {
    let (b, _, _, units) = kshape(T);
    let nb = rb / b;
    let ok = rb == nb * b && act_rb == nb * Q8K_BYTES && w.len() >= rows * rb && acts.len() >= n_tokens * act_rb;
    if !ok {
        return nan_out(rows, n_tokens, y, y_stride);
    }
    PANEL_K.with_borrow_mut(|panel| {
        if panel.len() < nb * units {
            panel.resize(nb * units, Z([0; 64]));
        }
        for r0 in (0..rows).step_by(16) {
            fill_panel_k::<T>(w, rb, r0, 16.min(rows - r0), nb, panel);
            let mask = row_mask(rows - r0);
            token_tiles!(n_tokens, t0 => pass_k::<T>(Pass { panel, nb, acts, act_rb, t0, dx: &[], sx: &[], corr: &[], y: y.add(r0), y_stride, mask }));
        }
    });
}

/// Unpacks rows r0..r0+nr (nr <= 16; missing rows are zeros) of a row-major K-quant matrix
/// into the panel (see [`kshape`]).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn fill_panel_k<const T: u8>(w: &[u8], rb: usize, r0: usize, nr: usize, nb: usize, panel: &mut [Z]) {
    let (b, _, _, units) = kshape(T);
    let m4 = _mm256_set1_epi8(0x0F);
    let m2 = _mm256_set1_epi8(0x03);
    for i in 0..nb {
        let unit = panel.as_mut_ptr().add(i * units);
        let lane_u32 = |u: usize, r: usize, v: u32| (unit.add(u) as *mut u32).add(r).write(v);
        // Row r's quants as eight vectors of 32 elements, in element order.
        let mut q = [[_mm256_setzero_si256(); 8]; 16];
        for (r, qr) in q.iter_mut().enumerate() {
            if r >= nr {
                for u in 64..units {
                    lane_u32(u, r, 0);
                }
                continue;
            }
            let blk = w.as_ptr().add((r0 + r) * rb + i * b);
            let ld = |o: usize| _mm256_loadu_si256(blk.add(o) as *const __m256i);
            if T == Q4_K {
                for c in 0..4 {
                    let v = ld(16 + 32 * c);
                    qr[2 * c] = _mm256_and_si256(v, m4);
                    qr[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                }
                let sc = unpack_k4_scales(&*(blk.add(4) as *const [u8; 12]));
                let byte = |k: usize| (sc[k / 4] >> (8 * (k % 4))) & 0xFF;
                for j in 0..8 {
                    lane_u32(64 + j, r, byte(j));
                    lane_u32(72 + j, r, byte(8 + j) * 0x1_0001);
                }
                lane_u32(80, r, fp16_at(blk).to_bits());
                lane_u32(81, r, (-fp16_at(blk.add(2))).to_bits());
            } else {
                for n in 0..2 {
                    let (l0, l1, hb) = (ld(64 * n), ld(64 * n + 32), ld(128 + 32 * n));
                    let hi = |s: i32| _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(hb, _mm_cvtsi32_si128(s)), m2), 4);
                    qr[4 * n] = _mm256_or_si256(_mm256_and_si256(l0, m4), hi(0));
                    qr[4 * n + 1] = _mm256_or_si256(_mm256_and_si256(l1, m4), hi(2));
                    qr[4 * n + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), hi(4));
                    qr[4 * n + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), hi(6));
                }
                let sc = |k: usize| *blk.add(192 + k) as i8;
                for k in 0..16 {
                    lane_u32(64 + k, r, sc(k) as i32 as u32);
                }
                for p in 0..8 {
                    lane_u32(80 + p, r, (sc(2 * p) as i16 as u16 as u32) | (sc(2 * p + 1) as i16 as u16 as u32) << 16);
                }
                lane_u32(88, r, fp16_at(blk.add(208)).to_bits());
            }
        }
        // Vector v of the 16 rows becomes units 8v..8v+8 (v indexes q's inner dimension).
        #[allow(clippy::needless_range_loop)]
        for v in 0..8 {
            let column = |r0: usize| transpose8x8(std::array::from_fn(|r| q[r0 + r][v]));
            store_units(unit.add(8 * v), column(0), column(8));
        }
    }
}

/// N tokens (t0..t0+N) against a K-quant panel, every super-block: per sub-block the exact dot
/// by `vpdpbusd`, times its scale; then the type's step lane-wise.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn pass_k<const T: u8, const N: usize>(a: &Pass) {
    let (_, nsub, dw, units) = kshape(T);
    let mut acc = [_mm512_setzero_ps(); N];
    let act: [*const u8; N] = std::array::from_fn(|t| a.acts.as_ptr().add((a.t0 + t) * a.act_rb));
    for i in 0..a.nb {
        let unit = a.panel.as_ptr().add(i * units);
        let ld = |u: usize| _mm512_load_si512(unit.add(u) as *const __m512i);
        let mut s = [_mm512_setzero_si512(); N];
        for j in 0..nsub {
            let wq: [__m512i; 8] = std::array::from_fn(|m| if m < dw { ld(dw * j + m) } else { _mm512_setzero_si512() });
            let sc = ld(64 + j);
            for t in 0..N {
                let q = act[t].add(i * Q8K_BYTES + Q8K_QS + 4 * dw * j) as *const i32;
                let mut c = _mm512_setzero_si512();
                for (m, wm) in wq.iter().enumerate().take(dw) {
                    c = _mm512_dpbusd_epi32(c, *wm, _mm512_set1_epi32(q.add(m).read_unaligned()));
                }
                s[t] = _mm512_add_epi32(s[t], _mm512_mullo_epi32(c, sc));
            }
        }
        let pairs = 64 + nsub;
        for t in 0..N {
            let blk = act[t].add(i * Q8K_BYTES);
            let bs = blk.add(Q8K_BSUMS) as *const i32;
            let mut m = _mm512_madd_epi16(ld(pairs), _mm512_set1_epi32(bs.read_unaligned()));
            for p in 1..8 {
                m = _mm512_add_epi32(m, _mm512_madd_epi16(ld(pairs + p), _mm512_set1_epi32(bs.add(p).read_unaligned())));
            }
            let d8 = _mm512_set1_ps((blk as *const f32).read_unaligned());
            let d = _mm512_load_ps(unit.add(pairs + 8) as *const f32);
            if T == Q4_K {
                // k_quant_step: acc += (s·d)·d8, then acc += (m·(−dmin))·d8.
                let ndmin = _mm512_load_ps(unit.add(pairs + 9) as *const f32);
                acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s[t]), d), d8, acc[t]);
                acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(m), ndmin), d8, acc[t]);
            } else {
                // q6_k_step: acc += ((s − 32·o)·d)·d8.
                let c = _mm512_sub_epi32(s[t], _mm512_slli_epi32(m, 5));
                acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(c), d), d8, acc[t]);
            }
        }
    }
    for (t, v) in acc.iter().enumerate() {
        _mm512_mask_storeu_ps(a.y.add((a.t0 + t) * a.y_stride), a.mask, *v);
    }
}
