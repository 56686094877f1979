//! The reader on the two real models: header facts, tensor census, zero-copy views.
mod gguf_support;

use std::time::Instant;

use gguf_support::{model, GEMMA, SMOLLM};
use kiln_engine::gguf::{GgmlType, GgufError, GgufFile, Value};

#[test]
fn gemma3_header() {
    let Some(path) = model(GEMMA) else { return };
    let t0 = Instant::now();
    let f = GgufFile::open(&path).unwrap();
    eprintln!("gemma3 open+parse: {:?}", t0.elapsed());
    assert_eq!(f.version(), 3);
    assert_eq!(f.get_str("general.architecture").unwrap(), "gemma3");
    assert_eq!(f.get_u32("gemma3.block_count").unwrap(), 18);
    assert_eq!(f.get_u32("gemma3.embedding_length").unwrap(), 640);
    assert_eq!(f.get_str("tokenizer.ggml.model").unwrap(), "llama");
    let tokens = f.get_str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 262144);
    assert_eq!(f.get_f32_array("tokenizer.ggml.scores").unwrap().len(), 262144);
    assert_eq!(f.get_i32_array("tokenizer.ggml.token_type").unwrap().len(), 262144);
    assert_eq!(f.type_census_string(), "F32 109, Q5_0 81, Q4_K 27, Q8_0 10, Q6_K 9");
    assert_eq!(f.quantization_level(), "Q4_K_M");
    assert_eq!(f.tensors().len(), 236);
    for (k, v) in f.metadata() {
        if !matches!(v, Value::Array(_)) {
            eprintln!("{k} = {v}");
        }
    }
    eprintln!("params {} tensors {}", f.parameter_count(), f.tensors().len());
}

#[test]
fn smollm2_header_and_tensor_views() {
    let Some(path) = model(SMOLLM) else { return };
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(f.get_u32("llama.block_count").unwrap(), 30);
    assert_eq!(f.get_u32("llama.embedding_length").unwrap(), 576);
    assert_eq!(f.type_census_string(), "Q4_1 210, F32 61, Q8_0 1");
    let emb = f.tensor("token_embd.weight").unwrap();
    assert_eq!(emb.dims[0], 576);
    let data = f.tensor_data(emb);
    assert_eq!(data.len() as u64, emb.n_bytes);
    // Zero-copy: the view points into the file's own bytes.
    let whole = f.data().as_ptr_range();
    assert!(whole.contains(&data.as_ptr()));
    let last = f.tensors().iter().max_by_key(|t| t.offset).unwrap();
    assert!(f.data_offset() + last.offset + last.n_bytes <= f.data().len() as u64);
    assert!(f.tensors().iter().all(|t| t.ty != GgmlType::Q4_K));
}

#[test]
fn typed_accessor_errors_name_key_and_type() {
    let Some(path) = model(SMOLLM) else { return };
    let f = GgufFile::open(&path).unwrap();
    match f.get_u32("general.architecture") {
        Err(GgufError::WrongType { key, expected, found }) => {
            assert_eq!((key.as_str(), expected, found.as_str()), ("general.architecture", "u32", "string"));
        }
        other => panic!("expected WrongType, got {other:?}"),
    }
    match f.get_str("no.such.key") {
        Err(GgufError::MissingKey { key }) => assert_eq!(key, "no.such.key"),
        other => panic!("expected MissingKey, got {other:?}"),
    }
    let e = f.get_str_array("llama.block_count").unwrap_err();
    assert!(e.to_string().contains("llama.block_count") && e.to_string().contains("u32"), "{e}");
}
