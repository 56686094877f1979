//! gemma3's sliding-window layers keep a ring of window + batch positions. Past the window
//! (512 for gemma-3-270m), the ring must give exactly the logits of a cache that keeps
//! everything, and generation that reuses a long prefix must still work.

mod common;

use common::model_path;
use kiln::model::exec::{OutputKind, Outputs};
use kiln::{LoadOptions, Model};

#[test]
fn ring_cache_equals_full_cache_past_the_window() {
    let Some(path) = model_path("gemma3") else { return };
    let model = Model::load(path, &LoadOptions::default()).unwrap();
    let window = model.gguf().get_u32("gemma3.attention.sliding_window").unwrap() as usize;
    let text = "The quick brown fox jumps over the lazy dog while counting stars. ".repeat(120);
    let tokens: Vec<u32> = model.tokenize(&text, false).unwrap()[..window + 700].to_vec();
    let n_vocab = model.info().n_vocab;

    let mut ring = model.new_cache(2048);
    let mut full = model.new_cache_without_rings(2048);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    // Prompt in chunks, then a few single-token steps, on both caches.
    model.eval(&mut ring, &tokens[..tokens.len() - 4], Outputs::Last, OutputKind::Logits, &mut a).unwrap();
    model.eval(&mut full, &tokens[..tokens.len() - 4], Outputs::Last, OutputKind::Logits, &mut b).unwrap();
    assert_eq!(a, b, "logits after a prompt longer than the window");
    for &t in &tokens[tokens.len() - 4..] {
        a.clear();
        b.clear();
        model.eval(&mut ring, &[t], Outputs::Last, OutputKind::Logits, &mut a).unwrap();
        model.eval(&mut full, &[t], Outputs::Last, OutputKind::Logits, &mut b).unwrap();
        assert_eq!(a.len(), n_vocab);
        assert_eq!(a, b, "decode logits past the window");
    }
    // 15 of 18 layers hold window + batch slots (1,024) instead of every position (1,280 here).
    assert!(ring.bytes() < full.bytes(), "ring {} bytes, full {}", ring.bytes(), full.bytes());

    // A step back within the ring keeps the prefix; a step back beyond it starts over.
    let len = ring.len();
    assert_eq!(ring.truncate(len - 10), len - 10);
    assert_eq!(ring.truncate(100), 0);
}
