//! Element-wise and attention kernels on f32 activations (norms, RoPE, attention, GLU, add,
//! scale), prepared once like the weight kernels in `ops`.

use super::context::GpuContext;
use super::ops::{need, u32_of, Kernel};
use super::pipelines::Body;
use super::tensor::GpuBuffer;
use super::{shape_err, GpuError};

/// Activation of the gated FFN product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GluOp {
    /// llama: silu(gate) * up
    Silu = 0,
    /// gemma: gelu_tanh(gate) * up
    GeluTanh = 1,
}

/// ggml's rope modes (the value of the mode bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeMode {
    /// Rotates consecutive pairs (x[2i], x[2i+1]); "llama" GGUFs.
    Norm = 0,
    /// Rotates (x[i], x[i + n_rot/2]); gemma, qwen.
    Neox = 2,
}

/// RoPE over x: f32 [n_tokens, n_heads, head_dim], positions from an i32 buffer [n_tokens].
#[derive(Clone, Copy, Debug)]
pub struct RopeParams {
    pub n_tokens: usize,
    pub n_heads: usize,
    pub head_dim: usize,
    pub n_rot: usize,
    pub mode: RopeMode,
    pub freq_base: f32,
    pub freq_scale: f32,
}

/// Attention of q: [n_tokens, n_head, head_dim] over caches k, v: [capacity, n_head_kv, head_dim].
/// Query t sits at position pos0 + t; keys 0..n_kv are valid; window 0 means no sliding window.
#[derive(Clone, Copy, Debug)]
pub struct AttentionParams {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_tokens: usize,
    pub n_kv: usize,
    pub pos0: usize,
    pub window: usize,
    pub scale: f32,
}

impl GpuContext {
    /// y[r, :] = x[r, :] / rms(x[r, :]) · w for r < n_rows; x, y: f32 [n_rows, n], w: f32 [n].
    /// With n = head_dim and n_rows = n_tokens · n_heads this is the per-head Q/K norm.
    pub fn rms_norm(
        &self,
        x: &GpuBuffer,
        w: &GpuBuffer,
        y: &GpuBuffer,
        n: usize,
        n_rows: usize,
        eps: f32,
    ) -> Result<Kernel, GpuError> {
        const OP: &str = "rms_norm";
        need(OP, "x", x, n * n_rows)?;
        need(OP, "w", w, n)?;
        need(OP, "y", y, n * n_rows)?;
        let (gx, gy) = self.fold(n_rows)?;
        let params = [
            u32_of(OP, n)?,
            u32_of(OP, n_rows)?,
            eps.to_bits(),
            gx,
            0,
            0,
            0,
            0,
        ];
        let part = self.part(
            Body::RmsNorm,
            None,
            &[&x.buffer, &w.buffer, &y.buffer],
            params,
            [gx, gy, 1],
        )?;
        Ok(Kernel {
            body: Body::RmsNorm,
            parts: vec![part],
        })
    }

    /// RoPE in place on x: f32 [n_tokens, n_heads, head_dim]; pos: i32 [n_tokens] (as u32 bits).
    pub fn rope(&self, x: &GpuBuffer, pos: &GpuBuffer, p: RopeParams) -> Result<Kernel, GpuError> {
        const OP: &str = "rope";
        if p.n_rot > p.head_dim || !p.n_rot.is_multiple_of(2) {
            return Err(shape_err(
                OP,
                format!("n_rot {} with head_dim {}", p.n_rot, p.head_dim),
            ));
        }
        need(OP, "x", x, p.n_tokens * p.n_heads * p.head_dim)?;
        need(OP, "pos", pos, p.n_tokens)?;
        let (gx, gy) = self.fold((p.n_tokens * p.n_heads * p.n_rot / 2).div_ceil(64))?;
        let params = [
            u32_of(OP, p.n_tokens)?,
            u32_of(OP, p.n_heads)?,
            u32_of(OP, p.head_dim)?,
            u32_of(OP, p.n_rot)?,
            p.mode as u32,
            p.freq_base.to_bits(),
            p.freq_scale.to_bits(),
            gx,
        ];
        let part = self.part(
            Body::Rope,
            None,
            &[&x.buffer, &pos.buffer],
            params,
            [gx, gy, 1],
        )?;
        Ok(Kernel {
            body: Body::Rope,
            parts: vec![part],
        })
    }

