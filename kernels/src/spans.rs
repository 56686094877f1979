//! Decode's row chunks as spans of grains. Each thread starts a decode dispatch on a chunk of
//! its own (one sequential stream, and the one `read_ahead` warmed), taking its grains from the
//! front; a thread with nothing left takes grains from the back of the chunk with the most
//! left, instead of waiting at the barrier for the slowest. On this kind of VM the two threads'
//! share of the memory bus drifts apart from one product to the next, so equal rows are not
//! equal time.
//!
//! Decode tokens/s, Zen 4, 2 threads, alternating every 4 tokens in one process between
//! stealing 64-row grains and none: synthetic 1.1B +3.6%, +0.5%, +2.8%; with 256-row grains
//! +7.1%, +7.2%, +2.9%, +1.2%; gemma3 (128- and 256-row grains) +7.7% to +12.7%, SmolLM2
//! +0.6% to +3.7%. By bytes, 128 KiB against 256 KiB grains: 1.1B −0.6%, −0.8%, gemma3 +0.9%,
//! +1.8%; so [`GRAIN_BYTES`] is between them. The gain is largest when the bus is slow and the
//! threads' rates differ most; in a fast moment it was within the noise (−1.9% to +3.6%).
use std::sync::atomic::{AtomicU64, Ordering};

/// Most chunks a dispatch shares out this way (`MAX_JOBS` × `read_ahead::MAX_THREADS`);
/// dispatches with more keep whole chunks.
pub(crate) const MAX: usize = 64;

/// Weight bytes in a grain.
pub(crate) const GRAIN_BYTES: usize = 192 << 10;

/// Rows in a grain of `rb`-byte rows, a multiple of `align` (a power of two).
pub(crate) fn grain_rows(rb: usize, align: usize) -> usize {
    (GRAIN_BYTES / rb.max(1)).max(1).next_multiple_of(align.max(1))
}

/// Per chunk, the grains not yet taken: the next from the front in the high 32 bits, one past
/// the last from the back in the low 32.
pub(crate) struct Spans {
    spans: [AtomicU64; MAX],
    n: usize,
}

impl Spans {
    /// Spans of `grains[c]` grains for chunks c; None when there are more than [`MAX`] chunks or
    /// a chunk has 2^32 grains or more.
    pub(crate) fn new(grains: impl ExactSizeIterator<Item = usize>) -> Option<Spans> {
        if grains.len() > MAX {
            return None;
        }
        let spans: [AtomicU64; MAX] = std::array::from_fn(|_| AtomicU64::new(0));
        let mut n = 0;
        for (span, g) in spans.iter().zip(grains) {
            span.store(u32::try_from(g).ok()? as u64, Ordering::Relaxed);
            n += 1;
        }
        Some(Spans { spans, n })
    }

    /// The next grain of chunk `c` from the front (its owner's end).
    pub(crate) fn take_front(&self, c: usize) -> Option<usize> {
        self.take(c, true)
    }

    /// The last grain of chunk `c` not yet taken (a helper's end).
    pub(crate) fn take_back(&self, c: usize) -> Option<usize> {
        self.take(c, false)
    }

    /// The chunk with the most grains left, if any are.
    pub(crate) fn fullest(&self) -> Option<usize> {
        (0..self.n).map(|c| (self.left(c), c)).filter(|&(l, _)| l > 0).max().map(|(_, c)| c)
    }

    fn left(&self, c: usize) -> u64 {
        let v = self.spans[c].load(Ordering::Relaxed);
        (v & 0xffff_ffff).saturating_sub(v >> 32)
    }

    fn take(&self, c: usize, front: bool) -> Option<usize> {
        let span = self.spans.get(c)?;
        let mut v = span.load(Ordering::Relaxed);
        loop {
            let (f, b) = (v >> 32, v & 0xffff_ffff);
            if f >= b {
                return None;
            }
            let (taken, nv) = if front { (f, ((f + 1) << 32) | b) } else { (b - 1, (f << 32) | (b - 1)) };
            // The rows a grain writes are published by the pool's end-of-job barrier, so the
            // claim itself needs no ordering.
            match span.compare_exchange_weak(v, nv, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some(taken as usize),
                Err(now) => v = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_and_back_meet_without_overlap() {
        let s = Spans::new([3usize, 0, 1].into_iter()).unwrap();
        assert_eq!(s.fullest(), Some(0));
        assert_eq!(s.take_back(0), Some(2));
        assert_eq!(s.take_front(0), Some(0));
        assert_eq!(s.take_front(0), Some(1));
        assert_eq!((s.take_front(0), s.take_back(0)), (None, None));
        assert_eq!(s.take_front(1), None);
        assert_eq!(s.fullest(), Some(2));
        assert_eq!(s.take_back(2), Some(0));
        assert_eq!(s.fullest(), None);
        assert_eq!(s.take_front(7), None, "a chunk past the last has no grains");
        assert!(Spans::new(std::iter::repeat_n(1, MAX + 1)).is_none());
    }

    #[test]
    fn owners_and_helpers_take_every_grain_once() {
        let grains = [1000usize, 37, 1, 500];
        let s = Spans::new(grains.iter().copied()).unwrap();
        let taken: Vec<Vec<(usize, usize)>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|t| {
                    let s = &s;
                    scope.spawn(move || {
                        let mut mine = Vec::new();
                        while let Some(g) = s.take_front(t) {
                            mine.push((t, g));
                        }
                        while let Some(c) = s.fullest() {
                            while let Some(g) = s.take_back(c) {
                                mine.push((c, g));
                            }
                        }
                        mine
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let mut all: Vec<(usize, usize)> = taken.concat();
        all.sort_unstable();
        let want: Vec<(usize, usize)> = grains.iter().enumerate().flat_map(|(c, &n)| (0..n).map(move |g| (c, g))).collect();
        assert_eq!(all, want);
    }

    #[test]
    fn grains_hold_whole_groups() {
        assert_eq!(grain_rows(1152, 16), 176);
        assert_eq!(grain_rows(1 << 20, 16), 16);
        assert_eq!(grain_rows(680, 8), 296);
        assert_eq!(grain_rows(0, 1), GRAIN_BYTES);
    }
}
