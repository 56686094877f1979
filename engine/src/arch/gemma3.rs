//! `gemma3` (spec §5.1).
//!
//! h = token_embd[ids] · sqrt(n_embd)
//! per layer il (sliding when il % 6 < 5: window n_swa, RoPE base 10000; else global: rope.freq_base):
//!     x = rms_norm(h)·attn_norm;  Q,K,V = Wq·x, Wk·x, Wv·x
//!     Q = rms_norm_per_head(Q)·attn_q_norm;  K = rms_norm_per_head(K)·attn_k_norm   (before RoPE)
//!     RoPE NEOX;  Q *= 1/sqrt(head_dim);  attention (GQA, causal, sliding window on local layers)
//!     sa = rms_norm(Wo·attn)·post_attention_norm + h
//!     f = W_down·(gelu_tanh(W_gate·x') ⊙ W_up·x'),  x' = rms_norm(sa)·ffn_norm   (GELU from ggml's f16 table, ops::geglu)
//!     h = rms_norm(f)·post_ffw_norm + sa
//! logits = token_embd · (rms_norm(h)·output_norm)   (tied unless output.weight exists)
//! The converter already stored 1 + w in every *norm.weight: the norms multiply by w as is.

use crate::error::Result;
use crate::gguf::GgufFile;
use crate::model::attention::AttnShape;
use crate::model::exec::{grow, Exec, OutputKind, SeqInput};
use crate::model::hparams::Hparams;
use crate::model::linear::{load_vector, Linear};
use crate::model::ops::{for_rows2, geglu, norm_add_rows, norm_rows, rms_norm, Rope, RopeMode};
use crate::model::steps;

/// Every sixth layer attends globally; the others are sliding-window layers.
const SWA_PATTERN: usize = 6;
const ROPE_BASE_SWA: f32 = 10000.0;

pub struct Layer {
    attn_norm: Vec<f32>,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    q_norm: Vec<f32>,
    k_norm: Vec<f32>,
    wo: Linear,
    post_attn_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    gate: Linear,
    up: Linear,
    down: Linear,
    post_ffw_norm: Vec<f32>,
    rope: Rope,
    attn: AttnShape,
}

pub struct Gemma3 {
    pub hp: Hparams,
    tok_embd: Linear,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    output: Linear,
}

