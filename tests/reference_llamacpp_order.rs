//! The reference checks of `reference_models` with `KILN_LLAMACPP_ORDER`'s kernels: the legacy
//! types' and Q6_K's products in llama.cpp's own summation order (`kiln_kernels::simd::llamacpp`).
//! A binary of its own, since the switch is process-wide and must be set before a model loads.
//! In this mode both models meet every bound of tests/reference/README.md.

mod common;

use common::fidelity::{check_embeddings, check_free_running_greedy, check_logits, Bounds, README};

fn llamacpp_order() {
    kiln_kernels::simd::llamacpp::set_enabled(true);
}

/// smollm2 (Q4_1 throughout): mean 0.138, max 1.05 on the AVX-512 development machine (0.151 and
/// 1.03 with kiln's own order).
#[test]
fn smollm2_logits_meet_readme_bounds_in_llamacpp_order() {
    llamacpp_order();
    check_logits("smollm2", &README);
}

/// gemma3 (Q5_0, Q8_0 and Q6_K in llama.cpp's order; its Q4_K rows, which llama.cpp repacks for
/// its own kernels, in kiln's): mean 0.194, max 1.22, no top-1 disagreement (0.200 and 2.07 with
/// kiln's own order, where `reference_models` states the measured bound). The reference was
/// recorded by llama.cpp's AVX-512 build, whose attention kiln's AVX-512 kernel reproduces; on
/// other CPUs kiln's attention sums in its own order and the measured bounds apply.
#[test]
fn gemma3_logits_meet_readme_bounds_in_llamacpp_order() {
    llamacpp_order();
    #[cfg(target_arch = "x86_64")]
    let exact_attention = std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    let exact_attention = false;
    if exact_attention {
        check_logits("gemma3", &README);
    } else {
        eprintln!("no AVX-512: attention is not in llama.cpp's order here; checking the measured bounds");
        check_logits("gemma3", &Bounds { max: 2.5, flips: 1, flip_margin: 1.0 });
    }
}

#[test]
fn free_running_greedy_matches_llamacpp_in_llamacpp_order() {
    llamacpp_order();
    check_free_running_greedy("smollm2");
    check_free_running_greedy("gemma3");
}

#[test]
fn embeddings_match_llamacpp_in_llamacpp_order() {
    llamacpp_order();
    check_embeddings("smollm2");
    check_embeddings("gemma3");
}
