//! Helpers shared by the x86 kernels and the legacy 32-element dot products, written once with
//! a `VNNI` switch: `vpdpbusd` (AVX-512 VL + VNNI) or `vpmaddubsw` + `vpmaddwd` (AVX2).
use crate::quants::Half;
use std::arch::x86_64::*;

/// Views bytes as blocks; None if length or alignment do not fit (callers fall back).
#[inline(always)]
pub fn cast_or_none<T: bytemuck::Pod>(b: &[u8]) -> Option<&[T]> {
    bytemuck::try_cast_slice(b).ok()
}

/// f16 → f32 with F16C. A broadcast load (not `cvtsi32_si128`, which LLVM turns into a
/// `pinsrw` into whatever register is free, often an accumulator: a false dependency that
/// serialized the legacy loops).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn fp16(h: Half) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_set1_epi16(u16::from_le_bytes(h.0) as i16)))
}

/// The 12-byte Q4_K/Q5_K scale field as 16 bytes: scales 0..8 then mins 0..8 (spec §1.3).
#[inline(always)]
pub fn unpack_k4_scales(s: &[u8; 12]) -> [u32; 4] {
    let w = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (u0, u1, u2) = (w(0), w(1), w(2));
    let u3 = ((u2 >> 4) & 0x0f0f_0f0f) | (((u1 >> 6) & 0x0303_0303) << 4);
    let t = u1 & 0x3f3f_3f3f;
    let u1 = (u2 & 0x0f0f_0f0f) | (((u0 >> 6) & 0x0303_0303) << 4);
    [u0 & 0x3f3f_3f3f, u1, t, u3]
}

/// Σ of 4 adjacent u8·i8 products per i32 lane, AVX2 (no saturation for |products| < 2^14).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_u8i8_avx2(a: __m256i, b: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1))
}

/// Σ of 4 adjacent u8·i8 products per i32 lane with one `vpdpbusd`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub unsafe fn dot_u8i8_vnni(a: __m256i, b: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), a, b)
}

/// Σ of the eight i32 lanes (exact, wrapping like any i32 sum).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn hsum_i32x8(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    _mm_cvtsi128_si32(s)
}

/// |x| and sign(y, x): turns a signed·signed dot into u8·i8 (valid since Q8 never holds −128).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn abs_sign(x: __m256i, y: __m256i) -> (__m256i, __m256i) {
    (_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
}

/// 16 bytes of packed nibbles → 32 bytes in element order: [low nibbles, high nibbles].
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn nibbles_j_j16(p: *const u8) -> __m256i {
    let q = _mm_loadu_si128(p as *const __m128i);
    let m = _mm_set1_epi8(0x0F);
    _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m), _mm_and_si128(q, m))
}

/// 32 bits → 32 bytes, 0xFF where the bit is set (ggml's `bytes_from_bits_32`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn bytes_from_bits_32(bits: u32) -> __m256i {
    let tmp = _mm256_set1_epi32(bits as i32);
    let shuf = _mm256_set_epi64x(0x0303_0303_0303_0303, 0x0202_0202_0202_0202, 0x0101_0101_0101_0101, 0);
    let bytes = _mm256_shuffle_epi8(tmp, shuf);
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
    _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
}

/// A Q5_0 block's 32 quants as signed bytes (−16..15) from its high bits `qh` and nibbles `qs`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q5_0_quants(qh: [u8; 4], qs: *const u8) -> __m256i {
    let hi = _mm256_and_si256(bytes_from_bits_32(u32::from_le_bytes(qh)), _mm256_set1_epi8(0x10));
    _mm256_sub_epi8(_mm256_or_si256(nibbles_j_j16(qs), hi), _mm256_set1_epi8(16))
}

/// The legacy block step on every path (dot, tile, mat-vec and the AMX epilogue), so a row's
/// bits do not depend on which path or batch computed it: `c` is the block's exact integer dot,
/// and acc += (c·d_w)·d_x (a rounded product, then an FMA), block after block in order.
#[inline(always)]
pub fn legacy_step(acc: f32, c: i32, dw: f32, dx: f32) -> f32 {
    (c as f32 * dw).mul_add(dx, acc)
}

