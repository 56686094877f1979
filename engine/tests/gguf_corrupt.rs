//! Hand-built corrupt GGUF files, one per failure class (llama.cpp `test-gguf.cpp`'s
//! HANDCRAFTED_* classes, the Talos 2024 shapes, and the later ones in spec/reliability.md §1.2).
//! Each must come back as the specific `GgufError` variant, quickly, without a panic.
mod gguf_support;

use std::time::{Duration, Instant};

use gguf_support::Bytes;
use kiln_engine::gguf::{GgufError, GgufFile};

const F32: u32 = 0;
const Q4_0: u32 = 2;

fn parse_err(bytes: Vec<u8>) -> GgufError {
    let t0 = Instant::now();
    let r = GgufFile::from_bytes(bytes);
    assert!(t0.elapsed() < Duration::from_millis(100), "rejecting took {:?}", t0.elapsed());
    match r {
        Ok(_) => panic!("corrupt file was accepted"),
        Err(e) => {
            assert!(!e.to_string().is_empty());
            e
        }
    }
}

macro_rules! corrupt {
    ($name:ident, $bytes:expr, $pat:pat $(if $guard:expr)?) => {
        #[test]
        fn $name() {
            let err = parse_err($bytes.0);
            assert!(matches!(err, $pat $(if $guard)?), "got {err:?}: {err}");
        }
    };
}

/// One F32 tensor of `n` elements at offset 0, data present.
fn one_tensor(n: u64) -> Bytes {
    Bytes::header(1, 0).tensor("t", &[n], F32, 0).pad(32).zeros(4 * n as usize)
}

// ---- header ----
corrupt!(header_bad_magic, Bytes::new().raw(b"GGML").u32(3).u64(0).u64(0), GgufError::BadMagic { ref found } if found == "GGML");
corrupt!(header_empty_file, Bytes::new(), GgufError::Truncated { offset: 0, what: "magic", .. });
corrupt!(header_only_magic, Bytes::new().raw(b"GGUF"), GgufError::Truncated { offset: 4, what: "version", .. });
corrupt!(header_version_1, Bytes::new().raw(b"GGUF").u32(1).u64(0).u64(0), GgufError::UnsupportedVersion { version: 1 });
corrupt!(header_version_future, Bytes::new().raw(b"GGUF").u32(4).u64(0).u64(0), GgufError::UnsupportedVersion { version: 4 });
corrupt!(header_version_byteswapped, Bytes::new().raw(b"GGUF").u32(3u32.swap_bytes()).u64(0).u64(0), GgufError::BigEndian { .. });
corrupt!(header_n_tensors_max, Bytes::header(u64::MAX, 0), GgufError::CountTooLarge { what: "tensor count", offset: 8, .. });
corrupt!(header_n_kv_max, Bytes::header(0, u64::MAX), GgufError::CountTooLarge { what: "metadata count", offset: 16, .. });
// ds4 #545: 2^32 entries in a 24-byte file would be a ~137 GB calloc.
corrupt!(header_n_kv_2_pow_32, Bytes::header(0, 1 << 32), GgufError::CountTooLarge { what: "metadata count", .. });
corrupt!(header_n_tensors_exceeds_file, Bytes::header(1000, 0).zeros(100), GgufError::CountTooLarge { what: "tensor count", .. });

