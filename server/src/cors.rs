//! CORS as Ollama configures gin-contrib/cors, plus its DNS-rebinding guard (CVE-2024-28224):
//! built-in origins `http(s)://localhost|127.0.0.1|0.0.0.0[:*]`, `app://*`, `file://*`, `tauri://*`,
//! `vscode-webview://*`, `vscode-file://*`, extended by `OLLAMA_ORIGINS` (comma list, `*` = any).

use std::net::IpAddr;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::state::AppState;

pub fn default_origins() -> Vec<String> {
    let mut v = Vec::new();
    for host in ["localhost", "127.0.0.1", "0.0.0.0"] {
        for scheme in ["http", "https"] {
            v.push(format!("{scheme}://{host}"));
            v.push(format!("{scheme}://{host}:*"));
        }
    }
    for s in ["app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*"] {
        v.push(s.to_string());
    }
    v
}

/// The built-in list plus the comma-separated extras (`OLLAMA_ORIGINS`).
pub fn origins_from(extra: Option<&str>) -> Vec<String> {
    let mut v = default_origins();
    if let Some(extra) = extra {
        v.extend(extra.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()));
    }
    v
}

/// One `*` wildcard per pattern, as gin-contrib/cors allows.
pub fn origin_allowed(origin: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| match p.split_once('*') {
        None => p == origin,
        Some(("", "")) => true,
        Some((pre, post)) => {
            origin.len() >= pre.len() + post.len() && origin.starts_with(pre) && origin.ends_with(post)
        }
    })
}

pub fn layer(patterns: Vec<String>) -> CorsLayer {
    let any = patterns.iter().any(|p| p == "*");
    let allow = if any {
        AllowOrigin::any()
    } else {
        AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            origin.to_str().map(|o| origin_allowed(o, &patterns)).unwrap_or(false)
        })
    };
    let headers = [
        "authorization", "content-type", "user-agent", "accept", "x-requested-with", "openai-beta",
        "x-stainless-arch", "x-stainless-async", "x-stainless-custom-poll-interval",
        "x-stainless-helper-method", "x-stainless-lang", "x-stainless-os", "x-stainless-package-version",
        "x-stainless-poll-helper", "x-stainless-retry-count", "x-stainless-runtime",
        "x-stainless-runtime-version", "x-stainless-timeout",
    ]
    .map(HeaderName::from_static);
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::HEAD, Method::OPTIONS,
        ])
        .allow_headers(headers)
        .max_age(Duration::from_secs(12 * 3600))
}

/// When bound to loopback, only loopback/private IPs and local names may appear in `Host`.
pub async fn host_guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if state.config.loopback {
        let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        if !host_allowed(host) {
            return StatusCode::FORBIDDEN.into_response();
        }
    }
    next.run(req).await
}

pub fn host_allowed(host_header: &str) -> bool {
    let host = match host_header.strip_prefix('[') {
        Some(inner) => inner.split(']').next().unwrap_or(""),
        None => match host_header.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') && p.chars().all(|c| c.is_ascii_digit()) => h,
            _ => host_header,
        },
    };
    let host = host.to_ascii_lowercase();
    if host.is_empty() || host == "localhost" {
        return true;
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return match ip {
            IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_unspecified() || v4.is_link_local(),
            IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xfe00) == 0xfc00,
        };
    }
    if [".localhost", ".local", ".internal"].iter().any(|s| host.ends_with(s)) {
        return true;
    }
    hostname().is_some_and(|h| h.eq_ignore_ascii_case(&host))
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/etc/hostname").ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let o = origins_from(Some("https://example.com, http://*.corp"));
        assert!(origin_allowed("http://localhost", &o));
        assert!(origin_allowed("http://localhost:3000", &o));
        assert!(origin_allowed("https://127.0.0.1:8443", &o));
        assert!(origin_allowed("vscode-webview://abc", &o));
        assert!(origin_allowed("https://example.com", &o));
        assert!(origin_allowed("http://a.corp", &o));
        assert!(!origin_allowed("https://evil.example", &o));
        assert!(!origin_allowed("http://localhost.evil.com", &o));
        assert!(origin_allowed("https://anything", &origins_from(Some("*"))));
    }

    #[test]
    fn hosts() {
        for ok in ["", "localhost", "localhost:11434", "127.0.0.1:11434", "[::1]:11434", "10.1.2.3", "box.local", "a.localhost:80"] {
            assert!(host_allowed(ok), "{ok}");
        }
        for bad in ["attacker.example", "attacker.example:11434", "8.8.8.8", "localhost.evil.com"] {
            assert!(!host_allowed(bad), "{bad}");
        }
    }
}
