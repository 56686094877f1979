//! The engine's error type: one enum, each variant naming what was wrong.
use thiserror::Error;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("cannot read model file: {0}")]
    Gguf(#[from] crate::gguf::GgufError),
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
    #[error("chat template: {0}")]
    Template(#[from] crate::template::TemplateError),
    #[error("invalid option: {0}")]
    Sampling(#[from] crate::sampling::SamplingError),
    #[error("kernel: {0}")]
    Kernel(#[from] kiln_kernels::KernelError),
    #[error("unsupported architecture {0:?} (supported: llama, gemma3)")]
    UnsupportedArchitecture(String),
    #[error("model is inconsistent: {0}")]
    BadModel(String),
    #[error("the prompt has {prompt} tokens but the context holds {ctx}; raise num_ctx or shorten the prompt")]
    ContextOverflow { prompt: usize, ctx: usize },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("gpu backend: {0}")]
    Gpu(String),
    #[error("server busy: the request queue is full")]
    QueueFull,
    #[error("the model was unloaded")]
    Shutdown,
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
