//! Per-file facts that are slow to compute (sha256 of a 250 MB file, parsing a 262k-token
//! header), cached process-wide by (path, size, mtime) so `/api/tags` stays fast.
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use sha2::{Digest as _, Sha256};

use super::{ModelDetails, StoreError};
use crate::gguf::{human_parameter_count, GgufFile};

#[derive(Clone, Debug)]
pub struct FileInfo {
    pub size: u64,
    pub modified: SystemTime,
    pub details: ModelDetails,
    /// sha256 hex of the whole file, if it was asked for.
    pub digest: Option<String>,
}

type Cache = Mutex<HashMap<PathBuf, FileInfo>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Details (and the digest, if `with_digest`) of a GGUF file, from the cache when the file's
/// size and mtime are unchanged.
pub fn file_info(path: &Path, with_digest: bool) -> Result<FileInfo, StoreError> {
    let io = |source| StoreError::Io { path: path.to_path_buf(), source };
    let meta = std::fs::metadata(path).map_err(io)?;
    let (size, modified) = (meta.len(), meta.modified().map_err(io)?);
    let key = path.to_path_buf();
    let cached = lock().get(&key).filter(|c| c.size == size && c.modified == modified).cloned();
    let mut info = match cached {
        Some(c) => c,
        None => {
            let g = GgufFile::open(path).map_err(|source| StoreError::Gguf { path: key.clone(), source })?;
            FileInfo { size, modified, details: details(&g), digest: None }
        }
    };
    if with_digest && info.digest.is_none() {
        info.digest = Some(sha256_file(path)?);
    }
    lock().insert(key, info.clone());
    Ok(info)
}

fn lock() -> std::sync::MutexGuard<'static, HashMap<PathBuf, FileInfo>> {
    // The map holds plain data; a panic elsewhere while holding it cannot leave it inconsistent.
    cache().lock().unwrap_or_else(|e| e.into_inner())
}

/// `details` derived from a GGUF header.
pub fn details(g: &GgufFile) -> ModelDetails {
    let family = g.get_str("general.architecture").unwrap_or("").to_string();
    ModelDetails {
        parent_model: String::new(),
        format: "gguf".into(),
        families: if family.is_empty() { Vec::new() } else { vec![family.clone()] },
        family,
        parameter_size: human_parameter_count(g.parameter_count()),
        quantization_level: g.quantization_level(),
    }
}

pub fn sha256_file(path: &Path) -> Result<String, StoreError> {
    let io = |source| StoreError::Io { path: path.to_path_buf(), source };
    let mut f = File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok(super::ollama::hex(&hasher.finalize()))
}
