//! Sampler and stop-sequence behaviour: reproducibility, greedy, the effect
//! of each filter and penalty, and validation.

use kiln_engine::sampling::{argmax, Rng, Sampler, SamplerConfig, SamplingError, StopMatcher};

fn cfg(f: impl FnOnce(&mut SamplerConfig)) -> SamplerConfig {
    let mut c = SamplerConfig { seed: Some(42), ..SamplerConfig::default() };
    f(&mut c);
    c
}

/// Draws `n` samples from fixed logits; returns counts per token.
fn histogram(c: SamplerConfig, logits: &[f32], history: &[u32], n: usize) -> Vec<usize> {
    let mut s = Sampler::new(c).expect("valid config");
    let mut counts = vec![0; logits.len()];
    for _ in 0..n {
        let mut row = logits.to_vec();
        counts[s.sample(&mut row, history) as usize] += 1;
    }
    counts
}

const LOGITS: [f32; 6] = [1.0, 3.0, 2.5, 0.5, 2.9, -1.0];

#[test]
fn same_seed_same_tokens_different_seed_different_tokens() {
    let run = |seed| {
        let mut s = Sampler::new(cfg(|c| {
            c.seed = Some(seed);
            c.temperature = 1.5;
            c.top_k = 0;
            c.top_p = 1.0;
        }))
        .expect("valid");
        (0..64).map(|_| s.sample(&mut LOGITS.to_vec(), &[])).collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn rng_is_platform_independent() {
    // xoshiro256** seeded by splitmix64(0): fixed first outputs
    let mut r = Rng::new(0);
    let first: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
    let mut r2 = Rng::new(0);
    assert_eq!(first, (0..3).map(|_| r2.next_u64()).collect::<Vec<_>>());
    assert_eq!(first[0], 0x99EC5F36CB75F2B4, "splitmix64/xoshiro256** reference value");
    let mut r = Rng::new(1);
    assert!((0..1000).map(|_| r.next_f64()).all(|x| (0.0..1.0).contains(&x)));
}

#[test]
fn greedy_is_argmax_with_first_index_on_ties() {
    let mut s = Sampler::new(SamplerConfig::greedy()).expect("valid");
    assert_eq!(s.sample(&mut LOGITS.to_vec(), &[1, 1, 1]), 1);
    let mut tie = vec![0.0, 5.0, 5.0, 1.0];
    assert_eq!(s.sample(&mut tie, &[]), 1);
    assert_eq!(argmax(&[-3.0, -1.0, -1.0]), 1);
    // temperature 0 with a repeat penalty: penalties first, then argmax
    let mut s = Sampler::new(cfg(|c| {
        c.temperature = 0.0;
        c.repeat_penalty = 2.0;
    }))
    .expect("valid");
    assert_eq!(s.sample(&mut LOGITS.to_vec(), &[1]), 4, "3.0/2 falls below 2.9");
}

#[test]
fn top_k_one_is_greedy_and_top_k_limits_the_support() {
    let h = histogram(cfg(|c| c.top_k = 1), &LOGITS, &[], 200);
    assert_eq!(h[1], 200);
    let h = histogram(cfg(|c| {
        c.top_k = 3;
        c.top_p = 1.0;
        c.temperature = 5.0;
    }), &LOGITS, &[], 2000);
    assert_eq!(h[0] + h[3] + h[5], 0, "only the 3 best tokens: {h:?}");
    assert!(h[1] > 0 && h[2] > 0 && h[4] > 0, "{h:?}");
}

#[test]
fn top_p_and_min_p_cut_the_tail() {
    // probabilities at T=1: token 1 ~0.35, 4 ~0.31, 2 ~0.21, 0 ~0.05, ...
    let h = histogram(cfg(|c| {
        c.top_k = 0;
        c.top_p = 0.5;
        c.temperature = 1.0;
    }), &LOGITS, &[], 2000);
    assert_eq!(h[0] + h[2] + h[3] + h[5], 0, "top_p 0.5 keeps tokens 1 and 4: {h:?}");
    assert!(h[1] > 0 && h[4] > 0);
    let h = histogram(cfg(|c| {
        c.top_k = 0;
        c.top_p = 1.0;
        c.min_p = 0.5; // keeps logits >= 3.0 + ln 0.5 = 2.31
        c.temperature = 1.0;
    }), &LOGITS, &[], 2000);
    assert_eq!(h[0] + h[3] + h[5], 0, "{h:?}");
    assert!(h[2] > 0, "{h:?}");
}

#[test]
fn temperature_sharpens_and_flattens() {
    let base = |t| cfg(move |c| {
        c.top_k = 0;
        c.top_p = 1.0;
        c.temperature = t;
    });
    let cold = histogram(base(0.2), &LOGITS, &[], 4000);
    let hot = histogram(base(3.0), &LOGITS, &[], 4000);
    assert!(cold[1] > hot[1], "cold {cold:?} hot {hot:?}");
    assert!(hot[5] > cold[5], "cold {cold:?} hot {hot:?}");
}

#[test]
fn penalties_change_the_distribution_as_expected() {
    let base = |f: fn(&mut SamplerConfig)| {
        cfg(move |c| {
            c.top_k = 0;
            c.top_p = 1.0;
            c.temperature = 1.0;
            f(c);
        })
    };
    let history = [1, 1, 1];
    let plain = histogram(base(|_| {}), &LOGITS, &history, 4000);
    let repeat = histogram(base(|c| c.repeat_penalty = 1.5), &LOGITS, &history, 4000);
    let freq = histogram(base(|c| c.frequency_penalty = 1.0), &LOGITS, &history, 4000);
    let presence = histogram(base(|c| c.presence_penalty = 2.0), &LOGITS, &history, 4000);
    let window = histogram(base(|c| {
        c.repeat_penalty = 1.5;
        c.repeat_last_n = 1;
    }), &LOGITS, &[1, 4], 4000);
    assert!(repeat[1] < plain[1] / 2, "plain {plain:?} repeat {repeat:?}");
    assert!(freq[1] < presence[1], "3 repeats x 1.0 beats presence 2.0: {freq:?} {presence:?}");
    assert!(presence[1] < plain[1] / 2);
    assert!(window[1] > window[4], "only the last token (4) is penalised: {window:?}");

    // negative logits are multiplied, not divided
    let mut s = Sampler::new(cfg(|c| {
        c.temperature = 0.0;
        c.repeat_penalty = 2.0;
    }))
    .expect("valid");
    let mut row = vec![-1.0, -1.5];
    assert_eq!(s.sample(&mut row, &[0]), 1, "-1 * 2 = -2 < -1.5");
    assert_eq!(row[0], -2.0);
}

#[test]
fn invalid_values_are_rejected_naming_the_field() {
    let field = |c: SamplerConfig| match c.validate() {
        Err(SamplingError::Invalid { field, .. }) => field,
        Ok(()) => "ok",
    };
    assert_eq!(field(SamplerConfig::default()), "ok");
    assert_eq!(field(cfg(|c| c.top_k = -1)), "ok", "-1 means no limit");
    assert_eq!(field(cfg(|c| c.top_k = -5)), "top_k");
    assert_eq!(field(cfg(|c| c.top_p = 0.0)), "top_p");
    assert_eq!(field(cfg(|c| c.top_p = 1.5)), "top_p");
    assert_eq!(field(cfg(|c| c.temperature = -0.1)), "temperature");
    assert_eq!(field(cfg(|c| c.temperature = f32::NAN)), "temperature");
    assert_eq!(field(cfg(|c| c.min_p = f32::INFINITY)), "min_p");
    assert_eq!(field(cfg(|c| c.repeat_penalty = 0.0)), "repeat_penalty");
    assert_eq!(field(cfg(|c| c.frequency_penalty = f32::NEG_INFINITY)), "frequency_penalty");
    assert_eq!(field(cfg(|c| c.repeat_last_n = -2)), "repeat_last_n");
    assert!(Sampler::new(cfg(|c| c.top_p = 2.0)).is_err());
}

#[test]
fn ollama_defaults_and_json_options() {
    let d = SamplerConfig::default();
    assert_eq!((d.temperature, d.top_k, d.top_p, d.min_p), (0.8, 40, 0.9, 0.0));
    assert_eq!((d.repeat_penalty, d.repeat_last_n, d.seed), (1.0, 64, None));
    let c: SamplerConfig = serde_json::from_str(r#"{"temperature": 0, "seed": 5}"#).expect("json");
    assert_eq!((c.temperature, c.seed, c.top_k), (0.0, Some(5), 40));
}

#[test]
fn sampling_tolerates_odd_rows() {
    let mut s = Sampler::new(cfg(|c| c.top_k = 0)).expect("valid");
    assert_eq!(s.sample(&mut [], &[]), 0);
    let mut row = vec![f32::NAN, 1.0, f32::NEG_INFINITY];
    assert_eq!(s.sample(&mut row, &[99_999]), 1, "history ids outside the row are ignored");
}

fn run_stops(stops: &[&str], pieces: &[&str]) -> (String, bool) {
    let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
    let mut out = String::new();
    for p in pieces {
        let (t, hit) = m.push(p);
        out.push_str(&t);
        if hit {
            return (out, true);
        }
    }
    out.push_str(&m.flush());
    (out, false)
}

#[test]
fn stop_sequences_cut_across_token_boundaries() {
    assert_eq!(run_stops(&["<|im_end|>"], &["Hello", " wor", "ld<|im", "_end|>", "junk"]), ("Hello world".into(), true));
    assert_eq!(run_stops(&["\n\n"], &["a\n", "\nb"]), ("a".into(), true));
    // a partial match that turns out not to be a stop is released
    assert_eq!(run_stops(&["STOP"], &["ST", "OX", "!"]), ("STOX!".into(), false));
    // held-back prefix is released at flush
    assert_eq!(run_stops(&["STOP"], &["go ST"]), ("go ST".into(), false));
    // earliest of several stops wins
    assert_eq!(run_stops(&["c", "ab"], &["xab", "c"]), ("x".into(), true));
    // multi-byte stops never split a character
    assert_eq!(run_stops(&["日本"], &["今日", "は日", "本"]), ("今日は".into(), true));
    // empty stop strings are ignored
    assert_eq!(run_stops(&[""], &["abc"]), ("abc".into(), false));
}

#[test]
fn nothing_is_emitted_after_a_stop() {
    let mut m = StopMatcher::new(vec!["END".into()]);
    assert_eq!(m.push("xEND tail"), ("x".into(), true));
    assert_eq!(m.push("more"), (String::new(), true));
    assert!(m.stopped());
    assert_eq!(m.flush(), "");
}

#[test]
fn text_is_emitted_as_soon_as_it_cannot_start_a_stop() {
    let mut m = StopMatcher::new(vec!["</s>".into()]);
    assert_eq!(m.push("ab<"), ("ab".into(), false));
    assert_eq!(m.push("/x"), ("</x".into(), false));
}
