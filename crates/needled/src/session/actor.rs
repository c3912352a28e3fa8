//! The session owner: the task that holds the session state, its messages, its loop, and the
//! supervisor that stops the needles if it dies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use needle_core::units::Micros;
use needle_core::{Command, Faults, State};
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};

use super::monitor::Stamp;
use super::storage::Records;
use super::types::{Actor, MonitorFault, Policy, Setpoints, StorageHealth};
use super::unix_ms;
use crate::cartridge::Tag;
use crate::control::{ControlError, ControlHandle};
use crate::error::{ApiError, ErrorCode};
use crate::ledger::Ledger;
use crate::store::{
    CartridgeRecord, ChecklistItem, Event, NewSession, Override, SessionId, SessionRecord,
};

/// A ledger write of a treatment plan, run by the owner.
pub(super) type PlanJob = dyn FnOnce(&mut crate::store::Store) -> Result<crate::store::PlanRecord, crate::store::LedgerError>
    + Send;

/// Where the owner sends its answer to one message.
pub(super) type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

/// What the handle asks the owner. Every request carries its reply channel; the sim's
/// injections need none. The channel is unbounded because every sender but those injections
/// awaits its reply: the queue holds at most one message per caller.
pub(super) enum Msg {
    /// Record a command, send it, record the verdict.
    Command {
        actor: Actor,
        command: Command,
        session: Option<SessionId>,
        reply: Reply<()>,
    },
    /// Clear latched faults with a (checked) reason.
    ClearFaults {
        actor: Actor,
        reason: String,
        reply: Reply<()>,
    },
    /// Write a new (checked) session.
    CreateSession {
        new: NewSession,
        override_: Option<Override>,
        /// The plan it is the next session of.
        plan: Option<crate::store::PlanId>,
        reply: Reply<SessionRecord>,
    },
    /// Append a (checked) event from the service.
    RecordEvent { event: Event, reply: Reply<i64> },
    /// Write a (checked) change to a treatment plan.
    PlanWrite {
        job: Box<PlanJob>,
        reply: Reply<crate::store::PlanRecord>,
    },
    /// Bind the cartridge whose tag the handle read to a session in `area`.
    Bind {
        actor: Actor,
        id: SessionId,
        tag: Tag,
        area: String,
        reply: Reply<CartridgeRecord>,
    },
    /// Merge (checked) checklist answers into a created or bound session.
    Checklist {
        actor: Actor,
        id: SessionId,
        answers: Vec<ChecklistItem>,
        reply: Reply<SessionRecord>,
    },
    /// Arm a bound session; `seated` is the seated cartridge, read and challenged by the
    /// handle.
    Arm {
        actor: Actor,
        id: SessionId,
        set: Setpoints,
        seated: super::seat::Seated,
        reply: Reply<SessionRecord>,
    },
    /// Start or resume the motor.
    Start {
        actor: Actor,
        id: SessionId,
        reply: Reply<SessionRecord>,
    },
    /// Pause the motor.
    Pause {
        actor: Actor,
        id: SessionId,
        reply: Reply<SessionRecord>,
    },
    /// Change setpoints.
    SetSetpoints {
        actor: Actor,
        id: SessionId,
        set: Setpoints,
        reply: Reply<SessionRecord>,
    },
    /// End a session.
    End {
        actor: Actor,
        id: SessionId,
        reason: String,
        reply: Reply<SessionRecord>,
    },
    /// Recall a lot (reason checked).
    RecallLot {
        actor: Actor,
        lot: String,
        reason: String,
        reply: Reply<Vec<String>>,
    },
    /// Run one monitor pass.
    Tick { reply: oneshot::Sender<()> },
    /// Sim: the next monitor pass fails so.
    BreakMonitor(MonitorFault),
    /// Sim: the next this many disarms fail.
    FailDisarms(u32),
}

/// The session that holds the pen (bound cartridge), with its running totals.
#[derive(Debug, Clone)]
pub(super) struct Active {
    pub(super) session: SessionId,
    pub(super) cartridge: String,
    pub(super) time_limit: Duration,
    pub(super) run_ms: u64,
    pub(super) strokes: u64,
    pub(super) unflushed_run_ms: u64,
    pub(super) unflushed_strokes: u64,
    pub(super) last_stroke_count: Option<u32>,
    /// The first start, on the monotonic clock: the time limit counts from here.
    pub(super) started_at: Option<Micros>,
    pub(super) warned: bool,
    /// This session advanced the cartridge chip's use counter (at its first arming).
    pub(super) chip_advanced: bool,
    /// A stop at a limit failed and is being retried (recorded once).
    pub(super) stop_failed: bool,
}

impl Active {
    /// A session that has just taken the pen with `cartridge`.
    pub(super) fn new(session: SessionId, cartridge: String, time_limit: Duration) -> Self {
        Active {
            session,
            cartridge,
            time_limit,
            run_ms: 0,
            strokes: 0,
            unflushed_run_ms: 0,
            unflushed_strokes: 0,
            last_stroke_count: None,
            started_at: None,
            warned: false,
            chip_advanced: false,
            stop_failed: false,
        }
    }

