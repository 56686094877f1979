//! Choosing the next token from a row of logits, the way llama.cpp's default
//! sampler chain does: penalties -> top_k -> top_p -> min_p -> temperature ->
//! draw. Temperature 0 is greedy argmax (first maximum wins).
//!
//! Also [`StopMatcher`], which cuts generated text at stop sequences that may
//! span token boundaries.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    #[error("invalid sampling option {field}: {value} ({reason})")]
    Invalid { field: &'static str, value: String, reason: &'static str },
}

/// Sampling options with Ollama's names and defaults (spec ollama-api §2.2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplerConfig {
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 or -1 = no limit.
    pub top_k: i32,
    /// In (0, 1]; 1 = off.
    pub top_p: f32,
    /// In [0, 1]; 0 = off.
    pub min_p: f32,
    /// 1 = off. Ollama's default is 1.0 since v0.32.10 (it was 1.1 before).
    pub repeat_penalty: f32,
    /// How many recent tokens the penalties look at; 0 = none, -1 = all.
    pub repeat_last_n: i32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// `None` = a fresh random seed.
    pub seed: Option<u64>,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.9,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: None,
        }
    }
}

impl SamplerConfig {
    /// Plain argmax of the raw logits: no penalties, no randomness.
    pub fn greedy() -> Self {
        SamplerConfig { temperature: 0.0, repeat_penalty: 1.0, seed: Some(0), ..SamplerConfig::default() }
    }

    /// Rejects values llama.cpp would silently misbehave on, naming the field.
    pub fn validate(&self) -> Result<(), SamplingError> {
        fn bad(field: &'static str, value: impl ToString, reason: &'static str) -> Result<(), SamplingError> {
            Err(SamplingError::Invalid { field, value: value.to_string(), reason })
        }
        let floats = [
            ("temperature", self.temperature),
            ("top_p", self.top_p),
            ("min_p", self.min_p),
            ("repeat_penalty", self.repeat_penalty),
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ];
        if let Some((field, v)) = floats.iter().find(|(_, v)| !v.is_finite()) {
            return bad(field, v, "must be a finite number");
        }
        if self.temperature < 0.0 {
            return bad("temperature", self.temperature, "must be >= 0");
        }
        if self.top_k < -1 {
            return bad("top_k", self.top_k, "must be >= 0 (0 or -1 means no limit)");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", self.top_p, "must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", self.min_p, "must be in [0, 1]");
        }
        if self.repeat_penalty <= 0.0 {
            return bad("repeat_penalty", self.repeat_penalty, "must be > 0 (1 means off)");
        }
        if self.repeat_last_n < -1 {
            return bad("repeat_last_n", self.repeat_last_n, "must be >= 0, or -1 for the whole context");
        }
        Ok(())
    }
}

/// xoshiro256** seeded through splitmix64: the same seed draws the same
/// numbers on every platform.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng { s: [next(), next(), next(), next()] }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    h.write_u128(nanos);
    h.finish()
}

