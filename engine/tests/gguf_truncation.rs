//! Truncation sweeps (spec/reliability.md A2): every prefix of a real file's header, metadata
//! and tensor infos must parse to an error, never a panic.
//!
//! Each truncated parse re-reads the whole prefix, so a literal every-byte sweep is quadratic:
//! SmolLM2's 1.78 MB header costs about an hour of CPU. The default tests take every byte of
//! the header and all small metadata entries, the first/last 64 bytes of each large array body
//! (tokens, merges, scores) and the first/last two tensor infos; elsewhere they stride (1021
//! bytes in array bodies, 13 in tensor infos, so every field position is hit somewhere).
//! `full_truncation_sweep_smollm2` (ignored) does every byte:
//!     cargo test --release -p kiln-engine --test gguf_truncation -- --ignored
mod gguf_support;

use std::ops::Range;

use gguf_support::{model, GEMMA, SMOLLM};
use kiln_engine::gguf::GgufFile;

/// Where things are in a well-formed file, found by a walker independent of the reader under
/// test: body ranges of arrays with more than 1000 elements, and each tensor info's range.
struct Layout {
    bulk: Vec<Range<usize>>,
    tensor_infos: Vec<Range<usize>>,
}

fn layout(b: &[u8]) -> Layout {
    let rd = |pos: &mut usize, n: usize| -> u64 {
        let mut a = [0u8; 8];
        a[..n].copy_from_slice(&b[*pos..*pos + n]);
        *pos += n;
        u64::from_le_bytes(a)
    };
    fn size(ty: u64) -> usize {
        [1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8][ty as usize]
    }
    let mut pos = 8;
    let n_tensors = rd(&mut pos, 8);
    let n_kv = rd(&mut pos, 8);
    let mut bulk = Vec::new();
    for _ in 0..n_kv {
        let klen = rd(&mut pos, 8) as usize;
        pos += klen;
        match rd(&mut pos, 4) {
            8 => {
                let l = rd(&mut pos, 8) as usize;
                pos += l;
            }
            9 => {
                let et = rd(&mut pos, 4);
                let n = rd(&mut pos, 8) as usize;
                let start = pos;
                assert_ne!(et, 9, "walker does not handle nested arrays");
                if et == 8 {
                    for _ in 0..n {
                        let l = rd(&mut pos, 8) as usize;
                        pos += l;
                    }
                } else {
                    pos += n * size(et);
                }
                if n > 1000 {
                    bulk.push(start..pos);
                }
            }
            t => pos += size(t),
        }
    }
    let mut tensor_infos = Vec::new();
    for _ in 0..n_tensors {
        let start = pos;
        let nlen = rd(&mut pos, 8) as usize;
        pos += nlen;
        let n_dims = rd(&mut pos, 4) as usize;
        pos += 8 * n_dims + 4 + 8;
        tensor_infos.push(start..pos);
    }
    Layout { bulk, tensor_infos }
}

/// Truncation points in `0..=end`. Every byte, except: inside bulk array bodies only the first
/// and last 64 bytes and every `bulk_stride`-th byte; inside tensor infos other than the first
/// and last two, every `info_stride`-th byte.
fn sweep_points(end: usize, l: &Layout, bulk_stride: usize, info_stride: usize) -> Vec<usize> {
    let n_infos = l.tensor_infos.len();
    let middle_infos = l.tensor_infos.get(2..n_infos.saturating_sub(2)).unwrap_or(&[]);
    (0..=end)
        .filter(|&i| {
            if let Some(r) = l.bulk.iter().find(|r| r.contains(&i)) {
                return i < r.start + 64 || i + 64 >= r.end || (i - r.start) % bulk_stride == 0;
            }
            if middle_infos.iter().any(|r| r.contains(&i)) {
                return i % info_stride == 0;
            }
            true
        })
        .collect()
}

/// Runs `validate` on each prefix across all cores; returns the offsets that did NOT error.
fn accepted_prefixes(bytes: &[u8], points: &[usize]) -> Vec<usize> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = points.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = points
            .chunks(chunk)
            .map(|pts| s.spawn(move || pts.iter().copied().filter(|&i| GgufFile::validate(&bytes[..i]).is_ok()).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a sweep thread panicked")).collect()
    })
}

fn sweep(file: &str, bulk_stride: usize, info_stride: usize) {
    let Some(path) = model(file) else { return };
    let f = GgufFile::open(&path).unwrap();
    let end = f.data_offset() as usize;
    let l = layout(f.data());
    assert!(l.bulk.len() >= 2, "expected the vocabulary arrays to be found");
    assert_eq!(l.tensor_infos.len(), f.tensors().len());
    let points = sweep_points(end, &l, bulk_stride, info_stride);
    let t0 = std::time::Instant::now();
    // A prefix that ends exactly at the data section still lacks the tensor data: all must fail.
    let accepted = accepted_prefixes(f.data(), &points);
    eprintln!("{file}: {} truncation points over {end} header bytes in {:?}", points.len(), t0.elapsed());
    assert!(accepted.is_empty(), "truncated prefixes parsed OK: {:?}", &accepted[..accepted.len().min(10)]);
    // Data-section truncations: one byte short of the end, and every 16 MiB.
    let len = f.data().len();
    let data_points: Vec<usize> = (end + 1..len).step_by(16 << 20).chain([len - 1]).collect();
    assert!(accepted_prefixes(f.data(), &data_points).is_empty());
    assert!(GgufFile::validate(f.data()).is_ok());
}

#[test]
fn truncation_sweep_smollm2() {
    sweep(SMOLLM, 1021, 13);
}

#[test]
fn truncation_sweep_gemma3_sampled() {
    // Gemma's vocabulary arrays are 3.6x larger and each parse 4x slower: sample sparser.
    sweep(GEMMA, 65521, 61);
}

#[test]
#[ignore = "every byte of the 1.78 MB header: about 1 CPU-hour"]
fn full_truncation_sweep_smollm2() {
    sweep(SMOLLM, 1, 1);
}
