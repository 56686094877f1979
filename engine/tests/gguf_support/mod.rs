//! Shared by the gguf_* and store* tests: locating the real models, building GGUF bytes by hand.
#![allow(dead_code)]

use std::path::PathBuf;

pub const GEMMA: &str = "gemma-3-270m-q4_k_m.gguf";
pub const SMOLLM: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// `$KILN_MODELS/<file>` (default `~/.kiln/models`). Missing models fail the test unless
/// `KILN_SKIP_MODEL_TESTS=1`, which returns None after a loud SKIPPED line.
pub fn model(file: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("KILN_MODELS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kiln/models")))
        .unwrap_or_else(|| PathBuf::from(".kiln/models"));
    let path = dir.join(file);
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("KILN_SKIP_MODEL_TESTS").as_deref() == Ok("1") {
        eprintln!("SKIPPED: model {} not found and KILN_SKIP_MODEL_TESTS=1", path.display());
        return None;
    }
    panic!("model {} not found (set KILN_MODELS, run scripts/fetch-models, or KILN_SKIP_MODEL_TESTS=1)", path.display());
}

/// Little-endian GGUF byte builder for hand-made (often corrupt) files.
#[derive(Default, Clone)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    pub fn new() -> Bytes {
        Bytes(Vec::new())
    }
    pub fn raw(mut self, b: &[u8]) -> Bytes {
        self.0.extend_from_slice(b);
        self
    }
    pub fn u8(self, v: u8) -> Bytes {
        self.raw(&[v])
    }
    pub fn u32(self, v: u32) -> Bytes {
        self.raw(&v.to_le_bytes())
    }
    pub fn u64(self, v: u64) -> Bytes {
        self.raw(&v.to_le_bytes())
    }
    pub fn str(self, s: &str) -> Bytes {
        self.u64(s.len() as u64).raw(s.as_bytes())
    }
    /// Magic, version 3, counts.
    pub fn header(n_tensors: u64, n_kv: u64) -> Bytes {
        Bytes::new().raw(b"GGUF").u32(3).u64(n_tensors).u64(n_kv)
    }
    /// A u32 metadata entry.
    pub fn kv_u32(self, key: &str, v: u32) -> Bytes {
        self.str(key).u32(4).u32(v)
    }
    /// A tensor info.
    pub fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Bytes {
        let mut b = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            b = b.u64(d);
        }
        b.u32(ty).u64(offset)
    }
    /// Zero padding up to a multiple of `align`.
    pub fn pad(mut self, align: usize) -> Bytes {
        while !self.0.len().is_multiple_of(align) {
            self.0.push(0);
        }
        self
    }
    pub fn zeros(mut self, n: usize) -> Bytes {
        self.0.resize(self.0.len() + n, 0);
        self
    }
}
