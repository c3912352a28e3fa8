//! The service: treatment sessions, the cartridge ledger and the controller, kept in step.
//!
//! Every API call that changes something goes through here; it checks the session rules
//! (area ceiling, checklist, cartridge validity), sends the controller its command, and
//! records the change with its event in the ledger. A monitor task keeps the ledger in step
//! with the controller: faults, pedal starts and pauses, cartridge removal, usage budgets and
//! the session time limit.
//!
//! No treatment without a record: every call that changes the rig writes its intent to the
//! ledger first and acts only once that write succeeded; what the rig then did is written
//! next. When the ledger cannot write, the service is degraded: the needles are stopped
//! (Disarm), every further change is refused with `storage_unavailable`, health says so, and
//! every record of what already happened (the outcome of an accepted command, faults, state
//! changes, usage) is kept in memory, in order, and retried until it is written. Once all of
//! it is written the service recovers on its own; the rig stays disarmed until an operator
//! arms again. SQLite and tag reads never run on a tokio worker (see [`crate::ledger`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use needle_core::units::{Micrometers, Micros, MilliHertz};
use needle_core::{Command, Fault, Faults, State};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cartridge::{self as tag, DeviceKey, Tag};
use crate::control::{monotonic_now, ControlError, ControlHandle, Snapshot};
use crate::error::ApiError;
use crate::hal::sim::SimBackend;
use crate::hal::TagReader;
use crate::ledger::Ledger;
use crate::store::{
    kinds, CartridgeLimits, CartridgeRecord, ChecklistItem, Event, LedgerError, NewSession, Now,
    Override, SessionId, SessionRecord, SessionState, Store, WriteFaults,
};

/// Who is calling, from their bearer token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    /// The token's name.
    pub name: String,
    /// The token's role.
    pub role: Role,
}

/// Roles of API tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs sessions.
    Operator,
    /// Everything an operator does, plus overrides, recalls and the sim controls.
    Technician,
}

/// A checklist item every session must answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecklistSpec {
    /// Stable id.
    pub id: String,
    /// What the operator confirms.
    pub text: String,
    /// Whether arming requires it confirmed.
    pub required: bool,
}

/// The clinical rules the service enforces, from the configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Depth ceiling per treatment area.
    pub areas: BTreeMap<String, Micrometers>,
    /// Pre-treatment checklist.
    pub checklist: Vec<ChecklistSpec>,
    /// Session time limit, from the first start.
    pub time_limit: Duration,
    /// Per-area time limits that replace `time_limit` for sessions in that area.
    pub area_time_limits: BTreeMap<String, Duration>,
    /// Warning this long before the time limit.
    pub warning_before: Duration,
    /// Minimum interval between a subject's sessions.
    pub min_interval: Duration,
    /// Run-time and stroke budget of a cartridge.
    pub limits: CartridgeLimits,
    /// After-care advice printed in every session report.
    pub post_care: String,
    /// Stroke rates an operator may set (the core refuses others), lowest and highest.
    pub rate_range: (MilliHertz, MilliHertz),
}

/// The session that holds the pen (bound cartridge), with its running totals.
#[derive(Debug, Clone)]
struct Active {
    session: SessionId,
    cartridge: String,
    time_limit: Duration,
    run_ms: u64,
    strokes: u64,
    unflushed_run_ms: u64,
    unflushed_strokes: u64,
    last_stroke_count: Option<u32>,
    /// The first start, on the monotonic clock: the time limit counts from here.
    started_at: Option<Micros>,
    warned: bool,
    /// A stop at a limit failed and is being retried (recorded once).
    stop_failed: bool,
}

impl Active {
    /// What is left of the session's time limit at `now` (monotonic), ms: the whole limit
    /// before the first start.
    fn session_left_ms(&self, now: Micros) -> u64 {
        u64::try_from(self.time_limit.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_sub(self.started_at.map_or(0, |s| ms_between(s, now)))
    }

    /// What is left of the cartridge's run-time budget, ms, counting the usage not yet
    /// flushed to the ledger.
    fn run_left_ms(&self, c: &CartridgeRecord) -> u64 {
        c.remaining_run_ms.saturating_sub(self.unflushed_run_ms)
    }
}

/// What the monitor remembers between looks at the controller.
#[derive(Debug, Default)]
struct Seen {
    state: Option<State>,
    faults: Faults,
    /// The last look, on the monotonic clock: run time is counted from these gaps.
    last_at: Option<Micros>,
    /// The core's count of cartridge-switch openings at the last look.
    cartridge_openings: Option<u32>,
}

/// How long an accepted Disarm may take to show in the controller's telemetry (a pen across
/// the link reports it in its next telemetry frame).
const DISARM_SEEN_WITHIN: Duration = Duration::from_millis(200);

/// A record of something that already happened, kept until the ledger takes it.
type Pending = Arc<dyn Fn(&mut Store) -> Result<(), LedgerError> + Send + Sync>;

/// How often the records kept while degraded are retried.
const RETRY_EVERY: Duration = Duration::from_millis(200);

/// The ledger's health, as `/v1/health` and `/v1/status` report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageHealth {
    /// Whether the ledger writes.
    pub ok: bool,
    /// When the ledger first failed to write (unix ms), while degraded.
    pub failed_at_ms: Option<i64>,
    /// The first write error, while degraded.
    pub error: Option<String>,
    /// Records kept in memory, waiting for the ledger.
    pub pending: usize,
}

/// The ledger's health and the records it could not take yet.
#[derive(Default)]
struct Storage {
    failed: Option<(i64, String)>,
    /// In order; the key lets the monitor queue "the same" record once.
    pending: Vec<(Option<String>, Pending)>,
    last_retry: Option<Instant>,
}

/// 503 `storage_unavailable`: the ledger cannot write, so nothing is done.
fn storage_unavailable(detail: &str) -> ApiError {
    ApiError::new(
        503,
        "storage_unavailable",
        format!("the ledger cannot write ({detail}): the needles are stopped and changes are refused until it can"),
    )
}

fn ledger_error(e: LedgerError) -> ApiError {
    if e.is_unavailable() {
        storage_unavailable(&e.to_string())
    } else {
        e.into()
    }
}

/// What the sim has stepped the wall clock by, ms (only the sim backend sets it).
static SIM_WALL_STEP_MS: AtomicI64 = AtomicI64::new(0);

/// Current wall-clock time, unix ms: for records only. Durations (session time, the time
/// limit, cartridge run time) are measured on the monotonic clock, which an NTP step on a Pi
/// without an RTC does not move.
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .saturating_add(SIM_WALL_STEP_MS.load(Ordering::Relaxed))
        .max(0)
}

/// Milliseconds on the monotonic clock from `since` to `now`.
fn ms_between(since: Micros, now: Micros) -> u64 {
    now.since(since).0 / 1_000
}

fn now() -> Result<Now, ApiError> {
    Now::utc(unix_ms())
        .ok_or_else(|| ApiError::new(500, "clock_invalid", "the system clock is out of range"))
}

