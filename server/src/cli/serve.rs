//! `kiln serve`: the Ollama-compatible HTTP server.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use kiln_server::device::{self, Device};
use kiln_server::duration::{self, KeepAlive};
use kiln_server::state::{ServerConfig, DEFAULT_BODY_LIMIT};
use kiln_server::{cors, daemon, host, AppState};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// Address to listen on (`host`, `host:port`, `:port`, `http://host:port`).
    /// Falls back to KILN_HOST, then OLLAMA_HOST, then 127.0.0.1:11434.
    #[arg(long)]
    pub host: Option<String>,
    /// Require `Authorization: Bearer <key>` on every route but `GET /`.
    #[arg(long, env = "KILN_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Concurrent generations per loaded model.
    #[arg(long, env = "KILN_NUM_PARALLEL", default_value_t = 4)]
    pub num_parallel: usize,
    /// Waiting generations per model beyond which requests get 503.
    #[arg(long, env = "KILN_MAX_QUEUE", default_value_t = 512)]
    pub max_queue: usize,
    /// How long an idle model stays loaded (`5m`, `1h`, `0`, `-1` = forever). Falls back to
    /// OLLAMA_KEEP_ALIVE, then 5m.
    #[arg(long, env = "KILN_KEEP_ALIVE")]
    pub keep_alive: Option<String>,
    /// Compute threads per model (default: the engine's choice).
    #[arg(long, env = "KILN_THREADS")]
    pub threads: Option<usize>,
    /// Where generation runs: cpu, gpu (best adapter) or gpu:N (`kiln show --devices`).
    /// On a GPU each model generates one request at a time; embeddings stay on the CPU.
    #[arg(long, env = "KILN_DEVICE", default_value = "cpu")]
    pub device: Device,
    /// Model directory; filled from the global `--models` / KILN_MODELS by `main`.
    #[arg(skip)]
    pub models: Option<PathBuf>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=info")),
        )
        .try_init();

    let host_spec = args.host.clone().or_else(|| env("KILN_HOST")).or_else(|| env("OLLAMA_HOST")).unwrap_or_default();
    let addr: SocketAddr = host::parse_host(&host_spec).map_err(anyhow::Error::msg)?;
    let keep_alive = match args.keep_alive.clone().or_else(|| env("OLLAMA_KEEP_ALIVE")) {
        Some(s) => duration::parse_env(&s).map_err(anyhow::Error::msg).context("invalid keep-alive")?,
        None => KeepAlive::DEFAULT,
    };
    let store = match &args.models {
        Some(dir) => kiln_engine::store::ModelStore::with_models_dir(dir.clone()),
        None => kiln_engine::store::ModelStore::from_env(),
    };
    let config = ServerConfig {
        api_key: args.api_key.clone().filter(|k| !k.is_empty()),
        loopback: addr.ip().is_loopback(),
        num_parallel: args.num_parallel.max(1),
        max_queue: args.max_queue,
        keep_alive,
        origins: cors::origins_from(env("OLLAMA_ORIGINS").as_deref()),
        body_limit: DEFAULT_BODY_LIMIT,
        threads: args.threads,
        device: args.device,
    };
    // Fails here, before listening, without the `gpu` feature or without the adapter.
    let compute = device::describe(config.device).map_err(anyhow::Error::msg)?;

    tracing::info!(models = %store.root().display(), "model store");
    match store.list() {
        Ok(list) => {
            for m in &list {
                tracing::info!(name = %m.name, path = %m.path.display(), size = m.size, "model available");
            }
            if list.is_empty() {
                tracing::warn!("no models found; put .gguf files in {}", store.root().display());
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot list models"),
    }
    let num_parallel = if config.device == Device::Cpu { config.num_parallel } else { 1 };
    tracing::info!(
        device = %config.device,
        num_parallel,
        max_queue = config.max_queue,
        keep_alive = ?config.keep_alive,
        "compute: {compute}"
    );
    if config.device != Device::Cpu {
        tracing::info!("embeddings (/api/embed, /v1/embeddings) run on the CPU");
    }
    if config.api_key.is_none() && !config.loopback {
        tracing::warn!(
            "!!! listening on {addr}, a non-loopback address, WITHOUT an API key: anyone who can reach \
             this port can use every model. Set --api-key or KILN_API_KEY. !!!"
        );
    }
    let state = AppState::new(config, store);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        tracing::info!("kiln {} listening on http://{addr}", env!("CARGO_PKG_VERSION"));
        daemon::run(listener, state, daemon::DEFAULT_GRACE).await?;
        tracing::info!("stopped");
        Ok(())
    })
}
