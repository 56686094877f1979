//! Serving many requests on one model: up to `num_parallel` sequences run at once and their
//! steps share forward passes (continuous batching), so total tokens/s grows with load.
//!
//! Each iteration the worker builds one batch: one token from every decoding sequence plus
//! at most one prompt chunk of a sequence still reading its prompt. Every sequence keeps its
//! own KV cache and sampler, and the kernels compute each row independently of the others, so
//! a seeded request gives the same text alone or among others.

use std::sync::Arc;
use std::thread::JoinHandle;

use crate::error::{EngineError, Result};
use crate::generate::{GenerateOutput, GenerateRequest, Sequence, Step, TokenEvent};
use crate::model::exec::{OutputKind, Outputs, SeqInput};
use crate::model::kv::KvCache;
use crate::model::{Model, MAX_BATCH};
use crate::queue::RequestQueue;

/// What a request's sink receives, in order: tokens, then one `Done` or one `Error`.
#[derive(Debug)]
pub enum Event {
    Token(TokenEvent),
    Done(GenerateOutput),
    Error(EngineError),
}

/// Receives a request's events; returning false cancels the request (the client went away).
pub type Sink = Box<dyn FnMut(Event) -> bool + Send>;

#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    /// Sequences decoded together.
    pub num_parallel: usize,
    /// Requests waiting beyond those; more are refused with [`EngineError::QueueFull`].
    pub max_queue: usize,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions { num_parallel: 4, max_queue: 64 }
    }
}

pub struct Scheduler {
    queue: Arc<RequestQueue>,
    worker: Option<JoinHandle<()>>,
    model: Arc<Model>,
}

impl Scheduler {
    pub fn new(model: Arc<Model>, opts: SchedulerOptions) -> Scheduler {
        let queue = Arc::new(RequestQueue::new(opts.num_parallel, opts.max_queue));
        let worker = {
            let (queue, model) = (queue.clone(), model.clone());
            std::thread::Builder::new()
                .name("kiln-scheduler".into())
                .spawn(move || Worker { model, queue, active: Vec::new(), idle: Vec::new() }.run())
                .ok()
        };
        Scheduler { queue, worker, model }
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Queues a request. Fails at once when `num_parallel` run and `max_queue` wait.
    pub fn submit(&self, req: GenerateRequest, sink: Sink) -> Result<()> {
        if self.worker.is_none() {
            return Err(EngineError::Shutdown);
        }
        self.queue.submit(req, sink)
    }

    /// Sequences generating now.
    pub fn running(&self) -> usize {
        self.queue.running()
    }

    /// Requests waiting for a slot.
    pub fn queued(&self) -> usize {
        self.queue.queued()
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.queue.shut_down();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

struct Active {
    seq: Sequence,
    sink: Sink,
}

struct Worker {
    model: Arc<Model>,
    queue: Arc<RequestQueue>,
    active: Vec<Active>,
    /// Caches of finished sequences with the tokens they hold, for prefix reuse.
    idle: Vec<(KvCache, Vec<u32>)>,
}

impl Worker {
    fn run(mut self) {
        let mut logits = Vec::new();
        while self.admit() {
            if self.active.is_empty() {
                continue;
            }
            self.step(&mut logits);
            self.queue.set_running(self.active.len());
        }
        for mut a in self.active.drain(..) {
            (a.sink)(Event::Error(EngineError::Shutdown));
        }
        self.queue.fail_waiting();
    }

    /// Moves waiting requests into free slots; blocks while there is nothing to do.
    /// Returns false on shutdown.
    fn admit(&mut self) -> bool {
        let queue = self.queue.clone();
        queue.take(self.active.len(), |req, mut sink| {
            let (cache, cached) = self.take_cache(&req);
            match Sequence::new(&self.model, cache, &cached, &req) {
                Ok(seq) => {
                    self.active.push(Active { seq, sink });
                    true
                }
                Err(e) => {
                    sink(Event::Error(e));
                    false
                }
            }
        })
    }

    /// The idle cache sharing the longest prefix with the request, or a fresh one.
    fn take_cache(&mut self, req: &GenerateRequest) -> (KvCache, Vec<u32>) {
        let n_ctx = self.model.context_len(req.num_ctx);
        let best = self
            .idle
            .iter()
            .enumerate()
            .filter(|(_, (c, _))| c.capacity() == n_ctx)
            .map(|(i, (_, t))| (i, t.iter().zip(&req.prompt).take_while(|(a, b)| a == b).count()))
            .max_by_key(|&(_, shared)| shared);
        match best {
            Some((i, _)) => self.idle.swap_remove(i),
            None => (self.model.new_cache(n_ctx), Vec::new()),
        }
    }

    fn retire(&mut self, seq: Sequence) {
        self.idle.push(seq.into_cache());
        if self.idle.len() > self.queue.slots() {
            self.idle.remove(0);
        }
    }

    /// One forward pass over every decoding sequence and at most one prompt chunk.
    fn step(&mut self, logits: &mut Vec<f32>) {
        // Pick the batch: (index into active, tokens taken this step).
        let mut batch: Vec<(usize, usize)> = Vec::new();
        let mut prompt_taken = false;
        for (i, a) in self.active.iter().enumerate() {
            if !a.seq.in_prompt() {
                batch.push((i, a.seq.pending.len()));
            } else if !prompt_taken {
                prompt_taken = true;
                batch.push((i, a.seq.pending.len().min(MAX_BATCH)));
            }
        }
        logits.clear();
        let result = {
            let mut inputs: Vec<SeqInput> = Vec::with_capacity(batch.len());
            let mut rest: &mut [Active] = &mut self.active;
            let mut offset = 0;
            for &(i, n) in &batch {
                let (_, tail) = std::mem::take(&mut rest).split_at_mut(i - offset);
                let (a, tail) = tail.split_at_mut(1);
                rest = tail;
                offset = i + 1;
                let seq = &mut a[0].seq;
                inputs.push(SeqInput { cache: &mut seq.cache, tokens: &seq.pending[..n], outputs: Outputs::Last });
            }
            self.model.forward(&mut inputs, OutputKind::Logits, logits)
        };
        if let Err(e) = result {
            // The batch failed as a whole: end every sequence in it with the error.
            let msg = e.to_string();
            for &(i, _) in batch.iter().rev() {
                let mut a = self.active.swap_remove(i);
                (a.sink)(Event::Error(EngineError::InvalidRequest(msg.clone())));
            }
            return;
        }
        let n_vocab = self.model.info().n_vocab;
        let mut finished: Vec<(usize, Option<crate::generate::DoneReason>)> = Vec::new();
        for (row, &(i, n)) in batch.iter().enumerate() {
            let a = &mut self.active[i];
            a.seq.consumed(n);
            if !a.seq.pending.is_empty() {
                continue; // more prompt to read; this row's logits are not needed
            }
            let step = a.seq.accept(&self.model, &logits[row * n_vocab..(row + 1) * n_vocab]);
            match step {
                Step::Token(ev) => {
                    if !(a.sink)(Event::Token(ev)) {
                        finished.push((i, None));
                    }
                }
                Step::Done(ev, reason) => {
                    if let Some(ev) = ev {
                        (a.sink)(Event::Token(ev));
                    }
                    finished.push((i, Some(reason)));
                }
            }
        }
        finished.sort_by_key(|&(i, _)| std::cmp::Reverse(i));
        for (i, reason) in finished {
            let mut a = self.active.remove(i);
            if let Some(reason) = reason {
                (a.sink)(Event::Done(a.seq.output(reason)));
            }
            self.retire(a.seq);
        }
    }
}
