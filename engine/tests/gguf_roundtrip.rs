//! Writer tests: reader -> writer -> reader on both real models reproduces metadata and tensor
//! bytes; hand-built files with every value type, nested arrays and custom alignment.
mod gguf_support;

use gguf_support::{model, GEMMA, SMOLLM};
use kiln_engine::gguf::{Array, GgmlType, GgufError, GgufFile, GgufWriter, StrArray, Value};

fn round_trip(file: &str) {
    let Some(path) = model(file) else { return };
    let a = GgufFile::open(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy.gguf");
    let written = GgufWriter::from_file(&a).write_to_path(&out).unwrap();
    let b = GgufFile::open(&out).unwrap();
    assert_eq!(written, b.data().len() as u64);
    assert_eq!(b.version(), a.version());
    assert_eq!(b.alignment(), a.alignment());
    assert!(a.metadata() == b.metadata(), "metadata differs after round trip");
    assert_eq!(a.tensors(), b.tensors());
    for t in a.tensors() {
        assert!(a.tensor_data(t) == b.tensor_data(b.tensor(&t.name).unwrap()), "tensor {} bytes differ", t.name);
    }
    // llama.cpp/gguf-py lay files out the same way (contiguous, padded), so the copy is identical.
    assert!(a.data() == b.data(), "{file}: rewritten file is not byte-identical");
}

#[test]
fn round_trip_smollm2() {
    round_trip(SMOLLM);
}

#[test]
fn round_trip_gemma3() {
    round_trip(GEMMA);
}

fn every_value() -> Vec<(String, Value)> {
    let strs: StrArray = ["a", "", "héllo", "<0x0A>"].into_iter().collect();
    vec![
        ("u8".into(), Value::U8(200)),
        ("i8".into(), Value::I8(-5)),
        ("u16".into(), Value::U16(65535)),
        ("i16".into(), Value::I16(-300)),
        ("u32".into(), Value::U32(4_000_000_000)),
        ("i32".into(), Value::I32(-7)),
        ("f32".into(), Value::F32(1.5e-6)),
        ("bool".into(), Value::Bool(true)),
        ("string".into(), Value::String("{% for m in messages %}".into())),
        ("u64".into(), Value::U64(u64::MAX)),
        ("i64".into(), Value::I64(i64::MIN)),
        ("f64".into(), Value::F64(-2.25)),
        ("arr.str".into(), Value::Array(Array::String(strs))),
        ("arr.f32".into(), Value::Array(Array::F32(vec![0.5, -1.0]))),
        ("arr.i32".into(), Value::Array(Array::I32(vec![1, -2, 3]))),
        ("arr.u8".into(), Value::Array(Array::U8(vec![]))),
        ("arr.bool".into(), Value::Array(Array::Bool(vec![true, false]))),
        ("arr.f64".into(), Value::Array(Array::F64(vec![1e300]))),
        (
            "arr.nested".into(),
            Value::Array(Array::Array(vec![
                Array::I64(vec![1, 2]),
                Array::String(["x", "y"].into_iter().collect()),
                Array::Array(vec![Array::U16(vec![9])]),
            ])),
        ),
    ]
}

#[test]
fn every_value_type_and_custom_alignment_round_trip() {
    let w_data: Vec<u8> = (0..34u8).collect(); // one Q8_0 block
    let norm: Vec<u8> = 1.0f32.to_le_bytes().repeat(3);
    let mut w = GgufWriter::new(3, 64);
    for (k, v) in every_value() {
        w.push_metadata(k, v);
    }
    let w = w.tensor("blk.0.ffn_up.weight", &[32], GgmlType::Q8_0, &w_data).tensor("output_norm.weight", &[3], GgmlType::F32, &norm);
    let mut bytes = Vec::new();
    w.write(&mut bytes).unwrap();
    let f = GgufFile::from_bytes(bytes).unwrap();
    assert_eq!(f.alignment(), 64);
    // The writer adds general.alignment for a non-default alignment.
    assert_eq!(f.get_u32("general.alignment").unwrap(), 64);
    let mut expected = every_value();
    expected.push(("general.alignment".into(), Value::U32(64)));
    assert_eq!(f.metadata(), &expected[..]);
    assert_eq!(f.get_str_array("arr.str").unwrap(), vec!["a", "", "héllo", "<0x0A>"]);
    assert_eq!(f.get_i32_array("arr.i32").unwrap(), vec![1, -2, 3]);
    assert_eq!(f.get_u64("u64").unwrap(), u64::MAX);
    assert!(matches!(f.get_u32("u64"), Err(GgufError::OutOfRange { .. })));
    assert_eq!(f.get_u32("u8").unwrap(), 200);
    assert_eq!(f.get_i32("i16").unwrap(), -300);
    assert!(matches!(f.get_u32("i8"), Err(GgufError::OutOfRange { .. })));
    assert_eq!(f.get_f32("f64").unwrap(), -2.25);
    let t = f.tensor("output_norm.weight").unwrap();
    assert_eq!(t.offset % 64, 0);
    assert_eq!(f.tensor_data(t), &norm[..]);
    assert_eq!(f.tensor_data(f.tensor("blk.0.ffn_up.weight").unwrap()), &w_data[..]);
    assert_eq!(f.data_offset() % 64, 0);
}

#[test]
fn writer_rejects_what_the_reader_would() {
    let four = [0u8; 4];
    let cases: Vec<GgufWriter> = vec![
        GgufWriter::new(1, 32),
        GgufWriter::new(3, 24),
        GgufWriter::new(3, 32).metadata("k", Value::U8(1)).metadata("k", Value::U8(2)),
        GgufWriter::new(3, 32).metadata("", Value::U8(1)),
        GgufWriter::new(3, 32).metadata("general.alignment", Value::U32(64)),
        GgufWriter::new(3, 32).tensor("t", &[2], GgmlType::F32, &four),
        GgufWriter::new(3, 32).tensor("t", &[16], GgmlType::Q4_0, &four),
        GgufWriter::new(3, 32).tensor("t", &[1, 1, 1, 1, 1], GgmlType::F32, &four),
        GgufWriter::new(3, 32).tensor("t", &[1], GgmlType::F32, &four).tensor("t", &[1], GgmlType::F32, &four),
        GgufWriter::new(3, 32).tensor("n".repeat(64), &[1], GgmlType::F32, &four),
    ];
    for (i, w) in cases.iter().enumerate() {
        let mut out = Vec::new();
        assert!(matches!(w.write(&mut out), Err(GgufError::InvalidWrite(_) | GgufError::BadRowLength { .. })), "case {i} was accepted");
    }
}

#[test]
fn version_2_round_trips() {
    let data = 7.0f32.to_le_bytes();
    let mut bytes = Vec::new();
    GgufWriter::new(2, 32).metadata("general.name", Value::String("v2".into())).tensor("t", &[1], GgmlType::F32, &data).write(&mut bytes).unwrap();
    assert_eq!(&bytes[4..8], &2u32.to_le_bytes());
    let f = GgufFile::from_bytes(bytes).unwrap();
    assert_eq!((f.version(), f.get_str("general.name").unwrap()), (2, "v2"));
    assert_eq!(f.tensor_data(f.tensor("t").unwrap()), &data);
}

/// The huge-page copy holds the same bytes and parse as the memory map; a malformed file is the
/// same clear error either way.
#[test]
fn huge_page_copy_matches_the_memory_map() {
    use kiln_engine::gguf::WeightMemory;
    let Some(path) = model(SMOLLM) else { return };
    let mapped = GgufFile::open_with(&path, WeightMemory::Mmap).unwrap();
    let copied = GgufFile::open_with(&path, WeightMemory::HugePages).unwrap();
    assert!(mapped.data() == copied.data(), "huge-page copy differs from the file");
    assert!(mapped.metadata() == copied.metadata());
    assert_eq!(mapped.tensors(), copied.tensors());
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &mapped.data()[..4096]).unwrap();
    let (a, b) = (GgufFile::open_with(&cut, WeightMemory::Mmap), GgufFile::open_with(&cut, WeightMemory::HugePages));
    assert!(a.is_err() && b.is_err(), "a truncated file must not parse");
    assert_eq!(a.err().map(|e| e.to_string()), b.err().map(|e| e.to_string()));
    assert!(GgufFile::open_with(dir.path(), WeightMemory::HugePages).is_err(), "a directory is not a model");
}

