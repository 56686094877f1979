//! Shared harness of the GPU conformance suite (kernels/tests/gpu_conformance.rs): the adapter,
//! seeded inputs, quantized weights, the tolerance check and the plain CPU references.

use std::sync::OnceLock;

use kiln_kernels::gpu::{list_adapters, AttentionParams, GpuBuffer, GpuContext, RopeMode, RopeParams};
use kiln_kernels::{dequantize_row, quantize_row, GgmlType};

pub const ELEMENTWISE_TOL: f64 = 1e-6;
pub const QUANT_TOL: f64 = 5e-4;

/// Types with a WGSL decoder.
pub const GPU_TYPES: [GgmlType; 8] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
];

pub fn ctx() -> Option<&'static GpuContext> {
    static CTX: OnceLock<Option<GpuContext>> = OnceLock::new();
    CTX.get_or_init(|| {
        let require = std::env::var("KILN_REQUIRE_GPU").is_ok_and(|v| v == "1");
        let adapters = list_adapters();
        if adapters.is_empty() {
            assert!(!require, "KILN_REQUIRE_GPU=1 but no wgpu adapter was found");
            // Straight to stderr: libtest captures eprintln! of passing tests, this must show.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                b"==================== SKIPPED: no wgpu adapter ====================\n",
            );
            return None;
        }
        for a in &adapters {
            eprintln!("adapter {a}");
        }
        match GpuContext::new(None) {
            Ok(c) => {
                eprintln!("using {}", c.info());
                Some(c)
            }
            Err(e) => panic!("an adapter exists but opening it failed: {e}"),
        }
    })
    .as_ref()
}

/// Deterministic xorshift values in [-1, 1).
pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn nmse(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "length mismatch");
    let (mut num, mut den) = (0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        assert!(g.is_finite(), "non-finite GPU output {g}");
        num += (g as f64 - w as f64).powi(2);
        den += (w as f64).powi(2);
    }
    num / den.max(1e-30)
}

pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f64) {
    let e = nmse(got, want);
    eprintln!("{what}: nmse {e:.3e}");
    assert!(e <= tol, "{what}: normalized MSE {e:.3e} > {tol:.0e}");
}

/// Quantizes `n` random rows of `k` and returns (bytes, dequantized f32 rows).
pub fn quantized_weight(ty: GgmlType, k: usize, n: usize, seed: u64) -> (Vec<u8>, Vec<f32>) {
    let rb = ty.row_bytes(k).expect("k is whole blocks");
    let src = rand_vec(k * n, seed);
    let mut bytes = vec![0u8; rb * n];
    let mut deq = vec![0f32; k * n];
    for r in 0..n {
        quantize_row(
            ty,
            &src[r * k..(r + 1) * k],
            &mut bytes[r * rb..(r + 1) * rb],
        )
        .expect("quantize");
        dequantize_row(
            ty,
            &bytes[r * rb..(r + 1) * rb],
            &mut deq[r * k..(r + 1) * k],
        )
        .expect("dequantize");
    }
    (bytes, deq)
}

/// y[t, r] = sum_k w[r, k] x[t, k] in f64.
pub fn matmul_ref(w: &[f32], x: &[f32], k: usize, n: usize, n_tokens: usize) -> Vec<f32> {
    let mut y = vec![0f32; n_tokens * n];
    for t in 0..n_tokens {
        for r in 0..n {
            let s: f64 = (0..k)
                .map(|i| w[r * k + i] as f64 * x[t * k + i] as f64)
                .sum();
            y[t * n + r] = s as f32;
        }
    }
    y
}

pub fn run(ctx: &GpuContext, kernels: &[&kiln_kernels::gpu::Kernel]) {
    let mut step = ctx.begin_step();
    for k in kernels {
        step.record(k);
    }
    ctx.submit(step);
}

pub fn read(ctx: &GpuContext, b: &GpuBuffer) -> Vec<f32> {
    ctx.read_f32(b).expect("readback")
}

/// Row length per type: K-quants need multiples of 256; legacy rows use gemma-3-270m's 640.
pub fn k_for(ty: GgmlType) -> usize {
    if ty.block_size() == 256 {
        512
    } else {
        640
    }
}

