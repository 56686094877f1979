//! Weights as views into the memory-mapped GGUF file, and the matrix products over them.

use std::borrow::Cow;

use kiln_kernels::{matmul_q_many, repack, GgmlType, Layout, MatmulJob, QMatrix, QuantizedActs, ThreadPool, MAX_JOBS};

use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;

/// A weight matrix `[rows][cols]` (ggml `ne = [cols, rows]`) kept in the file's own encoding,
/// its rows row-major or interleaved in place ([`GgufFile::interleave_weights`]).
#[derive(Clone, Copy, Debug)]
pub struct Linear {
    pub ty: GgmlType,
    pub offset: usize,
    pub len: usize,
    pub rows: usize,
    pub cols: usize,
    pub layout: Layout,
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
        Ok(Linear { ty: t.ty, offset: base, len: t.n_bytes as usize, rows: dims[1], cols, layout: f.layout(t) })
    }

    pub fn optional(f: &GgufFile, name: &str, cols: usize, rows: usize) -> Result<Option<Linear>> {
        match f.tensor(name) {
            Some(_) => Linear::load(f, name, cols, rows).map(Some),
            None => Ok(None),
        }
    }

    /// The bytes as held (see [`Linear::layout`]).
    pub fn bytes<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        &data[self.offset..self.offset + self.len]
    }

    /// The bytes in ggml's row-major order: borrowed, or a copy when they were interleaved.
    pub fn row_major_bytes<'a>(&self, data: &'a [u8]) -> Result<Cow<'a, [u8]>> {
        let bytes = self.bytes(data);
        if self.layout == Layout::RowMajor {
            return Ok(Cow::Borrowed(bytes));
        }
        let mut out = vec![0u8; bytes.len()];
        if !repack::rows_row_major(&self.matrix(data), 0, self.rows, &mut out) {
            return Err(EngineError::BadModel(format!("{} matrix {}x{} does not fit its bytes", self.ty, self.rows, self.cols)));
        }
        Ok(Cow::Owned(out))
    }

    pub fn matrix<'a>(&self, data: &'a [u8]) -> QMatrix<'a> {
        QMatrix { ty: self.ty, data: self.bytes(data), rows: self.rows, cols: self.cols, layout: self.layout }
    }

    /// Dequantizes row `r` into `out` (embedding lookup).
    pub fn row(&self, data: &[u8], r: usize, out: &mut [f32]) -> Result<()> {
        let rb = self.len / self.rows.max(1);
        let bad = || EngineError::BadModel(format!("row {r} of a {}x{} {} matrix", self.rows, self.cols, self.ty));
        if self.layout == Layout::RowMajor {
            let bytes = self.bytes(data).get(r * rb..(r + 1) * rb).ok_or_else(bad)?;
            kiln_kernels::dequantize_row(self.ty, bytes, out)?;
            return Ok(());
        }
        // An interleaved row is gathered from its group first (on the stack for rows up to
        // 16 KiB: 15,420 columns of Q8_0).
        let mut stack = [0u8; 16 * 1024];
        let mut heap = Vec::new();
        let buf = match stack.get_mut(..rb) {
            Some(b) => b,
            None => {
                heap.resize(rb, 0);
                &mut heap[..]
            }
        };
        if !repack::row(&self.matrix(data), r, buf) {
            return Err(bad());
        }
        kiln_kernels::dequantize_row(self.ty, buf, out)?;
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

/// A placeholder for unused job slots (never dispatched).
const EMPTY: QMatrix<'static> = QMatrix { ty: GgmlType::F32, data: &[], rows: 0, cols: 0, layout: Layout::RowMajor };

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
    /// x is quantized once per activation type, and the products share one dispatch.
    pub fn matmuls(&mut self, pool: &ThreadPool, data: &[u8], x: &[f32], n: usize, outs: &mut [(&Linear, &mut [f32])]) {
        self.invalidate();
        self.matmuls_quantized(pool, data, x, n, outs);
    }

    fn matmuls_quantized(&mut self, pool: &ThreadPool, data: &[u8], x: &[f32], n: usize, outs: &mut [(&Linear, &mut [f32])]) {
        if outs.len() > MAX_JOBS {
            let (head, tail) = outs.split_at_mut(MAX_JOBS);
            self.matmuls_quantized(pool, data, x, n, head);
            self.matmuls_quantized(pool, data, x, n, tail);
            return;
        }
        if outs.is_empty() {
            return;
        }
        let mut slot = [0usize; MAX_JOBS];
        for (i, (w, _)) in outs.iter().enumerate().take(MAX_JOBS) {
            slot[i] = self.quantize(pool, w.ty.vec_dot_type(), x, n, w.cols);
        }
        let k = outs.len();
        let slots = &self.slots;
        let mut jobs: [Option<MatmulJob>; MAX_JOBS] = [None, None, None, None];
        for (i, (w, y)) in outs.iter_mut().enumerate().take(MAX_JOBS) {
            let rows = w.rows;
            jobs[i] = Some(MatmulJob { w: w.matrix(data), qx: &slots[slot[i]].1, y: &mut y[..n * rows] });
        }
        let mut list: [MatmulJob; MAX_JOBS] = jobs.map(|j| j.unwrap_or(MatmulJob { w: EMPTY, qx: &slots[0].1, y: &mut [] }));
        matmul_q_many(pool, &mut list[..k], n);
    }

    pub fn matmul(&mut self, pool: &ThreadPool, data: &[u8], w: &Linear, x: &[f32], n: usize, y: &mut [f32]) {
        self.matmuls(pool, data, x, n, &mut [(w, y)]);
    }

    /// Index of the slot holding x quantized to `ty` (quantizing it if needed).
    fn quantize(&mut self, pool: &ThreadPool, ty: GgmlType, x: &[f32], n: usize, cols: usize) -> usize {
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
        i
    }
}
