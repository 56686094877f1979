//! `keep_alive` values as Ollama reads them: a JSON number is seconds, a string is a Go duration
//! (`"5m"`, `"1h30m"`, `"-1m"`, `"0"`); anything negative means "keep loaded forever".

use std::time::Duration;

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    Forever,
    For(Duration),
}

impl KeepAlive {
    pub const DEFAULT: KeepAlive = KeepAlive::For(Duration::from_secs(300));

    pub fn is_zero(&self) -> bool {
        matches!(self, KeepAlive::For(d) if d.is_zero())
    }

    /// `None` for JSON `null` (unset).
    pub fn from_json(v: &Value) -> Result<Option<KeepAlive>, String> {
        match v {
            Value::Null => Ok(None),
            Value::Number(n) => {
                let secs = n.as_f64().ok_or_else(|| format!("invalid keep_alive {n}"))?;
                Ok(Some(from_secs_f64(secs)?))
            }
            Value::String(s) => parse(s).map(Some),
            other => Err(format!("invalid keep_alive: {other}")),
        }
    }
}

fn from_secs_f64(secs: f64) -> Result<KeepAlive, String> {
    if secs.is_nan() {
        return Err("invalid keep_alive: NaN".into());
    }
    if secs < 0.0 {
        return Ok(KeepAlive::Forever);
    }
    // Anything beyond ~292 years is forever too (Go's Duration saturates there).
    Ok(Duration::try_from_secs_f64(secs).map(KeepAlive::For).unwrap_or(KeepAlive::Forever))
}

/// Parses a keep-alive setting from an environment variable: a Go duration or plain seconds.
pub fn parse_env(s: &str) -> Result<KeepAlive, String> {
    let s = s.trim().trim_matches(|c| c == '"' || c == '\'');
    if let Ok(secs) = s.parse::<i64>() {
        return from_secs_f64(secs as f64);
    }
    parse(s)
}

/// Go's `time.ParseDuration`: `[-+]?(number unit)+` or `0`; units ns, us, µs, ms, s, m, h.
pub fn parse(s: &str) -> Result<KeepAlive, String> {
    let err = || format!("time: invalid duration \"{s}\"");
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(KeepAlive::For(Duration::ZERO));
    }
    if rest.is_empty() {
        return Err(err());
    }
    let mut total_ns: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return Err(err());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration \"{s}\"")),
            u => return Err(format!("time: unknown unit \"{u}\" in duration \"{s}\"")),
        };
        rest = &rest[unit_len..];
        total_ns += value * scale;
    }
    if neg && total_ns > 0.0 {
        return Ok(KeepAlive::Forever);
    }
    from_secs_f64(total_ns / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn go_durations() {
        assert_eq!(parse("5m").unwrap(), KeepAlive::For(Duration::from_secs(300)));
        assert_eq!(parse("1h30m").unwrap(), KeepAlive::For(Duration::from_secs(5400)));
        assert_eq!(parse("1.5s").unwrap(), KeepAlive::For(Duration::from_millis(1500)));
        assert_eq!(parse("250ms").unwrap(), KeepAlive::For(Duration::from_millis(250)));
        assert_eq!(parse("0").unwrap(), KeepAlive::For(Duration::ZERO));
        assert_eq!(parse("-1m").unwrap(), KeepAlive::Forever);
        assert_eq!(parse("-1").unwrap_err(), "time: missing unit in duration \"-1\"");
        assert!(parse("").is_err());
        assert!(parse("5x").is_err());
        assert!(parse("m").is_err());
    }

    #[test]
    fn json_values() {
        assert_eq!(KeepAlive::from_json(&json!(null)).unwrap(), None);
        assert_eq!(KeepAlive::from_json(&json!(0)).unwrap(), Some(KeepAlive::For(Duration::ZERO)));
        assert!(KeepAlive::from_json(&json!(0)).unwrap().unwrap().is_zero());
        assert_eq!(KeepAlive::from_json(&json!(-1)).unwrap(), Some(KeepAlive::Forever));
        assert_eq!(KeepAlive::from_json(&json!(2.5)).unwrap(), Some(KeepAlive::For(Duration::from_millis(2500))));
        assert_eq!(KeepAlive::from_json(&json!("10m")).unwrap(), Some(KeepAlive::For(Duration::from_secs(600))));
        assert!(KeepAlive::from_json(&json!(true)).is_err());
        assert_eq!(parse_env("60").unwrap(), KeepAlive::For(Duration::from_secs(60)));
        assert_eq!(parse_env("\"-1\"").unwrap(), KeepAlive::Forever);
    }
}
