//! The model store: `.gguf` files in a directory (`--models DIR` / `KILN_MODELS`, default
//! `~/.kiln/models`, each named `<file stem>:latest`) and, read-only, an existing Ollama store
//! (`OLLAMA_MODELS`, default `~/.ollama/models`), so models pulled with Ollama are served under
//! the names Ollama gives them (`registry.ollama.ai/library/NAME:TAG` shows as `NAME:TAG`).
//!
//! Names are matched case-insensitively against directory listings; no path is ever built from
//! a user-supplied name, and manifest digests must be `sha256:<64 hex>`, so nothing resolves
//! outside the store.
mod cache;
pub mod name;
pub mod ollama;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use crate::gguf::GgufError;
pub use name::ModelName;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("model {name:?} not found")]
    NotFound { name: String },
    #[error("invalid model name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("invalid digest {digest:?} (expected sha256:<64 hex digits>)")]
    InvalidDigest { digest: String },
    #[error("bad manifest {path}: {reason}")]
    BadManifest { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Gguf { path: PathBuf, source: GgufError },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Ollama's `details` object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ModelDetails {
    pub parent_model: String,
    /// Always "gguf".
    pub format: String,
    /// `general.architecture`, e.g. "gemma3".
    pub family: String,
    pub families: Vec<String>,
    /// Like Ollama: "268.10M", "3.2B".
    pub parameter_size: String,
    /// `general.file_type` name ("Q4_K_M"), else the most common matrix type.
    pub quantization_level: String,
}

/// Where an entry came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// A `.gguf` file in the models directory.
    Directory,
    /// An Ollama manifest (its path); `path` is the model blob.
    Ollama { manifest: PathBuf },
    /// A `.gguf` path given directly (`kiln show ./x.gguf`).
    File,
}

/// Where `find_name` found a model.
enum Found {
    /// A `.gguf` in the models directory, and its listed name.
    File(PathBuf, String),
    /// An Ollama manifest: store root, its name on disk, manifest path.
    Ollama(PathBuf, ModelName, PathBuf),
}

