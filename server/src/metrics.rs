//! Prometheus text exposition (`GET /metrics`), written by hand: request counts by endpoint and
//! status, tokens in and out, queue depth and running requests (read from the schedulers at scrape
//! time), and histograms of time-to-first-token and per-token latency.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// Upper bounds in seconds.
const TTFT_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
const TOKEN_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0];

pub struct Histogram {
    bounds: &'static [f64],
    // counts[i] = observations <= bounds[i] (non-cumulative here, summed on render); last = +Inf.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, counts: vec![0; bounds.len() + 1], sum: 0.0, count: 0 }
    }
    fn observe(&mut self, v: f64) {
        let i = self.bounds.iter().position(|b| v <= *b).unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.sum += v;
        self.count += 1;
    }
    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c;
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", self.sum, self.count);
    }
}

pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    pub tokens_in: AtomicU64,
    pub tokens_out: AtomicU64,
    ttft: Mutex<Histogram>,
    per_token: Mutex<Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            tokens_in: AtomicU64::new(0),
            tokens_out: AtomicU64::new(0),
            ttft: Mutex::new(Histogram::new(&TTFT_BUCKETS)),
            per_token: Mutex::new(Histogram::new(&TOKEN_BUCKETS)),
        }
    }
}

impl Metrics {
    pub fn record_request(&self, endpoint: &str, status: u16) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((endpoint.to_string(), status)).or_insert(0) += 1;
        }
    }
    pub fn record_tokens(&self, prompt: usize, generated: usize) {
        self.tokens_in.fetch_add(prompt as u64, Ordering::Relaxed);
        self.tokens_out.fetch_add(generated as u64, Ordering::Relaxed);
    }
    pub fn observe_ttft(&self, d: Duration) {
        if let Ok(mut h) = self.ttft.lock() {
            h.observe(d.as_secs_f64());
        }
    }
    pub fn observe_token(&self, d: Duration) {
        if let Ok(mut h) = self.per_token.lock() {
            h.observe(d.as_secs_f64());
        }
    }

    pub fn render(&self, running: usize, queued: usize, loaded: usize) -> String {
        let mut out = String::new();
        out.push_str("# HELP kiln_requests_total HTTP requests by endpoint and status.\n# TYPE kiln_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for ((endpoint, status), n) in m.iter() {
                let _ = writeln!(out, "kiln_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}");
            }
        }
        let counters = [
            ("kiln_prompt_tokens_total", "Prompt tokens evaluated.", self.tokens_in.load(Ordering::Relaxed)),
            ("kiln_generated_tokens_total", "Tokens generated.", self.tokens_out.load(Ordering::Relaxed)),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        }
        let gauges = [
            ("kiln_requests_processing", "Generations running now.", running),
            ("kiln_requests_deferred", "Generations waiting in the queue.", queued),
            ("kiln_models_loaded", "Models loaded in memory.", loaded),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        if let Ok(h) = self.ttft.lock() {
            h.render(&mut out, "kiln_time_to_first_token_seconds", "Time from request arrival to the first token.");
        }
        if let Ok(h) = self.per_token.lock() {
            h.render(&mut out, "kiln_time_per_output_token_seconds", "Time between generated tokens.");
        }
        out
    }
}

/// Counts every request by its route pattern (not the raw path) and final status.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let started = Instant::now();
    let resp = next.run(req).await;
    state.metrics.record_request(&endpoint, resp.status().as_u16());
    tracing::debug!(endpoint = %endpoint, status = resp.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64);
    resp
}

pub async fn metrics_handler(State(state): State<AppState>) -> Response {
    let (running, queued, loaded) = state.models.load_stats();
    let body = state.metrics.render(running, queued, loaded);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_cumulative_buckets() {
        let m = Metrics::default();
        m.record_request("/api/tags", 200);
        m.record_request("/api/tags", 200);
        m.record_request("/api/chat", 404);
        m.record_tokens(10, 3);
        m.observe_ttft(Duration::from_millis(30));
        m.observe_ttft(Duration::from_secs(100));
        let text = m.render(2, 5, 1);
        assert!(text.contains("kiln_requests_total{endpoint=\"/api/tags\",status=\"200\"} 2"));
        assert!(text.contains("kiln_requests_total{endpoint=\"/api/chat\",status=\"404\"} 1"));
        assert!(text.contains("kiln_prompt_tokens_total 10"));
        assert!(text.contains("kiln_generated_tokens_total 3"));
        assert!(text.contains("kiln_requests_processing 2"));
        assert!(text.contains("kiln_requests_deferred 5"));
        assert!(text.contains("kiln_time_to_first_token_seconds_bucket{le=\"0.025\"} 0"));
        assert!(text.contains("kiln_time_to_first_token_seconds_bucket{le=\"0.05\"} 1"));
        assert!(text.contains("kiln_time_to_first_token_seconds_bucket{le=\"30\"} 1"));
        assert!(text.contains("kiln_time_to_first_token_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("kiln_time_to_first_token_seconds_count 2"));
    }
}