    /// What is left of the session's time limit at `now` (monotonic), ms: the whole limit
    /// before the first start.
    pub(super) fn session_left_ms(&self, now: Micros) -> u64 {
        u64::try_from(self.time_limit.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_sub(self.started_at.map_or(0, |s| ms_between(s, now)))
    }

    /// What is left of the cartridge's run-time budget, ms, counting the usage not yet
    /// flushed to the ledger.
    pub(super) fn run_left_ms(&self, c: &CartridgeRecord) -> u64 {
        c.remaining_run_ms.saturating_sub(self.unflushed_run_ms)
    }
}

/// Milliseconds on the monotonic clock from `since` to `now`.
pub(super) fn ms_between(since: Micros, now: Micros) -> u64 {
    now.since(since).0 / 1_000
}

/// What the monitor remembers between looks at the controller.
#[derive(Debug, Default)]
pub(super) struct Seen {
    pub(super) state: Option<State>,
    pub(super) faults: Faults,
    /// The last look, on the monotonic clock: run time is counted from these gaps.
    pub(super) last_at: Option<Micros>,
    /// The core's count of cartridge-switch openings at the last look.
    pub(super) cartridge_openings: Option<u32>,
}

/// The session owner's state. Only its own task touches it.
pub(super) struct Owner {
    pub(super) control: Arc<ControlHandle>,
    pub(super) policy: Arc<Policy>,
    pub(super) stamp: Arc<Stamp>,
    pub(super) records: Records,
    pub(super) active: Option<Active>,
    /// Publishes which session holds the pen.
    holder: watch::Sender<Option<SessionId>>,
    pub(super) seen: Seen,
    /// A monitor failure injected by the sim, taken by the next pass.
    monitor_fault: Option<MonitorFault>,
    /// How many of the next disarms the sim makes fail (as a full command queue would).
    failing_disarms: u32,
}

/// The handle's ends of what the owner publishes.
pub(super) type Spawned = (
    mpsc::UnboundedSender<Msg>,
    watch::Receiver<Option<SessionId>>,
    watch::Receiver<StorageHealth>,
);

/// Starts the owner on the current tokio runtime, with a supervisor that stops the needles
/// for good if it panics.
pub(super) fn spawn(
    control: Arc<ControlHandle>,
    ledger: Ledger,
    policy: Arc<Policy>,
    stamp: Arc<Stamp>,
) -> Result<Spawned, ApiError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
        ApiError::new(
            500,
            ErrorCode::RuntimeMissing,
            format!("the session owner needs a tokio runtime: {e}"),
        )
    })?;
    let (records, storage) = Records::new(ledger.clone(), Arc::clone(&control));
    let (holder, holder_seen) = watch::channel(None);
    let (tx, rx) = mpsc::unbounded_channel();
    let owner = Owner {
        control: Arc::clone(&control),
        policy,
        stamp: Arc::clone(&stamp),
        records,
        active: None,
        holder,
        seen: Seen::default(),
        monitor_fault: None,
        failing_disarms: 0,
    };
    let task = runtime.spawn(owner.run(rx));
    runtime.spawn(async move {
        let why = match task.await {
            // Every handle is gone: nothing left to supervise.
            Ok(()) => return,
            Err(e) if e.is_panic() => {
                let panic = e.into_panic();
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|m| (*m).to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".to_string());
                format!("the session owner panicked: {message}")
            }
            Err(e) => format!("the session owner was cancelled: {e}"),
        };
        owner_died(&control, &ledger, &stamp, &why).await;
    });
    Ok((tx, holder_seen, storage))
}

/// The owner has ended (`why`: it panicked): logged loudly, the heartbeat stops for good, and
/// the controller is told to disarm at once rather than waiting for the dead-man. Only a
/// restart brings the service back (the systemd watchdog is no longer fed), and a restart
/// aborts the open session. The owner's backlog died with it: the event goes straight to the
/// ledger.
async fn owner_died(control: &ControlHandle, ledger: &Ledger, stamp: &Stamp, why: &str) {
    stamp.fail();
    tracing::error!(
        why,
        "the session owner has died: the needles are stopped and the service must be restarted"
    );
    if let Err(e) = disarm(control, false).await {
        tracing::error!(
            error = %e,
            "could not disarm after the session owner died: the dead-man stops the needles"
        );
    }
    let event = Event::new(unix_ms(), crate::store::SYSTEM_ACTOR, "monitor_failed")
        .detail(json!({ "why": why }));
    if let Err(e) = ledger.write(move |s| s.append_event(&event)).await {
        tracing::error!(error = %e, "could not record that the session owner died");
    }
}

/// How long an accepted Disarm may take to show in the controller's telemetry (a pen across
/// the link reports it in its next telemetry frame).
const DISARM_SEEN_WITHIN: Duration = Duration::from_millis(200);

/// Whether the controller is in a state with the needles armed.
pub(super) fn core_armed(control: &ControlHandle) -> bool {
    matches!(
        control.snapshot().telemetry.state,
        State::Armed | State::Running | State::Paused
    )
}

