//! AVX2 attention for head sizes that are multiples of 32 up to 512, the AVX-512 kernel's shape
//! with 8-lane registers: each f16 key row widened once for up to 8 heads of the item (one
//! accumulator per head), softmax, then Σ p·v per head and four dimensions over the transposed
//! values, sixteen positions a step in two 8-lane halves.

use super::super::ops::exp_neg as exp;
use super::{pv_plan, Item, Kernel};
use std::arch::x86_64::*;

pub fn kernel(sh: &super::AttnShape) -> Option<Kernel> {
    let ok = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("f16c");
    let shape = sh.n_kv_head > 0 && sh.n_head.is_multiple_of(sh.n_kv_head) && sh.head_dim == sh.head_dim_v;
    (ok && shape && sh.head_dim.is_multiple_of(32) && (32..=512).contains(&sh.head_dim)).then_some(attend as Kernel)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn attend(it: &Item, q: &[f32], heads: usize, scores: &mut [f32], o: &mut [f32]) {
    let sh = it.sh;
    let hd = sh.head_dim;
    let w = sh.n_kv_head * hd;
    let keys = it.cache.keys(it.layer);
    let values = it.cache.values(it.layer);
    let n = it.pos + 1 - it.first;
    assert!(q.len() >= heads * hd && o.len() >= heads * hd && scores.len() >= heads * n && hd.is_multiple_of(4));
    let widen = |p: *const half::f16| _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
    // Scores, 8 heads per pass over the keys.
    for h0 in (0..heads).step_by(8) {
        let hs = 8.min(heads - h0);
        for j in 0..n {
            let slot = it.cache.slot(it.layer, it.first + j);
            let kp = keys[slot * w + it.kvh * hd..][..hd].as_ptr();
            let mut acc = [_mm256_setzero_ps(); 8];
            for c in (0..hd).step_by(8) {
                let k = widen(kp.add(c));
                for (h, a) in acc.iter_mut().enumerate().take(hs) {
                    *a = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add((h0 + h) * hd + c)), k, *a);
                }
            }
            for (h, a) in acc.iter().enumerate().take(hs) {
                *scores.get_unchecked_mut((h0 + h) * n + j) = hsum(*a) * sh.scale;
            }
        }
    }
    for h in 0..heads {
        let s = &mut scores[h * n..(h + 1) * n];
        let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for v in s.iter_mut() {
            *v = exp(*v - max);
            sum += *v;
        }
        let inv = 1.0 / sum;
        s.iter_mut().for_each(|v| *v = half::f16::from_f32(*v * inv).to_f32());
    }
    // Σ p·v over the transposed values (`kv`): per head and four dimensions, sixteen
    // positions a step in two 8-lane halves, each dimension's lanes added at the end.
    pv_plan(it, it.kvh * hd, scores, heads, |vblk, wpad, span| {
        for h in 0..heads {
            for d0 in (0..hd).step_by(4) {
                let mut acc = [[_mm256_setzero_ps(); 2]; 4];
                for (b, &vb) in vblk.iter().enumerate() {
                    let wp = wpad.as_ptr().add(h * span + 16 * b);
                    let w = [_mm256_loadu_ps(wp), _mm256_loadu_ps(wp.add(8))];
                    for (d, a) in acc.iter_mut().enumerate() {
                        let vp = values.as_ptr().add(vb + (d0 + d) * 16);
                        a[0] = _mm256_fmadd_ps(widen(vp), w[0], a[0]);
                        a[1] = _mm256_fmadd_ps(widen(vp.add(8)), w[1], a[1]);
                    }
                }
                for (d, a) in acc.iter().enumerate() {
                    *o.get_unchecked_mut(h * hd + d0 + d) = hsum(_mm256_add_ps(a[0], a[1]));
                }
            }
        }
    });
}
