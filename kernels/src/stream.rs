//! A decode step's weight traffic without its arithmetic: how fast this machine's memory
//! delivers the bytes a token reads, in the order and with the barriers the engine reads them,
//! measured in the same moments as decode itself (`kiln bench --stream`).
//!
//! Decode is bound by memory, and on a VM the memory's speed changes from one second to the
//! next, so a bandwidth probe run minutes apart says little about one decode run. [`record`]
//! notes the weight bytes of every dispatch [`crate::matmul_q_many`] makes while a closure runs
//! (a dispatch is the products that share one barrier: Q, K and V; gate and up; ...); [`read`]
//! reads those bytes again, dispatch by dispatch, each split evenly over the pool's threads,
//! one load per 64-byte line and no arithmetic. Timed alternately with real decode steps, its
//! rate is the ceiling of a step on this engine's structure at that moment: the same bytes and
//! the same barriers, with nothing computed and nothing in between.
use crate::pool::ThreadPool;
use std::cell::RefCell;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

/// One dispatch's weights as (address, bytes), one entry per product.
pub type Dispatch = Vec<(usize, usize)>;

/// Bytes a load of [`read`] stands for: one cache line.
pub const LINE: usize = 64;

thread_local! {
    /// The dispatches of the [`record`] running on this thread, if one is.
    static LOG: RefCell<Option<Vec<Dispatch>>> = const { RefCell::new(None) };
}

/// Runs `f` and returns, beside its result, the weights of every dispatch that this thread made
/// through [`crate::matmul_q_many`] meanwhile, in order. Records nest: an inner one takes its
/// own dispatches, and the outer one goes on afterwards.
pub fn record<R>(f: impl FnOnce() -> R) -> (R, Vec<Dispatch>) {
    /// Puts the outer record back, also when `f` panics.
    struct Restore(Option<Option<Vec<Dispatch>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(outer) = self.0.take() {
                LOG.set(outer);
            }
        }
    }
    let restore = Restore(Some(LOG.replace(Some(Vec::new()))));
    let r = f();
    let log = LOG.take().unwrap_or_default();
    drop(restore);
    (r, log)
}

/// Notes one dispatch's weights if a [`record`] is running on this thread.
pub(crate) fn note<'a>(weights: impl Iterator<Item = &'a [u8]>) {
    LOG.with_borrow_mut(|log| {
        if let Some(log) = log {
            log.push(weights.map(|w| (w.as_ptr() as usize, w.len())).collect());
        }
    });
}

/// A dispatch's products as byte ranges of one arena (the model's data).
pub type Ranges = Vec<Range<usize>>;

/// The recorded dispatches as byte ranges of `arena`, or None where one lies outside it.
pub fn within(arena: &[u8], dispatches: &[Dispatch]) -> Option<Vec<Ranges>> {
    let base = arena.as_ptr() as usize;
    let range = |&(a, n): &(usize, usize)| {
        let at = a.checked_sub(base)?;
        let end = at.checked_add(n)?;
        (end <= arena.len()).then_some(at..end)
    };
    dispatches.iter().map(|d| d.iter().map(range).collect()).collect()
}

/// Reads every dispatch's bytes of `arena` once on `pool`, one dispatch after the other: the
/// lines of a dispatch (line i of a range is its bytes from 64·i) are cut into one contiguous
/// run per thread, and each line is read with one load of up to 8 bytes. Returns the xor of
/// those words (little-endian, zero-padded where a range ends inside them), which [`checksum`]
/// gives too, so that no load can be left out. Ranges outside `arena` read as empty.
pub fn read(pool: &ThreadPool, arena: &[u8], dispatches: &[Ranges]) -> u64 {
    let bytes = |r: &Range<usize>| arena.get(r.clone()).unwrap_or_default();
    let all = AtomicU64::new(0);
    for d in dispatches {
        let lines: usize = d.iter().map(|r| bytes(r).len().div_ceil(LINE)).sum();
        if lines == 0 {
            continue;
        }
        pool.run(|t, nt| {
            let (mut l0, mut l1) = (lines * t / nt, lines * (t + 1) / nt);
            let mut x = 0u64;
            for s in d.iter().map(bytes) {
                let n = s.len().div_ceil(LINE);
                if l0 < n && l0 < l1 {
                    let end = n.min(l1);
                    x ^= lines_xor(&s[l0 * LINE..s.len().min(end * LINE)]);
                }
                l0 = l0.saturating_sub(n);
                l1 = l1.saturating_sub(n);
            }
            all.fetch_xor(x, Ordering::Relaxed);
        });
    }
    all.into_inner()
}

