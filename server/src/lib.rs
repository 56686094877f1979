//! kiln-server: the Ollama/OpenAI-compatible HTTP server and the `kiln` command line.
//!
//! [`app::app`] builds the router from an [`state::AppState`]; [`daemon::run`] serves it.

// Lets `cli/serve.rs` name `kiln_server::...` whether it is compiled here or in the binary.
extern crate self as kiln_server;

pub mod app;
pub mod auth;
pub mod cors;
pub mod daemon;
pub mod device;
pub mod duration;
pub mod embed;
pub mod error;
pub mod generate;
#[cfg(feature = "gpu")]
pub mod gpu_worker;
pub mod gotmpl;
pub mod host;
pub mod json;
pub mod metrics;
pub mod models;
pub mod ollama;
pub mod openai;
pub mod options;
pub mod prompt;
pub mod show;
pub mod state;
pub mod tags;
pub mod types;

pub use app::app;
pub use state::{AppState, ServerConfig};