/// Runs `$body` (an expression giving (exact block dot, d_w, d_x)) over the blocks `($a, $b)`
/// of `$x`, `$y` in order through [`legacy_step`]. Evaluates to the sum.
macro_rules! block_loop {
    ($x:expr, $y:expr, |$a:ident, $b:ident| $body:expr) => {{
        let (x, y) = ($x, $y);
        let mut acc = 0f32;
        for i in 0..x.len().min(y.len()) {
            let ($a, $b) = (x.get_unchecked(i), y.get_unchecked(i));
            let (c, dw, dx) = $body;
            acc = legacy_step(acc, c, dw, dx);
        }
        acc
    }};
}

/// Calls the local macro `$run!(N)` with N = min(n, 8) as a literal, so each token count of a
/// tile gets a copy with constant loop bounds (accumulators in registers).
macro_rules! for_token_count {
    ($n:expr, $run:ident) => {
        match $n {
            8.. => $run!(8),
            7 => $run!(7),
            6 => $run!(6),
            5 => $run!(5),
            4 => $run!(4),
            3 => $run!(3),
            2 => $run!(2),
            1 => $run!(1),
            _ => {}
        }
    };
}

/// The multi-token form of `block_loop`: the weight block is prepared once (`$prep`), then
/// each token's (exact dot, d_w, d_x) goes through [`legacy_step`] into that token's own
/// accumulator, exactly as `block_loop` would for it alone.
macro_rules! block_tile {
    ($x:expr, $ys:expr, $out:expr, |$a:ident| $prep:expr, |$w:ident, $b:ident| $body:expr) => {{
        let (x, ys, out) = ($x, $ys, $out);
        // A constant token count lets the compiler unroll the token loop; each count gets a copy.
        macro_rules! run {
            ($nt:literal) => {{
                let mut acc = [0f32; $nt];
                for i in 0..x.len() {
                    let $a = x.get_unchecked(i);
                    let $w = $prep;
                    for k in 0..$nt {
                        let $b = ys[k].get_unchecked(i);
                        let (c, dw, dx) = $body;
                        acc[k] = legacy_step(acc[k], c, dw, dx);
                    }
                }
                out[..$nt].copy_from_slice(&acc);
            }};
        }
        for_token_count!(ys.len().min(out.len()), run)
    }};
}

/// Casts up to 8 activation rows to blocks of `T`, each as long as `n` weight blocks;
/// None if any does not fit (the caller then reports NaN, as the dot kernels do).
#[inline(always)]
pub fn cast_rows<'a, T: bytemuck::Pod>(ys: &[&'a [u8]], n: usize) -> Option<[&'a [T]; 8]> {
    let mut rows: [&[T]; 8] = [&[]; 8];
    for (r, y) in rows.iter_mut().zip(ys) {
        *r = cast_or_none::<T>(y).filter(|b| b.len() >= n)?;
    }
    Some(rows)
}

