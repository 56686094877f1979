//! What one forward pass works with: the thread pool, reusable buffers, and the batch layout.

use kiln_kernels::ThreadPool;

use super::kv::KvCache;
use super::linear::ActSet;

/// Which rows of a sequence's batch produce output (logits or hidden states).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outputs {
    /// Only the last token (generation).
    Last,
    /// Every token (teacher-forced evaluation, embeddings).
    All,
}

/// What the forward pass returns per output row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    Logits,
    /// The final normed hidden state (embeddings).
    Hidden,
}

/// One sequence's part of a batch: its cache and the tokens that follow what the cache holds.
pub struct SeqInput<'a> {
    pub cache: &'a mut KvCache,
    pub tokens: &'a [u32],
    pub outputs: Outputs,
}

impl SeqInput<'_> {
    pub fn n_outputs(&self) -> usize {
        match self.outputs {
            Outputs::Last => usize::from(!self.tokens.is_empty()),
            Outputs::All => self.tokens.len(),
        }
    }
}

/// Buffers reused across forward passes; they only grow, so a warm decode loop allocates nothing.
#[derive(Default)]
pub struct Scratch {
    pub x: Vec<f32>,     // [n][n_embd]   residual stream
    pub xn: Vec<f32>,    // [n][n_embd]   normed input of a block; then its output (wo, down),
                         //               once the input is quantized, before the residual add
    pub q: Vec<f32>,     // [n][n_head·head_dim]
    pub k: Vec<f32>,     // [n][n_head_kv·head_dim]
    pub v: Vec<f32>,     // [n][n_head_kv·head_dim_v]
    pub attn: Vec<f32>,  // [n][n_head·head_dim_v]
    pub gate: Vec<f32>,  // [n][n_ff]
    pub up: Vec<f32>,    // [n][n_ff]
    pub rows: Vec<f32>,  // [n_out][n_embd] rows that produce output
    pub acts: ActSet,
}

pub fn grow(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
}

pub struct Exec {
    pub pool: ThreadPool,
    pub s: Scratch,
}

impl Exec {
    pub fn new(threads: usize) -> Exec {
        Exec { pool: ThreadPool::new(threads.max(1)), s: Scratch::default() }
    }
}
