//! Q5_K: Q4_K plus a fifth bit per weight in `qh`. 5.5 bits per weight.
use super::common::{get_scale_min_k4, Half};
use super::q4_k::quantize_superblock_k4;
use super::q8_k::BlockQ8K;
use crate::types::QK_K;
use bytemuck::{Pod, Zeroable};

/// `block_q5_K`: like Q4_K; element e = 64c + 32h + l gets +16 when bit (2c + h) of qh[l] is set.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ5K {
    pub d: Half,
    pub dmin: Half,
    pub scales: [u8; 12],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);

#[inline(always)]
fn q5(b: &BlockQ5K, c: usize, h: usize, l: usize) -> u8 {
    let lo = (b.qs[32 * c + l] >> (4 * h)) & 0xF;
    let hi = (b.qh[l] >> (2 * c + h)) & 1;
    lo | (hi << 4)
}

pub fn dequantize_row_q5_k(x: &[BlockQ5K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let (d, min) = (b.d.to_f32(), b.dmin.to_f32());
        for c in 0..4 {
            for h in 0..2 {
                let (sc, m) = get_scale_min_k4(2 * c + h, &b.scales);
                let (d1, m1) = (d * sc as f32, min * m as f32);
                for l in 0..32 {
                    y[64 * c + 32 * h + l] = d1 * q5(b, c, h, l) as f32 - m1;
                }
            }
        }
    }
}

pub fn quantize_row_q5_k_ref(x: &[f32], y: &mut [BlockQ5K]) {
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let (d, dmin, scales, l) = quantize_superblock_k4(x, 31, -0.5, 15);
        b.d = d;
        b.dmin = dmin;
        b.scales = scales;
        b.qh = [0; QK_K / 8];
        for c in 0..4 {
            for j in 0..32 {
                let (l1, l2) = (l[64 * c + j], l[64 * c + j + 32]);
                b.qh[j] |= ((l1 >> 4) << (2 * c)) | ((l2 >> 4) << (2 * c + 1));
                b.qs[32 * c + j] = (l1 & 0xF) | ((l2 & 0xF) << 4);
            }
        }
    }
}

pub fn vec_dot_q5_k_q8_k_scalar(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let (mut sumi, mut summ) = (0i32, 0i32);
        for sb in 0..8 {
            let (sc, m) = get_scale_min_k4(sb, &x.scales);
            let q8 = &y.qs[32 * sb..32 * sb + 32];
            let s: i32 = (0..32).map(|l| q5(x, sb / 2, sb % 2, l) as i32 * q8[l] as i32).sum();
            sumi += sc as i32 * s;
            summ += m as i32 * (y.bsums[2 * sb] as i32 + y.bsums[2 * sb + 1] as i32);
        }
        sumf += y.d * x.d.to_f32() * sumi as f32 - y.d * x.dmin.to_f32() * summ as f32;
    }
    sumf
}
