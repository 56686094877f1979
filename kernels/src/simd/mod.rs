//! Runtime selection of dot-product kernels. The instruction set is detected once; setting
//! `KILN_FORCE_SCALAR=1` pins everything to the scalar references in `quants`.
use crate::quants::vec_dot_scalar;
use crate::types::GgmlType;
use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
pub(crate) mod act_avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod act_avx512;
#[cfg(target_arch = "x86_64")]
pub mod amx;
#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
#[cfg(target_arch = "x86_64")]
mod gemm;
#[cfg(target_arch = "x86_64")]
mod lanes;
pub mod llamacpp;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "aarch64")]
pub mod neon;
#[cfg(test)]
mod tests;

/// Dot of one weight row `x` with one activation row `y` (raw bytes, same element count).
pub type VecDotFn = fn(x: &[u8], y: &[u8]) -> f32;
/// `out[t] = dot(x, ys[t])` for `t < ys.len()`, 1 <= ys.len() <= 8: one weight row read once
/// against several tokens (the prefill tile).
pub type VecDotTileFn = fn(x: &[u8], ys: &[&[u8]], out: &mut [f32]);

/// Mat-vec over consecutive rows: `out[r] = dot(w[r·rb..(r+1)·rb], y)` for `r < out.len()`,
/// one call for a whole chunk of rows (the decode path).
/// Results are bit-identical to the tile kernel with one token.
pub type MatvecRowsFn = fn(w: &[u8], rb: usize, y: &[u8], out: &mut [f32]);

/// The prefill tile over a chunk of rows: `out[r·8 + t] = dot(w[r·rb..(r+1)·rb], ys[t])` for the
/// 8 tokens `ys` and `r < out.len() / 8`, the activations checked once for every row. The same
/// bits as [`VecDotTileFn`] row by row.
pub type TileRowsFn = fn(w: &[u8], rb: usize, ys: &[&[u8]], out: &mut [f32]);

/// Prefill over `rows` rows held in the kernel's layout (interleaved legacy types: whole groups,
/// so a multiple of 8): `y[t·y_stride + r] = row r · activation row t` for r < `rows` and
/// t < `n_tokens`. `w` holds the groups (`rb` bytes a row), `acts` the activation rows
/// (`act_rb` bytes each, the weight type's `vec_dot_type`). The same bits as the other paths;
/// mismatched shapes give NaN outputs.
///
/// # Safety
/// `y` must be valid for writes at every `t·y_stride + r` above, and no other thread may touch
/// those elements during the call.
pub type GemmFn = unsafe fn(w: &[u8], rb: usize, rows: usize, acts: &[u8], act_rb: usize, n_tokens: usize, y: *mut f32, y_stride: usize);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Scalar,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// AVX-512 F/BW/VL + VNNI (plus everything in Avx2).
    Avx512,
    Neon,
}

fn detect() -> Isa {
    if std::env::var("KILN_FORCE_SCALAR").is_ok_and(|v| v == "1") {
        return Isa::Scalar;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c");
        let avx512 = avx2
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni");
        if avx512 {
            return Isa::Avx512;
        }
        if avx2 {
            return Isa::Avx2;
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            return Isa::Neon;
        }
    }
    Isa::Scalar
}

/// The instruction set the kernels use, detected once.
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(detect)
}

/// The CPU features kiln looks at, for startup logs, e.g. "avx512f avx512bw avx512vnni avx2 fma".
pub fn cpu_features() -> &'static str {
    static FEATURES: OnceLock<String> = OnceLock::new();
    FEATURES.get_or_init(|| {
        let mut f: Vec<&str> = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            for (name, on) in [
                ("avx512f", is_x86_feature_detected!("avx512f")),
                ("avx512bw", is_x86_feature_detected!("avx512bw")),
                ("avx512vl", is_x86_feature_detected!("avx512vl")),
                ("avx512vnni", is_x86_feature_detected!("avx512vnni")),
                ("avx2", is_x86_feature_detected!("avx2")),
                ("fma", is_x86_feature_detected!("fma")),
                ("f16c", is_x86_feature_detected!("f16c")),
            ] {
                if on {
                    f.push(name);
                }
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            for (name, on) in [
                ("neon", std::arch::is_aarch64_feature_detected!("neon")),
                ("dotprod", std::arch::is_aarch64_feature_detected!("dotprod")),
                ("i8mm", std::arch::is_aarch64_feature_detected!("i8mm")),
            ] {
                if on {
                    f.push(name);
                }
            }
        }
        let mut s = f.join(" ");
        if isa() == Isa::Scalar {
            s.push_str(if s.is_empty() { "scalar" } else { " (scalar forced)" });
        }
        s
    })
}

fn scalar_dot<const ID: u32>(x: &[u8], y: &[u8]) -> f32 {
    match GgmlType::from_id(ID) {
        Ok(t) => vec_dot_scalar(t, x, y),
        Err(_) => 0.0,
    }
}

