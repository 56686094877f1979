//! The KV cache of one sequence: per layer, the keys and values attention reads.
//!
//! Layout per layer, f16 as in llama.cpp's default cache (half the memory of f32; attention
//! widens them as it reads):
//! - keys `k[slot][kv_head][head_dim]`;
//! - values transposed in blocks of [`V_BLOCK`] slots, `v[slot / 16][kv_head][head_dim_v][slot
//!   % 16]` ([`KvCache::value_index`]), as llama.cpp transposes its V cache: Σ p·v then loads
//!   sixteen positions of one dimension at once, and each widened vector serves every query
//!   head of its KV head. Blocks are appended as the cache grows.
//!
//! Full-attention layers keep every position (`slot = pos`). Sliding-window layers only ever
//! read the last `window` positions, so they keep a ring of `window + MAX_BATCH` slots
//! (`slot = pos % ring`, the ring a whole number of value blocks): enough for a whole batch to
//! be stored before it attends. For gemma3 at 32k context that is 5/6 of the layers holding
//! 768 positions instead of 32,768. Storage grows in chunks as positions arrive, never beyond
//! what a layer can use.

use half::f16;
use half::slice::HalfFloatSliceExt;

use super::MAX_BATCH;
use crate::error::{EngineError, Result};

const GROW_CHUNK: usize = 256;

/// Slots per block of the value layout: a ring's slot keeps its position's lane (`pos % 16`).
pub const V_BLOCK: usize = 16;

struct Layer {
    /// Slots this layer can hold: the context length, or `window + MAX_BATCH` for a ring.
    slots: usize,
    window: Option<usize>,
    k: Vec<f16>,
    v: Vec<f16>,
}

pub struct KvCache {
    capacity: usize,
    len: usize,
    k_width: usize,
    v_width: usize,
    layers: Vec<Layer>,
}

impl KvCache {
    /// `windows[l]` is layer l's sliding window (None: full attention).
    pub fn new(windows: &[Option<usize>], k_width: usize, v_width: usize, capacity: usize) -> KvCache {
        let layers = windows
            .iter()
            .map(|&window| Layer {
                slots: window.map_or(capacity, |w| (w + MAX_BATCH).next_multiple_of(V_BLOCK).min(capacity)),
                window,
                k: Vec::new(),
                v: Vec::new(),
            })
            .collect();
        KvCache { capacity, len: 0, k_width, v_width, layers }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The context length: positions this cache can take in all.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every position from `len` on, to reuse a shared prefix; returns the length kept.
    /// A ring layer that has already overwritten what position `len` would need to see makes
    /// the whole prefix unusable: then the cache starts over (returns 0).
    pub fn truncate(&mut self, len: usize) -> usize {
        let len = self.len.min(len);
        let ring_ok = self.layers.iter().all(|l| match l.window {
            Some(w) if l.slots < self.capacity => self.len - len + w <= l.slots,
            _ => true,
        });
        self.len = if ring_ok { len } else { 0 };
        self.len
    }

    /// Makes room for `n` more positions; fails when the context would overflow.
    pub fn reserve(&mut self, n: usize) -> Result<()> {
        let need = self.len + n;
        if need > self.capacity {
            return Err(EngineError::ContextOverflow { prompt: need, ctx: self.capacity });
        }
        if n > MAX_BATCH && self.layers.iter().any(|l| l.slots < self.capacity) {
            return Err(EngineError::InvalidRequest(format!("a batch of {n} tokens exceeds {MAX_BATCH} on a sliding-window cache")));
        }
        let (kw, vw) = (self.k_width, self.v_width);
        for l in &mut self.layers {
            let have = l.k.len() / kw.max(1);
            let want = (need.div_ceil(GROW_CHUNK) * GROW_CHUNK).min(l.slots);
            if want > have {
                l.k.resize(want * kw, f16::ZERO);
                l.v.resize(want.next_multiple_of(V_BLOCK) * vw, f16::ZERO);
            }
        }
        Ok(())
    }

    /// The slot position `pos` occupies in `layer`.
    #[inline]
    pub fn slot(&self, layer: usize, pos: usize) -> usize {
        pos % self.layers[layer].slots
    }

    /// Stores the key and value rows of `layer` at absolute position `pos` (reserved first).
    pub fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let (kw, vw) = (self.k_width, self.v_width);
        let s = self.slot(layer, pos);
        let l = &mut self.layers[layer];
        l.k[s * kw..(s + 1) * kw].convert_from_f32_slice(k);
        let at = (s / V_BLOCK) * vw * V_BLOCK + s % V_BLOCK;
        for (dst, &x) in l.v[at..].iter_mut().step_by(V_BLOCK).zip(&v[..vw]) {
            *dst = f16::from_f32(x);
        }
    }

