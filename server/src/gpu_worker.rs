//! One model on a wgpu adapter, serving one generation at a time: a worker thread owns the
//! [`GpuSession`] and takes requests from a bounded queue, emitting the same
//! [`Event`] stream as the CPU [`kiln_engine::Scheduler`] (tokens, then one `Done` or one
//! `Error`; nothing more once the sink returned false).
//!
//! The session (its KV cache on the device) is kept between requests, so a prompt extending the
//! previous conversation reuses its cached prefix; a request asking for another context length
//! gets a new session of that size.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use kiln_engine::gpu::{AdapterInfo, GpuModel, GpuSession};
use kiln_engine::{EngineError, Event, GenerateRequest, Model, Sink};

struct Shared {
    queue: Mutex<VecDeque<(GenerateRequest, Sink)>>,
    wake: Condvar,
    running: AtomicUsize,
    shutdown: AtomicBool,
}

pub struct GpuWorker {
    shared: Arc<Shared>,
    max_queue: usize,
    adapter: AdapterInfo,
    worker: Option<JoinHandle<()>>,
}

impl GpuWorker {
    /// Uploads `model`'s weights to adapter `adapter` (None: the best one) and starts the worker.
    pub fn new(model: Arc<Model>, adapter: Option<usize>, max_queue: usize) -> Result<GpuWorker, EngineError> {
        let gpu = Arc::new(GpuModel::load(&model, adapter)?);
        let adapter = gpu.adapter().clone();
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            wake: Condvar::new(),
            running: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
        });
        let worker = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("kiln-gpu".into())
                .spawn(move || run(gpu, shared))
                .map_err(|e| EngineError::Gpu(format!("cannot start the GPU worker thread: {e}")))?
        };
        Ok(GpuWorker { shared, max_queue, adapter, worker: Some(worker) })
    }

    pub fn adapter(&self) -> &AdapterInfo {
        &self.adapter
    }

    /// Queues a request. Fails at once when one runs and `max_queue` wait.
    pub fn submit(&self, req: GenerateRequest, sink: Sink) -> Result<(), EngineError> {
        if self.shared.shutdown.load(Ordering::SeqCst) {
            return Err(EngineError::Shutdown);
        }
        let mut q = lock(&self.shared.queue);
        let free = 1usize.saturating_sub(self.shared.running.load(Ordering::SeqCst));
        if q.len() >= self.max_queue + free {
            return Err(EngineError::QueueFull);
        }
        q.push_back((req, sink));
        self.shared.wake.notify_one();
        Ok(())
    }

    pub fn running(&self) -> usize {
        self.shared.running.load(Ordering::SeqCst)
    }

    pub fn queued(&self) -> usize {
        lock(&self.shared.queue).len()
    }
}

impl Drop for GpuWorker {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The next request, or None on shutdown. Marks it running before the queue lock is released,
/// so `submit` never sees a free slot that is not.
fn next(shared: &Shared) -> Option<(GenerateRequest, Sink)> {
    let mut q = lock(&shared.queue);
    loop {
        if shared.shutdown.load(Ordering::SeqCst) {
            return None;
        }
        if let Some(item) = q.pop_front() {
            shared.running.store(1, Ordering::SeqCst);
            return Some(item);
        }
        q = shared.wake.wait(q).unwrap_or_else(|e| e.into_inner());
    }
}

fn run(gpu: Arc<GpuModel>, shared: Arc<Shared>) {
    let mut session: Option<GpuSession> = None;
    while let Some((req, mut sink)) = next(&shared) {
        serve(&gpu, &shared, &mut session, &req, &mut sink);
        shared.running.store(0, Ordering::SeqCst);
    }
    for (_, mut sink) in lock(&shared.queue).drain(..) {
        sink(Event::Error(EngineError::Shutdown));
    }
}

/// Runs one request to its end on the (possibly re-created) session.
fn serve(gpu: &Arc<GpuModel>, shared: &Shared, session: &mut Option<GpuSession>, req: &GenerateRequest, sink: &mut Sink) {
    let n_ctx = gpu.model().context_len(req.num_ctx);
    if session.as_ref().is_none_or(|s| s.capacity() != n_ctx) {
        *session = None; // free the old KV cache before allocating the new one
        match GpuSession::new(gpu, n_ctx) {
            Ok(s) => *session = Some(s),
            Err(e) => {
                sink(Event::Error(e));
                return;
            }
        }
    }
    let Some(s) = session.as_mut() else { return };
    let (mut gone, mut stopped) = (false, false);
    let result = s.generate(req, &mut |ev| {
        if shared.shutdown.load(Ordering::SeqCst) {
            stopped = true;
            return false;
        }
        if !sink(Event::Token(ev.clone())) {
            gone = true;
            return false;
        }
        true
    });
    match result {
        // The client went away: like the Scheduler, say nothing more.
        Ok(_) if gone => {}
        Ok(_) if stopped => {
            sink(Event::Error(EngineError::Shutdown));
        }
        Ok(out) => {
            sink(Event::Done(out));
        }
        Err(e) => {
            if matches!(e, EngineError::Gpu(_)) {
                tracing::error!(error = %e, "gpu generation failed");
            }
            sink(Event::Error(e));
        }
    }
}
