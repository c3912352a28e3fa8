//! The operations the session owner runs for the API, one message at a time: record, then
//! act, then record what the rig did.

use needle_core::units::{Micros, MilliHertz};
use needle_core::{Command, Fault};
use serde_json::json;

use super::actor::{core_armed, Active, Owner};
use super::rules;
use super::seat::{self, Seated, SeatedChip};
use super::storage::ledger_error;
use super::types::{Actor, Setpoints};
use super::{read_session, unix_ms};
use crate::cartridge::Tag;
use crate::control::monotonic_now;
use crate::error::{ApiError, ErrorCode};
use crate::store::{
    kinds, CartridgeLimits, CartridgeRecord, ChecklistItem, Event, LedgerError, NewSession,
    Override, PlanId, SessionId, SessionRecord, SessionState, Store,
};

impl Owner {
    /// A session by id, from the ledger's read thread.
    pub(super) async fn session(&self, id: SessionId) -> Result<SessionRecord, ApiError> {
        read_session(self.records.ledger(), id).await
    }

    /// A cartridge by id, from the ledger's read thread.
    pub(super) async fn cartridge(
        &self,
        id: String,
        limits: CartridgeLimits,
    ) -> Result<Option<CartridgeRecord>, ApiError> {
        self.records
            .ledger()
            .read(move |s| s.cartridge(&id, &limits))
            .await
            .map_err(ledger_error)
    }

    /// Record, then act: the request (with its reason) is written first and the controller
    /// gets the command only if that write succeeded; the verdict is written next, kept for
    /// later if the ledger fails in between (then the needles are stopped and the caller gets
    /// `storage_unavailable`). A refusal is an error and changes nothing.
    pub(super) async fn command(
        &mut self,
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
        self.records.write(move |s| s.append_event(&intent)).await?;
        let verdict = self.control.command(command).await?;
        let mut event = Event::new(unix_ms(), &actor.name, kinds::COMMAND)
            .detail(json!({ "command": format!("{command:?}"), "accepted": verdict.is_ok() }));
        if let Some(id) = session {
            event = event.session(id);
        }
        if let Err(r) = verdict {
            event = event.reason(r.code());
        }
        self.records
            .persist_or_refuse(move |s| s.append_event(&event).map(|_| ()))
            .await?;
        verdict.map_err(ApiError::from)
    }

    /// Clears latched faults with a reason already checked.
    pub(super) async fn clear_faults(
        &mut self,
        actor: &Actor,
        reason: &str,
    ) -> Result<(), ApiError> {
        let faults: Vec<&str> = self
            .control
            .snapshot()
            .telemetry
            .faults
            .iter()
            .map(Fault::code)
            .collect();
        let session = self.holder();
        self.command(actor, Command::ClearFaults, session, Some(reason))
            .await?;
        let mut event = Event::new(unix_ms(), &actor.name, kinds::OVERRIDE)
            .reason(reason)
            .detail(json!({ "action": "clear_faults", "faults": faults }));
        if let Some(id) = session {
            event = event.session(id);
        }
        self.records
            .persist_or_refuse(move |s| s.append_event(&event).map(|_| ()))
            .await
    }

    /// Writes a checked new session.
    pub(super) async fn create_session(
        &mut self,
        new: NewSession,
        override_: Option<Override>,
        plan: Option<PlanId>,
    ) -> Result<SessionRecord, ApiError> {
        let interval = i64::try_from(self.policy.min_interval.as_millis()).unwrap_or(i64::MAX);
        match plan {
            None => {
                self.records
                    .write(move |s| s.create_session(&new, unix_ms(), interval, override_.as_ref()))
                    .await
            }
            Some(plan) => {
                self.records
                    .write(move |s| {
                        s.create_plan_session(plan, &new, unix_ms(), interval, override_.as_ref())
                            .map(|(session, _)| session)
                    })
                    .await
            }
        }
    }

    /// The plan's and the numbing wait's refusals of arming session `session` at `depth`
    /// (or changing to it), unless a technician overrides them with a reason; each rule
    /// overridden is recorded as an `override` event before anything is sent to the rig.
    async fn plan_rules(
        &mut self,
        actor: &Actor,
        session: &SessionRecord,
        depth: Option<i32>,
        override_reason: Option<&str>,
        arming: bool,
    ) -> Result<(), ApiError> {
        let id = session.id;
        let (planned, numbed) = self
            .records
            .ledger()
            .read(move |s| super::plans::arming_facts(s, id))
            .await
            .map_err(ledger_error)?;
        let needed =
            super::plans::arming_overrides(&self.policy, numbed, planned, depth, unix_ms(), arming);
        super::plans::refuse_or_allow(actor, &needed, override_reason)?;
        for (rule, mut detail) in needed {
            if let serde_json::Value::Object(map) = &mut detail {
                map.insert("action".into(), json!(rule));
            }
            let event = Event::new(unix_ms(), &actor.name, kinds::OVERRIDE)
                .session(id)
                .reason(override_reason.unwrap_or_default())
                .detail(detail);
            self.records.write(move |s| s.append_event(&event)).await?;
        }
        Ok(())
    }

