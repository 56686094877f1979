//! The forward pass as prepared kernels: one `Graph` per chunk size, all over the same
//! activation buffers and KV cache, recorded into one command encoder per step.
//!
//! per layer (llama / gemma3 differences marked):
//!   xn = rms_norm(x)·attn_norm;  Qcur, Kcur, Vcur = Wq·xn, Wk·xn, Wv·xn
//!   llama:  + optional biases          gemma3: rms_norm per head of Q, K (q_norm, k_norm)
//!   RoPE on Q, K (llama NORM, gemma3 NEOX);  K, V rows copied into the cache at pos0
//!   attn = attention(Q, Kcache, Vcache) (causal; gemma3 sliding window on local layers)
//!   o = Wo·attn            gemma3: o = rms_norm(o)·post_attention_norm
//!   x2 = x + o;  xn = rms_norm(x2)·ffn_norm;  g = act(W_gate·xn) ⊙ W_up·xn  (llama SiLU, gemma3 GELU-tanh)
//!   o = W_down·g           gemma3: o = rms_norm(o)·post_ffw_norm
//!   x = x2 + o
//! gemma3's residual stream ping-pongs x -> x2 -> x because a kernel cannot read and write one
//! buffer through two bindings; llama's adds are fused into the Wo and W_down products, which
//! add their result to x in place.

use kiln_kernels::gpu::{AttentionParams, GluOp, GpuBuffer, GpuContext, GpuError, Kernel, RopeParams};

use super::weights::{Family, Layer, Weights};

/// Chunk sizes a forward step can take, largest first; a batch of n tokens is split greedily
/// (n = 45 runs as 32 + 8 + 1 + 1 + 1 + 1 + 1), so no chunk computes padding.
pub(crate) const CHUNKS: [usize; 4] = [128, 32, 8, 1];
pub(crate) const CHUNK_MAX: usize = CHUNKS[0];
/// Largest chunk when every position's logits are wanted ([chunk][n_vocab] must fit a binding).
pub(crate) const CHUNK_MAX_ALL: usize = 32;

/// Activation buffers for up to CHUNK_MAX tokens, shared by every chunk size.
pub(crate) struct Acts {
    pub ids: GpuBuffer,   // u32 [CHUNK_MAX]
    pub pos: GpuBuffer,   // i32 [CHUNK_MAX]
    pub x: GpuBuffer,     // [CHUNK_MAX][n_embd]   residual stream at layer boundaries
    pub x2: GpuBuffer,    // [CHUNK_MAX][n_embd]   residual stream after attention
    pub xn: GpuBuffer,    // [CHUNK_MAX][n_embd]   normed block input
    pub q: GpuBuffer,     // [CHUNK_MAX][n_head·head_dim]
    pub k: GpuBuffer,     // [CHUNK_MAX][n_head_kv·head_dim]
    pub v: GpuBuffer,     // [CHUNK_MAX][n_head_kv·head_dim]
    pub qn: GpuBuffer,    // Q after bias / per-head norm
    pub kn: GpuBuffer,    // K after bias / per-head norm
    pub vn: GpuBuffer,    // V after bias
    pub attn: GpuBuffer,  // [CHUNK_MAX][n_head·head_dim]
    pub o: GpuBuffer,     // [CHUNK_MAX][n_embd]   block output
    pub o2: GpuBuffer,    // [CHUNK_MAX][n_embd]   gemma3: normed block output
    pub gate: GpuBuffer,  // [CHUNK_MAX][n_ff]
    pub up: GpuBuffer,    // [CHUNK_MAX][n_ff]
    pub glu: GpuBuffer,   // [CHUNK_MAX][n_ff]
    pub x_last: GpuBuffer, // [n_embd]  the row whose logits are wanted
    pub xn_last: GpuBuffer, // [n_embd]
    pub logits: GpuBuffer, // [n_vocab]
}

