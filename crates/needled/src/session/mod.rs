//! Treatment sessions: the session rules, the cartridge ledger and the controller, kept in
//! step by one owner.
//!
//! Every API call that changes something goes through here; it checks the session rules
//! (area ceiling, checklist, cartridge validity), sends the controller its command, and
//! records the change with its event in the ledger. A monitor pass keeps the ledger in step
//! with the controller: faults, pedal starts and pauses, cartridge removal, usage budgets and
//! the session time limit.
//!
//! One task owns the session state (the session that holds the pen, what the monitor saw
//! last, the degraded-storage backlog, the sim's monitor injections) and writes the ledger
//! (the actor pattern of tokio's docs). [`Service`] is its handle: each call that changes
//! something sends the owner a message and awaits the reply on a oneshot, and a timer sends
//! it a tick for each monitor pass. The owner handles one message at a time, to its end, so a
//! monitor pass never sees the controller changed but the ledger not yet, and there is no
//! lock order to remember. What other tasks and threads only read is published by the owner:
//! the session that holds the pen and the storage health (watch channels), the time of the
//! last completed monitor pass (an atomic the dead-man heartbeat reads). Reads of the ledger
//! go straight to its read thread, tag reads to the tag reader's own thread: a slow I2C read
//! holds up nothing.
//!
//! No treatment without a record: every call that changes the rig writes its intent to the
//! ledger first and acts only once that write succeeded; what the rig then did is written
//! next. When the ledger cannot write, the service is degraded: the needles are stopped
//! (Disarm), every further change is refused with `storage_unavailable`, health says so, and
//! every record of what already happened (the outcome of an accepted command, faults, state
//! changes, usage) is kept in memory, in order, and retried until it is written. Once all of
//! it is written the service recovers on its own; the rig stays disarmed until an operator
//! arms again. SQLite and tag reads never run on a tokio worker (see [`crate::ledger`]).
//!
//! If the owner panics, the heartbeat stops for good, the controller is disarmed, and every
//! further change is refused with `monitor_unavailable`; if it hangs, the heartbeat stops
//! once no pass completed within `control.service_stall_ms`.

mod actor;
mod monitor;
mod ops;
mod plans;
mod rules;
mod seat;
mod storage;
mod types;

use std::sync::Arc;
use std::time::Duration;

use needle_core::Command;
use tokio::sync::{mpsc, oneshot, watch};

use crate::cartridge::{self as tag, TrustStore};
use crate::control::ControlHandle;
use crate::error::{ApiError, ErrorCode};
use crate::hal::sim::SimBackend;
use crate::hal::CartridgeChip;
use crate::ledger::Ledger;
use crate::store::{CartridgeRecord, LedgerError, SessionId, SessionRecord, Store, WriteFaults};
use crate::worker::Worker;

use actor::{Msg, Reply};
use monitor::Stamp;
pub use plans::{
    arming_overrides, check_plan, context, numbing_ready_at, plan_status, view, ChangePlan,
    CreatePlan, PlanContext, PlanSlot, PlanView, Window,
};
use storage::{check_writable, ledger_error};
pub use types::{
    Actor, ChecklistSpec, CreateSession, MonitorFault, MonitorHealth, Numbing, Policy, Role,
    Setpoints, StorageHealth, UpdateChecklist,
};

/// Current wall-clock time, unix ms, from the installed [`crate::clock::Clock`]: for records
/// and date rules only. Durations (session time, the time limit, cartridge run time) are
/// measured on the monotonic clock, which an NTP step on a Pi without an RTC does not move.
pub fn unix_ms() -> i64 {
    crate::clock::unix_ms()
}

/// Default `control.service_stall_ms`.
const DEFAULT_SERVICE_STALL: Duration = Duration::from_secs(1);

/// The handle on the session owner: what the API, the console, main's tasks and the tests
/// call.
pub struct Service {
    owner: mpsc::UnboundedSender<Msg>,
    control: Arc<ControlHandle>,
    ledger: Ledger,
    write_faults: Option<Arc<WriteFaults>>,
    trust: Arc<TrustStore>,
    chip_required: bool,
    tags: Worker<Box<dyn CartridgeChip>>,
    policy: Arc<Policy>,
    sim: Option<SimBackend>,
    /// The session that holds the pen, as the owner last published it.
    holder: watch::Receiver<Option<SessionId>>,
    /// The ledger's health, as the owner last published it.
    storage: watch::Receiver<StorageHealth>,
    stamp: Arc<Stamp>,
}

