//! Model store: a models directory and an Ollama-layout store built in a temp dir; name
//! normalization; digest validation and path traversal.
mod gguf_support;

use std::fs;
use std::path::{Path, PathBuf};

use gguf_support::{model, SMOLLM};
use kiln_engine::store::{ModelSource, ModelStore, StoreError};

const FAKE_BLOB: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn link(src: &Path, dst: &Path) {
    std::os::unix::fs::symlink(src, dst).unwrap();
}

fn blob(root: &Path, hex: &str, bytes: &[u8]) -> String {
    fs::write(root.join("blobs").join(format!("sha256-{hex}")), bytes).unwrap();
    format!("sha256:{hex}")
}

fn sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn manifest(root: &Path, host: &str, ns: &str, model: &str, tag: &str, layers: &[(&str, &str, u64)]) -> PathBuf {
    let dir = root.join("manifests").join(host).join(ns).join(model);
    fs::create_dir_all(&dir).unwrap();
    let layers: Vec<String> = layers
        .iter()
        .map(|(mt, d, size)| format!(r#"{{"mediaType":"application/vnd.ollama.image.{mt}","digest":"{d}","size":{size}}}"#))
        .collect();
    let config = blob(root, &sha(b"{}x"), br#"{"model_format":"gguf","model_family":"llama","model_type":"135M","file_type":"Q4_1"}"#);
    let json = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{config}","size":10}},"layers":[{}]}}"#,
        layers.join(",")
    );
    let path = dir.join(tag);
    fs::write(&path, json).unwrap();
    path
}

/// models/: SmolLM2 (symlink) and a hostile file; ollama/: smol:latest with template, system
/// and params layers, and hf.co/org/Repo-GGUF:Q4_1.
struct Fixture {
    _tmp: tempfile::TempDir,
    models: PathBuf,
    ollama: PathBuf,
    smollm: PathBuf,
}

fn fixture() -> Option<Fixture> {
    let smollm = model(SMOLLM)?;
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    let ollama = tmp.path().join("ollama");
    fs::create_dir_all(&models).unwrap();
    fs::create_dir_all(ollama.join("blobs")).unwrap();
    link(&smollm, &models.join(SMOLLM));
    fs::write(models.join("hostile.gguf"), b"GGUF\x03\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00").unwrap();
    fs::write(models.join("notes.txt"), b"not a model").unwrap();
    let size = fs::metadata(&smollm).unwrap().len();
    link(&smollm, &ollama.join("blobs").join(format!("sha256-{FAKE_BLOB}")));
    let model_digest = format!("sha256:{FAKE_BLOB}");
    let template = blob(&ollama, &sha(b"T"), b"{{ .Prompt }}");
    let system = blob(&ollama, &sha(b"S"), b"You are terse.");
    let params = blob(&ollama, &sha(b"P"), br#"{"stop":["<|im_end|>"],"temperature":0.6}"#);
    manifest(
        &ollama,
        "registry.ollama.ai",
        "library",
        "smol",
        "latest",
        &[("model", &model_digest, size), ("template", &template, 13), ("system", &system, 14), ("params", &params, 41)],
    );
    manifest(&ollama, "hf.co", "org", "Repo-GGUF", "Q4_1", &[("model", &model_digest, size)]);
    Some(Fixture { _tmp: tmp, models, ollama, smollm })
}

#[test]
fn lists_directory_and_ollama_models() {
    let Some(fx) = fixture() else { return };
    let store = ModelStore::new(fx.models.clone(), Some(fx.ollama.clone()));
    let list = store.list().unwrap();
    let names: Vec<&str> = list.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["SmolLM2-135M-Instruct.Q4_1:latest", "hf.co/org/Repo-GGUF:Q4_1", "smol:latest"]);

    let dir = &list[0];
    let bytes = fs::read(&fx.smollm).unwrap();
    assert_eq!(dir.digest, sha(&bytes));
    assert_eq!(dir.size, bytes.len() as u64);
    assert_eq!(dir.source, ModelSource::Directory);
    assert_eq!(dir.details.format, "gguf");
    assert_eq!(dir.details.family, "llama");
    assert_eq!(dir.details.quantization_level, "Q4_1");
    assert!(dir.details.parameter_size.ends_with('M'), "{}", dir.details.parameter_size);
    assert!(dir.template.is_none());

    let smol = &list[2];
    assert!(matches!(&smol.source, ModelSource::Ollama { manifest } if manifest.ends_with("library/smol/latest")));
    assert_eq!(smol.path, fx.ollama.join("blobs").join(format!("sha256-{FAKE_BLOB}")));
    assert_eq!(smol.template.as_deref(), Some("{{ .Prompt }}"));
    assert_eq!(smol.system.as_deref(), Some("You are terse."));
    assert_eq!(smol.params.as_ref().unwrap()["temperature"], 0.6);
    // Ollama reports the manifest's digest and the sum of its layers.
    let manifest_bytes = fs::read(fx.ollama.join("manifests/registry.ollama.ai/library/smol/latest")).unwrap();
    assert_eq!(smol.digest, sha(&manifest_bytes));
    assert_eq!(smol.size, bytes.len() as u64 + 13 + 14 + 41 + 10);
    assert_eq!(smol.details.parameter_size, "135M"); // from the config blob
}

#[test]
fn resolves_names_case_insensitively_and_paths() {
    let Some(fx) = fixture() else { return };
    let store = ModelStore::new(fx.models.clone(), Some(fx.ollama.clone()));
    for name in ["smol", "SMOL:Latest", "library/smol", "registry.ollama.ai/library/smol:latest"] {
        assert_eq!(store.resolve(name).unwrap().name, "smol:latest", "{name}");
    }
    assert_eq!(store.resolve("smollm2-135m-instruct.q4_1").unwrap().name, "SmolLM2-135M-Instruct.Q4_1:latest");
    assert_eq!(store.resolve("HF.CO/org/repo-gguf:q4_1").unwrap().name, "hf.co/org/Repo-GGUF:Q4_1");
    let by_path = store.resolve(fx.smollm.to_str().unwrap()).unwrap();
    assert_eq!(by_path.source, ModelSource::File);
    assert_eq!(by_path.path, fx.smollm);
    assert!(matches!(store.resolve("smol:other"), Err(StoreError::NotFound { .. })));
    assert!(matches!(store.resolve("nothing"), Err(StoreError::NotFound { .. })));
    // The hostile file is skipped by list and reported by resolve.
    assert!(matches!(store.resolve("hostile"), Err(StoreError::Gguf { .. })));
    // resolve_name never treats its input as a path.
    assert!(store.resolve_name(fx.smollm.to_str().unwrap()).is_err());
}

#[test]
fn traversal_names_are_rejected() {
    let Some(fx) = fixture() else { return };
    let store = ModelStore::new(fx.models.clone(), Some(fx.ollama.clone()));
    for bad in [
        "../../etc/passwd",
        "..",
        "../models/SmolLM2-135M-Instruct.Q4_1",
        "a/../../b",
        "/etc/passwd",
        "x:../../y",
        "smol:../latest",
        "..\\..\\x",
        "%2e%2e%2fsmol",
        "smol\0",
        "registry.ollama.ai/library/../../blobs:x",
        &"a".repeat(400),
    ] {
        match store.resolve(bad) {
            Err(StoreError::InvalidName { .. }) => {}
            other => panic!("{bad:?}: expected InvalidName, got {other:?}"),
        }
    }
}

#[test]
fn bad_digests_are_rejected() {
    let Some(fx) = fixture() else { return };
    let evil = [
        ("evil1", "sha256:../../../../etc/passwd"),
        ("evil2", "sha256:0123"),
        ("evil3", &format!("sha256:{}g", &FAKE_BLOB[..63])),
        ("evil4", &format!("md5:{FAKE_BLOB}")),
        ("evil5", &format!("sha256:{FAKE_BLOB}/../x")),
    ];
    for (name, digest) in evil {
        manifest(&fx.ollama, "registry.ollama.ai", "library", name, "latest", &[("model", digest, 1)]);
    }
    let store = ModelStore::new(fx.models.clone(), Some(fx.ollama.clone()));
    let list = store.list().unwrap();
    assert_eq!(list.len(), 3, "evil manifests must be skipped: {:?}", list.iter().map(|e| &e.name).collect::<Vec<_>>());
    for (name, _) in evil {
        assert!(matches!(store.resolve(name), Err(StoreError::InvalidDigest { .. })), "{name}");
    }
}

#[test]
fn directory_model_shadows_ollama_model_of_the_same_name() {
    let Some(fx) = fixture() else { return };
    link(&fx.smollm, &fx.models.join("smol.gguf"));
    let store = ModelStore::new(fx.models.clone(), Some(fx.ollama.clone()));
    let list = store.list().unwrap();
    assert_eq!(list.iter().filter(|e| e.name.eq_ignore_ascii_case("smol:latest")).count(), 1);
    assert_eq!(store.resolve("smol").unwrap().source, ModelSource::Directory);
}

#[test]
fn missing_directories_hold_no_models() {
    let store = ModelStore::new(PathBuf::from("/nonexistent/kiln"), Some(PathBuf::from("/nonexistent/ollama")));
    assert!(store.list().unwrap().is_empty());
    assert!(matches!(store.resolve("x"), Err(StoreError::NotFound { .. })));
}

#[test]
fn digest_is_cached() {
    let Some(fx) = fixture() else { return };
    let store = ModelStore::new(fx.models.clone(), None);
    let t0 = std::time::Instant::now();
    let a = store.list().unwrap();
    let first = t0.elapsed();
    let t1 = std::time::Instant::now();
    let b = store.list().unwrap();
    let second = t1.elapsed();
    eprintln!("list: first {first:?}, cached {second:?}");
    assert_eq!(a[0].digest, b[0].digest);
    assert!(second < first, "cached list ({second:?}) not faster than the first ({first:?})");
}
