//! The forward pass as prepared kernels: one `Graph` per chunk size, all over the same
//! activation buffers and KV cache, recorded into the command buffers of a step.
//!
//! per layer (llama / gemma3 differences marked):
//!   xn = rms_norm(x)·attn_norm;  [Q | K | V] = [Wq | Wk | Wv]·xn   (one product per run of one type)
//!   qkv_post: llama biases / gemma3 per-head Q, K norms; RoPE on Q, K (llama NORM, gemma3 NEOX);
//!             Q to q, K and V into the cache rows of their positions
//!   attn = attention(Q, Kcache, Vcache) (causal; gemma3 sliding window on local layers)
//!   llama:  x += Wo·attn                      gemma3: x2 = x + rms_norm(Wo·attn)·post_attention_norm
//!   xn = rms_norm(x)·ffn_norm;  g = act(W_gate·xn) ⊙ W_up·xn  (llama SiLU, gemma3 GELU-tanh)
//!   llama:  x += W_down·g                     gemma3: x = x2 + rms_norm(W_down·g)·post_ffw_norm
//! One token (decode) fuses further: the RMSNorms that precede products run inside the mat-vec
//! kernels, and [W_gate | W_up] with its activation is one gated mat-vec. A layer is then 6
//! dispatches for llama ([Q|K|V], qkv_post, attention, Wo+add, gated FFN, W_down+add) and 8 for
//! gemma3, plus one per extra Q/K/V type.
//! gemma3's residual stream ping-pongs x -> x2 -> x because a kernel cannot read and write one
//! buffer through two bindings.

use kiln_kernels::gpu::{AttentionParams, Epilogue, GluOp, GpuBuffer, GpuContext, GpuError, Kernel, MatOut, QkvParams};

use super::weights::{Family, GateUp, Layer, Weights};

/// Chunk sizes a forward step can take, largest first; a batch of n tokens is split greedily
/// (n = 45 runs as 32 + 8 + 1 + 1 + 1 + 1 + 1), so no chunk computes padding.
pub(crate) const CHUNKS: [usize; 4] = [128, 32, 8, 1];
pub(crate) const CHUNK_MAX: usize = CHUNKS[0];
/// Largest chunk when every position's logits are wanted ([chunk][n_vocab] must fit a binding).
pub(crate) const CHUNK_MAX_ALL: usize = 32;

/// Activation buffers for up to CHUNK_MAX tokens, shared by every chunk size.
pub(crate) struct Acts {
    pub ids: GpuBuffer,     // u32 [CHUNK_MAX]
    pub pos: GpuBuffer,     // i32 [CHUNK_MAX]
    pub x: GpuBuffer,       // [CHUNK_MAX][n_embd]   residual stream at layer boundaries
    pub x2: GpuBuffer,      // [CHUNK_MAX][n_embd]   gemma3: residual stream after attention
    pub xn: GpuBuffer,      // [CHUNK_MAX][n_embd]   normed block input
    pub qkv: GpuBuffer,     // [CHUNK_MAX][q + k + v widths]
    pub q: GpuBuffer,       // [CHUNK_MAX][n_head·head_dim]   Q after qkv_post
    pub attn: GpuBuffer,    // [CHUNK_MAX][n_head·head_dim]
    pub o: GpuBuffer,       // [CHUNK_MAX][n_embd]   gemma3: block output before its norm
    pub gu: GpuBuffer,      // [CHUNK_MAX][2·n_ff]   [gate | up] products
    pub glu: GpuBuffer,     // [CHUNK_MAX][n_ff]
    pub x_last: GpuBuffer,  // [n_embd]  the row whose logits are wanted
    pub logits: GpuBuffer,  // [n_vocab]
}

