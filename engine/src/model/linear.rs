//! Weights as views into the memory-mapped GGUF file, and the matrix products over them.

use kiln_kernels::{matmul_q, GgmlType, QMatrix, QuantizedActs, ThreadPool};

use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;

/// A weight matrix `[rows][cols]` (ggml `ne = [cols, rows]`) kept in the file's own encoding.
#[derive(Clone, Copy, Debug)]
pub struct Linear {
    pub ty: GgmlType,
    pub offset: usize,
    pub len: usize,
    pub rows: usize,
    pub cols: usize,
}

impl Linear {
    /// Looks up `name` and checks it is `[rows][cols]`; `rows == 0` accepts any row count.
    pub fn load(f: &GgufFile, name: &str, cols: usize, rows: usize) -> Result<Linear> {
        let t = f
            .tensor(name)
            .ok_or_else(|| EngineError::BadModel(format!("tensor {name} is missing")))?;
        let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
        let ok = match dims.as_slice() {
            [c, r] => *c == cols && (rows == 0 || *r == rows),
            _ => false,
        };
        if !ok {
            return Err(EngineError::BadModel(format!(
                "tensor {name} has shape {dims:?}, expected [{cols}, {rows}]"
            )));
        }
        let base = f.tensor_data(t).as_ptr() as usize - f.data().as_ptr() as usize;
        Ok(Linear { ty: t.ty, offset: base, len: t.n_bytes as usize, rows: dims[1], cols })
    }

    pub fn optional(f: &GgufFile, name: &str, cols: usize, rows: usize) -> Result<Option<Linear>> {
        match f.tensor(name) {
            Some(_) => Linear::load(f, name, cols, rows).map(Some),
            None => Ok(None),
        }
    }

    pub fn bytes<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        &data[self.offset..self.offset + self.len]
    }

    pub fn matrix<'a>(&self, data: &'a [u8]) -> QMatrix<'a> {
        QMatrix { ty: self.ty, data: self.bytes(data), rows: self.rows, cols: self.cols }
    }

    /// Dequantizes row `r` into `out` (embedding lookup).
    pub fn row(&self, data: &[u8], r: usize, out: &mut [f32]) -> Result<()> {
        let rb = self.len / self.rows;
        let bytes = &self.bytes(data)[r * rb..(r + 1) * rb];
        kiln_kernels::dequantize_row(self.ty, bytes, out)?;
        Ok(())
    }
}

/// Loads a 1-D tensor (norm weights, biases) as f32, checking its length.
pub fn load_vector(f: &GgufFile, name: &str, len: usize) -> Result<Vec<f32>> {
    let t = f
        .tensor(name)
        .ok_or_else(|| EngineError::BadModel(format!("tensor {name} is missing")))?;
    if t.n_elements as usize != len {
        return Err(EngineError::BadModel(format!(
            "tensor {name} has {} elements, expected {len}",
            t.n_elements
        )));
    }
    let mut out = vec![0.0f32; len];
    kiln_kernels::dequantize_row(t.ty, f.tensor_data(t), &mut out)?;
    Ok(out)
}

pub fn optional_vector(f: &GgufFile, name: &str, len: usize) -> Result<Option<Vec<f32>>> {
    match f.tensor(name) {
        Some(_) => load_vector(f, name, len).map(Some),
        None => Ok(None),
    }
}

/// Activations quantized once per input and shared by every product that reads it
/// (Q, K and V share one; gate and up share one), one slot per activation type.
#[derive(Default)]
pub struct ActSet {
    slots: Vec<(GgmlType, QuantizedActs)>,
    valid: Vec<bool>,
}

impl ActSet {
    /// Forgets what was quantized: the next products read a new input.
    pub fn invalidate(&mut self) {
        self.valid.iter_mut().for_each(|v| *v = false);
    }

    /// `ys[i] = x · ws[i]ᵀ` for every (weight, output) pair; x: [n][cols], y: [n][rows].
    pub fn matmuls(&mut self, pool: &ThreadPool, data: &[u8], x: &[f32], n: usize, outs: &mut [(&Linear, &mut [f32])]) {
        self.invalidate();
        for (w, y) in outs.iter_mut() {
            let qx = self.quantized(pool, w.ty.vec_dot_type(), x, n, w.cols);
            matmul_q(pool, &w.matrix(data), qx, n, &mut y[..n * w.rows]);
        }
    }

    pub fn matmul(&mut self, pool: &ThreadPool, data: &[u8], w: &Linear, x: &[f32], n: usize, y: &mut [f32]) {
        self.matmuls(pool, data, x, n, &mut [(w, y)]);
    }

    fn quantized(&mut self, pool: &ThreadPool, ty: GgmlType, x: &[f32], n: usize, cols: usize) -> &QuantizedActs {
        let i = match self.slots.iter().position(|(t, _)| *t == ty) {
            Some(i) => i,
            None => {
                self.slots.push((ty, QuantizedActs::new()));
                self.valid.push(false);
                self.slots.len() - 1
            }
        };
        if !self.valid[i] {
            self.slots[i].1.quantize(pool, ty, &x[..n * cols], n, cols);
            self.valid[i] = true;
        }
        &self.slots[i].1
    }
}
