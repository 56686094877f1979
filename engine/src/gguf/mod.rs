//! GGUF v2/v3 reader and writer.
//!
//! The reader is a leaf: bytes in, typed metadata and zero-copy tensor views out. Every count,
//! length, dimension, offset and the alignment are checked before use (spec/reliability.md §1,
//! §5.A), so a hostile file yields a `GgufError` naming the byte offset and key or tensor,
//! never a panic, and no allocation is sized by a count the file cannot back with bytes.
//!
//! File layout (little-endian):
//! ```text
//! "GGUF" u32 version | u64 n_tensors | u64 n_kv
//! n_kv  x { string key | u32 type | value }            string = u64 len + bytes
//! n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
//! padding to general.alignment (default 32)
//! data section: tensor i at data_start + offset_i, each offset aligned
//! ```
mod cursor;
mod error;
pub mod limits;
mod reader;
mod summary;
mod tensor;
mod value;
mod writer;

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

pub use error::GgufError;
pub use kiln_kernels::{GgmlType, Layout};
pub use summary::{file_type_name, human_parameter_count};
pub use tensor::TensorInfo;
pub use value::{Array, StrArray, Value, ValueType};
pub use writer::GgufWriter;

/// How a model's bytes are held for inference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightMemory {
    /// [`WeightMemory::HugePages`] on Linux when transparent huge pages are not disabled and
    /// `KILN_MMAP=1` is not set; otherwise [`WeightMemory::Mmap`].
    #[default]
    Auto,
    /// A read-only memory map of the file: pages shared with the page cache and other
    /// processes, loaded on first touch.
    Mmap,
    /// The file read into anonymous memory on 2 MiB transparent huge pages. Decode streams every
    /// weight once per token; on 4 KiB file pages that costs a TLB miss per page and stops the
    /// hardware prefetcher at every page boundary. `kiln bench -p 16 -n 64 -t 2`, tg tok/s, mmap
    /// → huge pages: synthetic 1.1B 25.1 → 32.0, gemma-3-270m 63.3 → 80.4, SmolLM2 189.6 →
    /// 209.6 (the same copy on small pages: 27.3 / 60.7 / 179.8). RSS is the file size instead
    /// of the pages touched.
    HugePages,
}

impl WeightMemory {
    fn huge_pages(self) -> bool {
        match self {
            WeightMemory::Mmap => false,
            WeightMemory::HugePages => true,
            WeightMemory::Auto => {
                let disabled = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").map_or(true, |s| s.contains("[never]"));
                cfg!(target_os = "linux") && !disabled && std::env::var("KILN_MMAP").map_or(true, |v| v != "1")
            }
        }
    }
}

enum Storage {
    Mmap(memmap2::Mmap),
    /// An anonymous copy ([`WeightMemory::HugePages`]): the file's `len` bytes start `at`
    /// bytes into the map (see [`GgufFile::align_tensors`]).
    Anon { map: memmap2::MmapMut, at: usize, len: usize },
    Owned(Vec<u8>),
}

/// A parsed, validated GGUF file that owns its bytes (a read-only memory map or a buffer).
pub struct GgufFile {
    storage: Storage,
    version: u32,
    alignment: u64,
    metadata: Vec<(String, Value)>,
    key_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    data_offset: u64,
    /// How each tensor's rows lie (parallel to `tensors`): as in the file unless
    /// [`GgufFile::interleave_weights`] repacked it.
    layouts: Vec<Layout>,
}

