//! GPU conformance: every wgpu kernel against a plain f32 CPU reference.
//!
//! Tolerances (normalized MSE, sum((gpu - ref)^2) / sum(ref^2)): 1e-6 for element-wise ops,
//! 5e-4 for quantized mat-vec / mat-mat. The references for quantized weights dequantize with
//! `kiln_kernels::dequantize_row` and accumulate in f64, so a decoding bug shows up as a
//! gross error, not as rounding.
//!
//! Runs on any wgpu adapter (CI: Mesa lavapipe). Where there is none at all the suite prints
//! "SKIPPED: no wgpu adapter" and passes, unless KILN_REQUIRE_GPU=1 makes that a failure.
//! The harness and the CPU references are in gpu_common/mod.rs.
#![cfg(feature = "gpu")]

use kiln_kernels::gpu::{AttentionParams, Epilogue, GluOp, GpuContext, GpuError, MatOut, QkvParams, RopeMode, RopeParams};
use kiln_kernels::{dequantize_row, GgmlType};

mod gpu_common;

use gpu_common::*;

#[test]
fn mul_mat_vec_every_type() {
    for ty in GPU_TYPES {
        // 37 rows: not a multiple of the 8 rows a mat-vec workgroup owns.
        check_mul_mat(ty, 37, 1, None);
    }
}

#[test]
fn mul_mat_add_long_rows_every_type() {
    // y += W·x (the fused residual add) over rows of 2816 elements: 176 units of 16, so the 32
    // lanes of a row wrap round several times and end unevenly; 1 token (mat-vec) and 11 (mat-mat).
    let Some(ctx) = ctx() else { return };
    for ty in GPU_TYPES {
        let (k, n) = (2816, 19);
        let (bytes, deq) = quantized_weight(ty, k, n, ty.id() as u64 + 31);
        let w = ctx.upload_weight(ty, k, n, &bytes).expect("upload");
        for n_tokens in [1, 11] {
            let x = rand_vec(k * n_tokens, 5);
            let y0 = rand_vec(n * n_tokens, 6);
            let (xb, yb) = (ctx.upload_f32(&x).expect("x"), ctx.upload_f32(&y0).expect("y"));
            let kern = ctx.mul_mat_add(&w, &xb, &yb, n_tokens).expect("mul_mat_add");
            run(ctx, &[&kern]);
            let want: Vec<f32> = matmul_ref(&deq, &x, k, n, n_tokens).iter().zip(&y0).map(|(a, b)| a + b).collect();
            assert_close(&format!("mul_mat_add {} k={k} tokens={n_tokens}", ty.name()), &read(ctx, &yb), &want, QUANT_TOL);
        }
    }
}

#[test]
fn mul_mat_prefill_every_type() {
    for ty in GPU_TYPES {
        // 11 tokens: one full 8-token tile and a partial one.
        check_mul_mat(ty, 21, 11, None);
    }
}

#[test]
fn mul_mat_split_weight() {
    // Splits of 7 rows: outputs of each split land at their row offset, for both kernels.
    for ty in [GgmlType::Q8_0, GgmlType::Q6_K, GgmlType::Q5_0] {
        let split = (ty.row_bytes(k_for(ty)).unwrap_or(1) * 7) as u64;
        check_mul_mat(ty, 30, 1, Some(split));
        check_mul_mat(ty, 30, 3, Some(split));
    }
}

#[test]
fn get_rows_every_type_and_split() {
    let Some(ctx) = ctx() else { return };
    for ty in GPU_TYPES {
        let (k, n) = (k_for(ty), 40);
        let (bytes, deq) = quantized_weight(ty, k, n, 3 + ty.id() as u64);
        let split = (ty.row_bytes(k).unwrap_or(1) * 9) as u64;
        let w = ctx
            .upload_weight_split(ty, k, n, &bytes, split)
            .expect("upload");
        let ids: Vec<u32> = vec![0, 39, 8, 9, 17, 17, 26];
        let scale = 25.3f32; // gemma's sqrt(n_embd) for n_embd 640
        let idb = ctx.upload_u32(&ids).expect("ids");
        let out = ctx.zeros_f32(ids.len() * k).expect("out");
        let kern = ctx
            .get_rows(&w, &idb, &out, ids.len(), scale)
            .expect("get_rows");
        run(ctx, &[&kern]);
        let want: Vec<f32> = ids
            .iter()
            .flat_map(|&id| {
                deq[id as usize * k..(id as usize + 1) * k]
                    .iter()
                    .map(|v| v * scale)
            })
            .collect();
        assert_close(
            &format!("get_rows {}", ty.name()),
            &read(ctx, &out),
            &want,
            ELEMENTWISE_TOL,
        );
    }
}

