//! Q4_K / Q6_K held as [`crate::repack::Layout::Lanes16`]: 16 weight rows as the 32-bit lanes of
//! every AVX-512 vector, for decode and prefill alike.
//!
//! The row-major mat-vec (`avx512::rows_q4k`) keeps one row's super-block in a vector, so each
//! super-block ends in horizontal sums and a scale vector built by shuffles; that, not memory,
//! bounded one core's decode. Here a vector holds 16 rows, unit u (elements 4u..4u+3) of each
//! in its lane: a sub-block's dot is `vpdpbusd` of the unpacked units against the activation's
//! quants broadcast four at a time, one `vpmulld` by the 16 rows' scales, and the float step
//! runs lane-wise. Nothing is reduced across lanes. The layout is made once at load, in the
//! same bytes (`repack::to_lanes`), so no panel is built per call as the row-major GEMM does.
//!
//! The integers are those of [`super::avx512::k_quant_step`] / [`super::avx512::q6_k_step`]:
//! - Q4_K: s = Σ scale·(q·q8) per sub-block; the mins' Σ min·bsum32 is taken as
//!   64·Σ min·hi + Σ min·lo with bsum32 = 64·hi + lo (hi in −64..63, lo in 0..63), two
//!   `vpdpbusd` each over the 16 rows' mins as bytes;
//! - Q6_K: each sub-block's dot starts at −32·bsum16, so Σ scale·(dot − 32·bsum) = s − 32·o.
//!
//! The float steps are the same as every other path's, so every output has the same bits.
//!
//! A call's rows are one sequential stream, and the hardware prefetcher follows it better
//! alone: with the row-major kernels' software prefetch 2, 4, 8 or 16 KiB ahead, the synthetic
//! 1.1B decoded 35.1, 47.9, 47.7 and 48.7 tok/s against 59.1 without (Zen 4, 2 threads, `kiln
//! bench -p 16 -n 128 -t 2 -r 2`, two runs each, averaged).
use super::gemm::{nan_out, Q8K_BSUMS, Q8K_BYTES, Q8K_QS};
use super::GemmFn;
use crate::repack::{LANES, Q4K_D, Q4K_MN, Q4K_QS, Q4K_SC, Q6K_D, Q6K_QS, Q6K_SC};
use crate::types::GgmlType;
use std::arch::x86_64::*;
use std::cell::RefCell;

/// The kernel for `ty` over [`crate::repack::Layout::Lanes16`] (the caller checked AVX-512 VNNI).
pub fn lanes_fn(ty: GgmlType) -> Option<GemmFn> {
    // SAFETY (both): handed out only where AVX-512 BW/VL + VNNI were detected (`simd::isa`).
    match ty {
        GgmlType::Q4_K => Some(|w, rb, r, a, arb, n, y, ys| unsafe { lanes::<Q4_K>(w, rb, r, a, arb, n, y, ys) }),
        GgmlType::Q6_K => Some(|w, rb, r, a, arb, n, y, ys| unsafe { lanes::<Q6_K>(w, rb, r, a, arb, n, y, ys) }),
        _ => None,
    }
}

const Q4_K: u8 = 0;
const Q6_K: u8 = 1;

/// (super-block bytes of one row, i32 words of per-token prepared sums per super-block).
const fn shape(t: u8) -> (usize, usize) {
    match t {
        Q4_K => (144, 4),
        _ => (210, 16),
    }
}

/// Tokens a pass over a group carries in registers.
const TOKENS: usize = 8;