// ---- metadata ----
corrupt!(kv_key_length_2_pow_63, Bytes::header(0, 1).u64(1 << 63).zeros(16), GgufError::StringTooLong { len, offset: 24, .. } if len == 1 << 63);
corrupt!(kv_key_past_eof, Bytes::header(0, 1).u64(100).raw(b"abcdefgh"), GgufError::Truncated { offset: 32, what: "string bytes", need: 100, remaining: 8, .. });
corrupt!(kv_empty_key, Bytes::header(0, 1).str("").u32(4).u32(7), GgufError::EmptyKey { offset: 24 });
corrupt!(kv_duplicate_key, Bytes::header(0, 2).kv_u32("a.b", 1).kv_u32("a.b", 2), GgufError::DuplicateKey { ref key, .. } if key == "a.b");
corrupt!(kv_bad_type_13, Bytes::header(0, 1).str("k").u32(13).u32(0), GgufError::BadValueType { type_id: 13, ref key, .. } if key == "k");
corrupt!(kv_bad_type_u32_max, Bytes::header(0, 1).str("k").u32(u32::MAX).u32(0), GgufError::BadValueType { type_id: u32::MAX, .. });
corrupt!(kv_array_bad_elem_type, Bytes::header(0, 1).str("k").u32(9).u32(99).u64(0), GgufError::BadValueType { type_id: 99, .. });
corrupt!(kv_array_length_2_pow_63, Bytes::header(0, 1).str("k").u32(9).u32(0).u64(1 << 63).zeros(8), GgufError::ArrayTooLong { len, .. } if len == 1 << 63);
// Talos 1912: a string-array count whose allocation would overflow; here it cannot fit the file.
corrupt!(kv_string_array_count_exceeds_file, Bytes::header(0, 1).str("tokens").u32(9).u32(8).u64(1 << 20).str("a"), GgufError::Truncated { what: "array elements", ref context, .. } if context.contains("tokens"));
corrupt!(kv_string_value_past_eof, Bytes::header(0, 1).str("name").u32(8).u64(50).raw(b"short"), GgufError::Truncated { what: "string bytes", ref context, .. } if context.contains("name"));
corrupt!(kv_string_value_2_pow_63, Bytes::header(0, 1).str("name").u32(8).u64(1 << 63).zeros(8), GgufError::StringTooLong { ref context, .. } if context.contains("name"));
corrupt!(kv_nested_array_depth_100, nested_arrays(100), GgufError::NestingTooDeep { ref key, .. } if key == "deep");
corrupt!(kv_bool_not_0_or_1, Bytes::header(0, 1).str("flag").u32(7).u8(2), GgufError::BadBool { value: 2, .. });
corrupt!(kv_value_truncated, Bytes::header(0, 1).str("n").u32(10).u32(0), GgufError::Truncated { what: "value", .. });
corrupt!(kv_align_zero, Bytes::header(0, 1).kv_u32("general.alignment", 0), GgufError::BadAlignment { .. });
corrupt!(kv_align_13, Bytes::header(0, 1).kv_u32("general.alignment", 13), GgufError::BadAlignment { .. });
corrupt!(kv_align_2_pow_31, Bytes::header(0, 1).kv_u32("general.alignment", 1 << 31), GgufError::BadAlignment { .. });
corrupt!(kv_align_wrong_type, Bytes::header(0, 1).str("general.alignment").u32(10).u64(32), GgufError::BadAlignment { .. });

