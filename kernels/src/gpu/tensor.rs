//! Device-resident tensors: f32/u32 activation buffers and GGUF weights kept as raw block bytes.

use crate::GgmlType;

/// A storage buffer of `len` 4-byte elements (f32 activations, u32 token ids, i32 positions).
#[derive(Debug)]
pub struct GpuBuffer {
    pub(crate) buffer: wgpu::Buffer,
    pub(crate) len: usize,
}

impl GpuBuffer {
    /// Number of 4-byte elements.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn raw(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}

/// One split of a weight: rows [row_start, row_start + n_rows) in their own buffer.
#[derive(Debug)]
pub(crate) struct WeightSplit {
    pub(crate) buffer: wgpu::Buffer,
    pub(crate) row_start: usize,
    pub(crate) n_rows: usize,
}

/// A 2-D GGUF weight `ne = [k, n]` (n rows of k elements) uploaded as its raw block bytes.
/// Rows are split across several buffers when the tensor exceeds the adapter's storage binding
/// limit (128 MiB on lavapipe; gemma-3's Q8_0 token_embd is about 178 MB).
#[derive(Debug)]
pub struct GpuWeight {
    pub(crate) ty: GgmlType,
    pub(crate) k: usize,
    pub(crate) n: usize,
    pub(crate) row_bytes: usize,
    pub(crate) splits: Vec<WeightSplit>,
}

impl GpuWeight {
    pub fn ggml_type(&self) -> GgmlType {
        self.ty
    }

    /// Row length `ne[0]`.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Row count `ne[1]`.
    pub fn n(&self) -> usize {
        self.n
    }

    /// How many buffers the rows are split over.
    pub fn n_splits(&self) -> usize {
        self.splits.len()
    }

    /// Bytes on the device (the GGUF bytes, each split padded to 4).
    pub fn size_bytes(&self) -> u64 {
        self.splits.iter().map(|s| s.buffer.size()).sum()
    }
}

/// Rows per split so that one split fits a storage binding of `limit` bytes.
pub(crate) fn rows_per_split(row_bytes: usize, n: usize, limit: u64) -> Option<usize> {
    let per = (limit / row_bytes as u64) as usize;
    (per > 0).then_some(per.min(n.max(1)))
}

#[cfg(test)]
mod tests {
    use super::rows_per_split;

    #[test]
    fn split_rows_respect_binding_limit() {
        // gemma-3-270m token_embd: Q8_0, 640 x 262144, 680 B/row, lavapipe limit 128 MiB.
        let per = rows_per_split(680, 262_144, 128 << 20);
        assert_eq!(per, Some(197_379));
        assert_eq!(rows_per_split(680, 10, 128 << 20), Some(10));
        assert_eq!(rows_per_split(1000, 10, 999), None);
    }
}
