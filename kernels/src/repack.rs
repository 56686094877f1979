//! Weight layouts the kernels read faster than ggml's, made once at load, in place.
//!
//! ## Transposed K-quant super-blocks (Q4_K, Q6_K; AVX2)
//!
//! [`Layout::Transposed`] keeps the rows in order and every super-block's size, scales and d,
//! and permutes the quants inside it (see [`transposed_slot`]) so that the eight 32-byte
//! vectors a kernel unpacks hold one piece of every scale group side by side: Q4_K's dword
//! lane i is group i in every vector, Q6_K's i16 lane k is group k. Their `vpmaddubsw` products
//! then add up as i16 across vectors before one `vpmaddwd` by the scales (Q4_K: one for the
//! block instead of eight; Q6_K: four), with no shuffles per block; the activation is
//! reordered to match once per call. The kernels give the same exact integer sums, so the same
//! bits as the row-major ones. AMD Zen 1 (AVX2), 2 threads, `kiln bench -p 512 -n 64 -t 2 -r
//! 2` on the synthetic 1.1B Q4_K_M, row-major → transposed: tg 19.1 → 20.8 tok/s, pp512 39.0 →
//! 42.2; one thread's L2-resident mat-vec (`cargo bench --bench kernels -- vec_dot`) Q4_K 7.34 →
//! 8.21 GiB/s, Q6_K 6.55 → 8.26.
//!
//! ## K-quant rows as vector lanes (Q4_K, Q6_K; AVX-512 VNNI)
//!
//! [`Layout::Lanes16`] stores each group of 16 rows as their super-blocks in order, the 16 rows'
//! super-block i as one block of 16 × 144 (Q4_K) or 16 × 210 (Q6_K) bytes in which row r owns
//! 32-bit lane r of every 64-byte vector (see [`to_lanes`] for the bytes). The kernels
//! (`simd::lanes`) then take a sub-block as `vpdpbusd` against the activation's quants and one
//! `vpmulld` by 16 rows' scales, and run the float step lane-wise: no horizontal sums and no
//! per-block shuffles, for decode and prefill alike, with the same bits as every other path.
//! Rows past the last full group stay row-major at the end. `cargo bench --bench kernels`, Zen 4,
//! row-major → lanes: one thread over 64 rows in L2 (`vec_dot`) Q4_K 16.3 → 52.4 GiB/s, Q6_K
//! 22.8 → 62.9; two threads (`matvec`) Q4_K 5632x2048 25.2 → 74.5 GiB/s; the synthetic 1.1B's
//! one-thread decode 26.0 → 30.3 tok/s (`kiln bench -p 16 -n 64 -t 1`).
//!
//! ## Row-interleaved legacy blocks
//!
//! Row-major, the 8-row mat-vec kernels read eight rows in lockstep: eight short streams, one
//! block (18–34 bytes) of each at a time, which the hardware prefetcher follows badly.
//! [`Layout::Interleaved8`] stores each group of 8 rows as one sequential stream:
//!
//! ```text
//! group g (rows 8g..8g+8), for each block index i in row order:
//!   the blocks' f16 fields, field by field, 8 rows each   (Q4_0/Q5_0/Q8_0: 8 d; Q4_1: 8 d, 8 m)
//!   the rest of the 8 blocks, row after row                (Q5_0: qh then qs; others: qs)
//! ```
//!
//! A group takes the same bytes as its 8 rows did, so the repack is done in place. Rows past the
//! last full group stay row-major at the end. The scales of eight rows then load as one vector
//! instead of eight 16-bit inserts. Only the legacy 32-element types take this layout; the
//! kernels reading it give the same bits as the row-major ones (see `simd::x86::legacy_rows`).
//! `cargo bench --bench kernels -- matvec`, 2 threads, Zen 4 (AVX-512 VNNI), row-major →
//! interleaved: Q8_0 262144x640 (gemma3's output) 20.1 → 33.2 GiB/s, Q4_1 5632x2048 26.2 → 41.0,
//! Q5_0 2048x2048 22.4 → 25.2, Q4_0 5632x2048 25.1 → 27.4.
//! Q4_K and Q6_K rows are long runs of 144 / 210-byte super-blocks, one stream already; eight of
//! them side by side as vector lanes (AVX2 code, on a Zen 4 with AVX-512, `cargo bench --bench
//! kernels -- matvec`, 2 threads) gave Q4_K 5632x2048 23.7 → 26.1 GiB/s but 2048x2048 22.8 → 21.1,
//! Q6_K 2048x5632 32.8 → 32.3 and 49152x2048 21.9 → 17.2: not kept.
use crate::matmul::QMatrix;
use crate::types::GgmlType;

/// Rows per interleaved group.
pub const GROUP: usize = 8;

/// How a matrix's rows lie in memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Layout {
    /// ggml's own: row after row.
    #[default]
    RowMajor,
    /// Groups of [`GROUP`] rows interleaved block by block (see the module docs).
    Interleaved8,
    /// K-quant super-blocks (Q4_K, Q6_K) in row order with the quants of each permuted so that
    /// the AVX2 kernels' vectors hold one element of every group side by side (see
    /// [`transposed_slot`]): all of a block's products then share one scale vector.
    Transposed,
    /// Q4_K / Q6_K in groups of [`LANES`] rows, each super-block of the 16 rows stored as one
    /// block with row r in the 32-bit lane r of every vector (see the module docs).
    Lanes16,
}