#[test]
fn rms_norm_rows_and_per_head() {
    let Some(ctx) = ctx() else { return };
    // (n, rows): SmolLM2 hidden rows, gemma per-head Q norm (head_dim 256 x 4 heads x 3 tokens),
    // and a length that is not a multiple of 64.
    for (n, rows, eps) in [(576, 3, 1e-5f32), (256, 12, 1e-6), (100, 5, 1e-6)] {
        let x: Vec<f32> = rand_vec(n * rows, n as u64)
            .iter()
            .map(|v| v * 3.0)
            .collect();
        let w: Vec<f32> = rand_vec(n, 5).iter().map(|v| 1.0 + v).collect();
        let (xb, wb, yb) = (
            ctx.upload_f32(&x).unwrap(),
            ctx.upload_f32(&w).unwrap(),
            ctx.zeros_f32(n * rows).unwrap(),
        );
        let kern = ctx.rms_norm(&xb, &wb, &yb, n, rows, eps).expect("rms_norm");
        run(ctx, &[&kern]);
        assert_close(
            &format!("rms_norm n={n} rows={rows}"),
            &read(ctx, &yb),
            &rms_norm_ref(&x, &w, n, eps),
            ELEMENTWISE_TOL,
        );
    }
}

#[test]
fn rope_norm_and_neox() {
    let Some(ctx) = ctx() else { return };
    let pos: Vec<i32> = vec![0, 1, 7, 130, 511];
    let cases = [
        // llama (SmolLM2): NORM, full rotation.
        RopeParams {
            n_tokens: 5,
            n_heads: 3,
            head_dim: 64,
            n_rot: 64,
            mode: RopeMode::Norm,
            freq_base: 10000.0,
            freq_scale: 1.0,
        },
        // gemma global layer: NEOX, base 1e6, linear scaling 1/8.
        RopeParams {
            n_tokens: 5,
            n_heads: 2,
            head_dim: 256,
            n_rot: 256,
            mode: RopeMode::Neox,
            freq_base: 1e6,
            freq_scale: 0.125,
        },
        // partial rotation: dims past n_rot stay unchanged.
        RopeParams {
            n_tokens: 5,
            n_heads: 2,
            head_dim: 64,
            n_rot: 32,
            mode: RopeMode::Neox,
            freq_base: 10000.0,
            freq_scale: 1.0,
        },
        RopeParams {
            n_tokens: 5,
            n_heads: 2,
            head_dim: 64,
            n_rot: 32,
            mode: RopeMode::Norm,
            freq_base: 10000.0,
            freq_scale: 1.0,
        },
    ];
    for p in cases {
        let x = rand_vec(p.n_tokens * p.n_heads * p.head_dim, 11);
        let xb = ctx.upload_f32(&x).unwrap();
        let pb = ctx
            .upload_u32(&pos.iter().map(|&v| v as u32).collect::<Vec<_>>())
            .unwrap();
        let kern = ctx.rope(&xb, &pb, p).expect("rope");
        run(ctx, &[&kern]);
        let mut want = x.clone();
        rope_ref(&mut want, &pos, &p);
        assert_close(
            &format!("rope {p:?}"),
            &read(ctx, &xb),
            &want,
            ELEMENTWISE_TOL,
        );
    }
}

