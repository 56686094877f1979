//! Weights of `llama` and `gemma3` on the device, read from the GGUF file once.
//!
//! Matrices keep their GGUF encoding (`GpuWeight`); norm vectors and biases are f32 buffers.
//! The two architectures share one layer struct; the gemma3-only tensors are `Option`s and
//! everything that differs is marked "llama:" / "gemma3:" below.

use kiln_kernels::gpu::{decodes, GpuBuffer, GpuContext, GpuWeight, RopeMode};
use kiln_kernels::GgmlType;

use super::gpu_err;
use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;
use crate::model::hparams::Hparams;
use crate::model::linear::{load_vector, optional_vector, Linear};
use crate::model::Model;

/// gemma3: every sixth layer attends globally, the others use the sliding window and RoPE
/// base 10000 (as engine/src/arch/gemma3.rs).
const GEMMA3_SWA_PATTERN: usize = 6;
const GEMMA3_ROPE_BASE_SWA: f32 = 10000.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    Llama,
    Gemma3,
}

/// The FFN's gate and up matrices: one [gate | up] weight where both have one type and fit one
/// binding (the gated mat-vec reads gate row r and up row r from it), else two.
pub(crate) enum GateUp {
    Fused(GpuWeight),
    Split { gate: GpuWeight, up: GpuWeight },
}

pub(crate) struct Layer {
    pub attn_norm: GpuBuffer,
    /// The Q, K and V products as (weight, first output column): runs of one type are one
    /// weight with their rows concatenated, so [Q | K | V] is usually one product.
    pub qkv: Vec<(GpuWeight, usize)>,
    /// llama: optional Q/K/V biases, [Q | K | V] widths (zeros where one is missing).
    pub bias: Option<GpuBuffer>,
    /// gemma3: per-head norms of Q and K, [head_dim].
    pub q_norm: Option<GpuBuffer>,
    pub k_norm: Option<GpuBuffer>,
    pub wo: GpuWeight,
    /// gemma3: norm of the attention output before the residual add, [n_embd].
    pub post_attn_norm: Option<GpuBuffer>,
    pub ffn_norm: GpuBuffer,
    pub gate_up: GateUp,
    pub down: GpuWeight,
    /// gemma3: norm of the FFN output before the residual add, [n_embd].
    pub post_ffw_norm: Option<GpuBuffer>,
    pub rope_base: f32,
    pub rope_scale: f32,
    /// Sliding window in positions, 0 for global attention.
    pub window: usize,
}

pub(crate) struct Weights {
    pub family: Family,
    pub hp: Hparams,
    pub tok_embd: GpuWeight,
    /// None: tied to `tok_embd`.
    pub output: Option<GpuWeight>,
    pub output_norm: GpuBuffer,
    pub layers: Vec<Layer>,
    /// Multiplies the embedding rows (gemma3: sqrt(n_embd)).
    pub embd_scale: f32,
    /// Multiplies q·k in attention (both: 1/sqrt(head_dim); gemma3 scales Q itself on the CPU,
    /// which is the same product).
    pub attn_scale: f32,
    pub rope_mode: RopeMode,
}

impl Weights {
    pub fn output(&self) -> &GpuWeight {
        self.output.as_ref().unwrap_or(&self.tok_embd)
    }

    pub fn device_bytes(&self) -> u64 {
        let mut n = self.tok_embd.size_bytes() + self.output.as_ref().map_or(0, |w| w.size_bytes());
        for l in &self.layers {
            let gate_up = match &l.gate_up {
                GateUp::Fused(w) => vec![w],
                GateUp::Split { gate, up } => vec![gate, up],
            };
            for w in l.qkv.iter().map(|(w, _)| w).chain(gate_up).chain([&l.wo, &l.down]) {
                n += w.size_bytes();
            }
        }
        n
    }