thread_local! {
    /// Per token and super-block, what the kernels take from the bsums (see [`prepare`]).
    static PREP: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn lanes<const T: u8>(w: &[u8], rb: usize, rows: usize, acts: &[u8], act_rb: usize, n_tokens: usize, y: *mut f32, y_stride: usize) {
    let (b, words) = shape(T);
    let nb = rb / b;
    let ok = rb == nb * b && act_rb == nb * Q8K_BYTES && rows.is_multiple_of(LANES) && w.len() >= rows * rb && acts.len() >= n_tokens * act_rb;
    if !ok {
        return nan_out(rows, n_tokens, y, y_stride);
    }
    PREP.with_borrow_mut(|prep| {
        if prep.len() < n_tokens * nb * words {
            prep.resize(n_tokens * nb * words, 0);
        }
        prepare::<T>(acts, act_rb, nb, n_tokens, prep);
        for g in 0..rows / LANES {
            let mut t0 = 0;
            while t0 < n_tokens {
                let nt = TOKENS.min(n_tokens - t0);
                let p = Pass { w, base: g * LANES * rb, nb, acts, act_rb, prep, t0, y: y.add(g * LANES), y_stride };
                match nt {
                    8 => pass::<T, 8>(&p),
                    7 => pass::<T, 7>(&p),
                    6 => pass::<T, 6>(&p),
                    5 => pass::<T, 5>(&p),
                    4 => pass::<T, 4>(&p),
                    3 => pass::<T, 3>(&p),
                    2 => pass::<T, 2>(&p),
                    _ => pass::<T, 1>(&p),
                }
                t0 += nt;
            }
        }
    });
}

/// Per token t and super-block i, at `prep[(t·nb + i)·words..]`: Q4_K's bsum32 of sub-block j
/// split as 64·hi + lo, bytes hi0..hi7 then lo0..lo7; Q6_K's −32·bsum16 of sub-block j as i32.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn prepare<const T: u8>(acts: &[u8], act_rb: usize, nb: usize, n_tokens: usize, prep: &mut [i32]) {
    let (_, words) = shape(T);
    for t in 0..n_tokens {
        for i in 0..nb {
            let bs = acts.as_ptr().add(t * act_rb + i * Q8K_BYTES + Q8K_BSUMS) as *const i16;
            let bsum = |k: usize| bs.add(k).read_unaligned() as i32;
            let out = prep.as_mut_ptr().add((t * nb + i) * words);
            if T == Q4_K {
                let mut bytes = [0u8; 16];
                for j in 0..8 {
                    let s = bsum(2 * j) + bsum(2 * j + 1);
                    bytes[j] = (s >> 6) as i8 as u8;
                    bytes[8 + j] = (s & 63) as u8;
                }
                (out as *mut [u8; 16]).write_unaligned(bytes);
            } else {
                for j in 0..16 {
                    *out.add(j) = -32 * bsum(j);
                }
            }
        }
    }
}

/// One pass: up to [`TOKENS`] tokens (t0..) against one group of 16 rows, every super-block.
struct Pass<'a> {
    /// The call's rows; the group's bytes start at `base`.
    w: &'a [u8],
    base: usize,
    nb: usize,
    acts: &'a [u8],
    act_rb: usize,
    prep: &'a [i32],
    t0: usize,
    y: *mut f32,
    y_stride: usize,
}

