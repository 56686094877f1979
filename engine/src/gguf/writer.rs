//! GGUF writer: metadata, tensor infos with aligned offsets, padded data section. It checks what
//! the reader checks, so anything it writes reads back.
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::error::GgufError;
use super::limits::*;
use super::tensor::{align_up, tensor_size};
use super::value::{Array, Value, ValueType};
use super::{GgmlType, GgufFile};

struct PendingTensor<'a> {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    data: &'a [u8],
}

/// Builds a GGUF file. Tensor bytes are borrowed, so re-writing a mapped file copies nothing
/// until `write`.
///
/// ```ignore
/// GgufWriter::new(3, 32)
///     .metadata("general.architecture", Value::String("llama".into()))
///     .tensor("output_norm.weight", &[576], GgmlType::F32, &bytes)
///     .write_to_path(path)?;
/// ```
pub struct GgufWriter<'a> {
    version: u32,
    alignment: u64,
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor<'a>>,
}

impl<'a> GgufWriter<'a> {
    pub fn new(version: u32, alignment: u64) -> GgufWriter<'a> {
        GgufWriter { version, alignment, metadata: Vec::new(), tensors: Vec::new() }
    }

    /// Everything in `f`: same version, alignment, metadata and tensors in the same order.
    pub fn from_file(f: &'a GgufFile) -> GgufWriter<'a> {
        let mut w = GgufWriter::new(f.version(), f.alignment());
        w.metadata = f.metadata().to_vec();
        for t in f.tensors() {
            w.push_tensor(&t.name, &t.dims, t.ty, f.tensor_data(t));
        }
        w
    }

    pub fn metadata(mut self, key: impl Into<String>, value: Value) -> GgufWriter<'a> {
        self.push_metadata(key, value);
        self
    }

    pub fn tensor(mut self, name: impl Into<String>, dims: &[u64], ty: GgmlType, data: &'a [u8]) -> GgufWriter<'a> {
        self.push_tensor(name, dims, ty, data);
        self
    }

    pub fn push_metadata(&mut self, key: impl Into<String>, value: Value) {
        self.metadata.push((key.into(), value));
    }

    pub fn push_tensor(&mut self, name: impl Into<String>, dims: &[u64], ty: GgmlType, data: &'a [u8]) {
        self.tensors.push(PendingTensor { name: name.into(), dims: dims.to_vec(), ty, data });
    }

    pub fn write_to_path(&self, path: impl AsRef<Path>) -> Result<u64, GgufError> {
        let path = path.as_ref();
        let file = File::create(path).map_err(|source| GgufError::Io { path: path.to_path_buf(), source })?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let n = self.write(&mut w)?;
        w.flush().map_err(GgufError::Write)?;
        Ok(n)
    }

    /// Writes the file; returns the number of bytes written.
    pub fn write(&self, w: impl Write) -> Result<u64, GgufError> {
        let offsets = self.validate()?;
        let mut w = Counting { inner: w, n: 0 };
        w.put(b"GGUF")?;
        w.put(&self.version.to_le_bytes())?;
        w.put(&(self.tensors.len() as u64).to_le_bytes())?;
        let implicit_alignment = self.alignment != DEFAULT_ALIGNMENT && !self.has_alignment_key();
        let n_kv = self.metadata.len() as u64 + u64::from(implicit_alignment);
        w.put(&n_kv.to_le_bytes())?;
        for (key, value) in &self.metadata {
            write_kv(&mut w, key, value)?;
        }
        if implicit_alignment {
            write_kv(&mut w, "general.alignment", &Value::U32(self.alignment as u32))?;
        }
        for (t, &offset) in self.tensors.iter().zip(&offsets) {
            write_str(&mut w, &t.name)?;
            w.put(&(t.dims.len() as u32).to_le_bytes())?;
            for d in &t.dims {
                w.put(&d.to_le_bytes())?;
            }
            w.put(&t.ty.id().to_le_bytes())?;
            w.put(&offset.to_le_bytes())?;
        }
        w.pad(self.alignment)?;
        for t in &self.tensors {
            w.put(t.data)?;
            w.pad(self.alignment)?;
        }
        Ok(w.n)
    }

    fn has_alignment_key(&self) -> bool {
        self.metadata.iter().any(|(k, _)| k == "general.alignment")
    }

    /// Checks what the reader would reject; returns each tensor's data-section offset.
    fn validate(&self) -> Result<Vec<u64>, GgufError> {
        let bad = |msg: String| Err(GgufError::InvalidWrite(msg));
        if !matches!(self.version, 2 | 3) {
            return bad(format!("version {} (supported: 2, 3)", self.version));
        }
        if self.alignment == 0 || !self.alignment.is_power_of_two() || self.alignment > MAX_ALIGNMENT {
            return bad(format!("alignment {} must be a power of two <= 1 MiB", self.alignment));
        }
        let mut keys = HashSet::new();
        for (key, value) in &self.metadata {
            if key.is_empty() || key.len() as u64 > MAX_STRING_LEN || !keys.insert(key.as_str()) {
                return bad(format!("metadata key {key:?} is empty, too long or duplicated"));
            }
            check_value(key, value, 0)?;
            if key == "general.alignment" && *value != Value::U32(self.alignment as u32) {
                return bad(format!("general.alignment {value} disagrees with the writer's alignment {}", self.alignment));
            }
        }
        let mut names = HashSet::new();
        let mut offsets = Vec::with_capacity(self.tensors.len());
        let mut next = 0u64;
        for t in &self.tensors {
            if t.name.is_empty() || t.name.len() as u64 > MAX_TENSOR_NAME_LEN || !names.insert(t.name.as_str()) {
                return bad(format!("tensor name {:?} is empty, longer than 63 bytes or duplicated", t.name));
            }
            if t.dims.is_empty() || t.dims.len() > MAX_DIMS as usize || t.dims.contains(&0) {
                return bad(format!("tensor {:?}: dims {:?} must be 1 to 4 non-zero values", t.name, t.dims));
            }
            let (_, n_bytes) = tensor_size(&t.name, &t.dims, t.ty)?;
            if t.data.len() as u64 != n_bytes {
                return bad(format!("tensor {:?}: {} bytes given, {:?} {} needs {n_bytes}", t.name, t.data.len(), t.dims, t.ty.name()));
            }
            let offset = align_up(next, self.alignment).ok_or_else(|| GgufError::InvalidWrite("data too large".into()))?;
            offsets.push(offset);
            next = offset.checked_add(n_bytes).ok_or_else(|| GgufError::InvalidWrite("data too large".into()))?;
        }
        Ok(offsets)
    }
}