    pub fn upload(ctx: &GpuContext, model: &Model) -> Result<Weights> {
        let f = model.gguf();
        let arch = model.info().architecture.as_str();
        let family = match arch {
            "llama" => Family::Llama,
            "gemma3" => Family::Gemma3,
            other => return Err(EngineError::UnsupportedArchitecture(other.to_string())),
        };
        let hp = Hparams::read(f, arch, model.info().n_vocab)?;
        if hp.head_dim_v != hp.head_dim || hp.head_dim > 256 {
            // shaders/attention.wgsl: one head_dim for K and V, at most 256.
            return Err(gpu_unsupported(format!("head dimensions {}/{}", hp.head_dim, hp.head_dim_v)));
        }
        let (e, ff, hd) = (hp.n_embd, hp.n_ff, hp.head_dim);
        let (qw, kw, vw) = (hp.q_width(), hp.k_width(), hp.v_width());
        let mat = |name: &str, cols: usize, rows: usize| -> Result<GpuWeight> { upload_linear(ctx, f, &Linear::load(f, name, cols, rows)?, name) };
        let lin = |name: &str, cols: usize, rows: usize| -> Result<(Linear, String)> { Ok((Linear::load(f, name, cols, rows)?, name.to_string())) };
        let vec = |name: &str, len: usize| -> Result<GpuBuffer> { ctx.upload_f32(&load_vector(f, name, len)?).map_err(gpu_err) };
        let opt_vec = |name: &str, len: usize| -> Result<Option<GpuBuffer>> {
            match family {
                Family::Gemma3 => vec(name, len).map(Some),
                Family::Llama => Ok(None),
            }
        };
        // llama: biases are rare (Qwen-style llama GGUFs); one [Q | K | V] vector, zeros where one
        // of the three has none.
        let bias = |names: [(String, usize); 3]| -> Result<Option<GpuBuffer>> {
            let mut found = false;
            let mut all = Vec::new();
            for (name, len) in names {
                match optional_vector(f, &name, len)? {
                    Some(b) => {
                        found = true;
                        all.extend(b);
                    }
                    None => all.resize(all.len() + len, 0.0),
                }
            }
            match found {
                true => Ok(Some(ctx.upload_f32(&all).map_err(gpu_err)?)),
                false => Ok(None),
            }
        };
        // gemma3: sliding window length from metadata; none means every layer is global.
        let window = match (family, f.get("gemma3.attention.sliding_window")) {
            (Family::Gemma3, Some(_)) => f.get_u32("gemma3.attention.sliding_window")? as usize,
            _ => 0,
        };
        let tok_embd_linear = Linear::load(f, "token_embd.weight", e, hp.n_vocab)?;
        let tok_embd = upload_linear(ctx, f, &tok_embd_linear, "token_embd.weight")?;
        let output = match Linear::optional(f, "output.weight", e, hp.n_vocab)? {
            Some(l) => Some(upload_linear(ctx, f, &l, "output.weight")?),
            None => None,
        };
        let mut layers = Vec::with_capacity(hp.n_layer);
        for i in 0..hp.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}");
            let sliding = family == Family::Gemma3 && window > 0 && i % GEMMA3_SWA_PATTERN < GEMMA3_SWA_PATTERN - 1;
            let (rope_base, rope_scale) = if sliding { (GEMMA3_ROPE_BASE_SWA, 1.0) } else { (hp.rope_base, hp.rope_scale) };
            layers.push(Layer {
                attn_norm: vec(&n("attn_norm.weight"), e)?,
                qkv: upload_runs(ctx, f, vec![lin(&n("attn_q.weight"), e, qw)?, lin(&n("attn_k.weight"), e, kw)?, lin(&n("attn_v.weight"), e, vw)?])?,
                bias: bias([(n("attn_q.bias"), qw), (n("attn_k.bias"), kw), (n("attn_v.bias"), vw)])?,
                q_norm: opt_vec(&n("attn_q_norm.weight"), hd)?,
                k_norm: opt_vec(&n("attn_k_norm.weight"), hd)?,
                wo: mat(&n("attn_output.weight"), hp.n_head * hp.head_dim_v, e)?,
                post_attn_norm: opt_vec(&n("post_attention_norm.weight"), e)?,
                ffn_norm: vec(&n("ffn_norm.weight"), e)?,
                gate_up: {
                    let mut runs = upload_runs(ctx, f, vec![lin(&n("ffn_gate.weight"), e, ff)?, lin(&n("ffn_up.weight"), e, ff)?])?;
                    match (runs.pop(), runs.pop()) {
                        (Some((up, _)), Some((gate, _))) => GateUp::Split { gate, up },
                        (Some((w, _)), None) => GateUp::Fused(w),
                        _ => return Err(gpu_unsupported("an FFN without gate and up".into())),
                    }
                },
                down: mat(&n("ffn_down.weight"), ff, e)?,
                post_ffw_norm: opt_vec(&n("post_ffw_norm.weight"), e)?,
                rope_base,
                rope_scale,
                window: if sliding { window } else { 0 },
            });
        }
        let (embd_scale, rope_mode) = match family {
            Family::Llama => (1.0, RopeMode::Norm),
            Family::Gemma3 => ((e as f32).sqrt(), RopeMode::Neox),
        };
        Ok(Weights {
            family,
            attn_scale: 1.0 / (hd as f32).sqrt(),
            output_norm: vec("output_norm.weight", e)?,
            hp,
            tok_embd,
            output,
            layers,
            embd_scale,
            rope_mode,
        })
    }
}