/// N tokens against a group, accumulators in registers; see the module docs.
#[allow(clippy::needless_range_loop)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn pass<const T: u8, const N: usize>(a: &Pass) {
    let (b, words) = shape(T);
    let gb = LANES * b;
    let m4 = _mm512_set1_epi8(0x0F);
    let m6 = _mm512_set1_epi8(0x3F);
    let mut acc = [_mm512_setzero_ps(); N];
    let act: [*const u8; N] = std::array::from_fn(|t| a.acts.as_ptr().add((a.t0 + t) * a.act_rb));
    let prep: [*const i32; N] = std::array::from_fn(|t| a.prep.as_ptr().add((a.t0 + t) * a.nb * words));
    for i in 0..a.nb {
        let blk = a.w.as_ptr().add(a.base + i * gb);
        let ld = |o: usize| _mm512_loadu_si512(blk.add(o) as *const __m512i);
        // Quants of the N tokens' super-block i, `o` bytes in, four at a time.
        let q4 = |t: usize, o: usize| act[t].add(i * Q8K_BYTES + Q8K_QS + o) as *const i32;
        let d8 = |t: usize| _mm512_set1_ps((act[t].add(i * Q8K_BYTES) as *const f32).read_unaligned());
        let mut s = [_mm512_setzero_si512(); N];
        if T == Q4_K {
            let (x0, x1, x2) = (ld(Q4K_SC), ld(Q4K_SC + 64), ld(Q4K_MN));
            for j in 0..8 {
                let x = if j < 4 { x0 } else { x1 };
                let sc = _mm512_and_si512(_mm512_srl_epi32(x, _mm_cvtsi32_si128(8 * (j as i32 % 4))), _mm512_set1_epi32(0x3F));
                let p = j / 2;
                let wq: [__m512i; 8] = std::array::from_fn(|m| {
                    let v = ld(Q4K_QS + 64 * (8 * p + m));
                    if j % 2 == 0 { _mm512_and_si512(v, m4) } else { _mm512_and_si512(_mm512_srli_epi16(v, 4), m4) }
                });
                for t in 0..N {
                    let q = q4(t, 32 * j);
                    let mut c = _mm512_setzero_si512();
                    for (m, wm) in wq.iter().enumerate() {
                        c = _mm512_dpbusd_epi32(c, *wm, _mm512_set1_epi32(q.add(m).read_unaligned()));
                    }
                    s[t] = _mm512_add_epi32(s[t], _mm512_mullo_epi32(c, sc));
                }
            }
            // The mins as bytes, sub-blocks 0..4 and 4..8 of each row's lane: low nibbles from
            // x2, bits 4-5 from the top of the scale bytes (0xE4: C ? A : B).
            let mins_lo = _mm512_and_si512(_mm512_ternarylogic_epi32(x2, _mm512_srli_epi16(x0, 2), m4, 0xE4), m6);
            let mins_hi = _mm512_and_si512(_mm512_ternarylogic_epi32(_mm512_srli_epi16(x2, 4), _mm512_srli_epi16(x1, 2), m4, 0xE4), m6);
            let dd = ld(Q4K_D);
            let d = _mm512_cvtph_ps(_mm512_castsi512_si256(dd));
            let dmin = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(dd, 1));
            for t in 0..N {
                let hl = prep[t].add(i * words);
                let bc = |k: usize| _mm512_set1_epi32(*hl.add(k));
                let hi = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), mins_lo, bc(0)), mins_hi, bc(1));
                let lo = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), mins_lo, bc(2)), mins_hi, bc(3));
                let m = _mm512_add_epi32(_mm512_slli_epi32(hi, 6), lo);
                // k_quant_step: acc += (s·d)·d8, then acc += (m·(−dmin))·d8, which is
                // acc − (m·dmin)·d8 in one rounding (negation is exact).
                acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s[t]), d), d8(t), acc[t]);
                acc[t] = _mm512_fnmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(m), dmin), d8(t), acc[t]);
            }
        } else {
            let m2 = _mm512_set1_epi8(0x03);
            for g in 0..16 {
                let v: [__m512i; 3] = std::array::from_fn(|k| ld(Q6K_QS + 64 * (3 * g + k)));
                // Unit 4g + 3 from the vectors' top bits: bits 0-1 of v0's, 2-3 of v1's, 4-5 of v2's.
                let u3 = _mm512_ternarylogic_epi32(_mm512_srli_epi16(v[0], 6), _mm512_srli_epi16(v[1], 4), m2, 0xE4);
                let u3 = _mm512_and_si512(_mm512_ternarylogic_epi32(u3, _mm512_srli_epi16(v[2], 2), m4, 0xE4), m6);
                let wq = [_mm512_and_si512(v[0], m6), _mm512_and_si512(v[1], m6), _mm512_and_si512(v[2], m6), u3];
                let sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(blk.add(Q6K_SC + 16 * g) as *const __m128i));
                for t in 0..N {
                    let q = q4(t, 16 * g);
                    let mut c = _mm512_set1_epi32(*prep[t].add(i * words + g));
                    for (m, wm) in wq.iter().enumerate() {
                        c = _mm512_dpbusd_epi32(c, *wm, _mm512_set1_epi32(q.add(m).read_unaligned()));
                    }
                    s[t] = _mm512_add_epi32(s[t], _mm512_mullo_epi32(c, sc));
                }
            }
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(blk.add(Q6K_D) as *const __m256i));
            for t in 0..N {
                // q6_k_step: acc += ((s − 32·o)·d)·d8, the −32·o already in s.
                acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s[t]), d), d8(t), acc[t]);
            }
        }
    }
    for (t, v) in acc.iter().enumerate() {
        _mm512_storeu_ps(a.y.add((a.t0 + t) * a.y_stride), *v);
    }
}
