//! One model on a wgpu adapter, serving one generation at a time: a worker thread owns the
//! [`GpuSession`] and takes requests from a bounded queue, emitting the same
//! [`Event`] stream as the CPU [`kiln_engine::Scheduler`] (tokens, then one `Done` or one
//! `Error`; nothing more once the sink returned false).
//!
//! The session (its KV cache on the device) is kept between requests, so a prompt extending the
//! previous conversation reuses its cached prefix; a request asking for another context length
//! gets a new session of that size.

use std::sync::Arc;
use std::thread::JoinHandle;

use kiln_engine::gpu::{AdapterInfo, GpuModel, GpuSession};
use kiln_engine::queue::RequestQueue;
use kiln_engine::{EngineError, Event, GenerateRequest, Model, Sink};

pub struct GpuWorker {
    queue: Arc<RequestQueue>,
    adapter: AdapterInfo,
    worker: Option<JoinHandle<()>>,
}

impl GpuWorker {
    /// Uploads `model`'s weights to adapter `adapter` (None: the best one) and starts the worker.
    pub fn new(model: Arc<Model>, adapter: Option<usize>, max_queue: usize) -> Result<GpuWorker, EngineError> {
        let gpu = Arc::new(GpuModel::load(&model, adapter)?);
        let adapter = gpu.adapter().clone();
        let queue = Arc::new(RequestQueue::new(1, max_queue));
        let worker = {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name("kiln-gpu".into())
                .spawn(move || run(gpu, queue))
                .map_err(|e| EngineError::Gpu(format!("cannot start the GPU worker thread: {e}")))?
        };
        Ok(GpuWorker { queue, adapter, worker: Some(worker) })
    }

    pub fn adapter(&self) -> &AdapterInfo {
        &self.adapter
    }

    /// Queues a request. Fails at once when one runs and `max_queue` wait.
    pub fn submit(&self, req: GenerateRequest, sink: Sink) -> Result<(), EngineError> {
        self.queue.submit(req, sink)
    }

    pub fn running(&self) -> usize {
        self.queue.running()
    }

    pub fn queued(&self) -> usize {
        self.queue.queued()
    }
}

impl Drop for GpuWorker {
    fn drop(&mut self) {
        self.queue.shut_down();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn run(gpu: Arc<GpuModel>, queue: Arc<RequestQueue>) {
    let mut session: Option<GpuSession> = None;
    let mut job = None;
    while queue.take(0, |req, sink| {
        job = Some((req, sink));
        true
    }) {
        if let Some((req, mut sink)) = job.take() {
            serve(&gpu, &queue, &mut session, &req, &mut sink);
        }
        queue.set_running(0);
    }
    queue.fail_waiting();
}

/// Runs one request to its end on the (possibly re-created) session.
fn serve(gpu: &Arc<GpuModel>, queue: &RequestQueue, session: &mut Option<GpuSession>, req: &GenerateRequest, sink: &mut Sink) {
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
        if queue.is_shut_down() {
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