impl Layout {
    /// Rows a repacked group holds (the row-major tail follows the last full one); 1 for the
    /// layouts that keep rows apart.
    pub const fn group_rows(self) -> usize {
        match self {
            Layout::Interleaved8 => GROUP,
            Layout::Lanes16 => LANES,
            Layout::RowMajor | Layout::Transposed => 1,
        }
    }
}

/// The layout the kernels of this CPU read a `rows`×`cols` matrix of `ty` fastest in, as
/// [`repack_in_place`] makes it: [`Layout::Interleaved8`] for the legacy types with an
/// interleaved mat-vec, [`Layout::Lanes16`] for Q4_K / Q6_K with rows-as-lanes kernels (AVX-512
/// VNNI), [`Layout::Transposed`] for them with transposed kernels (AVX2), else
/// [`Layout::RowMajor`] (also for everything with `KILN_INTERLEAVE=0`, and for the types that
/// [`llamacpp`](crate::simd::llamacpp)'s order covers when that mode is on: its kernels read
/// rows as the file has them).
pub fn best_layout(ty: GgmlType, rows: usize, cols: usize) -> Layout {
    if crate::simd::llamacpp::enabled() && crate::simd::llamacpp::dot_fn(ty).is_some() {
        Layout::RowMajor
    } else if interleave_pays(ty, rows, cols) {
        Layout::Interleaved8
    } else if lanes_pay(ty, rows, cols) {
        Layout::Lanes16
    } else if ty.row_bytes(cols).is_some() && crate::simd::transposed_fns(ty).is_some() {
        Layout::Transposed
    } else {
        Layout::RowMajor
    }
}

/// Repacks a row-major matrix in place into `layout` (see [`best_layout`]); false, with `data`
/// untouched, where the type or shape does not take it.
pub fn repack_in_place(ty: GgmlType, data: &mut [u8], rows: usize, cols: usize, layout: Layout) -> bool {
    match layout {
        Layout::RowMajor => true,
        Layout::Interleaved8 => interleave_in_place(ty, data, rows, cols),
        Layout::Transposed => transpose_in_place(ty, data, rows, cols),
        Layout::Lanes16 => lanes_in_place(ty, data, rows, cols),
    }
}

/// Where [`Layout::Transposed`] keeps a quant: the kernels unpack a super-block's quants as
/// eight 32-byte vectors ("slots" j = 0..8, byte l = 0..32; Q4_K: the low, j even, or high
/// nibbles of qs[32(j/2) + l]; Q6_K: j = 4n + g, low bits in ql[64n + 32(g & 1) + l], high bits
/// 2g, 2g+1 of qh[32n + l], as in ggml). Row-major, slot (j, l) holds element 32j + l. Transposed,
/// it holds Q4_K's element 32(l/4) + 4j + l%4 (dword lane i of every vector is group i) and
/// Q6_K's 16(l/2) + 2j + l%2 (i16 lane k of every vector is group k), and Q6_K's quants are
/// stored three bytes to four (see [`unpack_slots`]). Scales and d stay.
pub const fn transposed_slot(ty: GgmlType, j: usize, l: usize) -> usize {
    match ty {
        GgmlType::Q6_K => 16 * (l / 2) + 2 * j + l % 2,
        _ => 32 * (l / 4) + 4 * j + l % 4,
    }
}

/// Little-endian u32 words of `b`.
fn words<const N: usize>(b: &[u8]) -> [u32; N] {
    std::array::from_fn(|i| u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]))
}

const LO: u32 = 0x0F0F_0F0F;

/// One super-block's quants in slot order, four to a little-endian word (slot (j, l) is byte
/// l % 4 of word 8j + l/4). Q6_K's quant bytes are read as ggml's ql/qh, or (`packed3`) as
/// [`Layout::Transposed`] keeps them: each run of 96 bytes h = 0, 1 holds slots 4h..4h+3, three
/// 32-byte vectors k with slot 4h + k in their low 6 bits and bits 2k, 2k+1 of slot 4h + 3 in
/// their top two (one mask each unpacks three of every four vectors).
fn unpack_slots(ty: GgmlType, b: &[u8], packed3: bool) -> [u32; 64] {
    if ty == GgmlType::Q6_K && packed3 {
        let q = words::<48>(&b[..192]);
        std::array::from_fn(|w| {
            let (j, m) = (w / 8, w % 8);
            let (h, k) = (j / 4, j % 4);
            let at = |k: usize| q[24 * h + 8 * k + m];
            match k {
                3 => (at(0) >> 6 & 0x0303_0303) | (at(1) >> 4 & 0x0C0C_0C0C) | (at(2) >> 2 & 0x3030_3030),
                _ => at(k) & 0x3F3F_3F3F,
            }
        })
    } else if ty == GgmlType::Q6_K {
        let (ql, qh) = (words::<32>(&b[..128]), words::<16>(&b[128..192]));
        std::array::from_fn(|w| {
            let (j, m) = (w / 8, w % 8);
            let (n, g) = (j / 4, j % 4);
            (ql[16 * n + 8 * (g & 1) + m] >> (4 * (g / 2)) & LO) | (qh[8 * n + m] >> (2 * g) & 0x0303_0303) << 4
        })
    } else {
        let qs = words::<32>(&b[16..144]);
        std::array::from_fn(|w| {
            let (j, m) = (w / 8, w % 8);
            qs[8 * (j / 2) + m] >> (4 * (j % 2)) & LO
        })
    }
}

