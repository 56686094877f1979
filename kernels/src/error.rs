//! Errors returned by the kernel crate.
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KernelError {
    /// A GGUF tensor uses a ggml type id this crate cannot compute with.
    #[error("unsupported ggml tensor type id {id}{}", name.map(|n| format!(" ({n})")).unwrap_or_default())]
    UnsupportedType { id: u32, name: Option<&'static str> },
    /// The operation is not defined for this type (e.g. quantizing to an activation-only format).
    #[error("operation {op} is not supported for type {ty}")]
    UnsupportedOp { op: &'static str, ty: &'static str },
    /// A row length is not a multiple of the type's block size.
    #[error("{ty}: {n} elements is not a multiple of the block size {block}")]
    BadRowLength { ty: &'static str, n: usize, block: usize },
    /// A byte or element buffer has the wrong length.
    #[error("{what}: expected {expected} got {got}")]
    BadLength { what: &'static str, expected: usize, got: usize },
}
