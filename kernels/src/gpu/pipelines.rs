//! WGSL sources and a cache of compiled compute pipelines, keyed by kernel and weight type.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::GpuError;
use crate::GgmlType;

const QUANT_COMMON: &str = include_str!("../../../shaders/quant/common.wgsl");
const REDUCE_SUBGROUP: &str = include_str!("../../../shaders/reduce_subgroup.wgsl");
const REDUCE_SHARED: &str = include_str!("../../../shaders/reduce_shared.wgsl");

/// The kernel bodies; the quantized ones are completed by a `decode_chunk` from `quant_decoder`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Body {
    MulMatVec,
    MulMat,
    GetRows,
    RmsNorm,
    Rope,
    Attention,
    QkvPost,
    Glu,
    Add,
    Scale,
}

impl Body {
    fn source(self) -> &'static str {
        match self {
            Body::MulMatVec => include_str!("../../../shaders/mul_mat_vec.wgsl"),
            Body::MulMat => include_str!("../../../shaders/mul_mat.wgsl"),
            Body::GetRows => include_str!("../../../shaders/get_rows.wgsl"),
            Body::RmsNorm => include_str!("../../../shaders/rms_norm.wgsl"),
            Body::Rope => include_str!("../../../shaders/rope.wgsl"),
            Body::Attention => include_str!("../../../shaders/attention.wgsl"),
            Body::QkvPost => include_str!("../../../shaders/qkv_post.wgsl"),
            Body::Glu => include_str!("../../../shaders/glu.wgsl"),
            Body::Add => include_str!("../../../shaders/add.wgsl"),
            Body::Scale => include_str!("../../../shaders/scale.wgsl"),
        }
    }
}

/// Whether the GPU kernels read weights of type `ty` directly (it has a `shaders/quant` decoder);
/// other types must be converted (the engine dequantizes them to f32 at load).
pub fn decodes(ty: GgmlType) -> bool {
    quant_decoder(ty).is_some()
}

/// The WGSL `decode_chunk` for a weight type, or None where the GPU backend has no decoder.
pub(crate) fn quant_decoder(ty: GgmlType) -> Option<&'static str> {
    Some(match ty {
        GgmlType::F32 => include_str!("../../../shaders/quant/f32.wgsl"),
        GgmlType::F16 => include_str!("../../../shaders/quant/f16.wgsl"),
        GgmlType::Q4_0 => include_str!("../../../shaders/quant/q4_0.wgsl"),
        GgmlType::Q4_1 => include_str!("../../../shaders/quant/q4_1.wgsl"),
        GgmlType::Q5_0 => include_str!("../../../shaders/quant/q5_0.wgsl"),
        GgmlType::Q8_0 => include_str!("../../../shaders/quant/q8_0.wgsl"),
        GgmlType::Q4_K => include_str!("../../../shaders/quant/q4_k.wgsl"),
        GgmlType::Q6_K => include_str!("../../../shaders/quant/q6_k.wgsl"),
        _ => return None,
    })
}

type Key = (Body, Option<GgmlType>);

/// Whether Naga adds its own bounds checks, loop bounds and division checks to the shaders
/// (`KILN_GPU_CHECKED=1`). By default it does not: every kernel's buffers are checked on the host
/// against the shapes in its parameters (`need` in ops.rs and eltwise.rs) before it is built, loop
/// counts come from those parameters, and out-of-range reads are still contained by the driver's
/// robust buffer access. The checks cost decode a fifth of its speed on an H100 (350 -> 460
/// tokens/s on a 1.1B Q4_K_M model); the conformance suite runs both ways.
fn checked_shaders() -> bool {
    std::env::var("KILN_GPU_CHECKED").is_ok_and(|v| v == "1")
}

/// Compiles each (kernel, type) pipeline on first use and hands out shared handles after.
#[derive(Default)]
pub(crate) struct PipelineCache {
    pub(crate) map: Mutex<HashMap<Key, Arc<wgpu::ComputePipeline>>>,
    /// Row sums through subgroup operations (the device was opened with `Features::SUBGROUP`
    /// and its subgroups have at most 32 lanes); else through workgroup memory.
    pub(crate) subgroups: bool,
}

impl PipelineCache {
    pub(crate) fn get(
        &self,
        device: &wgpu::Device,
        body: Body,
        ty: Option<GgmlType>,
    ) -> Result<Arc<wgpu::ComputePipeline>, GpuError> {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(p) = map.get(&(body, ty)) {
            return Ok(p.clone());
        }
        let mut source = match ty {
            None => body.source().to_string(),
            Some(t) => {
                let decoder = quant_decoder(t).ok_or(GpuError::UnsupportedType(t.name()))?;
                format!("{QUANT_COMMON}\n{decoder}\n{}", body.source())
            }
        };
        if body == Body::MulMatVec {
            // Naga takes subgroup builtins without `enable subgroups;` once the device has the feature.
            source = match self.subgroups {
                true => format!("{REDUCE_SUBGROUP}\n{source}"),
                false => format!("{REDUCE_SHARED}\n{source}"),
            };
        }
        let label = format!("{body:?}/{}", ty.map_or("f32", |t| t.name()));
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor { label: Some(&label), source: wgpu::ShaderSource::Wgsl(source.into()) };
        let module = match checked_shaders() {
            true => device.create_shader_module(desc),
            // SAFETY: see `checked_shaders`: every binding a kernel indexes was sized on the host
            // for the shapes its parameters describe, and the backend's own robust buffer access
            // (Vulkan robustBufferAccess, Metal and DX12 bounds) still applies.
            false => unsafe { device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) },
        };
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Validation {
                what: label,
                msg: err.to_string(),
            });
        }
        let pipeline = Arc::new(pipeline);
        map.insert((body, ty), pipeline.clone());
        Ok(pipeline)
    }
}