/// The inverse of [`unpack_slots`].
fn pack_slots(ty: GgmlType, q: &[u32; 64], b: &mut [u8], packed3: bool) {
    let mut set = |at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    if ty == GgmlType::Q6_K && packed3 {
        for h in 0..2 {
            for m in 0..8 {
                let top = q[8 * (4 * h + 3) + m];
                for k in 0..3 {
                    set(96 * h + 32 * k + 4 * m, q[8 * (4 * h + k) + m] | (top >> (2 * k) & 0x0303_0303) << 6);
                }
            }
        }
    } else if ty == GgmlType::Q6_K {
        for n in 0..2 {
            for m in 0..8 {
                let g: [u32; 4] = std::array::from_fn(|g| q[8 * (4 * n + g) + m]);
                set(64 * n + 4 * m, (g[0] & LO) | (g[2] & LO) << 4);
                set(64 * n + 32 + 4 * m, (g[1] & LO) | (g[3] & LO) << 4);
                set(128 + 32 * n + 4 * m, (0..4).fold(0, |h, k| h | (g[k] >> 4 & 0x0303_0303) << (2 * k)));
            }
        }
    } else {
        for c in 0..4 {
            for m in 0..8 {
                set(16 + 32 * c + 4 * m, q[8 * (2 * c) + m] | q[8 * (2 * c + 1) + m] << 4);
            }
        }
    }
}

/// One super-block between layouts: to transposed (`forward`) or back to row-major. Slot
/// (j, l) holds [`transposed_slot`]'s element: Q4_K's slots are an 8×8 transpose of the
/// row-major slots' dwords (its own inverse), Q6_K's a 16×8 transpose of their 16-bit words
/// (group k's word w, at 8k + w row-major, goes to 16w + k), stored three bytes to four quants.
fn transpose_block(ty: GgmlType, b: &mut [u8], forward: bool) {
    let old = unpack_slots(ty, b, !forward);
    let new: [u32; 64] = if ty == GgmlType::Q6_K {
        let half = |w: usize| (old[w / 2] >> (16 * (w % 2))) & 0xFFFF;
        // Word t of the result comes from word src(t).
        let src = |t: usize| if forward { 8 * (t % 16) + t / 16 } else { 16 * (t % 8) + t / 8 };
        std::array::from_fn(|i| half(src(2 * i)) | half(src(2 * i + 1)) << 16)
    } else {
        std::array::from_fn(|i| old[8 * (i % 8) + i / 8])
    };
    pack_slots(ty, &new, b, forward);
}

/// [`transpose_block`] over whole super-blocks, on up to 8 threads (a model's worth at load).
fn transpose_blocks(ty: GgmlType, data: &mut [u8], bb: usize, forward: bool) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let per = data.len().div_ceil(bb).div_ceil(threads).max(1024) * bb;
    if data.len() <= per {
        return data.chunks_exact_mut(bb).for_each(|b| transpose_block(ty, b, forward));
    }
    std::thread::scope(|s| {
        for part in data.chunks_mut(per) {
            s.spawn(move || part.chunks_exact_mut(bb).for_each(|b| transpose_block(ty, b, forward)));
        }
    });
}

/// Super-block bytes of the types that take [`Layout::Transposed`].
fn transposed_block_bytes(ty: GgmlType) -> Option<usize> {
    matches!(ty, GgmlType::Q4_K | GgmlType::Q6_K).then(|| ty.type_size())
}

/// A row-major Q4_K / Q6_K matrix into [`Layout::Transposed`], in place; false, with `data`
/// untouched, for another type or a shape that does not fit.
pub fn transpose_in_place(ty: GgmlType, data: &mut [u8], rows: usize, cols: usize) -> bool {
    let (Some(bb), Some(rb)) = (transposed_block_bytes(ty), ty.row_bytes(cols)) else { return false };
    if data.len() != rows * rb {
        return false;
    }
    transpose_blocks(ty, data, bb, true);
    true
}

/// Calls `$f::<BLOCK, HEAD>(args)` with `ty`'s block shape as constants (so the many small
/// copies compile to plain moves); None for a type that does not interleave.
macro_rules! by_shape {
    ($ty:expr, $f:ident($($arg:expr),*)) => {
        match $ty {
            GgmlType::Q4_0 => Some($f::<18, 2>($($arg),*)),
            GgmlType::Q4_1 => Some($f::<20, 4>($($arg),*)),
            GgmlType::Q5_0 => Some($f::<22, 2>($($arg),*)),
            GgmlType::Q8_0 => Some($f::<34, 2>($($arg),*)),
            _ => None,
        }
    };
}