/// Releasing the header of the huge-page copy gives its whole pages back and leaves the tensor
/// data, metadata and tensor index as they were; a memory map is left alone.
#[test]
fn releasing_the_header_keeps_tensors_and_metadata() {
    use kiln_engine::gguf::WeightMemory;
    let Some(path) = model(SMOLLM) else { return };
    let mapped = GgufFile::open_with(&path, WeightMemory::Mmap).unwrap();
    let mut copied = GgufFile::open_with(&path, WeightMemory::HugePages).unwrap();
    let released = copied.release_header();
    let header = copied.data_offset() as usize;
    assert_eq!(released, header & !4095, "whole pages below the data section");
    assert!(released > 1 << 20, "SmolLM2's header is 1.7 MB");
    assert!(copied.data()[..released].iter().all(|&b| b == 0));
    assert!(mapped.data()[header..] == copied.data()[header..], "tensor data changed");
    assert!(mapped.metadata() == copied.metadata());
    assert_eq!(mapped.tensors(), copied.tensors());
    let mut mapped = mapped;
    assert_eq!(mapped.release_header(), 0, "a memory map keeps its pages");
}

/// The huge-page copy moves the file so that its tensors start on 64-byte lines (GGUF aligns
/// them to 32), with the same bytes and parse as the memory map; releasing its header then zeroes
/// only header bytes.
#[test]
fn huge_page_copy_puts_tensors_on_cache_lines() {
    use kiln_engine::gguf::WeightMemory;
    let q = vec![0x5Au8; 16 * 144];
    // A name whose length puts the data section at 32 mod 64.
    let file = (0..64)
        .map(|n| {
            let mut out = Vec::new();
            GgufWriter::new(3, 32).metadata("general.name", Value::String("x".repeat(n))).tensor("w", &[256, 16], GgmlType::Q4_K, &q).write(&mut out).unwrap();
            out
        })
        .find(|b| GgufFile::from_bytes(b.clone()).unwrap().data_offset() % 64 == 32)
        .expect("some name length misaligns the data section");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, &file).unwrap();
    let mapped = GgufFile::open_with(&path, WeightMemory::Mmap).unwrap();
    let mut copied = GgufFile::open_with(&path, WeightMemory::HugePages).unwrap();
    assert!(mapped.data() == copied.data(), "the copy's bytes differ from the file");
    assert_eq!(mapped.tensors(), copied.tensors());
    let t = copied.tensor("w").unwrap().clone();
    assert_eq!(copied.tensor_data(&t), &q[..]);
    if cfg!(target_os = "linux") {
        assert_eq!(copied.tensor_data(&t).as_ptr() as usize % 64, 0, "tensor not on a cache line");
    }
    let released = copied.release_header();
    assert!(copied.data()[..released].iter().all(|&b| b == 0));
    assert_eq!(copied.tensor_data(&t), &q[..], "releasing the header touched the tensor");
}
