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
/// Query t sits at position pos[t] (an i32 buffer, written before each step) and sees cache rows
/// 0..=pos[t]; window 0 means no sliding window.
#[derive(Clone, Copy, Debug)]
pub struct AttentionParams {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_tokens: usize,
    /// Rows the caches hold.
    pub capacity: usize,
    pub window: usize,
    pub scale: f32,
}

/// `GpuContext::qkv_post`: the Q/K/V projections of a step, [n_tokens, qkv_stride] with Q at
/// column 0, K at n_head·head_dim and V after K.
#[derive(Clone, Copy, Debug)]
pub struct QkvParams {
    pub n_tokens: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub qkv_stride: usize,
    pub n_rot: usize,
    pub mode: RopeMode,
    pub freq_base: f32,
    pub freq_scale: f32,
    pub eps: f32,
    /// Rows the caches hold.
    pub capacity: usize,
}

impl GpuContext {
    /// y[r, :] = x[r, :] / rms(x[r, :]) · w for r < n_rows; x, y: f32 [n_rows, n], w: f32 [n].
    /// With n = head_dim and n_rows = n_tokens · n_heads this is the per-head Q/K norm.
    pub fn rms_norm(&self, x: &GpuBuffer, w: &GpuBuffer, y: &GpuBuffer, n: usize, n_rows: usize, eps: f32) -> Result<Kernel, GpuError> {
        self.rms_norm_inner(x, w, y, None, n, n_rows, eps)
    }

    /// y = res + rms_norm(x) · w (a norm followed by the residual add, in one pass).
    #[allow(clippy::too_many_arguments)]
    pub fn rms_norm_add(&self, x: &GpuBuffer, w: &GpuBuffer, res: &GpuBuffer, y: &GpuBuffer, n: usize, n_rows: usize, eps: f32) -> Result<Kernel, GpuError> {
        self.rms_norm_inner(x, w, y, Some(res), n, n_rows, eps)
    }

