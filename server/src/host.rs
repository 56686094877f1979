//! Listen address as `OLLAMA_HOST` spells it: `host`, `host:port`, `:port`, `[::1]:port`,
//! `scheme://host[:port][/path]` (http without a port means 80, https 443); default
//! `127.0.0.1:11434`; an invalid port falls back to the default.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

pub const DEFAULT_PORT: u16 = 11434;

pub fn parse_host(raw: &str) -> Result<SocketAddr, String> {
    let s = raw.trim().trim_matches(|c| c == '"' || c == '\'');
    if s.is_empty() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT));
    }
    let (scheme_port, rest) = match s.split_once("://") {
        Some(("https", r)) => (443, r),
        Some((_, r)) => (80, r),
        None => (DEFAULT_PORT, s),
    };
    let hostport = rest.split('/').next().unwrap_or("");
    let (host, port) = split_host_port(hostport);
    let port = match port {
        Some(p) => p.parse::<u16>().unwrap_or(DEFAULT_PORT),
        None => scheme_port,
    };
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host {host:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve host {host:?}"))
}

fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if let Some(inner) = s.strip_prefix('[') {
        if let Some((h, after)) = inner.split_once(']') {
            return (h, after.strip_prefix(':'));
        }
    }
    match s.rsplit_once(':') {
        // A bare IPv6 address has several colons and no port.
        Some((h, _)) if h.contains(':') => (s, None),
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ollama_host_forms() {
        let p = |s| parse_host(s).unwrap().to_string();
        assert_eq!(p(""), "127.0.0.1:11434");
        assert_eq!(p("127.0.0.1"), "127.0.0.1:11434");
        assert_eq!(p("0.0.0.0:8080"), "0.0.0.0:8080");
        assert_eq!(p(":9000"), "0.0.0.0:9000");
        assert_eq!(p("[::1]:5000"), "[::1]:5000");
        assert_eq!(p("http://10.0.0.1"), "10.0.0.1:80");
        assert_eq!(p("https://10.0.0.1/x"), "10.0.0.1:443");
        assert_eq!(p("http://127.0.0.1:7/path"), "127.0.0.1:7");
        assert_eq!(p("127.0.0.1:notaport"), "127.0.0.1:11434");
        assert!(p("localhost:1234").ends_with(":1234"));
    }
}
