//! Element-wise operations of the forward passes, written plainly (f32, one row at a time).
//! They mirror ggml's CPU ops: `rms_norm`, `rope` (NORM and NEOX), `soft_max`, `gelu`, `silu`.
//! [`for_rows`] / [`for_rows2`] spread a batch's rows over the pool.

use kiln_kernels::ThreadPool;

/// Fewest rows worth a dispatch to the pool (decode's single row stays on the caller's thread).
const PAR_MIN_ROWS: usize = 4;

/// `f(r0, rows)` over contiguous ranges of the first `n` rows (`w` wide) of `a`, one range per
/// pool thread; the caller's thread alone when `n` is small. Results do not depend on the split.
pub fn for_rows(pool: &ThreadPool, n: usize, a: &mut [f32], w: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    for_rows2(pool, n, a, w, &mut [], 0, |r0, a, _| f(r0, a));
}

/// [`for_rows`] over the same rows of two buffers (`wa` and `wb` wide).
pub fn for_rows2(pool: &ThreadPool, n: usize, a: &mut [f32], wa: usize, b: &mut [f32], wb: usize, f: impl Fn(usize, &mut [f32], &mut [f32]) + Sync) {
    let (a, b) = (&mut a[..n * wa], &mut b[..n * wb]);
    let nt = pool.n_threads();
    if n < PAR_MIN_ROWS || nt == 1 {
        return f(0, a, b);
    }
    let (pa, pb) = (SharedMut(a.as_mut_ptr()), SharedMut(b.as_mut_ptr()));
    pool.run(|t, nt| {
        let (r0, r1) = (n * t / nt, n * (t + 1) / nt);
        // SAFETY: the ranges r0..r1 of the threads are disjoint and lie inside a and b.
        let (ra, rb) = unsafe {
            (
                std::slice::from_raw_parts_mut(pa.get().add(r0 * wa), (r1 - r0) * wa),
                std::slice::from_raw_parts_mut(pb.get().add(r0 * wb), (r1 - r0) * wb),
            )
        };
        f(r0, ra, rb);
    });
}

/// `dst[r] = rms_norm(src[r]) · w` for the first `n` rows (`e` wide), over the pool.
pub fn norm_rows(pool: &ThreadPool, n: usize, src: &[f32], dst: &mut [f32], e: usize, w: &[f32], eps: f32) {
    for_rows(pool, n, dst, e, |r0, d| {
        for (i, row) in d.chunks_exact_mut(e).enumerate() {
            rms_norm_into(row, &src[(r0 + i) * e..][..e], w, eps);
        }
    });
}

/// `o[r] = rms_norm(o[r]) · w; h[r] += o[r]` for the first `n` rows (Gemma's post-norms), over
/// the pool.
pub fn norm_add_rows(pool: &ThreadPool, n: usize, o: &mut [f32], h: &mut [f32], e: usize, w: &[f32], eps: f32) {
    for_rows2(pool, n, o, e, h, e, |_, o, h| {
        for (or, hr) in o.chunks_exact_mut(e).zip(h.chunks_exact_mut(e)) {
            rms_norm(or, w, eps);
            add_in_place(hr, or);
        }
    });
}

/// `h[r] += o[r]; o[r] = rms_norm(h[r]) · w` for the first `n` rows (a residual add and the
/// next sub-layer's input norm), over the pool.
pub fn add_norm_rows(pool: &ThreadPool, n: usize, h: &mut [f32], o: &mut [f32], e: usize, w: &[f32], eps: f32) {
    for_rows2(pool, n, h, e, o, e, |_, h, o| {
        for (hr, or) in h.chunks_exact_mut(e).zip(o.chunks_exact_mut(e)) {
            add_in_place(hr, or);
            rms_norm_into(or, hr, w, eps);
        }
    });
}

