//! The checks against llama.cpp's recorded outputs (tests/reference/README.md has the bounds),
//! shared by the reference test binaries.

use super::{floats, ids, model_path, reference};
use kiln::model::exec::{OutputKind, Outputs};
use kiln::sampling::SamplerConfig;
use kiln::{GenerateRequest, LoadOptions, Model, Session};

pub const MEAN_BOUND: f32 = 0.3;
pub const MAX_BOUND: f32 = 1.5;
pub const MARGIN: f32 = 0.5;

/// How a model's check is judged.
pub struct Bounds {
    pub max: f32,
    /// Top-1 disagreements tolerated where llama.cpp's margin is >= 0.5 (each below `flip_margin`).
    pub flips: usize,
    pub flip_margin: f32,
}

/// The README's bounds.
pub const README: Bounds = Bounds { max: MAX_BOUND, flips: 0, flip_margin: 0.0 };

/// Compares our logits row with llama.cpp's recorded top-10; returns (sum |Δ|, count, max |Δ|)
/// and checks top-1 agreement when llama.cpp's margin is at least 0.5.
fn compare_row(ours: &[f32], top: &serde_json::Value, what: &str, flips: &mut Vec<(f32, String)>) -> (f32, usize, f32) {
    let ref_ids = ids(&top["ids"]);
    let ref_logits = floats(&top["logits"]);
    let mut sum = 0.0;
    let mut max = 0.0f32;
    for (&id, &l) in ref_ids.iter().zip(&ref_logits) {
        let d = (ours[id as usize] - l).abs();
        sum += d;
        max = max.max(d);
    }
    let margin = ref_logits[0] - ref_logits[1];
    let our_top = ours.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i as u32).unwrap();
    if margin >= MARGIN && our_top != ref_ids[0] {
        flips.push((margin, format!("{what}: top-1 {our_top} but llama.cpp {} (margin {margin:.3})", ref_ids[0])));
    }
    (sum, ref_ids.len(), max)
}

/// Checks `name`'s prompt and teacher-forced logits against `bounds` (and the README's mean).
pub fn check_logits(name: &str, bounds: &Bounds) {
    let Some(path) = model_path(name) else { return };
    let model = Model::load(&path, &LoadOptions::default()).expect("model loads");
    let reference = reference(&format!("{name}.generate.json"));
    let n_vocab = model.info().n_vocab;
    let (mut sum, mut count, mut max) = (0.0f32, 0usize, 0.0f32);
    let mut flips: Vec<(f32, String)> = Vec::new();
    for (ci, case) in reference["cases"].as_array().unwrap().iter().enumerate() {
        let prompt = case["prompt"].as_str().unwrap();
        let prompt_ids = ids(&case["prompt_ids"]);
        assert_eq!(model.tokenize(prompt, true).unwrap(), prompt_ids, "{name} case {ci}: prompt tokens");
        let greedy = ids(&case["greedy_ids"]);
        // Teacher forcing: prompt followed by llama.cpp's greedy tokens, logits at every position.
        let mut all = prompt_ids.clone();
        all.extend_from_slice(&greedy);
        let mut cache = model.new_cache(all.len());
        let mut logits = Vec::new();
        model.eval(&mut cache, &all, Outputs::All, OutputKind::Logits, &mut logits).unwrap();
        let row = |p: usize| &logits[p * n_vocab..(p + 1) * n_vocab];
        for (p, top) in case["prompt_top"].as_array().unwrap().iter().enumerate() {
            let (s, c, m) = compare_row(row(p), top, &format!("{name} case {ci} prompt pos {p}"), &mut flips);
            sum += s;
            count += c;
            max = max.max(m);
        }
        let margins = floats(&case["greedy_top1_margin"]);
        for (j, top) in case["greedy_top"].as_array().unwrap().iter().enumerate() {
            let p = prompt_ids.len() - 1 + j;
            let (s, c, m) = compare_row(row(p), top, &format!("{name} case {ci} greedy step {j}"), &mut flips);
            sum += s;
            count += c;
            max = max.max(m);
            let ours = row(p).iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
            let flagged = flips.last().is_some_and(|(_, m)| m.contains(&format!("case {ci} greedy step {j}:")));
            if margins[j] >= MARGIN && ours != greedy[j] && !flagged {
                flips.push((margins[j], format!("{name} case {ci} greedy step {j}: teacher-forced top-1 {ours}, want {}", greedy[j])));
            }
        }
    }
    let mean = sum / count as f32;
    eprintln!("{name}: logits mean |Δ| {mean:.4} over {count} entries, max {max:.4}");
    let big = flips.iter().filter(|(m, _)| m.partial_cmp(&bounds.flip_margin) != Some(std::cmp::Ordering::Less)).count();
    let listed: Vec<&str> = flips.iter().map(|(_, s)| s.as_str()).collect();
    assert!(flips.len() <= bounds.flips && big == 0, "{name}: {} top-1 disagreements (allowed {}):\n{}", flips.len(), bounds.flips, listed.join("\n"));
    assert!(mean <= MEAN_BOUND, "{name}: mean |Δ| {mean} > {MEAN_BOUND}");
    assert!(max <= bounds.max, "{name}: max |Δ| {max} > {}", bounds.max);
}

pub fn check_free_running_greedy(name: &str) {
    let Some(path) = model_path(name) else { return };
    let model = Model::load(&path, &LoadOptions::default()).expect("model loads");
    let reference = reference(&format!("{name}.generate.json"));
    for (ci, case) in reference["cases"].as_array().unwrap().iter().enumerate() {
        let greedy = ids(&case["greedy_ids"]);
        let margins = floats(&case["greedy_top1_margin"]);
        // Tokens up to (not including) the first near-tie must match exactly.
        let must = margins.iter().position(|&m| m < MARGIN).unwrap_or(greedy.len());
        let mut session = Session::new(model.clone());
        let req = GenerateRequest {
            prompt: ids(&case["prompt_ids"]),
            sampling: SamplerConfig::greedy(),
            num_predict: Some(greedy.len()),
            ..Default::default()
        };
        let mut got = Vec::new();
        session.generate(&req, &mut |ev| {
            got.push(ev.id);
            true
        })
        .unwrap();
        let n = must.min(got.len());
        assert!(got.len() >= must, "{name} case {ci}: stopped after {} tokens, llama.cpp gave {must} certain ones", got.len());
        assert_eq!(&got[..n], &greedy[..n], "{name} case {ci}: greedy tokens differ before the first near-tie (step {must})");
    }
}

pub fn check_embeddings(name: &str) {
    let Some(path) = model_path(name) else { return };
    let model = Model::load(&path, &LoadOptions::default()).expect("model loads");
    let reference = reference(&format!("{name}.embed.json"));
    for case in reference["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want = floats(&case["embedding_mean_pooled"]);
        let tokens = model.tokenize(text, true).unwrap();
        assert_eq!(tokens.len() as u64, case["n_tokens"].as_u64().unwrap(), "{name}: token count of {text:?}");
        let got = model.embed(text).unwrap();
        assert_eq!(got.len(), want.len());
        let dot: f64 = got.iter().zip(&want).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
        let na: f64 = got.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = want.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
        let cos = dot / (na * nb);
        eprintln!("{name}: embedding cosine {cos:.5} for {text:?}");
        assert!(cos >= 0.99, "{name}: embedding cosine {cos} < 0.99 for {text:?}");
    }
}

