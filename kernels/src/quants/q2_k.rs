//! Q2_K: 256-weight super-blocks of sixteen 16-weight sub-blocks, each with a 4-bit scale and
//! 4-bit min; 2-bit unsigned quants. 2.625 bits per weight.
use super::common::{make_qkx2_quants, nearest_int, Half};
use super::q8_k::BlockQ8K;
use crate::types::QK_K;
use bytemuck::{Pod, Zeroable};

/// `block_q2_K`: element e = 128n + 32j + l has q = (qs[32n + l] >> 2j) & 3 in sub-block e/16;
/// y = d·(sc & 0xF)·q − dmin·(sc >> 4). Note `d`, `dmin` come last.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ2K {
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    pub d: Half,
    pub dmin: Half,
}
const _: () = assert!(std::mem::size_of::<BlockQ2K>() == 84);

#[inline(always)]
fn q2(qs: &[u8; QK_K / 4], e: usize) -> u8 {
    let (n, j, l) = (e / 128, (e % 128) / 32, e % 32);
    (qs[32 * n + l] >> (2 * j)) & 3
}

pub fn dequantize_row_q2_k(x: &[BlockQ2K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let (d, min) = (b.d.to_f32(), b.dmin.to_f32());
        for sb in 0..16 {
            let sc = b.scales[sb];
            let (dl, ml) = (d * (sc & 0xF) as f32, min * (sc >> 4) as f32);
            for e in 16 * sb..16 * sb + 16 {
                y[e] = dl * q2(&b.qs, e) as f32 - ml;
            }
        }
    }
}

pub fn quantize_row_q2_k_ref(x: &[f32], y: &mut [BlockQ2K]) {
    const Q4SCALE: f32 = 15.0;
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut l = [0u8; QK_K];
        let (mut scales, mut mins) = ([0f32; 16], [0f32; 16]);
        let (mut max_scale, mut max_min) = (0f32, 0f32);
        let mut weights = [0f32; 16];
        for j in 0..16 {
            let xs = &x[16 * j..16 * j + 16];
            for (w, v) in weights.iter_mut().zip(xs) {
                *w = v.abs();
            }
            let (s, m) = make_qkx2_quants(3, xs, &weights, &mut l[16 * j..16 * j + 16], -0.5, 0.1, 15, true);
            scales[j] = s;
            mins[j] = m;
            max_scale = max_scale.max(s);
            max_min = max_min.max(m);
        }
        b.scales = [0; 16];
        b.d = Half::ZERO;
        b.dmin = Half::ZERO;
        if max_scale > 0.0 {
            let iscale = Q4SCALE / max_scale;
            for j in 0..16 {
                b.scales[j] = nearest_int(iscale * scales[j]) as u8;
            }
            b.d = Half::from_f32(max_scale / Q4SCALE);
        }
        if max_min > 0.0 {
            let iscale = Q4SCALE / max_min;
            for j in 0..16 {
                b.scales[j] |= (nearest_int(iscale * mins[j]) as u8) << 4;
            }
            b.dmin = Half::from_f32(max_min / Q4SCALE);
        }
        for j in 0..16 {
            let d = b.d.to_f32() * (b.scales[j] & 0xF) as f32;
            if d == 0.0 {
                continue;
            }
            let dm = b.dmin.to_f32() * (b.scales[j] >> 4) as f32;
            for ii in 0..16 {
                l[16 * j + ii] = nearest_int((x[16 * j + ii] + dm) / d).clamp(0, 3) as u8;
            }
        }
        for n in 0..2 {
            for i in 0..32 {
                let e = 128 * n + i;
                b.qs[32 * n + i] = l[e] | (l[e + 32] << 2) | (l[e + 64] << 4) | (l[e + 96] << 6);
            }
        }
    }
}

pub fn vec_dot_q2_k_q8_k_scalar(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let (mut sumi, mut summ) = (0i32, 0i32);
        for sb in 0..16 {
            let s: i32 = (16 * sb..16 * sb + 16).map(|e| q2(&x.qs, e) as i32 * y.qs[e] as i32).sum();
            sumi += (x.scales[sb] & 0xF) as i32 * s;
            summ += (x.scales[sb] >> 4) as i32 * y.bsums[sb] as i32;
        }
        sumf += y.d * x.d.to_f32() * sumi as f32 - y.d * x.dmin.to_f32() * summ as f32;
    }
    sumf
}
