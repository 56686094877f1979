//! Dequantization of real GGUF tensors must match gguf-py's port of ggml's `dequantize_row_*`
//! bit for bit: the first rows exactly, and the whole tensor through a sha256 of its f32 bytes.
use kiln_kernels::{dequantize_row, GgmlType};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

#[derive(Deserialize)]
struct Index {
    files: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    model: String,
    tensor: String,
    #[serde(rename = "type")]
    ty: String,
    ne: Vec<usize>,
    rows_file: String,
    rows: usize,
    full_tensor_f32le_sha256: String,
}

fn models_dir() -> PathBuf {
    match std::env::var_os("KILN_MODELS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".kiln/models"),
    }
}

/// (path, required): the two dev models are required in CI; synthetic ones only if present.
fn model_path(model: &str) -> (PathBuf, bool) {
    match model {
        "gemma3" => (models_dir().join("gemma-3-270m-q4_k_m.gguf"), true),
        "smollm2" => (models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf"), true),
        other => (models_dir().join(format!("{other}.gguf")), false),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn dequantize_matches_gguf_py_reference() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/reference/dequant");
    let index: Index = serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap()).unwrap();
    let skip_models = std::env::var("KILN_SKIP_MODEL_TESTS").is_ok_and(|v| v == "1");
    let mut checked = 0;
    for e in &index.files {
        let (path, required) = model_path(&e.model);
        if !path.exists() {
            if !required {
                eprintln!("skipping {} {}: synthetic model not available", e.model, e.tensor);
                continue;
            }
            if skip_models {
                eprintln!("SKIPPED: {} missing and KILN_SKIP_MODEL_TESTS=1", path.display());
                continue;
            }
            panic!("model {} missing (set KILN_MODELS or KILN_SKIP_MODEL_TESTS=1)", path.display());
        }
        let file = kiln_engine::gguf::GgufFile::open(&path).unwrap();
        let info = file.tensor(&e.tensor).unwrap_or_else(|| panic!("{}: no tensor {}", e.model, e.tensor));
        let ty = GgmlType::from_id(info.ty.id()).unwrap();
        assert_eq!(ty.name(), e.ty, "{} type", e.tensor);
        let dims: Vec<usize> = info.dims.iter().map(|&d| d as usize).collect();
        assert_eq!(dims, e.ne, "{} dims", e.tensor);
        let data = file.tensor_data(info);
        let (ne0, n_rows) = (e.ne[0], e.ne[1..].iter().product::<usize>());
        let row_bytes = ty.row_bytes(ne0).unwrap();
        assert_eq!(data.len(), row_bytes * n_rows);

        let want: Vec<f32> = std::fs::read(root.join(&e.rows_file))
            .unwrap()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(want.len(), e.rows * ne0);

        let mut row = vec![0f32; ne0];
        let mut hasher = Sha256::new();
        for r in 0..n_rows {
            dequantize_row(ty, &data[r * row_bytes..(r + 1) * row_bytes], &mut row).unwrap();
            if r < e.rows {
                for (i, (g, w)) in row.iter().zip(&want[r * ne0..(r + 1) * ne0]).enumerate() {
                    assert_eq!(g.to_bits(), w.to_bits(), "{} {} row {r} elem {i}: {g} vs {w}", e.model, e.tensor);
                }
            }
            for v in &row {
                hasher.update(v.to_le_bytes());
            }
        }
        assert_eq!(hex(&hasher.finalize()), e.full_tensor_f32le_sha256, "{} {} sha256", e.model, e.tensor);
        checked += 1;
    }
    eprintln!("checked {checked} tensors");
    assert!(checked > 0 || skip_models);
}
