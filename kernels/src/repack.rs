//! Row-interleaved weight layout for the memory-bound mat-vec of decode.
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
    if block_shape(ty).is_none() || layout == Layout::RowMajor {
        out.copy_from_slice(&data[r0 * rb..r1 * rb]);
        return true;
    }
    let full = rows / GROUP * GROUP;
    if r0 < full && !r0.is_multiple_of(GROUP) {
        return false;
    }
    let mut r = r0;
    while r < r1 {
        let o = (r - r0) * rb;
        if r < full {
            let (group, n) = (&data[r * rb..(r + GROUP) * rb], GROUP.min(r1 - r));
            by_shape!(ty, group_rows(rb, group, 0, n, &mut out[o..o + n * rb]));
            r += GROUP;
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
    let full = rows / GROUP * GROUP;
    let g = r / GROUP * GROUP;
    if layout == Layout::RowMajor || r >= full || by_shape!(ty, group_rows(rb, &data[g * rb..(g + GROUP) * rb], r - g, r - g + 1, out)).is_none() {
        out.copy_from_slice(&data[r * rb..(r + 1) * rb]);
    }
    true
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
}
