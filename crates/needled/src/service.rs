//! The service: treatment sessions, the cartridge ledger and the controller, kept in step.
//!
//! Every API call that changes something goes through here; it checks the session rules
//! (area ceiling, checklist, cartridge validity), sends the controller its command, and
//! records the change with its event in the ledger. A monitor task keeps the ledger in step
//! with the controller: faults, pedal starts and pauses, cartridge removal, usage budgets and
//! the session time limit.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use needle_core::units::{Micrometers, Micros, MilliHertz};
use needle_core::{Command, Fault, Faults, State};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::control::{ControlHandle, Snapshot};
use crate::error::ApiError;
use crate::hal::sim::SimBackend;
use crate::hal::TagReader;
use crate::store::{
    kinds, CartridgeLimits, CartridgeRecord, ChecklistItem, Event, NewSession, Now, Override,
    SessionId, SessionRecord, SessionState, Store,
};
use crate::tag::{self, DeviceKey, Tag};

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
    started_at_ms: Option<i64>,
    warned: bool,
}

/// What the monitor remembers between looks at the controller.
#[derive(Debug, Default)]
struct Seen {
    state: Option<State>,
    faults: Faults,
    last_ms: Option<i64>,
    cartridge_openings: Option<u32>,
}

/// Current wall-clock time, unix ms.
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
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