/// Generates the legacy 32-element kernels for one feature set; `$dot` is the u8·i8 helper.
macro_rules! legacy_kernels {
    ($dot:ident, $features:literal) => {
        use super::*;
        use crate::quants::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ8_0, BlockQ8_1};

        /// One Q8_0 activation block against 32 signed weight bytes `qa` with scale `dw`:
        /// (exact dot, dw, d_x) for [`legacy_step`]. Shared by the dot, tile and mat-vec paths
        /// of Q8_0, Q4_0 and Q5_0.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn signed_term(qa: __m256i, dw: f32, b: &BlockQ8_0) -> (i32, f32, f32) {
            let qb = _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i);
            let (ua, sb) = abs_sign(qa, qb);
            (hsum_i32x8($dot(ua, sb)), dw, fp16(b.d))
        }

        /// Callers must have checked the features (see `simd::detect`).
        #[target_feature(enable = $features)]
        pub unsafe fn vec_dot_q8_0_q8_0(x: &[u8], y: &[u8]) -> f32 {
            let (Some(x), Some(y)) = (cast_or_none::<BlockQ8_0>(x), cast_or_none::<BlockQ8_0>(y)) else { return f32::NAN };
            block_loop!(x, y, |a, b| signed_term(_mm256_loadu_si256(a.qs.as_ptr() as *const __m256i), fp16(a.d), b))
        }

        #[target_feature(enable = $features)]
        pub unsafe fn vec_dot_q4_0_q8_0(x: &[u8], y: &[u8]) -> f32 {
            let (Some(x), Some(y)) = (cast_or_none::<BlockQ4_0>(x), cast_or_none::<BlockQ8_0>(y)) else { return f32::NAN };
            let off = _mm256_set1_epi8(8);
            block_loop!(x, y, |a, b| signed_term(_mm256_sub_epi8(nibbles_j_j16(a.qs.as_ptr()), off), fp16(a.d), b))
        }

        #[target_feature(enable = $features)]
        pub unsafe fn vec_dot_q5_0_q8_0(x: &[u8], y: &[u8]) -> f32 {
            let (Some(x), Some(y)) = (cast_or_none::<BlockQ5_0>(x), cast_or_none::<BlockQ8_0>(y)) else { return f32::NAN };
            block_loop!(x, y, |a, b| signed_term(q5_0_quants(a.qh, a.qs.as_ptr()), fp16(a.d), b))
        }

        /// Σ per block: legacy_step(c, d, dy), then acc += m·s (Q8_1's s = dy·Σy).
        #[target_feature(enable = $features)]
        pub unsafe fn vec_dot_q4_1_q8_1(x: &[u8], y: &[u8]) -> f32 {
            let (Some(x), Some(y)) = (cast_or_none::<BlockQ4_1>(x), cast_or_none::<BlockQ8_1>(y)) else { return f32::NAN };
            let mut acc = 0f32;
            for (a, b) in x.iter().zip(y) {
                let qb = _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i);
                let c = hsum_i32x8($dot(nibbles_j_j16(a.qs.as_ptr()), qb));
                acc = legacy_step(acc, c, fp16(a.d), fp16(b.d));
                acc = fp16(a.m).mul_add(fp16(b.s), acc);
            }
            acc
        }

        /// Tiles: one weight row against up to 8 activation rows (prefill), per token the
        /// same arithmetic as the dot kernels above.
        #[target_feature(enable = $features)]
        pub unsafe fn tile_q8_0_q8_0(x: &[u8], ys: &[&[u8]], out: &mut [f32]) {
            let Some(x) = cast_or_none::<BlockQ8_0>(x) else { return out.fill(f32::NAN) };
            let Some(rows) = cast_rows::<BlockQ8_0>(ys, x.len()) else { return out.fill(f32::NAN) };
            block_tile!(x, &rows[..ys.len().min(8)], out, |a| (_mm256_loadu_si256(a.qs.as_ptr() as *const __m256i), fp16(a.d)), |w, b| signed_term(w.0, w.1, b))
        }

        #[target_feature(enable = $features)]
        pub unsafe fn tile_q4_0_q8_0(x: &[u8], ys: &[&[u8]], out: &mut [f32]) {
            let Some(x) = cast_or_none::<BlockQ4_0>(x) else { return out.fill(f32::NAN) };
            let Some(rows) = cast_rows::<BlockQ8_0>(ys, x.len()) else { return out.fill(f32::NAN) };
            let off = _mm256_set1_epi8(8);
            block_tile!(x, &rows[..ys.len().min(8)], out, |a| (_mm256_sub_epi8(nibbles_j_j16(a.qs.as_ptr()), off), fp16(a.d)), |w, b| signed_term(w.0, w.1, b))
        }

        #[target_feature(enable = $features)]
        pub unsafe fn tile_q5_0_q8_0(x: &[u8], ys: &[&[u8]], out: &mut [f32]) {
            let Some(x) = cast_or_none::<BlockQ5_0>(x) else { return out.fill(f32::NAN) };
            let Some(rows) = cast_rows::<BlockQ8_0>(ys, x.len()) else { return out.fill(f32::NAN) };
            block_tile!(x, &rows[..ys.len().min(8)], out, |a| (q5_0_quants(a.qh, a.qs.as_ptr()), fp16(a.d)), |w, b| signed_term(w.0, w.1, b))
        }

        #[target_feature(enable = $features)]
        pub unsafe fn tile_q4_1_q8_1(x: &[u8], ys: &[&[u8]], out: &mut [f32]) {
            let Some(x) = cast_or_none::<BlockQ4_1>(x) else { return out.fill(f32::NAN) };
            let Some(rows) = cast_rows::<BlockQ8_1>(ys, x.len()) else { return out.fill(f32::NAN) };
            // Constant token counts so the accumulators stay in registers (see block_tile).
            macro_rules! run {
                ($nt:literal) => {{
                    let mut acc = [0f32; $nt];
                    for (i, a) in x.iter().enumerate() {
                        let qa = nibbles_j_j16(a.qs.as_ptr());
                        let (dw, mw) = (fp16(a.d), fp16(a.m));
                        for k in 0..$nt {
                            let b = rows[k].get_unchecked(i);
                            let qb = _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i);
                            let c = hsum_i32x8($dot(qa, qb));
                            acc[k] = legacy_step(acc[k], c, dw, fp16(b.d));
                            acc[k] = mw.mul_add(fp16(b.s), acc[k]);
                        }
                    }
                    out[..$nt].copy_from_slice(&acc);
                }};
            }
            for_token_count!(ys.len().min(out.len()), run)
        }
    };
}

