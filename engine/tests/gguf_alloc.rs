//! Mutation sweep with an allocation bound (spec/reliability.md A3, A5): every length, count,
//! dim and offset field of a small valid file set to 0, 1, 2^31, 2^32, 2^63, u64::MAX (and every
//! single bit flipped) must parse to Ok or Err without a panic, and no single allocation made
//! while parsing may be out of proportion to the input: no count read from the file can size an
//! allocation beyond the bytes that back it.
mod gguf_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use gguf_support::{model, SMOLLM};
use kiln_engine::gguf::{Array, GgmlType, GgufFile, GgufWriter, Value};

struct MaxAlloc;

static TRACKING: AtomicBool = AtomicBool::new(false);
static MAX: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for MaxAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if TRACKING.load(Ordering::Relaxed) {
            MAX.fetch_max(layout.size(), Ordering::Relaxed);
        }
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if TRACKING.load(Ordering::Relaxed) {
            MAX.fetch_max(new_size, Ordering::Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: MaxAlloc = MaxAlloc;

/// Largest single allocation made while validating `bytes`.
fn max_alloc(bytes: &[u8]) -> usize {
    MAX.store(0, Ordering::Relaxed);
    TRACKING.store(true, Ordering::Relaxed);
    let _ = GgufFile::validate(bytes);
    TRACKING.store(false, Ordering::Relaxed);
    MAX.load(Ordering::Relaxed)
}

fn small_valid_file() -> Vec<u8> {
    let q8: Vec<u8> = vec![1; 68];
    let f32s: Vec<u8> = vec![0; 16];
    let mut out = Vec::new();
    GgufWriter::new(3, 32)
        .metadata("general.architecture", Value::String("llama".into()))
        .metadata("llama.block_count", Value::U32(1))
        .metadata("tokenizer.ggml.tokens", Value::Array(Array::String(["<s>", "a", "bc"].into_iter().collect())))
        .metadata("tokenizer.ggml.scores", Value::Array(Array::F32(vec![0.0, -1.0, -2.0])))
        .metadata("nested", Value::Array(Array::Array(vec![Array::U8(vec![1, 2]), Array::Bool(vec![true])])))
        .metadata("flag", Value::Bool(true))
        .tensor("token_embd.weight", &[32, 2], GgmlType::Q8_0, &q8)
        .tensor("output_norm.weight", &[4], GgmlType::F32, &f32s)
        .write(&mut out)
        .unwrap();
    out
}

/// One test function: the tracker is process-wide, so nothing else may run while it counts.
#[test]
fn allocation_bounds() {
    mutated_fields_never_panic_or_over_allocate();
    real_header_prefix_allocates_at_most_its_length();
}

fn mutated_fields_never_panic_or_over_allocate() {
    let base = small_valid_file();
    assert!(GgufFile::validate(&base).is_ok());
    let values: [u64; 7] = [0, 1, 1 << 31, 1 << 32, 1 << 63, u64::MAX, u32::MAX as u64];
    let len = base.len();
    // Tiny in-memory entries (a String per 14-byte key) can outgrow their on-disk bytes a few
    // times over; what must never happen is an allocation sized by a lying count.
    let bound = 16 * len + (64 << 10);
    let (mut cases, mut accepted, mut worst) = (0usize, 0usize, 0usize);
    let mut check = |bytes: &[u8]| {
        let m = max_alloc(bytes);
        assert!(m <= bound, "allocation of {m} bytes for a {len}-byte input");
        worst = worst.max(m);
        cases += 1;
        accepted += usize::from(GgufFile::validate(bytes).is_ok());
    };
    for i in 0..len {
        for &v in &values {
            for width in [8usize, 4] {
                if i + width <= len {
                    let mut b = base.clone();
                    b[i..i + width].copy_from_slice(&v.to_le_bytes()[..width]);
                    check(&b);
                }
            }
        }
        for bit in 0..8 {
            let mut b = base.clone();
            b[i] ^= 1 << bit;
            check(&b);
        }
    }
    eprintln!("{cases} mutations of a {len}-byte file: {accepted} still valid, largest allocation {worst} bytes");
    assert!(cases > 10_000);
}

fn real_header_prefix_allocates_at_most_its_length() {
    let Some(path) = model(SMOLLM) else { return };
    let f = GgufFile::open(&path).unwrap();
    let header = &f.data()[..f.data_offset() as usize];
    for cut in [4096, 65_536, 1 << 20, header.len()] {
        let m = max_alloc(&header[..cut]);
        assert!(m <= cut, "{m}-byte allocation parsing a {cut}-byte prefix");
    }
}
