//! kiln-kernels: GGML block types, quantized kernels and compute backends.
//!
//! `quants` holds one module per quant family with a scalar reference for everything;
//! `simd` holds the AVX2 / AVX-512 / NEON dot products, tested against the scalar ones;
//! `pool` and `matmul` run them across output rows on a persistent thread pool.
mod acts;
pub mod error;
#[cfg(feature = "gpu")] pub mod gpu;
pub mod matmul;
pub mod pool;
pub mod quants;
mod read_ahead;
pub mod repack;
pub mod simd;
mod spans;
pub mod stream;
pub mod types;

pub use error::KernelError;
pub use matmul::{matmul, matmul_q, matmul_q_many, matmul_q_many_with, MatmulJob, QMatrix, QuantizedActs, MAX_JOBS};
pub use pool::ThreadPool;
pub use quants::{dequantize_row, quantize_row};
pub use repack::Layout;
pub use simd::cpu_features;
pub use types::{GgmlType, QK_K};