/// Lane k = Σ of the eight i32 lanes of `v[k]` (exact).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn hsum_i32x8x8(v: &[__m256i; 8]) -> __m256i {
    let t0 = _mm256_hadd_epi32(v[0], v[1]);
    let t1 = _mm256_hadd_epi32(v[2], v[3]);
    let t2 = _mm256_hadd_epi32(v[4], v[5]);
    let t3 = _mm256_hadd_epi32(v[6], v[7]);
    let u0 = _mm256_hadd_epi32(t0, t1);
    let u1 = _mm256_hadd_epi32(t2, t3);
    _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20), _mm256_permute2x128_si256(u0, u1, 0x31))
}

/// Lane k = Σ of the sixteen i16 lanes of `v[k]`, exact where any two lanes sum below 2^15
/// (`vpmaddubsw` products of weights below 64 with i8 activations): two tokens' vectors are
/// interleaved by dwords and added as i16, widened with one `vpmaddwd` per pair of tokens, then
/// reduced as i32. Half the `vpmaddwd` of widening each token alone, and no `vphaddd` (both slow
/// on AMD Zen 1).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn hsum_i16x16x8(v: &[__m256i; 8]) -> __m256i {
    let ones = _mm256_set1_epi16(1);
    let q: [__m256i; 4] = std::array::from_fn(|p| {
        let (a, b) = (v[2 * p], v[2 * p + 1]);
        _mm256_madd_epi16(_mm256_add_epi16(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b)), ones)
    });
    // Each 128-bit lane of q[p]: [t, t + 1, t, t + 1] partial sums of tokens t = 2p, 2p + 1.
    let r0 = _mm256_add_epi32(_mm256_unpacklo_epi64(q[0], q[1]), _mm256_unpackhi_epi64(q[0], q[1]));
    let r1 = _mm256_add_epi32(_mm256_unpacklo_epi64(q[2], q[3]), _mm256_unpackhi_epi64(q[2], q[3]));
    _mm256_add_epi32(_mm256_permute2x128_si256(r0, r1, 0x20), _mm256_permute2x128_si256(r0, r1, 0x31))
}

/// Most blocks per row the many-row tiles take (16,384 elements of the legacy types; 131,072
/// of the K-quants); longer rows go through the one-row tiles.
pub const TILE_ROWS_MAX_BLOCKS: usize = 512;

/// The f16 scales (d, and with `bias` the s of Q8_1) of block i of eight activation rows as the
/// lanes of two vectors.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn act_scales8<Y: ActBlock>(yr: &[&[Y]; 8], i: usize, bias: bool) -> (__m256, __m256) {
    let d = |k: usize| u16::from_le_bytes(yr[k].get_unchecked(i).scale().0) as i16;
    let dx = _mm256_cvtph_ps(_mm_set_epi16(d(7), d(6), d(5), d(4), d(3), d(2), d(1), d(0)));
    if !bias {
        return (dx, _mm256_setzero_ps());
    }
    let s = |k: usize| u16::from_le_bytes(yr[k].get_unchecked(i).bias().0) as i16;
    (dx, _mm256_cvtph_ps(_mm_set_epi16(s(7), s(6), s(5), s(4), s(3), s(2), s(1), s(0))))
}

