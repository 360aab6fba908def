//! Splitting work across threads: a small broadcast pool whose workers spin briefly between jobs, so
//! that the dozens of parallel regions of one forward pass start in well under a microsecond instead of
//! paying a futex wake-up each. Every job is split into contiguous balanced chunks, chunk `i` on
//! thread `i`; the caller runs chunk 0.
//!
//! One caller at a time uses the pool; a concurrent or nested call runs its chunks on the calling
//! thread (same results, no deadlock).

use std::cell::UnsafeCell;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// How long an idle worker spins before it sleeps.
const SPIN: Duration = Duration::from_micros(300);

/// The `i`-th of `parts` contiguous, balanced sub-ranges of `0..n` (sizes differ by at most one).
pub fn chunk(n: usize, parts: usize, i: usize) -> Range<usize> {
    let (q, r) = (n / parts, n % parts);
    let start = i * q + i.min(r);
    start..start + q + usize::from(i < r)
}

type Job<'a> = &'a (dyn Fn(usize) + Sync);

struct Shared {
    epoch: AtomicU64,
    /// The current job with its lifetime erased; valid while `remaining > 0` for that epoch.
    job: UnsafeCell<Option<(Job<'static>, usize)>>,
    remaining: AtomicUsize,
    panicked: AtomicBool,
    sleepers: AtomicUsize,
    shutdown: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the caller holding `Pool::busy` before it publishes a new epoch
// (SeqCst), and read by workers only after they observe that epoch; it is not written again until all
// workers have reported completion through `remaining`.
unsafe impl Sync for Shared {}

/// A pool of `threads − 1` workers plus the calling thread.
pub struct Pool {
    threads: usize,
    shared: Arc<Shared>,
    busy: Mutex<()>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({} threads)", self.threads)
    }
}

impl Pool {
    /// Starts `threads − 1` workers (`threads ≥ 1`).
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            remaining: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let handles = (1..threads)
            .map(|i| {
                let s = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("pare-worker-{i}"))
                    .spawn(move || worker(&s, i))
                    .expect("cannot start a worker thread")
            })
            .collect();
        Pool { threads, shared, busy: Mutex::new(()), handles }
    }

    /// Threads, the caller included.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f(i)` for `i in 0..parts` (`parts ≤ threads`), part `i` on thread `i`, and returns when
    /// all are done. Runs serially when the pool is in use by another caller.
    pub fn broadcast(&self, parts: usize, f: &(dyn Fn(usize) + Sync)) {
        let parts = parts.min(self.threads);
        let guard = if parts > 1 { self.busy.try_lock().ok() } else { None };
        let Some(_guard) = guard else {
            (0..parts).for_each(f);
            return;
        };
        let s = &*self.shared;
        // SAFETY: erasing the lifetime is sound because this function does not return before every
        // worker has finished with `f` (the wait on `remaining` below), and we hold `busy`.
        let job: Job<'static> = unsafe { std::mem::transmute::<Job<'_>, Job<'static>>(f) };
        // SAFETY: workers read `job` only after the epoch bump below; see `Shared`.
        unsafe { *s.job.get() = Some((job, parts)) };
        s.remaining.store(self.threads - 1, SeqCst);
        s.epoch.fetch_add(1, SeqCst);
        if s.sleepers.load(SeqCst) > 0 {
            let _l = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(0)));
        let start = Instant::now();
        let mut spins = 0u32;
        while s.remaining.load(SeqCst) != 0 {
            spins = spins.wrapping_add(1);
            if spins < 4096 || !spins.is_multiple_of(256) || start.elapsed() < SPIN {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        if let Err(p) = mine {
            std::panic::resume_unwind(p);
        }
        if s.panicked.swap(false, SeqCst) {
            panic!("a pare worker thread panicked");
        }
    }
}

fn worker(s: &Shared, index: usize) {
    let mut seen = 0u64;
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        while s.epoch.load(SeqCst) == seen && !s.shutdown.load(SeqCst) {
            std::hint::spin_loop();
            spins += 1;
            if spins.is_multiple_of(256) && start.elapsed() > SPIN {
                let mut g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
                s.sleepers.fetch_add(1, SeqCst);
                while s.epoch.load(SeqCst) == seen && !s.shutdown.load(SeqCst) {
                    g = s.wake.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                s.sleepers.fetch_sub(1, SeqCst);
            }
        }
        if s.shutdown.load(SeqCst) {
            return;
        }
        seen = s.epoch.load(SeqCst);
        // SAFETY: the caller published this job before bumping the epoch we observed, and keeps it
        // alive until `remaining` reaches zero.
        let (job, parts) = unsafe { (*s.job.get()).expect("a published job") };
        if index < parts && std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(index))).is_err() {
            s.panicked.store(true, SeqCst);
        }
        s.remaining.fetch_sub(1, SeqCst);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, SeqCst);
        {
            let _l = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

static POOL: OnceLock<RwLock<Arc<Pool>>> = OnceLock::new();

fn global() -> &'static RwLock<Arc<Pool>> {
    POOL.get_or_init(|| {
        let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        RwLock::new(Arc::new(Pool::new(n)))
    })
}

/// Sets the number of threads kernels use (default: all available cores).
pub fn set_threads(threads: usize) {
    let mut g = global().write().unwrap_or_else(|e| e.into_inner());
    if g.threads() != threads.max(1) {
        *g = Arc::new(Pool::new(threads));
    }
}

/// Threads kernels use.
pub fn threads() -> usize {
    global().read().unwrap_or_else(|e| e.into_inner()).threads()
}