// ---- tensor infos ----
corrupt!(tensor_empty_name, Bytes::header(1, 0).tensor("", &[32], F32, 0).pad(32).zeros(128), GgufError::BadTensorName { index: 0, .. });
corrupt!(tensor_name_64_bytes, Bytes::header(1, 0).tensor(&"x".repeat(64), &[32], F32, 0).pad(32).zeros(128), GgufError::BadTensorName { .. });
corrupt!(tensor_name_length_2_pow_63, Bytes::header(1, 0).u64(1 << 63).zeros(64), GgufError::BadTensorName { .. });
corrupt!(tensor_duplicate_name, Bytes::header(2, 0).tensor("w", &[32], F32, 0).tensor("w", &[32], F32, 128).pad(32).zeros(256), GgufError::DuplicateTensor { ref name, .. } if name == "w");
corrupt!(tensor_n_dims_5, Bytes::header(1, 0).tensor("t", &[1, 1, 1, 1, 1], F32, 0).pad(32).zeros(64), GgufError::BadDimCount { n_dims: 5, .. });
corrupt!(tensor_n_dims_u32_max, Bytes::header(1, 0).str("t").u32(u32::MAX).zeros(64), GgufError::BadDimCount { n_dims: u32::MAX, .. });
corrupt!(tensor_n_dims_0, Bytes::header(1, 0).str("t").u32(0).u32(F32).u64(0).zeros(64), GgufError::BadDimCount { n_dims: 0, .. });
// whisper.cpp #3864 / llama.cpp #24263: a zero dim reached a division.
corrupt!(tensor_zero_dim, Bytes::header(1, 0).tensor("t", &[32, 0], F32, 0).pad(32).zeros(64), GgufError::BadDim { index: 1, value: 0, .. });
corrupt!(tensor_negative_dim, Bytes::header(1, 0).tensor("t", &[u64::MAX], F32, 0).pad(32).zeros(64), GgufError::BadDim { value: u64::MAX, .. });
// llama.cpp #27203: (INT64_MAX, 2, 1, 1) overflows the element count.
corrupt!(tensor_elements_overflow, Bytes::header(1, 0).tensor("t", &[i64::MAX as u64, 2, 1, 1], F32, 0).pad(32).zeros(64), GgufError::TooManyElements { .. });
corrupt!(tensor_ne_4x_int32_max, Bytes::header(1, 0).tensor("t", &[4 * i32::MAX as u64; 4], F32, 0).pad(32).zeros(64), GgufError::TooManyElements { .. });
// Bytes near u64::MAX (CVE-2026-33298, GGML_PAD wrap): elements fit, bytes do not.
corrupt!(tensor_bytes_overflow, Bytes::header(1, 0).tensor("t", &[1 << 61, 2], F32, 0).pad(32).zeros(64), GgufError::TooManyElements { .. });
corrupt!(tensor_type_4_removed, Bytes::header(1, 0).tensor("t", &[32], 4, 0).pad(32).zeros(64), GgufError::UnknownTensorType { type_id: 4, .. });
corrupt!(tensor_type_31, Bytes::header(1, 0).tensor("t", &[32], 31, 0).pad(32).zeros(64), GgufError::UnknownTensorType { type_id: 31, .. });
corrupt!(tensor_type_1000, Bytes::header(1, 0).tensor("t", &[32], 1000, 0).pad(32).zeros(64), GgufError::UnknownTensorType { type_id: 1000, .. });
corrupt!(tensor_type_u32_max, Bytes::header(1, 0).tensor("t", &[32], u32::MAX, 0).pad(32).zeros(64), GgufError::UnknownTensorType { type_id: u32::MAX, .. });
corrupt!(tensor_row_not_block_multiple, Bytes::header(1, 0).tensor("q", &[16, 2], Q4_0, 0).pad(32).zeros(64), GgufError::BadRowLength { ne0: 16, block_size: 32, .. });
corrupt!(tensor_misaligned_offset, Bytes::header(1, 0).tensor("t", &[8], F32, 1).pad(32).zeros(64), GgufError::MisalignedTensor { offset: 1, alignment: 32, .. });
corrupt!(tensor_offset_u64_max, Bytes::header(1, 0).tensor("t", &[8], F32, u64::MAX).pad(32).zeros(64), GgufError::MisalignedTensor { .. });
// CVE-2026-7482: offset + size past the end (and here, overflowing u64).
corrupt!(tensor_offset_plus_size_wraps, Bytes::header(1, 0).tensor("t", &[8], F32, u64::MAX - 31).pad(32).zeros(64), GgufError::TensorOutOfBounds { .. });
corrupt!(tensor_offset_past_eof, Bytes::header(1, 0).tensor("t", &[8], F32, 1 << 20).pad(32).zeros(64), GgufError::TensorOutOfBounds { .. });
corrupt!(tensor_info_truncated, Bytes::header(1, 0).str("t").u32(4).u64(8).u64(8).u64(8), GgufError::Truncated { what: "dimension", ref context, .. } if context.contains("\"t\""));