/// A request to create a session.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// Who performs it.
    pub operator: String,
    /// Opaque subject reference (never a name).
    pub subject_ref: String,
    /// Treatment area, one of the configured areas.
    pub area: String,
    /// Checklist answers by item id.
    #[serde(default)]
    pub checklist: BTreeMap<String, bool>,
    /// Reason to override the minimum interval (technicians only).
    #[serde(default)]
    pub override_reason: Option<String>,
}

/// Setpoints to arm with or change to.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setpoints {
    /// Needle depth, µm.
    pub depth_um: Option<i32>,
    /// Stroke rate, mHz.
    pub rate_mhz: Option<u32>,
}

/// How the monitor task is doing, as the dead-man heartbeat and `/v1/health` judge it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorHealth {
    /// A monitor pass completed within the service stall limit.
    Ok,
    /// No monitor pass completed for this long (more than the stall limit): the monitor is
    /// stuck, or the runtime that runs it is.
    Stalled(Duration),
    /// The monitor task ended (it panicked); the service must be restarted.
    Failed,
}

impl MonitorHealth {
    /// Stable code: `ok`, `stalled` or `failed`.
    pub fn code(&self) -> &'static str {
        match self {
            MonitorHealth::Ok => "ok",
            MonitorHealth::Stalled(_) => "stalled",
            MonitorHealth::Failed => "failed",
        }
    }
}

/// A failure of the monitor task the sim can inject, to prove the dead-man follows the
/// monitor and not merely the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorFault {
    /// The next monitor pass panics.
    Panic,
    /// The next monitor pass hangs this long, holding the operations lock, while the rest of
    /// the runtime carries on.
    Stall(Duration),
}

/// Default `control.service_stall_ms`.
const DEFAULT_SERVICE_STALL: Duration = Duration::from_secs(1);

