//! A value owned by one OS thread, reached from async code by request and reply.
//!
//! Blocking work (an SQLite write waiting for its fsync, an I2C transfer) must never run on a
//! tokio worker: the worker would starve every other task. So the value that does it lives on
//! a thread of its own; a caller sends it a job over a channel and awaits the answer on a
//! oneshot. Jobs run one at a time, in the order they were sent.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;

use tokio::sync::oneshot;

type Job<S> = Box<dyn FnOnce(&mut S) + Send>;

/// The worker thread stopped (it cannot: a panicking job is caught; only at shutdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the worker thread has stopped")]
pub struct WorkerGone;

/// Handle on a thread that owns an `S`; clones share the thread.
pub struct Worker<S> {
    jobs: mpsc::Sender<Job<S>>,
}

impl<S> Clone for Worker<S> {
    fn clone(&self) -> Self {
        Worker {
            jobs: self.jobs.clone(),
        }
    }
}

impl<S> std::fmt::Debug for Worker<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").finish_non_exhaustive()
    }
}

impl<S: Send + 'static> Worker<S> {
    /// Starts a thread named `name` that owns `state` until every handle is dropped.
    pub fn spawn(name: &str, mut state: S) -> std::io::Result<Worker<S>> {
        let (jobs, rx) = mpsc::channel::<Job<S>>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                for job in rx {
                    // A panicking job must not take the thread down with it; its caller sees
                    // the reply channel dropped.
                    if std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut state))).is_err() {
                        tracing::error!(thread = ?std::thread::current().name(), "a job panicked");
                    }
                }
            })?;
        Ok(Worker { jobs })
    }

    /// Runs `f` on the thread and returns its result.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut S) -> T + Send + 'static,
    ) -> Result<T, WorkerGone> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Box::new(move |state: &mut S| {
                let _ = reply.send(f(state));
            }))
            .map_err(|_| WorkerGone)?;
        answer.await.map_err(|_| WorkerGone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_in_the_order_sent_and_a_panicking_job_does_not_stop_the_thread() {
        let worker = Worker::spawn("test-worker", Vec::<u32>::new()).unwrap();
        let first = worker.call(|v| v.push(1));
        let second = worker.call(|v| v.push(2));
        let (a, b) = tokio::join!(first, second);
        assert_eq!((a, b), (Ok(()), Ok(())));
        let panicked = worker
            .call(|_: &mut Vec<u32>| -> u32 { panic!("a job that fails") })
            .await;
        assert_eq!(panicked, Err(WorkerGone));
        assert_eq!(worker.call(|v| v.clone()).await, Ok(vec![1, 2]));
    }
}