/// (block bytes, bytes of f16 fields at the block's start) for the types that interleave.
fn block_shape(ty: GgmlType) -> Option<(usize, usize)> {
    fn shape<const B: usize, const H: usize>() -> (usize, usize) {
        (B, H)
    }
    by_shape!(ty, shape())
}

/// Whether a `rows`×`cols` matrix of `ty` can be interleaved and read so on this CPU: a type
/// with an interleaved mat-vec kernel here, at least one full group, rows of
/// whole blocks.
pub fn interleave_pays(ty: GgmlType, rows: usize, cols: usize) -> bool {
    block_shape(ty).is_some() && rows >= GROUP && ty.row_bytes(cols).is_some() && crate::simd::matvec_rows_x8_fn(ty).is_some()
}

/// Offset of row `k`'s field `f` (f16 index) / body inside a group-block of 8 blocks.
#[inline(always)]
fn field_at(f: usize, k: usize) -> usize {
    f * 2 * GROUP + 2 * k
}

/// 8 row-major rows (`src`, 8·rb bytes) → one interleaved group (`dst`, the same length).
fn interleave_group<const B: usize, const H: usize>(rb: usize, src: &[u8], dst: &mut [u8]) {
    for i in 0..rb / B {
        let g = &mut dst[i * GROUP * B..(i + 1) * GROUP * B];
        for k in 0..GROUP {
            let b = &src[k * rb + i * B..k * rb + (i + 1) * B];
            for f in 0..H / 2 {
                g[field_at(f, k)..field_at(f, k) + 2].copy_from_slice(&b[2 * f..2 * f + 2]);
            }
            g[GROUP * H + k * (B - H)..GROUP * H + (k + 1) * (B - H)].copy_from_slice(&b[H..]);
        }
    }
}

/// Rows `k0..k1` (≤ 8) of an interleaved group into `out` ((k1 − k0)·rb bytes), row-major.
fn group_rows<const B: usize, const H: usize>(rb: usize, group: &[u8], k0: usize, k1: usize, out: &mut [u8]) {
    for i in 0..rb / B {
        let g = &group[i * GROUP * B..(i + 1) * GROUP * B];
        for k in k0..k1 {
            let b = &mut out[(k - k0) * rb + i * B..(k - k0) * rb + (i + 1) * B];
            for f in 0..H / 2 {
                b[2 * f..2 * f + 2].copy_from_slice(&g[field_at(f, k)..field_at(f, k) + 2]);
            }
            b[H..].copy_from_slice(&g[GROUP * H + k * (B - H)..GROUP * H + (k + 1) * (B - H)]);
        }
    }
}

/// Interleaves a row-major `rows`×`cols` matrix of `ty` in place (one group's scratch, 8 rows,
/// is all it allocates). False, with `data` untouched, if the type or shape does not take the
/// layout.
pub fn interleave_in_place(ty: GgmlType, data: &mut [u8], rows: usize, cols: usize) -> bool {
    let (Some(_), Some(rb)) = (block_shape(ty), ty.row_bytes(cols)) else { return false };
    if rows < GROUP || data.len() != rows * rb {
        return false;
    }
    let mut scratch = vec![0u8; GROUP * rb];
    for g in data.chunks_exact_mut(GROUP * rb) {
        scratch.copy_from_slice(g);
        by_shape!(ty, interleave_group(rb, &scratch, g));
    }
    true
}

/// Copies rows `r0..r1` of `w` into `out` ((r1 − r0)·rb bytes), row-major. With
/// [`Layout::Interleaved8`], `r0` must start a group (or lie past the last full one).
pub fn rows_row_major(w: &QMatrix, r0: usize, r1: usize, out: &mut [u8]) -> bool {
    let QMatrix { ty, data, rows, cols, layout } = *w;
    let Some(rb) = ty.row_bytes(cols) else { return false };
    if r0 > r1 || r1 > rows || data.len() != rows * rb || out.len() != (r1 - r0) * rb {
        return false;
    }
    if layout == Layout::Transposed {
        let Some(bb) = transposed_block_bytes(ty) else { return false };
        out.copy_from_slice(&data[r0 * rb..r1 * rb]);
        transpose_blocks(ty, out, bb, false);
        return true;
    }
    let lanes = layout == Layout::Lanes16 && transposed_block_bytes(ty).is_some();
    if !lanes && (block_shape(ty).is_none() || layout != Layout::Interleaved8) {
        out.copy_from_slice(&data[r0 * rb..r1 * rb]);
        return true;
    }
    let size = layout.group_rows();
    let full = rows / size * size;
    if r0 < full && !r0.is_multiple_of(size) {
        return false;
    }
    let mut r = r0;
    while r < r1 {
        let o = (r - r0) * rb;
        if r < full {
            let (group, n) = (&data[r * rb..(r + size) * rb], size.min(r1 - r));
            if lanes {
                lanes_rows(ty, rb, group, 0, n, &mut out[o..o + n * rb]);
            } else {
                by_shape!(ty, group_rows(rb, group, 0, n, &mut out[o..o + n * rb]));
            }
            r += size;
        } else {
            out[o..o + (r1 - r) * rb].copy_from_slice(&data[r * rb..r1 * rb]);
            r = r1;
        }
    }
    true
}

