//! The whole forward pass on a wgpu device (feature `gpu`), for `llama` and `gemma3`.
//!
//! Everything is prepared once and only recorded per step:
//! - [`GpuModel::load`] uploads every weight once as its raw GGUF bytes (norm vectors as f32;
//!   Q/K/V and gate/up matrices of one type concatenated, so each pair or triple is one product);
//! - [`GpuSession::new`] allocates the KV cache and the activation buffers in GPU memory and
//!   builds every kernel (pipeline, bind group, uniform parameters) for each chunk size in
//!   [`graph::CHUNKS`];
//! - a forward step writes the token ids and positions, records the embedding, every layer and
//!   the output head into command buffers of a few layers each (submitted as they fill, so the
//!   GPU starts early) and reads the logits back. Nothing is allocated per token; see
//!   `graph.rs` for the kernels of a layer.
//!
//! Weight types without a WGSL decoder are dequantized to f32 at load (with a warning) rather
//! than failing; see [`kiln_kernels::gpu::decodes`].
//!
//! ```no_run
//! # use kiln_engine::{LoadOptions, Model, gpu::{GpuModel, GpuSession}};
//! let model = Model::load("SmolLM2-135M-Instruct.Q4_1.gguf", &LoadOptions::default())?;
//! let gpu = std::sync::Arc::new(GpuModel::load(&model, None)?);
//! let mut session = GpuSession::new(&gpu, 2048)?;
//! let mut logits = Vec::new();
//! session.eval(&model.tokenize("Hello", false)?, kiln_engine::model::exec::Outputs::Last, &mut logits)?;
//! # Ok::<(), kiln_engine::EngineError>(())
//! ```

pub mod bench;
mod graph;
mod session;
mod weights;

use std::sync::Arc;

use kiln_kernels::gpu::{GpuContext, GpuError};

use crate::error::{EngineError, Result};
use crate::model::Model;

pub use kiln_kernels::gpu::{list_adapters, AdapterInfo};
pub use session::GpuSession;

/// A model's weights resident on one wgpu adapter.
pub struct GpuModel {
    model: Arc<Model>,
    ctx: GpuContext,
    w: weights::Weights,
}

impl GpuModel {
    /// Opens adapter `adapter` (an index into [`list_adapters`]; None: the best one) and uploads
    /// `model`'s weights to it.
    pub fn load(model: &Arc<Model>, adapter: Option<usize>) -> Result<GpuModel> {
        let ctx = GpuContext::new(adapter).map_err(gpu_err)?;
        let w = weights::Weights::upload(&ctx, model)?;
        tracing::info!(
            "gpu: {} on {}: {:.1} MiB of weights uploaded",
            model.info().architecture,
            ctx.info().name,
            w.device_bytes() as f64 / (1024.0 * 1024.0)
        );
        Ok(GpuModel { model: model.clone(), ctx, w })
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// The adapter the weights live on.
    pub fn adapter(&self) -> &AdapterInfo {
        self.ctx.info()
    }

    /// Bytes of weights on the device.
    pub fn weight_bytes(&self) -> u64 {
        self.w.device_bytes()
    }
}

/// A wgpu failure (no adapter, out of device memory, a lost device, a failed readback).
pub(crate) fn gpu_err(e: GpuError) -> EngineError {
    EngineError::Gpu(e.to_string())
}
