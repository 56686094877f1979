//! Request `options` (Ollama's names), checked once here: wrong types and out-of-range values are
//! 400s naming the option; unknown and retired options (`mirostat`, `tfs_z`, ...) are ignored.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::ApiError;

pub const MAX_STOP: usize = 16;
pub const MAX_STOP_BYTES: usize = 256;
pub const MAX_NUM_CTX: i64 = 1 << 20;

#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct Options {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub typical_p: Option<f32>,
    pub num_predict: Option<i64>,
    pub num_ctx: Option<i64>,
    pub num_keep: Option<i64>,
    pub seed: Option<i64>,
    pub stop: Option<Vec<String>>,
    pub repeat_penalty: Option<f32>,
    pub repeat_last_n: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub num_thread: Option<i64>,
    pub num_batch: Option<i64>,
    pub num_gpu: Option<i64>,
}

impl Options {
    pub fn from_map(map: Option<&Map<String, Value>>) -> Result<Options, ApiError> {
        let Some(map) = map else { return Ok(Options::default()) };
        // One key at a time first, so a type error names the option (as Ollama's does).
        for (k, v) in map.iter().filter(|(_, v)| !v.is_null()) {
            let single: Map<String, Value> = [(k.clone(), v.clone())].into_iter().collect();
            serde_json::from_value::<Options>(Value::Object(single))
                .map_err(|e| ApiError::bad_request(format!("invalid option \"{k}\": {e}")))?;
        }
        let opts: Options = serde_json::from_value(Value::Object(map.clone()))
            .map_err(|e| ApiError::bad_request(format!("invalid options: {e}")))?;
        opts.validate()?;
        Ok(opts)
    }

    pub fn validate(&self) -> Result<(), ApiError> {
        let bad = |name: &str, v: &dyn std::fmt::Display, want: &str| {
            Err(ApiError::bad_request(format!("invalid option \"{name}\": {v} (must be {want})")))
        };
        let finite = |x: f32| x.is_finite();
        if let Some(t) = self.temperature {
            if !finite(t) || !(0.0..=100.0).contains(&t) {
                return bad("temperature", &t, "between 0 and 100");
            }
        }
        for (name, v) in [("top_p", self.top_p), ("min_p", self.min_p), ("typical_p", self.typical_p)] {
            if let Some(x) = v {
                if !finite(x) || !(0.0..=1.0).contains(&x) {
                    return bad(name, &x, "between 0 and 1");
                }
            }
        }
        if let Some(k) = self.top_k {
            if k < 0 {
                return bad("top_k", &k, ">= 0");
            }
        }
        if let Some(n) = self.num_predict {
            if n < -2 {
                return bad("num_predict", &n, ">= -2");
            }
        }
        if let Some(n) = self.num_ctx {
            if !(0..=MAX_NUM_CTX).contains(&n) {
                return bad("num_ctx", &n, &format!("between 0 and {MAX_NUM_CTX}"));
            }
        }
        if let Some(n) = self.repeat_last_n {
            if n < -1 {
                return bad("repeat_last_n", &n, ">= -1");
            }
        }
        if let Some(p) = self.repeat_penalty {
            if !finite(p) || !(0.0..=100.0).contains(&p) {
                return bad("repeat_penalty", &p, "between 0 and 100");
            }
        }
        for (name, v) in [("presence_penalty", self.presence_penalty), ("frequency_penalty", self.frequency_penalty)] {
            if let Some(x) = v {
                if !finite(x) || !(-100.0..=100.0).contains(&x) {
                    return bad(name, &x, "between -100 and 100");
                }
            }
        }
        if let Some(stop) = &self.stop {
            if stop.len() > MAX_STOP {
                return bad("stop", &stop.len(), &format!("at most {MAX_STOP} strings"));
            }
            if let Some(s) = stop.iter().find(|s| s.len() > MAX_STOP_BYTES || s.is_empty()) {
                return bad("stop", &format!("{s:?}"), &format!("1 to {MAX_STOP_BYTES} bytes"));
            }
        }
        Ok(())
    }

    /// `None` = until a stop condition (Ollama's -1 and -2).
    pub fn num_predict(&self) -> Option<usize> {
        self.num_predict.and_then(|n| usize::try_from(n).ok())
    }

    pub fn num_ctx(&self) -> usize {
        self.num_ctx.and_then(|n| usize::try_from(n).ok()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Options, ApiError> {
        Options::from_map(v.as_object())
    }

    #[test]
    fn accepts_known_ignores_unknown() {
        let o = parse(json!({"temperature": 0.5, "seed": 42, "stop": ["\n"], "mirostat": 2, "tfs_z": 1.0,
                             "num_predict": -1, "num_ctx": 0, "top_k": 1})).unwrap();
        assert_eq!(o.temperature, Some(0.5));
        assert_eq!(o.seed, Some(42));
        assert_eq!(o.stop.as_deref(), Some(&["\n".to_string()][..]));
        assert_eq!(o.num_predict(), None);
        assert_eq!(o.num_ctx(), 0);
        assert_eq!(parse(json!({"num_predict": 5})).unwrap().num_predict(), Some(5));
    }

    #[test]
    fn rejects_wrong_types_and_ranges() {
        for bad in [
            json!({"temperature": "hot"}),
            json!({"temperature": -1}),
            json!({"top_p": 1.5}),
            json!({"top_k": -3}),
            json!({"stop": "x"}),
            json!({"stop": [""]}),
            json!({"stop": vec!["a"; 17]}),
            json!({"num_ctx": -5}),
            json!({"num_predict": -7}),
            json!({"seed": 1.5}),
            json!({"repeat_last_n": -2}),
        ] {
            let e = parse(bad.clone()).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{bad}");
            assert!(e.message.contains("option"), "{}", e.message);
        }
    }
}
