//! Loaded-model manager: loads a model on first use (one load at a time), gives requests a
//! [`Lease`] that keeps it loaded while they run, and unloads it `keep_alive` after the last one
//! finished (immediately for `keep_alive: 0`; never for a negative one).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use kiln_engine::store::{ModelEntry, ModelStore, StoreError};
use kiln_engine::{LoadOptions, Model, SchedulerOptions};

use crate::device::Generator;
use crate::duration::KeepAlive;
use crate::error::ApiError;
use crate::state::ServerConfig;

pub struct Loaded {
    pub entry: ModelEntry,
    pub model: Arc<Model>,
    pub generator: Generator,
    life: Mutex<Life>,
}

struct Life {
    active: usize,
    /// `None` = forever.
    expires: Option<(Instant, SystemTime)>,
}

impl Loaded {
    /// Local-time `expires_at` for `/api/ps` (about 292 years ahead when kept forever).
    pub fn expires_at(&self) -> SystemTime {
        let forever = SystemTime::now() + Duration::from_secs(292 * 365 * 24 * 3600);
        match self.life.lock() {
            Ok(l) if l.active == 0 => l.expires.map(|(_, t)| t).unwrap_or(forever),
            Ok(_) => forever.min(SystemTime::now() + Duration::from_secs(300)),
            Err(_) => SystemTime::now(),
        }
    }
}

pub struct ModelManager {
    store: ModelStore,
    config: Arc<ServerConfig>,
    loaded: Mutex<HashMap<PathBuf, Arc<Loaded>>>,
    load_lock: tokio::sync::Mutex<()>,
}

/// Holds a model loaded; dropping it starts the model's keep-alive clock.
pub struct Lease {
    pub loaded: Arc<Loaded>,
    manager: Arc<ModelManager>,
    keep_alive: KeepAlive,
}

impl std::ops::Deref for Lease {
    type Target = Loaded;
    fn deref(&self) -> &Loaded {
        &self.loaded
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let idle = match self.loaded.life.lock() {
            Ok(mut life) => {
                life.active = life.active.saturating_sub(1);
                life.expires = match self.keep_alive {
                    KeepAlive::Forever => None,
                    KeepAlive::For(d) => Some((Instant::now() + d, SystemTime::now() + d)),
                };
                life.active == 0
            }
            Err(_) => false,
        };
        if idle && self.keep_alive.is_zero() {
            self.manager.remove_if_idle(&self.loaded.entry.path);
        }
    }
}

impl ModelManager {
    pub fn new(store: ModelStore, config: Arc<ServerConfig>) -> ModelManager {
        ModelManager { store, config, loaded: Mutex::new(HashMap::new()), load_lock: tokio::sync::Mutex::new(()) }
    }

    pub fn store(&self) -> &ModelStore {
        &self.store
    }

    pub fn default_keep_alive(&self) -> KeepAlive {
        self.config.keep_alive
    }

    /// The store entry for a request's model name; `not_found` builds the endpoint's 404.
    pub fn resolve(&self, name: &str, not_found: fn(&str) -> ApiError) -> Result<ModelEntry, ApiError> {
        match self.store.resolve_name(name) {
            Ok(e) => Ok(e),
            Err(StoreError::InvalidName { .. }) => Err(ApiError::bad_request("invalid model name")),
            Err(StoreError::NotFound { .. }) => Err(not_found(name)),
            Err(e) => {
                tracing::error!(model = name, error = %e, "cannot resolve model");
                Err(ApiError::internal(format!("cannot read model {name:?}")))
            }
        }
    }

