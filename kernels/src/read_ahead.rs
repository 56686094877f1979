//! Decode's read-ahead. A decode step runs the same mat-vecs in the same order every token, and
//! each thread waits at the end of each one: for the others to finish their rows, and through
//! the norms, RoPE and attention between products, while the memory bus idles. So each decode
//! dispatch records its threads' first chunks as the successor of the dispatch before it, and
//! gets back what followed it the last time: after its last chunk, thread t reads the first
//! 512 KiB of its first chunk of that dispatch ([`crate::pool::read_while_idle`], within the
//! pool's arena only), and starts that dispatch on it (`matmul`). `KILN_DECODE_READ_AHEAD` sets
//! the bytes (0 turns the reading off; thread t still starts on chunk t).
//!
//! Decode tokens/s, Zen 4, 2 threads, alternating every 4 tokens in one process between this
//! with one chunk per thread and the earlier four chunks a thread claimed in any order: synthetic
//! 1.1B +4.5%, +3.8%, +3.9% (one chunk a thread alone: +1.3%, +2.6%), gemma3 +5.2%, +3.6%,
//! SmolLM2 +9.6%, +13.4% (alone +12%). 256 KiB, 768 KiB and 1 MiB ahead did no better than
//! 512 KiB on the 1.1B (+4.8%, +2.1%, +4.0%).
use std::cell::RefCell;
use std::collections::HashMap;

/// Most pool threads the read-ahead serves (with more it is off).
pub(crate) const MAX_THREADS: usize = 16;

/// Per thread, (address, bytes) of a dispatch's first chunks; zero bytes where there is none.
pub(crate) type Firsts = [(usize, usize); MAX_THREADS];

/// For a decode dispatch on `nt` threads whose thread t starts on `firsts[t]` (address, bytes):
/// what each thread should read ahead for the dispatch that followed this one last time (zero
/// bytes where that is not known); None when the read-ahead is off or there are too many threads.
pub(crate) fn next_firsts(nt: usize, firsts: impl Iterator<Item = (usize, usize)>) -> Option<Firsts> {
    let bytes = read_ahead_bytes();
    if bytes == 0 || nt > MAX_THREADS {
        return None;
    }
    let mut mine: Firsts = [(0, 0); MAX_THREADS];
    for (m, (a, len)) in mine.iter_mut().zip(firsts.take(nt)) {
        *m = (a, len.min(bytes));
    }
    Some(SUCCESSORS.with_borrow_mut(|s| s.swap(mine)))
}

/// A dispatching thread's memory of its decode dispatches: per dispatch (keyed by the address
/// of its first chunk), the first chunks of the dispatch that followed it last time; and the
/// key of the last dispatch.
#[derive(Default)]
struct Successors {
    last: usize,
    next: HashMap<usize, Firsts>,
}

impl Successors {
    /// Most dispatches remembered (one per distinct product group of the models a thread has
    /// run); past that the memory starts over.
    const MAX: usize = 4096;

    /// Records `mine` (a dispatch's first chunks) as what followed the previous dispatch, and
    /// returns what followed this one last time (zero lengths when not known).
    fn swap(&mut self, mine: Firsts) -> Firsts {
        let key = mine[0].0;
        if self.last != 0 && self.last != key {
            if self.next.len() >= Self::MAX {
                self.next.clear();
            }
            self.next.insert(self.last, mine);
        }
        self.last = key;
        self.next.get(&key).copied().unwrap_or([(0, 0); MAX_THREADS])
    }
}

thread_local! {
    static SUCCESSORS: RefCell<Successors> = RefCell::new(Successors::default());
}

/// `KILN_DECODE_READ_AHEAD` bytes, else 512 KiB.
fn read_ahead_bytes() -> usize {
    static BYTES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BYTES.get_or_init(|| std::env::var("KILN_DECODE_READ_AHEAD").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(512 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_dispatches_learn_their_successors() {
        let firsts = |a: usize| {
            let mut f = [(0, 0); MAX_THREADS];
            f[0] = (a, 100);
            f[1] = (a + 100, 100);
            f
        };
        let mut s = Successors::default();
        // The first token: nothing is known yet.
        for a in [1000, 2000, 3000] {
            assert_eq!(s.swap(firsts(a))[0].1, 0);
        }
        // From the second on, each dispatch names the one after it (the last names the first).
        for _ in 0..3 {
            assert_eq!(s.swap(firsts(1000)), firsts(2000));
            assert_eq!(s.swap(firsts(2000)), firsts(3000));
            assert_eq!(s.swap(firsts(3000)), firsts(1000));
        }
        // A changed order is learned on its first pass.
        assert_eq!(s.swap(firsts(1000)), firsts(2000));
        assert_eq!(s.swap(firsts(3000)), firsts(1000));
        assert_eq!(s.swap(firsts(1000)), firsts(3000));
        // The memory is bounded.
        for a in 0..2 * Successors::MAX {
            s.swap(firsts(10_000 + 64 * a));
        }
        assert!(s.next.len() <= Successors::MAX);
    }
}
