//! Hyper-parameters every architecture reads from GGUF metadata (`{arch}.…` keys).

use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;

#[derive(Clone, Debug)]
pub struct Hparams {
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub head_dim_v: usize,
    pub n_ff: usize,
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    pub eps: f32,
    pub rope_base: f32,
    /// 1 / rope.scaling.factor for linear scaling, else 1.
    pub rope_scale: f32,
    pub n_rot: usize,
}

fn bad(msg: String) -> EngineError {
    EngineError::BadModel(msg)
}

impl Hparams {
    pub fn read(f: &GgufFile, arch: &str, n_vocab: usize) -> Result<Hparams> {
        let key = |k: &str| format!("{arch}.{k}");
        let req = |k: &str| -> Result<usize> { Ok(f.get_u32(&key(k))? as usize) };
        let opt = |k: &str| -> Result<Option<usize>> {
            match f.get(&key(k)) {
                None => Ok(None),
                Some(_) => Ok(Some(f.get_u32(&key(k))? as usize)),
            }
        };
        let n_embd = req("embedding_length")?;
        let n_layer = req("block_count")?;
        let n_head = req("attention.head_count")?;
        let n_head_kv = opt("attention.head_count_kv")?.unwrap_or(n_head);
        let n_ff = req("feed_forward_length")?;
        let n_ctx_train = opt("context_length")?.unwrap_or(2048);
        if n_embd == 0 || n_layer == 0 || n_head == 0 || n_head_kv == 0 || n_ff == 0 {
            return Err(bad(format!("{arch}: a dimension is zero")));
        }
        if n_head % n_head_kv != 0 {
            return Err(bad(format!("{arch}: head_count {n_head} is not a multiple of head_count_kv {n_head_kv}")));
        }
        if n_layer > 1024 || n_embd > 1 << 16 || n_head > 1024 {
            return Err(bad(format!("{arch}: implausible sizes (layers {n_layer}, embedding {n_embd}, heads {n_head})")));
        }
        let head_dim = opt("attention.key_length")?.unwrap_or(n_embd / n_head);
        let head_dim_v = opt("attention.value_length")?.unwrap_or(head_dim);
        if head_dim == 0 || head_dim % 2 != 0 || head_dim > 1024 || head_dim_v == 0 || head_dim_v > 1024 {
            return Err(bad(format!("{arch}: head dimension {head_dim}/{head_dim_v} unsupported")));
        }
        let n_rot = opt("rope.dimension_count")?.unwrap_or(head_dim);
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(bad(format!("{arch}: rope.dimension_count {n_rot} exceeds head dimension {head_dim}")));
        }
        let eps = match f.get(&key("attention.layer_norm_rms_epsilon")) {
            Some(_) => f.get_f32(&key("attention.layer_norm_rms_epsilon"))?,
            None => 1e-5,
        };
        let rope_base = match f.get(&key("rope.freq_base")) {
            Some(_) => f.get_f32(&key("rope.freq_base"))?,
            None => 10000.0,
        };
        let mut rope_scale = 1.0;
        if f.get(&key("rope.scaling.type")).is_some() {
            let ty = f.get_str(&key("rope.scaling.type"))?;
            if ty == "linear" {
                let factor = f.get_f32(&key("rope.scaling.factor"))?;
                if !(factor.is_finite() && factor > 0.0) {
                    return Err(bad(format!("{arch}: rope.scaling.factor {factor} is invalid")));
                }
                rope_scale = 1.0 / factor;
            } else if ty != "none" {
                return Err(bad(format!("{arch}: rope scaling type {ty:?} is not supported")));
            }
        }
        if !(eps.is_finite() && eps > 0.0 && rope_base.is_finite() && rope_base > 0.0) {
            return Err(bad(format!("{arch}: epsilon {eps} or rope base {rope_base} is invalid")));
        }
        Ok(Hparams {
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            head_dim_v,
            n_ff,
            n_vocab,
            n_ctx_train,
            eps,
            rope_base,
            rope_scale,
            n_rot,
        })
    }

    pub fn q_width(&self) -> usize {
        self.n_head * self.head_dim
    }
    pub fn k_width(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
    pub fn v_width(&self) -> usize {
        self.n_head_kv * self.head_dim_v
    }
}