/// Runs `f` on contiguous balanced chunks of `0..n`, one chunk per thread (fewer when `n` is
/// small). Chunk 0 runs on the calling thread.
pub fn for_each_chunk(n: usize, f: impl Fn(Range<usize>) + Sync) {
    let pool = Arc::clone(&global().read().unwrap_or_else(|e| e.into_inner()));
    let parts = pool.threads().min(n).max(1);
    if parts == 1 {
        f(0..n);
        return;
    }
    pool.broadcast(parts, &|i| f(chunk(n, parts, i)));
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
    use std::sync::atomic::AtomicUsize;

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

    #[test]
    fn pool_runs_every_part_once() {
        for threads in 1..5 {
            let pool = Pool::new(threads);
            for round in 0..200 {
                let hits: Vec<AtomicUsize> = (0..threads).map(|_| AtomicUsize::new(0)).collect();
                let parts = 1 + round % threads;
                pool.broadcast(parts, &|i| {
                    hits[i].fetch_add(1, SeqCst);
                });
                for (i, h) in hits.iter().enumerate() {
                    assert_eq!(h.load(SeqCst), usize::from(i < parts));
                }
                if round % 50 == 0 {
                    // Let workers fall asleep, then wake them.
                    std::thread::sleep(SPIN * 3);
                }
            }
        }
    }

    #[test]
    fn concurrent_callers_and_worker_panics() {
        let pool = Arc::new(Pool::new(3));
        let total = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (0..4)
            .map(|_| {
                let (pool, total) = (Arc::clone(&pool), Arc::clone(&total));
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        pool.broadcast(3, &|_| {
                            total.fetch_add(1, SeqCst);
                        });
                    }
                })
            })
            .collect();
        callers.into_iter().for_each(|c| c.join().unwrap());
        assert_eq!(total.load(SeqCst), 4 * 100 * 3);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.broadcast(3, &|i| assert!(i != 2, "boom"));
        }));
        assert!(r.is_err());
        // The pool still works afterwards.
        let n = AtomicUsize::new(0);
        pool.broadcast(3, &|_| {
            n.fetch_add(1, SeqCst);
        });
        assert_eq!(n.load(SeqCst), 3);
    }
}

/// A row-major matrix whose disjoint row blocks may be handed to different threads by
/// [`for_each_row_block`].
pub struct SharedRows<'a, T> {
    ptr: *mut T,
    rows: usize,
    width: usize,
    _borrow: std::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: access goes only through `Block::rows_mut`, which hands each block of rows to one thread and
// refuses to hand the same matrix out twice within a block.
unsafe impl<T: Send> Sync for SharedRows<'_, T> {}

impl<'a, T> SharedRows<'a, T> {
    /// The first `rows · width` values of `data` as `rows` rows.
    pub fn new(data: &'a mut [T], rows: usize, width: usize) -> Self {
        assert!(data.len() >= rows * width, "SharedRows: {} values for {rows}×{width}", data.len());
        SharedRows { ptr: data.as_mut_ptr(), rows, width, _borrow: std::marker::PhantomData }
    }
}

/// One thread's block of rows inside [`for_each_row_block`].
pub struct Block {
    range: Range<usize>,
    taken: std::cell::RefCell<Vec<usize>>,
}

impl Block {
    /// The rows of this block.
    pub fn range(&self) -> Range<usize> {
        self.range.clone()
    }

    /// This block's rows of `m`, exclusively. Panics if `m` was already taken in this block.
    // The exclusive borrow comes from `m`'s own `&mut` data, split by rows; the run-time check above
    // replaces what the borrow checker cannot see across threads.
    #[allow(clippy::mut_from_ref)]
    pub fn rows_mut<'b, T>(&'b self, m: &'b SharedRows<'_, T>) -> &'b mut [T] {
        let key = m.ptr as usize;
        let mut taken = self.taken.borrow_mut();
        assert!(!taken.contains(&key), "a SharedRows was taken twice in one block");
        taken.push(key);
        assert!(self.range.end <= m.rows, "block past the matrix");
        // SAFETY: blocks of one `for_each_row_block` call are disjoint row ranges and each thread gets
        // one; within a block each matrix is handed out once (checked above); the matrix borrows its
        // data mutably for 'a, which outlives the call.
        unsafe { std::slice::from_raw_parts_mut(m.ptr.add(self.range.start * m.width), self.range.len() * m.width) }
    }
}

/// Splits `0..rows` into one contiguous block per thread (block boundaries on multiples of `align`)
/// and runs `f` on each; with `parallel == false`, runs one block of all rows on the calling thread.
pub fn for_each_row_block(rows: usize, align: usize, parallel: bool, f: impl Fn(&Block) + Sync) {
    let units = rows.div_ceil(align.max(1));
    let run = |r: Range<usize>| f(&Block { range: r, taken: std::cell::RefCell::new(Vec::new()) });
    if !parallel || units < 2 {
        run(0..rows);
        return;
    }
    for_each_chunk(units, |u| run(u.start * align..(u.end * align).min(rows)));
}

#[cfg(test)]
mod block_tests {
    use super::*;

    #[test]
    fn row_blocks_cover_and_do_not_overlap() {
        set_threads(2);
        for rows in [0, 1, 7, 8, 9, 64, 129] {
            let mut data = vec![0u32; rows * 3];
            let m = SharedRows::new(&mut data, rows, 3);
            for_each_row_block(rows, 8, true, |b| {
                for v in b.rows_mut(&m) {
                    *v += 1;
                }
            });
            assert!(data.iter().all(|&v| v == 1), "rows={rows}");
        }
    }

    #[test]
    #[should_panic(expected = "taken twice")]
    fn taking_twice_panics() {
        let mut data = vec![0u32; 16];
        let m = SharedRows::new(&mut data, 4, 4);
        for_each_row_block(4, 1, false, |b| {
            let _a = b.rows_mut(&m);
            let _b = b.rows_mut(&m);
        });
    }
}