impl Gemma3 {
    pub fn load(f: &GgufFile, n_vocab: usize) -> Result<Gemma3> {
        let hp = Hparams::read(f, "gemma3", n_vocab)?;
        let (e, ff, hd) = (hp.n_embd, hp.n_ff, hp.head_dim);
        let window = match f.get("gemma3.attention.sliding_window") {
            Some(_) => Some(f.get_u32("gemma3.attention.sliding_window")? as usize).filter(|&w| w > 0),
            None => None,
        };
        let tok_embd = Linear::load(f, "token_embd.weight", e, n_vocab)?;
        let output = Linear::optional(f, "output.weight", e, n_vocab)?.unwrap_or(tok_embd);
        let mut layers = Vec::with_capacity(hp.n_layer);
        for i in 0..hp.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}");
            let sliding = window.is_some() && i % SWA_PATTERN < SWA_PATTERN - 1;
            let rope = if sliding {
                Rope { mode: RopeMode::Neox, n_rot: hp.n_rot, freq_base: ROPE_BASE_SWA, freq_scale: 1.0 }
            } else {
                Rope { mode: RopeMode::Neox, n_rot: hp.n_rot, freq_base: hp.rope_base, freq_scale: hp.rope_scale }
            };
            layers.push(Layer {
                attn_norm: load_vector(f, &n("attn_norm.weight"), e)?,
                wq: Linear::load(f, &n("attn_q.weight"), e, hp.q_width())?,
                wk: Linear::load(f, &n("attn_k.weight"), e, hp.k_width())?,
                wv: Linear::load(f, &n("attn_v.weight"), e, hp.v_width())?,
                q_norm: load_vector(f, &n("attn_q_norm.weight"), hd)?,
                k_norm: load_vector(f, &n("attn_k_norm.weight"), hd)?,
                wo: Linear::load(f, &n("attn_output.weight"), hp.n_head * hp.head_dim_v, e)?,
                post_attn_norm: load_vector(f, &n("post_attention_norm.weight"), e)?,
                ffn_norm: load_vector(f, &n("ffn_norm.weight"), e)?,
                gate: Linear::load(f, &n("ffn_gate.weight"), e, ff)?,
                up: Linear::load(f, &n("ffn_up.weight"), e, ff)?,
                down: Linear::load(f, &n("ffn_down.weight"), ff, e)?,
                post_ffw_norm: load_vector(f, &n("post_ffw_norm.weight"), e)?,
                rope,
                // Q is scaled by 1/sqrt(head_dim) before attention, so q·k is not scaled again.
                attn: AttnShape {
                    n_head: hp.n_head,
                    n_kv_head: hp.n_head_kv,
                    head_dim: hd,
                    head_dim_v: hp.head_dim_v,
                    scale: 1.0,
                    window: if sliding { window } else { None },
                },
            });
        }
        Ok(Gemma3 { output_norm: load_vector(f, "output_norm.weight", e)?, hp, tok_embd, layers, output })
    }

    pub fn kv_windows(&self) -> Vec<Option<usize>> {
        self.layers.iter().map(|l| l.attn.window).collect()
    }

    pub fn forward(&self, data: &[u8], ex: &mut Exec, seqs: &mut [SeqInput], kind: OutputKind, out: &mut Vec<f32>) -> Result<()> {
        let hp = &self.hp;
        let n = steps::begin(seqs, hp.n_vocab)?;
        let (e, ff, hd) = (hp.n_embd, hp.n_ff, hp.head_dim);
        let (qw, kw, vw, ow) = (hp.q_width(), hp.k_width(), hp.v_width(), hp.n_head * hp.head_dim_v);
        let q_scale = 1.0 / (hd as f32).sqrt();
        {
            let s = &mut ex.s;
            for (buf, w) in [(&mut s.x, e), (&mut s.xn, e), (&mut s.q, qw), (&mut s.k, kw), (&mut s.v, vw), (&mut s.attn, ow)] {
                grow(buf, n * w);
            }
            for buf in [&mut s.gate, &mut s.up] {
                grow(buf, steps::ffn_rows(n) * ff);
            }
        }
        steps::embed(data, &self.tok_embd, seqs, &mut ex.s.x, (e as f32).sqrt())?;

        for (il, l) in self.layers.iter().enumerate() {
            let Exec { pool, s } = ex;
            norm_rows(pool, n, &s.x, &mut s.xn, e, &l.attn_norm, hp.eps);
            s.acts.matmuls(pool, data, &s.xn, n, &mut [(&l.wq, &mut s.q[..]), (&l.wk, &mut s.k[..]), (&l.wv, &mut s.v[..])]);
            // Q/K norms per head, then the attention scale on Q.
            for_rows2(pool, n, &mut s.q, qw, &mut s.k, kw, |_, q, k| {
                q.chunks_exact_mut(hd).for_each(|h| rms_norm(h, &l.q_norm, hp.eps));
                k.chunks_exact_mut(hd).for_each(|h| rms_norm(h, &l.k_norm, hp.eps));
                q.iter_mut().for_each(|v| *v *= q_scale);
            });
            let (mut q, mut k, v, mut attn) = (std::mem::take(&mut s.q), std::mem::take(&mut s.k), std::mem::take(&mut s.v), std::mem::take(&mut s.attn));
            steps::rope_store_attend(ex, seqs, il, &l.rope, &l.attn, &mut q, &mut k, &v, &mut attn);
            let Exec { pool, s } = ex;
            (s.q, s.k, s.v) = (q, k, v);
            // attn_out → post_attention_norm → sa = o + h   (kept in x)
            s.acts.matmul(pool, data, &l.wo, &attn, n, &mut s.xn);
            s.attn = attn;
            norm_add_rows(pool, n, &mut s.xn, &mut s.x, e, &l.post_attn_norm, hp.eps);
            // ffn_norm → GELU-tanh gated FFN → post_ffw_norm → h = f + sa
            norm_rows(pool, n, &s.x, &mut s.xn, e, &l.ffn_norm, hp.eps);
            steps::gated_ffn(ex, data, [&l.gate, &l.up, &l.down], n, e, ff, geglu);
            let Exec { pool, s } = ex;
            norm_add_rows(pool, n, &mut s.xn, &mut s.x, e, &l.post_ffw_norm, hp.eps);
        }
        steps::finish(data, ex, seqs, &self.output_norm, hp.eps, &self.output, kind, out);
        Ok(())
    }
}
