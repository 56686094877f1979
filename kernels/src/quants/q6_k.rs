//! Q6_K: 256-weight super-blocks of sixteen 16-weight sub-blocks with signed 8-bit scales;
//! 6-bit quants split in 4 low bits (ql) and 2 high bits (qh). 6.5625 bits per weight.
use super::common::{make_qx_quants, nearest_int, Half, GROUP_MAX_EPS};
use super::q8_k::BlockQ8K;
use crate::types::QK_K;
use bytemuck::{Pod, Zeroable};

/// `block_q6_K`: element e = 128n + 32g + l: low = ql[64n + 32(g&1) + l] nibble (g<2 low, else
/// high), high = (qh[32n + l] >> 2g) & 3, q = (low | high<<4) − 32, scale = scales[8n + 2g + l/16].
/// Note `d` comes last.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: Half,
}
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);

/// The signed 6-bit quant of element e (in −32..31).
#[inline(always)]
pub(crate) fn q6(b: &BlockQ6K, e: usize) -> i32 {
    let (n, g, l) = (e / 128, (e % 128) / 32, e % 32);
    let byte = b.ql[64 * n + 32 * (g & 1) + l];
    let low = if g < 2 { byte & 0xF } else { byte >> 4 };
    let high = (b.qh[32 * n + l] >> (2 * g)) & 3;
    (low | (high << 4)) as i32 - 32
}

pub fn dequantize_row_q6_k(x: &[BlockQ6K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (e, y) in y.iter_mut().enumerate() {
            *y = d * b.scales[e / 16] as f32 * q6(b, e) as f32;
        }
    }
}

pub fn quantize_row_q6_k_ref(x: &[f32], y: &mut [BlockQ6K]) {
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; QK_K / 16];
        let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
        for ib in 0..QK_K / 16 {
            let s = make_qx_quants(32, &x[16 * ib..16 * ib + 16], &mut l[16 * ib..16 * ib + 16], 1);
            scales[ib] = s;
            if s.abs() > max_abs_scale {
                max_abs_scale = s.abs();
                max_scale = s;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            *b = BlockQ6K::zeroed();
            continue;
        }
        let iscale = -128.0 / max_scale;
        b.d = Half::from_f32(1.0 / iscale);
        for ib in 0..QK_K / 16 {
            b.scales[ib] = nearest_int(iscale * scales[ib]).min(127) as i8;
        }
        for j in 0..QK_K / 16 {
            let d = b.d.to_f32() * b.scales[j] as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                l[16 * j + ii] = (nearest_int(x[16 * j + ii] / d).clamp(-32, 31) + 32) as i8;
            }
        }
        for n in 0..2 {
            let (lb, ql, qh) = (&l[128 * n..], &mut b.ql[64 * n..], &mut b.qh[32 * n..]);
            for i in 0..32 {
                let q = [lb[i] as u8, lb[i + 32] as u8, lb[i + 64] as u8, lb[i + 96] as u8];
                ql[i] = (q[0] & 0xF) | ((q[2] & 0xF) << 4);
                ql[i + 32] = (q[1] & 0xF) | ((q[3] & 0xF) << 4);
                qh[i] = (q[0] >> 4) | ((q[1] >> 4) << 2) | ((q[2] >> 4) << 4) | ((q[3] >> 4) << 6);
            }
        }
    }
}

pub fn vec_dot_q6_k_q8_k_scalar(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let mut sumi = 0i32;
        for sb in 0..QK_K / 16 {
            let s: i32 = (16 * sb..16 * sb + 16).map(|e| q6(x, e) * y.qs[e] as i32).sum();
            sumi += x.scales[sb] as i32 * s;
        }
        sumf += x.d.to_f32() * y.d * sumi as f32;
    }
    sumf
}
