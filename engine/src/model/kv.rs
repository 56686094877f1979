//! The KV cache of one sequence: per layer, keys and values of every position seen so far.
//!
//! Layout per layer: `k[pos][kv_head][head_dim]` and `v[pos][kv_head][head_dim_v]`, f32.
//! Storage grows in chunks as positions arrive (a short chat does not pay for a 4096-token
//! context) and never beyond `capacity`, the context length the sequence was created with.
//! Sliding-window layers keep every position too; the attention mask limits what they see.

use crate::error::{EngineError, Result};

const GROW_CHUNK: usize = 256;

pub struct KvCache {
    capacity: usize,
    len: usize,
    k_width: usize,
    v_width: usize,
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl KvCache {
    pub fn new(n_layer: usize, k_width: usize, v_width: usize, capacity: usize) -> KvCache {
        KvCache {
            capacity,
            len: 0,
            k_width,
            v_width,
            k: (0..n_layer).map(|_| Vec::new()).collect(),
            v: (0..n_layer).map(|_| Vec::new()).collect(),
        }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every position from `len` on (used to reuse a shared prefix).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Makes room for `n` more positions; fails when the context would overflow.
    pub fn reserve(&mut self, n: usize) -> Result<()> {
        let need = self.len + n;
        if need > self.capacity {
            return Err(EngineError::ContextOverflow { prompt: need, ctx: self.capacity });
        }
        let have = self.k.first().map_or(0, |k| k.len() / self.k_width.max(1));
        if need > have {
            let target = (need.div_ceil(GROW_CHUNK) * GROW_CHUNK).min(self.capacity);
            for (k, v) in self.k.iter_mut().zip(self.v.iter_mut()) {
                k.resize(target * self.k_width, 0.0);
                v.resize(target * self.v_width, 0.0);
            }
        }
        Ok(())
    }

    /// Stores the key and value rows of `layer` at absolute position `pos` (< len + reserved).
    pub fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let kw = self.k_width;
        let vw = self.v_width;
        self.k[layer][pos * kw..(pos + 1) * kw].copy_from_slice(k);
        self.v[layer][pos * vw..(pos + 1) * vw].copy_from_slice(v);
    }

    /// Marks `n` more positions as filled (after every layer has stored them).
    pub fn advance(&mut self, n: usize) {
        self.len += n;
    }

    pub fn keys(&self, layer: usize) -> &[f32] {
        &self.k[layer]
    }

    pub fn values(&self, layer: usize) -> &[f32] {
        &self.v[layer]
    }

    /// Bytes held by the cache now.
    pub fn bytes(&self) -> usize {
        self.k.iter().chain(self.v.iter()).map(|b| b.len() * 4).sum()
    }
}