fn scalar_fn(ty: GgmlType) -> VecDotFn {
    match ty {
        GgmlType::F32 => scalar_dot::<0>,
        GgmlType::F16 => scalar_dot::<1>,
        GgmlType::Q4_0 => scalar_dot::<2>,
        GgmlType::Q4_1 => scalar_dot::<3>,
        GgmlType::Q5_0 => scalar_dot::<6>,
        GgmlType::Q5_1 => scalar_dot::<7>,
        GgmlType::Q8_0 => scalar_dot::<8>,
        GgmlType::Q8_1 => scalar_dot::<9>,
        GgmlType::Q2_K => scalar_dot::<10>,
        GgmlType::Q3_K => scalar_dot::<11>,
        GgmlType::Q4_K => scalar_dot::<12>,
        GgmlType::Q5_K => scalar_dot::<13>,
        GgmlType::Q6_K => scalar_dot::<14>,
        GgmlType::Q8_K => scalar_dot::<15>,
        GgmlType::BF16 => scalar_dot::<30>,
    }
}

/// The dot kernel for weight type `ty` on instruction set `isa`; None if that ISA has no
/// specialised kernel for the type (callers then use the scalar one).
pub fn vec_dot_fn_for(ty: GgmlType, isa: Isa) -> Option<VecDotFn> {
    match isa {
        Isa::Scalar => Some(scalar_fn(ty)),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::vec_dot_fn(ty),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::vec_dot_fn(ty).or_else(|| avx2::vec_dot_fn(ty)),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => neon::vec_dot_fn(ty),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// The multi-token tile kernel for `ty` on `isa`, if one exists.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub fn tile_fn_for(ty: GgmlType, isa: Isa) -> Option<VecDotTileFn> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::tile_fn(ty),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::tile_fn(ty),
        _ => None,
    }
}

/// The many-rows tile kernel for `ty` on `isa`, if one exists.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub fn tile_rows_fn_for(ty: GgmlType, isa: Isa) -> Option<TileRowsFn> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::tile_rows_fn(ty),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::tile_rows_fn(ty),
        _ => None,
    }
}

/// The best many-rows tile kernel for `ty` on this CPU, if any.
pub fn tile_rows_fn(ty: GgmlType) -> Option<TileRowsFn> {
    tile_rows_fn_for(ty, isa())
}

/// The many-rows mat-vec kernel for `ty` on `isa`, if one exists.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub fn matvec_rows_fn_for(ty: GgmlType, isa: Isa) -> Option<MatvecRowsFn> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::matvec_rows_fn(ty),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::matvec_rows_fn(ty),
        _ => None,
    }
}

/// The best many-rows mat-vec kernel for `ty` on this CPU, if any.
pub fn matvec_rows_fn(ty: GgmlType) -> Option<MatvecRowsFn> {
    matvec_rows_fn_for(ty, isa())
}

/// Whether `KILN_INTERLEAVE=0` turned the repacked layouts off.
pub(crate) fn repack_off() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var("KILN_INTERLEAVE").is_ok_and(|v| v == "0"))
}

/// The kernels for `ty` over super-blocks held as [`crate::repack::Layout::Transposed`] on this
/// CPU, if any: (mat-vec, tile, many-rows tile), every product such a matrix takes. AVX2 only:
/// the AVX-512 paths keep their own row-major kernels (`KILN_INTERLEAVE=0`: None everywhere).
pub fn transposed_fns(ty: GgmlType) -> Option<(MatvecRowsFn, VecDotTileFn, TileRowsFn)> {
    if repack_off() {
        return None;
    }
    match isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::transposed_fns(ty),
        _ => {
            let _ = ty;
            None
        }
    }
}

/// The mat-vec kernel for `ty` over rows held as [`crate::repack::Layout::Interleaved8`] on
/// this CPU, if any (`KILN_INTERLEAVE=0` turns the layout off: None everywhere).
pub fn matvec_rows_x8_fn(ty: GgmlType) -> Option<MatvecRowsFn> {
    if repack_off() {
        return None;
    }
    match isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::matvec_rows_x8_fn(ty),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::matvec_rows_x8_fn(ty),
        _ => {
            let _ = ty;
            None
        }
    }
}

/// The rows-as-lanes kernel for `ty` held as `layout` on this CPU, if any (AVX-512 VNNI: the
/// legacy types interleaved and Q4_K / Q6_K row-major for prefill, Q4_K / Q6_K as
/// [`crate::repack::Layout::Lanes16`] for every product; `KILN_GEMM=0` turns them off, and
/// with them that layout).
pub fn gemm_fn(ty: GgmlType, layout: crate::repack::Layout) -> Option<GemmFn> {
    if gemm_off() {
        return None;
    }
    match isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => gemm::gemm_fn(ty, layout),
        _ => {
            let _ = (ty, layout);
            None
        }
    }
}

/// Whether `KILN_GEMM=0` turned the rows-as-lanes kernels off (read once).
pub(crate) fn gemm_off() -> bool {
    static OFF: OnceLock<bool> = OnceLock::new();
    *OFF.get_or_init(|| std::env::var("KILN_GEMM").is_ok_and(|v| v == "0"))
}

/// The best dot kernel for `ty` on this CPU.
pub fn vec_dot_fn(ty: GgmlType) -> VecDotFn {
    vec_dot_fn_for(ty, isa()).unwrap_or_else(|| scalar_fn(ty))
}

/// The best tile kernel for `ty` on this CPU, if any.
pub fn tile_fn(ty: GgmlType) -> Option<VecDotTileFn> {
    tile_fn_for(ty, isa())
}