// ---- data section ----
corrupt!(data_one_byte_short, Bytes({ let mut b = one_tensor(32).0; b.pop(); b }), GgufError::TensorOutOfBounds { n_bytes: 128, data_len: 127, .. });
corrupt!(data_section_missing, Bytes::header(1, 0).tensor("t", &[8], F32, 0), GgufError::DataOutOfBounds { .. });
corrupt!(data_overlapping_tensors, Bytes::header(2, 0).tensor("a", &[64], F32, 0).tensor("b", &[64], F32, 128).pad(32).zeros(512), GgufError::OverlappingTensors { .. });
corrupt!(data_custom_align_offset, Bytes::header(1, 1).kv_u32("general.alignment", 64).tensor("t", &[8], F32, 32).pad(64).zeros(256), GgufError::MisalignedTensor { offset: 32, alignment: 64, .. });

/// `depth` arrays each holding one array, innermost holding one u8.
fn nested_arrays(depth: usize) -> Bytes {
    let mut b = Bytes::header(0, 1).str("deep").u32(9);
    for _ in 0..depth {
        b = b.u32(9).u64(1);
    }
    b.u32(0).u64(1).u8(7)
}

// ---- the well-formed neighbours of the classes above must still load ----

#[test]
fn empty_header_loads() {
    let f = GgufFile::from_bytes(Bytes::header(0, 0).0).unwrap();
    assert!(f.metadata().is_empty() && f.tensors().is_empty());
    assert_eq!(f.alignment(), 32);
}

#[test]
fn custom_alignment_1_loads() {
    let b = Bytes::header(2, 1).kv_u32("general.alignment", 1).tensor("a", &[3], 1 /*F16*/, 0).tensor("b", &[1], F32, 6).zeros(10);
    let f = GgufFile::from_bytes(b.0).unwrap();
    assert_eq!(f.alignment(), 1);
    assert_eq!(f.tensor_data(f.tensor("b").unwrap()).len(), 4);
}

#[test]
fn nesting_within_limit_loads() {
    let f = GgufFile::from_bytes(nested_arrays(3).0).unwrap();
    assert_eq!(f.get("deep").unwrap().type_name(), "array<array<array<array<u8>>>>");
}

#[test]
fn tensors_out_of_order_but_disjoint_load() {
    let b = Bytes::header(2, 0).tensor("a", &[32], F32, 128).tensor("b", &[32], F32, 0).pad(32).zeros(256);
    let f = GgufFile::from_bytes(b.0).unwrap();
    assert_eq!(f.tensor("a").unwrap().offset, 128);
}

#[test]
fn one_tensor_exact_size_loads() {
    let f = GgufFile::from_bytes(one_tensor(32).0).unwrap();
    assert_eq!(f.tensors()[0].n_bytes, 128);
}

#[test]
fn errors_name_offset_and_key() {
    let e = parse_err(Bytes::header(0, 1).str("general.name").u32(8).u64(50).raw(b"short").0);
    let msg = e.to_string();
    assert!(msg.contains("general.name") && msg.contains("byte 56"), "{msg}");
    let e = parse_err(Bytes::header(1, 0).tensor("blk.0.attn_q.weight", &[32], 77, 0).0);
    assert!(e.to_string().contains("blk.0.attn_q.weight") && e.to_string().contains("77"), "{e}");
}

/// CVE-2024-39721 shape: device files and directories are refused before any read.
#[test]
fn open_refuses_non_files() {
    assert!(matches!(GgufFile::open("/dev/zero"), Err(GgufError::NotAFile { .. })));
    assert!(matches!(GgufFile::open(std::env::temp_dir()), Err(GgufError::NotAFile { .. })));
    assert!(matches!(GgufFile::open("/nonexistent/model.gguf"), Err(GgufError::Io { .. })));
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(GgufFile::open(&empty), Err(GgufError::Truncated { offset: 0, .. })));
}
