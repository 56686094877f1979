//! Architectures: one file each, with the forward pass written top to bottom.
//! Adding an architecture means adding a file here and a line in [`Arch::load`].

pub mod gemma3;
pub mod llama;

use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;
use crate::model::exec::{Exec, OutputKind, SeqInput};
use crate::model::hparams::Hparams;

pub enum Arch {
    Llama(llama::Llama),
    Gemma3(gemma3::Gemma3),
}

impl Arch {
    pub fn load(f: &GgufFile, arch: &str, n_vocab: usize) -> Result<Arch> {
        match arch {
            "llama" => Ok(Arch::Llama(llama::Llama::load(f, n_vocab)?)),
            "gemma3" => Ok(Arch::Gemma3(gemma3::Gemma3::load(f, n_vocab)?)),
            other => Err(EngineError::UnsupportedArchitecture(other.to_string())),
        }
    }

    pub fn hparams(&self) -> &Hparams {
        match self {
            Arch::Llama(m) => &m.hp,
            Arch::Gemma3(m) => &m.hp,
        }
    }

    /// Each layer's sliding window (None: full attention), for sizing the KV cache.
    pub fn kv_windows(&self) -> Vec<Option<usize>> {
        match self {
            Arch::Llama(m) => vec![None; m.hp.n_layer],
            Arch::Gemma3(m) => m.kv_windows(),
        }
    }

    /// Runs the batch; appends one row per output (n_vocab logits or n_embd hidden) to `out`.
    pub fn forward(&self, data: &[u8], ex: &mut Exec, seqs: &mut [SeqInput], kind: OutputKind, out: &mut Vec<f32>) -> Result<()> {
        match self {
            Arch::Llama(m) => m.forward(data, ex, seqs, kind, out),
            Arch::Gemma3(m) => m.forward(data, ex, seqs, kind, out),
        }
    }
}