pub fn check_mul_mat(ty: GgmlType, n: usize, n_tokens: usize, split_bytes: Option<u64>) {
    let Some(ctx) = ctx() else { return };
    let k = k_for(ty);
    let (bytes, deq) = quantized_weight(ty, k, n, ty.id() as u64 + 7);
    let x = rand_vec(k * n_tokens, 99);
    let w = match split_bytes {
        None => ctx.upload_weight(ty, k, n, &bytes),
        Some(s) => ctx.upload_weight_split(ty, k, n, &bytes, s),
    }
    .expect("upload");
    if split_bytes.is_some() {
        assert!(w.n_splits() > 1, "test meant to split the weight");
    }
    let xb = ctx.upload_f32(&x).expect("x");
    let yb = ctx.zeros_f32(n * n_tokens).expect("y");
    let kern = ctx.mul_mat(&w, &xb, &yb, n_tokens).expect("mul_mat");
    run(ctx, &[&kern]);
    let want = matmul_ref(&deq, &x, k, n, n_tokens);
    let what = format!(
        "mul_mat {} k={k} n={n} tokens={n_tokens} splits={}",
        ty.name(),
        w.n_splits()
    );
    assert_close(&what, &read(ctx, &yb), &want, QUANT_TOL);
}

pub fn rms_norm_ref(x: &[f32], w: &[f32], n: usize, eps: f32) -> Vec<f32> {
    x.chunks(n)
        .flat_map(|row| {
            let ms = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / n as f64;
            let inv = 1.0 / (ms + eps as f64).sqrt();
            row.iter()
                .zip(w)
                .map(move |(&v, &wi)| (v as f64 * inv * wi as f64) as f32)
        })
        .collect()
}

pub fn rope_ref(x: &mut [f32], pos: &[i32], p: &RopeParams) {
    let half = p.n_rot / 2;
    for (t, &pos_t) in pos.iter().enumerate().take(p.n_tokens) {
        for h in 0..p.n_heads {
            let base = (t * p.n_heads + h) * p.head_dim;
            for i in 0..half {
                let theta = pos_t as f64
                    * p.freq_scale as f64
                    * (p.freq_base as f64).powf(-2.0 * i as f64 / p.n_rot as f64);
                let (s, c) = theta.sin_cos();
                let (i0, i1) = match p.mode {
                    RopeMode::Norm => (base + 2 * i, base + 2 * i + 1),
                    RopeMode::Neox => (base + i, base + i + half),
                };
                let (x0, x1) = (x[i0] as f64, x[i1] as f64);
                x[i0] = (x0 * c - x1 * s) as f32;
                x[i1] = (x0 * s + x1 * c) as f32;
            }
        }
    }
}

/// Attention of queries at positions pos0, pos0 + 1, ... over cache rows 0..=their position.
pub fn attention_ref(q: &[f32], k: &[f32], v: &[f32], p: &AttentionParams, pos0: usize) -> Vec<f32> {
    let hd = p.head_dim;
    let g = p.n_head / p.n_head_kv;
    let mut out = vec![0f32; p.n_tokens * p.n_head * hd];
    for t in 0..p.n_tokens {
        let qpos = pos0 + t;
        for h in 0..p.n_head {
            let kvh = h / g;
            let qv = &q[(t * p.n_head + h) * hd..][..hd];
            let keys: Vec<usize> = (0..=qpos)
                .filter(|&j| p.window == 0 || qpos - j < p.window)
                .collect();
            let scores: Vec<f64> = keys
                .iter()
                .map(|&j| {
                    let kv = &k[(j * p.n_head_kv + kvh) * hd..][..hd];
                    qv.iter()
                        .zip(kv)
                        .map(|(&a, &b)| a as f64 * b as f64)
                        .sum::<f64>()
                        * p.scale as f64
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let sum: f64 = e.iter().sum();
            for d in 0..hd {
                let acc: f64 = keys
                    .iter()
                    .zip(&e)
                    .map(|(&j, &w)| w * v[(j * p.n_head_kv + kvh) * hd + d] as f64)
                    .sum();
                out[(t * p.n_head + h) * hd + d] = (acc / sum) as f32;
            }
        }
    }
    out
}

pub fn gelu_tanh(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
}

pub fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}
