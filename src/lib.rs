//! kiln: a from-scratch GGUF inference engine. This crate re-exports the engine's public API.
pub use kiln_engine::*;
