//! In-process tests of the routes that need no generation: root, version, tags, show, ps, metrics,
//! and every error shape (400/404/413/401/403), auth, CORS. Run: `cargo test -p kiln-server --test http_errors`.

mod support;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use kiln_server::ServerConfig;
use serde_json::json;
use support::*;

#[tokio::test]
async fn root_version_and_head() {
    let Some(state) = state() else { return };
    let app = router(&state);
    let r = get(&app, "/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "kiln is running");
    assert!(r.content_type().starts_with("text/plain"));
    let r = call(&app, Method::HEAD, "/", "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());
    let v = get(&app, "/api/version").await.json();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(get(&app, "/no/such/route").await.status, StatusCode::NOT_FOUND);
    assert_eq!(call(&app, Method::GET, "/api/generate", "").await.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn tags_lists_both_models_with_ollama_fields() {
    let Some(state) = state() else { return };
    let app = router(&state);
    let r = get(&app, "/api/tags").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.content_type().starts_with("application/json"));
    let v = r.json();
    let models = v["models"].as_array().expect("models array");
    for file in [SMOLLM, GEMMA] {
        let name = name_of(&state, file);
        let m = models.iter().find(|m| m["name"] == name.as_str()).expect("listed");
        assert_eq!(m["model"], m["name"]);
        assert!(m["size"].as_u64().unwrap() > 1_000_000, "{m}");
        let digest = m["digest"].as_str().unwrap();
        assert!(digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()), "{digest}");
        let modified = m["modified_at"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(modified).is_ok(), "{modified}");
        let d = &m["details"];
        assert_eq!(d["format"], "gguf");
        assert!(d["families"].as_array().unwrap().contains(&d["family"]));
        assert!(!d["parameter_size"].as_str().unwrap().is_empty());
        assert!(!d["quantization_level"].as_str().unwrap().is_empty());
    }
    let smol = models.iter().find(|m| m["name"] == name_of(&state, SMOLLM).as_str()).unwrap();
    assert_eq!(smol["details"]["family"], "llama");
    assert_eq!(smol["details"]["quantization_level"], "Q4_1");
    let gemma = models.iter().find(|m| m["name"] == name_of(&state, GEMMA).as_str()).unwrap();
    assert_eq!(gemma["details"]["family"], "gemma3");
    let head = call(&app, Method::HEAD, "/api/tags", "").await;
    assert_eq!(head.status, StatusCode::OK);
}

#[tokio::test]
async fn show_reads_gguf_metadata() {
    let Some(state) = state() else { return };
    let app = router(&state);
    let name = name_of(&state, GEMMA);
    let v = post(&app, "/api/show", json!({ "model": name })).await.json();
    assert_eq!(v["model_info"]["general.architecture"], "gemma3");
    assert!(v["model_info"]["gemma3.context_length"].as_u64().unwrap() >= 2048);
    assert!(v["model_info"].get("general.name").is_none());
    assert_eq!(v["model_info"]["tokenizer.ggml.tokens"], json!([]), "long arrays elided unless verbose");
    // gemma3's GGUF carries no chat template: the built-in Gemma one is reported.
    assert!(v["template"].as_str().unwrap().contains("start_of_turn"), "{}", v["template"]);
    let smol = post(&app, "/api/show", json!({ "model": name_of(&state, SMOLLM) })).await.json();
    assert!(smol["template"].as_str().unwrap().contains("im_start"), "SmolLM2's own template");
    assert_eq!(v["details"]["family"], "gemma3");
    assert!(v.get("tensors").is_none());
    let verbose = post(&app, "/api/show", json!({ "name": name, "verbose": true })).await.json();
    assert!(verbose["tensors"].as_array().unwrap().len() > 10);
    assert!(verbose["model_info"]["tokenizer.ggml.tokens"].as_array().unwrap().len() > 1000);
    let r = post(&app, "/api/show", json!({})).await;
    assert_eq!((r.status, r.json()["error"].clone()), (StatusCode::BAD_REQUEST, json!("model is required")));
    let r = post(&app, "/api/show", json!({"model": "nope"})).await;
    assert_eq!((r.status, r.json()["error"].clone()), (StatusCode::NOT_FOUND, json!("model 'nope' not found")));
}

#[tokio::test]
async fn malformed_requests_get_ollama_errors() {
    let Some(state) = state() else { return };
    let app = router(&state);
    let smol = name_of(&state, SMOLLM);
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        ("/api/generate", String::new(), StatusCode::BAD_REQUEST, "missing request body"),
        ("/api/chat", String::new(), StatusCode::BAD_REQUEST, "missing request body"),
        ("/api/embed", "   ".into(), StatusCode::BAD_REQUEST, "missing request body"),
        ("/api/generate", "{x".into(), StatusCode::BAD_REQUEST, "key must be a string"),
        ("/api/chat", r#"{"model": "x""#.into(), StatusCode::BAD_REQUEST, "EOF"),
        ("/api/generate", r#"{"model": 5}"#.into(), StatusCode::BAD_REQUEST, "invalid type"),
        ("/api/generate", format!(r#"{{"model":"{smol}","prompt":7}}"#), StatusCode::BAD_REQUEST, "invalid type"),
        ("/api/chat", format!(r#"{{"model":"{smol}","messages":"hi"}}"#), StatusCode::BAD_REQUEST, "invalid type"),
        ("/api/generate", "{}".into(), StatusCode::NOT_FOUND, "model '' not found"),
        ("/api/generate", "null".into(), StatusCode::NOT_FOUND, "model '' not found"),
        ("/api/chat", "{}".into(), StatusCode::BAD_REQUEST, "model is required"),
        ("/api/embeddings", "{}".into(), StatusCode::BAD_REQUEST, "model is required"),
        ("/api/generate", r#"{"model":"llama9","prompt":"hi"}"#.into(), StatusCode::NOT_FOUND, "model 'llama9' not found"),
        ("/api/chat", r#"{"model":"llama9","messages":[]}"#.into(), StatusCode::NOT_FOUND, "model 'llama9' not found"),
        ("/api/embed", r#"{"model":"llama9","input":"x"}"#.into(), StatusCode::NOT_FOUND,
         "model \"llama9\" not found, try pulling it first"),
        ("/api/embeddings", r#"{"model":"llama9","prompt":"x"}"#.into(), StatusCode::NOT_FOUND,
         "model \"llama9\" not found, try pulling it first"),
        ("/api/generate", format!(r#"{{"model":"{smol}","prompt":"hi","options":{{"temperature":"hot"}}}}"#),
         StatusCode::BAD_REQUEST, "option \"temperature\""),
        ("/api/generate", format!(r#"{{"model":"{smol}","prompt":"hi","options":{{"top_p":2}}}}"#),
         StatusCode::BAD_REQUEST, "option \"top_p\""),
        ("/api/generate", format!(r#"{{"model":"{smol}","prompt":"hi","options":{{"stop":"x"}}}}"#),
         StatusCode::BAD_REQUEST, "option \"stop\""),
        ("/api/chat", format!(r#"{{"model":"{smol}","messages":[{{"role":"user","content":"x"}}],"options":{{"num_ctx":-1}}}}"#),
         StatusCode::BAD_REQUEST, "option \"num_ctx\""),
        ("/api/generate", format!(r#"{{"model":"{smol}","prompt":"hi","keep_alive":"-1"}}"#),
         StatusCode::BAD_REQUEST, "missing unit"),
        ("/api/generate", format!(r#"{{"model":"{smol}","prompt":"hi","raw":true,"system":"s"}}"#),
         StatusCode::BAD_REQUEST, "raw mode does not support"),
        ("/api/generate", format!(r#"{{"model":"{smol}","prompt":"hi","think":true}}"#),
         StatusCode::BAD_REQUEST, "does not support thinking"),
        ("/api/chat", format!(r#"{{"model":"{smol}","messages":[{{"role":"wizard","content":"x"}}]}}"#),
         StatusCode::BAD_REQUEST, "invalid message role"),
        ("/api/embed", format!(r#"{{"model":"{smol}","input":["a",3]}}"#), StatusCode::BAD_REQUEST, "invalid input type"),
        ("/v1/chat/completions", format!(r#"{{"model":"{smol}","messages":[]}}"#), StatusCode::BAD_REQUEST, "too short"),
    ];
    for (path, body, status, needle) in cases {
        let r = call(&app, Method::POST, path, &body).await;
        assert_eq!(r.status, status, "{path} {body}: {}", r.text());
        assert!(r.content_type().starts_with("application/json"), "{path} {body}");
        let v = r.json();
        let msg = v["error"].as_str().or_else(|| v["error"]["message"].as_str()).unwrap_or_default();
        assert!(msg.contains(needle), "{path} {body}: {msg:?} lacks {needle:?}");
    }
    // OpenAI routes use the OpenAI error shape.
    let r = post(&app, "/v1/chat/completions", json!({"model": "llama9", "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["error"]["type"], "not_found_error");
    // The server is still fine afterwards.
    assert_eq!(get(&app, "/api/tags").await.status, StatusCode::OK);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let Some(state) = state_with(ServerConfig { body_limit: 1024, ..ServerConfig::default() }) else { return };
    let app = router(&state);
    let big = json!({"model": "x", "prompt": "a".repeat(2000)}).to_string();
    let r = call(&app, Method::POST, "/api/generate", &big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json()["error"], "request body too large");
}

#[tokio::test]
async fn api_key_guards_every_route_but_root() {
    let Some(state) = state_with(ServerConfig { api_key: Some("s3cret".into()), ..ServerConfig::default() }) else {
        return;
    };
    let app = router(&state);
    assert_eq!(get(&app, "/").await.status, StatusCode::OK);
    for path in ["/api/tags", "/api/version", "/api/ps", "/metrics"] {
        let r = get(&app, path).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(r.json()["error"].as_str().unwrap().contains("unauthorized"));
    }
    let r = post(&app, "/api/generate", json!({"model": "x"})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = get(&app, "/v1/models").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"]["type"], "authentication_error");
    let with = |h: &str, v: &str| Request::get("/api/tags").header(h, v).body(Body::empty()).unwrap();
    assert_eq!(request(&app, with("authorization", "Bearer wrong")).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(request(&app, with("authorization", "Bearer s3cret!")).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(request(&app, with("authorization", "s3cret")).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(request(&app, with("authorization", "Bearer s3cret")).await.status, StatusCode::OK);
    assert_eq!(request(&app, with("x-api-key", "s3cret")).await.status, StatusCode::OK);

    // Without a key configured the header is accepted and ignored.
    let open = router(&state_with(ServerConfig::default()).unwrap());
    assert_eq!(request(&open, with("authorization", "Bearer anything")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn cors_and_host_guard() {
    let Some(state) = state() else { return };
    let app = router(&state);
    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/api/chat")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,authorization")
            .body(Body::empty())
            .unwrap()
    };
    let r = request(&app, preflight("http://localhost:3000")).await;
    assert!(r.status.is_success(), "{}", r.status);
    assert_eq!(r.headers["access-control-allow-origin"], "http://localhost:3000");
    let r = request(&app, preflight("https://evil.example")).await;
    assert!(r.headers.get("access-control-allow-origin").is_none());
    let r = request(&app, Request::get("/api/tags").header("origin", "vscode-webview://x").body(Body::empty()).unwrap()).await;
    assert_eq!(r.headers["access-control-allow-origin"], "vscode-webview://x");

    let host = |h: &str| Request::get("/api/version").header("host", h).body(Body::empty()).unwrap();
    assert_eq!(request(&app, host("attacker.example")).await.status, StatusCode::FORBIDDEN);
    assert_eq!(request(&app, host("localhost:11434")).await.status, StatusCode::OK);
    assert_eq!(request(&app, host("127.0.0.1:11434")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_count_requests_by_endpoint_and_status() {
    let Some(state) = state() else { return };
    let app = router(&state);
    get(&app, "/api/tags").await;
    get(&app, "/api/tags").await;
    post(&app, "/api/chat", json!({"model": "nope", "messages": []})).await;
    let r = get(&app, "/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.content_type().starts_with("text/plain"));
    let text = r.text();
    assert!(text.contains("kiln_requests_total{endpoint=\"/api/tags\",status=\"200\"} 2"), "{text}");
    assert!(text.contains("kiln_requests_total{endpoint=\"/api/chat\",status=\"404\"} 1"), "{text}");
    for name in ["kiln_requests_processing 0", "kiln_requests_deferred 0", "kiln_time_to_first_token_seconds_bucket",
                 "kiln_time_per_output_token_seconds_count", "kiln_generated_tokens_total"] {
        assert!(text.contains(name), "{name} missing");
    }
}

#[tokio::test]
async fn ps_is_empty_before_any_load() {
    let Some(state) = state() else { return };
    let v = get(&router(&state), "/api/ps").await.json();
    assert_eq!(v, json!({"models": []}));
}