/// A raw pointer the pool's threads write through at disjoint offsets.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub(crate) *mut f32);
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}
impl SharedMut {
    /// The pointer (a method, so closures capture the whole Sync wrapper, not its field).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// `x / sqrt(mean(x²) + eps) * w`, in place. Like ggml, the sum of squares is accumulated in f64.
pub fn rms_norm(x: &mut [f32], w: &[f32], eps: f32) {
    let sum: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
    let scale = 1.0 / ((sum / x.len() as f64) as f32 + eps).sqrt();
    for (v, &g) in x.iter_mut().zip(w) {
        *v = *v * scale * g;
    }
}

/// `dst = rms_norm(src) * w` for one row.
pub fn rms_norm_into(dst: &mut [f32], src: &[f32], w: &[f32], eps: f32) {
    dst.copy_from_slice(src);
    rms_norm(dst, w, eps);
}

/// How RoPE pairs the elements of a head (see spec §5.2): NORM rotates (x[2i], x[2i+1]),
/// NEOX rotates (x[i], x[i + n_rot/2]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeMode {
    Norm,
    Neox,
}

/// Rotary position embedding parameters for one layer.
#[derive(Clone, Copy, Debug)]
pub struct Rope {
    pub mode: RopeMode,
    pub n_rot: usize,
    pub freq_base: f32,
    pub freq_scale: f32,
}

impl Rope {
    /// Rotates every head of `x` ([n_heads][head_dim]) for position `pos`.
    /// θ_i = pos · freq_scale · base^(−2i/n_rot); dimensions past n_rot stay unchanged.
    pub fn apply(&self, x: &mut [f32], head_dim: usize, pos: usize) {
        self.apply_all(&mut [x], head_dim, pos);
    }

    /// [`Rope::apply`] to every head of each of `xs` (a token's Q and K), the angles' sines and
    /// cosines computed once for all of them.
    pub fn apply_all(&self, xs: &mut [&mut [f32]], head_dim: usize, pos: usize) {
        const MAX_HALF: usize = 256;
        let half = self.n_rot / 2;
        let theta_scale = self.freq_base.powf(-2.0 / self.n_rot as f32);
        let (mut sin, mut cos) = ([0f32; MAX_HALF], [0f32; MAX_HALF]);
        let mut past_table = pos as f32 * self.freq_scale;
        for i in 0..half.min(MAX_HALF) {
            (sin[i], cos[i]) = past_table.sin_cos();
            past_table *= theta_scale;
        }
        for x in xs.iter_mut() {
            for head in x.chunks_exact_mut(head_dim) {
                // Past the table (n_rot > 512, no model seen so far) the same sequence of angles
                // goes on here.
                let mut theta = past_table;
                for i in 0..half {
                    let (sin, cos) = if i < MAX_HALF {
                        (sin[i], cos[i])
                    } else {
                        let sc = theta.sin_cos();
                        theta *= theta_scale;
                        sc
                    };
                    let (a, b) = match self.mode {
                        RopeMode::Norm => (2 * i, 2 * i + 1),
                        RopeMode::Neox => (i, i + half),
                    };
                    let (x0, x1) = (head[a], head[b]);
                    head[a] = x0 * cos - x1 * sin;
                    head[b] = x0 * sin + x1 * cos;
                }
            }
        }
    }
}

/// SiLU(x) = x · σ(x).
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// GELU, tanh approximation (HF's `gelu_pytorch_tanh`, ggml's `gelu`), with tanh through
/// [`exp_neg`]: tanh(y) = sign(y)·(1 − e^(−2|y|)) / (1 + e^(−2|y|)), no libm call.
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let y = SQRT_2_OVER_PI * x * (1.0 + 0.044715 * x * x);
    let t = exp_neg(-2.0 * y.abs());
    let tanh = ((1.0 - t) / (1.0 + t)).copysign(y);
    0.5 * x * (1.0 + tanh)
}