#[test]
fn attention_causal_window_gqa() {
    let Some(ctx) = ctx() else { return };
    let cases = [
        // decode, SmolLM2-like GQA 9/3, head_dim 64, 150 cached keys (3 tiles, last partial).
        AttentionParams {
            n_head: 9,
            n_head_kv: 3,
            head_dim: 64,
            n_tokens: 1,
            capacity: 150 + 5, // 150 keys in use, garbage beyond
            window: 0,
            scale: 0.125,
        },
        // prefill of 7 tokens after 60 cached ones: causal mask inside the batch.
        AttentionParams {
            n_head: 4,
            n_head_kv: 1,
            head_dim: 256,
            n_tokens: 7,
            capacity: 67 + 5, // 67 keys in use, garbage beyond
            window: 0,
            scale: 1.0,
        },
        // gemma sliding layer: window 16 keeps keys with qpos - j < 16.
        AttentionParams {
            n_head: 4,
            n_head_kv: 1,
            head_dim: 256,
            n_tokens: 5,
            capacity: 100 + 5, // 100 keys in use, garbage beyond
            window: 16,
            scale: 1.0,
        },
        // window larger than the context, and the very first token.
        AttentionParams {
            n_head: 2,
            n_head_kv: 2,
            head_dim: 32,
            n_tokens: 3,
            capacity: 3 + 5, // 3 keys in use, garbage beyond
            window: 512,
            scale: 0.3,
        },
    ];
    let pos0s = [149, 60, 95, 0];
    for (p, pos0) in cases.into_iter().zip(pos0s) {
        let cap = p.capacity; // rows beyond the queries' positions hold garbage that must be ignored
        let q: Vec<f32> = rand_vec(p.n_tokens * p.n_head * p.head_dim, 1)
            .iter()
            .map(|v| v * 2.0)
            .collect();
        let k: Vec<f32> = rand_vec(cap * p.n_head_kv * p.head_dim, 2)
            .iter()
            .map(|v| v * 2.0)
            .collect();
        let v = rand_vec(cap * p.n_head_kv * p.head_dim, 3);
        let (qb, kb, vb) = (
            ctx.upload_f32(&q).unwrap(),
            ctx.upload_f32(&k).unwrap(),
            ctx.upload_f32(&v).unwrap(),
        );
        let ob = ctx.zeros_f32(q.len()).unwrap();
        let positions: Vec<u32> = (pos0..pos0 + p.n_tokens).map(|x| x as u32).collect();
        let pos = ctx.upload_u32(&positions).unwrap();
        let kern = ctx.attention(&qb, &kb, &vb, &ob, &pos, p).expect("attention");
        run(ctx, &[&kern]);
        assert_close(
            &format!("attention {p:?}"),
            &read(ctx, &ob),
            &attention_ref(&q, &k, &v, &p, pos0),
            ELEMENTWISE_TOL,
        );
    }
}

#[test]
fn attention_positions_move_between_steps() {
    // One prepared kernel; only the position buffer changes between steps, as in decoding.
    let Some(ctx) = ctx() else { return };
    let p = AttentionParams { n_head: 2, n_head_kv: 1, head_dim: 64, n_tokens: 1, capacity: 80, window: 0, scale: 0.125 };
    let q = rand_vec(2 * 64, 4);
    let k = rand_vec(80 * 64, 5);
    let v = rand_vec(80 * 64, 6);
    let (qb, kb, vb) = (ctx.upload_f32(&q).unwrap(), ctx.upload_f32(&k).unwrap(), ctx.upload_f32(&v).unwrap());
    let ob = ctx.zeros_f32(q.len()).unwrap();
    let pos = ctx.zeros_f32(1).unwrap();
    let kern = ctx.attention(&qb, &kb, &vb, &ob, &pos, p).expect("attention");
    for pos0 in [9usize, 10, 78] {
        ctx.write_u32(&pos, 0, &[pos0 as u32]).expect("positions");
        run(ctx, &[&kern]);
        assert_close(&format!("attention at position {pos0}"), &read(ctx, &ob), &attention_ref(&q, &k, &v, &p, pos0), ELEMENTWISE_TOL);
    }
}

#[test]
fn glu_add_scale() {
    let Some(ctx) = ctx() else { return };
    let n = 1536 * 2 + 17;
    // Gate values up to +-40 reach the saturated ends of both activations.
    let gate: Vec<f32> = rand_vec(n, 21).iter().map(|v| v * 40.0).collect();
    let up = rand_vec(n, 22);
    let (gb, ub, ob) = (
        ctx.upload_f32(&gate).unwrap(),
        ctx.upload_f32(&up).unwrap(),
        ctx.zeros_f32(n).unwrap(),
    );
    for (op, f) in [
        (
            GluOp::Silu,
            (|x: f64| x / (1.0 + (-x).exp())) as fn(f64) -> f64,
        ),
        (GluOp::GeluTanh, gelu_tanh),
    ] {
        let kern = ctx.glu(&gb, &ub, &ob, n, op).expect("glu");
        run(ctx, &[&kern]);
        let want: Vec<f32> = gate
            .iter()
            .zip(&up)
            .map(|(&g, &u)| (f(g as f64) * u as f64) as f32)
            .collect();
        assert_close(
            &format!("glu {op:?}"),
            &read(ctx, &ob),
            &want,
            ELEMENTWISE_TOL,
        );
    }
    let add = ctx.add(&gb, &ub, &ob, n).expect("add");
    run(ctx, &[&add]);
    let want: Vec<f32> = gate.iter().zip(&up).map(|(a, b)| a + b).collect();
    assert_close("add", &read(ctx, &ob), &want, ELEMENTWISE_TOL);
    let scale = ctx.scale(&ub, n, -0.0625).expect("scale");
    run(ctx, &[&scale]);
    let want: Vec<f32> = up.iter().map(|v| v * -0.0625).collect();
    assert_close("scale", &read(ctx, &ub), &want, ELEMENTWISE_TOL);
}