/// The service.
pub struct Service {
    control: ControlHandle,
    store: Mutex<Store>,
    key: DeviceKey,
    tags: Mutex<Box<dyn TagReader>>,
    policy: Policy,
    sim: Option<SimBackend>,
    active: Mutex<Option<Active>>,
    seen: Mutex<Seen>,
    /// Held by every operation that commands the controller and records the result, and by
    /// each monitor pass: the monitor never sees the controller changed but the ledger not yet
    /// (it would take a freshly armed session for a disarmed one).
    ops: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Service {
    /// Builds the service; sessions left open by a crash are aborted and their cartridges
    /// spent before anything else happens.
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
        Ok(Self {
            control,
            store: Mutex::new(store),
            key,
            tags: Mutex::new(tags),
            policy,
            sim,
            active: Mutex::new(None),
            seen: Mutex::new(Seen::default()),
            ops: tokio::sync::Mutex::new(()),
        })
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

    /// The ledger.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    /// The session that holds the pen, if any.
    pub fn active_session(&self) -> Option<SessionId> {
        lock(&self.active).as_ref().map(|a| a.session)
    }

    fn record(&self, event: Event) {
        if let Err(e) = self.store().append_event(&event) {
            tracing::error!(error = %e, kind = %event.kind, "could not append an event");
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
        let verdict = self.control.command(command).await?;
        let mut event = Event::new(unix_ms(), &actor.name, kinds::COMMAND)
            .detail(json!({ "command": format!("{command:?}"), "accepted": verdict.is_ok() }));
        if let Some(id) = session {
            event = event.session(id);
        }
        if let Err(r) = verdict {
            event = event.reason(r.code());
        }
        self.record(event);
        verdict.map_err(ApiError::from)
    }

    /// Homes the depth axis.
    pub async fn home(&self, actor: &Actor) -> Result<(), ApiError> {
        self.command(actor, Command::Home, None).await
    }

    /// Clears latched faults, with a reason.
    pub async fn clear_faults(&self, actor: &Actor, reason: &str) -> Result<(), ApiError> {
        if reason.trim().is_empty() {
            return Err(ApiError::bad_request(
                "reason_required",
                "clearing faults needs a reason",
            ));
        }
        let faults: Vec<&str> = self
            .control
            .snapshot()
            .telemetry
            .faults
            .iter()
            .map(Fault::code)
            .collect();
        self.command(actor, Command::ClearFaults, self.active_session())
            .await?;
        let mut event = Event::new(unix_ms(), &actor.name, kinds::OVERRIDE)
            .reason(reason)
            .detail(json!({ "action": "clear_faults", "faults": faults }));
        if let Some(id) = self.active_session() {
            event = event.session(id);
        }
        self.record(event);
        Ok(())
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
    pub fn create_session(
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
        Ok(self
            .store()
            .create_session(&new, unix_ms(), interval, override_.as_ref())?)
    }

    /// A session by id.
    pub fn session(&self, id: SessionId) -> Result<SessionRecord, ApiError> {
        self.store()
            .session(id)?
            .ok_or_else(|| ApiError::not_found(format!("no session {id}")))
    }

    fn read_tag(&self) -> Result<Tag, ApiError> {
        let image = lock(&self.tags)
            .read_tag()
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

    /// Binds the seated cartridge to a session.
    #[tracing::instrument(skip_all, fields(session = id, actor = %actor.name))]
    pub fn bind_cartridge(
        &self,
        actor: &Actor,
        id: SessionId,
    ) -> Result<CartridgeRecord, ApiError> {
        let mut active = lock(&self.active);
        if let Some(a) = active.as_ref() {
            if a.session != id {
                return Err(ApiError::conflict(
                    "pen_in_use",
                    format!("session {} holds the pen", a.session),
                ));
            }
        }
        let tag = self.read_tag()?;
        let area = self.session(id)?.area;
        let record = self
            .store()
            .bind(id, &tag, now()?, &self.policy.limits, &actor.name)?;
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
            started_at_ms: None,
            warned: false,
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
        let _ops = self.ops.lock().await;
        let session = self.session(id)?;
        let active = self.require_active(id)?;
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
        let tag = self.read_tag()?;
        self.store()
            .verify_bound(id, &tag, now()?, &self.policy.limits)?;
        // The core stops the motor itself when what is left of the session's time or of the
        // cartridge's run-time or stroke budget runs out, whatever this service does next.
        // The session limit counts wall time from the first start, pauses included, and the
        // core counts motor time only: a backstop behind enforce_limits, never ahead of it.
        let cartridge = self
            .store()
            .cartridge(&active.cartridge, &self.policy.limits)?;
        let used_ms = active
            .started_at_ms
            .map_or(0, |s| u64::try_from(unix_ms() - s).unwrap_or(0));
        let session_left_ms = u64::try_from(active.time_limit.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_sub(used_ms);
        let (cartridge_run_ms, cartridge_strokes) = cartridge.map_or((0, 0), |c| {
            (
                c.remaining_run_ms.saturating_sub(active.unflushed_run_ms),
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
        let mut store = self.store();
        store.set_session_state(id, SessionState::Armed, &actor.name, None, unix_ms())?;
        store.record_setpoints(id, depth.0.unsigned_abs(), rate, unix_ms(), &actor.name)?;
        store
            .session(id)?
            .ok_or_else(|| ApiError::not_found("session vanished"))
    }

    /// Starts (or resumes) the motor.
    #[tracing::instrument(skip_all, fields(session = id, actor = %actor.name))]
    pub async fn start(&self, actor: &Actor, id: SessionId) -> Result<SessionRecord, ApiError> {
        let _ops = self.ops.lock().await;
        let session = self.session(id)?;
        self.require_active(id)?;
        if !matches!(session.state, SessionState::Armed | SessionState::Paused) {
            return Err(ApiError::conflict(
                "session_wrong_state",
                format!("session is {}", session.state.as_str()),
            ));
        }
        self.command(actor, Command::Start, Some(id)).await?;
        self.sync_state(id, SessionState::Running, &actor.name, None)
    }

    /// Pauses the motor.
    #[tracing::instrument(skip_all, fields(session = id, actor = %actor.name))]
    pub async fn pause(&self, actor: &Actor, id: SessionId) -> Result<SessionRecord, ApiError> {
        let _ops = self.ops.lock().await;
        let session = self.session(id)?;
        self.require_active(id)?;
        if session.state != SessionState::Running {
            return Err(ApiError::conflict(
                "session_wrong_state",
                format!("session is {}", session.state.as_str()),
            ));
        }
        self.command(actor, Command::Pause, Some(id)).await?;
        self.sync_state(id, SessionState::Paused, &actor.name, None)
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
        let session = self.session(id)?;
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
        self.store()
            .record_setpoints(id, depth.unsigned_abs(), rate, unix_ms(), &actor.name)?;
        self.session(id)
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
        let session = self.session(id)?;
        if session.state.is_terminal() {
            return Err(ApiError::conflict(
                "session_wrong_state",
                format!("session is {}", session.state.as_str()),
            ));
        }
        if matches!(
            session.state,
            SessionState::Armed | SessionState::Running | SessionState::Paused
        ) {
            // Disarm; refused only when the controller is already out of the armed states.
            let _ = self.control.command(Command::Disarm).await?;
        }
        self.finish(id, &actor.name, reason)
    }

    fn finish(&self, id: SessionId, actor: &str, reason: &str) -> Result<SessionRecord, ApiError> {
        let mut active = lock(&self.active);
        let (run_ms, strokes) = match active.as_ref() {
            Some(a) if a.session == id => (a.run_ms, a.strokes),
            _ => (0, 0),
        };
        let session = self.session(id)?;
        let record = if session.state == SessionState::Created {
            self.store().set_session_state(
                id,
                SessionState::Aborted,
                actor,
                Some(reason),
                unix_ms(),
            )?
        } else {
            self.store()
                .end_session(id, unix_ms(), run_ms, strokes, reason, actor)?
        };
        if active.as_ref().is_some_and(|a| a.session == id) {
            *active = None;
        }
        Ok(record)
    }

    fn sync_state(
        &self,
        id: SessionId,
        to: SessionState,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<SessionRecord, ApiError> {
        // Check and write under one store lock: the monitor and a handler may sync together.
        let record = {
            let mut store = self.store();
            let current = store
                .session(id)?
                .ok_or_else(|| ApiError::not_found(format!("no session {id}")))?;
            if current.state == to {
                return Ok(current);
            }
            store.set_session_state(id, to, actor, reason, unix_ms())?
        };
        if to == SessionState::Running {
            if let Some(a) = lock(&self.active).as_mut() {
                a.started_at_ms.get_or_insert(unix_ms());
            }
        }
        Ok(record)
    }

    /// One look at the controller: record faults and state changes, follow the pedal, count
    /// usage, enforce budgets and the time limit. Called every few milliseconds.
    pub async fn monitor(&self) {
        let _ops = self.ops.lock().await;
        let snap: Snapshot = self.control.snapshot();
        let t = snap.telemetry;
        let now_ms = unix_ms();
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
            let elapsed = seen
                .last_ms
                .map_or(0, |l| u64::try_from(now_ms - l).unwrap_or(0));
            seen.faults = t.faults;
            seen.state = Some(t.state);
            seen.last_ms = Some(now_ms);
            (new, changed, elapsed, opened)
        };
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
            self.record(event);
        }
        if state_changed {
            self.record(
                Event::new(now_ms, crate::store::SYSTEM_ACTOR, "controller_state")
                    .detail(json!({ "state": format!("{:?}", t.state) })),
            );
        }
        let Some(a) = active else { return };
        let Ok(session) = self.session(a.session) else {
            return;
        };
        if session.state.is_terminal() {
            return;
        }
        self.account(&t, elapsed_ms);
        if opened
            || new_faults.contains(Fault::CartridgeRemoved)
            || t.interlocks
                .contains(needle_core::Interlock::CartridgeMissing)
        {
            // A cartridge pulled mid-session (armed or merely bound) is spent: it left its
            // seat after leaving its sterile package. The session is over.
            tracing::warn!(session = a.session, cartridge = %a.cartridge, "cartridge removed mid-session: spent");
            if let Err(e) = self.finish(
                a.session,
                crate::store::SYSTEM_ACTOR,
                "cartridge removed during the session",
            ) {
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
            let session_left_ms = u64::try_from(a.time_limit.as_millis())
                .unwrap_or(u64::MAX)
                .saturating_sub(
                    a.started_at_ms
                        .map_or(0, |s| u64::try_from(now_ms - s).unwrap_or(0)),
                );
            let cartridge_left_ms = self
                .store()
                .cartridge(&a.cartridge, &self.policy.limits)
                .ok()
                .flatten()
                .map_or(0, |c| c.remaining_run_ms.saturating_sub(a.unflushed_run_ms));
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
            if let Err(e) = self.finish(a.session, crate::store::SYSTEM_ACTOR, reason) {
                tracing::error!(error = %e, "could not end the session at its limit");
            }
            return;
        }
        let result = match t.state {
            State::Running
                if matches!(session.state, SessionState::Armed | SessionState::Paused) =>
            {
                self.sync_state(a.session, SessionState::Running, "pedal", None)
                    .map(|_| ())
            }
            State::Paused if session.state == SessionState::Running => self
                .sync_state(a.session, SessionState::Paused, "pedal", None)
                .map(|_| ()),
            State::Fault | State::EStop | State::Idle | State::Boot if open => {
                // The controller left the armed states (a fault): the session must be re-armed.
                self.sync_state(
                    a.session,
                    SessionState::Bound,
                    crate::store::SYSTEM_ACTOR,
                    Some("controller disarmed"),
                )
                .map(|_| ())
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "could not follow the controller's state");
        }
        self.enforce_limits(now_ms).await;
    }

    fn account(&self, t: &needle_core::Telemetry, elapsed_ms: u64) {
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
            if let Err(e) = self
                .store()
                .add_usage(&cartridge, run_ms, strokes, &self.policy.limits)
            {
                tracing::error!(error = %e, "could not record cartridge usage");
            }
        }
    }

    async fn enforce_limits(&self, now_ms: i64) {
        let Some(a) = lock(&self.active).clone() else {
            return;
        };
        let budget_gone = self
            .store()
            .cartridge(&a.cartridge, &self.policy.limits)
            .ok()
            .flatten()
            .is_some_and(|c| c.budget_exhausted() || c.remaining_run_ms <= a.unflushed_run_ms);
        let limit_ms = i64::try_from(a.time_limit.as_millis()).unwrap_or(i64::MAX);
        let warn_ms = limit_ms - i64::try_from(self.policy.warning_before.as_millis()).unwrap_or(0);
        let used = a.started_at_ms.map_or(0, |s| now_ms - s);
        if a.started_at_ms.is_some() && used >= warn_ms && !a.warned {
            if let Some(x) = lock(&self.active).as_mut() {
                x.warned = true;
            }
            tracing::warn!(session = a.session, "session time limit approaching");
            self.record(
                Event::new(now_ms, crate::store::SYSTEM_ACTOR, "time_limit_warning")
                    .session(a.session)
                    .detail(json!({ "limit_ms": limit_ms, "used_ms": used })),
            );
        }
        let reason = if a.started_at_ms.is_some() && used >= limit_ms {
            Some("session time limit reached")
        } else if budget_gone {
            Some("cartridge run-time or stroke budget exhausted")
        } else {
            None
        };
        if let Some(reason) = reason {
            let _ = self.control.command(Command::Disarm).await;
            if let Err(e) = self.finish(a.session, crate::store::SYSTEM_ACTOR, reason) {
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
        let in_use = self
            .store()
            .recall_lot(lot, reason, &actor.name, unix_ms())?;
        let active = lock(&self.active).clone();
        if let Some(a) = active {
            if in_use.iter().any(|c| c.cartridge_id == a.cartridge) {
                let _ = self.control.command(Command::Disarm).await;
                self.finish(a.session, &actor.name, "cartridge lot recalled")?;
            }
        }
        Ok(in_use.into_iter().map(|c| c.cartridge_id).collect())
    }
}
