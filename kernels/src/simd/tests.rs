//! Every SIMD kernel against the scalar reference, on random and edge-case blocks, within
//! test-quantize-fns' dot-product limit (|simd − scalar| / n) and a much tighter relative bound.
use super::*;
use crate::quants::{quantize_row, vec_dot_scalar};

fn lcg(seed: &mut u64) -> f32 {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

fn isas() -> Vec<Isa> {
    let mut v = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c") {
            v.push(Isa::Avx2);
        }
        if is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vl") && is_x86_feature_detected!("avx512vnni") {
            v.push(Isa::Avx512);
        }
    }
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("neon") {
        v.push(Isa::Neon);
    }
    v
}

fn quantized(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    let n = ty.row_bytes(x.len()).unwrap();
    let mut w = vec![0u32; n.div_ceil(4)];
    let b = &mut bytemuck::cast_slice_mut::<u32, u8>(&mut w)[..n];
    quantize_row(ty, x, b).unwrap();
    b.to_vec()
}

/// Byte offsets of the f16 scale fields of one block, for patching edge cases.
fn scale_offsets(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q4_1 | GgmlType::Q5_1 => &[0, 2],
        GgmlType::Q6_K => &[208],
        GgmlType::Q3_K => &[108],
        GgmlType::Q2_K => &[80, 82],
        _ => &[0],
    }
}

/// Weight rows: quantized random data, all-zero, every quant/scale byte 0xFF with d = 1, and
/// a negated d.
fn weight_cases(ty: GgmlType, n: usize, seed: &mut u64) -> Vec<(&'static str, Vec<u8>)> {
    let x: Vec<f32> = (0..n).map(|_| lcg(seed) * 3.0).collect();
    let random = quantized(ty, &x);
    let zero = vec![0u8; random.len()];
    let one = half::f16::from_f32(1.0).to_bits().to_le_bytes();
    let mut max = vec![0xFFu8; random.len()];
    let mut neg = random.clone();
    for blk in 0..random.len() / ty.type_size() {
        for &o in scale_offsets(ty) {
            let at = blk * ty.type_size() + o;
            max[at..at + 2].copy_from_slice(&one);
            neg[at + 1] ^= 0x80;
        }
        if ty == GgmlType::Q8_0 {
            // 0xFF is −1; fine. Avoid −128, which quantizers never emit.
        }
    }
    vec![("random", random), ("zero", zero), ("max", max), ("negative d", neg)]
}

#[test]
fn simd_vec_dot_matches_scalar() {
    let n = 2048;
    let mut seed = 7;
    let mut tested = 0;
    for isa in isas() {
        for ty in GgmlType::ALL {
            let Some(f) = vec_dot_fn_for(ty, isa) else { continue };
            let vt = ty.vec_dot_type();
            for (case, w) in weight_cases(ty, n, &mut seed) {
                let a: Vec<f32> = (0..n).map(|_| lcg(&mut seed)).collect();
                let act = quantized(vt, &a);
                let want = vec_dot_scalar(ty, &w, &act);
                let got = f(&w, &act);
                let err = (got - want).abs();
                assert!(err / (n as f32) < 0.02 && err <= 1e-4 * (1.0 + want.abs()) + 1e-3,
                    "{isa:?} {ty} {case}: {got} vs scalar {want}");
                tested += 1;
            }
        }
    }
    eprintln!("tested {tested} (isa, type, case) combinations");
}

#[test]
fn simd_tiles_match_scalar() {
    let n = 1024;
    let mut seed = 11;
    for isa in isas() {
        for ty in GgmlType::ALL {
            let Some(f) = tile_fn_for(ty, isa) else { continue };
            let vt = ty.vec_dot_type();
            for (case, w) in weight_cases(ty, n, &mut seed) {
                let acts: Vec<Vec<u8>> = (0..8)
                    .map(|_| quantized(vt, &(0..n).map(|_| lcg(&mut seed)).collect::<Vec<_>>()))
                    .collect();
                for nt in 1..=8 {
                    let ys: Vec<&[u8]> = acts[..nt].iter().map(|a| a.as_slice()).collect();
                    let mut out = [0f32; 8];
                    f(&w, &ys, &mut out[..nt]);
                    for t in 0..nt {
                        // A token's result must not depend on its tile mates or on whether it
                        // came alone (mat-vec) or in a batch: batched serving relies on it.
                        if let Some(dot) = vec_dot_fn_for(ty, isa) {
                            assert_eq!(out[t].to_bits(), dot(&w, &acts[t]).to_bits(), "{isa:?} {ty} {case} nt={nt} t={t}: tile vs dot");
                        }
                        let want = vec_dot_scalar(ty, &w, &acts[t]);
                        assert!((out[t] - want).abs() <= 1e-4 * (1.0 + want.abs()) + 1e-3,
                            "{isa:?} {ty} {case} nt={nt} t={t}: {} vs {want}", out[t]);
                    }
                }
            }
        }
    }
}