/// A miniature llama block in ONE encoder: embed -> norm -> mat-vec -> rope -> copy into a
/// cache -> attention -> residual add. Checks that dispatches recorded back to back see each
/// other's writes (wgpu inserts the barriers) and that a copy can sit between passes.
#[test]
fn one_encoder_many_dispatches() {
    let Some(ctx) = ctx() else { return };
    let (d, n_vocab, hd) = (64usize, 50usize, 32usize);
    let (emb_bytes, emb) = quantized_weight(GgmlType::Q8_0, d, n_vocab, 1);
    let (proj_bytes, proj) = quantized_weight(GgmlType::Q4_0, d, d, 3);
    let norm_w: Vec<f32> = rand_vec(d, 4).iter().map(|v| 1.0 + 0.5 * v).collect();

    let emb_w = ctx
        .upload_weight(GgmlType::Q8_0, d, n_vocab, &emb_bytes)
        .unwrap();
    let proj_w = ctx
        .upload_weight(GgmlType::Q4_0, d, d, &proj_bytes)
        .unwrap();
    let norm_b = ctx.upload_f32(&norm_w).unwrap();
    let ids = ctx.upload_u32(&[17]).unwrap();
    let pos = ctx.upload_u32(&[3]).unwrap();
    let h = ctx.zeros_f32(d).unwrap();
    let x = ctx.zeros_f32(d).unwrap();
    let qk = ctx.zeros_f32(d).unwrap();
    let cache = ctx.upload_f32(&rand_vec(4 * d, 9)).unwrap(); // rows 0..3 hold earlier keys
    let attn = ctx.zeros_f32(d).unwrap();
    let out = ctx.zeros_f32(d).unwrap();

    let rope_p = RopeParams {
        n_tokens: 1,
        n_heads: 2,
        head_dim: hd,
        n_rot: hd,
        mode: RopeMode::Norm,
        freq_base: 10000.0,
        freq_scale: 1.0,
    };
    let att_p = AttentionParams {
        n_head: 2,
        n_head_kv: 2,
        head_dim: hd,
        n_tokens: 1,
        capacity: 4,
        window: 0,
        scale: 0.2,
    };
    let k_embed = ctx.get_rows(&emb_w, &ids, &h, 1, 1.0).unwrap();
    let k_norm = ctx.rms_norm(&h, &norm_b, &x, d, 1, 1e-5).unwrap();
    let k_proj = ctx.mul_mat(&proj_w, &x, &qk, 1).unwrap();
    let k_rope = ctx.rope(&qk, &pos, rope_p).unwrap();
    let k_attn = ctx.attention(&qk, &cache, &cache, &attn, &pos, att_p).unwrap();
    let k_add = ctx.add(&h, &attn, &out, d).unwrap();

    let mut step = ctx.begin_step();
    for k in [&k_embed, &k_norm, &k_proj, &k_rope] {
        step.record(k);
    }
    step.copy(&qk, 0, &cache, 3 * d, d).unwrap();
    step.record(&k_attn);
    step.record(&k_add);
    ctx.submit(step);
    let got = read(ctx, &out);

    // CPU: the same chain.
    let h_ref = emb[17 * d..18 * d].to_vec();
    let x_ref = rms_norm_ref(&h_ref, &norm_w, d, 1e-5);
    let mut qk_ref = matmul_ref(&proj, &x_ref, d, d, 1);
    rope_ref(&mut qk_ref, &[3], &rope_p);
    let mut cache_ref = rand_vec(4 * d, 9);
    cache_ref[3 * d..].copy_from_slice(&qk_ref);
    let attn_ref = attention_ref(&qk_ref, &cache_ref, &cache_ref, &att_p, 3);
    let want: Vec<f32> = h_ref.iter().zip(&attn_ref).map(|(a, b)| a + b).collect();
    assert_close("one encoder chain", &got, &want, QUANT_TOL);
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let Some(ctx) = ctx() else { return };
    let (bytes, _) = quantized_weight(GgmlType::Q8_0, 64, 4, 1);
    assert!(matches!(
        ctx.upload_weight(GgmlType::Q8_0, 64, 5, &bytes),
        Err(GpuError::Shape { .. })
    ));
    assert!(matches!(
        ctx.upload_weight(GgmlType::Q4_K, 64, 4, &bytes),
        Err(GpuError::Shape { .. })
    ));
    let w = ctx.upload_weight(GgmlType::Q8_0, 64, 4, &bytes).unwrap();
    let x = ctx.zeros_f32(63).unwrap();
    let y = ctx.zeros_f32(4).unwrap();
    assert!(matches!(
        ctx.mul_mat(&w, &x, &y, 1),
        Err(GpuError::Shape { .. })
    ));
    let (q2, _) = quantized_weight(GgmlType::Q2_K, 256, 1, 1);
    let w2 = ctx.upload_weight(GgmlType::Q2_K, 256, 1, &q2).unwrap();
    let x2 = ctx.zeros_f32(256).unwrap();
    assert!(matches!(
        ctx.mul_mat(&w2, &x2, &y, 1),
        Err(GpuError::UnsupportedType("Q2_K"))
    ));
    let bad = AttentionParams {
        n_head: 3,
        n_head_kv: 2,
        head_dim: 64,
        n_tokens: 1,
        capacity: 1,
        window: 0,
        scale: 1.0,
    };
    assert!(ctx.attention(&x, &x, &x, &x, &x, bad).is_err());
    assert!(matches!(
        GpuContext::new(Some(usize::MAX)),
        Err(GpuError::BadAdapterIndex { .. })
    ));
}

