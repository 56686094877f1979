//! Activations quantized once to the type a weight's dot kernels read (Q8_0, Q8_1, Q8_K), and
//! shared by every product that reads the same input.
use crate::matmul::SyncPtr;
use crate::pool::ThreadPool;
use crate::quants::{self, q8_k::BlockQ8K};
use crate::types::GgmlType;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Activations quantized once to a weight's vec_dot_type; reused by every product reading the
/// same input. The buffer only grows, so there is no allocation after warm-up.
pub struct QuantizedActs {
    pub(crate) ty: GgmlType,
    pub(crate) n_tokens: usize,
    pub(crate) cols: usize,
    pub(crate) row_bytes: usize,
    /// u64 storage keeps every row 8-byte aligned (Q8_K rows are 292·k bytes, a multiple of 4).
    buf: Vec<u64>,
}

impl Default for QuantizedActs {
    fn default() -> Self {
        Self::new()
    }
}

/// Minimum elements before activation quantization is spread over the pool.
const PAR_QUANT_MIN: usize = 1 << 16;

impl QuantizedActs {
    pub fn new() -> Self {
        QuantizedActs { ty: GgmlType::F32, n_tokens: 0, cols: 0, row_bytes: 0, buf: Vec::new() }
    }

    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    pub fn n_tokens(&self) -> usize {
        self.n_tokens
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Activation row `t` as bytes.
    pub fn row(&self, t: usize) -> &[u8] {
        &bytemuck::cast_slice::<u64, u8>(&self.buf)[t * self.row_bytes..(t + 1) * self.row_bytes]
    }

    /// Rows 0..n_tokens as one slice (row `t` at `t·row_bytes`).
    pub(crate) fn all_rows(&self) -> &[u8] {
        &bytemuck::cast_slice::<u64, u8>(&self.buf)[..self.n_tokens * self.row_bytes]
    }

    /// x: [n_tokens][cols] f32. Quantizes for `vec_dot_ty` (threaded over the pool when large).
    /// `cols` must be a multiple of the type's block size and x.len() >= n_tokens·cols.
    pub fn quantize(&mut self, pool: &ThreadPool, vec_dot_ty: GgmlType, x: &[f32], n_tokens: usize, cols: usize) {
        let Some(row_bytes) = vec_dot_ty.row_bytes(cols) else {
            debug_assert!(false, "{vec_dot_ty}: {cols} columns not a multiple of the block size");
            return;
        };
        if x.len() < n_tokens * cols {
            debug_assert!(false, "activations: {} < {n_tokens}x{cols}", x.len());
            self.n_tokens = 0;
            return;
        }
        let words = (row_bytes * n_tokens).div_ceil(8);
        if self.buf.len() < words {
            self.buf.resize(words, 0);
        }
        self.ty = vec_dot_ty;
        self.n_tokens = n_tokens;
        self.cols = cols;
        self.row_bytes = row_bytes;
        let bytes = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut self.buf)[..row_bytes * n_tokens];
        if n_tokens * cols < PAR_QUANT_MIN || pool.n_threads() == 1 || n_tokens == 1 {
            for t in 0..n_tokens {
                quantize_act_row(vec_dot_ty, &x[t * cols..(t + 1) * cols], &mut bytes[t * row_bytes..(t + 1) * row_bytes]);
            }
            return;
        }
        let out = SyncPtr::new(bytes.as_mut_ptr());
        let next = AtomicUsize::new(0);
        pool.run(|_, _| loop {
            let t = next.fetch_add(1, Ordering::Relaxed);
            if t >= n_tokens {
                break;
            }
            // SAFETY: each token row is claimed by exactly one thread.
            let qr = unsafe { std::slice::from_raw_parts_mut(out.get().add(t * row_bytes), row_bytes) };
            quantize_act_row(vec_dot_ty, &x[t * cols..(t + 1) * cols], qr);
        });
    }
}

/// Quantizes one activation row (bytes are 8-aligned here), with SIMD where available.
fn quantize_act_row(ty: GgmlType, x: &[f32], q: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::quants::{BlockQ8_0, BlockQ8_1};
        use crate::simd::{self, act_avx2, act_avx512};
        type Q8K = unsafe fn(&[f32], &mut [BlockQ8K]);
        type Q80 = unsafe fn(&[f32], &mut [BlockQ8_0]);
        type Q81 = unsafe fn(&[f32], &mut [BlockQ8_1]);
        // Q8_K's scalar reference is already what AVX-512 computes; AVX2 leaves it to it.
        let kernels: Option<(Option<Q8K>, Q80, Q81)> = match simd::isa() {
            simd::Isa::Avx512 => Some((Some(act_avx512::quantize_row_q8_k), act_avx512::quantize_row_q8_0, act_avx512::quantize_row_q8_1)),
            simd::Isa::Avx2 => Some((None, act_avx2::quantize_row_q8_0, act_avx2::quantize_row_q8_1)),
            _ => None,
        };
        if let Some((q8k, q80, q81)) = kernels {
            // SAFETY: each ISA's quantizers are chosen only where its features were detected.
            match ty {
                GgmlType::Q8_K => {
                    if let (Some(f), Ok(b)) = (q8k, bytemuck::try_cast_slice_mut::<u8, BlockQ8K>(q)) {
                        return unsafe { f(x, b) };
                    }
                }
                GgmlType::Q8_0 => {
                    if let Ok(b) = bytemuck::try_cast_slice_mut::<u8, BlockQ8_0>(q) {
                        return unsafe { q80(x, b) };
                    }
                }
                GgmlType::Q8_1 => {
                    if let Ok(b) = bytemuck::try_cast_slice_mut::<u8, BlockQ8_1>(q) {
                        return unsafe { q81(x, b) };
                    }
                }
                _ => {}
            }
        }
    }
    if ty == GgmlType::Q8_K {
        if let Ok(blocks) = bytemuck::try_cast_slice_mut::<u8, BlockQ8K>(q) {
            quants::q8_k::quantize_row_q8_k_ref(x, blocks);
            return;
        }
    }
    let _ = quants::quantize_row(ty, x, q);
}
