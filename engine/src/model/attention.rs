//! Causal multi-head attention over the KV cache, with GQA and an optional sliding window.
//!
//! A work item is a token and a range of query heads: scores q·k for every visible position
//! into a per-thread buffer, softmax over them, then the weighted sum of values. The AVX-512
//! (head sizes 64/128/256) and AVX2 (multiples of 32 up to 512) kernels take all heads sharing
//! a KV head; the portable kernel (and AVX2 for other head sizes) takes one head per item.

use std::cell::RefCell;

use half::f16;

use kiln_kernels::ThreadPool;

use super::kv::KvCache;
use super::ops::{exp_neg as exp, SharedMut};

#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub head_dim_v: usize,
    /// Multiplies q·k (1.0 when the architecture scales Q itself).
    pub scale: f32,
    /// A query at position p sees keys at p' with p − p' < window.
    pub window: Option<usize>,
}

thread_local! {
    /// Scores of one work item; grows to the longest context seen, then stays.
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `out[i][h] = softmax(q[i][h] · K[..=p]ᵀ · scale) · V[..=p]` where token i sits at `start + i`.
/// q: [n_tok][n_head·head_dim]; out: [n_tok][n_head·head_dim_v]. The cache must already hold
/// the keys and values of positions up to `start + n_tok − 1` for this layer.
#[allow(clippy::too_many_arguments)]
pub fn attention(pool: &ThreadPool, cache: &KvCache, layer: usize, start: usize, n_tok: usize, q: &[f32], out: &mut [f32], sh: &AttnShape) {
    let (hd, hdv) = (sh.head_dim, sh.head_dim_v);
    let out_ptr = SharedMut(out.as_mut_ptr());
    assert!(out.len() >= n_tok * sh.n_head * hdv && q.len() >= n_tok * sh.n_head * hd);
    let group = sh.n_head / sh.n_kv_head.max(1);
    // The AVX-512 and AVX2 kernels take a token and the query heads sharing one KV head (each
    // key and value row widened from f16 once for all of them); one head per item for a single
    // token, so decode still spreads over the threads. The others take one head per item.
    #[cfg(target_arch = "x86_64")]
    let wide = x512::kernel(sh).or_else(|| x256::kernel(sh));
    #[cfg(not(target_arch = "x86_64"))]
    let wide: Option<Kernel> = None;
    let (kernel, per): (Kernel, usize) = match wide {
        Some(k) => (k, if n_tok == 1 { 1 } else { group }),
        None if has_avx2() => (attend_one_avx2, 1),
        None => (attend_one, 1),
    };
    let per_tok = sh.n_head / per;
    let items = n_tok * per_tok;
    pool.run(|t, nt| {
        SCORES.with(|buf| {
            let mut scores = buf.borrow_mut();
            let mut item = t;
            while item < items {
                let (i, h0) = (item / per_tok, (item % per_tok) * per);
                let pos = start + i;
                let first = sh.window.map_or(0, |w| (pos + 1).saturating_sub(w));
                let need = per * (pos + 1 - first);
                if scores.len() < need {
                    scores.resize(need, 0.0);
                }
                let qh = &q[(i * sh.n_head + h0) * hd..][..per * hd];
                // SAFETY: every (token, head range) item writes its own disjoint slice of `out`.
                let o = unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add((i * sh.n_head + h0) * hdv), per * hdv) };
                let it = Item { cache, layer, kvh: h0 / group, first, pos, sh };
                // SAFETY: each kernel is chosen only where its CPU features were detected.
                unsafe { kernel(&it, qh, per, &mut scores[..need], o) };
                item += nt;
            }
        });
    });
}

/// (item, q of `heads` heads, heads, scores [heads][n], out [heads][hdv]).
type Kernel = unsafe fn(&Item, &[f32], usize, &mut [f32], &mut [f32]);

/// One head, portable.
unsafe fn attend_one(it: &Item, q: &[f32], _heads: usize, scores: &mut [f32], o: &mut [f32]) {
    attend(it, q, scores, o, dot, axpy)
}

/// One head with F16C widening; only chosen when AVX2, FMA and F16C were detected.
unsafe fn attend_one_avx2(it: &Item, q: &[f32], _heads: usize, scores: &mut [f32], o: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    attend_avx2(it, q, scores, o);
    #[cfg(not(target_arch = "x86_64"))]
    attend(it, q, scores, o, dot, axpy)
}

