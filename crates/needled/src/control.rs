//! The control thread: one dedicated OS thread runs `Controller::tick` at the configured rate
//! with an absolute-deadline sleep (`clock_nanosleep(TIMER_ABSTIME)` on CLOCK_MONOTONIC),
//! counts overruns, keeps a lateness histogram, and exchanges commands and telemetry with the
//! async side through a bounded channel and a [`SnapshotCell`].
//!
//! The thread never waits for a lock that a normal-priority thread can hold: commands come
//! through the channel's `try_recv`, and the snapshot it publishes every tick goes into a
//! sequence lock whose only writer is this thread, so readers (the API, the monitor) retry
//! instead of blocking it (a reader preempted while holding a read lock, as with a watch
//! channel's `RwLock`, would otherwise hold a SCHED_FIFO thread behind normal-priority work:
//! priority inversion). What it does not avoid: the verdict of a command wakes its async
//! task, and tokio's wake takes the scheduler's queue lock (only on ticks that answer a
//! command, never on the heartbeat's, whose answer nobody awaits).
//!
//! The async side refreshes the core's dead-man timer; if the service hangs, the heartbeats
//! stop and the core faults `HostTimeout` on its own.
//!
//! Before its first tick the thread takes what [`crate::realtime`] can give it: its own CPU
//! (`control.cpu`), a pre-faulted stack, SCHED_FIFO at [`CONTROL_PRIORITY`]; with the
//! process's memory lock, that is what it reports in [`LoopStats`] and logs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use needle_core::hal::Hardware;
use needle_core::units::Micros;
use needle_core::{Command, Controller, Rejected, Telemetry};
use nix::sys::time::TimeSpec;
use nix::time::{clock_gettime, clock_nanosleep, ClockId, ClockNanosleepFlags};
use seqlock::SeqLock;
use serde::Serialize;
use tokio::sync::oneshot;

/// Commands queued between the async side and the control thread.
const QUEUE: usize = 64;
/// Most commands handled in one tick, so a flood cannot stretch a tick.
const COMMANDS_PER_TICK: usize = 16;
/// Lateness histogram: 1 µs buckets up to this, then one overflow bucket.
const HISTOGRAM_US: usize = 20_000;
/// Loop statistics are recomputed this often, in ticks.
const STATS_EVERY: u64 = 100;
/// The control thread's SCHED_FIFO priority (the heartbeat thread runs below it).
pub const CONTROL_PRIORITY: u8 = 50;

/// The controller's monotonic clock, in microseconds (CLOCK_MONOTONIC, the clock the kernel
/// timestamps GPIO events with).
pub fn monotonic_now() -> Micros {
    match clock_gettime(ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => Micros(
            u64::try_from(ts.tv_sec()).unwrap_or(0) * 1_000_000
                + u64::try_from(ts.tv_nsec()).unwrap_or(0) / 1_000,
        ),
        Err(_) => Micros::ZERO,
    }
}

/// Maps the monotonic clock onto the controller's clock each tick. The sim backend advances
/// its physics here; a hardware backend passes the time through.
pub trait TickClock: Send + 'static {
    /// Called once a tick with the wake-up time; returns the time to tick the controller at.
    fn controller_time(&mut self, monotonic: Micros) -> Micros;
}

/// Hardware backends: the controller runs on the monotonic clock itself.
pub struct Monotonic;

impl TickClock for Monotonic {
    fn controller_time(&mut self, monotonic: Micros) -> Micros {
        monotonic
    }
}

/// How the control loop runs.
#[derive(Debug, Clone, Copy)]
pub struct LoopConfig {
    /// Tick period.
    pub period: Duration,
    /// Try SCHED_FIFO real-time priority.
    pub realtime: bool,
    /// Pin the thread to this CPU (`control.cpu`).
    pub cpu: Option<u32>,
}

/// Timing of the control loop: the API contract's own type, as `/v1/status` shows it.
pub use needle_api::ControlStats as LoopStats;

/// What the control thread publishes after every tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// The controller's telemetry.
    pub telemetry: Telemetry,
    /// The loop's timing.
    pub stats: LoopStats,
}

/// Where the control thread (or the link thread) publishes its [`Snapshot`] and where
/// everyone else reads the latest one. A sequence lock with a single writer: publishing
/// never waits for a reader, and a read that overlapped a write is retried, so no reader
/// sees a torn snapshot.
#[derive(Clone)]
pub struct SnapshotCell(Arc<SeqLock<Snapshot>>);

impl SnapshotCell {
    /// A cell holding `initial`.
    pub fn new(initial: Snapshot) -> Self {
        SnapshotCell(Arc::new(SeqLock::new(initial)))
    }

