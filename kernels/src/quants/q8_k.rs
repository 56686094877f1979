//! Q8_K: the activation format for every K-quant. 256 values, f32 scale, 16 group sums.
use super::common::{nearest_int, signed_absmax};
use crate::types::QK_K;
use bytemuck::{Pod, Zeroable};

/// `block_q8_K`: y = d·qs[i]; d is negative when the largest-magnitude element is positive.
/// `bsums[g]` = Σ qs[16g..16g+16], used to fold in the K-quant minimums without a pass over qs.
/// 4 + 256 + 32 = 292 bytes, alignment 4.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}
const _: () = assert!(std::mem::size_of::<BlockQ8K>() == 292);

pub fn dequantize_row_q8_k(x: &[BlockQ8K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        for (y, &q) in y.iter_mut().zip(&b.qs) {
            *y = b.d * q as f32;
        }
    }
}

/// `quantize_row_q8_K_ref`; an all-zero block gets d = 0 and zeroed qs and bsums.
pub fn quantize_row_q8_k_ref(x: &[f32], y: &mut [BlockQ8K]) {
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let (max, amax) = signed_absmax(x);
        if amax == 0.0 {
            *b = BlockQ8K::zeroed();
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in b.qs.iter_mut().zip(x) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for (s, g) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
            *s = g.iter().map(|&q| q as i16).sum();
        }
        b.d = 1.0 / iscale;
    }
}

