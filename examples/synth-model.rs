//! Random-weight stand-ins for real GGUF models, for measuring speed where the real file can't go.
//!
//! A benchmark's speed depends on a model's shapes and tensor types, not on its weights' values.
//! `skeleton` keeps everything of a GGUF but its tensor data (metadata, tokenizer, and each
//! tensor's name, type and shape, listed in the key `kiln.synth.tensors`): a few MiB instead of
//! hundreds. `fill` writes a loadable model from a skeleton, every tensor quantized to its
//! original type from uniform noise of standard deviation 0.02 (norm weights 1.0), in parallel.
//! The result runs exactly the kernels the original runs; its text is nonsense.
//!
//! cargo run --release --example synth-model -- skeleton ~/.kiln/models/gemma-3-270m-q4_k_m.gguf gemma3.skel.gguf
//! cargo run --release --example synth-model -- fill gemma3.skel.gguf gemma3-synth.gguf

use kiln::gguf::{Array, GgmlType, GgufFile, GgufWriter, StrArray, Value};
use kiln::kernels::quantize_row;

const KEY: &str = "kiln.synth.tensors";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["skeleton", src, out] => skeleton(src, out),
        ["fill", src, out] => fill(src, out),
        _ => Err("usage: synth-model skeleton MODEL.gguf OUT.skel.gguf | fill SKEL.gguf OUT.gguf".into()),
    }
}

fn skeleton(src: &str, out: &str) -> Result<(), Box<dyn std::error::Error>> {
    let f = GgufFile::open(src)?;
    let mut list = StrArray::new();
    for t in f.tensors() {
        let dims: Vec<String> = t.dims.iter().map(u64::to_string).collect();
        list.push(&format!("{} {} {}", t.name, t.ty.id(), dims.join(",")));
    }
    let mut w = GgufWriter::new(f.version(), f.alignment());
    for (k, v) in f.metadata() {
        w.push_metadata(k.clone(), v.clone());
    }
    w.push_metadata(KEY, Value::Array(Array::String(list)));
    let n = w.write_to_path(out)?;
    eprintln!("{out}: {} tensors listed, {n} bytes", f.tensors().len());
    Ok(())
}

struct Spec {
    name: String,
    ty: GgmlType,
    dims: Vec<u64>,
}

fn parse(line: &str) -> Option<Spec> {
    let mut it = line.split(' ');
    let name = it.next()?.to_string();
    let ty = GgmlType::from_id(it.next()?.parse().ok()?).ok()?;
    let dims = it.next()?.split(',').map(|d| d.parse().ok()).collect::<Option<Vec<u64>>>()?;
    Some(Spec { name, ty, dims })
}

fn fill(src: &str, out: &str) -> Result<(), Box<dyn std::error::Error>> {
    let f = GgufFile::open(src)?;
    let specs = match f.get(KEY) {
        Some(Value::Array(Array::String(list))) => list.iter().map(|l| parse(l).ok_or_else(|| format!("bad tensor line {l:?}"))).collect::<Result<Vec<_>, _>>()?,
        _ => return Err(format!("{src} has no {KEY}: make it with `synth-model skeleton`").into()),
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut data = Vec::with_capacity(specs.len());
    for (i, s) in specs.iter().enumerate() {
        let k = s.dims.first().copied().unwrap_or(1) as usize;
        let rows = s.dims.iter().skip(1).product::<u64>() as usize;
        let row_bytes = s.ty.row_bytes(k).ok_or_else(|| format!("{}: row of {k} is not whole {} blocks", s.name, s.ty.name()))?;
        let mut bytes = vec![0u8; row_bytes * rows];
        let is_norm = s.dims.len() == 1;
        let per = rows.div_ceil(threads).max(1);
        // Each thread quantizes its rows; the first failure (a type kiln cannot quantize) is the error.
        let failure = std::thread::scope(|scope| {
            let workers: Vec<_> = bytes
                .chunks_mut(per * row_bytes)
                .enumerate()
                .map(|(c, chunk)| {
                    let ty = s.ty;
                    scope.spawn(move || {
                        let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ ((i as u64) << 32) ^ c as u64;
                        let mut row = vec![0f32; k];
                        for dst in chunk.chunks_mut(row_bytes) {
                            for v in row.iter_mut() {
                                *v = if is_norm { 1.0 } else { noise(&mut rng) };
                            }
                            quantize_row(ty, &row, dst).map_err(|e| e.to_string())?;
                        }
                        Ok::<(), String>(())
                    })
                })
                .collect();
            workers.into_iter().find_map(|h| match h.join() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some("a quantizing thread panicked".to_string()),
            })
        });
        if let Some(e) = failure {
            return Err(format!("{}: {e}", s.name).into());
        }
        data.push(bytes);
    }
    let mut w = GgufWriter::new(f.version(), f.alignment());
    for (k, v) in f.metadata().iter().filter(|(k, _)| k != KEY) {
        w.push_metadata(k.clone(), v.clone());
    }
    for (s, d) in specs.iter().zip(&data) {
        w.push_tensor(&s.name, &s.dims, s.ty, d);
    }
    let n = w.write_to_path(out)?;
    eprintln!("{out}: {} tensors, {n} bytes", specs.len());
    Ok(())
}

/// Uniform noise in ±0.02·√3 (standard deviation 0.02), xorshift64.
fn noise(x: &mut u64) -> f32 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    ((*x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * 0.0346
}
