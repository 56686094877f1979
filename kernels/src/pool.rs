//! A persistent thread pool for per-op parallelism: workers spin briefly between ops and park
//! after that, so the ~200 small mat-vecs of a decode step pay no thread hand-off (spec §2.6).
use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;

/// How many spin iterations a worker waits for the next job before parking.
const SPIN_ITERS: u32 = 1 << 16;

/// Cache lines a waiting thread reads per spin iteration (see [`read_while_idle`]).
const IDLE_LINES: usize = 8;

thread_local! {
    /// This thread's bytes to read while it waits in a pool: (next address, end address).
    static IDLE_READ: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// Asks the calling thread to read `len` bytes from `start` (into its caches) the next time it
/// waits in its pool: a worker between its job and the next, the dispatching thread while the
/// others finish. A decode step's mat-vecs read memory only while they run; between them, and
/// while one thread finishes its last rows, the memory bus idles, and this spends that time on
/// the bytes the thread will multiply next. The bytes are read only where they lie inside the
/// pool's arena ([`ThreadPool::allow_idle_reads`]), so a stale or wrong guess costs bandwidth
/// and nothing else; a thread drops what it has not read when it takes its next job.
///
/// Loads, not prefetch instructions: reading 512 KiB ahead this way made the synthetic 1.1B
/// decode 2.5% faster, while `prefetcht0` / `prefetcht1` over the same lines changed nothing
/// (Zen 4, see `read_ahead`), presumably dropped once the miss buffers are full.
pub fn read_while_idle(start: *const u8, len: usize) {
    let a = start as usize;
    IDLE_READ.set((a, a.saturating_add(len)));
}

/// One spin iteration's share of [`read_while_idle`]; false when there is nothing to read.
#[inline]
fn idle_read_step(s: &Shared) -> bool {
    let (a, end) = IDLE_READ.get();
    if a >= end {
        return false;
    }
    let inside = s.arena.get().is_some_and(|&(lo, hi)| lo <= a && end <= hi);
    if !inside {
        IDLE_READ.set((0, 0));
        return false;
    }
    let stop = (a + 64 * IDLE_LINES).min(end);
    let mut p = a;
    let mut x = 0u8;
    while p < stop {
        // SAFETY: p lies inside the arena, which `allow_idle_reads`' caller keeps readable
        // while the pool lives (and this thread belongs to it, or is inside its `run`).
        x ^= unsafe { std::ptr::read_volatile(p as *const u8) };
        p += 64;
    }
    std::hint::black_box(x);
    IDLE_READ.set((stop, end));
    true
}

type Job = dyn Fn(usize, usize) + Sync;

struct Shared {
    /// Lifetime-erased pointer to the current job; written by `run` before `generation` is bumped,
    /// valid until `remaining` drops to zero (run does not return earlier).
    job: UnsafeCell<Option<*const Job>>,
    generation: AtomicUsize,
    remaining: AtomicUsize,
    panicked: AtomicBool,
    shutdown: AtomicBool,
    sleepers: AtomicUsize,
    /// Addresses [start, end) idle threads may read ([`ThreadPool::allow_idle_reads`]).
    arena: OnceLock<(usize, usize)>,
    lock: Mutex<()>,
    wake: Condvar,
    n_threads: usize,
}

// The raw job pointer is only dereferenced between the Release bump of `generation` and the
// completion count reaching zero, during which `run` keeps the closure alive.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

pub struct ThreadPool {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
    /// Serializes `run` calls from different threads.
    run_lock: Mutex<()>,
}

impl ThreadPool {
    /// A pool of `n_threads` (>= 1) including the calling thread.
    pub fn new(n_threads: usize) -> ThreadPool {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            job: UnsafeCell::new(None),
            generation: AtomicUsize::new(0),
            remaining: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            arena: OnceLock::new(),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            n_threads,
        });
        let handles = (1..n_threads)
            .filter_map(|ith| {
                let s = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("kiln-worker-{ith}"))
                    .spawn(move || worker(s, ith))
                    .ok()
            })
            .collect::<Vec<_>>();
        // If spawning failed (resource limits) shrink to the threads we actually have.
        if handles.len() + 1 != n_threads {
            let n = handles.len() + 1;
            drop(handles);
            return ThreadPool::new_exact_fallback(shared, n);
        }
        ThreadPool { shared, handles, run_lock: Mutex::new(()) }
    }

    fn new_exact_fallback(old: Arc<Shared>, _n: usize) -> ThreadPool {
        old.shutdown.store(true, Ordering::Release);
        old.generation.fetch_add(1, Ordering::Release);
        old.wake.notify_all();
        ThreadPool::new(1)
    }

    /// Threads from `KILN_THREADS`, else the number of physical cores.
    pub fn default_threads() -> usize {
        if let Some(n) = std::env::var("KILN_THREADS").ok().and_then(|v| v.trim().parse::<usize>().ok()) {
            if n > 0 {
                return n;
            }
        }
        physical_cores()
    }

    pub fn n_threads(&self) -> usize {
        self.shared.n_threads
    }

    /// Lets this pool's threads read `arena` while they wait (see [`read_while_idle`]). A pool
    /// has one arena, set once (so a waiting thread never sees half of one): a later call
    /// changes nothing and returns false.
    ///
    /// # Safety
    /// `arena` must stay readable (mapped, not freed) until this pool is dropped: a worker may
    /// be reading it at any time until then.
    pub unsafe fn allow_idle_reads(&self, arena: &[u8]) -> bool {
        let a = arena.as_ptr() as usize;
        self.shared.arena.set((a, a + arena.len())).is_ok()
    }

    /// Runs f(thread_index, n_threads) on every thread (the caller is thread 0) and returns when
    /// all finished. A panic in any thread is re-raised here.
    pub fn run<F: Fn(usize, usize) + Sync>(&self, f: F) {
        let n = self.shared.n_threads;
        if n == 1 {
            f(0, 1);
            return;
        }
        let _guard = self.run_lock.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        let job: &(dyn Fn(usize, usize) + Sync + '_) = &f;
        // SAFETY: erase the lifetime; workers use the pointer only until `remaining` hits 0,
        // and we wait for that below before `f` goes out of scope.
        let job: *const Job = unsafe { std::mem::transmute::<&(dyn Fn(usize, usize) + Sync + '_), &'static Job>(job) };
        unsafe { *s.job.get() = Some(job) };
        s.remaining.store(n - 1, Ordering::Relaxed);
        // SeqCst pairs with the worker's sleepers-increment-then-generation-load (Dekker style).
        s.generation.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _l = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        IDLE_READ.set((0, 0));
        let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(0, n)));
        let mut spins = 0u32;
        while s.remaining.load(Ordering::Acquire) != 0 {
            if idle_read_step(s) {
                continue;
            }
            spins += 1;
            if spins < SPIN_ITERS {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        unsafe { *s.job.get() = None };
        IDLE_READ.set((0, 0));
        if let Err(p) = mine {
            std::panic::resume_unwind(p);
        }
        if s.panicked.swap(false, Ordering::AcqRel) {
            panic!("a kiln worker thread panicked");
        }
    }
}

fn worker(s: Arc<Shared>, ith: usize) {
    // Generation 0 is "no job yet"; starting from the constant (not a load) means a job posted
    // before this thread got scheduled is still seen.
    let mut seen = 0;
    loop {
        let mut spins = 0u32;
        let mut gen = s.generation.load(Ordering::Acquire);
        while gen == seen {
            if idle_read_step(&s) {
                gen = s.generation.load(Ordering::Acquire);
                continue;
            }
            spins += 1;
            if spins < SPIN_ITERS {
                std::hint::spin_loop();
            } else {
                let mut l = s.lock.lock().unwrap_or_else(|e| e.into_inner());
                s.sleepers.fetch_add(1, Ordering::SeqCst);
                loop {
                    gen = s.generation.load(Ordering::SeqCst);
                    if gen != seen {
                        break;
                    }
                    l = s.wake.wait(l).unwrap_or_else(|e| e.into_inner());
                }
                s.sleepers.fetch_sub(1, Ordering::AcqRel);
                break;
            }
            gen = s.generation.load(Ordering::Acquire);
        }
        seen = gen;
        if s.shutdown.load(Ordering::Acquire) {
            return;
        }
        IDLE_READ.set((0, 0));
        // SAFETY: see `Shared::job`.
        if let Some(job) = unsafe { *s.job.get() } {
            let f = unsafe { &*job };
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(ith, s.n_threads))).is_err() {
                s.panicked.store(true, Ordering::Release);
            }
        }
        s.remaining.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        {
            let _l = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.generation.fetch_add(1, Ordering::Release);
            self.shared.wake.notify_all();
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Distinct (physical id, core id) pairs from /proc/cpuinfo; falls back to the logical count.
fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else { return logical };
    let mut pairs = std::collections::HashSet::new();
    let mut phys = String::new();
    for line in info.lines() {
        let mut kv = line.splitn(2, ':').map(str::trim);
        match (kv.next(), kv.next()) {
            (Some("physical id"), Some(v)) => phys = v.to_string(),
            (Some("core id"), Some(v)) => {
                pairs.insert((phys.clone(), v.to_string()));
            }
            _ => {}
        }
    }
    if pairs.is_empty() {
        logical
    } else {
        pairs.len().min(logical)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_thread_runs_once_per_call() {
        let pool = ThreadPool::new(3);
        let hits = [AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0)];
        for _ in 0..1000 {
            pool.run(|i, n| {
                assert_eq!(n, 3);
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
        }
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1000));
    }

    #[test]
    fn parked_workers_wake_up() {
        let pool = ThreadPool::new(2);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let c = AtomicUsize::new(0);
        pool.run(|_, _| {
            c.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(c.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn idle_reads_stay_inside_the_arena() {
        let pool = ThreadPool::new(2);
        let arena = vec![7u8; 1 << 20];
        // SAFETY: the pool is dropped (its workers joined) before `arena`, below.
        unsafe { pool.allow_idle_reads(&arena) };
        let c = AtomicUsize::new(0);
        for round in 0..200 {
            pool.run(|t, _| {
                // Odd rounds ask for addresses nothing maps (page 1): read, they would crash
                // the test. Even rounds ask for the arena, which is read.
                if round % 2 == 1 {
                    read_while_idle((4096 + 64 * t) as *const u8, 1 << 16);
                } else {
                    read_while_idle(arena[(t << 16)..].as_ptr(), 1 << 16);
                }
                c.fetch_add(1, Ordering::Relaxed);
            });
        }
        assert_eq!(c.load(Ordering::Relaxed), 400);
        // A region the calling thread did not finish is dropped when its `run` returns.
        assert_eq!(IDLE_READ.get(), (0, 0));
        drop(pool);
        drop(arena);
    }

    #[test]
    fn worker_panic_reaches_caller() {
        let pool = ThreadPool::new(2);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.run(|i, _| assert!(i == 0))));
        assert!(r.is_err());
        let c = AtomicUsize::new(0);
        pool.run(|_, _| {
            c.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(c.load(Ordering::Relaxed), 2);
    }
}
