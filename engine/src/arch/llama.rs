//! `llama`: SmolLM2, TinyLlama, Llama 2/3, Mistral shapes (spec §5.2).
//!
//! h = token_embd[ids]
//! per layer:  x = rms_norm(h)·attn_norm;  Q,K,V = Wq·x, Wk·x, Wv·x (+ biases)
//!             RoPE NORM on Q, K (the converter permuted Wq/Wk for it); attention with GQA
//!             h += Wo·attn;  x = rms_norm(h)·ffn_norm;  h += W_down·(silu(W_gate·x) ⊙ W_up·x)
//! logits = output · (rms_norm(h)·output_norm)   (output tied to token_embd when absent)

use crate::error::Result;
use crate::gguf::GgufFile;
use crate::model::attention::AttnShape;
use crate::model::exec::{grow, Exec, OutputKind, SeqInput};
use crate::model::hparams::Hparams;
use crate::model::linear::{load_vector, optional_vector, Linear};
use crate::model::ops::{add_in_place, add_norm_rows, for_rows2, gated, norm_rows, silu, Rope, RopeMode};
use crate::model::steps;

pub struct Layer {
    attn_norm: Vec<f32>,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    bq: Option<Vec<f32>>,
    bk: Option<Vec<f32>>,
    bv: Option<Vec<f32>>,
    wo: Linear,
    ffn_norm: Vec<f32>,
    gate: Linear,
    up: Linear,
    down: Linear,
}

pub struct Llama {
    pub hp: Hparams,
    tok_embd: Linear,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    output: Linear,
    rope: Rope,
    attn: AttnShape,
}

impl Llama {
    pub fn load(f: &GgufFile, n_vocab: usize) -> Result<Llama> {
        let hp = Hparams::read(f, "llama", n_vocab)?;
        let (e, ff) = (hp.n_embd, hp.n_ff);
        let tok_embd = Linear::load(f, "token_embd.weight", e, n_vocab)?;
        let output = Linear::optional(f, "output.weight", e, n_vocab)?.unwrap_or(tok_embd);
        let mut layers = Vec::with_capacity(hp.n_layer);
        for i in 0..hp.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}");
            layers.push(Layer {
                attn_norm: load_vector(f, &n("attn_norm.weight"), e)?,
                wq: Linear::load(f, &n("attn_q.weight"), e, hp.q_width())?,
                wk: Linear::load(f, &n("attn_k.weight"), e, hp.k_width())?,
                wv: Linear::load(f, &n("attn_v.weight"), e, hp.v_width())?,
                bq: optional_vector(f, &n("attn_q.bias"), hp.q_width())?,
                bk: optional_vector(f, &n("attn_k.bias"), hp.k_width())?,
                bv: optional_vector(f, &n("attn_v.bias"), hp.v_width())?,
                wo: Linear::load(f, &n("attn_output.weight"), hp.n_head * hp.head_dim_v, e)?,
                ffn_norm: load_vector(f, &n("ffn_norm.weight"), e)?,
                gate: Linear::load(f, &n("ffn_gate.weight"), e, ff)?,
                up: Linear::load(f, &n("ffn_up.weight"), e, ff)?,
                down: Linear::load(f, &n("ffn_down.weight"), ff, e)?,
            });
        }
        let rope = Rope { mode: RopeMode::Norm, n_rot: hp.n_rot, freq_base: hp.rope_base, freq_scale: hp.rope_scale };
        let attn = AttnShape {
            n_head: hp.n_head,
            n_kv_head: hp.n_head_kv,
            head_dim: hp.head_dim,
            head_dim_v: hp.head_dim_v,
            scale: 1.0 / (hp.head_dim as f32).sqrt(),
            window: None,
        };
        Ok(Llama { output_norm: load_vector(f, "output_norm.weight", e)?, hp, tok_embd, layers, output, rope, attn })
    }

    pub fn forward(&self, data: &[u8], ex: &mut Exec, seqs: &mut [SeqInput], kind: OutputKind, out: &mut Vec<f32>) -> Result<()> {
        let hp = &self.hp;
        let n = steps::begin(seqs, hp.n_vocab)?;
        let (e, ff) = (hp.n_embd, hp.n_ff);
        let (qw, kw, vw, ow) = (hp.q_width(), hp.k_width(), hp.v_width(), hp.n_head * hp.head_dim_v);
        {
            let s = &mut ex.s;
            for (buf, w) in [(&mut s.x, e), (&mut s.xn, e), (&mut s.q, qw), (&mut s.k, kw), (&mut s.v, vw), (&mut s.attn, ow)] {
                grow(buf, n * w);
            }
            for buf in [&mut s.gate, &mut s.up] {
                grow(buf, steps::ffn_rows(n) * ff);
            }
        }
        steps::embed(data, &self.tok_embd, seqs, &mut ex.s.x, 1.0)?;

        for (il, l) in self.layers.iter().enumerate() {
            let Exec { pool, s } = ex;
            // attn_norm: xn = rms_norm(x) · attn_norm
            norm_rows(pool, n, &s.x, &mut s.xn, e, &l.attn_norm, hp.eps);
            // Qcur, Kcur, Vcur: [n][heads·head_dim], one quantization of xn shared by all three
            s.acts.matmuls(pool, data, &s.xn, n, &mut [(&l.wq, &mut s.q[..]), (&l.wk, &mut s.k[..]), (&l.wv, &mut s.v[..])]);
            for (buf, b, w) in [(&mut s.q, &l.bq, qw), (&mut s.k, &l.bk, kw), (&mut s.v, &l.bv, vw)] {
                if let Some(b) = b {
                    buf[..n * w].chunks_exact_mut(w).for_each(|row| add_in_place(row, b));
                }
            }
            let (mut q, mut k, v, mut attn) = (std::mem::take(&mut s.q), std::mem::take(&mut s.k), std::mem::take(&mut s.v), std::mem::take(&mut s.attn));
            steps::rope_store_attend(ex, seqs, il, &self.rope, &self.attn, &mut q, &mut k, &v, &mut attn);
            let Exec { pool, s } = ex;
            (s.q, s.k, s.v) = (q, k, v);
            // attn_out: o = Wo · attn; h += o
            s.acts.matmul(pool, data, &l.wo, &attn, n, &mut s.xn);
            s.attn = attn;
            // h += o, then the ffn's input x = rms_norm(h) · ffn_norm
            add_norm_rows(pool, n, &mut s.x, &mut s.xn, e, &l.ffn_norm, hp.eps);
            // ffn: h += W_down · (silu(W_gate·x) ⊙ W_up·x)
            steps::gated_ffn(ex, data, [&l.gate, &l.up, &l.down], n, e, ff, |g, u| gated(g, u, silu));
            let Exec { pool, s } = ex;
            for_rows2(pool, n, &mut s.x, e, &mut s.xn, e, |_, x, o| add_in_place(x, o));
        }
        steps::finish(data, ex, seqs, &self.output_norm, hp.eps, &self.output, kind, out);
        Ok(())
    }
}