/// An activation block of the legacy types: Q8_0 or Q8_1.
trait ActBlock: Bias {
    fn scale(&self) -> Half;
}
impl ActBlock for crate::quants::BlockQ8_0 {
    fn scale(&self) -> Half {
        self.d
    }
}
impl ActBlock for crate::quants::BlockQ8_1 {
    fn scale(&self) -> Half {
        self.d
    }
}

/// Mat-vec over consecutive rows (see `simd::MatvecRowsFn`), inside one target-feature
/// function, prefetching the weights ahead: eight rows at a time with one row per lane (the
/// per-block integer dots of eight rows reduced together, then [`legacy_step`] lane-wise, the
/// same bits as the one-row dot), the remainder through the dot kernel.
///
/// With it, `$tile8`: one weight row against eight tokens, one token per lane (the weight block
/// unpacked once, the eight tokens' exact block dots reduced together, then [`legacy_step`]
/// lane-wise: the same bits as the one-token dot); `$tile` (the per-token tile) for other counts.
macro_rules! legacy_rows {
    ($features:literal, $dot8:ident, $narrow:literal, $($rows:ident, $rows_x8:ident, $tile8:ident, $tile_rows:ident => $dot:ident, $tile:ident, $w:ty, $y:ty, |$a:ident| $prep:expr, |$p:ident| $prep_x:expr, $head:literal, $signed:literal, $bias:literal, $off:expr);*) => {$(
        #[target_feature(enable = $features)]
        pub unsafe fn $tile8(x: &[u8], ys: &[&[u8]], out: &mut [f32]) {
            if ys.len() != 8 || out.len() < 8 {
                return $tile(x, ys, out);
            }
            let Some(x) = cast_or_none::<$w>(x) else { return out.fill(f32::NAN) };
            let Some(yr) = cast_rows::<$y>(ys, x.len()) else { return out.fill(f32::NAN) };
            let mut acc = _mm256_setzero_ps();
            for (i, $a) in x.iter().enumerate() {
                let (dx, sx) = act_scales8(&yr, i, $bias);
                let corr = if $off != 0 { $tile_rows::act_corr(&yr, i) } else { _mm256_setzero_si256() };
                acc = $tile_rows::step($a, &yr, i, dx, sx, corr, acc);
            }
            _mm256_storeu_ps(out.as_mut_ptr(), acc);
        }

        /// `$tile8` over the consecutive `rb`-byte rows of `w`, out = [row][8 tokens]: the
        /// activation rows are checked, and their per-block scales gathered, once for all rows.
        #[target_feature(enable = $features)]
        pub unsafe fn $tile_rows(w: &[u8], rb: usize, ys: &[&[u8]], out: &mut [f32]) {
            let nb = rb / std::mem::size_of::<$w>();
            let rows = out.len() / 8;
            let fits = ys.len() == 8 && out.len() == 8 * rows && rb == nb * std::mem::size_of::<$w>() && nb <= TILE_ROWS_MAX_BLOCKS && w.len() >= rows * rb;
            let yr = if fits { cast_rows::<$y>(ys, nb) } else { None };
            let Some(yr) = yr else {
                for (r, o) in out.chunks_exact_mut(ys.len().max(1)).enumerate() {
                    $tile(w.get(r * rb..(r + 1) * rb).unwrap_or(&[]), ys, o);
                }
                return;
            };
            // Only the row's nb blocks are written and read (no 16 KiB clear per call).
            let mut scales = [std::mem::MaybeUninit::<(__m256, __m256)>::uninit(); TILE_ROWS_MAX_BLOCKS];
            for (i, sc) in scales.iter_mut().enumerate().take(nb) {
                sc.write(act_scales8(&yr, i, $bias));
            }
            let scales = &scales[..nb];
            // Weights made unsigned by `$off`: the tokens' offset·Σ quants per block, once.
            let mut corr = [std::mem::MaybeUninit::<__m256i>::uninit(); TILE_ROWS_MAX_BLOCKS];
            for (i, c) in corr.iter_mut().enumerate().take(nb) {
                c.write(if $off != 0 { $tile_rows::act_corr(&yr, i) } else { _mm256_setzero_si256() });
            }
            for (r, o) in out.chunks_exact_mut(8).enumerate() {
                let Some(x) = cast_or_none::<$w>(&w[r * rb..(r + 1) * rb]) else { o.fill(f32::NAN); continue };
                let mut acc = _mm256_setzero_ps();
                for (i, $a) in x.iter().enumerate().take(nb) {
                    // SAFETY: entries 0..nb of both were written above.
                    let (dx, sx) = scales[i].assume_init_read();
                    acc = $tile_rows::step($a, &yr, i, dx, sx, corr[i].assume_init_read(), acc);
                }
                _mm256_storeu_ps(o.as_mut_ptr(), acc);
            }
        }

        mod $tile_rows {
            use super::*;
            /// The weights go in as unsigned bytes below 64 (Q4_0/Q5_0 shifted by `$off`, Q4_1's
            /// nibbles as they are): u8·i8 products straight away (no |qa|, sign(qb, qa) per
            /// token or row), reduced as i16 ([`hsum_i16x16x8`]), the offset taken back through
            /// `$off`·Σ of the activation's quants: the same exact block dots, so the same bits.
            pub(super) const UNSIGNED: bool = $narrow && ($off != 0 || !$signed);

            /// The lanes of an activation block's Σ quants (exact).
            #[inline]
            #[target_feature(enable = $features)]
            pub(super) unsafe fn qsum(b: &$y) -> __m256i {
                $dot8(_mm256_set1_epi8(1), _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i))
            }

            /// `$off`·Σ quants of block i of each of the eight tokens, as lanes (exact).
            #[inline]
            #[target_feature(enable = $features)]
            pub(super) unsafe fn act_corr(yr: &[&[$y]; 8], i: usize) -> __m256i {
                let c: [__m256i; 8] = std::array::from_fn(|k| qsum(yr[k].get_unchecked(i)));
                _mm256_mullo_epi32(hsum_i32x8x8(&c), _mm256_set1_epi32($off))
            }

            /// The exact u8·i8 partial dots of 32 weight quants `qa` and activation quants `qb`
            /// (through |qa| and sign(qb, qa) for the signed types).
            #[inline]
            #[target_feature(enable = $features)]
            pub(super) unsafe fn dot(qa: __m256i, qb: __m256i) -> __m256i {
                if $signed {
                    let (ua, sb) = abs_sign(qa, qb);
                    $dot8(ua, sb)
                } else {
                    $dot8(qa, qb)
                }
            }

            /// Block i of one weight row against block i of the eight tokens: their exact
            /// dots reduced together (`corr` = [`act_corr`] when [`UNSIGNED`] with an offset,
            /// else zero), then [`legacy_step`] lane-wise (and the bias term).
            #[inline]
            #[target_feature(enable = $features)]
            pub(super) unsafe fn step($a: &$w, yr: &[&[$y]; 8], i: usize, dx: __m256, sx: __m256, corr: __m256i, acc: __m256) -> __m256 {
                let qa = $prep;
                let qb = |k: usize| _mm256_loadu_si256(yr[k].get_unchecked(i).qs.as_ptr() as *const __m256i);
                let c = if UNSIGNED {
                    let qa = _mm256_add_epi8(qa, _mm256_set1_epi8($off as i8));
                    _mm256_sub_epi32(hsum_i16x16x8(&std::array::from_fn(|k| _mm256_maddubs_epi16(qa, qb(k)))), corr)
                } else {
                    hsum_i32x8x8(&std::array::from_fn(|k| dot(qa, qb(k))))
                };
                let cv = _mm256_cvtepi32_ps(c);
                let acc = _mm256_fmadd_ps(_mm256_mul_ps(cv, _mm256_set1_ps(fp16($a.d))), dx, acc);
                if $bias {
                    _mm256_fmadd_ps(_mm256_set1_ps(fp16($a.bias())), sx, acc)
                } else {
                    acc
                }
            }
        }

        #[target_feature(enable = $features)]
        pub unsafe fn $rows(w: &[u8], rb: usize, y: &[u8], out: &mut [f32]) {
            let Some(yb) = cast_or_none::<$y>(y) else { return out.fill(f32::NAN) };
            let nb = yb.len();
            if rb != nb * std::mem::size_of::<$w>() {
                return out.fill(f32::NAN);
            }
            // SAFETY (closures): they run inside this function, with its features.
            let eight = |rows: &[u8]| unsafe {
                let r: [&[$w]; 8] = std::array::from_fn(|k| cast_or_none::<$w>(&rows[k * rb..(k + 1) * rb]).unwrap_or(&[]));
                if r.iter().any(|r| r.len() != nb) {
                    return [f32::NAN; 8];
                }
                let mut acc = _mm256_setzero_ps();
                for (i, b) in yb.iter().enumerate() {
                    let qb = _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i);
                    let c: [__m256i; 8] = std::array::from_fn(|k| {
                        let $a = r[k].get_unchecked(i);
                        $tile_rows::dot($prep, qb)
                    });
                    let d = |k: usize| u16::from_le_bytes(r[k].get_unchecked(i).d.0) as i16;
                    let dw = _mm256_cvtph_ps(_mm_set_epi16(d(7), d(6), d(5), d(4), d(3), d(2), d(1), d(0)));
                    let cv = _mm256_cvtepi32_ps(hsum_i32x8x8(&c));
                    acc = _mm256_fmadd_ps(_mm256_mul_ps(cv, dw), _mm256_set1_ps(fp16(b.d)), acc);
                    if $bias {
                        let m = |k: usize| u16::from_le_bytes(r[k].get_unchecked(i).bias().0) as i16;
                        let mw = _mm256_cvtph_ps(_mm_set_epi16(m(7), m(6), m(5), m(4), m(3), m(2), m(1), m(0)));
                        acc = _mm256_fmadd_ps(mw, _mm256_set1_ps(fp16(b.bias())), acc);
                    }
                }
                let mut o = [0f32; 8];
                _mm256_storeu_ps(o.as_mut_ptr(), acc);
                o
            };
            crate::matmul::for_each_row_group::<8>(w, rb, out, eight, |row| unsafe { $dot(row, y) })
        }

        /// `$rows` over rows held as [`crate::repack::Layout::Interleaved8`]: each group of
        /// eight rows is one sequential stream, its eight scales one vector load. Per block the
        /// same arithmetic as `$rows`, so the same bits. Rows past the last full group of
        /// `out` are row-major (the matrix's tail).
        #[target_feature(enable = $features)]
        pub unsafe fn $rows_x8(w: &[u8], rb: usize, y: &[u8], out: &mut [f32]) {
            const B: usize = std::mem::size_of::<$w>();
            let Some(yb) = cast_or_none::<$y>(y) else { return out.fill(f32::NAN) };
            let nb = yb.len();
            if rb != nb * B || w.len() < out.len() * rb {
                return out.fill(f32::NAN);
            }
            let groups = out.len() / 8;
            // Unsigned weights (see the tiles' UNSIGNED): the activation's offset·Σ quants per
            // block, once.
            let unsigned = $tile_rows::UNSIGNED && nb <= TILE_ROWS_MAX_BLOCKS;
            let mut corr = [0i32; TILE_ROWS_MAX_BLOCKS];
            if unsigned && $off != 0 {
                for (c, b) in corr.iter_mut().zip(yb) {
                    *c = $off * hsum_i32x8($tile_rows::qsum(b));
                }
            }
            let ahead = crate::matmul::interleaved_prefetch_bytes();
            for g in 0..groups {
                let base = g * 8 * rb;
                let mut acc = _mm256_setzero_ps();
                for (i, b) in yb.iter().enumerate() {
                    let off = base + i * 8 * B;
                    if ahead != 0 {
                        crate::matmul::prefetch(w, off + ahead, off + 8 * B + ahead);
                    }
                    // SAFETY: off + 8·B <= (g + 1)·8·rb <= w.len(), checked above.
                    let gb = w.as_ptr().add(off);
                    let qb = _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i);
                    let quants = |k: usize| {
                        let $p = gb.add(8 * $head + k * (B - $head));
                        $prep_x
                    };
                    let c = if unsigned {
                        let u = _mm256_set1_epi8($off as i8);
                        let c16: [__m256i; 8] = std::array::from_fn(|k| _mm256_maddubs_epi16(_mm256_add_epi8(quants(k), u), qb));
                        _mm256_sub_epi32(hsum_i16x16x8(&c16), _mm256_set1_epi32(*corr.get_unchecked(i)))
                    } else {
                        hsum_i32x8x8(&std::array::from_fn(|k| $tile_rows::dot(quants(k), qb)))
                    };
                    let dw = _mm256_cvtph_ps(_mm_loadu_si128(gb as *const __m128i));
                    let cv = _mm256_cvtepi32_ps(c);
                    acc = _mm256_fmadd_ps(_mm256_mul_ps(cv, dw), _mm256_set1_ps(fp16(b.d)), acc);
                    if $bias {
                        let mw = _mm256_cvtph_ps(_mm_loadu_si128(gb.add(16) as *const __m128i));
                        acc = _mm256_fmadd_ps(mw, _mm256_set1_ps(fp16(b.bias())), acc);
                    }
                }
                _mm256_storeu_ps(out.as_mut_ptr().add(g * 8), acc);
            }
            let t = groups * 8;
            // SAFETY (closure): it runs inside this function, with its features.
            crate::matmul::for_each_row(&w[t * rb..], rb, &mut out[t..], |row| unsafe { $dot(row, y) })
        }
    )*};
}