/// gemma-3-270m's token_embd shape (Q8_0, 640 x 262144, ~178 MB) exceeds lavapipe's 128 MiB
/// storage binding, so it must be split at the adapter's real limit; lookups and the tied LM
/// head mat-vec must see rows on both sides of the split.
#[test]
fn large_tensor_splits_at_the_real_binding_limit() {
    let Some(ctx) = ctx() else { return };
    let (ty, k, n) = (GgmlType::Q8_0, 640usize, 262_144usize);
    let rb = 680usize;
    if (rb * n) as u64 <= ctx.max_binding_bytes() {
        eprintln!(
            "adapter binds {} bytes at once: no split needed, test covers one split only",
            ctx.max_binding_bytes()
        );
    }
    // Synthetic blocks: d = 2^-7 (f16 0x2000), random i8 quants.
    let mut bytes = vec![0u8; rb * n];
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    for block in bytes.chunks_mut(34) {
        block[0] = 0x00;
        block[1] = 0x20;
        for q in block[2..].chunks_mut(8) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            q.copy_from_slice(&s.to_le_bytes()[..q.len()]);
        }
    }
    let w = ctx.upload_weight(ty, k, n, &bytes).expect("upload");
    let expect_splits =
        ((rb * n) as u64).div_ceil(ctx.max_binding_bytes() / rb as u64 * rb as u64) as usize;
    assert_eq!(w.n_splits(), expect_splits, "splits at the binding limit");
    let row = |r: usize| {
        let mut out = vec![0f32; k];
        dequantize_row(ty, &bytes[r * rb..(r + 1) * rb], &mut out).expect("dequantize");
        out
    };

    let ids: Vec<u32> = vec![0, 197_378, 197_379, 262_143];
    let idb = ctx.upload_u32(&ids).unwrap();
    let emb = ctx.zeros_f32(ids.len() * k).unwrap();
    let x = rand_vec(k, 77);
    let xb = ctx.upload_f32(&x).unwrap();
    let logits = ctx.zeros_f32(n).unwrap();
    let k_rows = ctx.get_rows(&w, &idb, &emb, ids.len(), 1.0).unwrap();
    let k_head = ctx.mul_mat(&w, &xb, &logits, 1).unwrap();
    run(ctx, &[&k_rows, &k_head]);

    let want_emb: Vec<f32> = ids.iter().flat_map(|&id| row(id as usize)).collect();
    assert_close(
        "large get_rows",
        &read(ctx, &emb),
        &want_emb,
        ELEMENTWISE_TOL,
    );
    let got = read(ctx, &logits);
    // Every 97th row plus the rows next to the split boundaries.
    let check: Vec<usize> = (0..n)
        .step_by(97)
        .chain([197_378, 197_379, n - 1])
        .collect();
    let want: Vec<f32> = check
        .iter()
        .map(|&r| {
            row(r)
                .iter()
                .zip(&x)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>() as f32
        })
        .collect();
    let got_sel: Vec<f32> = check.iter().map(|&r| got[r]).collect();
    assert_close("large mat-vec (tied LM head)", &got_sel, &want, QUANT_TOL);
}

