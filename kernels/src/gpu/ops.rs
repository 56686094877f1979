//! Kernels prepared once (pipeline, bind group, uniform parameters) and recorded every step,
//! and the kernels that read GGUF weights: `mul_mat` (mat-vec / mat-mat) and `get_rows`.

use std::sync::Arc;

use super::context::GpuContext;
use super::eltwise::GluOp;
use super::pipelines::Body;
use super::tensor::{GpuBuffer, GpuWeight};
use super::{shape_err, GpuError};

/// What a product does with its result (see `GpuContext::mul_mat_with`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    /// y = W·x
    Store,
    /// y += W·x (a residual add)
    Add,
    /// W holds gate rows then up rows; y = act(gate·x) ⊙ (up·x), half as many rows (mat-vec only)
    Glu(GluOp),
}

/// Where a product's rows land in y: token t's row r at y[t · stride + offset + r].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatOut {
    pub stride: usize,
    pub offset: usize,
    pub epilogue: Epilogue,
}

impl MatOut {
    /// Rows of `n` elements, one after another.
    pub fn dense(n: usize) -> MatOut {
        MatOut { stride: n, offset: 0, epilogue: Epilogue::Store }
    }
}

/// One dispatch: a pipeline, its bind group, its own uniform parameters and the grid size.
pub(crate) struct Part {
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    /// Kept with the bind group that reads it.
    _params: wgpu::Buffer,
    groups: [u32; 3],
}

/// A prepared kernel: one dispatch, or one per row split of a large weight.
pub struct Kernel {
    pub(crate) parts: Vec<Part>,
}

impl Kernel {
    pub(crate) fn encode(&self, pass: &mut wgpu::ComputePass<'static>) {
        for part in &self.parts {
            pass.set_pipeline(&part.pipeline);
            pass.set_bind_group(0, &part.bind_group, &[]);
            pass.dispatch_workgroups(part.groups[0], part.groups[1], part.groups[2]);
        }
    }

    /// Number of dispatches this kernel records.
    pub fn n_dispatches(&self) -> usize {
        self.parts.len()
    }
}

pub(crate) fn need(
    op: &'static str,
    what: &str,
    buf: &GpuBuffer,
    len: usize,
) -> Result<(), GpuError> {
    if buf.len < len {
        return Err(shape_err(
            op,
            format!("{what} holds {} elements, needs {len}", buf.len),
        ));
    }
    Ok(())
}

pub(crate) fn u32_of(op: &'static str, v: usize) -> Result<u32, GpuError> {
    u32::try_from(v).map_err(|_| shape_err(op, format!("{v} does not fit in u32")))
}

impl GpuContext {
    /// Folds `n` workgroups into (x, y) under the per-dimension limit.
    pub(crate) fn fold(&self, n: usize) -> Result<(u32, u32), GpuError> {
        let max = self.limits_max_dim() as usize;
        let x = n.clamp(1, max);
        let y = n.div_ceil(x).max(1);
        if y > max {
            return Err(shape_err(
                "dispatch",
                format!("{n} workgroups exceed the grid limit"),
            ));
        }
        Ok((x as u32, y as u32))
    }

    pub(crate) fn part(
        &self,
        body: Body,
        ty: Option<crate::GgmlType>,
        buffers: &[&wgpu::Buffer],
        params: &[u32],
        groups: [u32; 3],
    ) -> Result<Part, GpuError> {
        debug_assert!(params.len().is_multiple_of(4), "uniform structs are 16-byte multiples");
        let pipeline = self.pipelines.get(&self.device, body, ty)?;
        let params_buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: (params.len() * 4) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue
            .write_buffer(&params_buf, 0, bytemuck::cast_slice(params));
        let mut entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        entries.push(wgpu::BindGroupEntry {
            binding: buffers.len() as u32,
            resource: params_buf.as_entire_binding(),
        });
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        Ok(Part {
            pipeline,
            bind_group,
            _params: params_buf,
            groups,
        })
    }

    /// y[t, :] = W · x[t, :] for t < n_tokens, W = `w` ([k, n] GGUF, any supported type),
    /// x: f32 [n_tokens, k], y: f32 [n_tokens, n]. One token uses the mat-vec kernel, more the
    /// tiled mat-mat kernel. A split weight records one dispatch per split.
    pub fn mul_mat(&self, w: &GpuWeight, x: &GpuBuffer, y: &GpuBuffer, n_tokens: usize) -> Result<Kernel, GpuError> {
        self.mul_mat_with(w, x, y, n_tokens, MatOut::dense(w.n), None)
    }

    /// y[t, :] += W · x[t, :]: `mul_mat` with the residual add fused into its output.
    pub fn mul_mat_add(&self, w: &GpuWeight, x: &GpuBuffer, y: &GpuBuffer, n_tokens: usize) -> Result<Kernel, GpuError> {
        self.mul_mat_with(w, x, y, n_tokens, MatOut { epilogue: Epilogue::Add, ..MatOut::dense(w.n) }, None)
    }

