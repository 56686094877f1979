//! llama.cpp's attention arithmetic one head at a time, portable (`f32::mul_add` for its
//! FMAs): the bits of the AVX-512 kernel, which documents the steps.

use super::{tree16, Item, Kernel};

pub fn kernel() -> Kernel {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("fma") {
        return attend_fma;
    }
    attend_plain
}

/// Compiled with FMA, where `mul_add` is one instruction; only chosen where it was detected.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn attend_fma(it: &Item, q: &[f32], _heads: usize, scores: &mut [f32], o: &mut [f32]) {
    attend(it, q, scores, o)
}

unsafe fn attend_plain(it: &Item, q: &[f32], _heads: usize, scores: &mut [f32], o: &mut [f32]) {
    attend(it, q, scores, o)
}

#[inline(always)]
pub(super) fn attend(it: &Item, q: &[f32], scores: &mut [f32], o: &mut [f32]) {
    let sh = it.sh;
    let (hd, hdv) = (sh.head_dim, sh.head_dim_v);
    let kw = sh.n_kv_head * hd;
    let keys = it.cache.keys(it.layer);
    let values = it.cache.values(it.layer);
    let n = it.pos + 1 - it.first;
    let scores = &mut scores[..n];
    for (j, s) in scores.iter_mut().enumerate() {
        let slot = it.cache.slot(it.layer, it.first + j);
        *s = dot(&q[..hd], &keys[slot * kw + it.kvh * hd..][..hd]) * sh.scale;
    }
    softmax_weights(scores, it.first);
    for c0 in (0..hdv).step_by(16) {
        let w = 16.min(hdv - c0);
        let mut acc = [[0f32; 16]; 16];
        for (j, &p) in scores.iter().enumerate() {
            let pos = it.first + j;
            let slot = it.cache.slot(it.layer, pos);
            let a = &mut acc[pos % 16];
            for (e, a) in a.iter_mut().enumerate().take(w) {
                let v = values[it.cache.value_index(slot, it.kvh * hdv + c0 + e)];
                *a = v.to_f32().mul_add(p, *a);
            }
        }
        for (e, out) in o[c0..c0 + w].iter_mut().enumerate() {
            *out = tree16(&std::array::from_fn(|l| acc[l][e]));
        }
    }
}

/// q·k: sixteen lanes over the dimensions (FMA), then [`tree16`].
#[inline(always)]
fn dot(q: &[f32], k: &[half::f16]) -> f32 {
    let mut acc = [0f32; 16];
    for (i, (a, b)) in q.iter().zip(k).enumerate() {
        acc[i % 16] = a.mul_add(b.to_f32(), acc[i % 16]);
    }
    tree16(&acc)
}

/// Scores of positions first.. → softmax weights as ggml computes them: e^(s − max) by
/// [`expf`], Σ in f64 over 16-cell chunks (position p in lane p mod 16, each chunk's lanes
/// added by [`tree16`]), each weight times (f32)(1/Σ), then rounded to f16.
#[inline(always)]
pub(super) fn softmax_weights(s: &mut [f32], first: usize) {
    let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f64;
    let end = first + s.len();
    let mut base = first - first % 16;
    while base < end {
        let mut e = [0f32; 16];
        for (p, l) in (first.max(base)..end.min(base + 16)).map(|p| (p, p - base)) {
            e[l] = expf(s[p - first] - max);
            s[p - first] = e[l];
        }
        sum += tree16(&e) as f64;
        base += 16;
    }
    let inv = (1.0 / sum) as f32;
    for v in s.iter_mut() {
        *v = half::f16::from_f32(*v * inv).to_f32();
    }
}

/// ggml's vector e^x (`ggml_v_expf`, AVX-512 form) one lane at a time: the same operations.
#[inline(always)]
pub(super) fn expf(x: f32) -> f32 {
    let r = f32::from_bits(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(f32::from_bits(0x3fb8_aa3b), r);
    let n = z - r;
    let b = (-n).mul_add(f32::from_bits(0x35bf_be8e), (-n).mul_add(f32::from_bits(0x3f31_7200), x));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    let u = b * b;
    let c = f32::from_bits;
    let j = c(0x3c07_2010)
        .mul_add(b, c(0x3d2b_9f17))
        .mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb)))
        .mul_add(u, c(0x3f7f_fff6).mul_add(b, 1.0));
    scalef(j, n)
}

/// j·2^n for an integral n in [−192, 192], rounded once (as `vscalefps`).
#[inline(always)]
fn scalef(j: f32, n: f32) -> f32 {
    let pow2 = |k: i32| f32::from_bits(((k + 127) as u32) << 23);
    let n = n as i32;
    if n > 127 {
        j * pow2(127) * pow2(n - 127)
    } else if n < -126 {
        // The first product is exact (normal); the second rounds once.
        j * pow2(n + 100) * pow2(-100)
    } else {
        j * pow2(n)
    }
}