impl Service {
    /// Builds the service; sessions left open by a crash are aborted and their cartridges
    /// spent before anything else happens. The store moves to the ledger's own threads (on
    /// the sim backend with injectable write faults), the tag reader to a thread of its own,
    /// and the session state to its owner, a task on the current tokio runtime (an error
    /// outside one).
    pub fn new(
        control: ControlHandle,
        mut store: Store,
        trust: TrustStore,
        chip_required: bool,
        tags: Box<dyn CartridgeChip>,
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
        let ledger =
            Ledger::spawn(store).map_err(|e| ApiError::new(500, ErrorCode::StorageError, e))?;
        let tags = Worker::spawn("needle-tag", tags).map_err(|e| {
            ApiError::new(
                500,
                ErrorCode::TagReadFailed,
                format!("tag reader thread: {e}"),
            )
        })?;
        let control = Arc::new(control);
        let policy = Arc::new(policy);
        let stamp = Arc::new(Stamp::new(DEFAULT_SERVICE_STALL));
        let (owner, holder, storage) = actor::spawn(
            Arc::clone(&control),
            ledger.clone(),
            Arc::clone(&policy),
            Arc::clone(&stamp),
        )?;
        Ok(Self {
            owner,
            control,
            ledger,
            write_faults,
            trust: Arc::new(trust),
            chip_required,
            tags,
            policy,
            sim,
            holder,
            storage,
            stamp,
        })
    }

    /// This service with `stall` as the longest gap between completed monitor passes
    /// (`control.service_stall_ms`) before it counts as hung; 1 s unless set.
    pub fn with_service_stall(self, stall: Duration) -> Self {
        self.stamp.set_stall(stall);
        self
    }

    /// Whether the monitor completes its passes. The dead-man heartbeat refreshes the core
    /// only while this is [`MonitorHealth::Ok`], so a hung or dead session owner (time limit,
    /// budgets, cartridge removal, the ledger's view of the controller) stops the needles.
    pub fn monitor_health(&self) -> MonitorHealth {
        self.stamp.health()
    }

    /// One monitor pass, run by the session owner: record faults and state changes, follow
    /// the pedal, count usage, enforce budgets and the time limit. main's timer asks for one
    /// every 10 ms; a completed pass is what the dead-man heartbeat counts as progress.
    pub async fn monitor(&self) {
        let (reply, done) = oneshot::channel();
        if self.owner.send(Msg::Tick { reply }).is_ok() {
            let _ = done.await;
        }
    }

