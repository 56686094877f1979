//! wgpu compute backend: adapters, GGUF-byte weight upload and WGSL kernels.
//!
//! Usage shape (kernels and bind groups built once at load time, recorded into a `Step` each
//! forward step):
//!
//! ```ignore
//! let ctx = GpuContext::new(None)?;                        // best adapter, Vulkan preferred
//! let w = ctx.upload_weight(GgmlType::Q4_K, k, n, bytes)?; // raw block bytes, split by rows
//! let x = ctx.upload_f32(&x_host)?;
//! let y = ctx.zeros_f32(n)?;
//! let mv = ctx.mul_mat(&w, &x, &y, 1)?;                     // prepared once, recorded each step
//! let mut step = ctx.begin_step();
//! step.record(&mv);                                         // ... many more dispatches
//! ctx.submit(step);
//! let y_host = ctx.read_f32(&y)?;                           // waits for the queue
//! ```
//!
//! Shaders live in the top-level `shaders/` directory, one per kernel; quantized kernels are
//! composed from `quant/common.wgsl`, one `quant/<type>.wgsl` decoder and a kernel body (the
//! mat-vec also from one of `reduce_subgroup.wgsl` / `reduce_shared.wgsl`).

mod adapter;
mod context;
mod eltwise;
mod ops;
mod pipelines;
mod tensor;

pub use adapter::{list_adapters, AdapterInfo};
pub use context::{profiling, GpuContext, Step};
pub use eltwise::{AttentionParams, GluOp, QkvParams, RopeMode, RopeParams};
pub use ops::{Epilogue, Kernel, MatOut};
pub use pipelines::decodes;
pub use tensor::{GpuBuffer, GpuWeight};

/// Errors of the wgpu backend.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no wgpu adapter found (install a Vulkan driver, e.g. mesa-vulkan-drivers)")]
    NoAdapter,
    #[error("adapter index {index} out of range ({count} adapters)")]
    BadAdapterIndex { index: usize, count: usize },
    #[error("requesting a device from '{adapter}' failed: {msg}")]
    RequestDevice { adapter: String, msg: String },
    #[error("the GPU backend has no kernel for {0} weights")]
    UnsupportedType(&'static str),
    #[error("shape error in {op}: {msg}")]
    Shape { op: &'static str, msg: String },
    #[error("a {row_bytes}-byte row exceeds the adapter's {limit}-byte storage binding limit")]
    RowTooLarge { row_bytes: u64, limit: u64 },
    #[error("wgpu validation error in {what}: {msg}")]
    Validation { what: String, msg: String },
    #[error("reading a buffer back failed: {0}")]
    Readback(String),
}

/// Shorthand for shape errors.
pub(crate) fn shape_err(op: &'static str, msg: impl Into<String>) -> GpuError {
    GpuError::Shape {
        op,
        msg: msg.into(),
    }
}