#[test]
fn tile_rows_match_the_one_row_tile() {
    let (n, rows) = (1024, 7);
    let mut seed = 29;
    let mut tested = 0;
    for isa in isas() {
        for ty in GgmlType::ALL {
            let (Some(f), Some(tile)) = (tile_rows_fn_for(ty, isa), tile_fn_for(ty, isa)) else { continue };
            let w: Vec<u8> = (0..rows).flat_map(|_| quantized(ty, &(0..n).map(|_| lcg(&mut seed)).collect::<Vec<_>>())).collect();
            let rb = w.len() / rows;
            let acts: Vec<Vec<u8>> = (0..8).map(|_| quantized(ty.vec_dot_type(), &(0..n).map(|_| lcg(&mut seed)).collect::<Vec<_>>())).collect();
            let ys: Vec<&[u8]> = acts.iter().map(|a| a.as_slice()).collect();
            let mut out = vec![f32::NAN; rows * 8];
            f(&w, rb, &ys, &mut out);
            for r in 0..rows {
                let mut one = [0f32; 8];
                tile(&w[r * rb..(r + 1) * rb], &ys, &mut one);
                for t in 0..8 {
                    assert_eq!(out[r * 8 + t].to_bits(), one[t].to_bits(), "{isa:?} {ty} row {r} token {t}");
                }
            }
            // Activation rows that do not match the weights give NaN, not a panic.
            let short: Vec<&[u8]> = acts.iter().map(|a| &a[..a.len() / 2]).collect();
            let mut bad = vec![0f32; rows * 8];
            f(&w, rb, &short, &mut bad);
            assert!(bad.iter().all(|v| v.is_nan()), "{isa:?} {ty}: short activations");
            tested += 1;
        }
    }
    assert!(tested > 0 || isas().is_empty());
}

#[test]
fn matvec_rows_match_the_one_token_tile() {
    let (n, rows) = (1024, 5);
    let mut seed = 23;
    for isa in isas() {
        for ty in GgmlType::ALL {
            let (Some(f), Some(tile)) = (matvec_rows_fn_for(ty, isa), tile_fn_for(ty, isa)) else { continue };
            let w: Vec<u8> = (0..rows).flat_map(|_| quantized(ty, &(0..n).map(|_| lcg(&mut seed)).collect::<Vec<_>>())).collect();
            let rb = w.len() / rows;
            let act = quantized(ty.vec_dot_type(), &(0..n).map(|_| lcg(&mut seed)).collect::<Vec<_>>());
            let mut out = vec![0f32; rows];
            f(&w, rb, &act, &mut out);
            for r in 0..rows {
                let mut one = [0f32; 1];
                tile(&w[r * rb..(r + 1) * rb], &[&act], &mut one);
                assert_eq!(out[r].to_bits(), one[0].to_bits(), "{isa:?} {ty} row {r}");
            }
            // Rows that do not match the activations give NaN, not a panic.
            let mut bad = vec![0f32; 2];
            f(&w, rb - 2, &act, &mut bad);
            assert!(bad.iter().all(|v| v.is_nan()), "{isa:?} {ty}: short rows");
            let mut bad = vec![0f32; rows + 1];
            f(&w, rb, &act, &mut bad);
            assert!(bad.iter().all(|v| v.is_nan()), "{isa:?} {ty}: too many rows");
        }
    }
}