/// Q4_1's m and Q8_1's s for the 8-row kernel; other block types have no bias term.
trait Bias {
    fn bias(&self) -> Half;
}
impl Bias for crate::quants::BlockQ4_1 {
    fn bias(&self) -> Half {
        self.m
    }
}
impl Bias for crate::quants::BlockQ4_0 {
    fn bias(&self) -> Half {
        Half::ZERO
    }
}
impl Bias for crate::quants::BlockQ5_0 {
    fn bias(&self) -> Half {
        Half::ZERO
    }
}
impl Bias for crate::quants::BlockQ8_0 {
    fn bias(&self) -> Half {
        Half::ZERO
    }
}
impl Bias for crate::quants::BlockQ8_1 {
    fn bias(&self) -> Half {
        self.s
    }
}

/// The legacy kernels of one feature set: `legacy_rows!` for the four types, then
/// `legacy_kernels!`.
macro_rules! legacy_set {
    ($features:literal, $dot8:ident, $narrow:literal, $off4:expr, $off5:expr, $off8:expr) => {
        legacy_rows!($features, $dot8, $narrow,
            rows_q4_0, rows_x8_q4_0, tile8_q4_0, tile_rows_q4_0 => vec_dot_q4_0_q8_0, tile_q4_0_q8_0, BlockQ4_0, BlockQ8_0, |a| _mm256_sub_epi8(nibbles_j_j16(a.qs.as_ptr()), _mm256_set1_epi8(8)),
                |p| _mm256_sub_epi8(nibbles_j_j16(p), _mm256_set1_epi8(8)), 2, true, false, $off4;
            rows_q4_1, rows_x8_q4_1, tile8_q4_1, tile_rows_q4_1 => vec_dot_q4_1_q8_1, tile_q4_1_q8_1, BlockQ4_1, BlockQ8_1, |a| nibbles_j_j16(a.qs.as_ptr()),
                |p| nibbles_j_j16(p), 4, false, true, 0;
            rows_q5_0, rows_x8_q5_0, tile8_q5_0, tile_rows_q5_0 => vec_dot_q5_0_q8_0, tile_q5_0_q8_0, BlockQ5_0, BlockQ8_0, |a| q5_0_quants(a.qh, a.qs.as_ptr()),
                |p| q5_0_quants((p as *const [u8; 4]).read_unaligned(), p.add(4)), 2, true, false, $off5;
            rows_q8_0, rows_x8_q8_0, tile8_q8_0, tile_rows_q8_0 => vec_dot_q8_0_q8_0, tile_q8_0_q8_0, BlockQ8_0, BlockQ8_0, |a| _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i),
                |p| _mm256_loadu_si256(p as *const __m256i), 2, true, false, $off8);
        legacy_kernels!($dot8, $features);
    };
}

/// Legacy kernels with 256-bit VNNI.
pub mod vnni {
    legacy_set!("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c", dot_u8i8_vnni, false, 0, 0, 0);
}

/// Legacy kernels with AVX2 only.
pub mod plain {
    // The prefill tiles take Q4_0 and Q5_0 as unsigned (+8, +16) and reduce their `vpmaddubsw`
    // products as i16 (`narrow`, see hsum_i16x16x8), as Q4_1's nibbles. Q8_0's +128 would
    // saturate `vpmaddubsw`, so it keeps the signs.
    legacy_set!("avx2,fma,f16c", dot_u8i8_avx2, true, 8, 16, 0);
}