    /// Replaces the snapshot. Meant for one writing thread: a second writer would wait for
    /// the first (never for a reader).
    pub fn publish(&self, snapshot: Snapshot) {
        *self.0.lock_write() = snapshot;
    }

    /// The latest snapshot.
    pub fn latest(&self) -> Snapshot {
        self.0.read()
    }
}

/// Why a command did not reach the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The command queue is full.
    #[error("the control loop's command queue is full")]
    Busy,
    /// The control thread has stopped.
    #[error("the control loop has stopped")]
    Stopped,
}

/// A command's reply channel and the controller's verdict, held until the snapshot is out.
type Answer = (oneshot::Sender<Result<(), Rejected>>, Result<(), Rejected>);

/// A command for the controller and where its verdict goes.
pub struct Request {
    /// The command.
    pub command: Command,
    /// Where the controller's verdict goes.
    pub reply: oneshot::Sender<Result<(), Rejected>>,
}

/// The far end of a [`ControlHandle`] whose controller is not on this machine (the link
/// backend: it runs in the pen). [`spawn_remote`] gives it to the thread that serves it.
pub struct RemoteEnd {
    /// Commands from the async side.
    pub requests: Receiver<Request>,
    /// Where the thread publishes what it knows of the controller.
    pub snapshots: SnapshotCell,
    /// Stamp with [`monotonic_now`] each loop, for the watchdog.
    pub alive: Arc<AtomicU64>,
    /// Set when the handle shuts down: leave the rig safe and return.
    pub stop: Arc<AtomicBool>,
}

/// Starts a thread named `name` that serves a [`ControlHandle`] through a [`RemoteEnd`],
/// publishing `initial` first.
pub fn spawn_remote(
    name: &str,
    initial: Snapshot,
    serve: impl FnOnce(RemoteEnd) + Send + 'static,
) -> std::io::Result<ControlHandle> {
    let (commands, requests) = mpsc::sync_channel(QUEUE);
    let snapshots = SnapshotCell::new(initial);
    let alive = Arc::new(AtomicU64::new(monotonic_now().0));
    let stop = Arc::new(AtomicBool::new(false));
    let end = RemoteEnd {
        requests,
        snapshots: snapshots.clone(),
        alive: Arc::clone(&alive),
        stop: Arc::clone(&stop),
    };
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || serve(end))?;
    Ok(ControlHandle {
        commands,
        snapshots,
        alive,
        stop,
        thread: Some(thread),
    })
}

/// The async side's handle on the control thread.
pub struct ControlHandle {
    commands: SyncSender<Request>,
    snapshots: SnapshotCell,
    alive: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlHandle {
    /// Sends a command and waits for the controller's verdict.
    pub async fn command(&self, command: Command) -> Result<Result<(), Rejected>, ControlError> {
        let (reply, verdict) = oneshot::channel();
        self.commands
            .try_send(Request { command, reply })
            .map_err(|e| match e {
                TrySendError::Full(_) => ControlError::Busy,
                TrySendError::Disconnected(_) => ControlError::Stopped,
            })?;
        verdict.await.map_err(|_| ControlError::Stopped)
    }

    /// Queues a command without waiting for its verdict (the heartbeat thread's way: it must
    /// never block on the async side).
    pub fn send(&self, command: Command) -> Result<(), ControlError> {
        let (reply, _) = oneshot::channel();
        self.commands
            .try_send(Request { command, reply })
            .map_err(|e| match e {
                TrySendError::Full(_) => ControlError::Busy,
                TrySendError::Disconnected(_) => ControlError::Stopped,
            })
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshots.latest()
    }

    /// Whether the control thread completed a tick within `within` (for the systemd watchdog).
    pub fn is_alive(&self, within: Duration) -> bool {
        let last = Micros(self.alive.load(Ordering::Acquire));
        let within = Micros(u64::try_from(within.as_micros()).unwrap_or(u64::MAX));
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
            && monotonic_now().since(last) <= within
    }

    /// Disarms, writes the safe outputs one last time, and stops the thread.
    pub fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ControlHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts the control thread for `controller`.
pub fn spawn<H, C>(
    controller: Controller<H>,
    clock: C,
    config: LoopConfig,
) -> std::io::Result<ControlHandle>
where
    H: Hardware + Send + 'static,
    C: TickClock,
{
    let (commands, requests) = mpsc::sync_channel(QUEUE);
    let initial = Snapshot {
        telemetry: controller.telemetry(),
        stats: LoopStats::default(),
    };
    let snapshots = SnapshotCell::new(initial);
    let alive = Arc::new(AtomicU64::new(monotonic_now().0));
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let alive = Arc::clone(&alive);
        let stop = Arc::clone(&stop);
        let publish = snapshots.clone();
        std::thread::Builder::new()
            .name("needle-control".into())
            .spawn(move || run(controller, clock, config, requests, publish, alive, stop))?
    };
    Ok(ControlHandle {
        commands,
        snapshots,
        alive,
        stop,
        thread: Some(thread),
    })
}

/// Asks for SCHED_FIFO at `priority` (1-99) for the calling thread; logs whether it got it.
pub fn try_realtime(priority: u8) -> bool {
    use thread_priority::{
        set_thread_priority_and_policy, thread_native_id, RealtimeThreadSchedulePolicy,
        ThreadPriority, ThreadSchedulePolicy,
    };
    let Ok(level) = priority.try_into() else {
        return false;
    };
    let policy = ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo);
    let thread = std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_string();
    match set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Crossplatform(level),
        policy,
    ) {
        Ok(()) => {
            tracing::info!(%thread, priority, "thread runs with SCHED_FIFO real-time priority");
            true
        }
        Err(e) => {
            tracing::warn!(%thread, error = ?e, "thread did not get real-time priority; running at normal priority");
            false
        }
    }
}

