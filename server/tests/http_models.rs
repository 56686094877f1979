//! In-process tests of the generation and embedding routes on the real small models (smollm2 for
//! speed, gemma3 for its chat template). Run: `cargo test -p kiln-server --test http_models`.

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use kiln_server::ServerConfig;
use serde_json::{json, Value};
use support::*;
use tower::ServiceExt;

fn greedy(n: u64) -> Value {
    json!({"temperature": 0, "seed": 42, "num_predict": n})
}

fn norm(v: &Value) -> f64 {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap().powi(2)).sum::<f64>().sqrt()
}

#[tokio::test]
async fn generate_stream_and_non_stream_agree() {
    let Some(state) = state() else { return };
    let app = router(&state);
    let model = name_of(&state, SMOLLM);
    let body = json!({"model": model, "prompt": "Name three colors.", "stream": false, "options": greedy(8)});
    let r = post(&app, "/api/generate", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.content_type().starts_with("application/json"));
    let v = r.json();
    assert_eq!(v["model"], model.as_str());
    assert_eq!(v["done"], true);
    assert_eq!(v["done_reason"], "length");
    assert_eq!(v["eval_count"], 8);
    assert!(!v["response"].as_str().unwrap().is_empty());
    assert!(v["prompt_eval_count"].as_u64().unwrap() > 3);
    for k in ["total_duration", "load_duration", "prompt_eval_duration", "eval_duration"] {
        assert!(v[k].as_u64().unwrap() > 0, "{k}: {v}");
    }
    assert!(v["total_duration"].as_u64() >= v["eval_duration"].as_u64());
    let context = v["context"].as_array().unwrap();
    assert_eq!(context.len() as u64, v["prompt_eval_count"].as_u64().unwrap() + 8);
    assert!(chrono::DateTime::parse_from_rfc3339(v["created_at"].as_str().unwrap()).is_ok());

    // Streaming is the default on /api/generate: NDJSON, one object per piece, then the final one.
    let r = post(&app, "/api/generate", json!({"model": model, "prompt": "Name three colors.", "options": greedy(8)})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type(), "application/x-ndjson");
    let lines = r.lines();
    let (last, pieces) = lines.split_last().unwrap();
    assert!(pieces.len() >= 2 && pieces.iter().all(|l| l["done"] == false && l.get("context").is_none()));
    let text: String = pieces.iter().map(|l| l["response"].as_str().unwrap()).collect();
    assert_eq!(text, v["response"].as_str().unwrap(), "stream == non-stream");
    assert_eq!(last["done"], true);
    assert_eq!(last["response"], "");
    assert_eq!(last["context"], v["context"]);
    assert_eq!(last["eval_count"], 8);
}