    /// Binds the cartridge whose tag was read to session `id`, in `area`. The ledger binds a
    /// cartridge once and a session once, so a second bind is refused there.
    pub(super) async fn bind(
        &mut self,
        actor: &Actor,
        id: SessionId,
        tag: Tag,
        area: &str,
    ) -> Result<CartridgeRecord, ApiError> {
        rules::check_pen_free(self.holder(), id)?;
        let (now, limits, name) = (rules::now()?, self.policy.limits, actor.name.clone());
        let record = self
            .records
            .write(move |s| s.bind(id, &tag, now, &limits, &name))
            .await?;
        let time_limit = self
            .policy
            .area_time_limits
            .get(area)
            .copied()
            .unwrap_or(self.policy.time_limit);
        self.hold(Active::new(id, record.id.clone(), time_limit));
        Ok(record)
    }

    /// Merges checklist answers into a created or bound session, recorded with the actor.
    /// Arming still checks the whole checklist.
    pub(super) async fn update_checklist(
        &mut self,
        actor: &Actor,
        id: SessionId,
        answers: Vec<ChecklistItem>,
    ) -> Result<SessionRecord, ApiError> {
        let (name, at) = (actor.name.clone(), unix_ms());
        self.records
            .write(move |s| s.update_checklist(id, &answers, at, &name))
            .await
    }

    fn require_active(&self, id: SessionId) -> Result<Active, ApiError> {
        match &self.active {
            Some(a) if a.session == id => Ok(a.clone()),
            _ => Err(rules::not_active(id)),
        }
    }

    /// Arms a bound session with its setpoints; `seated` is the seated cartridge, its chip
    /// challenged by the handle. The chip's use counter is advanced before the first arming,
    /// after every other check, so a refused arm leaves it as it was.
    pub(super) async fn arm(
        &mut self,
        actor: &Actor,
        id: SessionId,
        set: Setpoints,
        seated: Seated,
    ) -> Result<SessionRecord, ApiError> {
        let Seated { tag, chip } = seated;
        let cartridge_id = tag.id().to_owned();
        let session = self.session(id).await?;
        let active = self.require_active(id)?;
        rules::require_monitor(self.stamp.health())?;
        if session.state != SessionState::Bound {
            return Err(rules::wrong_state(&session));
        }
        rules::require_checklist(&self.policy, &session)?;
        let (Some(depth), Some(rate)) = (set.depth_um, set.rate_mhz) else {
            return Err(ApiError::bad_request(
                ErrorCode::SetpointsRequired,
                "arming needs depth_um and rate_mhz",
            ));
        };
        let depth = rules::check_depth(&self.policy, &session, depth)?;
        // The core refuses such a rate too, but only after the chip's counter was advanced:
        // bad input must be refused while the cartridge is still unused.
        let (lo, hi) = self.policy.rate_range;
        if rate < lo.0 || rate > hi.0 {
            return Err(ApiError::bad_request(
                ErrorCode::RateOutOfRange,
                format!("stroke rate {rate} mHz is outside {}..={} mHz", lo.0, hi.0),
            ));
        }
        let ceiling = rules::area_ceiling(&self.policy, &session)?;
        self.plan_rules(
            actor,
            &session,
            Some(depth.0),
            set.override_reason.as_deref(),
            true,
        )
        .await?;
        // The cartridge in the pen must still be the bound one, and still valid.
        let (now, limits) = (rules::now()?, self.policy.limits);
        self.records
            .ledger()
            .read(move |s| s.verify_bound(id, &tag, now, &limits))
            .await
            .map_err(ledger_error)?;
        // The core stops the motor itself when what is left of the session's time or of the
        // cartridge's run-time or stroke budget runs out, whatever this service does next.
        // The session limit counts monotonic time from the first start, pauses included, and
        // the core counts motor time only: a backstop behind enforce_limits, never ahead of it.
        let cartridge = self.cartridge(active.cartridge.clone(), limits).await?;
        let session_left_ms = active.session_left_ms(monotonic_now());
        let (cartridge_run_ms, cartridge_strokes) = cartridge.map_or((0, 0), |c| {
            (
                active.run_left_ms(&c),
                c.remaining_strokes.saturating_sub(active.unflushed_strokes),
            )
        });
        if let Some(chip) = chip {
            self.use_chip(actor, id, &active, &cartridge_id, chip)
                .await?;
        }
        let arm = Command::Arm {
            depth,
            rate: MilliHertz(rate),
            ceiling,
            max_run: Micros(session_left_ms.min(cartridge_run_ms).saturating_mul(1_000)),
            max_strokes: u32::try_from(cartridge_strokes).unwrap_or(u32::MAX),
        };
        self.command(actor, arm, Some(id), None).await?;
        let (name, at) = (actor.name.clone(), unix_ms());
        self.records
            .persist_or_refuse(move |s| {
                s.set_session_state(id, SessionState::Armed, &name, None, at)
                    .map(|_| ())
            })
            .await?;
        let (name, depth_um) = (actor.name.clone(), depth.0.unsigned_abs());
        self.records
            .persist_or_refuse(move |s| {
                s.record_setpoints(id, depth_um, rate, at, &name)
                    .map(|_| ())
            })
            .await?;
        self.session(id).await
    }