/// Sleeps until `deadline` on CLOCK_MONOTONIC (absolute, so lateness does not accumulate).
pub fn sleep_until(deadline: Micros) {
    let ts = TimeSpec::new(
        i64::try_from(deadline.0 / 1_000_000).unwrap_or(i64::MAX),
        i64::try_from((deadline.0 % 1_000_000) * 1_000).unwrap_or(0),
    );
    // EINTR or a clock error: the loop measures lateness and carries on at the next deadline.
    let _ = clock_nanosleep(
        ClockId::CLOCK_MONOTONIC,
        ClockNanosleepFlags::TIMER_ABSTIME,
        &ts,
    );
}

/// Lateness histogram with 1 µs buckets.
struct Histogram {
    buckets: Vec<u32>,
    count: u64,
    max: u64,
}

impl Histogram {
    fn new() -> Self {
        Self {
            buckets: vec![0; HISTOGRAM_US + 1],
            count: 0,
            max: 0,
        }
    }

    fn record(&mut self, us: u64) {
        let i = usize::try_from(us)
            .unwrap_or(HISTOGRAM_US)
            .min(HISTOGRAM_US);
        if let Some(b) = self.buckets.get_mut(i) {
            *b = b.saturating_add(1);
        }
        self.count += 1;
        self.max = self.max.max(us);
    }

    fn percentile(&self, per_mille: u64) -> u64 {
        let rank = (self.count * per_mille).div_ceil(1000).max(1);
        let mut seen = 0u64;
        for (us, n) in self.buckets.iter().enumerate() {
            seen += u64::from(*n);
            if seen >= rank {
                return us as u64;
            }
        }
        self.max
    }
}

/// Takes the CPU, the stack and the priority for the calling (control) thread; returns what
/// was granted, with the process's memory lock, and logs it.
fn claim(config: &LoopConfig) -> LoopStats {
    let cpu = config
        .cpu
        .and_then(|cpu| match crate::realtime::pin_to(cpu) {
            Ok(()) => Some(cpu),
            Err(e) => {
                tracing::warn!(cpu, error = %e, "control thread not pinned to its CPU");
                None
            }
        });
    crate::realtime::prefault_stack();
    let priority = (config.realtime && try_realtime(CONTROL_PRIORITY)).then_some(CONTROL_PRIORITY);
    let memory_locked = crate::realtime::memory_locked();
    tracing::info!(
        priority = ?priority,
        cpu = ?cpu,
        memory_locked,
        "control thread granted: {}, {}, memory {}",
        priority.map_or("normal priority".to_string(), |p| format!("SCHED_FIFO {p}")),
        cpu.map_or("not pinned".to_string(), |c| format!("pinned to CPU {c}")),
        if memory_locked { "locked" } else { "not locked" },
    );
    LoopStats {
        realtime: priority.is_some(),
        priority,
        memory_locked,
        cpu,
        ..LoopStats::default()
    }
}

