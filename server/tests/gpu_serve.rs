//! `kiln serve --device gpu` in-process: /api/generate (streamed and not) and /api/chat on
//! smollm2 with greedy sampling, against the same requests on a CPU-device app.
//!
//! The texts must be equal, except that the two backends may part where the CPU's own choice
//! is a near-tie (top-1 margin below MARGIN); then the text up to that token must still agree.
//! No adapter: a loud "SKIPPED: no wgpu adapter", unless KILN_REQUIRE_GPU=1 (then it fails).
//! Run: `XDG_RUNTIME_DIR=/tmp cargo test -p kiln-server --features gpu --test gpu_serve`.
#![cfg(feature = "gpu")]

mod support;

use std::sync::Arc;

use axum::http::StatusCode;
use kiln_engine::model::exec::{OutputKind, Outputs};
use kiln_engine::sampling::SamplerConfig;
use kiln_engine::{GenerateRequest, LoadOptions, Model, Session};
use kiln_server::device::Device;
use kiln_server::{prompt, ServerConfig};
use serde_json::{json, Value};
use support::*;

const MARGIN: f32 = 0.5;
const N_PREDICT: usize = 8;
/// Prompts whose greedy continuations are far from ties on the CPU, so equality is the norm.
const RAW_PROMPT: &str = "1, 2, 3, 4, 5,";
const CHAT_PROMPT: &str = "Count from 1 to 5.";

fn have_adapter() -> bool {
    let adapters = kiln_engine::gpu::list_adapters();
    if adapters.is_empty() {
        assert!(std::env::var("KILN_REQUIRE_GPU").as_deref() != Ok("1"), "KILN_REQUIRE_GPU=1 but wgpu finds no adapter");
        eprintln!("SKIPPED: no wgpu adapter (install mesa-vulkan-drivers for lavapipe)");
        return false;
    }
    eprintln!("adapter: {}", adapters[0]);
    true
}

/// `gpu` equals `cpu`, or they part at a token where the CPU's greedy choice is a near-tie.
/// `prompt_ids` is what the model read; the CPU's tokens are regenerated here to locate the split.
fn same_or_near_tie(model: &Arc<Model>, prompt_ids: &[u32], cpu: &str, gpu: &str, what: &str) {
    if cpu == gpu {
        return;
    }
    let req = GenerateRequest {
        prompt: prompt_ids.to_vec(),
        sampling: SamplerConfig::greedy(),
        num_predict: Some(N_PREDICT),
        ..Default::default()
    };
    let mut toks: Vec<(u32, String)> = Vec::new();
    Session::new(model.clone())
        .generate(&req, &mut |ev| {
            toks.push((ev.id, ev.text.clone()));
            true
        })
        .expect("CPU generation");
    let engine_text: String = toks.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(engine_text, cpu, "{what}: the CPU app's text differs from the engine's own greedy run");
    // The first CPU token whose text is not a prefix of the GPU's rest.
    let (mut at, mut split) = (0, toks.len());
    for (i, (_, t)) in toks.iter().enumerate() {
        if !gpu[at..].starts_with(t.as_str()) {
            split = i;
            break;
        }
        at += t.len();
    }
    let mut context = prompt_ids.to_vec();
    context.extend(toks[..split].iter().map(|(id, _)| *id));
    let mut logits = Vec::new();
    model
        .eval(&mut model.new_cache(context.len()), &context, Outputs::Last, OutputKind::Logits, &mut logits)
        .expect("CPU eval");
    logits.sort_by(|a, b| b.total_cmp(a));
    let margin = logits[0] - logits[1];
    eprintln!("{what}: GPU {gpu:?} vs CPU {cpu:?} part at token {split} (CPU top-1 margin {margin:.3})");
    assert!(margin < MARGIN, "{what}: GPU {gpu:?} and CPU {cpu:?} part at token {split} where the CPU's margin is {margin:.3}");
}

fn stream_text(lines: &[Value], field: impl Fn(&Value) -> Option<&str>) -> (String, &Value) {
    assert!(!lines.is_empty(), "empty stream");
    let done: Vec<usize> = lines.iter().enumerate().filter(|(_, l)| l["done"] == true).map(|(i, _)| i).collect();
    assert_eq!(done, vec![lines.len() - 1], "exactly one final object, last: {lines:?}");
    let last = &lines[lines.len() - 1];
    assert!(last.get("error").is_none(), "{last}");
    (lines.iter().map(|l| field(l).unwrap_or_else(|| panic!("no text in {l}"))).collect(), last)
}