/// What [`read`] returns, computed on one thread.
pub fn checksum(arena: &[u8], dispatches: &[Ranges]) -> u64 {
    dispatches.iter().flatten().fold(0, |x, r| x ^ lines_xor(arena.get(r.clone()).unwrap_or_default()))
}

/// The xor of the first (up to) 8 bytes of each 64-byte line of `s`.
#[inline]
fn lines_xor(s: &[u8]) -> u64 {
    s.chunks(LINE).fold(0, |x, line| {
        x ^ match line.first_chunk::<8>() {
            Some(w) => u64::from_le_bytes(*w),
            None => line.iter().rev().fold(0, |w, &b| (w << 8) | b as u64),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{matmul_q_many, GgmlType, MatmulJob, QMatrix, QuantizedActs};

    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn every_line_is_read_once_whatever_the_threads() {
        let a = bytes(64 * 1000 + 37, 1);
        // Ranges that start and end inside lines, one shorter than a word, and an empty one.
        let d: Vec<Ranges> = vec![vec![5..64 * 300 + 11, 64 * 300 + 11..64 * 300 + 14], vec![], vec![0..0, 64 * 301..a.len()]];
        let want = checksum(&a, &d);
        assert_ne!(want, 0);
        for nt in 1..=5 {
            let pool = ThreadPool::new(nt);
            assert_eq!(read(&pool, &a, &d), want, "{nt} threads");
        }
        // A line read twice, or one left out, would change the xor.
        let mut extra = d.clone();
        extra[1].push(64 * 7..64 * 8);
        assert_ne!(checksum(&a, &extra), want);
        // A 3-byte slice is its bytes, little-endian.
        assert_eq!(lines_xor(&[1, 2, 3]), 0x030201);
    }

    #[test]
    fn records_each_dispatch_and_nests() {
        let pool = ThreadPool::new(2);
        let (rows, cols) = (32, 256);
        let ty = GgmlType::Q8_0;
        let w1 = bytes(rows * ty.row_bytes(cols).unwrap(), 2);
        let w2 = bytes(rows * ty.row_bytes(cols).unwrap(), 3);
        let x = vec![0.5f32; cols];
        let mut qx = QuantizedActs::new();
        qx.quantize(&pool, ty.vec_dot_type(), &x, 1, cols);
        let (mut y1, mut y2) = (vec![0f32; rows], vec![0f32; rows]);
        let m1 = QMatrix::new(ty, &w1, rows, cols).unwrap();
        let m2 = QMatrix::new(ty, &w2, rows, cols).unwrap();
        let ((), outer) = record(|| {
            matmul_q_many(&pool, &mut [MatmulJob { w: m1, qx: &qx, y: &mut y1 }, MatmulJob { w: m2, qx: &qx, y: &mut y2 }], 1);
            let ((), inner) = record(|| matmul_q_many(&pool, &mut [MatmulJob { w: m2, qx: &qx, y: &mut y2 }], 1));
            assert_eq!(inner, vec![vec![(w2.as_ptr() as usize, w2.len())]]);
            matmul_q_many(&pool, &mut [MatmulJob { w: m1, qx: &qx, y: &mut y1 }], 1);
        });
        let (p1, p2) = ((w1.as_ptr() as usize, w1.len()), (w2.as_ptr() as usize, w2.len()));
        assert_eq!(outer, vec![vec![p1, p2], vec![p1]]);
        // Nothing is noted outside a record.
        matmul_q_many(&pool, &mut [MatmulJob { w: m1, qx: &qx, y: &mut y1 }], 1);
        assert!(LOG.with_borrow(|l| l.is_none()));
        // Ranges map back into the buffer that holds them, and nowhere else.
        let got = within(&w1, &outer[1..]).unwrap();
        assert_eq!(got[0][0], 0..w1.len());
        assert!(within(&w1, &outer).is_none());
    }
}
