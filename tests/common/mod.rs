//! Helpers shared by the integration tests that run the real models.
#![allow(dead_code)]

pub mod fidelity;

use std::path::PathBuf;

/// The directory holding the development models (`scripts/fetch-models` puts them there).
pub fn models_dir() -> PathBuf {
    match std::env::var_os("KILN_MODELS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".kiln/models"),
    }
}

/// Path of a real model by its short reference name, or None when model tests are skipped
/// on purpose (`KILN_SKIP_MODEL_TESTS=1`). A missing model is a failure otherwise: CI fetches them.
pub fn model_path(name: &str) -> Option<PathBuf> {
    let file = match name {
        "gemma3" => "gemma-3-270m-q4_k_m.gguf",
        "smollm2" => "SmolLM2-135M-Instruct.Q4_1.gguf",
        other => panic!("unknown reference model {other}"),
    };
    let p = models_dir().join(file);
    if std::env::var("KILN_SKIP_MODEL_TESTS").as_deref() == Ok("1") {
        eprintln!("SKIPPED: KILN_SKIP_MODEL_TESTS=1, not running tests on {file}");
        return None;
    }
    assert!(p.exists(), "{} is missing: run scripts/fetch-models (or set KILN_SKIP_MODEL_TESTS=1)", p.display());
    Some(p)
}

pub fn reference(file: &str) -> serde_json::Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/reference").join(file);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().expect("array of ids").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().expect("array of numbers").iter().map(|x| x.as_f64().expect("number") as f32).collect()
}