/// One sequence's sampler: its options, its random stream and scratch space.
pub struct Sampler {
    cfg: SamplerConfig,
    rng: Rng,
    /// (logit, token id) candidates, reused across steps.
    cands: Vec<(f32, u32)>,
    counts: std::collections::HashMap<u32, u32>,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Result<Sampler, SamplingError> {
        cfg.validate()?;
        let rng = Rng::new(cfg.seed.unwrap_or_else(random_seed));
        Ok(Sampler { cfg, rng, cands: Vec::new(), counts: Default::default() })
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Picks the next token. `logits`: the full vocabulary row (modified in
    /// place by the penalties); `history`: every token of the sequence so far.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        self.apply_penalties(logits, history);
        if self.cfg.temperature <= 0.0 {
            return argmax(logits);
        }
        self.collect_top_k(logits);
        self.top_p();
        self.min_p();
        // temperature, then softmax and one draw
        let inv_t = 1.0 / f64::from(self.cfg.temperature);
        let max = self.cands.first().map_or(0.0, |c| f64::from(c.0));
        let weights: Vec<f64> = self.cands.iter().map(|c| ((f64::from(c.0) - max) * inv_t).exp()).collect();
        let total: f64 = weights.iter().sum();
        let mut r = self.rng.next_f64() * total;
        for (w, c) in weights.iter().zip(&self.cands) {
            if r < *w {
                return c.1;
            }
            r -= w;
        }
        self.cands.last().map_or_else(|| argmax(logits), |c| c.1)
    }

    /// llama.cpp's penalties over the last `repeat_last_n` tokens: a repeated
    /// token's logit is divided by `repeat_penalty` (multiplied when negative),
    /// then lowered by `count * frequency + presence`.
    fn apply_penalties(&mut self, logits: &mut [f32], history: &[u32]) {
        let c = &self.cfg;
        let off = c.repeat_penalty == 1.0 && c.presence_penalty == 0.0 && c.frequency_penalty == 0.0;
        if off || c.repeat_last_n == 0 {
            return;
        }
        let n = if c.repeat_last_n < 0 { history.len() } else { (c.repeat_last_n as usize).min(history.len()) };
        self.counts.clear();
        for &t in &history[history.len() - n..] {
            *self.counts.entry(t).or_insert(0) += 1;
        }
        for (&t, &count) in &self.counts {
            let Some(l) = logits.get_mut(t as usize) else { continue };
            *l = if *l <= 0.0 { *l * c.repeat_penalty } else { *l / c.repeat_penalty };
            *l -= count as f32 * c.frequency_penalty + c.presence_penalty;
        }
    }

    /// Candidates sorted by logit (ties: lower id first), cut to `top_k`.
    fn collect_top_k(&mut self, logits: &[f32]) {
        self.cands.clear();
        self.cands.extend(logits.iter().enumerate().filter(|(_, l)| !l.is_nan()).map(|(i, &l)| (l, i as u32)));
        let order = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        let k = if self.cfg.top_k > 0 { self.cfg.top_k as usize } else { self.cands.len() };
        if k < self.cands.len() {
            self.cands.select_nth_unstable_by(k, order);
            self.cands.truncate(k);
        }
        self.cands.sort_unstable_by(order);
    }

    /// Keeps the smallest prefix whose probability (at temperature 1) reaches `top_p`.
    fn top_p(&mut self) {
        if self.cfg.top_p >= 1.0 || self.cands.is_empty() {
            return;
        }
        let max = f64::from(self.cands[0].0);
        let w: Vec<f64> = self.cands.iter().map(|c| (f64::from(c.0) - max).exp()).collect();
        let total: f64 = w.iter().sum();
        let mut cum = 0.0;
        for (i, wi) in w.iter().enumerate() {
            cum += wi / total;
            if cum >= f64::from(self.cfg.top_p) {
                self.cands.truncate(i + 1);
                return;
            }
        }
    }

    /// Keeps tokens whose probability is at least `min_p` times the best one's.
    fn min_p(&mut self) {
        if self.cfg.min_p <= 0.0 || self.cands.is_empty() {
            return;
        }
        let floor = self.cands[0].0 + self.cfg.min_p.ln();
        let keep = self.cands.iter().take_while(|c| c.0 >= floor).count().max(1);
        self.cands.truncate(keep);
    }
}

/// Index of the largest logit; the first one on ties; 0 for an empty row.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] || logits[best].is_nan() {
            best = i;
        }
    }
    best as u32
}

/// Cuts generated text at the first stop sequence, across token boundaries:
/// text that might be the start of a stop is held back until it is not.
#[derive(Clone, Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
    stopped: bool,
}

impl StopMatcher {
    /// Empty strings are ignored.
    pub fn new(stops: Vec<String>) -> Self {
        StopMatcher { stops: stops.into_iter().filter(|s| !s.is_empty()).collect(), held: String::new(), stopped: false }
    }

    /// Feeds newly decoded text. Returns the text that is safe to emit now and
    /// whether a stop was hit; neither the stop text nor anything after it is
    /// ever returned.
    pub fn push(&mut self, text: &str) -> (String, bool) {
        if self.stopped {
            return (String::new(), true);
        }
        self.held.push_str(text);
        let first_stop = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min();
        if let Some(at) = first_stop {
            self.stopped = true;
            let out = self.held[..at].to_string();
            self.held.clear();
            return (out, true);
        }
        let hold = self.partial_stop_len();
        let out = self.held[..self.held.len() - hold].to_string();
        self.held.drain(..self.held.len() - hold);
        (out, false)
    }

    /// Releases held-back text at the end of generation (nothing after a stop).
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Length of the longest suffix of `held` that is a proper prefix of a stop.
    fn partial_stop_len(&self) -> usize {
        let mut best = 0;
        for s in &self.stops {
            for k in (best + 1..s.len()).rev() {
                if s.is_char_boundary(k) && self.held.ends_with(&s[..k]) {
                    best = k;
                    break;
                }
            }
        }
        best
    }
}
