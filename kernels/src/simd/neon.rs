//! NEON (+dotprod) dot products for aarch64.
use crate::simd::VecDotFn;
use crate::types::GgmlType;

pub fn vec_dot_fn(_ty: GgmlType) -> Option<VecDotFn> {
    None
}