fn run<H: Hardware, C: TickClock>(
    mut ctrl: Controller<H>,
    mut clock: C,
    config: LoopConfig,
    requests: Receiver<Request>,
    publish: SnapshotCell,
    alive: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let grant = claim(&config);
    let period = Micros(
        u64::try_from(config.period.as_micros())
            .unwrap_or(1_000)
            .max(1),
    );
    let mut stats = LoopStats {
        rate_hz: u32::try_from(1_000_000 / period.0).unwrap_or(0),
        ..grant
    };
    let mut histogram = Histogram::new();
    let mut deadline = monotonic_now().saturating_add(period);
    while !stop.load(Ordering::Acquire) {
        sleep_until(deadline);
        let wake = monotonic_now();
        let late = wake.since(deadline);
        histogram.record(late.0);
        let now = clock.controller_time(wake);
        let mut replies: [Option<Answer>; COMMANDS_PER_TICK] = Default::default();
        let mut handled = 0;
        for slot in replies.iter_mut() {
            let Ok(request) = requests.try_recv() else {
                break;
            };
            *slot = Some((request.reply, ctrl.handle(request.command)));
            handled += 1;
        }
        if handled > 0 {
            // Publish what the commands changed before answering, so whoever gets a verdict
            // never reads an older snapshot afterwards.
            publish.publish(Snapshot {
                telemetry: ctrl.telemetry(),
                stats,
            });
            for (reply, verdict) in replies.iter_mut().filter_map(Option::take) {
                let _ = reply.send(verdict);
            }
        }
        ctrl.tick(now);
        stats.ticks += 1;
        deadline = deadline.saturating_add(period);
        if late > period {
            // A whole period lost: count it and re-anchor instead of bursting to catch up.
            stats.overruns += 1;
            deadline = wake.saturating_add(period);
        }
        if stats.ticks.is_multiple_of(STATS_EVERY) {
            stats.lateness_p50_us = histogram.percentile(500);
            stats.lateness_p99_us = histogram.percentile(990);
            stats.lateness_max_us = histogram.max;
        }
        publish.publish(Snapshot {
            telemetry: ctrl.telemetry(),
            stats,
        });
        alive.store(wake.0, Ordering::Release);
    }
    // Leave the rig safe: disarm and write the safe outputs once more.
    let _ = ctrl.handle(Command::Disarm);
    ctrl.tick(clock.controller_time(monotonic_now()));
    publish.publish(Snapshot {
        telemetry: ctrl.telemetry(),
        stats,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_percentiles() {
        let mut h = Histogram::new();
        for us in 1..=100 {
            h.record(us);
        }
        assert_eq!(h.percentile(500), 50);
        assert_eq!(h.percentile(990), 99);
        assert_eq!(h.max, 100);
        h.record(1_000_000);
        assert_eq!(h.max, 1_000_000);
        assert_eq!(h.percentile(1000), HISTOGRAM_US as u64);
    }

    /// Readers running beside the single writer never see a snapshot half of one write and
    /// half of another, and always see the writes in order.
    #[test]
    fn snapshot_cell_reads_are_never_torn() {
        let telemetry = Controller::new(
            needle_sim::SimRig::new(Default::default()).hardware(),
            needle_core::config::ControllerConfig::default(),
        )
        .expect("default config")
        .telemetry();
        let stamped = |n: u64| {
            let mut s = Snapshot {
                telemetry,
                stats: LoopStats::default(),
            };
            s.stats.ticks = n;
            s.stats.overruns = n;
            s.stats.lateness_p50_us = n;
            s.stats.lateness_p99_us = n;
            s.stats.lateness_max_us = n;
            s
        };
        let cell = SnapshotCell::new(stamped(0));
        let done = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (cell, done) = (cell.clone(), Arc::clone(&done));
                std::thread::spawn(move || {
                    let (mut last, mut reads) = (0, 0u64);
                    while !done.load(Ordering::Acquire) {
                        let s = cell.latest().stats;
                        assert_eq!(
                            [
                                s.overruns,
                                s.lateness_p50_us,
                                s.lateness_p99_us,
                                s.lateness_max_us
                            ],
                            [s.ticks; 4],
                            "torn snapshot"
                        );
                        assert!(
                            s.ticks >= last,
                            "snapshot went back from {last} to {}",
                            s.ticks
                        );
                        last = s.ticks;
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        for n in 1..=200_000 {
            cell.publish(stamped(n));
        }
        done.store(true, Ordering::Release);
        for r in readers {
            assert!(r.join().expect("reader") > 0);
        }
        assert_eq!(cell.latest().stats.ticks, 200_000);
    }

    #[test]
    fn absolute_sleep_is_never_early() {
        let deadline = monotonic_now().saturating_add(Micros(2_000));
        sleep_until(deadline);
        assert!(monotonic_now() >= deadline);
    }

    #[test]
    fn monotonic_clock_advances() {
        let a = monotonic_now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(monotonic_now().since(a) >= Micros(2_000));
    }
}