#[derive(Clone, Debug)]
pub struct ModelEntry {
    /// Display name, `name:tag` ("gemma-3-270m-q4_k_m:latest").
    pub name: String,
    /// The GGUF file to load.
    pub path: PathBuf,
    /// Bytes: the file, or for Ollama models the sum of the manifest's layers (as Ollama).
    pub size: u64,
    pub modified: SystemTime,
    /// sha256 hex: of the file, or for Ollama models of the manifest (as Ollama).
    pub digest: String,
    pub details: ModelDetails,
    pub source: ModelSource,
    /// Ollama layers (None/empty for plain `.gguf` files).
    pub template: Option<String>,
    pub system: Option<String>,
    pub params: Option<serde_json::Value>,
    pub messages: Option<serde_json::Value>,
    pub license: Vec<String>,
    pub projectors: Vec<PathBuf>,
    pub adapters: Vec<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct ModelStore {
    models_dir: PathBuf,
    ollama_dir: Option<PathBuf>,
}

/// An environment path, trimmed of spaces and quotes as Ollama's envconfig does.
fn env_path(var: &str) -> Option<PathBuf> {
    let v = std::env::var(var).ok()?;
    let v = v.trim().trim_matches(|c| c == '"' || c == '\'').trim();
    (!v.is_empty()).then(|| PathBuf::from(v))
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}

fn is_gguf(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

impl ModelStore {
    pub fn new(models_dir: PathBuf, ollama_dir: Option<PathBuf>) -> ModelStore {
        ModelStore { models_dir, ollama_dir }
    }

    /// `KILN_MODELS` (default `~/.kiln/models`) and `OLLAMA_MODELS` (default `~/.ollama/models`).
    pub fn from_env() -> ModelStore {
        ModelStore::new(ModelStore::default_models_dir(), Some(ModelStore::default_ollama_dir()))
    }

    /// A models directory with the Ollama store from the environment: what `--models DIR` means.
    pub fn with_models_dir(models_dir: PathBuf) -> ModelStore {
        ModelStore::new(models_dir, Some(ModelStore::default_ollama_dir()))
    }

    pub fn default_models_dir() -> PathBuf {
        env_path("KILN_MODELS").unwrap_or_else(|| home().join(".kiln").join("models"))
    }

    pub fn default_ollama_dir() -> PathBuf {
        env_path("OLLAMA_MODELS").unwrap_or_else(|| home().join(".ollama").join("models"))
    }

    /// The models directory.
    pub fn root(&self) -> &Path {
        &self.models_dir
    }

    pub fn ollama_dir(&self) -> Option<&Path> {
        self.ollama_dir.as_deref()
    }

    /// Every model: the directory's `.gguf` files (sorted by name), then Ollama manifests. A name
    /// found twice is listed once (the directory wins, as in `resolve`). Files that fail to
    /// parse are skipped with a warning so one bad file cannot hide the rest.
    pub fn list(&self) -> Result<Vec<ModelEntry>, StoreError> {
        let mut out: Vec<ModelEntry> = Vec::new();
        for (stem, path) in self.dir_models()? {
            match self.file_entry(&path, format!("{stem}:latest"), ModelSource::Directory) {
                Ok(e) => out.push(e),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "skipping unreadable model"),
            }
        }
        if let Some(root) = &self.ollama_dir {
            for (name, manifest) in ollama::manifest_names(root) {
                let display = name.display_shortest();
                if out.iter().any(|e| e.name.eq_ignore_ascii_case(&display)) {
                    continue;
                }
                match self.ollama_entry(root, name, manifest.clone()) {
                    Ok(e) => out.push(e),
                    Err(e) => tracing::warn!(manifest = %manifest.display(), error = %e, "skipping Ollama model"),
                }
            }
        }
        Ok(out)
    }

    /// A store name (`gemma3`, `gemma3:latest`, `user/x:tag`, any case) or a path to a `.gguf`
    /// file. Command-line use; anything taking names from the network should call
    /// `resolve_name`, which never touches paths outside the store.
    pub fn resolve(&self, name_or_path: &str) -> Result<ModelEntry, StoreError> {
        match self.find_path(name_or_path) {
            Some((path, name)) => self.file_entry(&path, name, ModelSource::File),
            None => self.resolve_name(name_or_path),
        }
    }

    /// A store name only.
    pub fn resolve_name(&self, name: &str) -> Result<ModelEntry, StoreError> {
        match self.find_name(name)? {
            Found::File(path, name) => self.file_entry(&path, name, ModelSource::Directory),
            Found::Ollama(root, on_disk, manifest) => self.ollama_entry(&root, on_disk, manifest),
        }
    }

    /// The GGUF file `resolve` would pick, without reading it (no digest, no header): what
    /// `kiln run` and `kiln bench` need before loading the model themselves.
    pub fn locate(&self, name_or_path: &str) -> Result<PathBuf, StoreError> {
        if let Some((path, _)) = self.find_path(name_or_path) {
            return Ok(path);
        }
        match self.find_name(name_or_path)? {
            Found::File(path, _) => Ok(path),
            Found::Ollama(root, on_disk, manifest) => Ok(ollama::load(&root, on_disk, manifest)?.model_blob),
        }
    }

    /// A path to an existing `.gguf` file, with the name it is listed under.
    fn find_path(&self, name_or_path: &str) -> Option<(PathBuf, String)> {
        let path = Path::new(name_or_path);
        if is_gguf(path) && fs::metadata(path).is_ok_and(|m| m.is_file()) {
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            return Some((path.to_path_buf(), format!("{stem}:latest")));
        }
        None
    }

    /// Where a store name lives: the models directory first, then the Ollama store.
    fn find_name(&self, name: &str) -> Result<Found, StoreError> {
        let parsed = ModelName::parse(name)
            .map_err(|reason| StoreError::InvalidName { name: name.chars().take(200).collect(), reason })?;
        if parsed.is_default_namespace() && parsed.tag.eq_ignore_ascii_case(name::DEFAULT_TAG) {
            let found = self.dir_models()?.into_iter().find(|(stem, _)| stem.eq_ignore_ascii_case(&parsed.model));
            if let Some((stem, path)) = found {
                return Ok(Found::File(path, format!("{stem}:latest")));
            }
        }
        if let Some(root) = &self.ollama_dir {
            let found = ollama::manifest_names(root).into_iter().find(|(n, _)| n.matches(&parsed));
            if let Some((on_disk, manifest)) = found {
                return Ok(Found::Ollama(root.clone(), on_disk, manifest));
            }
        }
        Err(StoreError::NotFound { name: parsed.display_shortest() })
    }

    /// `(stem, path)` of each `.gguf` regular file (symlinks followed) in the models directory
    /// whose stem is a valid model name. A missing directory holds no models.
    fn dir_models(&self) -> Result<Vec<(String, PathBuf)>, StoreError> {
        if !self.models_dir.exists() {
            return Ok(Vec::new());
        }
        let mut v: Vec<(String, PathBuf)> = ollama::subdirs(&self.models_dir, false)
            .into_iter()
            .filter(|(_, p)| is_gguf(p))
            .filter_map(|(_, p)| Some((p.file_stem()?.to_str()?.to_string(), p)))
            .filter(|(stem, _)| ModelName::parse(stem).is_ok_and(|n| n.model == *stem))
            .collect();
        v.sort();
        Ok(v)
    }

    fn file_entry(&self, path: &Path, name: String, source: ModelSource) -> Result<ModelEntry, StoreError> {
        let info = cache::file_info(path, true)?;
        Ok(ModelEntry {
            name,
            path: path.to_path_buf(),
            size: info.size,
            modified: info.modified,
            digest: info.digest.unwrap_or_default(),
            details: info.details,
            source,
            template: None,
            system: None,
            params: None,
            messages: None,
            license: Vec::new(),
            projectors: Vec::new(),
            adapters: Vec::new(),
        })
    }

    fn ollama_entry(&self, root: &Path, name: ModelName, manifest: PathBuf) -> Result<ModelEntry, StoreError> {
        let m = ollama::load(root, name, manifest)?;
        let info = cache::file_info(&m.model_blob, false)?;
        let mut details = info.details;
        // The config blob is what Ollama reports; the GGUF header fills what it lacks.
        let c = &m.config;
        let pick = |ours: &mut String, theirs: &str| {
            if !theirs.is_empty() {
                *ours = theirs.to_string();
            }
        };
        pick(&mut details.format, &c.model_format);
        pick(&mut details.family, &c.model_family);
        pick(&mut details.parameter_size, &c.model_type);
        pick(&mut details.quantization_level, &c.file_type);
        if let Some(f) = c.model_families.as_ref().filter(|f| !f.is_empty()) {
            details.families = f.clone();
        }
        details.parent_model = m.parent_model.clone().unwrap_or_default();
        Ok(ModelEntry {
            name: m.name.display_shortest(),
            path: m.model_blob,
            size: m.size,
            modified: m.modified,
            digest: m.digest,
            details,
            source: ModelSource::Ollama { manifest: m.manifest_path },
            template: m.template,
            system: m.system,
            params: m.params,
            messages: m.messages,
            license: m.license,
            projectors: m.projectors,
            adapters: m.adapters,
        })
    }
}
