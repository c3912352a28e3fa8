//! One monitor pass: the session owner's look at the controller, and the stamp of the last
//! completed pass that the dead-man heartbeat reads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use needle_core::units::Micros;
use needle_core::{Fault, State};
use serde_json::json;

use super::actor::{ms_between, Active, Owner};
use super::rules;
use super::types::MonitorHealth;
use super::unix_ms;
use crate::control::{monotonic_now, Snapshot};
use crate::store::{kinds, Event, SessionState};

/// When the last monitor pass completed, whether the owner died, and how long a gap between
/// passes counts as hung: written by the owner and its supervisor, read by the heartbeat
/// thread, the watchdog and `/v1/health`.
pub(super) struct Stamp {
    /// Monotonic time (µs) at which the last monitor pass completed.
    pass_us: AtomicU64,
    /// Set when the owner has ended: the needles stay stopped until a restart.
    failed: AtomicBool,
    /// Longest gap between completed monitor passes before the service counts as hung, µs.
    stall_us: AtomicU64,
}

impl Stamp {
    /// A stamp as if a pass had just completed.
    pub(super) fn new(stall: Duration) -> Self {
        let stamp = Stamp {
            pass_us: AtomicU64::new(monotonic_now().0),
            failed: AtomicBool::new(false),
            stall_us: AtomicU64::new(0),
        };
        stamp.set_stall(stall);
        stamp
    }

    /// Sets the stall limit (`control.service_stall_ms`).
    pub(super) fn set_stall(&self, stall: Duration) {
        let us = u64::try_from(stall.as_micros()).unwrap_or(u64::MAX);
        self.stall_us.store(us, Ordering::Release);
    }

    /// A monitor pass completed now.
    pub(super) fn passed(&self) {
        self.pass_us.store(monotonic_now().0, Ordering::Release);
    }

    /// The owner has died: failed for good.
    pub(super) fn fail(&self) {
        self.failed.store(true, Ordering::Release);
    }

    /// The monitor's health now.
    pub(super) fn health(&self) -> MonitorHealth {
        if self.failed.load(Ordering::Acquire) {
            return MonitorHealth::Failed;
        }
        let last = Micros(self.pass_us.load(Ordering::Acquire));
        let age = Duration::from_micros(monotonic_now().since(last).0);
        if age > Duration::from_micros(self.stall_us.load(Ordering::Acquire)) {
            MonitorHealth::Stalled(age)
        } else {
            MonitorHealth::Ok
        }
    }
}

impl Owner {
    /// One look at the controller: record faults and state changes, follow the pedal, count
    /// usage, enforce budgets and the time limit.
    pub(super) async fn monitor_pass(&mut self) {
        let snap: Snapshot = self.control.snapshot();
        let t = snap.telemetry;
        let now_ms = unix_ms();
        let now = monotonic_now();
        let (new_faults, state_changed, elapsed_ms, opened) = {
            let seen = &mut self.seen;
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
        self.records.retry(&t).await;
        let active = self.active.clone();
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
            self.records.record(None, event).await;
        }
        if state_changed {
            self.records
                .record(
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
        let open = rules::armed(session.state);
        if let Some(limit) = t.arming_ended_by.filter(|_| open) {
            // The core stopped the motor at a budget given in this session's Arm: the same
            // stop as enforce_limits', made without waiting for this service. Its run time
            // was the smaller of the session's time and the cartridge's run-time budget left.
            let session_left_ms = a.session_left_ms(now);
            let cartridge_left_ms = self
                .cartridge(a.cartridge.clone(), self.policy.limits)
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
    async fn reconcile(
        &mut self,
        t: &needle_core::Telemetry,
        active: Option<&Active>,
        now_ms: i64,
    ) {
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
        if session.as_ref().is_some_and(|s| rules::armed(s.state)) {
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
                "error": result.as_ref().err().map(|e| e.code.as_str()),
            }));
        if let Some(s) = &session {
            event = event.session(s.id);
        }
        self.records.record(None, event).await;
    }

    async fn account(&mut self, t: &needle_core::Telemetry, elapsed_ms: u64) {
        let flush = {
            let Some(a) = self.active.as_mut() else {
                return;
            };
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
                .records
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
    async fn enforce_limits(&mut self, now_ms: i64, now: Micros) {
        let Some(a) = self.active.clone() else {
            return;
        };
        let budget_gone = self
            .cartridge(a.cartridge.clone(), self.policy.limits)
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
            if let Some(x) = self.active.as_mut() {
                x.warned = true;
            }
            tracing::warn!(session = a.session, "session time limit approaching");
            self.records
                .record(
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
                    if let Some(x) = self.active.as_mut() {
                        x.stop_failed = true;
                    }
                    tracing::error!(session = a.session, error = %e, reason, "could not disarm at a limit: retrying");
                    self.records
                        .record(
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
