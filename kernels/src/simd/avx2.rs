//! AVX2 + FMA dot products (llama.cpp `arch/x86/quants.c` style).
use crate::simd::VecDotFn;
use crate::types::GgmlType;

pub fn vec_dot_fn(_ty: GgmlType) -> Option<VecDotFn> {
    None
}
