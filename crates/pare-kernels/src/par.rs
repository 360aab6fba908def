//! Splitting work across the threads of the current rayon pool, in contiguous balanced chunks.

use std::ops::Range;

/// Threads of the current rayon pool (the caller's `ThreadPool::install`, or the global pool).
pub fn threads() -> usize {
    rayon::current_num_threads()
}

/// The `i`-th of `parts` contiguous, balanced sub-ranges of `0..n` (sizes differ by at most one).
pub fn chunk(n: usize, parts: usize, i: usize) -> Range<usize> {
    let (q, r) = (n / parts, n % parts);
    let start = i * q + i.min(r);
    start..start + q + usize::from(i < r)
}

/// Runs `f` on contiguous chunks of `0..n`, one chunk per thread (fewer when `n` is small),
/// on the current rayon pool. Chunk 0 runs on the calling thread.
pub fn for_each_chunk(n: usize, f: impl Fn(Range<usize>) + Sync) {
    let parts = threads().min(n).max(1);
    if parts == 1 {
        f(0..n);
        return;
    }
    let f = &f;
    rayon::scope(|s| {
        for i in 1..parts {
            s.spawn(move |_| f(chunk(n, parts, i)));
        }
        f(chunk(n, parts, 0));
    });
}

/// A raw pointer that may cross threads. Users guarantee that concurrent accesses are disjoint.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(pub *mut T);
// SAFETY: only used to hand out disjoint regions of one buffer to the chunks of `for_each_chunk`.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer (a method, so closures capture the whole `Send` wrapper, not the raw field).
    #[inline]
    pub fn get(self) -> *mut T {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_exactly() {
        for n in 0..40 {
            for parts in 1..6 {
                let mut next = 0;
                for i in 0..parts {
                    let r = chunk(n, parts, i);
                    assert_eq!(r.start, next);
                    assert!(r.len() <= n / parts + 1);
                    next = r.end;
                }
                assert_eq!(next, n);
            }
        }
    }
}
