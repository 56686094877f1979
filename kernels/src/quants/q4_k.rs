//! Q4_K: 256-weight super-blocks of eight 32-weight sub-blocks, each with a 6-bit scale and
//! 6-bit min; 4-bit unsigned quants. 4.5 bits per weight.
use super::common::{get_scale_min_k4, make_qkx2_quants, nearest_int, Half};
use super::q8_k::BlockQ8K;
use crate::types::QK_K;
use bytemuck::{Pod, Zeroable};

/// `block_q4_K`: element e = 64c + 32h + l has q = (qs[32c + l] >> 4h) & 0xF in sub-block 2c+h;
/// y = d·scale[sb]·q − dmin·min[sb], scales/mins packed as in `get_scale_min_k4`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ4K {
    pub d: Half,
    pub dmin: Half,
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);

pub fn dequantize_row_q4_k(x: &[BlockQ4K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let (d, min) = (b.d.to_f32(), b.dmin.to_f32());
        for c in 0..4 {
            let (sc0, m0) = get_scale_min_k4(2 * c, &b.scales);
            let (sc1, m1) = get_scale_min_k4(2 * c + 1, &b.scales);
            let (d1, m1f) = (d * sc0 as f32, min * m0 as f32);
            let (d2, m2f) = (d * sc1 as f32, min * m1 as f32);
            let q = &b.qs[32 * c..32 * c + 32];
            let y = &mut y[64 * c..64 * c + 64];
            for l in 0..32 {
                y[l] = d1 * (q[l] & 0xF) as f32 - m1f;
                y[l + 32] = d2 * (q[l] >> 4) as f32 - m2f;
            }
        }
    }
}

/// Packs eight 6-bit (scale, min) pairs into the 12-byte K-quant scale field.
pub(crate) fn pack_scale_min_k4(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
    s
}

/// Shared by Q4_K (nmax 15) and Q5_K (nmax 31): per-sub-block scale search, 6-bit scale
/// quantization, then requantization against the stored scales. Returns (d, dmin, scales, L).
pub(crate) fn quantize_superblock_k4(
    x: &[f32],
    nmax: i32,
    rmin: f32,
    nstep: i32,
) -> (Half, Half, [u8; 12], [u8; QK_K]) {
    let mut l_all = [0u8; QK_K];
    let (mut scales, mut mins) = ([0f32; 8], [0f32; 8]);
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    let mut weights = [0f32; 32];
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let sum_x2: f32 = xs.iter().map(|v| v * v).sum();
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        let (s, m) = make_qkx2_quants(nmax, xs, &weights, &mut l_all[32 * j..32 * j + 32], rmin, 0.1, nstep, false);
        scales[j] = s;
        mins[j] = m;
        max_scale = max_scale.max(s);
        max_min = max_min.max(m);
    }
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let (mut ls, mut lm) = ([0u8; 8], [0u8; 8]);
    for j in 0..8 {
        ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
    }
    let packed = pack_scale_min_k4(&ls, &lm);
    let d = Half::from_f32(max_scale / 63.0);
    let dmin = Half::from_f32(max_min / 63.0);
    for j in 0..8 {
        let (sc, m) = get_scale_min_k4(j, &packed);
        let df = d.to_f32() * sc as f32;
        if df == 0.0 {
            continue;
        }
        let dm = dmin.to_f32() * m as f32;
        for ii in 0..32 {
            l_all[32 * j + ii] = nearest_int((x[32 * j + ii] + dm) / df).clamp(0, nmax) as u8;
        }
    }
    (d, dmin, packed, l_all)
}

pub fn quantize_row_q4_k_ref(x: &[f32], y: &mut [BlockQ4K]) {
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let (d, dmin, scales, l) = quantize_superblock_k4(x, 15, -1.0, 20);
        b.d = d;
        b.dmin = dmin;
        b.scales = scales;
        for c in 0..4 {
            for i in 0..32 {
                b.qs[32 * c + i] = l[64 * c + i] | (l[64 * c + i + 32] << 4);
            }
        }
    }
}

pub fn vec_dot_q4_k_q8_k_scalar(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let (mut sumi, mut summ) = (0i32, 0i32);
        for sb in 0..8 {
            let (sc, m) = get_scale_min_k4(sb, &x.scales);
            let (c, shift) = (sb / 2, 4 * (sb % 2));
            let q8 = &y.qs[32 * sb..32 * sb + 32];
            let mut s = 0i32;
            for l in 0..32 {
                s += ((x.qs[32 * c + l] >> shift) & 0xF) as i32 * q8[l] as i32;
            }
            sumi += sc as i32 * s;
            summ += m as i32 * (y.bsums[2 * sb] as i32 + y.bsums[2 * sb + 1] as i32);
        }
        sumf += y.d * x.d.to_f32() * sumi as f32 - y.d * x.dmin.to_f32() * summ as f32;
    }
    sumf
}
