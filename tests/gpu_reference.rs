//! The whole forward pass on a wgpu adapter (lavapipe in CI) against llama.cpp's recorded
//! outputs, with the same bounds as tests/reference_models.rs, and against kiln's CPU path.
//!
//! No adapter: a loud "SKIPPED: no wgpu adapter", unless KILN_REQUIRE_GPU=1 (then it fails).
//! Lavapipe runs WGSL on the CPU, so only the first GPU_CASES cases (default 2) of each model
//! are teacher-forced and one is decoded greedily. Over all 6 cases (GPU_CASES=6, about 3 minutes
//! here) smollm2 stays within the bounds (mean 0.162, max 0.760) but gemma3 does not: max 3.14 at
//! one early position (case 4, prompt position 2; mean 0.222). The GPU keeps activations in f32
//! where llama.cpp's CPU reference quantizes them to 8 bits, the likely reason.
#![cfg(feature = "gpu")]

mod common;

use std::sync::Arc;

use common::{floats, ids, model_path, reference};
use kiln::gpu::{list_adapters, GpuModel, GpuSession};
use kiln::model::exec::{OutputKind, Outputs};
use kiln::sampling::SamplerConfig;
use kiln::{GenerateRequest, LoadOptions, Model, Session};

const MEAN_BOUND: f32 = 0.3;
const MAX_BOUND: f32 = 1.5;
/// See tests/reference_models.rs: gemma3's largest difference at a few early positions.
const GEMMA3_MAX_BOUND: f32 = 2.5;
const MARGIN: f32 = 0.5;

fn n_cases() -> usize {
    std::env::var("GPU_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2).max(2)
}

/// The CPU model and its GPU twin, or None when the test is skipped.
fn load(name: &str) -> Option<(Arc<Model>, Arc<GpuModel>)> {
    let path = model_path(name)?;
    if list_adapters().is_empty() {
        assert!(std::env::var("KILN_REQUIRE_GPU").as_deref() != Ok("1"), "KILN_REQUIRE_GPU=1 but wgpu finds no adapter");
        eprintln!("SKIPPED: no wgpu adapter (install mesa-vulkan-drivers for lavapipe)");
        return None;
    }
    let model = Model::load(&path, &LoadOptions::default()).expect("model loads");
    let gpu = GpuModel::load(&model, None).expect("GPU model loads");
    eprintln!("{name}: on {}", gpu.adapter());
    Some((model, Arc::new(gpu)))
}

fn argmax(row: &[f32]) -> u32 {
    row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i as u32).unwrap()
}

/// (sum |Δ|, count, max |Δ|) over llama.cpp's recorded top-10; top-1 checked where the margin allows.
fn compare_row(ours: &[f32], top: &serde_json::Value, what: &str, failures: &mut Vec<String>) -> (f32, usize, f32) {
    let ref_ids = ids(&top["ids"]);
    let ref_logits = floats(&top["logits"]);
    let (mut sum, mut max) = (0.0f32, 0.0f32);
    for (&id, &l) in ref_ids.iter().zip(&ref_logits) {
        let d = (ours[id as usize] - l).abs();
        sum += d;
        max = max.max(d);
    }
    let margin = ref_logits[0] - ref_logits[1];
    if margin >= MARGIN && argmax(ours) != ref_ids[0] {
        failures.push(format!("{what}: top-1 {} but llama.cpp {} (margin {margin:.3})", argmax(ours), ref_ids[0]));
    }
    (sum, ref_ids.len(), max)
}