    /// The chip's use counter at arming: 0 before this session's first arming (then advanced
    /// to 1 before the needles can move), 1 after it; anything else is a use this session did
    /// not make (another pen, or a ledger rolled back), refused as `cartridge_used_on_chip`.
    /// The advance is recorded as a `cartridge_counter_advanced` event; when the ledger cannot
    /// write it, the arm is refused (the counter stays advanced, the session may arm again).
    async fn use_chip(
        &mut self,
        actor: &Actor,
        id: SessionId,
        active: &Active,
        cartridge: &str,
        chip: SeatedChip,
    ) -> Result<(), ApiError> {
        match (active.chip_advanced, chip.counter) {
            (true, 1) => Ok(()),
            (false, 0) => {
                let advanced = chip
                    .worker
                    .call(|c| c.advance_counter())
                    .await
                    .map_err(|e| {
                        ApiError::new(500, ErrorCode::TagReadFailed, format!("tag reader: {e}"))
                    })?
                    .map_err(seat::chip_fault)?;
                if advanced != 1 {
                    return Err(seat::used_on_chip(cartridge, advanced));
                }
                if let Some(a) = self.active.as_mut() {
                    a.chip_advanced = true;
                }
                tracing::info!(cartridge, "cartridge chip use counter advanced to 1");
                let event = Event::new(unix_ms(), &actor.name, kinds::CARTRIDGE_COUNTER_ADVANCED)
                    .session(id)
                    .cartridge(cartridge)
                    .detail(json!({ "counter": advanced }));
                self.records
                    .persist_or_refuse(move |s| s.append_event(&event).map(|_| ()))
                    .await
            }
            (_, counter) => Err(seat::used_on_chip(cartridge, counter)),
        }
    }

    /// The checks every change to a session's arming starts with: while the ledger cannot
    /// write, nothing changes, whatever the state; the session exists and holds the pen.
    async fn session_to_change(&self, id: SessionId) -> Result<SessionRecord, ApiError> {
        self.records.check_writable()?;
        let session = self.session(id).await?;
        self.require_active(id)?;
        Ok(session)
    }

    /// Sends `command` for session `id` and records the state `to` the controller reached.
    async fn command_to(
        &mut self,
        actor: &Actor,
        id: SessionId,
        command: Command,
        to: SessionState,
    ) -> Result<SessionRecord, ApiError> {
        self.command(actor, command, Some(id), None).await?;
        self.sync_state_or_refuse(id, to, &actor.name).await
    }

    /// Starts (or resumes) the motor.
    pub(super) async fn start(
        &mut self,
        actor: &Actor,
        id: SessionId,
    ) -> Result<SessionRecord, ApiError> {
        let session = self.session_to_change(id).await?;
        rules::require_monitor(self.stamp.health())?;
        if !matches!(session.state, SessionState::Armed | SessionState::Paused) {
            return Err(rules::wrong_state(&session));
        }
        self.command_to(actor, id, Command::Start, SessionState::Running)
            .await
    }

    /// Pauses the motor.
    pub(super) async fn pause(
        &mut self,
        actor: &Actor,
        id: SessionId,
    ) -> Result<SessionRecord, ApiError> {
        let session = self.session_to_change(id).await?;
        if session.state != SessionState::Running {
            return Err(rules::wrong_state(&session));
        }
        self.command_to(actor, id, Command::Pause, SessionState::Paused)
            .await
    }