/// The K-quants' one arithmetic, written plainly: each super-block's exact integer sums, then
/// `k_quant_step` / `q6_k_step`, block after block. Every x86 path (AVX2, AVX-512, AMX) must
/// give these bits, so results do not depend on the CPU's instruction set or the batch.
#[cfg(target_arch = "x86_64")]
fn k_quant_exact(ty: GgmlType, w: &[u8], act: &[u8]) -> f32 {
    use crate::quants::common::get_scale_min_k4;
    use crate::quants::{q6_k::q6, BlockQ4K, BlockQ6K, BlockQ8K};
    let y: &[BlockQ8K] = bytemuck::cast_slice(act);
    let mut acc = 0f32;
    match ty {
        GgmlType::Q4_K => {
            for (b, y) in bytemuck::cast_slice::<u8, BlockQ4K>(w).iter().zip(y) {
                let (mut s, mut m) = (0i32, 0i32);
                for sb in 0..8 {
                    let (sc, mn) = get_scale_min_k4(sb, &b.scales);
                    let q: i32 = (0..32).map(|l| ((b.qs[32 * (sb / 2) + l] >> (4 * (sb % 2))) & 0xF) as i32 * y.qs[32 * sb + l] as i32).sum();
                    s += sc as i32 * q;
                    m += mn as i32 * (y.bsums[2 * sb] as i32 + y.bsums[2 * sb + 1] as i32);
                }
                acc = avx512::k_quant_step(acc, s, b.d.to_f32(), m, -b.dmin.to_f32(), y.d);
            }
        }
        GgmlType::Q6_K => {
            for (b, y) in bytemuck::cast_slice::<u8, BlockQ6K>(w).iter().zip(y) {
                let (mut s, mut o) = (0i32, 0i32);
                for g in 0..16 {
                    let q: i32 = (16 * g..16 * g + 16).map(|e| (q6(b, e) + 32) * y.qs[e] as i32).sum();
                    s += b.scales[g] as i32 * q;
                    o += b.scales[g] as i32 * y.bsums[g] as i32;
                }
                acc = avx512::q6_k_step(acc, s, o, b.d.to_f32(), y.d);
            }
        }
        _ => unreachable!(),
    }
    acc
}

#[test]
#[cfg(target_arch = "x86_64")]
fn k_quant_kernels_compute_the_shared_arithmetic_bit_for_bit() {
    let (n, rows) = (1024, 11);
    let mut seed = 31;
    let mut tested = 0;
    for isa in isas() {
        for ty in [GgmlType::Q4_K, GgmlType::Q6_K] {
            for (case, w) in weight_cases(ty, n, &mut seed) {
                let acts: Vec<Vec<u8>> = (0..8).map(|_| quantized(GgmlType::Q8_K, &(0..n).map(|_| lcg(&mut seed) * 4.0).collect::<Vec<_>>())).collect();
                let want: Vec<f32> = acts.iter().map(|a| k_quant_exact(ty, &w, a)).collect();
                let dot = vec_dot_fn_for(ty, isa).expect("x86 paths have K-quant dots");
                let tile = tile_fn_for(ty, isa).expect("x86 paths have K-quant tiles");
                for (t, a) in acts.iter().enumerate() {
                    assert_eq!(dot(&w, a).to_bits(), want[t].to_bits(), "{isa:?} {ty} {case} token {t}: dot");
                }
                for nt in 1..=8 {
                    let ys: Vec<&[u8]> = acts[..nt].iter().map(|a| a.as_slice()).collect();
                    let mut out = [0f32; 8];
                    tile(&w, &ys, &mut out[..nt]);
                    for t in 0..nt {
                        assert_eq!(out[t].to_bits(), want[t].to_bits(), "{isa:?} {ty} {case} nt={nt} token {t}: tile");
                    }
                }
                if let Some(f) = matvec_rows_fn_for(ty, isa) {
                    let many: Vec<u8> = (0..rows).flat_map(|_| w.iter().copied()).collect();
                    let mut out = vec![0f32; rows];
                    f(&many, w.len(), &acts[0], &mut out);
                    assert!(out.iter().all(|v| v.to_bits() == want[0].to_bits()), "{isa:?} {ty} {case}: rows {out:?} vs {}", want[0]);
                }
                tested += 1;
            }
        }
    }
    assert!(tested > 0 || isas().is_empty());
}