struct Item<'a> {
    cache: &'a KvCache,
    layer: usize,
    kvh: usize,
    first: usize,
    pos: usize,
    sh: &'a AttnShape,
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn attend_avx2(it: &Item, q: &[f32], scores: &mut [f32], o: &mut [f32]) {
    // SAFETY: AVX2, FMA and F16C are enabled here.
    attend(it, q, scores, o, |a, b| unsafe { f16x86::dot(a, b) }, |o, w, v| unsafe { f16x86::axpy(o, w, v) })
}

#[inline(always)]
fn attend(it: &Item, q: &[f32], scores: &mut [f32], o: &mut [f32], dot: impl Fn(&[f32], &[f16]) -> f32, axpy: impl Fn(&mut [f32], f32, &[f16])) {
    let sh = it.sh;
    let (hd, hdv) = (sh.head_dim, sh.head_dim_v);
    let (kw, vw) = (sh.n_kv_head * hd, sh.n_kv_head * hdv);
    let keys = it.cache.keys(it.layer);
    let values = it.cache.values(it.layer);
    let n = it.pos + 1 - it.first;
    let scores = &mut scores[..n];
    let mut max = f32::NEG_INFINITY;
    for (j, s) in scores.iter_mut().enumerate() {
        let slot = it.cache.slot(it.layer, it.first + j);
        *s = dot(q, &keys[slot * kw + it.kvh * hd..][..hd]) * sh.scale;
        max = max.max(*s);
    }
    let mut sum = 0.0f32;
    for s in scores.iter_mut() {
        *s = exp(*s - max);
        sum += *s;
    }
    let inv = 1.0 / sum;
    o.iter_mut().for_each(|v| *v = 0.0);
    for (j, &s) in scores.iter().enumerate() {
        let slot = it.cache.slot(it.layer, it.first + j);
        let w = s * inv;
        axpy(o, w, &values[slot * vw + it.kvh * hdv..][..hdv]);
    }
}

/// `o += w·v`, v widened from f16.
#[inline(always)]
fn axpy(o: &mut [f32], w: f32, v: &[f16]) {
    for (a, &b) in o.iter_mut().zip(v) {
        *a += w * b.to_f32();
    }
}

/// q·k, k widened from f16.
#[inline(always)]
fn dot(a: &[f32], b: &[f16]) -> f32 {
    // Sixteen independent accumulators.
    let mut acc = [0.0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..16 {
            acc[l] += x[l] * y[l].to_f32();
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y.to_f32();
    }
    s
}

/// `dot` and `axpy` with F16C widening: the same lanes, the same unfused multiply-then-add and
/// the same final summation order, so both paths give the same bits.
#[cfg(target_arch = "x86_64")]
mod f16x86 {
    use half::f16;
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot(a: &[f32], b: &[f16]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr() as *const __m128i);
        let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 16 <= n {
            lo = _mm256_add_ps(lo, _mm256_mul_ps(_mm256_loadu_ps(pa.add(i)), _mm256_cvtph_ps(_mm_loadu_si128(pb.add(i / 8)))));
            hi = _mm256_add_ps(hi, _mm256_mul_ps(_mm256_loadu_ps(pa.add(i + 8)), _mm256_cvtph_ps(_mm_loadu_si128(pb.add(i / 8 + 1)))));
            i += 16;
        }
        let mut lanes = [0f32; 16];
        _mm256_storeu_ps(lanes.as_mut_ptr(), lo);
        _mm256_storeu_ps(lanes.as_mut_ptr().add(8), hi);
        let mut s: f32 = lanes.iter().sum();
        while i < n {
            s += a[i] * b[i].to_f32();
            i += 1;
        }
        s
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn axpy(o: &mut [f32], w: f32, v: &[f16]) {
        let n = o.len().min(v.len());
        let (po, pv) = (o.as_mut_ptr(), v.as_ptr() as *const __m128i);
        let wv = _mm256_set1_ps(w);
        let mut i = 0;
        while i + 8 <= n {
            let x = _mm256_add_ps(_mm256_loadu_ps(po.add(i)), _mm256_mul_ps(wv, _mm256_cvtph_ps(_mm_loadu_si128(pv.add(i / 8)))));
            _mm256_storeu_ps(po.add(i), x);
            i += 8;
        }
        while i < n {
            o[i] += w * v[i].to_f32();
            i += 1;
        }
    }
}

/// AVX2 attention for head sizes that are multiples of 32 up to 512, the AVX-512 kernel's shape
/// with 8-lane registers: each f16 key row widened once for up to 8 heads of the item (one
/// accumulator per head), softmax, then Σ p·v over 32-column blocks of the values for up to 3
/// heads at a time (12 accumulators), scaled by 1/Σp.
#[cfg(target_arch = "x86_64")]
mod x256 {
    use super::{exp, Item, Kernel};
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
        assert!(q.len() >= heads * hd && o.len() >= heads * hd && scores.len() >= heads * n);
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
            s.iter_mut().for_each(|v| *v *= inv);
        }
        // Σ p·v: 3 heads × 32 columns of accumulators per pass over the values.
        for h0 in (0..heads).step_by(3) {
            let hs = 3.min(heads - h0);
            for c0 in (0..hd).step_by(32) {
                let mut acc = [[_mm256_setzero_ps(); 4]; 3];
                for j in 0..n {
                    let slot = it.cache.slot(it.layer, it.first + j);
                    let vp = values[slot * w + it.kvh * hd + c0..][..32].as_ptr();
                    let v: [__m256; 4] = std::array::from_fn(|c| widen(vp.add(8 * c)));
                    for (h, a) in acc.iter_mut().enumerate().take(hs) {
                        let p = _mm256_set1_ps(*scores.get_unchecked((h0 + h) * n + j));
                        for c in 0..4 {
                            a[c] = _mm256_fmadd_ps(p, v[c], a[c]);
                        }
                    }
                }
                for (h, a) in acc.iter().enumerate().take(hs) {
                    for (c, ac) in a.iter().enumerate() {
                        _mm256_storeu_ps(o.as_mut_ptr().add((h0 + h) * hd + c0 + 8 * c), *ac);
                    }
                }
            }
        }
    }
}

