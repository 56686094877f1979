//! One module per quant family (block struct, dequantize, quantize, scalar dot product) and the
//! byte-level dispatch used by the rest of the crate.
// The loops keep ggml's index arithmetic (x[16*j + ii], scales[j]) so ports stay comparable.
#![allow(clippy::needless_range_loop)]
pub mod common;
pub mod float;
pub mod q2_k;
pub mod q3_k;
pub mod q4_0;
pub mod q4_1;
pub mod q4_k;
pub mod q5_0;
pub mod q5_1;
pub mod q5_k;
pub mod q6_k;
pub mod q8_0;
pub mod q8_1;
pub mod q8_k;

#[cfg(test)]
mod tests;

use crate::error::KernelError;
use crate::types::GgmlType;
use bytemuck::Pod;

pub use common::Half;
pub use q2_k::BlockQ2K;
pub use q3_k::BlockQ3K;
pub use q4_0::BlockQ4_0;
pub use q4_1::BlockQ4_1;
pub use q4_k::BlockQ4K;
pub use q5_0::BlockQ5_0;
pub use q5_1::BlockQ5_1;
pub use q5_k::BlockQ5K;
pub use q6_k::BlockQ6K;
pub use q8_0::BlockQ8_0;
pub use q8_1::BlockQ8_1;
pub use q8_k::BlockQ8K;

/// Checks that `bytes` holds exactly the row of `n` elements of `ty`.
fn check_row(ty: GgmlType, n: usize, bytes: usize) -> Result<(), KernelError> {
    let expected = ty.row_bytes(n).ok_or(KernelError::BadRowLength {
        ty: ty.name(),
        n,
        block: ty.block_size(),
    })?;
    if expected != bytes {
        return Err(KernelError::BadLength { what: "row bytes", expected, got: bytes });
    }
    Ok(())
}

/// Views bytes as blocks; copies when the bytes are not aligned for `T` (only Q8_K needs 4).
fn blocks<T: Pod>(bytes: &[u8]) -> std::borrow::Cow<'_, [T]> {
    match bytemuck::try_cast_slice(bytes) {
        Ok(b) => std::borrow::Cow::Borrowed(b),
        Err(_) => std::borrow::Cow::Owned(
            bytes.chunks_exact(std::mem::size_of::<T>()).map(bytemuck::pod_read_unaligned).collect(),
        ),
    }
}

/// Dequantizes one row: `src` holds `dst.len()` elements of `ty` (ggml's `dequantize_row_*`).
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), KernelError> {
    check_row(ty, dst.len(), src.len())?;
    match ty {
        GgmlType::F32 => float::dequantize_row_f32(src, dst),
        GgmlType::F16 => float::dequantize_row_f16(src, dst),
        GgmlType::BF16 => float::dequantize_row_bf16(src, dst),
        GgmlType::Q4_0 => q4_0::dequantize_row_q4_0(&blocks(src), dst),
        GgmlType::Q4_1 => q4_1::dequantize_row_q4_1(&blocks(src), dst),
        GgmlType::Q5_0 => q5_0::dequantize_row_q5_0(&blocks(src), dst),
        GgmlType::Q5_1 => q5_1::dequantize_row_q5_1(&blocks(src), dst),
        GgmlType::Q8_0 => q8_0::dequantize_row_q8_0(&blocks(src), dst),
        GgmlType::Q8_1 => q8_1::dequantize_row_q8_1(&blocks(src), dst),
        GgmlType::Q2_K => q2_k::dequantize_row_q2_k(&blocks(src), dst),
        GgmlType::Q3_K => q3_k::dequantize_row_q3_k(&blocks(src), dst),
        GgmlType::Q4_K => q4_k::dequantize_row_q4_k(&blocks(src), dst),
        GgmlType::Q5_K => q5_k::dequantize_row_q5_k(&blocks(src), dst),
        GgmlType::Q6_K => q6_k::dequantize_row_q6_k(&blocks(src), dst),
        GgmlType::Q8_K => q8_k::dequantize_row_q8_k(&blocks(src), dst),
    }
    Ok(())
}

fn blocks_mut<T: Pod>(bytes: &mut [u8]) -> Result<&mut [T], KernelError> {
    let got = bytes.len();
    bytemuck::try_cast_slice_mut(bytes).map_err(|_| KernelError::BadLength {
        what: "destination alignment",
        expected: std::mem::align_of::<T>(),
        got,
    })
}