    /// Marks `n` more positions as filled (after every layer has stored them).
    pub fn advance(&mut self, n: usize) {
        self.len += n;
    }

    /// Keys of `layer`, indexed by [`KvCache::slot`].
    pub fn keys(&self, layer: usize) -> &[f16] {
        &self.layers[layer].k
    }

    /// Values of `layer`: element `e` of slot `s` (see [`KvCache::slot`]) at
    /// [`KvCache::value_index`]`(s, e)`.
    pub fn values(&self, layer: usize) -> &[f16] {
        &self.layers[layer].v
    }

    /// Where element `e` (of the `v_width` a position holds) of slot `slot` lies in
    /// [`KvCache::values`]: blocks of [`V_BLOCK`] slots, dimension-major inside a block.
    #[inline]
    pub fn value_index(&self, slot: usize, e: usize) -> usize {
        ((slot / V_BLOCK) * self.v_width + e) * V_BLOCK + slot % V_BLOCK
    }

    /// Bytes held by the cache now.
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(|l| (l.k.len() + l.v.len()) * std::mem::size_of::<f16>()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_layers_wrap_and_full_layers_do_not() {
        let mut c = KvCache::new(&[None, Some(4)], 1, 1, 4096);
        for pos in 0..2000 {
            c.reserve(1).unwrap();
            c.store(0, pos, &[pos as f32], &[0.0]);
            c.store(1, pos, &[pos as f32], &[0.0]);
            c.advance(1);
        }
        assert_eq!(c.keys(0)[c.slot(0, 1234)].to_f32(), 1234.0);
        // The ring still holds the last window + batch positions.
        for pos in 2000 - 4 - MAX_BATCH..2000 {
            assert_eq!(c.keys(1)[c.slot(1, pos)].to_f32(), pos as f32);
        }
        assert!(c.keys(1).len() <= (4 + MAX_BATCH).next_multiple_of(V_BLOCK));
        // Going back further than the ring remembers starts over; a short step back keeps it.
        assert_eq!(c.truncate(1990), 1990);
        assert_eq!(c.truncate(10), 0);
    }

    #[test]
    fn values_lie_in_blocks_of_sixteen_slots_and_keep_their_lane_in_a_ring() {
        // Two values a position, a full layer and a ring of window 5 (21 + MAX_BATCH slots
        // rounded to whole blocks).
        let mut c = KvCache::new(&[None, Some(5)], 1, 2, 1000);
        for pos in 0..700 {
            c.reserve(1).unwrap();
            let v = [pos as f32, -(pos as f32)];
            c.store(0, pos, &[0.0], &v);
            c.store(1, pos, &[0.0], &v);
            c.advance(1);
        }
        for layer in 0..2 {
            for pos in 700 - 5..700 {
                let s = c.slot(layer, pos);
                assert_eq!(s % V_BLOCK, pos % V_BLOCK, "layer {layer} pos {pos}");
                let vals = c.values(layer);
                assert_eq!((vals[c.value_index(s, 0)].to_f32(), vals[c.value_index(s, 1)].to_f32()), (pos as f32, -(pos as f32)));
            }
        }
        // Slot 17's second value: block 1, dimension 1, lane 1.
        assert_eq!(c.value_index(17, 1), (2 + 1) * 16 + 1);
        assert_eq!(c.values(0)[c.value_index(17, 1)].to_f32(), -17.0);
        assert_eq!(c.values(1).len() % (2 * V_BLOCK), 0);
    }

    #[test]
    fn overflow_is_an_error() {
        let mut c = KvCache::new(&[None], 2, 2, 8);
        c.reserve(8).unwrap();
        assert!(matches!(c.reserve(9), Err(EngineError::ContextOverflow { .. })));
    }
}
