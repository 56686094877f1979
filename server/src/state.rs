//! Shared server state: configuration, the loaded-model manager, metrics, the shutdown flag.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::duration::KeepAlive;
use crate::metrics::Metrics;
use crate::models::ModelManager;

/// 2 MiB, axum's default (reliability D5).
pub const DEFAULT_BODY_LIMIT: usize = 2 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `--api-key` / `KILN_API_KEY`; `None` = no authentication.
    pub api_key: Option<String>,
    /// The listener is on loopback: enables the DNS-rebinding Host check.
    pub loopback: bool,
    /// Concurrent generations per loaded model (`KILN_NUM_PARALLEL`).
    pub num_parallel: usize,
    /// Waiting generations per model beyond which requests get 503 (`KILN_MAX_QUEUE`).
    pub max_queue: usize,
    pub keep_alive: KeepAlive,
    /// CORS origin patterns (built-ins plus `OLLAMA_ORIGINS`).
    pub origins: Vec<String>,
    pub body_limit: usize,
    /// Threads per model (`None` = the engine decides).
    pub threads: Option<usize>,
    /// Where generation runs (`--device` / `KILN_DEVICE`); embeddings always use the CPU.
    pub device: crate::device::Device,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            api_key: None,
            loopback: true,
            num_parallel: 4,
            max_queue: 512,
            keep_alive: KeepAlive::DEFAULT,
            origins: crate::cors::default_origins(),
            body_limit: DEFAULT_BODY_LIMIT,
            threads: None,
            device: crate::device::Device::Cpu,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<ServerConfig>,
    pub models: Arc<ModelManager>,
    pub metrics: Arc<Metrics>,
    /// Set on SIGTERM/Ctrl-C: running generations stop at their next token.
    pub shutdown: Arc<AtomicBool>,
}

impl AppState {
    pub fn new(config: ServerConfig, store: kiln_engine::store::ModelStore) -> AppState {
        let config = Arc::new(config);
        AppState {
            models: Arc::new(ModelManager::new(store, config.clone())),
            config,
            metrics: Arc::new(Metrics::default()),
            shutdown: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }
}
