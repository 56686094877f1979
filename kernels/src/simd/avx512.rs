//! AVX-512 (BW/VL + VNNI) dot products.
use crate::simd::{VecDotFn, VecDotTileFn};
use crate::types::GgmlType;

pub fn vec_dot_fn(_ty: GgmlType) -> Option<VecDotFn> {
    None
}

pub fn tile_fn(_ty: GgmlType) -> Option<VecDotTileFn> {
    None
}