fn gpu_unsupported(what: String) -> EngineError {
    EngineError::Gpu(format!("no kernel for {what}"))
}

/// Uploads matrices that share their input (same column count) as few weights as possible: each
/// run of adjacent matrices of one supported type whose rows fit one binding becomes one weight
/// with the rows concatenated. Returns (weight, first row of it in the concatenation of all).
fn upload_runs(ctx: &GpuContext, f: &GgufFile, mats: Vec<(Linear, String)>) -> Result<Vec<(GpuWeight, usize)>> {
    let mut out = Vec::new();
    let mut row = 0;
    let mut i = 0;
    while i < mats.len() {
        let (first, name) = &mats[i];
        let mut j = i + 1;
        let mut bytes = first.len;
        while j < mats.len() && mats[j].0.ty == first.ty && mats[j].0.cols == first.cols && decodes(first.ty) && ((bytes + mats[j].0.len) as u64) <= ctx.max_binding_bytes() {
            bytes += mats[j].0.len;
            j += 1;
        }
        let rows: usize = mats[i..j].iter().map(|(l, _)| l.rows).sum();
        let w = if j == i + 1 {
            upload_linear(ctx, f, first, name)?
        } else {
            let mut cat = Vec::with_capacity(bytes);
            for (l, _) in &mats[i..j] {
                cat.extend_from_slice(&l.row_major_bytes(f.data())?);
            }
            ctx.upload_weight(first.ty, first.cols, rows, &cat).map_err(gpu_err)?
        };
        out.push((w, row));
        row += rows;
        i = j;
    }
    Ok(out)
}

/// Uploads a matrix as its GGUF bytes, or dequantized to f32 when no shader decodes its type.
fn upload_linear(ctx: &GpuContext, f: &GgufFile, l: &Linear, name: &str) -> Result<GpuWeight> {
    // The CPU path may have interleaved the rows in place; the shaders read ggml's order.
    let bytes = l.row_major_bytes(f.data())?;
    let bytes = &bytes[..];
    if decodes(l.ty) {
        return ctx.upload_weight(l.ty, l.cols, l.rows, bytes).map_err(gpu_err);
    }
    tracing::warn!("gpu: no WGSL kernel for {} ({name}); dequantizing it to f32 on the CPU at load", l.ty.name());
    let row_bytes = l.len / l.rows.max(1);
    let mut out = vec![0u8; l.rows * l.cols * 4];
    let mut row = vec![0.0f32; l.cols];
    for (r, dst) in out.chunks_exact_mut(l.cols * 4).enumerate() {
        kiln_kernels::dequantize_row(l.ty, &bytes[r * row_bytes..(r + 1) * row_bytes], &mut row)?;
        for (d, v) in dst.chunks_exact_mut(4).zip(&row) {
            d.copy_from_slice(&v.to_le_bytes());
        }
    }
    ctx.upload_weight(GgmlType::F32, l.cols, l.rows, &out).map_err(gpu_err)
}