    /// Causal (optionally sliding-window) GQA attention with softmax; see `AttentionParams`.
    /// `Kernel::set_attention_positions` moves pos0/n_kv between steps.
    pub fn attention(
        &self,
        q: &GpuBuffer,
        k: &GpuBuffer,
        v: &GpuBuffer,
        out: &GpuBuffer,
        p: AttentionParams,
    ) -> Result<Kernel, GpuError> {
        const OP: &str = "attention";
        if p.head_dim == 0 || p.head_dim > 256 {
            return Err(shape_err(
                OP,
                format!("head_dim {} not in 1..=256", p.head_dim),
            ));
        }
        if p.n_head_kv == 0 || !p.n_head.is_multiple_of(p.n_head_kv) {
            return Err(shape_err(
                OP,
                format!("{} heads over {} kv heads", p.n_head, p.n_head_kv),
            ));
        }
        let max_dim = self.limits_max_dim() as usize;
        if p.n_head > max_dim || p.n_tokens > max_dim {
            return Err(shape_err(OP, "grid too large"));
        }
        need(OP, "q", q, p.n_tokens * p.n_head * p.head_dim)?;
        need(OP, "out", out, p.n_tokens * p.n_head * p.head_dim)?;
        need(OP, "k", k, p.n_kv * p.n_head_kv * p.head_dim)?;
        need(OP, "v", v, p.n_kv * p.n_head_kv * p.head_dim)?;
        let params = [
            u32_of(OP, p.n_head)?,
            u32_of(OP, p.n_head_kv)?,
            u32_of(OP, p.head_dim)?,
            u32_of(OP, p.n_tokens)?,
            u32_of(OP, p.n_kv)?,
            u32_of(OP, p.pos0)?,
            u32_of(OP, p.window)?,
            p.scale.to_bits(),
        ];
        let groups = [p.n_head.max(1) as u32, p.n_tokens.max(1) as u32, 1];
        let part = self.part(
            Body::Attention,
            None,
            &[&q.buffer, &k.buffer, &v.buffer, &out.buffer],
            params,
            groups,
        )?;
        Ok(Kernel {
            body: Body::Attention,
            parts: vec![part],
        })
    }

    /// out[i] = act(gate[i]) · up[i] for i < n.
    pub fn glu(
        &self,
        gate: &GpuBuffer,
        up: &GpuBuffer,
        out: &GpuBuffer,
        n: usize,
        op: GluOp,
    ) -> Result<Kernel, GpuError> {
        const OP: &str = "glu";
        for (what, b) in [("gate", gate), ("up", up), ("out", out)] {
            need(OP, what, b, n)?;
        }
        let (gx, gy) = self.fold(n.div_ceil(256))?;
        let params = [u32_of(OP, n)?, op as u32, gx, 0, 0, 0, 0, 0];
        let part = self.part(
            Body::Glu,
            None,
            &[&gate.buffer, &up.buffer, &out.buffer],
            params,
            [gx, gy, 1],
        )?;
        Ok(Kernel {
            body: Body::Glu,
            parts: vec![part],
        })
    }

    /// out[i] = a[i] + b[i] for i < n (the residual add).
    pub fn add(
        &self,
        a: &GpuBuffer,
        b: &GpuBuffer,
        out: &GpuBuffer,
        n: usize,
    ) -> Result<Kernel, GpuError> {
        const OP: &str = "add";
        for (what, buf) in [("a", a), ("b", b), ("out", out)] {
            need(OP, what, buf, n)?;
        }
        let (gx, gy) = self.fold(n.div_ceil(256))?;
        let params = [u32_of(OP, n)?, gx, 0, 0, 0, 0, 0, 0];
        let part = self.part(
            Body::Add,
            None,
            &[&a.buffer, &b.buffer, &out.buffer],
            params,
            [gx, gy, 1],
        )?;
        Ok(Kernel {
            body: Body::Add,
            parts: vec![part],
        })
    }

    /// x[i] *= s for i < n, in place.
    pub fn scale(&self, x: &GpuBuffer, n: usize, s: f32) -> Result<Kernel, GpuError> {
        const OP: &str = "scale";
        need(OP, "x", x, n)?;
        let (gx, gy) = self.fold(n.div_ceil(256))?;
        let params = [u32_of(OP, n)?, gx, s.to_bits(), 0, 0, 0, 0, 0];
        let part = self.part(Body::Scale, None, &[&x.buffer], params, [gx, gy, 1])?;
        Ok(Kernel {
            body: Body::Scale,
            parts: vec![part],
        })
    }
}
