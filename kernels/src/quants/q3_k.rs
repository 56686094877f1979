//! Q3_K: 256-weight super-blocks of sixteen 16-weight sub-blocks with signed 6-bit scales;
//! 3-bit quants as 2 low bits (qs) plus a high bit (hmask). 3.4375 bits per weight.
use super::common::{make_q3_quants, nearest_int, Half};
use super::q8_k::BlockQ8K;
use crate::types::QK_K;
use bytemuck::{Pod, Zeroable};

/// `block_q3_K`: element e = 128n + 32j + l: low = (qs[32n + l] >> 2j) & 3, high bit =
/// bit (4n + j) of hmask[l]; value = low − (high ? 0 : 4); y = d·scale[e/16]·value.
/// Note `d` comes last.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ3K {
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; 12],
    pub d: Half,
}
const _: () = assert!(std::mem::size_of::<BlockQ3K>() == 110);

/// The sixteen signed 6-bit scales (−32..31) from the packed 12 bytes.
#[inline(always)]
pub(crate) fn unpack_q3_scales(s: &[u8; 12]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (is, o) in out.iter_mut().enumerate() {
        let low4 = if is < 8 { s[is] & 0xF } else { s[is - 8] >> 4 };
        let high2 = (s[8 + is % 4] >> (2 * (is / 4))) & 3;
        *o = (low4 | (high2 << 4)) as i8 - 32;
    }
    out
}

#[inline(always)]
fn q3(b: &BlockQ3K, e: usize) -> i32 {
    let (n, j, l) = (e / 128, (e % 128) / 32, e % 32);
    let low = ((b.qs[32 * n + l] >> (2 * j)) & 3) as i32;
    let hbit = (b.hmask[l] >> (4 * n + j)) & 1;
    low - if hbit != 0 { 0 } else { 4 }
}

pub fn dequantize_row_q3_k(x: &[BlockQ3K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d_all = b.d.to_f32();
        let scales = unpack_q3_scales(&b.scales);
        for (e, y) in y.iter_mut().enumerate() {
            let dl = d_all * scales[e / 16] as f32;
            *y = dl * q3(b, e) as f32;
        }
    }
}

pub fn quantize_row_q3_k_ref(x: &[f32], y: &mut [BlockQ3K]) {
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; 16];
        let (mut max_scale, mut amax) = (0f32, 0f32);
        for j in 0..16 {
            scales[j] = make_q3_quants(4, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
            if scales[j].abs() > amax {
                amax = scales[j].abs();
                max_scale = scales[j];
            }
        }
        b.scales = [0; 12];
        b.d = Half::ZERO;
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            for j in 0..16 {
                let lq = (nearest_int(iscale * scales[j]).clamp(-32, 31) + 32) as u8;
                if j < 8 {
                    b.scales[j] = lq & 0xF;
                } else {
                    b.scales[j - 8] |= (lq & 0xF) << 4;
                }
                b.scales[j % 4 + 8] |= (lq >> 4) << (2 * (j / 4));
            }
            b.d = Half::from_f32(1.0 / iscale);
        }
        let sc = unpack_q3_scales(&b.scales);
        for j in 0..16 {
            let d = b.d.to_f32() * sc[j] as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                l[16 * j + ii] = (nearest_int(x[16 * j + ii] / d).clamp(-4, 3) + 4) as i8;
            }
        }
        b.hmask = [0; QK_K / 8];
        for (j, lj) in l.iter_mut().enumerate() {
            if *lj > 3 {
                b.hmask[j % 32] |= 1 << (j / 32);
                *lj -= 4;
            }
        }
        for n in 0..2 {
            for i in 0..32 {
                let e = 128 * n + i;
                let q = |k: usize| l[e + 32 * k] as u8;
                b.qs[32 * n + i] = q(0) | (q(1) << 2) | (q(2) << 4) | (q(3) << 6);
            }
        }
    }
}

pub fn vec_dot_q3_k_q8_k_scalar(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let scales = unpack_q3_scales(&x.scales);
        let mut sumi = 0i32;
        for sb in 0..16 {
            let s: i32 = (16 * sb..16 * sb + 16).map(|e| q3(x, e) * y.qs[e] as i32).sum();
            sumi += scales[sb] as i32 * s;
        }
        sumf += x.d.to_f32() * y.d * sumi as f32;
    }
    sumf
}