impl Acts {
    pub fn new(ctx: &GpuContext, w: &Weights) -> Result<Acts, GpuError> {
        let hp = &w.hp;
        let (e, ff, c) = (hp.n_embd, hp.n_ff, CHUNK_MAX);
        let (qw, kw, vw) = (hp.q_width(), hp.k_width(), hp.v_width());
        let z = |n: usize| ctx.zeros_f32(n);
        Ok(Acts {
            ids: z(c)?,
            pos: z(c)?,
            x: z(c * e)?,
            x2: z(c * e)?,
            xn: z(c * e)?,
            q: z(c * qw)?,
            k: z(c * kw)?,
            v: z(c * vw)?,
            qn: z(c * qw)?,
            kn: z(c * kw)?,
            vn: z(c * vw)?,
            attn: z(c * qw)?,
            o: z(c * e)?,
            o2: z(c * e)?,
            gate: z(c * ff)?,
            up: z(c * ff)?,
            glu: z(c * ff)?,
            x_last: z(e)?,
            xn_last: z(e)?,
            logits: z(hp.n_vocab)?,
        })
    }
}

/// Which buffer holds the K (or V) rows to store in the cache.
#[derive(Clone, Copy)]
pub(crate) enum Src {
    Raw,
    Processed,
}

/// One layer: kernels up to the K/V store, the attention, and the rest.
pub(crate) struct LayerOps {
    pub pre: Vec<Kernel>,
    pub k_src: Src,
    pub v_src: Src,
    pub attention: Kernel,
    pub post: Vec<Kernel>,
}

/// The forward pass for exactly `n_tokens` tokens.
pub(crate) struct Graph {
    pub n_tokens: usize,
    pub embed: Kernel,
    pub layers: Vec<LayerOps>,
}

impl Graph {
    pub fn build(ctx: &GpuContext, w: &Weights, a: &Acts, kv: &[(GpuBuffer, GpuBuffer)], n: usize) -> Result<Graph, GpuError> {
        let embed = ctx.get_rows(&w.tok_embd, &a.ids, &a.x, n, w.embd_scale)?;
        let layers = w.layers.iter().zip(kv).map(|(l, (kc, vc))| layer(ctx, w, l, a, kc, vc, n)).collect::<Result<_, _>>()?;
        Ok(Graph { n_tokens: n, embed, layers })
    }
}

