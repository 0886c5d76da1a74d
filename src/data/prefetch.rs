//! Work done ahead on worker threads and handed over in order: the batches of a run,
//! decoded while the GPU runs the steps before them. Worker `w` of `n` computes items
//! `w, w + n, w + 2n, ...`, each handed over through its own rendezvous channel, so the
//! order (and every bit of every item) is the same for any number of workers, and at
//! most one finished item per worker waits in memory.

use std::ops::Range;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use crate::error::{Error, Result};

/// The default number of workers: the machine's cores less the one that drives the
/// GPU, at least 1.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .saturating_sub(1)
        .max(1)
}

/// The results of `job(k)` for each `k` of a range, in order, computed ahead on worker
/// threads. An error ends its worker: it is handed over in its place, and nothing after
/// it.
pub struct Prefetch<T> {
    results: Vec<Receiver<Result<T>>>,
    next: u64,
    range: Range<u64>,
    threads: Vec<JoinHandle<()>>,
}

impl<T: Send + 'static> Prefetch<T> {
    /// Starts `workers` threads over `range`; each works on its own clone of `state`
    /// (say, a cache that `job` fills).
    pub fn new<S, F>(workers: usize, range: Range<u64>, state: S, job: F) -> Result<Prefetch<T>>
    where
        S: Clone + Send + 'static,
        F: Fn(&mut S, u64) -> Result<T> + Send + Sync + 'static,
    {
        if workers == 0 {
            return Err(Error::Usage("--workers 0: must be at least 1".into()));
        }
        let job = Arc::new(job);
        let stride = workers as u64;
        let mut results = Vec::with_capacity(workers);
        let mut threads = Vec::with_capacity(workers);
        for w in 0..stride {
            let (send, receive) = sync_channel(0);
            let (job, mut state, end) = (job.clone(), state.clone(), range.end);
            let first = range.start + w;
            let thread = std::thread::Builder::new()
                .name(format!("vqvae-data-{w}"))
                .spawn(move || {
                    for k in (first..end).step_by(stride as usize) {
                        let result = job(&mut state, k);
                        let failed = result.is_err();
                        // A closed channel: the reader is gone.
                        if send.send(result).is_err() || failed {
                            break;
                        }
                    }
                })
                .map_err(|e| Error::Usage(format!("cannot start a data worker thread: {e}")))?;
            results.push(receive);
            threads.push(thread);
        }
        Ok(Prefetch {
            results,
            next: range.start,
            range,
            threads,
        })
    }

    /// The `k` whose result [`Iterator::next`] gives next.
    pub fn position(&self) -> u64 {
        self.next
    }
}

impl<T> Iterator for Prefetch<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        if self.next >= self.range.end {
            return None;
        }
        let worker = ((self.next - self.range.start) % self.results.len() as u64) as usize;
        self.next += 1;
        Some(self.results[worker].recv().unwrap_or_else(|_| {
            Err(Error::Usage(
                "a data worker stopped without its result (after an earlier error)".into(),
            ))
        }))
    }
}

impl<T> Drop for Prefetch<T> {
    fn drop(&mut self) {
        // Closing the channels ends each worker at its next hand-over.
        self.results.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
