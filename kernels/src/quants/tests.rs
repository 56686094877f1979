//! Round-trip and dot-product tests against llama.cpp's `test-quantize-fns` limits.
use super::*;

/// `generate_data` of test-quantize-fns.cpp: 0.1 + 2·cos(i + offset).
pub(crate) fn test_vector(n: usize, offset: f32) -> Vec<f32> {
    (0..n).map(|i| 0.1 + 2.0 * (i as f32 + offset).cos()).collect()
}

/// test-quantize-fns' `array_rmse`: sqrt(Σ diff²) / n (its limits are in these units).
fn array_rmse(a: &[f32], b: &[f32]) -> f32 {
    let sum: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    sum.sqrt() as f32 / a.len() as f32
}

fn round_trip(ty: GgmlType, x: &[f32]) -> Vec<f32> {
    let mut q = vec![0u8; ty.row_bytes(x.len()).unwrap()];
    // Q8_K blocks need 4-byte alignment for the in-place cast.
    let mut aligned = vec![0u32; q.len().div_ceil(4)];
    let qb = &mut bytemuck::cast_slice_mut::<u32, u8>(&mut aligned)[..q.len()];
    quantize_row(ty, x, qb).unwrap();
    q.copy_from_slice(qb);
    let mut y = vec![0f32; x.len()];
    dequantize_row(ty, &q, &mut y).unwrap();
    y
}

/// Error limits from test-quantize-fns.cpp (MAX_QUANTIZATION_TOTAL_ERROR*).
fn rmse_limit(ty: GgmlType) -> f32 {
    match ty {
        GgmlType::Q2_K => 0.0075,
        GgmlType::Q3_K => 0.0040,
        _ => 0.002,
    }
}

#[test]
fn round_trip_rmse_within_llama_cpp_limits() {
    let x = test_vector(4096, 0.0);
    for ty in GgmlType::ALL {
        let y = round_trip(ty, &x);
        let e = array_rmse(&x, &y);
        assert!(e < rmse_limit(ty), "{ty}: total error {e}");
        // Also bound the plain per-element RMSE so a broken layout cannot hide in the 1/sqrt(n).
        let plain = e * (x.len() as f32).sqrt();
        let plain_limit = match ty {
            GgmlType::Q2_K => 0.35,
            GgmlType::Q3_K => 0.2,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q4_K => 0.1,
            _ => 0.05,
        };
        eprintln!("{ty}: rmse {plain}");
        assert!(plain < plain_limit, "{ty}: rmse {plain}");
    }
}

#[test]
fn zero_rows_quantize_to_zero() {
    let x = vec![0f32; 512];
    for ty in GgmlType::ALL {
        assert!(round_trip(ty, &x).iter().all(|&v| v == 0.0), "{ty}");
    }
}

#[test]
fn legacy_nibble_order_is_j_and_j_plus_16() {
    // Block with d = 1.0, qs[0] = 0x9A: element 0 = 0xA - 8 = 2, element 16 = 0x9 - 8 = 1.
    let mut raw = [0u8; 18];
    raw[..2].copy_from_slice(&half::f16::from_f32(1.0).to_bits().to_le_bytes());
    raw[2] = 0x9A;
    let mut y = [0f32; 32];
    dequantize_row(GgmlType::Q4_0, &raw, &mut y).unwrap();
    assert_eq!((y[0], y[1], y[16]), (2.0, -8.0, 1.0));
}

#[test]
fn bad_lengths_are_errors() {
    let mut y = [0f32; 100];
    assert!(matches!(
        dequantize_row(GgmlType::Q4_K, &[0u8; 144], &mut y),
        Err(KernelError::BadRowLength { .. })
    ));
    let mut y = [0f32; 256];
    assert!(matches!(dequantize_row(GgmlType::Q4_K, &[0u8; 143], &mut y), Err(KernelError::BadLength { .. })));
}

/// Scalar dot products against the f64 dot of the dequantized rows (MAX_DOT_PRODUCT_ERROR).
#[test]
fn scalar_vec_dot_matches_dequantized_dot() {
    let n = 1024;
    let x = test_vector(n, 0.0);
    let a = test_vector(n, 1.0);
    for ty in GgmlType::ALL {
        if matches!(ty, GgmlType::Q8_1 | GgmlType::Q8_K) {
            continue;
        }
        let vt = ty.vec_dot_type();
        let mut wq = vec![0u32; ty.row_bytes(n).unwrap().div_ceil(4)];
        let wq = &mut bytemuck::cast_slice_mut::<u32, u8>(&mut wq)[..ty.row_bytes(n).unwrap()];
        quantize_row(ty, &x, wq).unwrap();
        let mut aq = vec![0u32; vt.row_bytes(n).unwrap().div_ceil(4)];
        let aq = &mut bytemuck::cast_slice_mut::<u32, u8>(&mut aq)[..vt.row_bytes(n).unwrap()];
        quantize_row(vt, &a, aq).unwrap();
        let (mut wd, mut ad) = (vec![0f32; n], vec![0f32; n]);
        dequantize_row(ty, wq, &mut wd).unwrap();
        dequantize_row(vt, aq, &mut ad).unwrap();
        let want: f64 = wd.iter().zip(&ad).map(|(p, q)| *p as f64 * *q as f64).sum();
        let got = vec_dot_scalar(ty, wq, aq) as f64;
        assert!(((got - want) / n as f64).abs() < 0.02 / 10.0, "{ty}: {got} vs {want}");
        // And the quantized dot stays close to the exact f32 dot.
        let exact: f64 = x.iter().zip(&a).map(|(p, q)| *p as f64 * *q as f64).sum();
        assert!(((got - exact) / n as f64).abs() < 0.04, "{ty}: {got} vs exact {exact}");
    }
}