    /// Changes setpoints while armed, running or paused.
    pub(super) async fn set_setpoints(
        &mut self,
        actor: &Actor,
        id: SessionId,
        set: Setpoints,
    ) -> Result<SessionRecord, ApiError> {
        let session = self.session_to_change(id).await?;
        if !rules::armed(session.state) {
            return Err(rules::wrong_state(&session));
        }
        if set.depth_um.is_none() && set.rate_mhz.is_none() {
            return Err(ApiError::bad_request(
                ErrorCode::SetpointsRequired,
                "give depth_um, rate_mhz or both",
            ));
        }
        let depth = set
            .depth_um
            .map(|d| rules::check_depth(&self.policy, &session, d))
            .transpose()?;
        if let Some(d) = depth {
            self.plan_rules(
                actor,
                &session,
                Some(d.0),
                set.override_reason.as_deref(),
                false,
            )
            .await?;
        }
        if let Some(rate) = set.rate_mhz {
            self.command(actor, Command::SetRate(MilliHertz(rate)), Some(id), None)
                .await?;
        }
        if let Some(depth) = depth {
            self.command(actor, Command::SetDepth(depth), Some(id), None)
                .await?;
        }
        let t = self.control.snapshot().telemetry;
        let depth = depth.map_or(t.depth_setpoint.0, |d| d.0);
        let rate = set.rate_mhz.unwrap_or(t.rate_setpoint.0);
        let (name, at) = (actor.name.clone(), unix_ms());
        self.records
            .persist_or_refuse(move |s| {
                s.record_setpoints(id, depth.unsigned_abs(), rate, at, &name)
                    .map(|_| ())
            })
            .await?;
        self.session(id).await
    }

    /// Ends a session: motor off, cartridge spent.
    pub(super) async fn end(
        &mut self,
        actor: &Actor,
        id: SessionId,
        reason: &str,
    ) -> Result<SessionRecord, ApiError> {
        let session = self.session(id).await?;
        if session.state.is_terminal() {
            return Err(rules::wrong_state(&session));
        }
        // Checked before the disarm: a reason the ledger refuses must leave the needles armed
        // and the session as it was.
        crate::store::check_reason(reason)?;
        let holds_pen = self.holder() == Some(id);
        if rules::armed(session.state) || (holds_pen && core_armed(&self.control)) {
            // Disarm first, whatever the ledger's health: stopping is always allowed, and is
            // recorded (as the controller leaving the armed states) even while degraded. A
            // failed disarm keeps the session: the needles may still be armed.
            self.disarm().await?;
        }
        // An end is acknowledged only once it is written; while the ledger cannot write,
        // the session stays open on disk, the needles stay stopped, and the operator ends it
        // again once the ledger recovers.
        let job = self.finish_job(id, actor.name.clone(), reason.to_string());
        self.records.write(job).await?;
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
        let (run_ms, strokes) = match self.active.as_ref() {
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

    /// Ends a session on the service's own account (cartridge pulled, a limit, a recall):
    /// the pen is released at once, the record follows, kept for later while degraded.
    pub(super) async fn finish_now(
        &mut self,
        id: SessionId,
        actor: &str,
        reason: &str,
    ) -> Result<(), ApiError> {
        let job = self.finish_job(id, actor.to_string(), reason.to_string());
        self.release(id);
        self.records
            .persist(Some(format!("finish:{id}")), job)
            .await
            .map(|_| ())
            .map_err(ledger_error)
    }

    /// Records a session state the controller reached; returns whether it is written now.
    pub(super) async fn sync_state(
        &mut self,
        id: SessionId,
        to: SessionState,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<bool, LedgerError> {
        let (actor, reason, at) = (actor.to_string(), reason.map(str::to_string), unix_ms());
        // Check and write in one job on the ledger thread.
        let written = self
            .records
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
            if let Some(a) = self.active.as_mut() {
                a.started_at.get_or_insert(monotonic_now());
            }
        }
        Ok(written)
    }

    async fn sync_state_or_refuse(
        &mut self,
        id: SessionId,
        to: SessionState,
        actor: &str,
    ) -> Result<SessionRecord, ApiError> {
        if !self
            .sync_state(id, to, actor, None)
            .await
            .map_err(ledger_error)?
        {
            self.records.check_writable()?;
        }
        self.session(id).await
    }

    /// Recalls a lot (reason checked); a session running on a cartridge of that lot is
    /// stopped and ended.
    pub(super) async fn recall_lot(
        &mut self,
        actor: &Actor,
        lot: &str,
        reason: &str,
    ) -> Result<Vec<String>, ApiError> {
        // Stop the pen first if it runs on the recalled lot: a recall that cannot stop the
        // needles is refused and records nothing, and the technician tries again.
        let active = self.active.clone();
        let on_lot = match &active {
            Some(a) => self
                .cartridge(a.cartridge.clone(), self.policy.limits)
                .await?
                .is_some_and(|c| c.lot == lot),
            None => false,
        };
        if on_lot {
            self.disarm().await?;
        }
        let (lot_, reason_, name) = (lot.to_string(), reason.to_string(), actor.name.clone());
        let in_use = self
            .records
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
