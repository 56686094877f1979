//! Q5_0: 32 weights per block, f16 scale, symmetric 5-bit quants (4 low bits + 1 high bit).
//! 5.5 bits per weight.
use super::common::{signed_absmax, Half};
use super::q8_0::BlockQ8_0;
use crate::types::QK5_0;
use bytemuck::{Pod, Zeroable};

/// `block_q5_0`: `qh` is a little-endian u32 whose bit j is the 5th bit of element j.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ5_0 {
    pub d: Half,
    pub qh: [u8; 4],
    pub qs: [u8; QK5_0 / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);

pub fn dequantize_row_q5_0(x: &[BlockQ5_0], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK5_0)) {
        let d = b.d.to_f32();
        let qh = u32::from_le_bytes(b.qh);
        for j in 0..QK5_0 / 2 {
            let xh0 = ((qh >> j) << 4) & 0x10;
            let xh1 = (qh >> (j + 12)) & 0x10;
            y[j] = (((b.qs[j] & 0x0F) as u32 | xh0) as i32 - 16) as f32 * d;
            y[j + 16] = (((b.qs[j] >> 4) as u32 | xh1) as i32 - 16) as f32 * d;
        }
    }
}

pub fn quantize_row_q5_0_ref(x: &[f32], y: &mut [BlockQ5_0]) {
    for (x, b) in x.chunks_exact(QK5_0).zip(y.iter_mut()) {
        let (max, _) = signed_absmax(x);
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = Half::from_f32(d);
        let mut qh = 0u32;
        for j in 0..QK5_0 / 2 {
            let xi0 = ((x[j] * id + 16.5) as i8).min(31) as u8;
            let xi1 = ((x[j + 16] * id + 16.5) as i8).min(31) as u8;
            b.qs[j] = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
            qh |= (((xi0 & 0x10) >> 4) as u32) << j;
            qh |= (((xi1 & 0x10) >> 4) as u32) << (j + 16);
        }
        b.qh = qh.to_le_bytes();
    }
}

pub fn vec_dot_q5_0_q8_0_scalar(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let qh = u32::from_le_bytes(x.qh);
        let mut sumi = 0i32;
        for j in 0..QK5_0 / 2 {
            let xh0 = ((qh >> j) << 4) & 0x10;
            let xh1 = (qh >> (j + 12)) & 0x10;
            let x0 = ((x.qs[j] & 0x0F) as u32 | xh0) as i32 - 16;
            let x1 = ((x.qs[j] >> 4) as u32 | xh1) as i32 - 16;
            sumi += x0 * y.qs[j] as i32 + x1 * y.qs[j + 16] as i32;
        }
        sumf += sumi as f32 * (x.d.to_f32() * y.d.to_f32());
    }
    sumf
}
