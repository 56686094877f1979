//! Hard limits applied while parsing untrusted GGUF bytes (see spec/reliability.md §5.A6).

/// Longest string value or key accepted (Ollama's `MaxStringLength`).
pub const MAX_STRING_LEN: u64 = 16 << 20;
/// Most elements in one array (Ollama's `MaxArraySize`).
pub const MAX_ARRAY_LEN: u64 = 64 << 20;
/// Deepest array-of-array nesting accepted; deeper is an error, so recursion stays shallow.
pub const MAX_ARRAY_DEPTH: usize = 4;
/// Tensor names are shorter than ggml's `GGML_MAX_NAME` (64, including the NUL).
pub const MAX_TENSOR_NAME_LEN: u64 = 63;
/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: u32 = 4;
/// Largest `general.alignment` accepted (ggml#1516's proposal).
pub const MAX_ALIGNMENT: u64 = 1 << 20;
/// GGUF's default `general.alignment`.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Fewest bytes one metadata entry can occupy: key length (8) + 1-byte key + type (4) + u8 value.
pub const MIN_KV_BYTES: u64 = 8 + 1 + 4 + 1;
/// Fewest bytes one tensor info can occupy: name length (8) + 1-byte name + n_dims (4) + one
/// dim (8) + type (4) + offset (8).
pub const MIN_TENSOR_INFO_BYTES: u64 = 8 + 1 + 4 + 8 + 4 + 8;

/// Capacity to reserve for `n` items of `T` when `budget` bytes of input are left: never more
/// than the input could describe, so a lying count cannot force a large allocation.
pub fn bounded_capacity<T>(n: u64, budget: u64) -> usize {
    let max_items = budget / (std::mem::size_of::<T>().max(1) as u64);
    usize::try_from(n.min(max_items)).unwrap_or(0)
}