/// Disarms the controller and checks that it took: `Ok` once the core is out of the armed
/// states (also when it already was); otherwise the error (a full command queue, a stopped
/// control thread, a refusal), and the caller must not act as if the needles stopped.
/// `fail` makes it fail as a full queue would (sim).
async fn disarm(control: &ControlHandle, fail: bool) -> Result<(), ApiError> {
    let result = if fail {
        Err(ControlError::Busy)
    } else {
        control.command(Command::Disarm).await
    };
    if matches!(result, Ok(Ok(()))) {
        // In process the controller publishes its snapshot before it answers; a pen across
        // the link answers first and shows the state in its next telemetry frame.
        let deadline = Instant::now() + DISARM_SEEN_WITHIN;
        while core_armed(control) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    match result {
        Ok(_) if !core_armed(control) => Ok(()),
        Ok(Ok(())) => Err(ApiError::new(
            503,
            ErrorCode::DisarmFailed,
            "the controller accepted Disarm but is still armed",
        )),
        Ok(Err(r)) => Err(r.into()),
        Err(e) => Err(e.into()),
    }
}

impl Owner {
    /// Handles one message at a time, each to its end, until every handle is dropped.
    async fn run(mut self, mut inbox: mpsc::UnboundedReceiver<Msg>) {
        while let Some(msg) = inbox.recv().await {
            self.handle(msg).await;
        }
    }

    async fn handle(&mut self, msg: Msg) {
        // A caller that went away (a dropped request) gets no answer; the work is done anyway,
        // so no change is left half made.
        match msg {
            Msg::Command {
                actor,
                command,
                session,
                reply,
            } => {
                let _ = reply.send(self.command(&actor, command, session, None).await);
            }
            Msg::ClearFaults {
                actor,
                reason,
                reply,
            } => {
                let _ = reply.send(self.clear_faults(&actor, &reason).await);
            }
            Msg::CreateSession {
                new,
                override_,
                plan,
                reply,
            } => {
                let _ = reply.send(self.create_session(new, override_, plan).await);
            }
            Msg::RecordEvent { event, reply } => {
                let _ = reply.send(self.records.write(move |s| s.append_event(&event)).await);
            }
            Msg::PlanWrite { job, reply } => {
                let _ = reply.send(self.records.write(job).await);
            }
            Msg::Bind {
                actor,
                id,
                tag,
                area,
                reply,
            } => {
                let _ = reply.send(self.bind(&actor, id, tag, &area).await);
            }
            Msg::Checklist {
                actor,
                id,
                answers,
                reply,
            } => {
                let _ = reply.send(self.update_checklist(&actor, id, answers).await);
            }
            Msg::Arm {
                actor,
                id,
                set,
                seated,
                reply,
            } => {
                let _ = reply.send(self.arm(&actor, id, set, seated).await);
            }
            Msg::Start { actor, id, reply } => {
                let _ = reply.send(self.start(&actor, id).await);
            }
            Msg::Pause { actor, id, reply } => {
                let _ = reply.send(self.pause(&actor, id).await);
            }
            Msg::SetSetpoints {
                actor,
                id,
                set,
                reply,
            } => {
                let _ = reply.send(self.set_setpoints(&actor, id, set).await);
            }
            Msg::End {
                actor,
                id,
                reason,
                reply,
            } => {
                let _ = reply.send(self.end(&actor, id, &reason).await);
            }
            Msg::RecallLot {
                actor,
                lot,
                reason,
                reply,
            } => {
                let _ = reply.send(self.recall_lot(&actor, &lot, &reason).await);
            }
            Msg::Tick { reply } => {
                self.tick().await;
                let _ = reply.send(());
            }
            Msg::BreakMonitor(fault) => self.monitor_fault = Some(fault),
            Msg::FailDisarms(times) => self.failing_disarms = times,
        }
    }

    /// One monitor pass, after any failure the sim injected; a completed pass is stamped for
    /// the heartbeat.
    async fn tick(&mut self) {
        match self.monitor_fault.take() {
            Some(MonitorFault::Panic) => panic!("sim injection: the monitor pass panics"),
            Some(MonitorFault::Stall(d)) => tokio::time::sleep(d).await,
            None => {}
        }
        self.monitor_pass().await;
        self.stamp.passed();
    }

    /// [`disarm`], failing instead while the sim says so.
    pub(super) async fn disarm(&mut self) -> Result<(), ApiError> {
        let fail = match self.failing_disarms.checked_sub(1) {
            Some(left) => {
                self.failing_disarms = left;
                true
            }
            None => false,
        };
        disarm(&self.control, fail).await
    }

    /// The session that holds the pen, if any.
    pub(super) fn holder(&self) -> Option<SessionId> {
        self.active.as_ref().map(|a| a.session)
    }

    /// `active` takes the pen.
    pub(super) fn hold(&mut self, active: Active) {
        self.active = Some(active);
        self.holder.send_replace(self.holder());
    }

    /// The session no longer holds the pen.
    pub(super) fn release(&mut self, id: SessionId) {
        if self.holder() == Some(id) {
            self.active = None;
            self.holder.send_replace(None);
        }
    }
}