/// The rows-as-lanes kernels (`gemm_fn`) against the one-row tiles, bit for bit: K-quants
/// row-major (with the edge-case rows of `weight_cases` among random ones, and partial panels)
/// and held as lanes (one and three groups),
/// the legacy types interleaved (a half panel, and one and a half); 1 to 11 tokens; y rows
/// wider than the matrix (only the matrix's columns written); mismatched activations give NaN.
#[test]
#[cfg(target_arch = "x86_64")]
fn gemm_kernels_match_the_one_row_tiles() {
    use crate::repack::{repack_in_place, Layout};
    let n = 1024;
    let mut seed = 37;
    let mut tested = 0;
    let layouts = GgmlType::ALL.iter().flat_map(|&ty| {
        let layouts: &[Layout] = if ty.is_k_quant() { &[Layout::RowMajor, Layout::Lanes16] } else { &[Layout::Interleaved8] };
        layouts.iter().map(move |&l| (ty, l))
    });
    for (ty, layout) in layouts {
        let (Some(gemm), Some(tile)) = (gemm_fn(ty, layout), tile_fn(ty)) else { continue };
        let row_counts: &[usize] = match layout {
            Layout::Lanes16 => &[16, 48],
            Layout::RowMajor => &[5, 16, 21],
            _ => &[8, 24],
        };
        for &rows in row_counts {
            let cases = weight_cases(ty, n, &mut seed);
            let w: Vec<u8> = (0..rows)
                .flat_map(|r| match cases.get(r / 3).filter(|_| r % 3 == 0) {
                    Some((_, c)) => c.clone(),
                    None => quantized(ty, &(0..n).map(|_| lcg(&mut seed)).collect::<Vec<_>>()),
                })
                .collect();
            let rb = w.len() / rows;
            let mut held = w.clone();
            assert!(repack_in_place(ty, &mut held, rows, n, layout));
            for n_tok in [1, 3, 8, 11] {
                let acts: Vec<u8> = (0..n_tok).flat_map(|_| quantized(ty.vec_dot_type(), &(0..n).map(|_| lcg(&mut seed) * 4.0).collect::<Vec<_>>())).collect();
                let arb = acts.len() / n_tok;
                // Row-aligned copies for the tiles (the blocks' casts need alignment).
                let act_rows: Vec<Vec<u8>> = acts.chunks_exact(arb).map(|a| a.to_vec()).collect();
                let stride = rows + 3;
                let mut y = vec![f32::NAN; n_tok * stride];
                // SAFETY: y holds n_tok rows of `stride` >= rows outputs.
                unsafe { gemm(&held, rb, rows, &acts, arb, n_tok, y.as_mut_ptr(), stride) };
                for r in 0..rows {
                    let row = w[r * rb..(r + 1) * rb].to_vec();
                    for (t, a) in act_rows.iter().enumerate() {
                        let mut one = [0f32; 1];
                        tile(&row, &[a], &mut one);
                        assert_eq!(y[t * stride + r].to_bits(), one[0].to_bits(), "{ty} {layout:?} {rows} rows, {n_tok} tokens: row {r} token {t}");
                    }
                }
                assert!((0..n_tok).all(|t| y[t * stride + rows..(t + 1) * stride].iter().all(|v| v.is_nan())), "{ty}: wrote past the matrix's rows");
                // Activation rows of another width: NaN everywhere, no panic.
                let mut bad = vec![0f32; n_tok * rows];
                unsafe { gemm(&held, rb, rows, &acts, arb - 2, n_tok, bad.as_mut_ptr(), rows) };
                assert!(bad.iter().all(|v| v.is_nan()), "{ty}: mismatched activations");
            }
            tested += 1;
        }
    }
    let avx512 = isas().contains(&Isa::Avx512) && isa() == Isa::Avx512 && !super::gemm_off();
    if !avx512 {
        eprintln!("no AVX-512 VNNI in use (or KILN_GEMM=0): no rows-as-lanes kernels to test");
    }
    assert!(tested > 0 || !avx512, "AVX-512 VNNI is present but no GEMM kernel was tested");
}

#[test]
fn force_scalar_isa_is_consistent() {
    // The detected ISA is cached; it must be one of the kinds this build knows.
    let i = isa();
    assert!(matches!(i, Isa::Scalar | Isa::Avx2 | Isa::Avx512 | Isa::Neon));
    assert!(!cpu_features().is_empty());
}
