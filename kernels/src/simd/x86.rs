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

/// f16 broadcast to 16 f32 lanes.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub unsafe fn fp16x16(h: Half) -> __m512 {
    _mm512_cvtph_ps(_mm256_set1_epi16(u16::from_le_bytes(h.0) as i16))
}

/// f16 broadcast to 8 f32 lanes (every lane written: no false dependency).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn fp16x8(h: Half) -> __m256 {
    _mm256_cvtph_ps(_mm_set1_epi16(u16::from_le_bytes(h.0) as i16))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn hsum256(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
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

/// Runs `$body` (an expression giving (products as f32x8, scale f32x8)) over block pairs
/// `($a, $b)` of `$x`, `$y` with two accumulators, unrolled by 2 so consecutive blocks' FMAs
/// are independent. Evaluates to the summed f32x8.
macro_rules! pair_loop {
    ($x:expr, $y:expr, |$a:ident, $b:ident| $body:expr) => {{
        let (x, y) = ($x, $y);
        let n = x.len().min(y.len());
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 1 < n {
            let ($a, $b) = (x.get_unchecked(i), y.get_unchecked(i));
            let (p0, d0) = $body;
            acc0 = _mm256_fmadd_ps(p0, d0, acc0);
            let ($a, $b) = (x.get_unchecked(i + 1), y.get_unchecked(i + 1));
            let (p1, d1) = $body;
            acc1 = _mm256_fmadd_ps(p1, d1, acc1);
            i += 2;
        }
        if i < n {
            let ($a, $b) = (x.get_unchecked(i), y.get_unchecked(i));
            let (p0, d0) = $body;
            acc0 = _mm256_fmadd_ps(p0, d0, acc0);
        }
        _mm256_add_ps(acc0, acc1)
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

/// The multi-token form of `pair_loop`: the weight block is prepared once (`$prep`), then
/// each token's (products, scale) go into that token's own even/odd accumulators, exactly as
/// `pair_loop` would for it alone, so a token's result does not depend on its tile mates.
macro_rules! pair_tile {
    ($x:expr, $ys:expr, $out:expr, |$a:ident| $prep:expr, |$w:ident, $b:ident| $body:expr) => {{
        let (x, ys, out) = ($x, $ys, $out);
        // A constant token count lets the compiler unroll the token loops and keep every
        // accumulator in a register; each token count gets its own copy.
        macro_rules! run {
            ($nt:literal) => {{
                let mut acc0 = [_mm256_setzero_ps(); $nt];
                let mut acc1 = [_mm256_setzero_ps(); $nt];
                // Block i of the row against every token, into one set of accumulators.
                macro_rules! step {
                    ($i:expr, $acc:ident) => {{
                        let $a = x.get_unchecked($i);
                        let $w = $prep;
                        for k in 0..$nt {
                            let $b = ys[k].get_unchecked($i);
                            let (p, d) = $body;
                            $acc[k] = _mm256_fmadd_ps(p, d, $acc[k]);
                        }
                    }};
                }
                let n = x.len();
                let mut i = 0;
                while i + 1 < n {
                    step!(i, acc0);
                    step!(i + 1, acc1);
                    i += 2;
                }
                if i < n {
                    step!(i, acc0);
                }
                for k in 0..$nt {
                    out[k] = hsum256(_mm256_add_ps(acc0[k], acc1[k]));
                }
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
        /// (the eight partial sums as f32, dw·dy). Shared by the dot, tile and mat-vec paths of
        /// Q8_0, Q4_0 and Q5_0, which is what keeps their results bit-identical.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn signed_term(qa: __m256i, dw: __m256, b: &BlockQ8_0) -> (__m256, __m256) {
            let qb = _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i);
            let (ua, sb) = abs_sign(qa, qb);
            (_mm256_cvtepi32_ps($dot(ua, sb)), _mm256_mul_ps(dw, fp16x8(b.d)))
        }

        /// Callers must have checked the features (see `simd::detect`).
        #[target_feature(enable = $features)]
        pub unsafe fn vec_dot_q8_0_q8_0(x: &[u8], y: &[u8]) -> f32 {
            let (Some(x), Some(y)) = (cast_or_none::<BlockQ8_0>(x), cast_or_none::<BlockQ8_0>(y)) else { return f32::NAN };
            hsum256(pair_loop!(x, y, |a, b| {
                signed_term(_mm256_loadu_si256(a.qs.as_ptr() as *const __m256i), fp16x8(a.d), b)
            }))
        }

        #[target_feature(enable = $features)]
        pub unsafe fn vec_dot_q4_0_q8_0(x: &[u8], y: &[u8]) -> f32 {
            let (Some(x), Some(y)) = (cast_or_none::<BlockQ4_0>(x), cast_or_none::<BlockQ8_0>(y)) else { return f32::NAN };
            let off = _mm256_set1_epi8(8);
            hsum256(pair_loop!(x, y, |a, b| {
                signed_term(_mm256_sub_epi8(nibbles_j_j16(a.qs.as_ptr()), off), fp16x8(a.d), b)
            }))
        }

        #[target_feature(enable = $features)]
        pub unsafe fn vec_dot_q5_0_q8_0(x: &[u8], y: &[u8]) -> f32 {
            let (Some(x), Some(y)) = (cast_or_none::<BlockQ5_0>(x), cast_or_none::<BlockQ8_0>(y)) else { return f32::NAN };
            let off = _mm256_set1_epi8(16);
            let bit = _mm256_set1_epi8(0x10);
            hsum256(pair_loop!(x, y, |a, b| {
                let hi = _mm256_and_si256(bytes_from_bits_32(u32::from_le_bytes(a.qh)), bit);
                signed_term(_mm256_sub_epi8(_mm256_or_si256(nibbles_j_j16(a.qs.as_ptr()), hi), off), fp16x8(a.d), b)
            }))
        }

        /// Σ d·dy·(q·y) + m·s. (d, m) and (dy, s) are adjacent halves in both blocks, so one
        /// 32-bit load and one conversion each give [d, m]·[dy, s] = [d·dy, m·s].
        #[target_feature(enable = $features)]
        pub unsafe fn vec_dot_q4_1_q8_1(x: &[u8], y: &[u8]) -> f32 {
            let (Some(x), Some(y)) = (cast_or_none::<BlockQ4_1>(x), cast_or_none::<BlockQ8_1>(y)) else { return f32::NAN };
            let mut acc = _mm256_setzero_ps();
            let mut accm = _mm_setzero_ps();
            for (a, b) in x.iter().zip(y) {
                let qa = nibbles_j_j16(a.qs.as_ptr());
                let qb = _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i);
                let p = _mm256_cvtepi32_ps($dot(qa, qb));
                let wdm = _mm_cvtph_ps(_mm_loadu_si32(a as *const BlockQ4_1 as *const u8));
                let yds = _mm_cvtph_ps(_mm_loadu_si32(b as *const BlockQ8_1 as *const u8));
                let prod = _mm_mul_ps(wdm, yds);
                acc = _mm256_fmadd_ps(p, _mm256_broadcastss_ps(prod), acc);
                accm = _mm_add_ps(accm, prod);
            }
            hsum256(acc) + _mm_cvtss_f32(_mm_movehdup_ps(accm))
        }

        /// Tiles: one weight row against up to 8 activation rows (prefill), per token the
        /// same arithmetic as the dot kernels above.
        #[target_feature(enable = $features)]
        pub unsafe fn tile_q8_0_q8_0(x: &[u8], ys: &[&[u8]], out: &mut [f32]) {
            let Some(x) = cast_or_none::<BlockQ8_0>(x) else { return out.fill(f32::NAN) };
            let Some(rows) = cast_rows::<BlockQ8_0>(ys, x.len()) else { return out.fill(f32::NAN) };
            pair_tile!(x, &rows[..ys.len().min(8)], out, |a| (_mm256_loadu_si256(a.qs.as_ptr() as *const __m256i), fp16x8(a.d)), |w, b| signed_term(w.0, w.1, b))
        }

        #[target_feature(enable = $features)]
        pub unsafe fn tile_q4_0_q8_0(x: &[u8], ys: &[&[u8]], out: &mut [f32]) {
            let Some(x) = cast_or_none::<BlockQ4_0>(x) else { return out.fill(f32::NAN) };
            let Some(rows) = cast_rows::<BlockQ8_0>(ys, x.len()) else { return out.fill(f32::NAN) };
            let off = _mm256_set1_epi8(8);
            pair_tile!(x, &rows[..ys.len().min(8)], out, |a| (_mm256_sub_epi8(nibbles_j_j16(a.qs.as_ptr()), off), fp16x8(a.d)), |w, b| signed_term(w.0, w.1, b))
        }

        #[target_feature(enable = $features)]
        pub unsafe fn tile_q5_0_q8_0(x: &[u8], ys: &[&[u8]], out: &mut [f32]) {
            let Some(x) = cast_or_none::<BlockQ5_0>(x) else { return out.fill(f32::NAN) };
            let Some(rows) = cast_rows::<BlockQ8_0>(ys, x.len()) else { return out.fill(f32::NAN) };
            let off = _mm256_set1_epi8(16);
            let bit = _mm256_set1_epi8(0x10);
            pair_tile!(x, &rows[..ys.len().min(8)], out, |a| {
                let hi = _mm256_and_si256(bytes_from_bits_32(u32::from_le_bytes(a.qh)), bit);
                (_mm256_sub_epi8(_mm256_or_si256(nibbles_j_j16(a.qs.as_ptr()), hi), off), fp16x8(a.d))
            }, |w, b| signed_term(w.0, w.1, b))
        }

        #[target_feature(enable = $features)]
        pub unsafe fn tile_q4_1_q8_1(x: &[u8], ys: &[&[u8]], out: &mut [f32]) {
            let Some(x) = cast_or_none::<BlockQ4_1>(x) else { return out.fill(f32::NAN) };
            let Some(rows) = cast_rows::<BlockQ8_1>(ys, x.len()) else { return out.fill(f32::NAN) };
            // Constant token counts so the accumulators stay in registers (see pair_tile).
            macro_rules! run {
                ($nt:literal) => {{
                    let mut acc = [_mm256_setzero_ps(); $nt];
                    let mut accm = [_mm_setzero_ps(); $nt];
                    for (i, a) in x.iter().enumerate() {
                        let qa = nibbles_j_j16(a.qs.as_ptr());
                        let wdm = _mm_cvtph_ps(_mm_loadu_si32(a as *const BlockQ4_1 as *const u8));
                        for k in 0..$nt {
                            let b = rows[k].get_unchecked(i);
                            let qb = _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i);
                            let p = _mm256_cvtepi32_ps($dot(qa, qb));
                            let yds = _mm_cvtph_ps(_mm_loadu_si32(b as *const BlockQ8_1 as *const u8));
                            let prod = _mm_mul_ps(wdm, yds);
                            acc[k] = _mm256_fmadd_ps(p, _mm256_broadcastss_ps(prod), acc[k]);
                            accm[k] = _mm_add_ps(accm[k], prod);
                        }
                    }
                    for k in 0..$nt {
                        out[k] = hsum256(acc[k]) + _mm_cvtss_f32(_mm_movehdup_ps(accm[k]));
                    }
                }};
            }
            for_token_count!(ys.len().min(out.len()), run)
        }
    };
}

/// Mat-vec over consecutive rows with one of a module's dot kernels (see `simd::MatvecRowsFn`),
/// inside one target-feature function, prefetching the weights ahead.
macro_rules! legacy_rows {
    ($features:literal, $($rows:ident => $dot:ident),*) => {$(
        #[target_feature(enable = $features)]
        pub unsafe fn $rows(w: &[u8], rb: usize, y: &[u8], out: &mut [f32]) {
            // SAFETY (closure): runs inside this function, with its features.
            crate::matmul::for_each_row(w, rb, out, |row| unsafe { $dot(row, y) })
        }
    )*};
}

/// Legacy kernels with 256-bit VNNI.
pub mod vnni {
    legacy_rows!("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
        rows_q4_0 => vec_dot_q4_0_q8_0, rows_q4_1 => vec_dot_q4_1_q8_1, rows_q5_0 => vec_dot_q5_0_q8_0, rows_q8_0 => vec_dot_q8_0_q8_0);
    legacy_kernels!(dot_u8i8_vnni, "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c");
}

/// Legacy kernels with AVX2 only.
pub mod plain {
    legacy_kernels!(dot_u8i8_avx2, "avx2,fma,f16c");
}
