//! The bounded request queue in front of a generation worker (the CPU [`crate::Scheduler`],
//! the server's GPU worker): submit from any thread, the worker takes requests into free slots.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::error::{EngineError, Result};
use crate::generate::GenerateRequest;
use crate::scheduler::{Event, Sink};

pub struct RequestQueue {
    waiting: Mutex<VecDeque<(GenerateRequest, Sink)>>,
    wake: Condvar,
    running: AtomicUsize,
    shutdown: AtomicBool,
    slots: usize,
    max_queue: usize,
}

impl RequestQueue {
    /// A queue for a worker running up to `slots` requests, with `max_queue` more waiting.
    pub fn new(slots: usize, max_queue: usize) -> RequestQueue {
        RequestQueue {
            waiting: Mutex::new(VecDeque::new()),
            wake: Condvar::new(),
            running: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            slots: slots.max(1),
            max_queue,
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<(GenerateRequest, Sink)>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a request; fails at once when every slot runs and `max_queue` wait.
    pub fn submit(&self, req: GenerateRequest, sink: Sink) -> Result<()> {
        if self.is_shut_down() {
            return Err(EngineError::Shutdown);
        }
        let mut q = self.lock();
        let free = self.slots.saturating_sub(self.running());
        if q.len() >= self.max_queue + free {
            return Err(EngineError::QueueFull);
        }
        q.push_back((req, sink));
        self.wake.notify_one();
        Ok(())
    }

    /// Requests running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Requests waiting for a slot.
    pub fn queued(&self) -> usize {
        self.lock().len()
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Hands waiting requests to `admit` while `running` + admitted < slots. With `running`
    /// at 0 it first blocks until a request arrives. Returns false on shutdown. The running
    /// count is updated under the queue lock, so `submit` never counts a slot that is taken.
    pub fn take(&self, running: usize, mut admit: impl FnMut(GenerateRequest, Sink) -> bool) -> bool {
        let mut q = self.lock();
        loop {
            if self.is_shut_down() {
                return false;
            }
            if running > 0 || !q.is_empty() {
                break;
            }
            q = self.wake.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        let mut n = running;
        while n < self.slots {
            let Some((req, sink)) = q.pop_front() else { break };
            if admit(req, sink) {
                n += 1;
            }
        }
        self.running.store(n, Ordering::SeqCst);
        true
    }

    /// Records how many requests the worker runs now.
    pub fn set_running(&self, n: usize) {
        self.running.store(n, Ordering::SeqCst);
    }

    /// Stops the queue: `take` returns false, `submit` refuses.
    pub fn shut_down(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        let _q = self.lock();
        self.wake.notify_all();
    }

    pub fn is_shut_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Ends every waiting request with [`EngineError::Shutdown`].
    pub fn fail_waiting(&self) {
        for (_, mut sink) in self.lock().drain(..) {
            sink(Event::Error(EngineError::Shutdown));
        }
    }
}
