//! Kernels prepared once (pipeline, bind group, uniform parameters) and recorded every step,
//! and the kernels that read GGUF weights: `mul_mat` (mat-vec / mat-mat) and `get_rows`.

use std::sync::Arc;

use super::context::GpuContext;
use super::pipelines::Body;
use super::tensor::{GpuBuffer, GpuWeight};
use super::{shape_err, GpuError};

/// One dispatch: a pipeline, its bind group, its own uniform parameters and the grid size.
pub(crate) struct Part {
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    params: wgpu::Buffer,
    groups: [u32; 3],
}

/// A prepared kernel: one dispatch, or one per row split of a large weight.
pub struct Kernel {
    pub(crate) body: Body,
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

    /// Attention only: moves the query window for the next submit (first query position and
    /// number of valid cache rows), keeping the bind group.
    pub fn set_attention_positions(
        &self,
        ctx: &GpuContext,
        pos0: u32,
        n_kv: u32,
    ) -> Result<(), GpuError> {
        if self.body != Body::Attention {
            return Err(shape_err(
                "set_attention_positions",
                format!("{:?} is not attention", self.body),
            ));
        }
        for part in &self.parts {
            // Params words 4 and 5: n_kv, pos0 (see shaders/attention.wgsl).
            ctx.queue
                .write_buffer(&part.params, 16, bytemuck::cast_slice(&[n_kv, pos0]));
        }
        Ok(())
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
        params: [u32; 8],
        groups: [u32; 3],
    ) -> Result<Part, GpuError> {
        let pipeline = self.pipelines.get(&self.device, body, ty)?;
        let params_buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: 32,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue
            .write_buffer(&params_buf, 0, bytemuck::cast_slice(&params));
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
            params: params_buf,
            groups,
        })
    }

    /// y[t, :] = W · x[t, :] for t < n_tokens, W = `w` ([k, n] GGUF, any supported type),
    /// x: f32 [n_tokens, k], y: f32 [n_tokens, n]. One token uses the mat-vec kernel, more the
    /// tiled mat-mat kernel. A split weight records one dispatch per split.
    pub fn mul_mat(&self, w: &GpuWeight, x: &GpuBuffer, y: &GpuBuffer, n_tokens: usize) -> Result<Kernel, GpuError> {
        self.mul_mat_inner(w, x, y, n_tokens, false)
    }

    /// y[t, :] += W · x[t, :]: `mul_mat` with the residual add fused into its output.
    pub fn mul_mat_add(&self, w: &GpuWeight, x: &GpuBuffer, y: &GpuBuffer, n_tokens: usize) -> Result<Kernel, GpuError> {
        self.mul_mat_inner(w, x, y, n_tokens, true)
    }

    fn mul_mat_inner(&self, w: &GpuWeight, x: &GpuBuffer, y: &GpuBuffer, n_tokens: usize, accumulate: bool) -> Result<Kernel, GpuError> {
        const OP: &str = "mul_mat";
        need(OP, "x", x, n_tokens * w.k)?;
        need(OP, "y", y, n_tokens * w.n)?;
        let (body, rows_per_group) = if n_tokens == 1 { (Body::MulMatVec, 8) } else { (Body::MulMat, 4) };
        let mut parts = Vec::new();
        for s in &w.splits {
            let (gx, gy) = self.fold(s.n_rows.div_ceil(rows_per_group))?;
            let gz = u32_of(OP, n_tokens.div_ceil(8).max(1))?;
            let (p5, p7) = match body {
                Body::MulMatVec => (u32::from(accumulate), 0),
                _ => (u32_of(OP, n_tokens)?, u32::from(accumulate)),
            };
            let params = [u32_of(OP, w.k)?, u32_of(OP, s.n_rows)?, u32_of(OP, w.row_bytes)?, u32_of(OP, s.row_start)?, gx, p5, u32_of(OP, w.n)?, p7];
            let groups = if n_tokens == 1 { [gx, gy, 1] } else { [gx, gy, gz] };
            parts.push(self.part(body, Some(w.ty), &[&s.buffer, &x.buffer, &y.buffer], params, groups)?);
        }
        Ok(Kernel { body, parts })
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
            let params = [
                u32_of(OP, w.k)?,
                u32_of(OP, s.row_start)?,
                u32_of(OP, s.n_rows)?,
                u32_of(OP, w.row_bytes)?,
                scale.to_bits(),
                0,
                0,
                0,
            ];
            let groups = [
                u32_of(OP, (w.k / 32).div_ceil(64))?,
                u32_of(OP, n_tokens.max(1))?,
                1,
            ];
            parts.push(self.part(
                Body::GetRows,
                Some(w.ty),
                &[&s.buffer, &ids.buffer, &out.buffer],
                params,
                groups,
            )?);
        }
        Ok(Kernel {
            body: Body::GetRows,
            parts,
        })
    }
}