    /// Loads (if needed) and leases a model; returns the lease and the time spent loading.
    pub async fn acquire(
        self: &Arc<Self>,
        entry: &ModelEntry,
        keep_alive: KeepAlive,
    ) -> Result<(Lease, Duration), ApiError> {
        let started = Instant::now();
        self.reap();
        if let Some(l) = self.lease_loaded(entry, keep_alive) {
            return Ok((l, started.elapsed()));
        }
        let _guard = self.load_lock.lock().await;
        if let Some(l) = self.lease_loaded(entry, keep_alive) {
            return Ok((l, started.elapsed()));
        }
        let path = entry.path.clone();
        let opts = LoadOptions { threads: self.config.threads, ..Default::default() };
        let sched = SchedulerOptions { num_parallel: self.config.num_parallel, max_queue: self.config.max_queue };
        let device = self.config.device;
        tracing::info!(model = %entry.name, path = %path.display(), %device, "loading model");
        let (model, generator) = tokio::task::spawn_blocking(move || {
            let model = Model::load(&path, &opts)?;
            let generator = Generator::new(model.clone(), device, sched)?;
            Ok::<_, kiln_engine::EngineError>((model, generator))
        })
        .await
        .map_err(|e| ApiError::internal(format!("model load task failed: {e}")))?
        .map_err(|e| {
            tracing::error!(model = %entry.name, error = %e, "model load failed");
            ApiError::internal(format!("failed to load model {:?}: {e}", entry.name))
        })?;
        let loaded = Arc::new(Loaded {
            entry: entry.clone(),
            model,
            generator,
            life: Mutex::new(Life { active: 1, expires: None }),
        });
        if let Ok(mut map) = self.loaded.lock() {
            map.insert(entry.path.clone(), loaded.clone());
        }
        tracing::info!(model = %entry.name, device = %loaded.generator.device_name(), elapsed_ms = started.elapsed().as_millis() as u64, "model loaded");
        Ok((Lease { loaded, manager: self.clone(), keep_alive }, started.elapsed()))
    }

    fn lease_loaded(self: &Arc<Self>, entry: &ModelEntry, keep_alive: KeepAlive) -> Option<Lease> {
        let loaded = self.loaded.lock().ok()?.get(&entry.path)?.clone();
        loaded.life.lock().ok()?.active += 1;
        Some(Lease { loaded, manager: self.clone(), keep_alive })
    }

    /// `keep_alive: 0` with an empty prompt: unload now if idle, else as soon as it is.
    pub fn unload(&self, entry: &ModelEntry) {
        let Some(loaded) = self.loaded.lock().ok().and_then(|m| m.get(&entry.path).cloned()) else { return };
        if let Ok(mut life) = loaded.life.lock() {
            life.expires = Some((Instant::now(), SystemTime::now()));
        }
        self.remove_if_idle(&entry.path);
    }

    fn remove_if_idle(&self, path: &PathBuf) {
        if let Ok(mut map) = self.loaded.lock() {
            let idle = map.get(path).is_some_and(|l| l.life.lock().is_ok_and(|life| life.active == 0));
            if idle {
                if let Some(l) = map.remove(path) {
                    tracing::info!(model = %l.entry.name, "model unloaded");
                }
            }
        }
    }

    /// Unloads every idle model whose keep-alive has run out.
    pub fn reap(&self) {
        let now = Instant::now();
        if let Ok(mut map) = self.loaded.lock() {
            map.retain(|_, l| {
                let keep = l.life.lock().map_or(true, |life| {
                    life.active > 0 || life.expires.is_none_or(|(at, _)| at > now)
                });
                if !keep {
                    tracing::info!(model = %l.entry.name, "keep_alive expired; model unloaded");
                }
                keep
            });
        }
    }

    /// Unloads everything idle (shutdown).
    pub fn unload_all(&self) {
        if let Ok(mut map) = self.loaded.lock() {
            map.clear();
        }
    }

    pub fn loaded(&self) -> Vec<Arc<Loaded>> {
        self.loaded.lock().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// (running generations, queued generations, loaded models), summed over loaded models.
    pub fn load_stats(&self) -> (usize, usize, usize) {
        let all = self.loaded();
        let running = all.iter().map(|l| l.generator.running()).sum();
        let queued = all.iter().map(|l| l.generator.queued()).sum();
        (running, queued, all.len())
    }
}