/// A well-formed final object: `length` after exactly N_PREDICT tokens, or `stop` before.
/// With `like` (the same text on the other device or mode), the same reason and counts.
fn check_final(v: &Value, like: Option<&Value>, what: &str) {
    assert_eq!(v["done"], true, "{what}: {v}");
    let n = v["eval_count"].as_u64().unwrap_or_else(|| panic!("{what}: no eval_count: {v}"));
    match v["done_reason"].as_str() {
        Some("length") => assert_eq!(n, N_PREDICT as u64, "{what}: {v}"),
        Some("stop") => assert!(n >= 1 && n <= N_PREDICT as u64, "{what}: {v}"),
        _ => panic!("{what}: done_reason should be length or stop: {v}"),
    }
    assert!(v["prompt_eval_count"].as_u64().is_some_and(|n| n > 0), "{what}: {v}");
    if let Some(o) = like {
        for k in ["done_reason", "eval_count", "prompt_eval_count"] {
            assert_eq!(v[k], o[k], "{what}: {k} differs: {v} vs {o}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_and_chat_on_gpu_match_cpu() {
    let Some(cpu_state) = state() else { return };
    if !have_adapter() {
        return;
    }
    let gpu_state =
        state_with(ServerConfig { device: Device::Gpu(None), ..ServerConfig::default() }).expect("models present");
    let name = name_of(&cpu_state, SMOLLM);
    let (cpu_app, gpu_app) = (router(&cpu_state), router(&gpu_state));
    let model = Model::load(models_dir().expect("models").join(SMOLLM), &LoadOptions::default()).expect("model loads");
    let options = json!({"temperature": 0, "seed": 7, "num_predict": N_PREDICT});

    // /api/generate, not streamed.
    let body = json!({"model": name, "prompt": RAW_PROMPT, "raw": true, "stream": false, "options": options});
    let c = post(&cpu_app, "/api/generate", body.clone()).await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.text());
    let g = post(&gpu_app, "/api/generate", body).await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.text());
    let (c, g) = (c.json(), g.json());
    let gpu_text = g["response"].as_str().expect("response").to_string();
    let cpu_text = c["response"].as_str().expect("response").to_string();
    check_final(&g, (gpu_text == cpu_text).then_some(&c), "gpu generate");
    assert!(!gpu_text.is_empty(), "{g}");
    // Raw: the prompt's tokens are the text's own, as the server tokenizes it.
    let prompt_ids = prompt::tokenize(&model, RAW_PROMPT, None).expect("tokenize");
    eprintln!("generate: gpu {gpu_text:?}, cpu {cpu_text:?}");
    same_or_near_tie(&model, &prompt_ids, &cpu_text, &gpu_text, "generate");

    // /api/generate, streamed: the same text as the non-streamed GPU request.
    let body = json!({"model": name, "prompt": RAW_PROMPT, "raw": true, "options": options});
    let s = post(&gpu_app, "/api/generate", body).await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.text());
    assert!(s.content_type().starts_with("application/x-ndjson"), "{}", s.content_type());
    let lines = s.lines();
    let (streamed, last) = stream_text(&lines, |l| l["response"].as_str());
    check_final(last, Some(&g), "gpu generate stream");
    assert_eq!(streamed, gpu_text, "streamed and non-streamed GPU greedy texts differ");

    // /api/chat, not streamed and streamed.
    let messages = json!([{"role": "user", "content": CHAT_PROMPT}]);
    let body = json!({"model": name, "messages": messages, "stream": false, "options": options});
    let c = post(&cpu_app, "/api/chat", body.clone()).await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.text());
    let g = post(&gpu_app, "/api/chat", body).await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.text());
    let (c, g) = (c.json(), g.json());
    assert_eq!(g["message"]["role"], "assistant", "{g}");
    let gpu_chat = g["message"]["content"].as_str().expect("content").to_string();
    let cpu_chat = c["message"]["content"].as_str().expect("content").to_string();
    check_final(&g, (gpu_chat == cpu_chat).then_some(&c), "gpu chat");
    assert!(!gpu_chat.is_empty(), "{g}");
    eprintln!("chat: gpu {gpu_chat:?}, cpu {cpu_chat:?}");
    let rendered = prompt::render_chat(&model, &[prompt::message("user", CHAT_PROMPT)]).expect("template");
    let chat_ids = prompt::tokenize(&model, &rendered, None).expect("tokenize");
    same_or_near_tie(&model, &chat_ids, &cpu_chat, &gpu_chat, "chat");

    let body = json!({"model": name, "messages": messages, "options": options});
    let s = post(&gpu_app, "/api/chat", body).await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.text());
    let lines = s.lines();
    let (streamed, last) = stream_text(&lines, |l| l["message"]["content"].as_str());
    check_final(last, Some(&g), "gpu chat stream");
    assert_eq!(streamed, gpu_chat, "streamed and non-streamed GPU chat texts differ");

    // Nothing left running or queued on the GPU worker (it marks itself idle just after `Done`).
    let mut stats = gpu_state.models.load_stats();
    for _ in 0..100 {
        if stats == (0, 0, 1) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        stats = gpu_state.models.load_stats();
    }
    assert_eq!(stats, (0, 0, 1), "(running, queued, loaded)");
}