fn layer(ctx: &GpuContext, w: &Weights, l: &Layer, a: &Acts, kc: &GpuBuffer, vc: &GpuBuffer, n: usize) -> Result<LayerOps, GpuError> {
    let hp = &w.hp;
    let (e, ff, hd, eps) = (hp.n_embd, hp.n_ff, hp.head_dim, hp.eps);
    let (qw, kw, vw) = (hp.q_width(), hp.k_width(), hp.v_width());
    let mut pre = vec![
        ctx.rms_norm(&a.x, &l.attn_norm, &a.xn, e, n, eps)?, // attn_norm
        ctx.mul_mat(&l.wq, &a.xn, &a.q, n)?,                  // Qcur [n][qw]
        ctx.mul_mat(&l.wk, &a.xn, &a.k, n)?,                  // Kcur [n][kw]
        ctx.mul_mat(&l.wv, &a.xn, &a.v, n)?,                  // Vcur [n][vw]
    ];
    // llama: optional biases; gemma3: per-head RMS norms. Either way the result lands in qn/kn/vn.
    let (mut q_done, mut k_done, mut v_done) = (false, false, false);
    if let Some(b) = &l.bq {
        pre.push(ctx.add(&a.q, b, &a.qn, n * qw)?);
        q_done = true;
    }
    if let Some(b) = &l.bk {
        pre.push(ctx.add(&a.k, b, &a.kn, n * kw)?);
        k_done = true;
    }
    if let Some(b) = &l.bv {
        pre.push(ctx.add(&a.v, b, &a.vn, n * vw)?);
        v_done = true;
    }
    if let Some(qn) = &l.q_norm {
        pre.push(ctx.rms_norm(&a.q, qn, &a.qn, hd, n * hp.n_head, eps)?);
        q_done = true;
    }
    if let Some(kn) = &l.k_norm {
        pre.push(ctx.rms_norm(&a.k, kn, &a.kn, hd, n * hp.n_head_kv, eps)?);
        k_done = true;
    }
    let q = if q_done { &a.qn } else { &a.q };
    let k = if k_done { &a.kn } else { &a.k };
    let rope = |heads| RopeParams {
        n_tokens: n,
        n_heads: heads,
        head_dim: hd,
        n_rot: hp.n_rot,
        mode: w.rope_mode,
        freq_base: l.rope_base,
        freq_scale: l.rope_scale,
    };
    pre.push(ctx.rope(q, &a.pos, rope(hp.n_head))?);
    pre.push(ctx.rope(k, &a.pos, rope(hp.n_head_kv))?);
    let attention = ctx.attention(
        q,
        kc,
        vc,
        &a.attn,
        AttentionParams {
            n_head: hp.n_head,
            n_head_kv: hp.n_head_kv,
            head_dim: hd,
            n_tokens: n,
            n_kv: 1, // moved every step by set_attention_positions
            pos0: 0,
            window: l.window,
            scale: w.attn_scale,
        },
    )?;
    let act = match w.family {
        Family::Llama => GluOp::Silu,
        Family::Gemma3 => GluOp::GeluTanh,
    };
    let mut post = Vec::new();
    if l.post_attn_norm.is_none() && l.post_ffw_norm.is_none() {
        // llama: the residual adds are fused into the output products (x += W·a, in place).
        post.extend([
            ctx.mul_mat_add(&l.wo, &a.attn, &a.x, n)?,          // ffn_inp = x + attn_out
            ctx.rms_norm(&a.x, &l.ffn_norm, &a.xn, e, n, eps)?, // ffn_norm
            ctx.mul_mat(&l.gate, &a.xn, &a.gate, n)?,           // [n][ff]
            ctx.mul_mat(&l.up, &a.xn, &a.up, n)?,               // [n][ff]
            ctx.glu(&a.gate, &a.up, &a.glu, n * ff, act)?,
            ctx.mul_mat_add(&l.down, &a.glu, &a.x, n)?, // l_out = ffn_inp + ffn_out
        ]);
    } else {
        // gemma3: the block outputs are normed before their residual adds.
        post.push(ctx.mul_mat(&l.wo, &a.attn, &a.o, n)?); // attn_out [n][e]
        let mut o = &a.o;
        if let Some(norm) = &l.post_attn_norm {
            post.push(ctx.rms_norm(&a.o, norm, &a.o2, e, n, eps)?); // post_attention_norm
            o = &a.o2;
        }
        post.extend([
            ctx.add(&a.x, o, &a.x2, n * e)?,                     // ffn_inp
            ctx.rms_norm(&a.x2, &l.ffn_norm, &a.xn, e, n, eps)?, // ffn_norm
            ctx.mul_mat(&l.gate, &a.xn, &a.gate, n)?,            // [n][ff]
            ctx.mul_mat(&l.up, &a.xn, &a.up, n)?,                // [n][ff]
            ctx.glu(&a.gate, &a.up, &a.glu, n * ff, act)?,
            ctx.mul_mat(&l.down, &a.glu, &a.o, n)?, // ffn_out [n][e]
        ]);
        let mut o = &a.o;
        if let Some(norm) = &l.post_ffw_norm {
            post.push(ctx.rms_norm(&a.o, norm, &a.o2, e, n, eps)?); // post_ffw_norm
            o = &a.o2;
        }
        post.push(ctx.add(&a.x2, o, &a.x, n * e)?); // l_out
    }
    let src = |done| if done { Src::Processed } else { Src::Raw };
    Ok(LayerOps { pre, k_src: src(k_done), v_src: src(v_done), attention, post })
}

/// Output head over one row (x_last -> logits).
pub(crate) struct Head {
    pub norm: Kernel,
    pub out: Kernel,
}

impl Head {
    pub fn last(ctx: &GpuContext, w: &Weights, a: &Acts) -> Result<Head, GpuError> {
        Ok(Head {
            norm: ctx.rms_norm(&a.x_last, &w.output_norm, &a.xn_last, w.hp.n_embd, 1, w.hp.eps)?,
            out: ctx.mul_mat(w.output(), &a.xn_last, &a.logits, 1)?, // result_output [n_vocab]
        })
    }

    /// Output head over every row of an `n`-token chunk into `logits` [n][n_vocab].
    pub fn all(ctx: &GpuContext, w: &Weights, a: &Acts, logits: &GpuBuffer, n: usize) -> Result<Head, GpuError> {
        Ok(Head {
            norm: ctx.rms_norm(&a.x, &w.output_norm, &a.xn, w.hp.n_embd, n, w.hp.eps)?,
            out: ctx.mul_mat(w.output(), &a.xn, logits, n)?,
        })
    }
}