/// The GPU mat-vec / mat-mat against the CPU backend (`kiln_kernels::matmul`, which quantizes
/// activations to the weight's vec_dot_type): both backends must agree within the quantized
/// tolerance, so a model gives the same logits on either.
#[test]
fn mul_mat_matches_cpu_backend() {
    let Some(ctx) = ctx() else { return };
    let pool = kiln_kernels::ThreadPool::new(2);
    let mut scratch = kiln_kernels::QuantizedActs::new();
    for ty in GPU_TYPES {
        let (k, n) = (k_for(ty), 48);
        let (bytes, _) = quantized_weight(ty, k, n, 40 + ty.id() as u64);
        let w = ctx.upload_weight(ty, k, n, &bytes).expect("upload");
        for n_tokens in [1usize, 4] {
            let x = rand_vec(k * n_tokens, 41);
            let (xb, yb) = (
                ctx.upload_f32(&x).unwrap(),
                ctx.zeros_f32(n * n_tokens).unwrap(),
            );
            let kern = ctx.mul_mat(&w, &xb, &yb, n_tokens).expect("mul_mat");
            run(ctx, &[&kern]);
            let qm = kiln_kernels::QMatrix::new(ty, &bytes, n, k).expect("QMatrix");
            let mut want = vec![0f32; n * n_tokens];
            kiln_kernels::matmul(&pool, &qm, &x, n_tokens, &mut want, &mut scratch);
            let what = format!("GPU vs CPU matmul {} tokens={n_tokens}", ty.name());
            assert_close(&what, &read(ctx, &yb), &want, QUANT_TOL);
        }
    }
}

#[test]
fn mul_mat_tiles_of_64_rows_and_tokens() {
    // 130 rows x 70 tokens: three row tiles and two token tiles of the prefill kernel, the last of
    // each partial; written into columns 5.. of rows 140 wide.
    let Some(ctx) = ctx() else { return };
    for ty in [GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0, GgmlType::Q5_0] {
        let (k, n, n_tokens, stride, col) = (k_for(ty), 130, 70, 140, 5);
        let (bytes, deq) = quantized_weight(ty, k, n, 41);
        let w = ctx.upload_weight(ty, k, n, &bytes).expect("upload");
        let x = rand_vec(k * n_tokens, 42);
        let (xb, yb) = (ctx.upload_f32(&x).unwrap(), ctx.zeros_f32(n_tokens * stride).unwrap());
        let out = MatOut { stride, offset: col, epilogue: Epilogue::Store };
        run(ctx, &[&ctx.mul_mat_with(&w, &xb, &yb, n_tokens, out, None).expect("mul_mat")]);
        let want = matmul_ref(&deq, &x, k, n, n_tokens);
        let got = read(ctx, &yb);
        let got: Vec<f32> = (0..n_tokens).flat_map(|t| got[t * stride + col..t * stride + col + n].to_vec()).collect();
        assert_close(&format!("mul_mat tiles {}", ty.name()), &got, &want, QUANT_TOL);
    }
}

#[test]
fn mul_mat_vec_fused_norm_and_gated_ffn() {
    // One token: y = W·rms_norm(x)·nw, and the gated FFN over a [gate | up] weight:
    // y = act(gate·x') ⊙ (up·x') with x' normed, for both activations.
    let Some(ctx) = ctx() else { return };
    for ty in GPU_TYPES {
        let (k, ff) = (k_for(ty), 45);
        let (bytes, deq) = quantized_weight(ty, k, 2 * ff, ty.id() as u64 + 50);
        let w = ctx.upload_weight(ty, k, 2 * ff, &bytes).expect("upload");
        let x: Vec<f32> = rand_vec(k, 51).iter().map(|v| v * 3.0).collect();
        let nw: Vec<f32> = rand_vec(k, 52).iter().map(|v| 1.0 + 0.5 * v).collect();
        let xn = rms_norm_ref(&x, &nw, k, 1e-6);
        let (xb, nwb) = (ctx.upload_f32(&x).unwrap(), ctx.upload_f32(&nw).unwrap());
        // Plain product with the norm fused.
        let yb = ctx.zeros_f32(2 * ff).unwrap();
        run(ctx, &[&ctx.mul_mat_with(&w, &xb, &yb, 1, MatOut::dense(2 * ff), Some((&nwb, 1e-6))).unwrap()]);
        let full = matmul_ref(&deq, &xn, k, 2 * ff, 1);
        assert_close(&format!("mat-vec with norm {}", ty.name()), &read(ctx, &yb), &full, QUANT_TOL);
        for (op, f) in [(GluOp::Silu, silu as fn(f64) -> f64), (GluOp::GeluTanh, gelu_tanh)] {
            let gb = ctx.zeros_f32(ff).unwrap();
            let out = MatOut { stride: ff, offset: 0, epilogue: Epilogue::Glu(op) };
            run(ctx, &[&ctx.mul_mat_with(&w, &xb, &gb, 1, out, Some((&nwb, 1e-6))).unwrap()]);
            let want: Vec<f32> = (0..ff).map(|i| (f(full[i] as f64) * full[ff + i] as f64) as f32).collect();
            assert_close(&format!("gated mat-vec {op:?} {}", ty.name()), &read(ctx, &gb), &want, QUANT_TOL);
        }
    }
    // The fused forms take one token and a [gate | up] weight of even rows.
    let (bytes, _) = quantized_weight(GgmlType::Q8_0, 64, 3, 1);
    let w = ctx.upload_weight(GgmlType::Q8_0, 64, 3, &bytes).unwrap();
    let (x, y) = (ctx.zeros_f32(128).unwrap(), ctx.zeros_f32(8).unwrap());
    let glu = MatOut { stride: 1, offset: 0, epilogue: Epilogue::Glu(GluOp::Silu) };
    assert!(matches!(ctx.mul_mat_with(&w, &x, &y, 1, glu, None), Err(GpuError::Shape { .. })));
    assert!(matches!(ctx.mul_mat_with(&w, &x, &y, 2, MatOut::dense(3), Some((&x, 1e-6))), Err(GpuError::Shape { .. })));
    // Columns past a row's end would land in the next token's row.
    let y2 = ctx.zeros_f32(64).unwrap();
    let overflow = MatOut { stride: 4, offset: 2, epilogue: Epilogue::Store };
    assert!(matches!(ctx.mul_mat_with(&w, &x, &y2, 2, overflow, None), Err(GpuError::Shape { .. })));
}