/// The service.
pub struct Service {
    control: ControlHandle,
    ledger: Ledger,
    write_faults: Option<Arc<WriteFaults>>,
    key: DeviceKey,
    tags: Arc<Mutex<Box<dyn TagReader>>>,
    policy: Policy,
    sim: Option<SimBackend>,
    active: Mutex<Option<Active>>,
    seen: Mutex<Seen>,
    storage: Mutex<Storage>,
    /// Held by every operation that commands the controller and records the result, and by
    /// each monitor pass: the monitor never sees the controller changed but the ledger not yet
    /// (it would take a freshly armed session for a disarmed one).
    ops: tokio::sync::Mutex<()>,
    /// Monotonic time (µs) at which the last monitor pass completed.
    monitor_pass: AtomicU64,
    /// Set when the monitor task has ended: the needles stay stopped until a restart.
    monitor_failed: AtomicBool,
    /// Longest gap between completed monitor passes before the service counts as hung.
    service_stall: Duration,
    /// A monitor failure injected by the sim, taken by the next pass.
    sim_monitor_fault: Mutex<Option<MonitorFault>>,
    /// How many of the next disarms the sim makes fail (as a full command queue would).
    sim_failing_disarms: AtomicU32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Service {
    /// Builds the service; sessions left open by a crash are aborted and their cartridges
    /// spent before anything else happens. The store moves to the ledger's own threads; on
    /// the sim backend it gets injectable write faults.
    pub fn new(
        control: ControlHandle,
        mut store: Store,
        key: DeviceKey,
        tags: Box<dyn TagReader>,
        policy: Policy,
        sim: Option<SimBackend>,
    ) -> Result<Self, ApiError> {
        let aborted =
            store.abort_open_sessions(unix_ms(), "service restarted while the session was open")?;
        if !aborted.is_empty() {
            tracing::warn!(
                ?aborted,
                "sessions open at the last stop were aborted and their cartridges spent"
            );
        }
        let write_faults = sim.as_ref().map(|_| Arc::new(WriteFaults::default()));
        if let Some(f) = &write_faults {
            store.inject_write_faults(Arc::clone(f));
        }
        let ledger = Ledger::spawn(store).map_err(|e| ApiError::new(500, "storage_error", e))?;
        Ok(Self {
            control,
            ledger,
            write_faults,
            key,
            tags: Arc::new(Mutex::new(tags)),
            policy,
            sim,
            active: Mutex::new(None),
            seen: Mutex::new(Seen::default()),
            storage: Mutex::new(Storage::default()),
            ops: tokio::sync::Mutex::new(()),
            monitor_pass: AtomicU64::new(monotonic_now().0),
            monitor_failed: AtomicBool::new(false),
            service_stall: DEFAULT_SERVICE_STALL,
            sim_monitor_fault: Mutex::new(None),
            sim_failing_disarms: AtomicU32::new(0),
        })
    }

    /// This service with `stall` as the longest gap between completed monitor passes
    /// (`control.service_stall_ms`) before it counts as hung; 1 s unless set.
    pub fn with_service_stall(mut self, stall: Duration) -> Self {
        self.service_stall = stall;
        self
    }

    /// Whether the monitor completes its passes. The dead-man heartbeat refreshes the core
    /// only while this is [`MonitorHealth::Ok`], so a hung or dead monitor (time limit,
    /// budgets, cartridge removal, the ledger's view of the controller) stops the needles.
    pub fn monitor_health(&self) -> MonitorHealth {
        if self.monitor_failed.load(Ordering::Acquire) {
            return MonitorHealth::Failed;
        }
        let last = Micros(self.monitor_pass.load(Ordering::Acquire));
        let age = Duration::from_micros(monotonic_now().since(last).0);
        if age > self.service_stall {
            MonitorHealth::Stalled(age)
        } else {
            MonitorHealth::Ok
        }
    }

    /// The monitor task has ended (`why`: it panicked): logged loudly, the heartbeat stops for
    /// good, and the controller is told to disarm at once rather than waiting for the
    /// dead-man. Only a restart brings the service back (the systemd watchdog is no longer
    /// fed), and a restart aborts the open session.
    pub async fn monitor_died(&self, why: &str) {
        self.monitor_failed.store(true, Ordering::Release);
        tracing::error!(
            why,
            "the monitor task has died: the needles are stopped and the service must be restarted"
        );
        if let Err(e) = self.disarm().await {
            tracing::error!(
                error = %e,
                "could not disarm after the monitor died: the dead-man stops the needles"
            );
        }
        self.record(
            None,
            Event::new(unix_ms(), crate::store::SYSTEM_ACTOR, "monitor_failed")
                .detail(json!({ "why": why })),
        )
        .await;
    }

    /// Refuses with 503 `monitor_unavailable` unless the monitor is healthy: nothing may be
    /// armed or started that the monitor would not watch.
    fn require_monitor(&self) -> Result<(), ApiError> {
        match self.monitor_health() {
            MonitorHealth::Ok => Ok(()),
            h => Err(ApiError::new(
                503,
                "monitor_unavailable",
                format!(
                    "the service's monitor is {}: the needles stay stopped",
                    h.code()
                ),
            )),
        }
    }

    /// Whether the controller is in a state with the needles armed.
    fn core_armed(&self) -> bool {
        matches!(
            self.control.snapshot().telemetry.state,
            State::Armed | State::Running | State::Paused
        )
    }

    /// Steps the wall clock the service records with by `ms` (as an NTP step would; sim
    /// only). Durations are on the monotonic clock and do not move.
    pub fn sim_step_wall_clock(&self, ms: i64) -> Result<(), ApiError> {
        if self.sim.is_none() {
            return Err(ApiError::not_found(
                "wall-clock steps exist only on the sim backend",
            ));
        }
        SIM_WALL_STEP_MS.fetch_add(ms, Ordering::Relaxed);
        tracing::warn!(step_ms = ms, "sim: wall clock stepped");
        Ok(())
    }

    /// Disarms the controller and checks that it took: `Ok` once the core is out of the armed
    /// states (also when it already was); otherwise the error (a full command queue, a stopped
    /// control thread, a refusal), and the caller must not act as if the needles stopped.
    async fn disarm(&self) -> Result<(), ApiError> {
        let failing = self
            .sim_failing_disarms
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        let result = if failing {
            Err(ControlError::Busy)
        } else {
            self.control.command(Command::Disarm).await
        };
        if matches!(result, Ok(Ok(()))) {
            // In process the controller publishes its snapshot before it answers; a pen across
            // the link answers first and shows the state in its next telemetry frame.
            let deadline = Instant::now() + DISARM_SEEN_WITHIN;
            while self.core_armed() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        match result {
            Ok(_) if !self.core_armed() => Ok(()),
            Ok(Ok(())) => Err(ApiError::new(
                503,
                "disarm_failed",
                "the controller accepted Disarm but is still armed",
            )),
            Ok(Err(r)) => Err(r.into()),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes the next `times` disarms fail as a full command queue would (sim only).
    pub fn sim_fail_disarms(&self, times: u32) -> Result<(), ApiError> {
        if self.sim.is_none() {
            return Err(ApiError::not_found(
                "control failures exist only on the sim backend",
            ));
        }
        self.sim_failing_disarms.store(times, Ordering::Release);
        Ok(())
    }

    /// Makes the next monitor pass fail as `fault` (sim only; the sim endpoints need a
    /// technician).
    pub fn sim_break_monitor(&self, fault: MonitorFault) -> Result<(), ApiError> {
        if self.sim.is_none() {
            return Err(ApiError::not_found(
                "monitor faults exist only on the sim backend",
            ));
        }
        *lock(&self.sim_monitor_fault) = Some(fault);
        Ok(())
    }

    /// The control thread.
    pub fn control(&self) -> &ControlHandle {
        &self.control
    }

    /// The clinical policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The sim backend, when running on the sim.
    pub fn sim(&self) -> Option<&SimBackend> {
        self.sim.as_ref()
    }

    /// The injectable write faults of the ledger (sim backend only).
    pub fn write_faults(&self) -> Option<&WriteFaults> {
        self.write_faults.as_deref()
    }

    /// Reads the ledger (on its read thread, never on a tokio worker).
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.ledger.read(f).await.map_err(ledger_error)
    }

    /// The ledger's health.
    pub fn storage_health(&self) -> StorageHealth {
        let st = lock(&self.storage);
        StorageHealth {
            ok: st.failed.is_none(),
            failed_at_ms: st.failed.as_ref().map(|f| f.0),
            error: st.failed.as_ref().map(|f| f.1.clone()),
            pending: st.pending.len(),
        }
    }

    fn check_writable(&self) -> Result<(), ApiError> {
        match &lock(&self.storage).failed {
            Some((_, error)) => Err(storage_unavailable(error)),
            None => Ok(()),
        }
    }

    /// The ledger failed to write: stop the needles, refuse changes, keep records for later.
    fn degrade(&self, error: &LedgerError) {
        let first = {
            let mut st = lock(&self.storage);
            if st.failed.is_some() {
                false
            } else {
                let at = unix_ms();
                st.failed = Some((at, error.to_string()));
                let event = Event::new(at, crate::store::SYSTEM_ACTOR, "storage_failed")
                    .detail(json!({ "error": error.to_string(), "action": "needles stopped" }));
                st.pending.push((
                    None,
                    Arc::new(move |s: &mut Store| s.append_event(&event).map(|_| ())),
                ));
                true
            }
        };
        // Stopping is always allowed; the heartbeat thread and the monitor repeat it.
        let _ = self.control.send(Command::Disarm);
        if first {
            tracing::error!(error = %error, "the ledger cannot write: needles stopped, changes refused until it can");
        }
    }

    /// A write the service has not acted on yet (an intent, a new session, a binding): on
    /// failure nothing is done and nothing is kept; if the ledger cannot write, the service
    /// degrades and the caller gets `storage_unavailable`.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.check_writable()?;
        match self.ledger.write(f).await {
            Ok(v) => Ok(v),
            Err(e) => {
                if e.is_unavailable() {
                    self.degrade(&e);
                }
                Err(ledger_error(e))
            }
        }
    }

    /// The record of something that already happened (to the rig, or seen from it): written
    /// now, or, when the ledger cannot write, kept in order and retried until it is. Returns
    /// whether it was written now; a refusal by the ledger (not a storage failure) is an
    /// error. A `key` queues a record once while degraded (the monitor sees the same change
    /// every pass until it is written).
    async fn persist(
        &self,
        key: Option<String>,
        f: impl Fn(&mut Store) -> Result<(), LedgerError> + Send + Sync + 'static,
    ) -> Result<bool, LedgerError> {
        let f: Pending = Arc::new(f);
        {
            let mut st = lock(&self.storage);
            if st.failed.is_some() {
                if key.is_none() || !st.pending.iter().any(|(k, _)| *k == key) {
                    st.pending.push((key, f));
                }
                return Ok(false);
            }
        }
        let g = Arc::clone(&f);
        match self.ledger.write(move |s| g(s)).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_unavailable() => {
                self.degrade(&e);
                lock(&self.storage).pending.push((key, f));
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// [`persist`](Self::persist) for a handler: `storage_unavailable` unless written now.
    async fn persist_or_refuse(
        &self,
        f: impl Fn(&mut Store) -> Result<(), LedgerError> + Send + Sync + 'static,
    ) -> Result<(), ApiError> {
        match self.persist(None, f).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(self
                .check_writable()
                .err()
                .unwrap_or_else(|| storage_unavailable("a record is waiting to be written"))),
            Err(e) => Err(ledger_error(e)),
        }
    }

    /// While degraded: keep the needles stopped and retry the kept records in order; once all
    /// are written, record the recovery and accept changes again.
    async fn retry_storage(&self, t: &needle_core::Telemetry) {
        let batch = {
            let mut st = lock(&self.storage);
            if st.failed.is_none() {
                return;
            }
            if st.last_retry.is_some_and(|l| l.elapsed() < RETRY_EVERY) {
                None
            } else {
                st.last_retry = Some(Instant::now());
                Some(std::mem::take(&mut st.pending))
            }
        };
        if matches!(t.state, State::Armed | State::Running | State::Paused) {
            let _ = self.control.send(Command::Disarm);
        }
        let Some(batch) = batch else { return };
        let written = batch.len();
        let result = self
            .ledger
            .write(move |s| {
                let mut items = batch.into_iter();
                while let Some((key, job)) = items.next() {
                    match job(s) {
                        Ok(()) => {}
                        Err(e) if e.is_unavailable() => {
                            let mut rest = vec![(key, job)];
                            rest.extend(items);
                            return Ok(rest);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "the ledger refused a kept record; dropped");
                        }
                    }
                }
                Ok(Vec::new())
            })
            .await;
        let rest = match result {
            Ok(rest) => rest,
            Err(e) => {
                tracing::error!(error = %e, "the ledger thread is gone: kept records lost");
                Vec::new()
            }
        };
        let (empty, failed_at) = {
            let mut st = lock(&self.storage);
            let newer = std::mem::take(&mut st.pending);
            let written = written - rest.len();
            if written > 0 {
                tracing::info!(
                    written,
                    "records kept while the ledger was failing are written"
                );
            }
            st.pending = rest;
            st.pending.extend(newer);
            (st.pending.is_empty(), st.failed.as_ref().map_or(0, |f| f.0))
        };
        if !empty {
            return;
        }
        let event = Event::new(unix_ms(), crate::store::SYSTEM_ACTOR, "storage_recovered")
            .detail(json!({ "failed_at_ms": failed_at }));
        if let Err(e) = self.ledger.write(move |s| s.append_event(&event)).await {
            tracing::error!(error = %e, "the ledger failed again while recovering");
            return;
        }
        let mut st = lock(&self.storage);
        if st.pending.is_empty() {
            st.failed = None;
            st.last_retry = None;
            tracing::warn!("the ledger writes again: changes accepted; the rig stays disarmed until armed again");
        }
    }

    /// The session that holds the pen, if any.
    pub fn active_session(&self) -> Option<SessionId> {
        lock(&self.active).as_ref().map(|a| a.session)
    }

    /// Appends an event that records something that already happened (see `persist`).
    async fn record(&self, key: Option<String>, event: Event) {
        let kind = event.kind.clone();
        if let Err(e) = self
            .persist(key, move |s| s.append_event(&event).map(|_| ()))
            .await
        {
            tracing::error!(error = %e, %kind, "could not append an event");
        }
    }

    /// Sends a command to the controller, recording it with the actor; a refusal is an error
    /// and changes nothing.
    pub async fn command(
        &self,
        actor: &Actor,
        command: Command,
        session: Option<SessionId>,
    ) -> Result<(), ApiError> {
        self.command_with_reason(actor, command, session, None)
            .await
    }

    /// Record, then act: the request (with its reason) is written first and the controller
    /// gets the command only if that write succeeded; the verdict is written next, kept for
    /// later if the ledger fails in between (then the needles are stopped and the caller gets
    /// `storage_unavailable`).
    async fn command_with_reason(
        &self,
        actor: &Actor,
        command: Command,
        session: Option<SessionId>,
        reason: Option<&str>,
    ) -> Result<(), ApiError> {
        let mut intent = Event::new(unix_ms(), &actor.name, kinds::COMMAND)
            .detail(json!({ "command": format!("{command:?}"), "phase": "requested" }));
        if let Some(id) = session {
            intent = intent.session(id);
        }
        if let Some(r) = reason {
            intent = intent.reason(r);
        }
        self.write(move |s| s.append_event(&intent)).await?;
        let verdict = self.control.command(command).await?;
        let mut event = Event::new(unix_ms(), &actor.name, kinds::COMMAND)
            .detail(json!({ "command": format!("{command:?}"), "accepted": verdict.is_ok() }));
        if let Some(id) = session {
            event = event.session(id);
        }
        if let Err(r) = verdict {
            event = event.reason(r.code());
        }
        self.persist_or_refuse(move |s| s.append_event(&event).map(|_| ()))
            .await?;
        verdict.map_err(ApiError::from)
    }

    /// Homes the depth axis.
    pub async fn home(&self, actor: &Actor) -> Result<(), ApiError> {
        self.command(actor, Command::Home, None).await
    }

    /// Clears latched faults, with a reason. The reason is checked as the ledger will check
    /// the override event before anything is cleared: a reason the ledger would refuse clears
    /// nothing.
    pub async fn clear_faults(&self, actor: &Actor, reason: &str) -> Result<(), ApiError> {
        if reason.trim().is_empty() {
            return Err(ApiError::bad_request(
                "reason_required",
                "clearing faults needs a reason",
            ));
        }
        crate::store::check_reason(reason)?;
        let faults: Vec<&str> = self
            .control
            .snapshot()
            .telemetry
            .faults
            .iter()
            .map(Fault::code)
            .collect();
        let session = self.active_session();
        self.command_with_reason(actor, Command::ClearFaults, session, Some(reason))
            .await?;
        let mut event = Event::new(unix_ms(), &actor.name, kinds::OVERRIDE)
            .reason(reason)
            .detail(json!({ "action": "clear_faults", "faults": faults }));
        if let Some(id) = session {
            event = event.session(id);
        }
        self.persist_or_refuse(move |s| s.append_event(&event).map(|_| ()))
            .await
    }

    /// A tag image for a fresh sim cartridge, signed with this device's key. Refused unless
    /// the service runs on the sim backend: on a real rig only the factory signs tags.
    pub fn sim_tag(
        &self,
        id: Option<String>,
        lot: Option<String>,
        needles: Option<tag::Needles>,
        expiry: Option<tag::Date>,
    ) -> Result<Vec<u8>, ApiError> {
        if self.sim.is_none() {
            return Err(ApiError::not_found(
                "sim tags exist only on the sim backend",
            ));
        }
        let now = now()?;
        let id = id.unwrap_or_else(|| format!("SIM-{:08X}", rand::random::<u32>()));
        let expiry = match expiry {
            Some(d) => d,
            None => tag::Date::from_days_since_epoch(now.today.days_since_epoch() + 365)
                .unwrap_or(now.today),
        };
        let data = tag::TagData::new(
            &id,
            lot.unwrap_or_else(|| "SIM-LOT".into()),
            needles.unwrap_or(tag::Needles::Pins12),
            expiry,
        )?;
        Ok(tag::encode(&data, &self.key))
    }

    /// Creates a session.
    pub async fn create_session(
        &self,
        actor: &Actor,
        req: CreateSession,
    ) -> Result<SessionRecord, ApiError> {
        if !self.policy.areas.contains_key(&req.area) {
            let known: Vec<&String> = self.policy.areas.keys().collect();
            return Err(ApiError::bad_request(
                "unknown_area",
                format!("unknown treatment area '{}'; known: {known:?}", req.area),
            ));
        }
        for id in req.checklist.keys() {
            if !self.policy.checklist.iter().any(|c| &c.id == id) {
                return Err(ApiError::bad_request(
                    "unknown_checklist_item",
                    format!("unknown checklist item '{id}'"),
                ));
            }
        }
        let checklist = self
            .policy
            .checklist
            .iter()
            .map(|c| ChecklistItem {
                item: c.id.clone(),
                confirmed: req.checklist.get(&c.id).copied().unwrap_or(false),
            })
            .collect();
        let override_ = match req.override_reason {
            Some(reason) => {
                if actor.role != Role::Technician {
                    return Err(ApiError::forbidden(
                        "overriding the session interval needs a technician",
                    ));
                }
                Some(Override {
                    actor: actor.name.clone(),
                    reason,
                })
            }
            None => None,
        };
        let new = NewSession {
            operator: req.operator,
            subject_ref: req.subject_ref,
            area: req.area,
            checklist,
        };
        let interval = i64::try_from(self.policy.min_interval.as_millis()).unwrap_or(i64::MAX);
        self.write(move |s| s.create_session(&new, unix_ms(), interval, override_.as_ref()))
            .await
    }

    /// A session by id.
    pub async fn session(&self, id: SessionId) -> Result<SessionRecord, ApiError> {
        self.read(move |s| s.session(id))
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no session {id}")))
    }

    /// Reads the seated cartridge's tag on a blocking thread (an I2C transfer), never on a
    /// tokio worker and never under a lock the rest of the service needs.
    async fn read_tag(&self) -> Result<Tag, ApiError> {
        let tags = Arc::clone(&self.tags);
        let image = tokio::task::spawn_blocking(move || lock(&tags).read_tag())
            .await
            .map_err(|e| ApiError::new(500, "tag_read_failed", format!("tag reader: {e}")))?
            .map_err(|e| {
                ApiError::new(
                    503,
                    "tag_read_failed",
                    format!("cannot read the cartridge tag: {e}"),
                )
            })?
            .ok_or_else(|| {
                ApiError::conflict(
                    "cartridge_missing",
                    "no cartridge tag answers: seat a cartridge",
                )
            })?;
        Ok(tag::parse(&image, &self.key)?)
    }

    fn check_pen_free(&self, id: SessionId) -> Result<(), ApiError> {
        match lock(&self.active).as_ref() {
            Some(a) if a.session != id => Err(ApiError::conflict(
                "pen_in_use",
                format!("session {} holds the pen", a.session),
            )),
            _ => Ok(()),
        }
    }

    /// Binds the seated cartridge to a session.
    #[tracing::instrument(skip_all, fields(session = id, actor = %actor.name))]
    pub async fn bind_cartridge(
        &self,
        actor: &Actor,
        id: SessionId,
    ) -> Result<CartridgeRecord, ApiError> {
        self.check_pen_free(id)?;
        self.check_writable()?;
        let tag = self.read_tag().await?;
        let area = self.session(id).await?.area;
        // The ledger binds a cartridge once and a session once, so a racing bind is refused
        // there; the pen is checked again before it is taken.
        self.check_pen_free(id)?;
        let (now, limits, name) = (now()?, self.policy.limits, actor.name.clone());
        let record = self
            .write(move |s| s.bind(id, &tag, now, &limits, &name))
            .await?;
        let mut active = lock(&self.active);
        *active = Some(Active {
            session: id,
            cartridge: record.id.clone(),
            time_limit: self
                .policy
                .area_time_limits
                .get(&area)
                .copied()
                .unwrap_or(self.policy.time_limit),
            run_ms: 0,
            strokes: 0,
            unflushed_run_ms: 0,
            unflushed_strokes: 0,
            last_stroke_count: None,
            started_at: None,
            warned: false,
            stop_failed: false,
        });
        Ok(record)
    }

    fn require_active(&self, id: SessionId) -> Result<Active, ApiError> {
        match lock(&self.active).as_ref() {
            Some(a) if a.session == id => Ok(a.clone()),
            _ => Err(ApiError::conflict(
                "session_not_active",
                format!("session {id} does not hold the pen"),
            )),
        }
    }

    fn area_ceiling(&self, session: &SessionRecord) -> Result<Micrometers, ApiError> {
        self.policy
            .areas
            .get(&session.area)
            .copied()
            .ok_or_else(|| {
                ApiError::conflict(
                    "unknown_area",
                    format!("area '{}' is no longer configured", session.area),
                )
            })
    }

    fn check_depth(&self, session: &SessionRecord, depth: i32) -> Result<Micrometers, ApiError> {
        let ceiling = self.area_ceiling(session)?;
        if depth < 0 || depth > ceiling.0 {
            return Err(ApiError::bad_request(
                "depth_above_area_ceiling",
                format!(
                    "depth {depth} um is outside 0..={} um for area '{}'",
                    ceiling.0, session.area
                ),
            ));
        }
        Ok(Micrometers(depth))
    }

    /// Arms a bound session with its setpoints.
    #[tracing::instrument(skip_all, fields(session = id, actor = %actor.name))]
    pub async fn arm(
        &self,
        actor: &Actor,
        id: SessionId,
        set: Setpoints,
    ) -> Result<SessionRecord, ApiError> {
        self.session(id).await?;
        self.require_active(id)?;
        self.check_writable()?;
        // The tag is read before the session lock is taken: a slow I2C read must not hold up
        // the monitor. The cartridge is checked against the ledger under the lock.
        let tag = self.read_tag().await?;
        let _ops = self.ops.lock().await;
        let session = self.session(id).await?;
        let active = self.require_active(id)?;
        self.require_monitor()?;
        if session.state != SessionState::Bound {
            return Err(ApiError::conflict(
                "session_wrong_state",
                format!("session is {}", session.state.as_str()),
            ));
        }
        let missing: Vec<&str> = self
            .policy
            .checklist
            .iter()
            .filter(|c| {
                c.required
                    && !session
                        .checklist
                        .iter()
                        .any(|a| a.item == c.id && a.confirmed)
            })
            .map(|c| c.id.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(ApiError::conflict(
                "checklist_incomplete",
                format!("checklist items not confirmed: {missing:?}"),
            ));
        }
        let (Some(depth), Some(rate)) = (set.depth_um, set.rate_mhz) else {
            return Err(ApiError::bad_request(
                "setpoints_required",
                "arming needs depth_um and rate_mhz",
            ));
        };
        let depth = self.check_depth(&session, depth)?;
        let ceiling = self.area_ceiling(&session)?;
        // The cartridge in the pen must still be the bound one, and still valid.
        let (now, limits) = (now()?, self.policy.limits);
        self.read(move |s| s.verify_bound(id, &tag, now, &limits))
            .await?;
        // The core stops the motor itself when what is left of the session's time or of the
        // cartridge's run-time or stroke budget runs out, whatever this service does next.
        // The session limit counts monotonic time from the first start, pauses included, and
        // the core counts motor time only: a backstop behind enforce_limits, never ahead of it.
        let (cart, limits) = (active.cartridge.clone(), self.policy.limits);
        let cartridge = self.read(move |s| s.cartridge(&cart, &limits)).await?;
        let session_left_ms = active.session_left_ms(monotonic_now());
        let (cartridge_run_ms, cartridge_strokes) = cartridge.map_or((0, 0), |c| {
            (
                active.run_left_ms(&c),
                c.remaining_strokes.saturating_sub(active.unflushed_strokes),
            )
        });
        self.command(
            actor,
            Command::Arm {
                depth,
                rate: MilliHertz(rate),
                ceiling,
                max_run: Micros(session_left_ms.min(cartridge_run_ms).saturating_mul(1_000)),
                max_strokes: u32::try_from(cartridge_strokes).unwrap_or(u32::MAX),
            },
            Some(id),
        )
        .await?;
        let (name, at) = (actor.name.clone(), unix_ms());
        self.persist_or_refuse(move |s| {
            s.set_session_state(id, SessionState::Armed, &name, None, at)
                .map(|_| ())
        })
        .await?;
        let (name, depth_um) = (actor.name.clone(), depth.0.unsigned_abs());
        self.persist_or_refuse(move |s| {
            s.record_setpoints(id, depth_um, rate, at, &name)
                .map(|_| ())
        })
        .await?;
        self.session(id).await
    }

    /// Starts (or resumes) the motor.
    #[tracing::instrument(skip_all, fields(session = id, actor = %actor.name))]
    pub async fn start(&self, actor: &Actor, id: SessionId) -> Result<SessionRecord, ApiError> {
        let _ops = self.ops.lock().await;
        // While the ledger cannot write, nothing changes, whatever the state.
        self.check_writable()?;
        let session = self.session(id).await?;
        self.require_active(id)?;
        self.require_monitor()?;
        if !matches!(session.state, SessionState::Armed | SessionState::Paused) {
            return Err(ApiError::conflict(
                "session_wrong_state",
                format!("session is {}", session.state.as_str()),
            ));
        }
        self.command(actor, Command::Start, Some(id)).await?;
        self.sync_state_or_refuse(id, SessionState::Running, &actor.name)
            .await
    }

    /// Pauses the motor.
    #[tracing::instrument(skip_all, fields(session = id, actor = %actor.name))]
    pub async fn pause(&self, actor: &Actor, id: SessionId) -> Result<SessionRecord, ApiError> {
        let _ops = self.ops.lock().await;
        // While the ledger cannot write, nothing changes, whatever the state.
        self.check_writable()?;
        let session = self.session(id).await?;
        self.require_active(id)?;
        if session.state != SessionState::Running {
            return Err(ApiError::conflict(
                "session_wrong_state",
                format!("session is {}", session.state.as_str()),
            ));
        }
        self.command(actor, Command::Pause, Some(id)).await?;
        self.sync_state_or_refuse(id, SessionState::Paused, &actor.name)
            .await
    }

    /// Changes setpoints while armed, running or paused.
    #[tracing::instrument(skip_all, fields(session = id, actor = %actor.name))]
    pub async fn set_setpoints(
        &self,
        actor: &Actor,
        id: SessionId,
        set: Setpoints,
    ) -> Result<SessionRecord, ApiError> {
        let _ops = self.ops.lock().await;
        // While the ledger cannot write, nothing changes, whatever the state.
        self.check_writable()?;
        let session = self.session(id).await?;
        self.require_active(id)?;
        if !matches!(
            session.state,
            SessionState::Armed | SessionState::Running | SessionState::Paused
        ) {
            return Err(ApiError::conflict(
                "session_wrong_state",
                format!("session is {}", session.state.as_str()),
            ));
        }
        if set.depth_um.is_none() && set.rate_mhz.is_none() {
            return Err(ApiError::bad_request(
                "setpoints_required",
                "give depth_um, rate_mhz or both",
            ));
        }
        let depth = set
            .depth_um
            .map(|d| self.check_depth(&session, d))
            .transpose()?;
        if let Some(rate) = set.rate_mhz {
            self.command(actor, Command::SetRate(MilliHertz(rate)), Some(id))
                .await?;
        }
        if let Some(depth) = depth {
            self.command(actor, Command::SetDepth(depth), Some(id))
                .await?;
        }
        let t = self.control.snapshot().telemetry;
        let depth = depth.map_or(t.depth_setpoint.0, |d| d.0);
        let rate = set.rate_mhz.unwrap_or(t.rate_setpoint.0);
        let (name, at) = (actor.name.clone(), unix_ms());
        self.persist_or_refuse(move |s| {
            s.record_setpoints(id, depth.unsigned_abs(), rate, at, &name)
                .map(|_| ())
        })
        .await?;
        self.session(id).await
    }

    /// Ends a session: motor off, cartridge spent.
    #[tracing::instrument(skip_all, fields(session = id, actor = %actor.name))]
    pub async fn end(
        &self,
        actor: &Actor,
        id: SessionId,
        reason: &str,
    ) -> Result<SessionRecord, ApiError> {
        let _ops = self.ops.lock().await;
        let session = self.session(id).await?;
        if session.state.is_terminal() {
            return Err(ApiError::conflict(
                "session_wrong_state",
                format!("session is {}", session.state.as_str()),
            ));
        }
        // Checked before the disarm: a reason the ledger refuses must leave the needles armed
        // and the session as it was.
        crate::store::check_reason(reason)?;
        let holds_pen = self.active_session() == Some(id);
        if matches!(
            session.state,
            SessionState::Armed | SessionState::Running | SessionState::Paused
        ) || (holds_pen && self.core_armed())
        {
            // Disarm first, whatever the ledger's health: stopping is always allowed, and is
            // recorded (as the controller leaving the armed states) even while degraded. A
            // failed disarm keeps the session: the needles may still be armed.
            self.disarm().await?;
        }
        // An end is acknowledged only once it is written; while the ledger cannot write,
        // the session stays open on disk, the needles stay stopped, and the operator ends it
        // again once the ledger recovers.
        self.write(self.finish_job(id, actor.name.clone(), reason.to_string()))
            .await?;
        self.release(id);
        self.session(id).await
    }

    /// The ledger write that ends (or, never bound, aborts) a session with its totals.
    fn finish_job(
        &self,
        id: SessionId,
        actor: String,
        reason: String,
    ) -> impl Fn(&mut Store) -> Result<(), LedgerError> + Send + Sync + 'static {
        let (run_ms, strokes) = match lock(&self.active).as_ref() {
            Some(a) if a.session == id => (a.run_ms, a.strokes),
            _ => (0, 0),
        };
        let at = unix_ms();
        move |s: &mut Store| {
            let session = s.session(id)?.ok_or_else(|| LedgerError::NotFound {
                what: "session",
                id: id.to_string(),
            })?;
            if session.state.is_terminal() {
                return Ok(());
            }
            if session.state == SessionState::Created {
                s.set_session_state(id, SessionState::Aborted, &actor, Some(&reason), at)?;
            } else {
                s.end_session(id, at, run_ms, strokes, &reason, &actor)?;
            }
            Ok(())
        }
    }

    /// The session no longer holds the pen.
    fn release(&self, id: SessionId) {
        let mut active = lock(&self.active);
        if active.as_ref().is_some_and(|a| a.session == id) {
            *active = None;
        }
    }

    /// Ends a session on the service's own account (cartridge pulled, a limit, a recall):
    /// the pen is released at once, the record follows, kept for later while degraded.
    async fn finish_now(&self, id: SessionId, actor: &str, reason: &str) -> Result<(), ApiError> {
        let job = self.finish_job(id, actor.to_string(), reason.to_string());
        self.release(id);
        self.persist(Some(format!("finish:{id}")), job)
            .await
            .map(|_| ())
            .map_err(ledger_error)
    }

    /// Records a session state the controller reached; returns whether it is written now.
    async fn sync_state(
        &self,
        id: SessionId,
        to: SessionState,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<bool, LedgerError> {
        let (actor, reason, at) = (actor.to_string(), reason.map(str::to_string), unix_ms());
        // Check and write in one job on the ledger thread: the monitor and a handler may
        // sync together.
        let written = self
            .persist(Some(format!("state:{id}:{}", to.as_str())), move |s| {
                let current = s.session(id)?.ok_or_else(|| LedgerError::NotFound {
                    what: "session",
                    id: id.to_string(),
                })?;
                if current.state == to {
                    return Ok(());
                }
                s.set_session_state(id, to, &actor, reason.as_deref(), at)
                    .map(|_| ())
            })
            .await?;
        if to == SessionState::Running {
            if let Some(a) = lock(&self.active).as_mut() {
                a.started_at.get_or_insert(monotonic_now());
            }
        }
        Ok(written)
    }

    async fn sync_state_or_refuse(
        &self,
        id: SessionId,
        to: SessionState,
        actor: &str,
    ) -> Result<SessionRecord, ApiError> {
        if !self
            .sync_state(id, to, actor, None)
            .await
            .map_err(ledger_error)?
        {
            self.check_writable()?;
        }
        self.session(id).await
    }

    /// One look at the controller: record faults and state changes, follow the pedal, count
    /// usage, enforce budgets and the time limit. Called every few milliseconds; a completed
    /// pass is what the dead-man heartbeat counts as the service's progress.
    pub async fn monitor(&self) {
        {
            let _ops = self.ops.lock().await;
            let fault = lock(&self.sim_monitor_fault).take();
            match fault {
                Some(MonitorFault::Panic) => panic!("sim injection: the monitor pass panics"),
                Some(MonitorFault::Stall(d)) => tokio::time::sleep(d).await,
                None => {}
            }
            self.monitor_pass_locked().await;
        }
        self.monitor_pass
            .store(monotonic_now().0, Ordering::Release);
    }

    async fn monitor_pass_locked(&self) {
        let snap: Snapshot = self.control.snapshot();
        let t = snap.telemetry;
        let now_ms = unix_ms();
        let now = monotonic_now();
        let (new_faults, state_changed, elapsed_ms, opened) = {
            let mut seen = lock(&self.seen);
            // The core counts every opening of the cartridge switch: a changed count is a
            // pull, even one re-seated before this look.
            let opened = seen
                .cartridge_openings
                .is_some_and(|n| n != t.cartridge_openings);
            seen.cartridge_openings = Some(t.cartridge_openings);
            let new = t.faults.without(seen.faults);
            let changed = seen.state != Some(t.state);
            let elapsed = seen.last_at.map_or(0, |l| ms_between(l, now));
            seen.faults = t.faults;
            seen.state = Some(t.state);
            seen.last_at = Some(now);
            (new, changed, elapsed, opened)
        };
        self.retry_storage(&t).await;
        let active = lock(&self.active).clone();
        if !new_faults.is_empty() {
            let codes: Vec<&str> = new_faults.iter().map(Fault::code).collect();
            tracing::warn!(faults = ?codes, "fault latched: motor off");
            let mut event =
                Event::new(now_ms, crate::store::SYSTEM_ACTOR, kinds::FAULT).detail(json!({
                    "faults": codes,
                    "state": format!("{:?}", t.state),
                    "depth_um": t.depth_position.0,
                    "rate_mhz": t.rate_measured.0,
                }));
            if let Some(a) = &active {
                event = event.session(a.session).cartridge(a.cartridge.clone());
            }
            self.record(None, event).await;
        }
        if state_changed {
            self.record(
                None,
                Event::new(now_ms, crate::store::SYSTEM_ACTOR, "controller_state")
                    .detail(json!({ "state": format!("{:?}", t.state) })),
            )
            .await;
        }
        self.reconcile(&t, active.as_ref(), now_ms).await;
        let Some(a) = active else { return };
        let Ok(session) = self.session(a.session).await else {
            return;
        };
        if session.state.is_terminal() {
            return;
        }
        self.account(&t, elapsed_ms).await;
        if opened
            || new_faults.contains(Fault::CartridgeRemoved)
            || t.interlocks
                .contains(needle_core::Interlock::CartridgeMissing)
        {
            // A cartridge pulled mid-session (armed or merely bound) is spent: it left its
            // seat after leaving its sterile package. The session is over.
            tracing::warn!(session = a.session, cartridge = %a.cartridge, "cartridge removed mid-session: spent");
            if let Err(e) = self
                .finish_now(
                    a.session,
                    crate::store::SYSTEM_ACTOR,
                    "cartridge removed during the session",
                )
                .await
            {
                tracing::error!(error = %e, "could not end the session after cartridge removal");
            }
            return;
        }
        let open = matches!(
            session.state,
            SessionState::Armed | SessionState::Running | SessionState::Paused
        );
        if let Some(limit) = t.arming_ended_by.filter(|_| open) {
            // The core stopped the motor at a budget given in this session's Arm: the same
            // stop as enforce_limits', made without waiting for this service. Its run time
            // was the smaller of the session's time and the cartridge's run-time budget left.
            let session_left_ms = a.session_left_ms(now);
            let (cart, limits) = (a.cartridge.clone(), self.policy.limits);
            let cartridge_left_ms = self
                .read(move |s| s.cartridge(&cart, &limits))
                .await
                .ok()
                .flatten()
                .map_or(0, |c| a.run_left_ms(&c));
            let reason = match limit {
                needle_core::ArmingLimit::RunTime if session_left_ms < cartridge_left_ms => {
                    "session time limit reached"
                }
                _ => "cartridge run-time or stroke budget exhausted",
            };
            tracing::warn!(
                session = a.session,
                limit = limit.code(),
                "arming ended by the controller"
            );
            if let Err(e) = self
                .finish_now(a.session, crate::store::SYSTEM_ACTOR, reason)
                .await
            {
                tracing::error!(error = %e, "could not end the session at its limit");
            }
            return;
        }
        let result = match t.state {
            State::Running
                if matches!(session.state, SessionState::Armed | SessionState::Paused) =>
            {
                self.sync_state(a.session, SessionState::Running, "pedal", None)
                    .await
                    .map(|_| ())
            }
            State::Paused if session.state == SessionState::Running => self
                .sync_state(a.session, SessionState::Paused, "pedal", None)
                .await
                .map(|_| ()),
            State::Fault | State::EStop | State::Idle | State::Boot if open => {
                // The controller left the armed states (a fault): the session must be re-armed.
                self.sync_state(
                    a.session,
                    SessionState::Bound,
                    crate::store::SYSTEM_ACTOR,
                    Some("controller disarmed"),
                )
                .await
                .map(|_| ())
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "could not follow the controller's state");
        }
        self.enforce_limits(now_ms, now).await;
    }

    /// The core armed, running or paused with no session that the ledger shows armed: nothing
    /// would watch it (time limit, budgets) while the pedal could start it. Disarm, and record
    /// it; a failed disarm is retried on the next pass.
    async fn reconcile(&self, t: &needle_core::Telemetry, active: Option<&Active>, now_ms: i64) {
        if !matches!(t.state, State::Armed | State::Running | State::Paused) {
            return;
        }
        let session = match active {
            None => None,
            Some(a) => match self.session(a.session).await {
                Ok(s) => Some(s),
                // The ledger cannot say; that is the storage path's to handle.
                Err(_) => return,
            },
        };
        if session.as_ref().is_some_and(|s| {
            matches!(
                s.state,
                SessionState::Armed | SessionState::Running | SessionState::Paused
            )
        }) {
            return;
        }
        tracing::error!(
            state = ?t.state,
            session = ?session.as_ref().map(|s| (s.id, s.state.as_str())),
            "the controller is armed without an armed session: disarming"
        );
        let result = self.disarm().await;
        let mut event =
            Event::new(now_ms, crate::store::SYSTEM_ACTOR, "reconcile_disarm").detail(json!({
                "state": format!("{:?}", t.state),
                "session_state": session.as_ref().map(|s| s.state.as_str()),
                "disarmed": result.is_ok(),
                "error": result.as_ref().err().map(|e| e.code.clone()),
            }));
        if let Some(s) = &session {
            event = event.session(s.id);
        }
        self.record(None, event).await;
    }

    async fn account(&self, t: &needle_core::Telemetry, elapsed_ms: u64) {
        let flush = {
            let mut guard = lock(&self.active);
            let Some(a) = guard.as_mut() else { return };
            let strokes = a
                .last_stroke_count
                .map_or(0, |last| u64::from(t.stroke_count.wrapping_sub(last)));
            a.last_stroke_count = Some(t.stroke_count);
            if t.state == State::Running {
                a.run_ms += elapsed_ms;
                a.unflushed_run_ms += elapsed_ms;
            }
            a.strokes += strokes;
            a.unflushed_strokes += strokes;
            if a.unflushed_run_ms >= 1_000 || a.unflushed_strokes >= 1_000 {
                let f = (a.cartridge.clone(), a.unflushed_run_ms, a.unflushed_strokes);
                a.unflushed_run_ms = 0;
                a.unflushed_strokes = 0;
                Some(f)
            } else {
                None
            }
        };
        if let Some((cartridge, run_ms, strokes)) = flush {
            let limits = self.policy.limits;
            if let Err(e) = self
                .persist(None, move |s| {
                    s.add_usage(&cartridge, run_ms, strokes, &limits)
                        .map(|_| ())
                })
                .await
            {
                tracing::error!(error = %e, "could not record cartridge usage");
            }
        }
    }

    /// `now_ms` (wall clock) is for the records only; `now` (monotonic) measures the time.
    async fn enforce_limits(&self, now_ms: i64, now: Micros) {
        let Some(a) = lock(&self.active).clone() else {
            return;
        };
        let (cartridge, limits) = (a.cartridge.clone(), self.policy.limits);
        let budget_gone = self
            .read(move |s| s.cartridge(&cartridge, &limits))
            .await
            .ok()
            .flatten()
            .is_some_and(|c| c.budget_exhausted() || a.run_left_ms(&c) == 0);
        let limit_ms = i64::try_from(a.time_limit.as_millis()).unwrap_or(i64::MAX);
        let warn_ms = limit_ms - i64::try_from(self.policy.warning_before.as_millis()).unwrap_or(0);
        let used = a
            .started_at
            .map_or(0, |s| i64::try_from(ms_between(s, now)).unwrap_or(i64::MAX));
        if a.started_at.is_some() && used >= warn_ms && !a.warned {
            if let Some(x) = lock(&self.active).as_mut() {
                x.warned = true;
            }
            tracing::warn!(session = a.session, "session time limit approaching");
            self.record(
                None,
                Event::new(now_ms, crate::store::SYSTEM_ACTOR, "time_limit_warning")
                    .session(a.session)
                    .detail(json!({ "limit_ms": limit_ms, "used_ms": used })),
            )
            .await;
        }
        let reason = if a.started_at.is_some() && used >= limit_ms {
            Some("session time limit reached")
        } else if budget_gone {
            Some("cartridge run-time or stroke budget exhausted")
        } else {
            None
        };
        if let Some(reason) = reason {
            // The session ends only once the needles are known to be disarmed; until then
            // every pass tries again.
            if let Err(e) = self.disarm().await {
                if !a.stop_failed {
                    if let Some(x) = lock(&self.active).as_mut() {
                        x.stop_failed = true;
                    }
                    tracing::error!(session = a.session, error = %e, reason, "could not disarm at a limit: retrying");
                    self.record(
                        None,
                        Event::new(now_ms, crate::store::SYSTEM_ACTOR, "disarm_failed")
                            .session(a.session)
                            .reason(reason)
                            .detail(json!({ "error": e.code })),
                    )
                    .await;
                }
                return;
            }
            if let Err(e) = self
                .finish_now(a.session, crate::store::SYSTEM_ACTOR, reason)
                .await
            {
                tracing::error!(error = %e, "could not end the session at its limit");
            }
        }
    }
}

impl Service {
    /// Recalls a lot; a session running on a cartridge of that lot is stopped and ended.
    pub async fn recall_lot(
        &self,
        actor: &Actor,
        lot: &str,
        reason: &str,
    ) -> Result<Vec<String>, ApiError> {
        let _ops = self.ops.lock().await;
        if reason.trim().is_empty() {
            return Err(ApiError::bad_request(
                "reason_required",
                "a recall needs a reason",
            ));
        }
        crate::store::check_reason(reason)?;
        // Stop the pen first if it runs on the recalled lot: a recall that cannot stop the
        // needles is refused and records nothing, and the technician tries again.
        let active = lock(&self.active).clone();
        let on_lot = match &active {
            Some(a) => {
                let (id, limits) = (a.cartridge.clone(), self.policy.limits);
                self.read(move |s| s.cartridge(&id, &limits))
                    .await?
                    .is_some_and(|c| c.lot == lot)
            }
            None => false,
        };
        if on_lot {
            self.disarm().await?;
        }
        let (lot_, reason_, name) = (lot.to_string(), reason.to_string(), actor.name.clone());
        let in_use = self
            .write(move |s| s.recall_lot(&lot_, &reason_, &name, unix_ms()))
            .await?;
        if let Some(a) = active {
            if in_use.iter().any(|c| c.cartridge_id == a.cartridge) {
                // The recall is written; the end of the session is kept for later if the
                // ledger fails now.
                self.finish_now(a.session, &actor.name, "cartridge lot recalled")
                    .await?;
            }
        }
        Ok(in_use.into_iter().map(|c| c.cartridge_id).collect())
    }
}
