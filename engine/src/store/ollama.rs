//! Reading an existing Ollama store (spec/ollama-api.md §8.3): manifests under
//! `manifests/<host>/<namespace>/<model>/<tag>`, blobs at `blobs/sha256-<hex>`.
//! Nothing here writes to, prunes or rewrites the store.
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::name::ModelName;
use super::StoreError;

/// Manifests and text layers larger than this are rejected rather than read.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;
const MAX_TEXT_LAYER_BYTES: u64 = 4 << 20;

pub const MEDIA_MODEL: &str = "application/vnd.ollama.image.model";
pub const MEDIA_TEMPLATE: &str = "application/vnd.ollama.image.template";
pub const MEDIA_PROMPT: &str = "application/vnd.ollama.image.prompt";
pub const MEDIA_SYSTEM: &str = "application/vnd.ollama.image.system";
pub const MEDIA_PARAMS: &str = "application/vnd.ollama.image.params";
pub const MEDIA_MESSAGES: &str = "application/vnd.ollama.image.messages";
pub const MEDIA_LICENSE: &str = "application/vnd.ollama.image.license";
pub const MEDIA_PROJECTOR: &str = "application/vnd.ollama.image.projector";
pub const MEDIA_ADAPTER: &str = "application/vnd.ollama.image.adapter";

#[derive(Debug, Deserialize)]
struct Manifest {
    #[serde(default)]
    config: Option<Layer>,
    #[serde(default)]
    layers: Vec<Layer>,
}

#[derive(Debug, Deserialize)]
struct Layer {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    from: Option<String>,
}

/// The config blob fields used for `details` (`types/model/config.go` `ConfigV2`).
#[derive(Debug, Default, Deserialize)]
pub struct ConfigBlob {
    #[serde(default)]
    pub model_format: String,
    #[serde(default)]
    pub model_family: String,
    #[serde(default)]
    pub model_families: Option<Vec<String>>,
    #[serde(default)]
    pub model_type: String,
    #[serde(default)]
    pub file_type: String,
}

/// One manifest, resolved to blob paths and with its small text layers read.
#[derive(Debug)]
pub struct OllamaModel {
    pub name: ModelName,
    pub manifest_path: PathBuf,
    /// sha256 of the manifest bytes, as Ollama reports it.
    pub digest: String,
    pub size: u64,
    pub modified: std::time::SystemTime,
    pub model_blob: PathBuf,
    pub parent_model: Option<String>,
    pub config: ConfigBlob,
    pub template: Option<String>,
    pub system: Option<String>,
    pub params: Option<serde_json::Value>,
    pub messages: Option<serde_json::Value>,
    pub license: Vec<String>,
    pub projectors: Vec<PathBuf>,
    pub adapters: Vec<PathBuf>,
}

/// `blobs/sha256-<hex>` for a digest `sha256:<64 hex>` (or `sha256-`); anything else is an
/// error, so a manifest cannot point outside the blobs directory (CVE-2024-37032).
pub fn blob_path(root: &Path, digest: &str) -> Result<PathBuf, StoreError> {
    let hex = digest.strip_prefix("sha256:").or_else(|| digest.strip_prefix("sha256-"));
    match hex {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(root.join("blobs").join(format!("sha256-{h}")))
        }
        _ => Err(StoreError::InvalidDigest { digest: digest.chars().take(80).collect() }),
    }
}

fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, StoreError> {
    let io = |source| StoreError::Io { path: path.to_path_buf(), source };
    let meta = fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(StoreError::BadManifest { path: path.to_path_buf(), reason: "not a regular file".into() });
    }
    if meta.len() > max {
        return Err(StoreError::BadManifest { path: path.to_path_buf(), reason: format!("{} bytes exceeds {max}", meta.len()) });
    }
    fs::read(path).map_err(io)
}