#[test]
fn glu_rows_and_norm_add() {
    let Some(ctx) = ctx() else { return };
    // [gate | up] rows 2·n wide for 3 tokens.
    let (n, n_tokens) = (300, 3);
    let gu: Vec<f32> = rand_vec(2 * n * n_tokens, 61).iter().map(|v| v * 8.0).collect();
    let (gub, ob) = (ctx.upload_f32(&gu).unwrap(), ctx.zeros_f32(n * n_tokens).unwrap());
    run(ctx, &[&ctx.glu_rows(&gub, 0, &gub, n, n, &ob, 2 * n, n_tokens, GluOp::Silu).unwrap()]);
    let want: Vec<f32> = (0..n_tokens).flat_map(|t| (0..n).map(move |i| (t, i))).map(|(t, i)| (silu(gu[t * 2 * n + i] as f64) * gu[t * 2 * n + n + i] as f64) as f32).collect();
    assert_close("glu over [gate | up] rows", &read(ctx, &ob), &want, ELEMENTWISE_TOL);
    // y = res + rms_norm(x)·w (Gemma's post-norm and residual add).
    let (d, rows) = (640, 3);
    let x: Vec<f32> = rand_vec(d * rows, 62).iter().map(|v| v * 20.0).collect();
    let w = rand_vec(d, 63);
    let res = rand_vec(d * rows, 64);
    let (xb, wb, rb, yb) = (ctx.upload_f32(&x).unwrap(), ctx.upload_f32(&w).unwrap(), ctx.upload_f32(&res).unwrap(), ctx.zeros_f32(d * rows).unwrap());
    run(ctx, &[&ctx.rms_norm_add(&xb, &wb, &rb, &yb, d, rows, 1e-6).unwrap()]);
    let want: Vec<f32> = rms_norm_ref(&x, &w, d, 1e-6).iter().zip(&res).map(|(a, b)| a + b).collect();
    assert_close("rms_norm_add", &read(ctx, &yb), &want, ELEMENTWISE_TOL);
}