    /// `mul_mat` with its output placed by `out` (row stride, column offset, epilogue) and, for
    /// one token, the RMSNorm of x with weight `norm.0` and epsilon `norm.1` fused before it.
    /// The gated-FFN epilogue and the fused norm are mat-vec only (n_tokens = 1).
    pub fn mul_mat_with(&self, w: &GpuWeight, x: &GpuBuffer, y: &GpuBuffer, n_tokens: usize, out: MatOut, norm: Option<(&GpuBuffer, f32)>) -> Result<Kernel, GpuError> {
        const OP: &str = "mul_mat";
        let n_out = match out.epilogue {
            Epilogue::Glu(_) => {
                if !w.n.is_multiple_of(2) || w.splits.len() != 1 {
                    return Err(shape_err(OP, format!("a gated product needs [gate | up] rows in one split, got {} rows in {} splits", w.n, w.splits.len())));
                }
                w.n / 2
            }
            _ => w.n,
        };
        if n_tokens != 1 && (norm.is_some() || matches!(out.epilogue, Epilogue::Glu(_))) {
            return Err(shape_err(OP, "a fused norm or gated product takes one token"));
        }
        need(OP, "x", x, n_tokens * w.k)?;
        if n_tokens > 1 && out.offset + n_out > out.stride {
            return Err(shape_err(OP, format!("{n_out} columns from {} overflow rows of {}", out.offset, out.stride)));
        }
        if n_tokens > 0 {
            need(OP, "y", y, (n_tokens - 1) * out.stride + out.offset + n_out)?;
        }
        if let Some((nw, _)) = norm {
            need(OP, "norm", nw, w.k)?;
        }
        let mode = match out.epilogue {
            Epilogue::Store => 0,
            Epilogue::Add => 1,
            Epilogue::Glu(GluOp::Silu) => 2,
            Epilogue::Glu(GluOp::GeluTanh) => 3,
        };
        let nw = norm.map_or(&x.buffer, |(b, _)| &b.buffer);
        let eps = norm.map_or(0.0, |(_, e)| e);
        let mut parts = Vec::new();
        for s in &w.splits {
            let offset = u32_of(OP, out.offset + s.row_start)?;
            let (k, rows, rb) = (u32_of(OP, w.k)?, u32_of(OP, s.n_rows)?, u32_of(OP, w.row_bytes)?);
            let part = if n_tokens == 1 {
                // 8 rows per workgroup: 4 row groups of 2 rows (for the gated product, 4 rows out).
                let (gx, gy) = self.fold(s.n_rows.div_ceil(8))?;
                let params = [k, rows, rb, offset, gx, mode, u32_of(OP, n_out)?, u32::from(norm.is_some()), eps.to_bits(), 0, 0, 0];
                self.part(Body::MulMatVec, Some(w.ty), &[&s.buffer, &x.buffer, &y.buffer, nw], &params, [gx, gy, 1])?
            } else {
                // Tiles of 64 rows x 64 tokens (shaders/mul_mat.wgsl).
                let (gx, gy) = self.fold(s.n_rows.div_ceil(64))?;
                let gz = u32_of(OP, n_tokens.div_ceil(64).max(1))?;
                let params = [k, rows, rb, offset, gx, u32_of(OP, n_tokens)?, u32_of(OP, out.stride)?, mode];
                self.part(Body::MulMat, Some(w.ty), &[&s.buffer, &x.buffer, &y.buffer], &params, [gx, gy, gz])?
            };
            parts.push(part);
        }
        Ok(Kernel { parts })
    }

    /// out[t, :] = scale · W[ids[t], :] with dequantization; ids: u32 [n_tokens], out: f32 [n_tokens, k].
    /// Ids out of range leave their output row untouched (validate them on the host).
    pub fn get_rows(
        &self,
        w: &GpuWeight,
        ids: &GpuBuffer,
        out: &GpuBuffer,
        n_tokens: usize,
        scale: f32,
    ) -> Result<Kernel, GpuError> {
        const OP: &str = "get_rows";
        need(OP, "ids", ids, n_tokens)?;
        need(OP, "out", out, n_tokens * w.k)?;
        if n_tokens > self.limits_max_dim() as usize {
            return Err(shape_err(
                OP,
                format!("{n_tokens} tokens exceed the grid limit"),
            ));
        }
        let mut parts = Vec::new();
        for s in &w.splits {
            let params = [u32_of(OP, w.k)?, u32_of(OP, s.row_start)?, u32_of(OP, s.n_rows)?, u32_of(OP, w.row_bytes)?, scale.to_bits(), 0, 0, 0];
            let groups = [
                u32_of(OP, (w.k / 32).div_ceil(64))?,
                u32_of(OP, n_tokens.max(1))?,
                1,
            ];
            parts.push(self.part(
                Body::GetRows,
                Some(w.ty),
                &[&s.buffer, &ids.buffer, &out.buffer],
                &params,
                groups,
            )?);
        }
        Ok(Kernel { parts })
    }
}
