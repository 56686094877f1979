//! `kiln bench --stream`: the weights a decode step reads, recorded from a real step, are every
//! matrix the step multiplies, once, in the dispatches the engine makes; reading them again
//! touches every line of them.

mod common;

use kiln_engine::{LoadOptions, Model};

fn check(name: &str) {
    let Some(path) = common::model_path(name) else { return };
    let model = Model::load(&path, &LoadOptions { threads: Some(2), ..Default::default() }).expect("model loads");
    let stream = model.weight_stream().expect("a decode step records");

    // Expected from the file alone: every 2-D tensor but the token embeddings (one row of them
    // is read per token, by a lookup), which are the output head where there is no
    // output.weight (tied embeddings).
    let tensors = model.gguf().tensors();
    let tied = !tensors.iter().any(|t| t.name == "output.weight");
    let want: u64 = tensors.iter().filter(|t| t.dims.len() == 2 && (tied || t.name != "token_embd.weight")).map(|t| t.n_bytes).sum();
    assert_eq!(stream.bytes(), want, "{name}: bytes a decode step reads");
    // Per layer: Q/K/V in one dispatch, the attention output, gate and up in one, down; then the
    // output head.
    assert_eq!(stream.dispatches(), 4 * model.info().n_layer + 1, "{name}: dispatches");
    // No range is read twice.
    let mut ranges: Vec<_> = stream.ranges().iter().flatten().cloned().collect();
    ranges.sort_by_key(|r| r.start);
    assert!(ranges.windows(2).all(|w| w[0].end <= w[1].start), "{name}: overlapping ranges");

    // Reading them on the model's threads loads every line once: the same xor as one thread's.
    assert_eq!(model.read_weight_stream(&stream), kiln_kernels::stream::checksum(model.gguf().data(), stream.ranges()), "{name}: checksum");

    let rate = kiln_engine::bench::stream(&model, 4, 3).expect("alternated run");
    assert_eq!((rate.bytes_per_token, rate.dispatches, rate.tokens), (want, stream.dispatches(), 3));
    assert!(rate.read_gb_s > 0.0 && rate.decode_tok_s > 0.0 && rate.share > 0.0, "{name}: {rate:?}");
    assert!((rate.share - rate.decode_tok_s / rate.read_tok_s).abs() < 1e-9);
    // A run past the context is refused before any work: depth, one untimed step, the timed ones.
    let n_ctx = model.info().n_ctx_train;
    assert!(kiln_engine::bench::check_stream(&model, n_ctx - 5, 4).is_ok());
    assert!(kiln_engine::bench::stream(&model, n_ctx - 4, 4).is_err());
}

#[test]
fn smollm2_decode_reads_each_weight_matrix_once() {
    check("smollm2");
}

#[test]
fn gemma3_decode_reads_each_weight_matrix_once() {
    check("gemma3");
}
