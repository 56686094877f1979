//! Bounded load test on loopback: a real listener, 32 concurrent streaming /api/generate requests
//! on 4 slots. Asserts nothing is lost or garbled (every stream is valid NDJSON with exactly one
//! final object, last) and each seeded response equals its solo run.
//! Run: `cargo test -p kiln-server --test load --release` (debug works too, slower).

mod support;

use std::time::{Duration, Instant};

use kiln_server::{daemon, ServerConfig};
use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLIENTS: usize = 32;

/// Minimal HTTP/1.1 POST with `Connection: close`; returns (status, de-chunked body).
async fn http_post(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, rest) = text.split_once("\r\n\r\n").expect("header end");
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    (status, if chunked { dechunk(rest) } else { rest.to_string() })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").expect("chunk size line");
        let n = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

/// Checks the NDJSON stream and returns its text.
fn check_stream(body: &str, want_tokens: u64) -> String {
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("garbled line ({e}): {l:?}")))
        .collect();
    let done: Vec<usize> = lines.iter().enumerate().filter(|(_, l)| l["done"] == true).map(|(i, _)| i).collect();
    assert_eq!(done, vec![lines.len() - 1], "exactly one final object, last");
    let last = &lines[lines.len() - 1];
    assert!(last.get("error").is_none(), "{last}");
    assert_eq!(last["eval_count"].as_u64(), Some(want_tokens), "{last}");
    lines.iter().map(|l| l["response"].as_str().expect("response field")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_concurrent_streams_on_four_slots() {
    let Some(state) = state_with(ServerConfig { num_parallel: 4, ..ServerConfig::default() }) else { return };
    let model = name_of(&state, SMOLLM);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(daemon::run_until(listener, state.clone(), Duration::from_secs(5), stop_rx));

    let n_predict = 4u64;
    let body = |i: usize| {
        json!({"model": model, "prompt": format!("Write a word about the number {i}."),
               "options": {"seed": 1000 + i, "temperature": 0.8, "num_predict": n_predict}})
        .to_string()
    };
    // Solo runs, one at a time.
    let mut solo = Vec::new();
    for i in 0..CLIENTS {
        let (status, text) = http_post(addr, "/api/generate", &body(i)).await;
        assert_eq!(status, 200, "{text}");
        solo.push(check_stream(&text, n_predict));
    }
    // All at once.
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let b = body(i);
            tokio::spawn(async move { http_post(addr, "/api/generate", &b).await })
        })
        .collect();
    let mut together = Vec::new();
    for t in tasks {
        let (status, text) = t.await.unwrap();
        assert_eq!(status, 200, "{text}");
        together.push(check_stream(&text, n_predict));
    }
    let elapsed = started.elapsed();
    for (i, (a, b)) in solo.iter().zip(&together).enumerate() {
        assert_eq!(a, b, "request {i}: concurrent output differs from its solo run");
    }
    let distinct: std::collections::HashSet<_> = together.iter().collect();
    assert!(distinct.len() > CLIENTS / 2, "responses are not all the same text");
    eprintln!("{CLIENTS} concurrent streams x {n_predict} tokens in {elapsed:?}");
    assert_eq!(state.models.load_stats().0, 0, "no generation left running");
    let _ = stop_tx.send(true);
    server.await.unwrap().unwrap();
}

/// SIGTERM path: stop accepting, end the running stream with a final error line, exit within the
/// grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_ends_running_streams() {
    let Some(state) = state() else { return };
    let model = name_of(&state, SMOLLM);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(daemon::run_until(listener, state.clone(), Duration::from_secs(5), stop_rx));
    let body = json!({"model": model, "prompt": "Tell a long story.", "options": {"num_predict": 100000}}).to_string();
    let client = tokio::spawn(async move { http_post(addr, "/api/generate", &body).await });
    let deadline = Instant::now() + Duration::from_secs(60);
    while state.models.load_stats().0 == 0 {
        assert!(Instant::now() < deadline, "generation never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stopped_at = Instant::now();
    stop_tx.send(true).unwrap();
    let (status, text) = tokio::time::timeout(Duration::from_secs(10), client).await.expect("stream ended").unwrap();
    assert_eq!(status, 200);
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert!(last["error"].as_str().unwrap().contains("shutting down"), "{last}");
    tokio::time::timeout(Duration::from_secs(10), server).await.expect("server exits").unwrap().unwrap();
    assert!(stopped_at.elapsed() < Duration::from_secs(6));
    assert!(TcpStream::connect(addr).await.is_err(), "no longer accepting");
}
