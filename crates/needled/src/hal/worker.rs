//! [`Worker`]: a driver's background thread (the ADC scanner, the stroke sensor's event
//! reader) that runs until its handle is dropped.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A named background thread; dropping this sets the thread's stop flag and waits for it to
/// end, so whatever it owns (a bus, a line) is released when the drop returns.
#[derive(Debug)]
pub struct Worker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Runs `run` on a thread named `name`. `run` is handed the stop flag and must return soon
    /// after it is set: the drop waits for it.
    pub fn spawn(name: &str, run: impl FnOnce(&AtomicBool) + Send + 'static) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run(&flag))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dropping_a_worker_stops_its_thread_and_waits_for_it() {
        let ended = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&ended);
        let worker = Worker::spawn("needled-test", move |stop| {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
            }
            seen.store(true, Ordering::SeqCst);
        })
        .unwrap();
        assert!(!ended.load(Ordering::SeqCst));
        drop(worker);
        assert!(ended.load(Ordering::SeqCst));
    }
}
