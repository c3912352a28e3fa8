//! The OS floor: a bare 1 kHz `clock_nanosleep(TIMER_ABSTIME)` loop that does nothing but
//! measure its own lateness, with exactly the deadline rules of needled's control thread
//! (`crates/needled/src/control.rs`): absolute deadlines one period apart, lateness measured
//! in whole microseconds behind the deadline, and after a lateness of more than a period an
//! overrun is counted and the deadline re-anchored instead of bursting to catch up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde_json::{json, Value};

use needle_core::units::Micros;
use needled::control::{sleep_until, try_realtime};

use crate::clock::mono_us;
use crate::stats::Summary;

/// What a floor loop measured.
#[derive(Debug, Clone)]
pub struct FloorResult {
    /// Wake-ups.
    pub ticks: u64,
    /// Wake-ups more than a whole period late.
    pub overruns: u64,
    /// Lateness of each wake-up behind its deadline, µs.
    pub lateness_us: Vec<u64>,
    /// Whether the loop ran under SCHED_FIFO.
    pub realtime: bool,
}

impl FloorResult {
    /// p50/p99/max of the lateness.
    pub fn summary(&self) -> Summary {
        let mut s = self.lateness_us.clone();
        Summary::of(&mut s)
    }

    /// As JSON (the same keys as needled's `LoopStats`).
    pub fn json(&self) -> Value {
        let s = self.summary();
        json!({
            "ticks": self.ticks,
            "overruns": self.overruns,
            "lateness_p50_us": s.p50,
            "lateness_p99_us": s.p99,
            "lateness_max_us": s.max,
            "realtime": self.realtime,
        })
    }
}

/// Runs the floor loop on this thread until `stop` is set.
pub fn run(period_us: u64, realtime: bool, stop: &AtomicBool) -> FloorResult {
    let realtime = realtime && try_realtime(50);
    let period = period_us.max(1);
    let mut out = FloorResult {
        ticks: 0,
        overruns: 0,
        lateness_us: Vec::with_capacity(1 << 16),
        realtime,
    };
    let mut deadline = mono_us() + period;
    while !stop.load(Ordering::Acquire) {
        sleep_until(Micros(deadline));
        let wake = mono_us();
        let late = wake.saturating_sub(deadline);
        out.lateness_us.push(late);
        out.ticks += 1;
        deadline += period;
        if late > period {
            out.overruns += 1;
            deadline = wake + period;
        }
    }
    out
}

/// A floor loop on its own thread.
pub struct Floor {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<FloorResult>,
}

impl Floor {
    /// Starts a floor loop thread.
    pub fn spawn(period_us: u64, realtime: bool) -> Floor {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("os-floor".into())
            .spawn(move || run(period_us, realtime, &flag))
            .expect("spawn the floor thread");
        Floor { stop, thread }
    }

    /// Stops the loop and returns what it measured.
    pub fn stop(self) -> FloorResult {
        self.stop.store(true, Ordering::Release);
        self.thread.join().unwrap_or(FloorResult {
            ticks: 0,
            overruns: 0,
            lateness_us: Vec::new(),
            realtime: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_loop_ticks_at_its_period() {
        let floor = Floor::spawn(1_000, false);
        std::thread::sleep(std::time::Duration::from_millis(200));
        let r = floor.stop();
        // 200 ms at 1 kHz, minus what a loaded machine loses to overruns.
        assert!(r.ticks >= 50 && r.ticks <= 210, "{} ticks", r.ticks);
        assert_eq!(r.lateness_us.len() as u64, r.ticks);
    }
}
