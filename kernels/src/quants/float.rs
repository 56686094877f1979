//! Unquantized element types: F32 (32 bits), F16 (IEEE half, 16 bits) and BF16 (the top half
//! of an f32, 16 bits). Each block is one element.

/// bf16 → f32 is exact: the bits move to the top half.
#[inline(always)]
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// `GGML_FP32_TO_BF16`: round to nearest even, NaNs stay quiet NaNs.
#[inline(always)]
pub fn f32_to_bf16(x: f32) -> u16 {
    let u = x.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    ((u + (0x7fff + ((u >> 16) & 1))) >> 16) as u16
}

pub fn dequantize_row_f32(x: &[u8], y: &mut [f32]) {
    for (y, b) in y.iter_mut().zip(x.chunks_exact(4)) {
        *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

pub fn dequantize_row_f16(x: &[u8], y: &mut [f32]) {
    for (y, b) in y.iter_mut().zip(x.chunks_exact(2)) {
        *y = half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
    }
}

pub fn dequantize_row_bf16(x: &[u8], y: &mut [f32]) {
    for (y, b) in y.iter_mut().zip(x.chunks_exact(2)) {
        *y = bf16_to_f32(u16::from_le_bytes([b[0], b[1]]));
    }
}

pub fn quantize_row_f32(x: &[f32], y: &mut [u8]) {
    for (v, b) in x.iter().zip(y.chunks_exact_mut(4)) {
        b.copy_from_slice(&v.to_le_bytes());
    }
}

pub fn quantize_row_f16(x: &[f32], y: &mut [u8]) {
    for (v, b) in x.iter().zip(y.chunks_exact_mut(2)) {
        b.copy_from_slice(&half::f16::from_f32(*v).to_bits().to_le_bytes());
    }
}

pub fn quantize_row_bf16(x: &[f32], y: &mut [u8]) {
    for (v, b) in x.iter().zip(y.chunks_exact_mut(2)) {
        b.copy_from_slice(&f32_to_bf16(*v).to_le_bytes());
    }
}

/// F32·F32 over raw little-endian bytes (4 partial sums so the compiler can vectorize).
pub fn vec_dot_f32_scalar(x: &[u8], y: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let xc = x.chunks_exact(32);
    let n_main = xc.len() * 8;
    for (xb, yb) in xc.zip(y.chunks_exact(8)) {
        for k in 0..8 {
            let b = &xb[4 * k..4 * k + 4];
            acc[k] += f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * yb[k];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (b, &v) in x[4 * n_main..].chunks_exact(4).zip(&y[n_main..]) {
        s += f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * v;
    }
    s
}

/// F16·F16 (`ggml_vec_dot_f16`): both sides as halves, accumulated in f64 like ggml's scalar path.
pub fn vec_dot_f16_scalar(x: &[u8], y: &[half::f16]) -> f32 {
    let mut s = 0f64;
    for (b, v) in x.chunks_exact(2).zip(y) {
        s += half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32() as f64 * v.to_f32() as f64;
    }
    s as f32
}

/// BF16·BF16 (`ggml_vec_dot_bf16`), accumulated in f64.
pub fn vec_dot_bf16_scalar(x: &[u8], y: &[u16]) -> f32 {
    let mut s = 0f64;
    for (b, &v) in x.chunks_exact(2).zip(y) {
        s += bf16_to_f32(u16::from_le_bytes([b[0], b[1]])) as f64 * bf16_to_f32(v) as f64;
    }
    s as f32
}