/// AVX-512 attention for head sizes 64, 128 and 256: q·k with the key row widened once for
/// every head of the item, softmax, then Σ p·v accumulated in registers and scaled by 1/Σp.
#[cfg(target_arch = "x86_64")]
mod x512 {
    use super::{Item, Kernel};
    use std::arch::x86_64::*;

    pub fn kernel(sh: &super::AttnShape) -> Option<Kernel> {
        let ok = std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c");
        if !ok || sh.n_kv_head == 0 || !sh.n_head.is_multiple_of(sh.n_kv_head) || sh.head_dim != sh.head_dim_v || sh.n_head / sh.n_kv_head > MAX_GROUP
        {
            return None;
        }
        Some(match sh.head_dim {
            64 => attend::<4>,
            128 => attend::<8>,
            256 => attend::<16>,
            _ => return None,
        })
    }

    /// Most query heads sharing a KV head that this kernel takes.
    const MAX_GROUP: usize = 128;

    /// NC: 16-lane chunks per head row.
    #[target_feature(enable = "avx512f,fma,f16c")]
    unsafe fn attend<const NC: usize>(
        it: &Item,
        q: &[f32],
        heads: usize,
        scores: &mut [f32],
        o: &mut [f32],
    ) {
        let sh = it.sh;
        let hd = 16 * NC;
        let kw = sh.n_kv_head * hd;
        let keys = it.cache.keys(it.layer);
        let values = it.cache.values(it.layer);
        let n = it.pos + 1 - it.first;
        debug_assert!(q.len() >= heads * hd && o.len() >= heads * hd && scores.len() >= heads * n);
        let widen = |p: *const half::f16, c: usize| {
            _mm512_cvtph_ps(_mm256_loadu_si256(p.add(16 * c) as *const __m256i))
        };
        for j in 0..n {
            let slot = it.cache.slot(it.layer, it.first + j);
            let kp = keys[slot * kw + it.kvh * hd..][..hd].as_ptr();
            let k: [__m512; NC] = std::array::from_fn(|c| widen(kp, c));
            for h in 0..heads {
                let qp = q.as_ptr().add(h * hd);
                let mut acc = _mm512_mul_ps(_mm512_loadu_ps(qp), k[0]);
                for (c, kc) in k.iter().enumerate().skip(1) {
                    acc = _mm512_fmadd_ps(_mm512_loadu_ps(qp.add(16 * c)), *kc, acc);
                }
                *scores.get_unchecked_mut(h * n + j) = _mm512_reduce_add_ps(acc) * sh.scale;
            }
        }
        let mut inv = [0f32; MAX_GROUP];
        for h in 0..heads {
            inv[h] = 1.0 / softmax_numerators(&mut scores[h * n..(h + 1) * n]);
        }
        // Σ p·v in 16 accumulator registers: HB heads × CB 16-lane chunks per pass over the
        // values (every V row widened once per pass); each output lane sums its keys in order,
        // whatever the pass shape.
        let pv = Pv { it, values, n, hd, scores, inv: &inv, o: o.as_mut_ptr() };
        match (heads, NC) {
            (1, 16) => pv.run::<16, 1>(heads, NC),
            (1, _) | (2..=3, 8..) => pv.run::<8, 2>(heads, NC),
            _ => pv.run::<4, 4>(heads, NC),
        }
    }