/// `gate[i] = gelu(gate[i]) · up[i]` as ggml computes it (`ggml_vec_geglu_f32` with
/// `GGML_GELU_FP16`): 0 at x <= −10, x·up at x >= 10, otherwise the GELU of x rounded to f16,
/// looked up in a table of f16 results ([`gelu_table`]), times up. llama.cpp's answers come from
/// this table, so kiln's do too.
pub fn geglu(gate: &mut [f32], up: &[f32]) {
    let table = gelu_table();
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F was detected.
        return unsafe { geglu_avx512(gate, up, table) };
    }
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = geglu_one(*g, u, table);
    }
}

#[inline(always)]
fn geglu_one(x: f32, u: f32, table: &[u16]) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x * u
    } else {
        half::f16::from_bits(table[half::f16::from_f32(x).to_bits() as usize]).to_f32() * u
    }
}

/// [`geglu`] sixteen at a time: the f16 index by `vcvtps2ph`, the table read by a 32-bit gather
/// (the table has one spare entry, so the upper half of the last one's word is there).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,f16c")]
unsafe fn geglu_avx512(gate: &mut [f32], up: &[f32], table: &[u16]) {
    use std::arch::x86_64::*;
    let n = gate.len().min(up.len());
    let mut i = 0;
    while i + 16 <= n {
        let x = _mm512_loadu_ps(gate.as_ptr().add(i));
        let u = _mm512_loadu_ps(up.as_ptr().add(i));
        let idx = _mm512_cvtepu16_epi32(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x));
        let words = _mm512_i32gather_epi32::<2>(idx, table.as_ptr() as *const i32);
        let g = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(words));
        let mut y = _mm512_mul_ps(g, u);
        y = _mm512_mask_mul_ps(y, _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, _mm512_set1_ps(10.0)), x, u);
        y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask::<_CMP_LE_OQ>(x, _mm512_set1_ps(-10.0)), _mm512_setzero_ps());
        _mm512_storeu_ps(gate.as_mut_ptr().add(i), y);
        i += 16;
    }
    for j in i..n {
        gate[j] = geglu_one(gate[j], up[j], table);
    }
}

/// ggml's `ggml_table_gelu_f16`: for every f16 bit pattern x, the f16 nearest to
/// 0.5·x·(1 + tanh(√(2/π)·x·(1 + 0.044715·x²))) computed in f32 with libm's tanhf; plus one
/// spare entry for the gather in [`geglu_avx512`]. Built once (65,537 entries).
fn gelu_table() -> &'static [u16] {
    static TABLE: std::sync::OnceLock<Vec<u16>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        const SQRT_2_OVER_PI: f32 = 0.797_884_6;
        const GELU_COEF_A: f32 = 0.044715;
        let mut t: Vec<u16> = (0..=u16::MAX)
            .map(|bits| {
                let x = half::f16::from_bits(bits).to_f32();
                let y = 0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + GELU_COEF_A * x * x)).tanh());
                half::f16::from_f32(y).to_bits()
            })
            .collect();
        t.push(0);
        t
    })
}

/// e^x for x <= 0 (softmax after subtracting the max, tanh), to ~1e-7 relative: x = n·ln2 + r
/// with |r| <= ln2/2, e^r by its degree-6 Taylor polynomial, 2^n through the exponent bits.
/// Plain arithmetic, so loops over it vectorize (n is rounded to nearest by adding and taking
/// away 1.5·2^23, not with `round`, a libm call without SSE4.1).
#[inline(always)]
pub fn exp_neg(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 0.0);
    const ROUND: f32 = 12_582_912.0; // 1.5·2^23
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `gate[i] = act(gate[i]) * up[i]`.
pub fn gated(gate: &mut [f32], up: &[f32], act: fn(f32) -> f32) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = act(*g) * u;
    }
}