impl GgufFile {
    /// Memory-maps and validates `path`. Only regular files are accepted.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        let io = |source| GgufError::Io { path: path.to_path_buf(), source };
        let Some(file) = open_regular(path)? else { return GgufFile::from_bytes(Vec::new()) };
        // SAFETY: the map is read-only and private to this value. Another process truncating
        // the file while it is mapped would fault on access (SIGBUS); model files are treated as
        // read-only, as llama.cpp and Ollama do.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        GgufFile::build(Storage::Mmap(map))
    }

    /// Like [`GgufFile::open`], holding the bytes as `memory` says: for the weights a forward
    /// pass streams, where [`WeightMemory::HugePages`] pays (see there).
    pub fn open_with(path: impl AsRef<Path>, memory: WeightMemory) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        if !memory.huge_pages() {
            return GgufFile::open(path);
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::FileExt;
            let io = |source| GgufError::Io { path: path.to_path_buf(), source };
            let Some(file) = open_regular(path)? else { return GgufFile::from_bytes(Vec::new()) };
            let len = file.metadata().map_err(io)?.len();
            let len = usize::try_from(len).map_err(|_| io(std::io::Error::other("file larger than the address space")))?;
            let mut anon = memmap2::MmapOptions::new().len(len + CACHE_LINE).map_anon().map_err(io)?;
            // Only a hint: without it (or without THP) the copy still works, on small pages.
            let _ = anon.advise(memmap2::Advice::HugePage);
            // read(2), not a copy through a memory map, so the file's pages never count in RSS.
            file.read_exact_at(&mut anon[..len], 0).map_err(io)?;
            let mut f = GgufFile::build(Storage::Anon { map: anon, at: 0, len })?;
            f.align_tensors();
            Ok(f)
        }
        #[cfg(not(target_os = "linux"))]
        GgufFile::open(path)
    }

    /// Parses an owned buffer with the same checks as `open`.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        GgufFile::build(Storage::Owned(bytes))
    }

    fn build(storage: Storage) -> Result<GgufFile, GgufError> {
        let bytes: &[u8] = match &storage {
            Storage::Mmap(m) => m,
            Storage::Anon { map, at, len } => &map[*at..*at + *len],
            Storage::Owned(v) => v,
        };
        let p = reader::parse(bytes)?;
        let layouts = vec![Layout::RowMajor; p.tensors.len()];
        Ok(GgufFile {
            layouts,
            storage,
            version: p.version,
            alignment: p.alignment,
            metadata: p.metadata,
            key_index: p.key_index,
            tensors: p.tensors,
            tensor_index: p.tensor_index,
            data_offset: p.data_offset,
        })
    }

    /// Validates `bytes` without keeping anything: the entry point for fuzzing and sweeps.
    pub fn validate(bytes: &[u8]) -> Result<(), GgufError> {
        reader::parse(bytes).map(|_| ())
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute byte offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Drops the array values whose key starts with `prefix` (their lookups then report a
    /// missing key) and gives their memory back: [`crate::Model`] does it for
    /// `tokenizer.ggml.` once its tokenizer holds its own copy (6.8 MB of gemma3's 262,144-token
    /// vocabulary). Returns how many entries went.
    pub fn forget_arrays(&mut self, prefix: &str) -> usize {
        let before = self.metadata.len();
        self.metadata.retain(|(k, v)| !(k.starts_with(prefix) && matches!(v, Value::Array(_))));
        self.metadata.shrink_to_fit();
        self.key_index = self.metadata.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect();
        before - self.metadata.len()
    }

    /// Gives back the memory of the header (metadata and tensor index, all parsed into owned
    /// values by now) where this file is an anonymous copy ([`WeightMemory::HugePages`]): its
    /// whole pages below the data section are released, and read as zeros afterwards. SmolLM2's
    /// header is 1.7 MB, gemma3's 6.7 MB. Tensor data, metadata and tensor infos are unchanged.
    /// Memory maps and owned buffers are left as they are. Returns how many of the file's first
    /// bytes were released (those of [`GgufFile::data`] that now read as zeros).
    pub fn release_header(&mut self) -> usize {
        let Storage::Anon { map: m, at, .. } = &mut self.storage else { return 0 };
        // Whole pages below the data section (the bytes before `at` are unused).
        let len = (*at + usize::try_from(self.data_offset).unwrap_or(0)).min(m.len()) & !4095;
        if len <= *at {
            return 0;
        }
        // SAFETY: the range lies inside the mapping, nothing borrows the header bytes (every
        // parsed value is owned), and MADV_DONTNEED on private anonymous memory only replaces
        // the pages by zero-filled ones.
        match unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, 0, len) } {
            // The file's bytes released (its first `len − at`).
            Ok(()) => len - *at,
            Err(_) => 0,
        }
    }

    /// Metadata in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.key_index.get(key).and_then(|&i| self.metadata.get(i)).map(|(_, v)| v)
    }

    fn require(&self, key: &str) -> Result<&Value, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey { key: key.to_string() })
    }

    fn integer<T: TryFrom<i128>>(&self, key: &str, expected: &'static str) -> Result<T, GgufError> {
        let v = self.require(key)?;
        let n = v.as_integer().ok_or_else(|| wrong_type(key, expected, v))?;
        T::try_from(n).map_err(|_| GgufError::OutOfRange { key: key.to_string(), expected, value: n.to_string() })
    }

    /// Any integer type whose value fits in u32.
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.integer(key, "u32")
    }

    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.integer(key, "u64")
    }

    pub fn get_i32(&self, key: &str) -> Result<i32, GgufError> {
        self.integer(key, "i32")
    }

    /// F32, or F64 narrowed to f32.
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        match *self.require(key)? {
            Value::F32(f) => Ok(f),
            Value::F64(f) => Ok(f as f32),
            ref v => Err(wrong_type(key, "f32", v)),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        match *self.require(key)? {
            Value::Bool(b) => Ok(b),
            ref v => Err(wrong_type(key, "bool", v)),
        }
    }

    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        match self.require(key)? {
            Value::String(s) => Ok(s),
            v => Err(wrong_type(key, "string", v)),
        }
    }

    pub fn get_array(&self, key: &str) -> Result<&Array, GgufError> {
        match self.require(key)? {
            Value::Array(a) => Ok(a),
            v => Err(wrong_type(key, "array", v)),
        }
    }

    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        match self.require(key)? {
            Value::Array(Array::String(a)) => Ok(a.iter().collect()),
            v => Err(wrong_type(key, "array<string>", v)),
        }
    }

    /// An F32 array (F64 narrowed).
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>, GgufError> {
        match self.require(key)? {
            Value::Array(Array::F32(a)) => Ok(a.clone()),
            Value::Array(Array::F64(a)) => Ok(a.iter().map(|&f| f as f32).collect()),
            v => Err(wrong_type(key, "array<f32>", v)),
        }
    }

    /// An array of any integer type whose every value fits in i32.
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>, GgufError> {
        let v = self.require(key)?;
        let out_of_range = |n: i128| GgufError::OutOfRange { key: key.to_string(), expected: "i32", value: n.to_string() };
        let conv = |it: &mut dyn Iterator<Item = i128>| -> Result<Vec<i32>, GgufError> {
            it.map(|n| i32::try_from(n).map_err(|_| out_of_range(n))).collect()
        };
        match v {
            Value::Array(Array::I32(a)) => Ok(a.clone()),
            Value::Array(Array::U8(a)) => conv(&mut a.iter().map(|&n| n.into())),
            Value::Array(Array::I8(a)) => conv(&mut a.iter().map(|&n| n.into())),
            Value::Array(Array::U16(a)) => conv(&mut a.iter().map(|&n| n.into())),
            Value::Array(Array::I16(a)) => conv(&mut a.iter().map(|&n| n.into())),
            Value::Array(Array::U32(a)) => conv(&mut a.iter().map(|&n| n.into())),
            Value::Array(Array::U64(a)) => conv(&mut a.iter().map(|&n| n.into())),
            Value::Array(Array::I64(a)) => conv(&mut a.iter().map(|&n| n.into())),
            v => Err(wrong_type(key, "array<i32>", v)),
        }
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).and_then(|&i| self.tensors.get(i))
    }

    /// The tensor's bytes, zero-copy: exactly `t.n_bytes` long. (Empty if `t` came from
    /// another file and does not fit this one.)
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let start = self.data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.n_bytes));
        match (start.map(usize::try_from), end.map(usize::try_from)) {
            (Some(Ok(s)), Some(Ok(e))) => self.data().get(s..e).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// How `t`'s rows lie in [`GgufFile::tensor_data`]: [`Layout::RowMajor`] (ggml's) unless
    /// [`GgufFile::interleave_weights`] repacked it.
    pub fn layout(&self, t: &TensorInfo) -> Layout {
        self.tensor_index.get(&t.name).and_then(|&i| self.layouts.get(i)).copied().unwrap_or_default()
    }

    /// Repacks, in place, every 2-D tensor into the layout this CPU's kernels read fastest
    /// (`kiln_kernels::repack::best_layout`): [`Layout::Interleaved8`] for the legacy types with
    /// an interleaved mat-vec (decode then reads each group of 8 rows as one stream),
    /// [`Layout::Transposed`] for Q4_K / Q6_K on AVX2. Only where this file is an anonymous copy
    /// ([`WeightMemory::HugePages`]): a memory map stays the file's pages, and an owned buffer
    /// is left as given. [`GgufFile::layout`] tells which tensors moved; readers of their bytes
    /// go through `kiln_kernels::repack::row`. Returns the bytes repacked.
    pub fn interleave_weights(&mut self) -> u64 {
        let Storage::Anon { map, at, len } = &mut self.storage else { return 0 };
        let m = &mut map[*at..*at + *len];
        let mut moved = 0;
        for (t, layout) in self.tensors.iter().zip(self.layouts.iter_mut()) {
            let [cols, rows] = t.dims[..] else { continue };
            let (Ok(cols), Ok(rows)) = (usize::try_from(cols), usize::try_from(rows)) else { continue };
            let best = kiln_kernels::repack::best_layout(t.ty, rows, cols);
            if *layout != Layout::RowMajor || best == Layout::RowMajor {
                continue;
            }
            let start = self.data_offset.checked_add(t.offset).and_then(|s| usize::try_from(s).ok());
            let end = start.and_then(|s| s.checked_add(usize::try_from(t.n_bytes).ok()?));
            let Some(bytes) = start.zip(end).and_then(|(s, e)| m.get_mut(s..e)) else { continue };
            if kiln_kernels::repack::repack_in_place(t.ty, bytes, rows, cols, best) {
                *layout = best;
                moved += t.n_bytes;
            }
        }
        moved
    }

    /// The whole file's bytes.
    pub fn data(&self) -> &[u8] {
        match &self.storage {
            Storage::Mmap(m) => m,
            Storage::Anon { map, at, len } => &map[*at..*at + *len],
            Storage::Owned(v) => v,
        }
    }

    /// Moves an anonymous copy's bytes so that most tensor bytes start on a 64-byte cache line
    /// (GGUF aligns tensors to 32 bytes): the kernels' 64-byte loads then each touch one line
    /// instead of two. The synthetic 1.1B's data section starts at 32 mod 64, so every one of
    /// its 512-bit weight loads was split. Memory maps and owned buffers are left as they are.
    fn align_tensors(&mut self) {
        let Storage::Anon { map, at, len } = &mut self.storage else { return };
        let mut bytes_at = [0u64; CACHE_LINE];
        for t in &self.tensors {
            let Some(start) = self.data_offset.checked_add(t.offset) else { continue };
            // The shift that puts this tensor's first byte on a line.
            bytes_at[(CACHE_LINE - (start % CACHE_LINE as u64) as usize) % CACHE_LINE] += t.n_bytes;
        }
        let best = (0..CACHE_LINE).max_by_key(|&s| (bytes_at[s], std::cmp::Reverse(s))).unwrap_or(0);
        if best != *at && *at + *len <= map.len() && best + *len <= map.len() {
            map.copy_within(*at..*at + *len, best);
            *at = best;
        }
    }
}

/// Bytes of a cache line, the alignment [`GgufFile::align_tensors`] aims at.
const CACHE_LINE: usize = 64;

/// Opens `path` for reading if it is a regular file; None when it is empty.
fn open_regular(path: &Path) -> Result<Option<File>, GgufError> {
    let io = |source| GgufError::Io { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(GgufError::NotAFile { path: path.to_path_buf() });
    }
    Ok((meta.len() > 0).then_some(file))
}

fn wrong_type(key: &str, expected: &'static str, found: &Value) -> GgufError {
    GgufError::WrongType { key: key.to_string(), expected, found: found.type_name() }
}