    /// What the Σ p·v passes read and write.
    struct Pv<'a> {
        it: &'a Item<'a>,
        values: &'a [half::f16],
        n: usize,
        hd: usize,
        /// Softmax numerators, [heads][n].
        scores: &'a [f32],
        /// 1 / Σ numerators per head.
        inv: &'a [f32; MAX_GROUP],
        o: *mut f32,
    }

    impl Pv<'_> {
        /// All heads and chunks, HB heads × CB chunks (CB dividing nc) at a time.
        #[inline]
        #[target_feature(enable = "avx512f,fma,f16c")]
        unsafe fn run<const CB: usize, const HB: usize>(&self, heads: usize, nc: usize) {
            let cb = CB.min(nc);
            for h0 in (0..heads).step_by(HB) {
                for c0 in (0..nc).step_by(cb) {
                    self.pass::<CB, HB>(h0, HB.min(heads - h0), c0, cb);
                }
            }
        }

        /// Heads h0..h0+hs, chunks c0..c0+cb (hs <= HB, cb <= CB).
        #[inline]
        #[target_feature(enable = "avx512f,fma,f16c")]
        unsafe fn pass<const CB: usize, const HB: usize>(&self, h0: usize, hs: usize, c0: usize, cb: usize) {
            let it = self.it;
            let (n, hd) = (self.n, self.hd);
            let vw = it.sh.n_kv_head * hd;
            let mut acc = [[_mm512_setzero_ps(); CB]; HB];
            for j in 0..n {
                let slot = it.cache.slot(it.layer, it.first + j);
                let vp = self.values.as_ptr().add(slot * vw + it.kvh * hd + 16 * c0);
                let p: [__m512; HB] = std::array::from_fn(|h| _mm512_set1_ps(if h < hs { *self.scores.get_unchecked((h0 + h) * n + j) } else { 0.0 }));
                for c in 0..cb {
                    let v = _mm512_cvtph_ps(_mm256_loadu_si256(vp.add(16 * c) as *const __m256i));
                    for (h, a) in acc.iter_mut().enumerate().take(hs) {
                        a[c] = _mm512_fmadd_ps(p[h], v, a[c]);
                    }
                }
            }
            for (h, a) in acc.iter().enumerate().take(hs) {
                let scale = _mm512_set1_ps(self.inv[h0 + h]);
                for (c, ac) in a.iter().enumerate().take(cb) {
                    _mm512_storeu_ps(self.o.add((h0 + h) * hd + 16 * (c0 + c)), _mm512_mul_ps(*ac, scale));
                }
            }
        }
    }

    /// s[j] = e^(s[j] − max s) sixteen at a time ([`exp_v`], the same values as `exp`); returns
    /// their sum (sixteen partial sums, then reduced: one order for every batch).
    #[inline]
    #[target_feature(enable = "avx512f,fma,f16c")]
    unsafe fn softmax_numerators(s: &mut [f32]) -> f32 {
        let n = s.len();
        let tail = |i: usize| -> u16 { if n - i >= 16 { 0xFFFF } else { ((1u32 << (n - i)) - 1) as u16 } };
        let mut mv = _mm512_set1_ps(f32::NEG_INFINITY);
        for i in (0..n).step_by(16) {
            mv = _mm512_max_ps(mv, _mm512_mask_loadu_ps(_mm512_set1_ps(f32::NEG_INFINITY), tail(i), s.as_ptr().add(i)));
        }
        let max = _mm512_set1_ps(_mm512_reduce_max_ps(mv));
        let mut sum = _mm512_setzero_ps();
        for i in (0..n).step_by(16) {
            let m = tail(i);
            let e = exp_v(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s.as_ptr().add(i)), max));
            _mm512_mask_storeu_ps(s.as_mut_ptr().add(i), m, e);
            sum = _mm512_mask_add_ps(sum, m, sum, e);
        }
        _mm512_reduce_add_ps(sum)
    }

    /// `exp` (ops::exp_neg) on sixteen lanes: the same operations in the same order.
    #[inline]
    #[target_feature(enable = "avx512f,fma,f16c")]
    pub(super) unsafe fn exp_v(x: __m512) -> __m512 {
        let c = _mm512_set1_ps;
        let x = _mm512_min_ps(_mm512_max_ps(x, c(-87.0)), c(0.0));
        let n = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(x, c(std::f32::consts::LOG2_E)), c(12_582_912.0)), c(12_582_912.0));
        let r = _mm512_sub_ps(_mm512_sub_ps(x, _mm512_mul_ps(n, c(0.693_145_75))), _mm512_mul_ps(n, c(1.428_606_8e-6)));
        let mut p = c(1.0 / 720.0);
        for k in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = _mm512_add_ps(c(k), _mm512_mul_ps(r, p));
        }
        let two_n = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(n), _mm512_set1_epi32(127)), 23));
        _mm512_mul_ps(p, two_n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The portable path for every (token, head), as the reference for the SIMD ones.
    fn portable(
        cache: &KvCache,
        layer: usize,
        start: usize,
        n_tok: usize,
        q: &[f32],
        sh: &AttnShape,
    ) -> Vec<f32> {
        let mut out = vec![0f32; n_tok * sh.n_head * sh.head_dim_v];
        let mut scores = Vec::new();
        for i in 0..n_tok {
            for h in 0..sh.n_head {
                let pos = start + i;
                let first = sh.window.map_or(0, |w| (pos + 1).saturating_sub(w));
                scores.resize(pos + 1 - first, 0.0);
                let it = Item {
                    cache,
                    layer,
                    kvh: h / (sh.n_head / sh.n_kv_head),
                    first,
                    pos,
                    sh,
                };
                let qh = &q[(i * sh.n_head + h) * sh.head_dim..][..sh.head_dim];
                let o = &mut out[(i * sh.n_head + h) * sh.head_dim_v..][..sh.head_dim_v];
                attend(&it, qh, &mut scores, o, dot, axpy);
            }
        }
        out
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn vector_exp_has_the_bits_of_exp() {
        if !std::is_x86_feature_detected!("avx512f") {
            eprintln!("no AVX-512: the vector exp is not used on this CPU");
            return;
        }
        use std::arch::x86_64::*;
        let xs: Vec<f32> = (0..40_000).map(|i| -(i as f32) * 0.0023 - 1e-4 * (i % 7) as f32).chain([0.0, -0.0, -87.0, -88.5, -1e30]).collect();
        for c in xs.chunks(16) {
            let mut buf = [0f32; 16];
            buf[..c.len()].copy_from_slice(c);
            let mut out = [0f32; 16];
            // SAFETY: AVX-512F was detected.
            unsafe { _mm512_storeu_ps(out.as_mut_ptr(), x512::exp_v(_mm512_loadu_ps(buf.as_ptr()))) };
            for (x, e) in c.iter().zip(out) {
                assert_eq!(e.to_bits(), exp(*x).to_bits(), "e^{x}");
            }
        }
    }

    #[test]
    fn simd_attention_matches_the_portable_path() {
        let pool = ThreadPool::new(2);
        let mut seed = 7u64;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        // (heads, kv heads, head size, window): GQA groups of 8, 3, 4, 10 and 8, the three
        // AVX-512 head sizes and two that only the AVX2 kernel takes (96, 32).
        for (n_head, n_kv_head, hd, window) in [
            (8, 1, 64, None),
            (9, 3, 64, None),
            (4, 1, 256, Some(5)),
            (4, 2, 128, None),
            (10, 1, 96, Some(7)),
            (16, 2, 32, None),
        ] {
            let sh = AttnShape {
                n_head,
                n_kv_head,
                head_dim: hd,
                head_dim_v: hd,
                scale: 1.0 / (hd as f32).sqrt(),
                window,
            };
            let (kw, n_pos) = (n_kv_head * hd, 37);
            let mut cache = KvCache::new(&[window], kw, kw, 64);
            cache.reserve(n_pos).unwrap();
            for pos in 0..n_pos {
                let k: Vec<f32> = (0..kw).map(|_| 3.0 * rnd()).collect();
                let v: Vec<f32> = (0..kw).map(|_| rnd()).collect();
                cache.store(0, pos, &k, &v);
            }
            // A prompt batch (positions 20..37) and one decode step (position 36).
            for (start, n_tok) in [(20, 17), (36, 1)] {
                let q: Vec<f32> = (0..n_tok * n_head * hd).map(|_| rnd()).collect();
                let mut got = vec![f32::NAN; n_tok * n_head * hd];
                attention(&pool, &cache, 0, start, n_tok, &q, &mut got, &sh);
                let want = portable(&cache, 0, start, n_tok, &q, &sh);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                        "{n_head}/{n_kv_head}x{hd} start {start}: [{i}] {g} vs {w}"
                    );
                }
            }
        }
    }
}
