//! Q5_1: 32 weights per block, f16 scale and minimum, unsigned 5-bit quants. 6 bits per weight.
use super::common::Half;
use super::q8_1::BlockQ8_1;
use crate::types::QK5_1;
use bytemuck::{Pod, Zeroable};

/// `block_q5_1`: y = d·q + m, q = low nibble | (bit j of qh) << 4.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ5_1 {
    pub d: Half,
    pub m: Half,
    pub qh: [u8; 4],
    pub qs: [u8; QK5_1 / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);

pub fn dequantize_row_q5_1(x: &[BlockQ5_1], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK5_1)) {
        let (d, m) = (b.d.to_f32(), b.m.to_f32());
        let qh = u32::from_le_bytes(b.qh);
        for j in 0..QK5_1 / 2 {
            let xh0 = ((qh >> j) << 4) & 0x10;
            let xh1 = (qh >> (j + 12)) & 0x10;
            y[j] = ((b.qs[j] & 0x0F) as u32 | xh0) as f32 * d + m;
            y[j + 16] = ((b.qs[j] >> 4) as u32 | xh1) as f32 * d + m;
        }
    }
}

pub fn quantize_row_q5_1_ref(x: &[f32], y: &mut [BlockQ5_1]) {
    for (x, b) in x.chunks_exact(QK5_1).zip(y.iter_mut()) {
        let (mut min, mut max) = (f32::MAX, -f32::MAX);
        for &v in x {
            min = min.min(v);
            max = max.max(v);
        }
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = Half::from_f32(d);
        b.m = Half::from_f32(min);
        let mut qh = 0u32;
        for j in 0..QK5_1 / 2 {
            let xi0 = ((x[j] - min) * id + 0.5) as u8;
            let xi1 = ((x[j + 16] - min) * id + 0.5) as u8;
            b.qs[j] = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
            qh |= (((xi0 & 0x10) >> 4) as u32) << j;
            qh |= (((xi1 & 0x10) >> 4) as u32) << (j + 16);
        }
        b.qh = qh.to_le_bytes();
    }
}

pub fn vec_dot_q5_1_q8_1_scalar(x: &[BlockQ5_1], y: &[BlockQ8_1]) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let qh = u32::from_le_bytes(x.qh);
        let mut sumi = 0i32;
        for j in 0..QK5_1 / 2 {
            let xh0 = ((qh >> j) << 4) & 0x10;
            let xh1 = (qh >> (j + 12)) & 0x10;
            let x0 = ((x.qs[j] & 0x0F) as u32 | xh0) as i32;
            let x1 = ((x.qs[j] >> 4) as u32 | xh1) as i32;
            sumi += x0 * y.qs[j] as i32 + x1 * y.qs[j + 16] as i32;
        }
        sumf += (x.d.to_f32() * y.d.to_f32()) * sumi as f32 + x.m.to_f32() * y.s.to_f32();
    }
    sumf
}