/// Quantizes one row of `src.len()` elements into `dst` (ggml's `quantize_row_*_ref`).
pub fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), KernelError> {
    check_row(ty, src.len(), dst.len())?;
    match ty {
        GgmlType::F32 => float::quantize_row_f32(src, dst),
        GgmlType::F16 => float::quantize_row_f16(src, dst),
        GgmlType::BF16 => float::quantize_row_bf16(src, dst),
        GgmlType::Q4_0 => q4_0::quantize_row_q4_0_ref(src, blocks_mut(dst)?),
        GgmlType::Q4_1 => q4_1::quantize_row_q4_1_ref(src, blocks_mut(dst)?),
        GgmlType::Q5_0 => q5_0::quantize_row_q5_0_ref(src, blocks_mut(dst)?),
        GgmlType::Q5_1 => q5_1::quantize_row_q5_1_ref(src, blocks_mut(dst)?),
        GgmlType::Q8_0 => q8_0::quantize_row_q8_0_ref(src, blocks_mut(dst)?),
        GgmlType::Q8_1 => q8_1::quantize_row_q8_1_ref(src, blocks_mut(dst)?),
        GgmlType::Q2_K => q2_k::quantize_row_q2_k_ref(src, blocks_mut(dst)?),
        GgmlType::Q3_K => q3_k::quantize_row_q3_k_ref(src, blocks_mut(dst)?),
        GgmlType::Q4_K => q4_k::quantize_row_q4_k_ref(src, blocks_mut(dst)?),
        GgmlType::Q5_K => q5_k::quantize_row_q5_k_ref(src, blocks_mut(dst)?),
        GgmlType::Q6_K => q6_k::quantize_row_q6_k_ref(src, blocks_mut(dst)?),
        GgmlType::Q8_K => q8_k::quantize_row_q8_k_ref(src, blocks_mut(dst)?),
    }
    Ok(())
}

/// Scalar reference dot product of one weight row `x` (type `ty`) with one activation row `y`
/// (type `ty.vec_dot_type()`), both as raw bytes of the same element count.
pub fn vec_dot_scalar(ty: GgmlType, x: &[u8], y: &[u8]) -> f32 {
    match ty {
        GgmlType::F32 => float::vec_dot_f32_scalar(x, &blocks::<f32>(y)),
        GgmlType::F16 => float::vec_dot_f16_scalar(x, &blocks::<half::f16>(y)),
        GgmlType::BF16 => float::vec_dot_bf16_scalar(x, &blocks::<u16>(y)),
        GgmlType::Q4_0 => q4_0::vec_dot_q4_0_q8_0_scalar(&blocks(x), &blocks(y)),
        GgmlType::Q4_1 => q4_1::vec_dot_q4_1_q8_1_scalar(&blocks(x), &blocks(y)),
        GgmlType::Q5_0 => q5_0::vec_dot_q5_0_q8_0_scalar(&blocks(x), &blocks(y)),
        GgmlType::Q5_1 => q5_1::vec_dot_q5_1_q8_1_scalar(&blocks(x), &blocks(y)),
        GgmlType::Q8_0 => q8_0::vec_dot_q8_0_q8_0_scalar(&blocks(x), &blocks(y)),
        GgmlType::Q2_K => q2_k::vec_dot_q2_k_q8_k_scalar(&blocks(x), &blocks(y)),
        GgmlType::Q3_K => q3_k::vec_dot_q3_k_q8_k_scalar(&blocks(x), &blocks(y)),
        GgmlType::Q4_K => q4_k::vec_dot_q4_k_q8_k_scalar(&blocks(x), &blocks(y)),
        GgmlType::Q5_K => q5_k::vec_dot_q5_k_q8_k_scalar(&blocks(x), &blocks(y)),
        GgmlType::Q6_K => q6_k::vec_dot_q6_k_q8_k_scalar(&blocks(x), &blocks(y)),
        // Activation-only formats: dot them as dequantized rows against the f32 view.
        GgmlType::Q8_1 | GgmlType::Q8_K => {
            let n = x.len() / ty.type_size() * ty.block_size();
            let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
            let _ = dequantize_row(ty, x, &mut a);
            let _ = dequantize_row(ty, y, &mut b);
            a.iter().zip(&b).map(|(p, q)| p * q).sum()
        }
    }
}