/// Row `r` of `w`, row-major, into `out` (rb bytes).
pub fn row(w: &QMatrix, r: usize, out: &mut [u8]) -> bool {
    let QMatrix { ty, data, rows, cols, layout } = *w;
    let Some(rb) = ty.row_bytes(cols) else { return false };
    if r >= rows || data.len() != rows * rb || out.len() != rb {
        return false;
    }
    if layout == Layout::Transposed {
        return rows_row_major(w, r, r + 1, out);
    }
    if layout == Layout::Lanes16 && transposed_block_bytes(ty).is_some() {
        let g = r / LANES * LANES;
        if g + LANES <= rows {
            lanes_rows(ty, rb, &data[g * rb..(g + LANES) * rb], r - g, r - g + 1, out);
        } else {
            out.copy_from_slice(&data[r * rb..(r + 1) * rb]);
        }
        return true;
    }
    let full = rows / GROUP * GROUP;
    let g = r / GROUP * GROUP;
    if layout != Layout::Interleaved8 || r >= full || by_shape!(ty, group_rows(rb, &data[g * rb..(g + GROUP) * rb], r - g, r - g + 1, out)).is_none() {
        out.copy_from_slice(&data[r * rb..(r + 1) * rb]);
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Rows as vector lanes (Layout::Lanes16)

/// Rows per [`Layout::Lanes16`] group.
pub const LANES: usize = 16;

/// Whether a `rows`×`cols` matrix of `ty` is read faster as [`Layout::Lanes16`] on this CPU:
/// Q4_K / Q6_K with a rows-as-lanes kernel here, at least one full group (`KILN_INTERLEAVE=0`:
/// never, like the other repacked layouts).
pub fn lanes_pay(ty: GgmlType, rows: usize, cols: usize) -> bool {
    !crate::simd::repack_off() && transposed_block_bytes(ty).is_some() && rows >= LANES && ty.row_bytes(cols).is_some() && crate::simd::gemm_fn(ty, Layout::Lanes16).is_some()
}

/// A row-major super-block's 256 quants in element order, unsigned: Q4_K's 4-bit, Q6_K's
/// 6-bit ([`unpack_slots`]: row-major, slot (j, l) is element 32j + l).
fn k_quants(ty: GgmlType, b: &[u8]) -> [u8; 256] {
    let w = unpack_slots(ty, b, false);
    std::array::from_fn(|e| w[e / 4].to_le_bytes()[e % 4])
}

/// The inverse of [`k_quants`]: writes the quant bytes of row-major super-block `b` (scales and
/// d stay).
fn set_k_quants(ty: GgmlType, b: &mut [u8], q: &[u8; 256]) {
    let w: [u32; 64] = std::array::from_fn(|i| u32::from_le_bytes([q[4 * i], q[4 * i + 1], q[4 * i + 2], q[4 * i + 3]]));
    pack_slots(ty, &w, b, false);
}

/// Where the parts of a [`Layout::Lanes16`] super-block start (see [`to_lanes`]).
pub(crate) const Q4K_D: usize = 0;
pub(crate) const Q4K_SC: usize = 64;
pub(crate) const Q4K_MN: usize = 192;
pub(crate) const Q4K_QS: usize = 256;
pub(crate) const Q6K_D: usize = 0;
pub(crate) const Q6K_SC: usize = 32;
pub(crate) const Q6K_QS: usize = 288;

/// The 16 row-major super-blocks `src[r]` as one [`Layout::Lanes16`] block `dst`.
///
/// Every vector is 64 bytes, 32-bit lane r belonging to row r; "unit u" is elements 4u..4u+3.
///
/// Each super-block's d and scales come before its quants, so a mat-vec reads its bytes in one
/// ascending sweep and the hardware prefetcher sees nothing but the stream. They used to follow
/// the quants, and each super-block's first loads jumped ahead to them and back: the synthetic
/// 1.1B decoded 10.8% and 11.3% faster with them first (3.4% in a moment of slow memory;
/// Zen 4, 2 threads, the two layouts alternated every 4 tokens in one process). Cache-line
/// alignment matters less than order: Q6_K super-blocks in pairs with both headers first, so
/// every quant vector sat on one cache line, decoded 11-17% slower than this.
///
/// Q4_K (2304 bytes):
/// ```text
/// [0, 32)       the rows' d (f16), then [32, 64) their dmin
/// [64, 192)     two vectors: byte k of lane r = scale of sub-block 4v + k, its min's bits 4-5
///               in bits 6-7
/// [192, 256)    byte k of lane r = bits 0-3 of the mins of sub-blocks k and k + 4
/// [256, 2304)   32 vectors: vector 8p + m (p < 4, m < 8) holds unit 16p + m in its low nibbles
///               and unit 16p + 8 + m in its high ones (sub-blocks 2p and 2p + 1)
/// ```
/// Q6_K (3360 bytes):
/// ```text
/// [0, 32)       the rows' d (f16)
/// [32, 288)     the scales (i8), 16 bytes a sub-block, byte r = row r's
/// [288, 3360)   for each sub-block g (16 elements, units 4g..4g+3): three vectors, vector k
///               holding unit 4g + k in bits 0-5 and bits 2k, 2k+1 of unit 4g + 3 in bits 6-7
/// ```
fn to_lanes(ty: GgmlType, src: &[&[u8]; LANES], dst: &mut [u8]) {
    let q: [[u8; 256]; LANES] = std::array::from_fn(|r| k_quants(ty, src[r]));
    if ty == GgmlType::Q6_K {
        for g in 0..16 {
            for k in 0..3 {
                for r in 0..LANES {
                    for e in 0..4 {
                        let top = (q[r][4 * (4 * g + 3) + e] >> (2 * k)) & 3;
                        dst[Q6K_QS + 64 * (3 * g + k) + 4 * r + e] = q[r][4 * (4 * g + k) + e] | top << 6;
                    }
                }
            }
        }
        for (r, b) in src.iter().enumerate() {
            for j in 0..16 {
                dst[Q6K_SC + 16 * j + r] = b[192 + j];
            }
            dst[Q6K_D + 2 * r..Q6K_D + 2 + 2 * r].copy_from_slice(&b[208..210]);
        }
        return;
    }
    for p in 0..4 {
        for m in 0..8 {
            for r in 0..LANES {
                for e in 0..4 {
                    dst[Q4K_QS + 64 * (8 * p + m) + 4 * r + e] = q[r][4 * (16 * p + m) + e] | q[r][4 * (16 * p + 8 + m) + e] << 4;
                }
            }
        }
    }
    for (r, b) in src.iter().enumerate() {
        dst[Q4K_D + 2 * r..Q4K_D + 2 + 2 * r].copy_from_slice(&b[0..2]);
        dst[Q4K_D + 32 + 2 * r..Q4K_D + 34 + 2 * r].copy_from_slice(&b[2..4]);
        let packed: [u8; 12] = std::array::from_fn(|k| b[4 + k]);
        let (sc, mn): ([u8; 8], [u8; 8]) = (
            std::array::from_fn(|j| crate::quants::common::get_scale_min_k4(j, &packed).0),
            std::array::from_fn(|j| crate::quants::common::get_scale_min_k4(j, &packed).1),
        );
        for k in 0..4 {
            dst[Q4K_SC + 4 * r + k] = sc[k] | (mn[k] >> 4) << 6;
            dst[Q4K_SC + 64 + 4 * r + k] = sc[k + 4] | (mn[k + 4] >> 4) << 6;
            dst[Q4K_MN + 4 * r + k] = (mn[k] & 0xF) | (mn[k + 4] & 0xF) << 4;
        }
    }
}

/// The inverse of [`to_lanes`]: row r's super-block into `dst[r]` (for the rows asked for).
fn from_lanes(ty: GgmlType, src: &[u8], dst: &mut [Option<&mut [u8]>; LANES]) {
    for (r, out) in dst.iter_mut().enumerate() {
        let Some(b) = out else { continue };
        let mut q = [0u8; 256];
        if ty == GgmlType::Q6_K {
            for g in 0..16 {
                for e in 0..4 {
                    let v: [u8; 3] = std::array::from_fn(|k| src[Q6K_QS + 64 * (3 * g + k) + 4 * r + e]);
                    for k in 0..3 {
                        q[4 * (4 * g + k) + e] = v[k] & 0x3F;
                    }
                    q[4 * (4 * g + 3) + e] = v[0] >> 6 | (v[1] >> 6) << 2 | (v[2] >> 6) << 4;
                }
            }
            for j in 0..16 {
                b[192 + j] = src[Q6K_SC + 16 * j + r];
            }
            b[208..210].copy_from_slice(&src[Q6K_D + 2 * r..Q6K_D + 2 + 2 * r]);
        } else {
            for p in 0..4 {
                for m in 0..8 {
                    for e in 0..4 {
                        let v = src[Q4K_QS + 64 * (8 * p + m) + 4 * r + e];
                        q[4 * (16 * p + m) + e] = v & 0xF;
                        q[4 * (16 * p + 8 + m) + e] = v >> 4;
                    }
                }
            }
            b[0..2].copy_from_slice(&src[Q4K_D + 2 * r..Q4K_D + 2 + 2 * r]);
            b[2..4].copy_from_slice(&src[Q4K_D + 32 + 2 * r..Q4K_D + 34 + 2 * r]);
            let at = |o: usize, k: usize| src[o + 4 * r + k];
            let sc: [u8; 8] = std::array::from_fn(|j| at(Q4K_SC + 64 * (j / 4), j % 4) & 0x3F);
            let mn: [u8; 8] = std::array::from_fn(|j| (at(Q4K_MN, j % 4) >> (4 * (j / 4)) & 0xF) | (at(Q4K_SC + 64 * (j / 4), j % 4) >> 6) << 4);
            // ggml's 12-byte packing (the inverse of `get_scale_min_k4`).
            for k in 0..4 {
                b[4 + k] = sc[k] | (sc[k + 4] >> 4) << 6;
                b[8 + k] = mn[k] | (mn[k + 4] >> 4) << 6;
                b[12 + k] = (sc[k + 4] & 0xF) | (mn[k + 4] & 0xF) << 4;
            }
        }
        set_k_quants(ty, b, &q);
    }
}

/// One group of 16 row-major rows (`rb` bytes each) into [`Layout::Lanes16`], in place.
fn lanes_group(ty: GgmlType, rb: usize, group: &mut [u8], scratch: &mut [u8]) {
    let bb = ty.type_size();
    scratch.copy_from_slice(group);
    for (i, dst) in group.chunks_exact_mut(LANES * bb).enumerate() {
        let src: [&[u8]; LANES] = std::array::from_fn(|r| &scratch[r * rb + i * bb..r * rb + (i + 1) * bb]);
        to_lanes(ty, &src, dst);
    }
}

/// A row-major Q4_K / Q6_K matrix into [`Layout::Lanes16`], in place, on up to 8 threads: each
/// group of 16 rows becomes its super-blocks in row order, 16 rows to a block (see
/// [`to_lanes`]); rows past the last full group stay row-major at the end. False, with `data`
/// untouched, for another type or a shape that does not fit.
pub fn lanes_in_place(ty: GgmlType, data: &mut [u8], rows: usize, cols: usize) -> bool {
    let (Some(_), Some(rb)) = (transposed_block_bytes(ty), ty.row_bytes(cols)) else { return false };
    if rows < LANES || data.len() != rows * rb {
        return false;
    }
    let full = rows / LANES * LANES * rb;
    let groups = &mut data[..full];
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let per = (full / (LANES * rb)).div_ceil(threads).max(1) * LANES * rb;
    std::thread::scope(|s| {
        for part in groups.chunks_mut(per) {
            s.spawn(move || {
                let mut scratch = vec![0u8; LANES * rb];
                part.chunks_exact_mut(LANES * rb).for_each(|g| lanes_group(ty, rb, g, &mut scratch));
            });
        }
    });
    true
}

/// Rows `k0..k1` of one [`Layout::Lanes16`] group into `out` ((k1 − k0)·rb bytes), row-major.
fn lanes_rows(ty: GgmlType, rb: usize, group: &[u8], k0: usize, k1: usize, out: &mut [u8]) {
    let bb = ty.type_size();
    for (i, src) in group.chunks_exact(LANES * bb).enumerate() {
        let mut rows: [Option<&mut [u8]>; LANES] = Default::default();
        for (slot, o) in rows[k0..k1].iter_mut().zip(out.chunks_exact_mut(rb)) {
            *slot = Some(&mut o[i * bb..(i + 1) * bb]);
        }
        from_lanes(ty, src, &mut rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleave_round_trips_and_rows_read_back() {
        for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q8_0] {
            let (rows, cols) = (21, 96);
            let rb = ty.row_bytes(cols).unwrap();
            let orig: Vec<u8> = (0..rows * rb).map(|i| (i * 7 + i / 13) as u8).collect();
            let mut data = orig.clone();
            assert!(interleave_in_place(ty, &mut data, rows, cols));
            assert_ne!(data, orig, "{ty}: nothing moved");
            // The tail rows (16..21) stay row-major.
            assert_eq!(data[16 * rb..], orig[16 * rb..]);
            let w = QMatrix::new(ty, &data, rows, cols).unwrap().with_layout(Layout::Interleaved8);
            for r in 0..rows {
                let mut out = vec![0u8; rb];
                assert!(row(&w, r, &mut out));
                assert_eq!(out, orig[r * rb..(r + 1) * rb], "{ty} row {r}");
            }
            for (r0, r1) in [(0, rows), (8, 19), (16, 21), (0, 3)] {
                let mut out = vec![0u8; (r1 - r0) * rb];
                assert!(rows_row_major(&w, r0, r1, &mut out));
                assert_eq!(out, orig[r0 * rb..r1 * rb], "{ty} rows {r0}..{r1}");
            }
            let mut out = vec![0u8; 2 * rb];
            assert!(!rows_row_major(&w, 3, 5, &mut out), "mid-group start accepted");
        }
        let mut k = vec![0u8; 144 * 8];
        assert!(!interleave_in_place(GgmlType::Q4_K, &mut k, 8, 256), "K-quants do not interleave");
    }

    /// Transposing is a permutation of each super-block's quants (every element dequantizes to
    /// the value it had, read through the slot map) that reads back row-major exactly.
    #[test]
    fn transpose_round_trips_and_permutes_elements() {
        for ty in [GgmlType::Q4_K, GgmlType::Q6_K] {
            let (rows, cols) = (3, 512);
            let rb = ty.row_bytes(cols).unwrap();
            let orig: Vec<u8> = (0..rows * rb).map(|i| (i * 31 + i / 7) as u8).collect();
            let mut data = orig.clone();
            assert!(transpose_in_place(ty, &mut data, rows, cols));
            assert_ne!(data, orig, "{ty}: nothing moved");
            let bb = rb / 2;
            for (t, o) in data.chunks_exact(bb).zip(orig.chunks_exact(bb)) {
                let slot = |q: &[u32; 64], s: usize| (q[s / 4] >> (8 * (s % 4))) as u8;
                let (qt, qo) = (unpack_slots(ty, t, true), unpack_slots(ty, o, false));
                for j in 0..8 {
                    for l in 0..32 {
                        assert_eq!(slot(&qt, 32 * j + l), slot(&qo, transposed_slot(ty, j, l)), "{ty} slot ({j}, {l})");
                    }
                }
                let fixed = if ty == GgmlType::Q6_K { 192..210 } else { 0..16 };
                assert_eq!(t[fixed.clone()], o[fixed], "{ty}: scales and d stay");
            }
            let w = QMatrix::new(ty, &data, rows, cols).unwrap().with_layout(Layout::Transposed);
            let mut out = vec![0u8; rows * rb];
            assert!(rows_row_major(&w, 0, rows, &mut out));
            assert_eq!(out, orig, "{ty}");
            let mut one = vec![0u8; rb];
            assert!(row(&w, 2, &mut one));
            assert_eq!(one, orig[2 * rb..], "{ty} row 2");
        }
        let mut legacy = vec![0u8; 18 * 8];
        assert!(!transpose_in_place(GgmlType::Q4_0, &mut legacy, 1, 256), "legacy types do not transpose");
    }

    /// Rows as lanes: every bit of arbitrary super-blocks reads back (rows, single rows, the
    /// row-major tail), and the layout puts element 4u + e of row r where the kernels look.
    #[test]
    fn lanes_round_trip_and_place_elements() {
        for ty in [GgmlType::Q4_K, GgmlType::Q6_K] {
            let (rows, cols) = (37, 512);
            let rb = ty.row_bytes(cols).unwrap();
            let orig: Vec<u8> = (0..rows * rb).map(|i| (i * 131 + i / 5 + (i >> 9)) as u8).collect();
            let mut data = orig.clone();
            assert!(lanes_in_place(ty, &mut data, rows, cols));
            assert_ne!(data, orig, "{ty}: nothing moved");
            assert_eq!(data[32 * rb..], orig[32 * rb..], "{ty}: the tail stays row-major");
            // Element 4u + e of row r (group 0, super-block 1), as the kernels unpack it.
            let bb = ty.type_size();
            let blk = &data[16 * bb..32 * bb];
            for r in [0, 5, 15] {
                let want = k_quants(ty, &orig[r * rb + bb..r * rb + 2 * bb]);
                for u in 0..64 {
                    for e in 0..4 {
                        let got = if ty == GgmlType::Q6_K {
                            let (g, k) = (u / 4, u % 4);
                            let v = |k: usize| blk[Q6K_QS + 64 * (3 * g + k) + 4 * r + e];
                            if k < 3 { v(k) & 0x3F } else { v(0) >> 6 | (v(1) >> 6) << 2 | (v(2) >> 6) << 4 }
                        } else {
                            let (p, m, high) = (u / 16, u % 8, u % 16 >= 8);
                            blk[Q4K_QS + 64 * (8 * p + m) + 4 * r + e] >> (4 * high as u32) & 0xF
                        };
                        assert_eq!(got, want[4 * u + e], "{ty} row {r} element {}", 4 * u + e);
                    }
                }
            }
            // The header (d first) precedes the quants: a mat-vec's loads only ascend.
            for r in [0, 5, 15] {
                let (d_at, d_src, qs) = if ty == GgmlType::Q6_K { (Q6K_D, 208, Q6K_QS) } else { (Q4K_D, 0, Q4K_QS) };
                let d = &orig[r * rb + bb + d_src..r * rb + bb + d_src + 2];
                assert_eq!(&blk[d_at + 2 * r..d_at + 2 * r + 2], d, "{ty} row {r}: d");
                assert!(d_at < qs && qs + 64 * (if ty == GgmlType::Q6_K { 48 } else { 32 }) == bb * LANES, "{ty}: quants end the block");
            }
            let w = QMatrix::new(ty, &data, rows, cols).unwrap().with_layout(Layout::Lanes16);
            let mut out = vec![0u8; rows * rb];
            assert!(rows_row_major(&w, 0, rows, &mut out));
            assert_eq!(out, orig, "{ty}");
            let mut part = vec![0u8; 21 * rb];
            assert!(rows_row_major(&w, 16, 37, &mut part));
            assert_eq!(part, orig[16 * rb..], "{ty} rows 16..37");
            assert!(!rows_row_major(&w, 3, 5, &mut part[..2 * rb]), "mid-group start accepted");
            for r in [0, 7, 16, 31, 32, 36] {
                let mut one = vec![0u8; rb];
                assert!(row(&w, r, &mut one));
                assert_eq!(one, orig[r * rb..(r + 1) * rb], "{ty} row {r}");
            }
        }
        let mut short = vec![0u8; 144 * 15];
        assert!(!lanes_in_place(GgmlType::Q4_K, &mut short, 15, 256), "fewer rows than a group");
        let mut legacy = vec![0u8; 18 * 16 * 8];
        assert!(!lanes_in_place(GgmlType::Q4_0, &mut legacy, 16, 256), "legacy types take no lanes");
    }
}