#[tokio::test]
async fn generate_context_continues_the_conversation() {
    let Some(state) = state() else { return };
    let app = router(&state);
    let model = name_of(&state, SMOLLM);
    let first = post(&app, "/api/generate", json!({"model": model, "prompt": "My name is Ada.", "stream": false,
                                                   "options": greedy(4)})).await.json();
    let ctx = first["context"].as_array().unwrap().clone();
    let second = post(&app, "/api/generate", json!({"model": model, "prompt": "What is my name?", "stream": false,
                                                    "context": ctx, "options": greedy(4)})).await.json();
    assert_eq!(second["done"], true, "{second}");
    let n2 = second["prompt_eval_count"].as_u64().unwrap();
    assert!(n2 > ctx.len() as u64, "prompt includes the previous context: {n2} vs {}", ctx.len());
    let ctx2 = second["context"].as_array().unwrap();
    assert_eq!(&ctx2[..ctx.len()], &ctx[..], "new context extends the old one");
    // An out-of-vocabulary context id is a 400, not a crash.
    let r = post(&app, "/api/generate", json!({"model": model, "prompt": "x", "context": [4000000000u32]})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn raw_template_stop_and_num_ctx() {
    let Some(state) = state() else { return };
    let app = router(&state);
    let model = name_of(&state, SMOLLM);
    let raw = post(&app, "/api/generate", json!({"model": model, "prompt": "1, 2, 3, 4,", "raw": true, "stream": false,
                                                 "options": greedy(6)})).await.json();
    assert_eq!(raw["done"], true, "{raw}");
    assert!(raw.get("context").is_none(), "raw mode returns no context");
    let templ = post(&app, "/api/generate", json!({"model": model, "prompt": "1, 2, 3, 4,", "stream": false,
        "template": "{{ if .System }}{{ .System }} {{ end }}{{ .Prompt }}{{ .Response }}", "options": greedy(6)})).await.json();
    assert_eq!(templ["response"], raw["response"], "a verbatim template equals raw mode");
    // A stop string ends generation with done_reason stop and is not included.
    let text = raw["response"].as_str().unwrap();
    if let Some(stop) = text.split_whitespace().next().filter(|s| !s.is_empty()) {
        let mut opts = greedy(6);
        opts["stop"] = json!([stop]);
        let s = post(&app, "/api/generate", json!({"model": model, "prompt": "1, 2, 3, 4,", "raw": true, "stream": false,
                                                   "options": opts})).await.json();
        assert_eq!(s["done_reason"], "stop", "{s}");
        assert!(!s["response"].as_str().unwrap().contains(stop));
    }
    // A prompt longer than num_ctx is a 400 naming both counts.
    let long = "hello ".repeat(200);
    let r = post(&app, "/api/generate", json!({"model": model, "prompt": long, "options": {"num_ctx": 64}})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("64"));
}

#[tokio::test]
async fn empty_prompt_loads_and_keep_alive_zero_unloads() {
    let Some(state) = state() else { return };
    let app = router(&state);
    let model = name_of(&state, SMOLLM);
    let r = post(&app, "/api/generate", json!({"model": model})).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!((v["done"].clone(), v["done_reason"].clone(), v["response"].clone()), (json!(true), json!("load"), json!("")));
    let ps = get(&app, "/api/ps").await.json();
    let m = &ps["models"][0];
    assert_eq!(m["name"], model.as_str());
    assert!(m["context_length"].as_u64().unwrap() >= 2048);
    assert!(chrono::DateTime::parse_from_rfc3339(m["expires_at"].as_str().unwrap()).is_ok());
    let v = post(&app, "/api/generate", json!({"model": model, "keep_alive": 0})).await.json();
    assert_eq!(v["done_reason"], "unload");
    assert_eq!(get(&app, "/api/ps").await.json()["models"], json!([]));
    // Chat: empty messages load too; a request with keep_alive 0 unloads after finishing.
    let v = post(&app, "/api/chat", json!({"model": model, "messages": []})).await.json();
    assert_eq!((v["done_reason"].clone(), v["message"].clone()), (json!("load"), json!({"role": "assistant", "content": ""})));
    let v = post(&app, "/api/chat", json!({"model": model, "keep_alive": 0,
        "messages": [{"role": "user", "content": "hi"}], "options": greedy(2)})).await.json();
    assert_eq!(v["done"], true);
    assert_eq!(get(&app, "/api/ps").await.json()["models"], json!([]));
}

#[tokio::test]
async fn chat_defaults_to_non_stream_and_streams_when_asked() {
    let Some(state) = state() else { return };
    let app = router(&state);
    let model = name_of(&state, GEMMA);
    let msgs = json!([{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello."}]);
    let r = post(&app, "/api/chat", json!({"model": model, "messages": msgs, "options": greedy(6)})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.content_type().starts_with("application/json"));
    let v = r.json();
    assert_eq!(v["message"]["role"], "assistant");
    assert!(!v["message"]["content"].as_str().unwrap().is_empty());
    assert_eq!(v["done"], true);
    assert!(v.get("context").is_none());
    assert!(v["eval_count"].as_u64().unwrap() <= 6);

    let r = post(&app, "/api/chat", json!({"model": model, "messages": msgs, "stream": true, "options": greedy(6)})).await;
    assert_eq!(r.content_type(), "application/x-ndjson");
    let lines = r.lines();
    let (last, pieces) = lines.split_last().unwrap();
    let text: String = pieces.iter().map(|l| l["message"]["content"].as_str().unwrap()).collect();
    assert_eq!(text, v["message"]["content"].as_str().unwrap());
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], v["done_reason"]);

    // Every role, including tool results, renders.
    let all = json!([{"role": "system", "content": "s"}, {"role": "user", "content": "weather?"},
                     {"role": "assistant", "content": "checking"}, {"role": "tool", "content": "sunny"},
                     {"role": "User", "content": "so?"}]);
    for m in [name_of(&state, GEMMA), name_of(&state, SMOLLM)] {
        let r = post(&app, "/api/chat", json!({"model": m, "messages": all, "stream": false, "options": greedy(2)})).await;
        assert_eq!(r.status, StatusCode::OK, "{m}: {}", r.text());
    }
}

#[tokio::test]
async fn embeddings_raw_and_embed_normalized() {
    let Some(state) = state() else { return };
    let app = router(&state);
    let model = name_of(&state, SMOLLM);
    let raw = post(&app, "/api/embeddings", json!({"model": model, "prompt": "The sky is blue."})).await.json();
    let e = &raw["embedding"];
    assert!(e.as_array().unwrap().len() >= 64);
    assert!((norm(e) - 1.0).abs() > 1e-3, "legacy endpoint is not normalized");
    assert_eq!(raw.as_object().unwrap().len(), 1);
    assert_eq!(post(&app, "/api/embeddings", json!({"model": model, "prompt": ""})).await.json(), json!({"embedding": []}));

    let v = post(&app, "/api/embed", json!({"model": model, "input": ["The sky is blue.", "Grass is green."]})).await.json();
    let embs = v["embeddings"].as_array().unwrap();
    assert_eq!(embs.len(), 2);
    for x in embs {
        assert!((norm(x) - 1.0).abs() < 1e-4);
    }
    // Same direction as the raw vector.
    let dot: f64 = embs[0].as_array().unwrap().iter().zip(e.as_array().unwrap())
        .map(|(a, b)| a.as_f64().unwrap() * b.as_f64().unwrap()).sum();
    assert!((dot / norm(e) - 1.0).abs() < 1e-3, "cosine {}", dot / norm(e));
    assert!(v["prompt_eval_count"].as_u64().unwrap() >= 8);
    assert_eq!(v["model"], model.as_str());

    let d = post(&app, "/api/embed", json!({"model": model, "input": "The sky is blue.", "dimensions": 16})).await.json();
    let d0 = &d["embeddings"][0];
    assert_eq!(d0.as_array().unwrap().len(), 16);
    assert!((norm(d0) - 1.0).abs() < 1e-4);
    assert_eq!(post(&app, "/api/embed", json!({"model": model, "input": []})).await.json()["embeddings"], json!([]));
    let long = "word ".repeat(300);
    let r = post(&app, "/api/embed", json!({"model": model, "input": long, "truncate": false, "options": {"num_ctx": 64}})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "the input length exceeds the context length");
    let r = post(&app, "/api/embed", json!({"model": model, "input": long, "options": {"num_ctx": 64}})).await;
    assert_eq!(r.status, StatusCode::OK, "truncate defaults to true");
    assert_eq!(r.json()["prompt_eval_count"], 64);
}

#[tokio::test]
async fn openai_routes() {
    let Some(state) = state() else { return };
    let app = router(&state);
    let model = name_of(&state, SMOLLM);
    let v = get(&app, "/v1/models").await.json();
    assert_eq!(v["object"], "list");
    assert!(v["data"].as_array().unwrap().iter().any(|m| m["id"] == model.as_str() && m["object"] == "model"));
    let one = get(&app, &format!("/v1/models/{model}")).await.json();
    assert_eq!(one["id"], model.as_str());

    let msgs = json!([{"role": "user", "content": "Say hi."}]);
    let v = post(&app, "/v1/chat/completions", json!({"model": model, "messages": msgs, "max_tokens": 5, "seed": 1,
                                                      "temperature": 0})).await.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 5);
    assert_eq!(v["usage"]["total_tokens"].as_u64(), Some(v["usage"]["prompt_tokens"].as_u64().unwrap() + 5));

    let r = post(&app, "/v1/chat/completions", json!({"model": model, "messages": msgs, "max_tokens": 5, "seed": 1,
        "temperature": 0, "stream": true, "stream_options": {"include_usage": true}})).await;
    assert_eq!(r.content_type(), "text/event-stream");
    let events = r.sse();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, v["choices"][0]["message"]["content"].as_str().unwrap());
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"], v["usage"]);
    assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], "length");

    let c = post(&app, "/v1/completions", json!({"model": model, "prompt": "Once upon a time", "max_tokens": 4})).await.json();
    assert_eq!(c["object"], "text_completion");
    assert_eq!(c["usage"]["completion_tokens"], 4);
    let r = post(&app, "/v1/completions", json!({"model": model, "prompt": "Once", "max_tokens": 3, "stream": true})).await;
    assert_eq!(r.sse().last().map(String::as_str), Some("[DONE]"));

    let e = post(&app, "/v1/embeddings", json!({"model": model, "input": ["a b c", "d e f"]})).await.json();
    assert_eq!(e["object"], "list");
    assert_eq!(e["data"].as_array().unwrap().len(), 2);
    assert_eq!(e["data"][1]["index"], 1);
    assert!((norm(&e["data"][0]["embedding"]) - 1.0).abs() < 1e-4);
    let b = post(&app, "/v1/embeddings", json!({"model": model, "input": "a b c", "encoding_format": "base64"})).await.json();
    let n = e["data"][0]["embedding"].as_array().unwrap().len();
    assert_eq!(b["data"][0]["embedding"].as_str().unwrap().len(), (n * 4).div_ceil(3) * 4);
    let r = post(&app, "/v1/embeddings", json!({"model": model, "input": []})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn disconnect_cancels_and_frees_the_slot() {
    let Some(state) = state() else { return };
    let app = router(&state);
    let model = name_of(&state, SMOLLM);
    let req = Request::post("/api/generate")
        .body(Body::from(json!({"model": model, "prompt": "Count to a thousand.", "options": {"num_predict": 2000}}).to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    assert_eq!(state.models.load_stats().0, 1, "one generation running");
    drop(body);
    let mut freed = false;
    for _ in 0..100 {
        if state.models.load_stats().0 == 0 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(freed, "the generation stops after the client goes away");
}

#[tokio::test]
async fn full_queue_answers_503() {
    let Some(state) = state_with(ServerConfig { num_parallel: 1, max_queue: 0, ..ServerConfig::default() }) else { return };
    let app = router(&state);
    let model = name_of(&state, SMOLLM);
    let long = |_| Request::post("/api/generate")
        .body(Body::from(json!({"model": model, "prompt": "Tell a story.", "options": {"num_predict": 2000}}).to_string()))
        .unwrap();
    let resp = app.clone().oneshot(long(())).await.unwrap();
    let mut body = resp.into_body();
    assert!(body.frame().await.unwrap().unwrap().is_data());
    let r = request(&app, long(())).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(r.json()["error"], "server busy, please try again.  maximum pending requests exceeded");
    drop(body);
}
