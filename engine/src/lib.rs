//! kiln-engine: GGUF files, model store, tokenizers, architectures and generation.
//!
//! ```no_run
//! use kiln_engine::{GenerateRequest, LoadOptions, Model, Session};
//! use kiln_engine::sampling::SamplerConfig;
//!
//! let model = Model::load("gemma-3-270m-q4_k_m.gguf", &LoadOptions::default())?;
//! let prompt = model.tokenize("The capital of France is", false)?;
//! let mut session = Session::new(model.clone());
//! let req = GenerateRequest { prompt, sampling: SamplerConfig::greedy(), num_predict: Some(16), ..Default::default() };
//! let out = session.generate(&req, &mut |tok| { print!("{}", tok.text); true })?;
//! println!("\n{} tokens, {:?}", out.eval_count, out.done_reason);
//! # Ok::<(), kiln_engine::EngineError>(())
//! ```
pub use kiln_kernels as kernels;

pub mod arch;
pub mod bench;
pub mod error;
pub mod generate;
#[cfg(feature = "gpu")] pub mod gpu;
pub mod gguf;
pub mod model;
pub mod queue;
pub mod sampling;
pub mod scheduler;
pub mod store;
pub mod template;
pub mod tokenizer;

pub use error::EngineError;
pub use generate::{DoneReason, GenerateOutput, GenerateRequest, Sequence, Session, TokenEvent};
pub use gguf::WeightMemory;
pub use model::{LoadOptions, Model, ModelInfo, WeightStream};
pub use scheduler::{Event, Scheduler, SchedulerOptions, Sink};