impl Acts {
    pub fn new(ctx: &GpuContext, w: &Weights) -> Result<Acts, GpuError> {
        let hp = &w.hp;
        let (e, ff, c) = (hp.n_embd, hp.n_ff, CHUNK_MAX);
        let z = |n: usize| ctx.zeros_f32(n);
        Ok(Acts {
            ids: z(c)?,
            pos: z(c)?,
            x: z(c * e)?,
            x2: z(c * e)?,
            xn: z(c * e)?,
            qkv: z(c * qkv_width(w))?,
            q: z(c * hp.q_width())?,
            attn: z(c * hp.q_width())?,
            o: z(c * e)?,
            gu: z(c * 2 * ff)?,
            glu: z(c * ff)?,
            x_last: z(e)?,
            logits: z(hp.n_vocab)?,
        })
    }
}

fn qkv_width(w: &Weights) -> usize {
    w.hp.q_width() + w.hp.k_width() + w.hp.v_width()
}

/// The forward pass for exactly `n_tokens` tokens: the embedding, then each layer's kernels in
/// recording order.
pub(crate) struct Graph {
    pub n_tokens: usize,
    pub embed: Kernel,
    /// Each layer's kernels with a short name (the profile's rows).
    pub layers: Vec<Vec<(&'static str, Kernel)>>,
}

impl Graph {
    pub fn build(ctx: &GpuContext, w: &Weights, a: &Acts, kv: &[(GpuBuffer, GpuBuffer)], n: usize) -> Result<Graph, GpuError> {
        let embed = ctx.get_rows(&w.tok_embd, &a.ids, &a.x, n, w.embd_scale)?;
        let layers = w.layers.iter().zip(kv).map(|(l, (kc, vc))| layer(ctx, w, l, a, kc, vc, n)).collect::<Result<_, _>>()?;
        Ok(Graph { n_tokens: n, embed, layers })
    }
}

fn layer(ctx: &GpuContext, w: &Weights, l: &Layer, a: &Acts, kc: &GpuBuffer, vc: &GpuBuffer, n: usize) -> Result<Vec<(&'static str, Kernel)>, GpuError> {
    let hp = &w.hp;
    let (e, ff, eps) = (hp.n_embd, hp.n_ff, hp.eps);
    let qkvw = qkv_width(w);
    let decode = n == 1;
    // A product whose input is normed: one token norms inside the product (x read raw), a chunk
    // reads x normed once beforehand (into xn).
    let normed = |wt, x, norm, y, out| ctx.mul_mat_with(wt, x, y, n, out, decode.then_some((norm, eps)));
    let mut ks = Vec::new();
    // One token reads x and norms it inside each product; a chunk norms it once into xn.
    let attn_in = if decode { &a.x } else { &a.xn };
    if !decode {
        ks.push(("attn_norm", ctx.rms_norm(&a.x, &l.attn_norm, &a.xn, e, n, eps)?)); // attn_norm
    }
    for (wt, col) in &l.qkv {
        ks.push(("qkv", normed(wt, attn_in, &l.attn_norm, &a.qkv, MatOut { stride: qkvw, offset: *col, epilogue: Epilogue::Store })?));
    }
    let capacity = kc.len() / hp.k_width().max(1);
    ks.push(("qkv_post", ctx.qkv_post(
        &a.qkv,
        &a.q,
        kc,
        vc,
        &a.pos,
        l.q_norm.as_ref(),
        l.k_norm.as_ref(),
        l.bias.as_ref(),
        QkvParams {
            n_tokens: n,
            n_head: hp.n_head,
            n_head_kv: hp.n_head_kv,
            head_dim: hp.head_dim,
            qkv_stride: qkvw,
            n_rot: hp.n_rot,
            mode: w.rope_mode,
            freq_base: l.rope_base,
            freq_scale: l.rope_scale,
            eps,
            capacity,
        },
    )?));
    ks.push(("attention", ctx.attention(
        &a.q,
        kc,
        vc,
        &a.attn,
        &a.pos,
        AttentionParams { n_head: hp.n_head, n_head_kv: hp.n_head_kv, head_dim: hp.head_dim, n_tokens: n, capacity, window: l.window, scale: w.attn_scale },
    )?));
    let act = match w.family {
        Family::Llama => GluOp::Silu,
        Family::Gemma3 => GluOp::GeluTanh,
    };
    // Attention output and residual: afterwards the FFN input is in `res`.
    let res = match &l.post_attn_norm {
        None => {
            ks.push(("wo", ctx.mul_mat_add(&l.wo, &a.attn, &a.x, n)?)); // x += attn_out
            &a.x
        }
        Some(norm) => {
            ks.push(("wo", ctx.mul_mat(&l.wo, &a.attn, &a.o, n)?)); // attn_out
            ks.push(("norm_add", ctx.rms_norm_add(&a.o, norm, &a.x, &a.x2, e, n, eps)?)); // x2 = x + post_attention_norm(attn_out)
            &a.x2
        }
    };
    let ffn_in = if decode { res } else { &a.xn };
    if !decode {
        ks.push(("ffn_norm", ctx.rms_norm(res, &l.ffn_norm, &a.xn, e, n, eps)?)); // ffn_norm
    }
    match (&l.gate_up, decode) {
        (GateUp::Fused(gu), true) => {
            ks.push(("gate_up", normed(gu, ffn_in, &l.ffn_norm, &a.glu, MatOut { stride: ff, offset: 0, epilogue: Epilogue::Glu(act) })?));
        }
        (gate_up, _) => {
            let out = |offset| MatOut { stride: 2 * ff, offset, epilogue: Epilogue::Store };
            match gate_up {
                GateUp::Fused(gu) => ks.push(("gate_up", normed(gu, ffn_in, &l.ffn_norm, &a.gu, out(0))?)),
                GateUp::Split { gate, up } => {
                    ks.push(("gate_up", normed(gate, ffn_in, &l.ffn_norm, &a.gu, out(0))?));
                    ks.push(("gate_up", normed(up, ffn_in, &l.ffn_norm, &a.gu, out(ff))?));
                }
            }
            ks.push(("glu", ctx.glu_rows(&a.gu, 0, &a.gu, ff, ff, &a.glu, 2 * ff, n, act)?));
        }
    }
    match &l.post_ffw_norm {
        None if l.post_attn_norm.is_none() => ks.push(("down", ctx.mul_mat_add(&l.down, &a.glu, &a.x, n)?)), // x += ffn_out
        None => {
            ks.push(("down", ctx.mul_mat(&l.down, &a.glu, &a.o, n)?));
            ks.push(("norm_add", ctx.add(res, &a.o, &a.x, n * e)?));
        }
        Some(norm) => {
            ks.push(("down", ctx.mul_mat(&l.down, &a.glu, &a.o, n)?)); // ffn_out
            ks.push(("norm_add", ctx.rms_norm_add(&a.o, norm, res, &a.x, e, n, eps)?)); // x = x2 + post_ffw_norm(ffn_out)
        }
    }
    Ok(ks)
}

/// Output head over one row (`x` row 0 -> logits): the final norm fused into the product.
pub(crate) fn output_head(ctx: &GpuContext, w: &Weights, x: &GpuBuffer, logits: &GpuBuffer) -> Result<Kernel, GpuError> {
    ctx.mul_mat_with(w.output(), x, logits, 1, MatOut::dense(w.hp.n_vocab), Some((&w.output_norm, w.hp.eps)))
}

/// Output head over every row of an `n`-token chunk into `logits` [n][n_vocab].
pub(crate) struct Head {
    pub norm: Kernel,
    pub out: Kernel,
}

impl Head {
    pub fn all(ctx: &GpuContext, w: &Weights, a: &Acts, logits: &GpuBuffer, n: usize) -> Result<Head, GpuError> {
        Ok(Head { norm: ctx.rms_norm(&a.x, &w.output_norm, &a.xn, w.hp.n_embd, n, w.hp.eps)?, out: ctx.mul_mat(w.output(), &a.xn, logits, n)? })
    }
}