    /// Sends the owner a message built around a reply channel and awaits the reply. An owner
    /// that has died answers nothing: the change is refused with `monitor_unavailable`.
    async fn ask<T>(&self, msg: impl FnOnce(Reply<T>) -> Msg) -> Result<T, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.owner
            .send(msg(reply))
            .map_err(|_| rules::owner_gone())?;
        answer.await.map_err(|_| rules::owner_gone())?
    }

    /// Tells the owner something the sim injects; no reply is needed.
    fn tell(&self, msg: Msg) -> Result<(), ApiError> {
        self.owner.send(msg).map_err(|_| rules::owner_gone())
    }

    fn require_sim(&self, what: &str) -> Result<(), ApiError> {
        match self.sim {
            Some(_) => Ok(()),
            None => Err(ApiError::not_found(format!(
                "{what} exist only on the sim backend"
            ))),
        }
    }

    /// Steps the wall clock the service records with by `ms` (as an NTP step would; sim
    /// only). Durations are on the monotonic clock and do not move.
    pub fn sim_step_wall_clock(&self, ms: i64) -> Result<(), ApiError> {
        self.require_sim("wall-clock steps")?;
        crate::clock::step(ms);
        tracing::warn!(step_ms = ms, "sim: wall clock stepped");
        Ok(())
    }

    /// Makes the next `times` disarms fail as a full command queue would (sim only).
    pub fn sim_fail_disarms(&self, times: u32) -> Result<(), ApiError> {
        self.require_sim("control failures")?;
        self.tell(Msg::FailDisarms(times))
    }

    /// Makes the next monitor pass fail as `fault` (sim only; the sim endpoints need a
    /// technician).
    pub fn sim_break_monitor(&self, fault: MonitorFault) -> Result<(), ApiError> {
        self.require_sim("monitor faults")?;
        self.tell(Msg::BreakMonitor(fault))
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
        self.storage.borrow().clone()
    }

    /// The session that holds the pen, if any.
    pub fn active_session(&self) -> Option<SessionId> {
        *self.holder.borrow()
    }

    /// Sends a command to the controller, recording it with the actor; a refusal is an error
    /// and changes nothing.
    pub async fn command(
        &self,
        actor: &Actor,
        command: Command,
        session: Option<SessionId>,
    ) -> Result<(), ApiError> {
        let actor = actor.clone();
        self.ask(|reply| Msg::Command {
            actor,
            command,
            session,
            reply,
        })
        .await
    }

    /// Homes the depth axis.
    pub async fn home(&self, actor: &Actor) -> Result<(), ApiError> {
        self.command(actor, Command::Home, None).await
    }

    /// Clears latched faults, with a reason. The reason is checked as the ledger will check
    /// the override event before anything is cleared: a reason the ledger would refuse clears
    /// nothing.
    pub async fn clear_faults(&self, actor: &Actor, reason: &str) -> Result<(), ApiError> {
        rules::require_reason(reason, "clearing faults needs a reason")?;
        let (actor, reason) = (actor.clone(), reason.to_string());
        self.ask(|reply| Msg::ClearFaults {
            actor,
            reason,
            reply,
        })
        .await
    }

    /// A fresh sim cartridge, provisioned with the published test factory key (which only
    /// the sim configuration trusts). Refused unless the service runs on the sim backend.
    pub fn sim_cartridge(
        &self,
        id: Option<String>,
        lot: Option<String>,
        needles: Option<tag::Needles>,
        expiry: Option<tag::Date>,
    ) -> Result<tag::Provisioned, ApiError> {
        self.require_sim("sim cartridges")?;
        let now = rules::now()?;
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
        Ok(tag::provision_test(&data)?)
    }

    /// Creates a session.
    pub async fn create_session(
        &self,
        actor: &Actor,
        req: CreateSession,
    ) -> Result<SessionRecord, ApiError> {
        let plan = req.plan_id;
        let (new, override_) = rules::new_session(&self.policy, actor, req)?;
        self.ask(|reply| Msg::CreateSession {
            new,
            override_,
            plan,
            reply,
        })
        .await
    }

    /// Confirms (or withdraws) checklist answers of a created or bound session, merged into
    /// those it has and recorded with the actor (event `checklist_updated`): a session
    /// created with an incomplete checklist can be completed before arming, and arming still
    /// refuses `checklist_incomplete` until every required item is confirmed. Refuses 404
    /// for an unknown session, 400 for no answers or an unknown item, 409
    /// `session_wrong_state` once armed or finished.
    #[tracing::instrument(skip_all, fields(session = id, actor = %actor.name))]
    pub async fn update_checklist(
        &self,
        actor: &Actor,
        id: SessionId,
        req: UpdateChecklist,
    ) -> Result<SessionRecord, ApiError> {
        self.session(id).await?;
        let answers = rules::checklist_update(&self.policy, &req.checklist)?;
        check_writable(&self.storage_health())?;
        let actor = actor.clone();
        self.ask(|reply| Msg::Checklist {
            actor,
            id,
            answers,
            reply,
        })
        .await
    }

    /// A session by id.
    pub async fn session(&self, id: SessionId) -> Result<SessionRecord, ApiError> {
        read_session(&self.ledger, id).await
    }

    /// Reads and checks the seated cartridge on the tag reader's own thread (an I2C
    /// transfer and the signature checks), never on a tokio worker and never in the owner.
    async fn read_seated(&self) -> Result<seat::Seated, ApiError> {
        seat::read_seated(&self.tags, Arc::clone(&self.trust), self.chip_required).await
    }

    /// Binds the seated cartridge to a session.
    #[tracing::instrument(skip_all, fields(session = id, actor = %actor.name))]
    pub async fn bind_cartridge(
        &self,
        actor: &Actor,
        id: SessionId,
    ) -> Result<CartridgeRecord, ApiError> {
        // An unknown session is 404 whoever holds the pen: the session is read first.
        let session = self.session(id).await?;
        rules::check_pen_free(self.active_session(), id)?;
        check_writable(&self.storage_health())?;
        let seated = self.read_seated().await?;
        // A chip that counts a use was armed before, on this pen or another: refused before
        // the ledger sees it, so nothing is registered. A session that cannot take a
        // cartridge at all gets the ledger's own refusal (`session_wrong_state`) instead.
        // A cartridge this ledger already knows as in use or spent gets the ledger's refusal.
        if let Some(chip) = &seated.chip {
            if chip.counter != 0 && session.state == crate::store::SessionState::Created {
                let (key, limits) = (seated.tag.id().to_owned(), self.policy.limits);
                let known = self.read(move |st| st.cartridge(&key, &limits)).await?;
                if known.is_none_or(|c| c.state == tag::CartridgeState::New) {
                    return Err(seat::used_on_chip(seated.tag.id(), chip.counter));
                }
            }
        }
        let tag = seated.tag;
        let area = session.area;
        // The owner checks the pen again before it is taken; the ledger binds a cartridge
        // once and a session once.
        let actor = actor.clone();
        self.ask(|reply| Msg::Bind {
            actor,
            id,
            tag,
            area,
            reply,
        })
        .await
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
        rules::require_active(self.active_session(), id)?;
        check_writable(&self.storage_health())?;
        // The tag is read before the owner is asked: a slow I2C read must not hold up the
        // monitor. The owner checks the cartridge against the ledger.
        let seated = self.read_seated().await?;
        let actor = actor.clone();
        self.ask(|reply| Msg::Arm {
            actor,
            id,
            set,
            seated,
            reply,
        })
        .await
    }

    /// Starts (or resumes) the motor.
    #[tracing::instrument(skip_all, fields(session = id, actor = %actor.name))]
    pub async fn start(&self, actor: &Actor, id: SessionId) -> Result<SessionRecord, ApiError> {
        let actor = actor.clone();
        self.ask(|reply| Msg::Start { actor, id, reply }).await
    }

    /// Pauses the motor.
    #[tracing::instrument(skip_all, fields(session = id, actor = %actor.name))]
    pub async fn pause(&self, actor: &Actor, id: SessionId) -> Result<SessionRecord, ApiError> {
        let actor = actor.clone();
        self.ask(|reply| Msg::Pause { actor, id, reply }).await
    }

    /// Changes setpoints while armed, running or paused.
    #[tracing::instrument(skip_all, fields(session = id, actor = %actor.name))]
    pub async fn set_setpoints(
        &self,
        actor: &Actor,
        id: SessionId,
        set: Setpoints,
    ) -> Result<SessionRecord, ApiError> {
        let actor = actor.clone();
        self.ask(|reply| Msg::SetSetpoints {
            actor,
            id,
            set,
            reply,
        })
        .await
    }

    /// Ends a session: motor off, cartridge spent.
    #[tracing::instrument(skip_all, fields(session = id, actor = %actor.name))]
    pub async fn end(
        &self,
        actor: &Actor,
        id: SessionId,
        reason: &str,
    ) -> Result<SessionRecord, ApiError> {
        let (actor, reason) = (actor.clone(), reason.to_string());
        self.ask(|reply| Msg::End {
            actor,
            id,
            reason,
            reply,
        })
        .await
    }

    /// Recalls a lot; a session running on a cartridge of that lot is stopped and ended.
    pub async fn recall_lot(
        &self,
        actor: &Actor,
        lot: &str,
        reason: &str,
    ) -> Result<Vec<String>, ApiError> {
        rules::require_reason(reason, "a recall needs a reason")?;
        let (actor, lot, reason) = (actor.clone(), lot.to_string(), reason.to_string());
        self.ask(|reply| Msg::RecallLot {
            actor,
            lot,
            reason,
            reply,
        })
        .await
    }
}

/// A session by id, from the ledger's read thread.
async fn read_session(ledger: &Ledger, id: SessionId) -> Result<SessionRecord, ApiError> {
    ledger
        .read(move |s| s.session(id))
        .await
        .map_err(ledger_error)?
        .ok_or_else(|| ApiError::not_found(format!("no session {id}")))
}