    #[allow(clippy::too_many_arguments)]
    fn rms_norm_inner(&self, x: &GpuBuffer, w: &GpuBuffer, y: &GpuBuffer, res: Option<&GpuBuffer>, n: usize, n_rows: usize, eps: f32) -> Result<Kernel, GpuError> {
        const OP: &str = "rms_norm";
        need(OP, "x", x, n * n_rows)?;
        need(OP, "w", w, n)?;
        need(OP, "y", y, n * n_rows)?;
        if let Some(r) = res {
            need(OP, "res", r, n * n_rows)?;
        }
        let (gx, gy) = self.fold(n_rows)?;
        let params = [u32_of(OP, n)?, u32_of(OP, n_rows)?, eps.to_bits(), gx, u32::from(res.is_some()), 0, 0, 0];
        // Without a residual, `res` is bound to x and never read.
        let res = res.unwrap_or(x);
        let part = self.part(Body::RmsNorm, None, &[&x.buffer, &w.buffer, &y.buffer, &res.buffer], &params, [gx, gy, 1])?;
        Ok(Kernel { parts: vec![part] })
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
            &params,
            [gx, gy, 1],
        )?;
        Ok(Kernel { parts: vec![part] })
    }

    /// Causal (optionally sliding-window) GQA attention with softmax; see `AttentionParams`.
    pub fn attention(&self, q: &GpuBuffer, k: &GpuBuffer, v: &GpuBuffer, out: &GpuBuffer, pos: &GpuBuffer, p: AttentionParams) -> Result<Kernel, GpuError> {
        const OP: &str = "attention";
        check_heads(OP, p.n_head, p.n_head_kv, p.head_dim)?;
        if !p.head_dim.is_multiple_of(16) {
            // shaders/attention.wgsl: 4 threads per key, each reading whole vec4s.
            return Err(shape_err(OP, format!("head_dim {} is not a multiple of 16", p.head_dim)));
        }
        let max_dim = self.limits_max_dim() as usize;
        if p.n_head > max_dim || p.n_tokens > max_dim {
            return Err(shape_err(OP, "grid too large"));
        }
        need(OP, "q", q, p.n_tokens * p.n_head * p.head_dim)?;
        need(OP, "out", out, p.n_tokens * p.n_head * p.head_dim)?;
        need(OP, "k", k, p.capacity * p.n_head_kv * p.head_dim)?;
        need(OP, "v", v, p.capacity * p.n_head_kv * p.head_dim)?;
        need(OP, "pos", pos, p.n_tokens)?;
        let params = [u32_of(OP, p.n_head)?, u32_of(OP, p.n_head_kv)?, u32_of(OP, p.head_dim)?, u32_of(OP, p.n_tokens)?, u32_of(OP, p.capacity)?, 0, u32_of(OP, p.window)?, p.scale.to_bits()];
        let groups = [p.n_head.max(1) as u32, p.n_tokens.max(1) as u32, 1];
        let part = self.part(Body::Attention, None, &[&q.buffer, &k.buffer, &v.buffer, &out.buffer, &pos.buffer], &params, groups)?;
        Ok(Kernel { parts: vec![part] })
    }

    /// Bias add (`bias`: [Q | K | V] widths), per-head RMSNorm of Q and K (`q_norm`, `k_norm`:
    /// [head_dim]), RoPE of Q and K at positions `pos`, then Q into `q_out` [n_tokens, n_head,
    /// head_dim] and K, V into cache rows pos[t] of `kc`, `vc` — everything between the Q/K/V
    /// products and the attention, in one dispatch.
    #[allow(clippy::too_many_arguments)]
    pub fn qkv_post(&self, qkv: &GpuBuffer, q_out: &GpuBuffer, kc: &GpuBuffer, vc: &GpuBuffer, pos: &GpuBuffer, q_norm: Option<&GpuBuffer>, k_norm: Option<&GpuBuffer>, bias: Option<&GpuBuffer>, p: QkvParams) -> Result<Kernel, GpuError> {
        const OP: &str = "qkv_post";
        check_heads(OP, p.n_head, p.n_head_kv, p.head_dim)?;
        let (hd, kvw) = (p.head_dim, p.n_head_kv * p.head_dim);
        let width = p.n_head * hd + 2 * kvw;
        if p.qkv_stride < width || !hd.is_multiple_of(2) || p.n_rot > hd || !p.n_rot.is_multiple_of(2) {
            return Err(shape_err(OP, format!("qkv stride {} for width {width}, head_dim {hd}, n_rot {}", p.qkv_stride, p.n_rot)));
        }
        if p.n_tokens > 0 {
            need(OP, "qkv", qkv, (p.n_tokens - 1) * p.qkv_stride + width)?;
        }
        need(OP, "q_out", q_out, p.n_tokens * p.n_head * hd)?;
        need(OP, "kc", kc, p.capacity * kvw)?;
        need(OP, "vc", vc, p.capacity * kvw)?;
        need(OP, "pos", pos, p.n_tokens)?;
        for (what, b) in [("q_norm", q_norm), ("k_norm", k_norm)] {
            if let Some(b) = b {
                need(OP, what, b, hd)?;
            }
        }
        if let Some(b) = bias {
            need(OP, "bias", b, width)?;
        }
        let max_dim = self.limits_max_dim() as usize;
        if p.n_head + 2 * p.n_head_kv > max_dim || p.n_tokens > max_dim {
            return Err(shape_err(OP, "grid too large"));
        }
        let flags = u32::from(q_norm.is_some()) | (u32::from(k_norm.is_some()) << 1) | (u32::from(bias.is_some()) << 2);
        let params = [
            u32_of(OP, p.n_tokens)?,
            u32_of(OP, p.n_head)?,
            u32_of(OP, p.n_head_kv)?,
            u32_of(OP, hd)?,
            u32_of(OP, p.n_rot)?,
            p.mode as u32,
            p.freq_base.to_bits(),
            p.freq_scale.to_bits(),
            u32_of(OP, p.qkv_stride)?,
            p.eps.to_bits(),
            flags,
            u32_of(OP, p.capacity)?,
        ];
        // Unused optional inputs are bound to qkv (never read: their flag is off).
        let (qn, kn, b) = (q_norm.unwrap_or(qkv), k_norm.unwrap_or(qkv), bias.unwrap_or(qkv));
        let buffers = [&qkv.buffer, &q_out.buffer, &kc.buffer, &vc.buffer, &pos.buffer, &qn.buffer, &kn.buffer, &b.buffer];
        let groups = [(p.n_head + 2 * p.n_head_kv) as u32, p.n_tokens.max(1) as u32, 1];
        let part = self.part(Body::QkvPost, None, &buffers, &params, groups)?;
        Ok(Kernel { parts: vec![part] })
    }

    /// out[i] = act(gate[i]) · up[i] for i < n.
    pub fn glu(&self, gate: &GpuBuffer, up: &GpuBuffer, out: &GpuBuffer, n: usize, op: GluOp) -> Result<Kernel, GpuError> {
        self.glu_rows(gate, 0, up, 0, n, out, n, 1, op)
    }

    /// out[t, i] = act(g[t · stride + g_off + i]) · u[t · stride + u_off + i] for i < n,
    /// t < n_tokens: the gated product over column ranges of wider rows (e.g. `[gate | up]`).
    #[allow(clippy::too_many_arguments)]
    pub fn glu_rows(&self, g: &GpuBuffer, g_off: usize, u: &GpuBuffer, u_off: usize, n: usize, out: &GpuBuffer, stride: usize, n_tokens: usize, op: GluOp) -> Result<Kernel, GpuError> {
        const OP: &str = "glu";
        if n_tokens > 0 {
            need(OP, "gate", g, (n_tokens - 1) * stride + g_off + n)?;
            need(OP, "up", u, (n_tokens - 1) * stride + u_off + n)?;
        }
        need(OP, "out", out, n * n_tokens)?;
        let (gx, gy) = self.fold((n * n_tokens).div_ceil(256))?;
        let params = [u32_of(OP, n)?, op as u32, gx, u32_of(OP, n_tokens)?, u32_of(OP, stride)?, u32_of(OP, g_off)?, u32_of(OP, u_off)?, 0];
        let part = self.part(Body::Glu, None, &[&g.buffer, &u.buffer, &out.buffer], &params, [gx, gy, 1])?;
        Ok(Kernel { parts: vec![part] })
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
            &params,
            [gx, gy, 1],
        )?;
        Ok(Kernel { parts: vec![part] })
    }

    /// x[i] *= s for i < n, in place.
    pub fn scale(&self, x: &GpuBuffer, n: usize, s: f32) -> Result<Kernel, GpuError> {
        const OP: &str = "scale";
        need(OP, "x", x, n)?;
        let (gx, gy) = self.fold(n.div_ceil(256))?;
        let params = [u32_of(OP, n)?, gx, s.to_bits(), 0, 0, 0, 0, 0];
        let part = self.part(Body::Scale, None, &[&x.buffer], &params, [gx, gy, 1])?;
        Ok(Kernel { parts: vec![part] })
    }
}

fn check_heads(op: &'static str, n_head: usize, n_head_kv: usize, head_dim: usize) -> Result<(), GpuError> {
    if head_dim == 0 || head_dim > 256 {
        return Err(shape_err(op, format!("head_dim {head_dim} not in 1..=256")));
    }
    if n_head_kv == 0 || !n_head.is_multiple_of(n_head_kv) {
        return Err(shape_err(op, format!("{n_head} heads over {n_head_kv} kv heads")));
    }
    Ok(())
}