fn check_logits(name: &str) {
    let Some((model, gpu)) = load(name) else { return };
    let reference = reference(&format!("{name}.generate.json"));
    let n_vocab = model.info().n_vocab;
    let (mut sum, mut count, mut max, mut cpu_max) = (0.0f32, 0usize, 0.0f32, 0.0f32);
    let mut failures = Vec::new();
    let t = std::time::Instant::now();
    for (ci, case) in reference["cases"].as_array().unwrap().iter().enumerate().take(n_cases()) {
        let prompt_ids = ids(&case["prompt_ids"]);
        let greedy = ids(&case["greedy_ids"]);
        let mut all = prompt_ids.clone();
        all.extend_from_slice(&greedy);
        let mut session = GpuSession::new(&gpu, all.len()).unwrap();
        let mut logits = Vec::new();
        session.eval(&all, Outputs::All, &mut logits).unwrap();
        assert_eq!(logits.len(), all.len() * n_vocab);
        let row = |p: usize| &logits[p * n_vocab..(p + 1) * n_vocab];
        // The CPU path on the same tokens: how far apart the two backends are.
        let mut cpu = Vec::new();
        model.eval(&mut model.new_cache(all.len()), &all, Outputs::All, OutputKind::Logits, &mut cpu).unwrap();
        for (g, c) in logits.iter().zip(&cpu) {
            cpu_max = cpu_max.max((g - c).abs());
        }
        for (p, top) in case["prompt_top"].as_array().unwrap().iter().enumerate() {
            let (s, c, m) = compare_row(row(p), top, &format!("{name} case {ci} prompt pos {p}"), &mut failures);
            (sum, count, max) = (sum + s, count + c, max.max(m));
        }
        let margins = floats(&case["greedy_top1_margin"]);
        for (j, top) in case["greedy_top"].as_array().unwrap().iter().enumerate() {
            let p = prompt_ids.len() - 1 + j;
            let (s, c, m) = compare_row(row(p), top, &format!("{name} case {ci} greedy step {j}"), &mut failures);
            (sum, count, max) = (sum + s, count + c, max.max(m));
            if margins[j] >= MARGIN && argmax(row(p)) != greedy[j] {
                failures.push(format!("{name} case {ci} greedy step {j}: teacher-forced top-1 {}, want {}", argmax(row(p)), greedy[j]));
            }
        }
    }
    let mean = sum / count as f32;
    eprintln!("{name} (gpu): logits mean |Δ| {mean:.4} over {count} entries, max {max:.4}; max |gpu − cpu| {cpu_max:.4}; {:.1?}", t.elapsed());
    assert!(failures.is_empty(), "{name}: {} top-1 disagreements:\n{}", failures.len(), failures.join("\n"));
    assert!(mean <= MEAN_BOUND, "{name}: mean |Δ| {mean} > {MEAN_BOUND}");
    let max_bound = if name == "gemma3" { GEMMA3_MAX_BOUND } else { MAX_BOUND };
    assert!(max <= max_bound, "{name}: max |Δ| {max} > {max_bound}");
}

/// Free-running greedy decoding on the GPU equals llama.cpp's and the CPU path's tokens up to
/// the first step where llama.cpp's top-1 margin is below 0.5.
fn check_greedy(name: &str) {
    let Some((model, gpu)) = load(name) else { return };
    let reference = reference(&format!("{name}.generate.json"));
    let case = &reference["cases"][0];
    let greedy = ids(&case["greedy_ids"]);
    let margins = floats(&case["greedy_top1_margin"]);
    let must = margins.iter().position(|&m| m < MARGIN).unwrap_or(greedy.len());
    let req = GenerateRequest {
        prompt: ids(&case["prompt_ids"]),
        sampling: SamplerConfig::greedy(),
        num_predict: Some(greedy.len()),
        ..Default::default()
    };
    let mut session = GpuSession::new(&gpu, 512).unwrap();
    let mut got = Vec::new();
    let t = std::time::Instant::now();
    let out = session.generate(&req, &mut |ev| {
        got.push(ev.id);
        true
    })
    .unwrap();
    eprintln!("{name} (gpu): {} tokens in {:.1?}; llama.cpp certain up to step {must}", out.eval_count, t.elapsed());
    let mut cpu = Vec::new();
    Session::new(model.clone())
        .generate(&req, &mut |ev| {
            cpu.push(ev.id);
            true
        })
        .unwrap();
    assert!(got.len() >= must, "{name}: GPU stopped after {} tokens, llama.cpp gave {must} certain ones", got.len());
    assert_eq!(&got[..must], &greedy[..must], "{name}: GPU greedy tokens differ from llama.cpp before step {must}");
    // Over the whole generation, GPU and CPU may only part where the CPU's own choice is a near-tie.
    let split = got.iter().zip(&cpu).take_while(|(g, c)| g == c).count();
    eprintln!("{name}: GPU and CPU agree on {split} of {} / {} tokens", got.len(), cpu.len());
    if split < got.len().max(cpu.len()) {
        let mut context = req.prompt.clone();
        context.extend_from_slice(&cpu[..split]);
        let mut logits = Vec::new();
        model.eval(&mut model.new_cache(context.len()), &context, Outputs::Last, OutputKind::Logits, &mut logits).unwrap();
        let mut sorted = logits.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let margin = sorted[0] - sorted[1];
        assert!(margin < MARGIN, "{name}: GPU and CPU part at step {split} where the CPU's top-1 margin is {margin:.3}");
    }

    // The session keeps its context: a follow-up extending it evaluates only the new tokens.
    let mut follow = out.context.clone();
    follow.extend(model.tokenize(" And", false).unwrap());
    let req2 = GenerateRequest { prompt: follow, num_predict: Some(4), ..req };
    let out2 = session.generate(&req2, &mut |_| true).unwrap();
    assert!(out2.prompt_eval_count <= 3, "{name}: follow-up re-evaluated {} tokens", out2.prompt_eval_count);
}

#[test]
fn smollm2_gpu_logits_match_llamacpp() {
    check_logits("smollm2");
}

#[test]
fn gemma3_gpu_logits_match_llamacpp() {
    check_logits("gemma3");
}

#[test]
fn smollm2_gpu_greedy_matches_llamacpp_and_cpu() {
    check_greedy("smollm2");
}

#[test]
fn gemma3_gpu_greedy_matches_llamacpp_and_cpu() {
    check_greedy("gemma3");
}