#[test]
fn qkv_post_norms_ropes_and_stores() {
    // Two tokens at positions 5 and 6 of an 8-row cache; GQA 4/2, head_dim 64 with n_rot 32
    // (unrotated tail dims), both rope modes; with biases (llama) and with Q/K norms (gemma3).
    let Some(ctx) = ctx() else { return };
    let (n_tokens, n_head, n_head_kv, hd, n_rot, cap) = (2usize, 4usize, 2usize, 64usize, 32usize, 8usize);
    let (qw, kvw) = (n_head * hd, n_head_kv * hd);
    let stride = qw + 2 * kvw + 3; // rows wider than Q|K|V
    let qkv: Vec<f32> = rand_vec(n_tokens * stride, 71).iter().map(|v| v * 4.0).collect();
    let bias = rand_vec(qw + 2 * kvw, 72);
    let (qn, kn) = (rand_vec(hd, 73), rand_vec(hd, 74));
    let positions = [5i32, 6];
    for mode in [RopeMode::Norm, RopeMode::Neox] {
        for gemma in [false, true] {
            let p = QkvParams { n_tokens, n_head, n_head_kv, head_dim: hd, qkv_stride: stride, n_rot, mode, freq_base: 10000.0, freq_scale: 1.0, eps: 1e-6, capacity: cap };
            let qkvb = ctx.upload_f32(&qkv).unwrap();
            let (qo, kc, vc) = (ctx.zeros_f32(n_tokens * qw).unwrap(), ctx.zeros_f32(cap * kvw).unwrap(), ctx.zeros_f32(cap * kvw).unwrap());
            let pos = ctx.upload_u32(&positions.map(|v| v as u32)).unwrap();
            let (qnb, knb, bb) = (ctx.upload_f32(&qn).unwrap(), ctx.upload_f32(&kn).unwrap(), ctx.upload_f32(&bias).unwrap());
            let kern = match gemma {
                true => ctx.qkv_post(&qkvb, &qo, &kc, &vc, &pos, Some(&qnb), Some(&knb), None, p),
                false => ctx.qkv_post(&qkvb, &qo, &kc, &vc, &pos, None, None, Some(&bb), p),
            };
            run(ctx, &[&kern.expect("qkv_post")]);
            // CPU: split, bias or per-head norm, rope, place.
            let mut q = Vec::new();
            let mut k = Vec::new();
            let mut v = Vec::new();
            for t in 0..n_tokens {
                let mut row: Vec<f32> = qkv[t * stride..t * stride + qw + 2 * kvw].to_vec();
                if !gemma {
                    row.iter_mut().zip(&bias).for_each(|(a, b)| *a += b);
                }
                q.extend_from_slice(&row[..qw]);
                k.extend_from_slice(&row[qw..qw + kvw]);
                v.extend_from_slice(&row[qw + kvw..]);
            }
            if gemma {
                q = rms_norm_ref(&q, &qn, hd, 1e-6);
                k = rms_norm_ref(&k, &kn, hd, 1e-6);
            }
            let rp = |heads| RopeParams { n_tokens, n_heads: heads, head_dim: hd, n_rot, mode, freq_base: 10000.0, freq_scale: 1.0 };
            rope_ref(&mut q, &positions, &rp(n_head));
            rope_ref(&mut k, &positions, &rp(n_head_kv));
            let what = format!("qkv_post {mode:?} gemma={gemma}");
            assert_close(&format!("{what} q"), &read(ctx, &qo), &q, ELEMENTWISE_TOL);
            let (kc_got, vc_got) = (read(ctx, &kc), read(ctx, &vc));
            assert_close(&format!("{what} k"), &kc_got[5 * kvw..7 * kvw], &k, ELEMENTWISE_TOL);
            assert_close(&format!("{what} v"), &vc_got[5 * kvw..7 * kvw], &v, ELEMENTWISE_TOL);
            assert!(kc_got[..5 * kvw].iter().chain(&kc_got[7 * kvw..]).all(|&x| x == 0.0), "{what}: only rows 5 and 6 written");
        }
    }
}

#[test]
fn mul_mat_vec_many_rows() {
    // Thousands of workgroups (and rows not a multiple of a workgroup's 8), with and without
    // the fused norm.
    let Some(ctx) = ctx() else { return };
    for ty in [GgmlType::Q4_K, GgmlType::Q5_0] {
        for n in [8200, 4100, 37] {
            let k = k_for(ty);
            let (bytes, deq) = quantized_weight(ty, k, n, n as u64);
            let w = ctx.upload_weight(ty, k, n, &bytes).expect("upload");
            let x = rand_vec(k, 3);
            let nw: Vec<f32> = rand_vec(k, 4).iter().map(|v| 1.0 + 0.5 * v).collect();
            let (xb, nwb, yb) = (ctx.upload_f32(&x).unwrap(), ctx.upload_f32(&nw).unwrap(), ctx.zeros_f32(n).unwrap());
            run(ctx, &[&ctx.mul_mat(&w, &xb, &yb, 1).unwrap()]);
            assert_close(&format!("mat-vec {} rows {n}", ty.name()), &read(ctx, &yb), &matmul_ref(&deq, &x, k, n, 1), QUANT_TOL);
            run(ctx, &[&ctx.mul_mat_with(&w, &xb, &yb, 1, MatOut::dense(n), Some((&nwb, 1e-6))).unwrap()]);
            let want = matmul_ref(&deq, &rms_norm_ref(&x, &nw, k, 1e-6), k, n, 1);
            assert_close(&format!("mat-vec with norm {} rows {n}", ty.name()), &read(ctx, &yb), &want, QUANT_TOL);
        }
    }
}