fn check_value(key: &str, value: &Value, depth: usize) -> Result<(), GgufError> {
    let bad = |what: &str| Err(GgufError::InvalidWrite(format!("metadata key {key:?}: {what}")));
    match value {
        Value::String(s) if s.len() as u64 > MAX_STRING_LEN => bad("string too long"),
        Value::Array(a) => check_array(key, a, depth),
        _ => Ok(()),
    }
}

fn check_array(key: &str, a: &Array, depth: usize) -> Result<(), GgufError> {
    let bad = |what: &str| Err(GgufError::InvalidWrite(format!("metadata key {key:?}: {what}")));
    if depth >= MAX_ARRAY_DEPTH {
        return bad("arrays nested too deeply");
    }
    if a.len() as u64 > MAX_ARRAY_LEN {
        return bad("array too long");
    }
    match a {
        Array::String(s) if s.iter().any(|x| x.len() as u64 > MAX_STRING_LEN) => bad("string too long"),
        Array::Array(v) => v.iter().try_for_each(|inner| check_array(key, inner, depth + 1)),
        _ => Ok(()),
    }
}

/// Counts bytes written so padding can be computed without seeking.
struct Counting<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Counting<W> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), GgufError> {
        self.inner.write_all(bytes).map_err(GgufError::Write)?;
        self.n += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self, alignment: u64) -> Result<(), GgufError> {
        let target = align_up(self.n, alignment).unwrap_or(self.n);
        const ZEROS: [u8; 4096] = [0; 4096];
        while self.n < target {
            let k = (target - self.n).min(ZEROS.len() as u64) as usize;
            self.put(&ZEROS[..k])?;
        }
        Ok(())
    }
}

fn write_str<W: Write>(w: &mut Counting<W>, s: &str) -> Result<(), GgufError> {
    w.put(&(s.len() as u64).to_le_bytes())?;
    w.put(s.as_bytes())
}

fn write_kv<W: Write>(w: &mut Counting<W>, key: &str, value: &Value) -> Result<(), GgufError> {
    write_str(w, key)?;
    w.put(&value.value_type().id().to_le_bytes())?;
    write_value(w, value)
}

fn write_value<W: Write>(w: &mut Counting<W>, value: &Value) -> Result<(), GgufError> {
    match value {
        Value::U8(v) => w.put(&v.to_le_bytes()),
        Value::I8(v) => w.put(&v.to_le_bytes()),
        Value::U16(v) => w.put(&v.to_le_bytes()),
        Value::I16(v) => w.put(&v.to_le_bytes()),
        Value::U32(v) => w.put(&v.to_le_bytes()),
        Value::I32(v) => w.put(&v.to_le_bytes()),
        Value::F32(v) => w.put(&v.to_le_bytes()),
        Value::Bool(v) => w.put(&[u8::from(*v)]),
        Value::String(s) => write_str(w, s),
        Value::Array(a) => write_array(w, a),
        Value::U64(v) => w.put(&v.to_le_bytes()),
        Value::I64(v) => w.put(&v.to_le_bytes()),
        Value::F64(v) => w.put(&v.to_le_bytes()),
    }
}

fn write_array<W: Write>(w: &mut Counting<W>, a: &Array) -> Result<(), GgufError> {
    w.put(&a.elem_type().id().to_le_bytes())?;
    w.put(&(a.len() as u64).to_le_bytes())?;
    // Numbers go out in one buffer per array rather than one write per element.
    fn each<W: Write, T: Copy, const N: usize>(w: &mut Counting<W>, v: &[T], f: fn(T) -> [u8; N]) -> Result<(), GgufError> {
        let bytes: Vec<u8> = v.iter().flat_map(|&x| f(x)).collect();
        w.put(&bytes)
    }
    match a {
        Array::U8(v) => w.put(v),
        Array::I8(v) => each(w, v, i8::to_le_bytes),
        Array::U16(v) => each(w, v, u16::to_le_bytes),
        Array::I16(v) => each(w, v, i16::to_le_bytes),
        Array::U32(v) => each(w, v, u32::to_le_bytes),
        Array::I32(v) => each(w, v, i32::to_le_bytes),
        Array::F32(v) => each(w, v, f32::to_le_bytes),
        Array::Bool(v) => each(w, v, |b: bool| [u8::from(b)]),
        Array::U64(v) => each(w, v, u64::to_le_bytes),
        Array::I64(v) => each(w, v, i64::to_le_bytes),
        Array::F64(v) => each(w, v, f64::to_le_bytes),
        Array::String(v) => v.iter().try_for_each(|s| write_str(w, s)),
        Array::Array(v) => v.iter().try_for_each(|inner| write_array(w, inner)),
    }
}

// Keeps ValueType's ids and the writer's tags from drifting apart.
const _: () = assert!(ValueType::Array as u32 == 9 && ValueType::F64 as u32 == 12);