pub fn add_in_place(dst: &mut [f32], src: &[f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}

/// Softmax in place over `x`.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_of_constant_row_is_weight() {
        let mut x = vec![3.0f32; 8];
        let w: Vec<f32> = (0..8).map(|i| i as f32).collect();
        rms_norm(&mut x, &w, 0.0);
        for (i, v) in x.iter().enumerate() {
            assert!((v - i as f32).abs() < 1e-6);
        }
    }

    #[test]
    fn rope_modes_pair_different_elements() {
        let rope = Rope { mode: RopeMode::Norm, n_rot: 4, freq_base: 10000.0, freq_scale: 1.0 };
        let mut x = vec![1.0, 0.0, 0.0, 0.0];
        rope.apply(&mut x, 4, 1);
        // pair (0,1) rotated by θ_0 = 1 rad
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[1] - 1f32.sin()).abs() < 1e-6);
        let neox = Rope { mode: RopeMode::Neox, ..rope };
        let mut y = vec![1.0, 0.0, 0.0, 0.0];
        neox.apply(&mut y, 4, 1);
        // pair (0,2) rotated by θ_0 = 1 rad
        assert!((y[0] - 1f32.cos()).abs() < 1e-6 && (y[2] - 1f32.sin()).abs() < 1e-6);
        assert_eq!(y[1], 0.0);
    }

    #[test]
    fn rope_at_position_zero_is_identity() {
        let rope = Rope { mode: RopeMode::Neox, n_rot: 8, freq_base: 1e6, freq_scale: 0.125 };
        let mut x: Vec<f32> = (0..16).map(|i| i as f32 * 0.5 - 3.0).collect();
        let orig = x.clone();
        rope.apply(&mut x, 8, 0);
        assert_eq!(x, orig);
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut x = vec![1.0, 2.0, 3.0, -1e9];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(x[3], 0.0);
    }

    #[test]
    fn exp_neg_matches_std_on_softmax_inputs() {
        let mut worst = 0.0f32;
        for i in 0..20000 {
            let x = -(i as f32) * 0.0043;
            let (a, b) = (exp_neg(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
        }
        assert!(worst < 5e-7, "relative error {worst}");
        assert_eq!(exp_neg(0.0), 1.0);
        assert!(exp_neg(-1000.0) < 1e-37);
    }

    #[test]
    fn gelu_matches_the_libm_formula() {
        for i in -4000..4000 {
            let x = i as f32 * 0.005;
            let want = 0.5 * x * (1.0 + (0.797_884_6 * x * (1.0 + 0.044715 * x * x)).tanh());
            assert!((gelu_tanh(x) - want).abs() <= 1e-6 * (1.0 + want.abs()), "{x}: {} vs {want}", gelu_tanh(x));
        }
    }

    #[test]
    fn geglu_is_ggmls_f16_gelu_table() {
        // The vector path gives the scalar lookup's bits (x beyond ±10 and NaN-free edges
        // included), and the table is GELU to f16 precision: within an f16 step of the formula.
        let x: Vec<f32> = (-2600..2600).map(|i| i as f32 * 0.0047 + 0.0001).chain([-10.0, 10.0, -9.999, 9.999, 65504.0, -65504.0, 1e6, 0.0]).collect();
        let up: Vec<f32> = (0..x.len()).map(|i| 1.0 - i as f32 * 0.0003).collect();
        let mut a = x.clone();
        geglu(&mut a, &up);
        let table = gelu_table();
        for (i, &got) in a.iter().enumerate() {
            assert_eq!(got.to_bits(), geglu_one(x[i], up[i], table).to_bits(), "{}", x[i]);
            if x[i].abs() < 10.0 {
                let want = gelu_tanh(x[i]) * up[i];
                assert!((got - want).abs() <= 2e-3 * (want.abs() + 1e-2 * up[i].abs()), "{}: {got} vs {want}", x[i]);
            }
        }
        assert_eq!(geglu_one(-10.5, 3.0, table), 0.0);
        assert_eq!(geglu_one(12.0, 0.5, table), 6.0);
    }

    #[test]
    fn gelu_and_silu_known_values() {
        assert!((gelu_tanh(1.0) - 0.841_192).abs() < 1e-5);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert_eq!(gelu_tanh(0.0), 0.0);
    }
}