fn read_text(root: &Path, digest: &str) -> Result<String, StoreError> {
    let bytes = read_capped(&blob_path(root, digest)?, MAX_TEXT_LAYER_BYTES)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Reads one manifest. `name` carries the on-disk spelling of each part.
pub fn load(root: &Path, name: ModelName, manifest_path: PathBuf) -> Result<OllamaModel, StoreError> {
    let bad = |reason: String| StoreError::BadManifest { path: manifest_path.clone(), reason };
    let bytes = read_capped(&manifest_path, MAX_MANIFEST_BYTES)?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let modified = fs::metadata(&manifest_path)
        .and_then(|m| m.modified())
        .map_err(|source| StoreError::Io { path: manifest_path.clone(), source })?;
    let mut m = OllamaModel {
        name,
        manifest_path: PathBuf::new(),
        digest: hex(&Sha256::digest(&bytes)),
        size: 0,
        modified,
        model_blob: PathBuf::new(),
        parent_model: None,
        config: ConfigBlob::default(),
        template: None,
        system: None,
        params: None,
        messages: None,
        license: Vec::new(),
        projectors: Vec::new(),
        adapters: Vec::new(),
    };
    let mut model_blob = None;
    for layer in manifest.config.iter().chain(&manifest.layers) {
        m.size = m.size.saturating_add(layer.size);
    }
    if let Some(cfg) = &manifest.config {
        // A missing or malformed config blob only loses the details it would have supplied.
        if let Ok(bytes) = blob_path(root, &cfg.digest).and_then(|p| read_capped(&p, MAX_MANIFEST_BYTES)) {
            m.config = serde_json::from_slice(&bytes).unwrap_or_default();
        }
    }
    for layer in &manifest.layers {
        match layer.media_type.as_str() {
            MEDIA_MODEL => {
                model_blob = Some(blob_path(root, &layer.digest)?);
                m.parent_model = layer.from.clone().filter(|f| !f.is_empty());
            }
            MEDIA_TEMPLATE | MEDIA_PROMPT => m.template = Some(read_text(root, &layer.digest)?),
            MEDIA_SYSTEM => m.system = Some(read_text(root, &layer.digest)?),
            MEDIA_PARAMS => m.params = serde_json::from_str(&read_text(root, &layer.digest)?).ok(),
            MEDIA_MESSAGES => m.messages = serde_json::from_str(&read_text(root, &layer.digest)?).ok(),
            MEDIA_LICENSE => m.license.push(read_text(root, &layer.digest)?),
            MEDIA_PROJECTOR => m.projectors.push(blob_path(root, &layer.digest)?),
            MEDIA_ADAPTER => m.adapters.push(blob_path(root, &layer.digest)?),
            _ => {}
        }
    }
    m.model_blob = model_blob.ok_or_else(|| bad("no model layer (cloud or safetensors model)".into()))?;
    m.manifest_path = manifest_path;
    Ok(m)
}

/// Every `manifests/*/*/*/*` file whose path parts form a valid model name, in sorted order.
pub fn manifest_names(root: &Path) -> Vec<(ModelName, PathBuf)> {
    let mut out = Vec::new();
    let manifests = root.join("manifests");
    for (host, host_dir) in subdirs(&manifests, true) {
        for (ns, ns_dir) in subdirs(&host_dir, true) {
            for (model, model_dir) in subdirs(&ns_dir, true) {
                for (tag, path) in subdirs(&model_dir, false) {
                    let name = ModelName { host: host.clone(), namespace: ns.clone(), model: model.clone(), tag };
                    // Names from disk go through the same grammar as names from users.
                    if ModelName::parse(&format!("{}/{}/{}:{}", name.host, name.namespace, name.model, name.tag)).is_ok() {
                        out.push((name, path));
                    }
                }
            }
        }
    }
    out
}

/// Sorted (name, path) of the directories (or files) directly inside `dir`; unreadable or
/// non-UTF-8 entries are skipped.
pub fn subdirs(dir: &Path, want_dirs: bool) -> Vec<(String, PathBuf)> {
    let Ok(rd) = fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<(String, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let path = e.path();
            let is_dir = fs::metadata(&path).map(|m| m.is_dir()).ok()?;
            (is_dir == want_dirs).then_some(())?;
            Some((e.file_name().into_string().ok()?, path))
        })
        .collect();
    v.sort();
    v
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
