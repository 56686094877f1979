//! kiln-engine: GGUF files, model store, tokenizers, architectures and generation.
pub use kiln_kernels as kernels;

pub mod gguf;
pub mod sampling;
pub mod store;
pub mod template;
pub mod tokenizer;
