//! Treatment plans in the service: the checks against the clinical policy (known areas,
//! planned depth within every area's ceiling, rates the core takes), the plan's view (done,
//! due with its window, overdue; complete or stopped), a session's plan context, and the
//! arming rules a plan adds (deeper than planned, the numbing wait), each overridable only by a
//! technician with a reason.

use serde::Serialize;

use super::actor::Msg;
use super::types::{Actor, Policy, Role};
use super::{unix_ms, Service};
use crate::error::{ApiError, ErrorCode};
use crate::store::{
    active_window, plan_done, LedgerError, NewPlan, PlanChange, PlanEvent, PlanId, PlanRecord,
    PlanSession, PlanStatus, PlannedSession, SessionId, SessionRecord, SessionState, Store,
};
/// Where a planned session stands (the contract's type).
pub use needle_api::SlotStatus;

/// Requests to create and to change a plan (the contract's types; the creator is the
/// caller's token, never the body).
pub use needle_api::{ChangePlan, CreatePlan};

/// The next session's window, unix ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    /// Its number in the plan.
    pub n: u32,
    /// From when it may be given without an override.
    pub opens_at_ms: i64,
    /// After this it is overdue (none for the first session).
    pub closes_at_ms: Option<i64>,
}

/// A session's place in its plan, as reports and the record carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanContext {
    /// The plan.
    pub plan_id: PlanId,
    /// This session's number.
    pub n: u32,
    /// Sessions in the plan.
    pub total: u32,
    /// This session's planned depth and rate.
    pub planned: Option<PlannedSession>,
    /// The plan's status now.
    pub plan_status: PlanStatus,
    /// The next session's window, if the plan goes on.
    pub next_window: Option<Window>,
}

/// One planned session as the plan view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanSlot {
    /// Number in the plan.
    pub n: u32,
    /// Planned depth and rate.
    pub planned: PlannedSession,
    /// Where it stands.
    pub status: SlotStatus,
    /// The session that did it, once done or in progress.
    pub session_id: Option<SessionId>,
}

/// A plan with its status, slots, window and log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanView {
    /// The plan as stored.
    #[serde(flatten)]
    pub plan: PlanRecord,
    /// Where the plan stands.
    pub status: PlanStatus,
    /// Sessions done.
    pub done: u32,
    /// Sessions planned.
    pub total: u32,
    /// The next session's window while the plan goes on.
    pub next_window: Option<Window>,
    /// Every planned session.
    pub slots: Vec<PlanSlot>,
    /// Every session created in the plan (aborted ones too), in order: its history.
    pub history: Vec<PlanSession>,
    /// The plan's log.
    pub events: Vec<PlanEvent>,
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The plan's status: stopped, complete (every planned session done) or active.
pub fn plan_status(plan: &PlanRecord, links: &[PlanSession]) -> PlanStatus {
    crate::store::plan_state_now(plan, links)
}

/// The next session's window while the plan, whose status is `status`, is active.
fn window(plan: &PlanRecord, links: &[PlanSession], status: PlanStatus) -> Option<Window> {
    let (opens_at_ms, closes_at_ms) = active_window(plan, links, status)?;
    Some(Window {
        n: count(plan_done(links).count() + 1),
        opens_at_ms,
        closes_at_ms,
    })
}

/// The view of a plan at `now_ms`.
pub fn view(
    plan: PlanRecord,
    links: Vec<PlanSession>,
    events: Vec<PlanEvent>,
    now_ms: i64,
) -> PlanView {
    let status = plan_status(&plan, &links);
    let next = window(&plan, &links, status);
    let done: Vec<&PlanSession> = plan_done(&links).collect();
    let open = links.iter().find(|l| !l.session.state.is_terminal());
    let slots = plan
        .sessions
        .iter()
        .enumerate()
        .map(|(i, planned)| {
            let n = count(i + 1);
            let (status, session_id) = if let Some(d) = done.iter().find(|l| l.n == n) {
                (SlotStatus::Done, Some(d.session.id))
            } else if let Some(o) = open.filter(|o| o.n == n) {
                (SlotStatus::InProgress, Some(o.session.id))
            } else if status == PlanStatus::Stopped {
                (SlotStatus::NotGiven, None)
            } else if next.is_some_and(|w| w.n == n) {
                let w = next.unwrap_or(Window {
                    n,
                    opens_at_ms: 0,
                    closes_at_ms: None,
                });
                let s = if now_ms < w.opens_at_ms {
                    SlotStatus::Upcoming
                } else if w.closes_at_ms.is_some_and(|c| now_ms > c) {
                    SlotStatus::Overdue
                } else {
                    SlotStatus::Due
                };
                (s, None)
            } else {
                (SlotStatus::Planned, None)
            };
            PlanSlot {
                n,
                planned: *planned,
                status,
                session_id,
            }
        })
        .collect();
    PlanView {
        status,
        done: count(done.len()),
        total: count(plan.sessions.len()),
        next_window: next,
        slots,
        history: links,
        events,
        plan,
    }
}

/// The plan context of session number `n`.
pub fn context(plan: &PlanRecord, links: &[PlanSession], n: u32) -> PlanContext {
    let status = plan_status(plan, links);
    PlanContext {
        plan_id: plan.id,
        n,
        total: count(plan.sessions.len()),
        planned: plan
            .sessions
            .get(usize::try_from(n).unwrap_or(usize::MAX).wrapping_sub(1))
            .copied(),
        plan_status: status,
        next_window: window(plan, links, status),
    }
}

/// Checks a plan against the policy: known areas; every planned depth within the ceiling of
/// every area of the plan; every rate within what the core takes.
pub fn check_plan(
    policy: &Policy,
    areas: &[String],
    sessions: &[PlannedSession],
) -> Result<(), ApiError> {
    let mut ceiling = i64::MAX;
    for area in areas {
        let Some(c) = policy.areas.get(area) else {
            return Err(ApiError::bad_request(
                ErrorCode::UnknownArea,
                format!("unknown treatment area '{area}'"),
            ));
        };
        ceiling = ceiling.min(i64::from(c.0));
    }
    let (lo, hi) = policy.rate_range;
    for (i, s) in sessions.iter().enumerate() {
        if i64::from(s.depth_um) > ceiling {
            return Err(ApiError::bad_request(
                ErrorCode::DepthAboveAreaCeiling,
                format!(
                    "session {}: planned depth {} um is above the areas' ceiling {ceiling} um",
                    i + 1,
                    s.depth_um
                ),
            ));
        }
        if s.rate_mhz < lo.0 || s.rate_mhz > hi.0 {
            return Err(ApiError::bad_request(
                ErrorCode::RateOutOfRange,
                format!(
                    "session {}: planned rate {} mHz is outside {}..={} mHz",
                    i + 1,
                    s.rate_mhz,
                    lo.0,
                    hi.0
                ),
            ));
        }
    }
    Ok(())
}

/// The overrides an arming (or a setpoint change) needs, from the pure rules: `depth` deeper
/// than the plan's, and the numbing wait not over at `now_ms`. Returns `(rule, detail)` for
/// each rule that would refuse.
pub fn arming_overrides(
    policy: &Policy,
    numbing_applied_at_ms: Option<i64>,
    planned: Option<PlannedSession>,
    depth_um: Option<i32>,
    now_ms: i64,
    check_numbing: bool,
) -> Vec<(&'static str, serde_json::Value)> {
    let mut out = Vec::new();
    if let (Some(p), Some(d)) = (planned, depth_um) {
        if i64::from(d) > i64::from(p.depth_um) {
            out.push((
                "depth_above_plan",
                serde_json::json!({ "planned_depth_um": p.depth_um, "depth_um": d }),
            ));
        }
    }
    if check_numbing {
        if let Some(ready) = numbing_ready_at(policy, numbing_applied_at_ms) {
            if now_ms < ready {
                out.push((
                    "numbing_wait",
                    serde_json::json!({ "ready_at_ms": ready, "wait_left_ms": ready - now_ms }),
                ));
            }
        }
    }
    out
}

/// When the numbing has acted: when it was last recorded applied (`applied_at_ms`) plus the
/// configured wait; none if it was not recorded or no wait is set.
pub fn numbing_ready_at(policy: &Policy, applied_at_ms: Option<i64>) -> Option<i64> {
    let numbing = policy.numbing.as_ref()?;
    let wait = i64::try_from(numbing.wait.as_millis()).unwrap_or(i64::MAX);
    (wait > 0).then_some(applied_at_ms?.saturating_add(wait))
}

/// The refusal for the first rule in `needed` when no override was given, or when the
/// caller may not override.
pub fn refuse_or_allow(
    actor: &Actor,
    needed: &[(&'static str, serde_json::Value)],
    override_reason: Option<&str>,
) -> Result<(), ApiError> {
    let Some((rule, detail)) = needed.first() else {
        return Ok(());
    };
    match override_reason {
        None => Err(ApiError::conflict(
            crate::error::known(rule),
            match *rule {
                "depth_above_plan" => format!(
                    "deeper than this session's planned depth ({detail}): a technician's \
                     override with a reason is needed"
                ),
                _ => format!(
                    "the numbing has not acted yet ({detail}): wait, or a technician's override \
                     with a reason"
                ),
            },
        )),
        Some(_) if actor.role != Role::Technician => Err(ApiError::forbidden(
            "overriding a plan or the numbing wait needs a technician",
        )),
        Some(reason) => super::rules::require_reason(reason, "an override needs a reason"),
    }
}

impl Service {
    /// Creates a plan, checked against the policy; the actor is the caller's token.
    pub async fn create_plan(&self, actor: &Actor, req: CreatePlan) -> Result<PlanView, ApiError> {
        check_plan(&self.policy, &req.areas, &req.sessions)?;
        if let Some(r) = &req.reason {
            super::rules::require_reason(r, "a reason must not be blank")?;
        }
        let new = NewPlan {
            subject_ref: req.subject_ref,
            areas: req.areas,
            min_days: req.min_days,
            max_days: req.max_days,
            sessions: req.sessions,
        };
        let name = actor.name.clone();
        let plan = self
            .plan_write(move |s| s.create_plan(&new, &name, req.reason.as_deref(), unix_ms()))
            .await?;
        self.plan(plan.id).await
    }

    /// Changes a plan with a reason; new planned sessions are checked against the policy.
    pub async fn change_plan(
        &self,
        actor: &Actor,
        id: PlanId,
        req: ChangePlan,
    ) -> Result<PlanView, ApiError> {
        super::rules::require_reason(&req.reason, "a plan change needs a reason")?;
        let current = self.plan(id).await?;
        if let Some(sessions) = &req.sessions {
            check_plan(&self.policy, &current.plan.areas, sessions)?;
        }
        let change = PlanChange {
            min_days: req.min_days,
            max_days: req.max_days,
            sessions: req.sessions,
        };
        let (name, reason) = (actor.name.clone(), req.reason);
        self.plan_write(move |s| s.change_plan(id, &change, &name, &reason, unix_ms()))
            .await?;
        self.plan(id).await
    }

    /// Stops a plan with a reason.
    pub async fn stop_plan(
        &self,
        actor: &Actor,
        id: PlanId,
        reason: &str,
    ) -> Result<PlanView, ApiError> {
        super::rules::require_reason(reason, "stopping a plan needs a reason")?;
        let (name, reason) = (actor.name.clone(), reason.to_string());
        self.plan_write(move |s| s.stop_plan(id, &name, &reason, unix_ms()))
            .await?;
        self.plan(id).await
    }

    async fn plan_write(
        &self,
        job: impl FnOnce(&mut Store) -> Result<PlanRecord, LedgerError> + Send + 'static,
    ) -> Result<PlanRecord, ApiError> {
        let job = Box::new(job);
        self.ask(|reply| Msg::PlanWrite { job, reply }).await
    }

    /// A plan's view now.
    pub async fn plan(&self, id: PlanId) -> Result<PlanView, ApiError> {
        let (plan, links, events) = self.read(move |s| s.plan_detail(id)).await?;
        Ok(view(plan, links, events, unix_ms()))
    }

    /// A subject's plans, oldest first.
    pub async fn plans_for_subject(&self, subject_ref: String) -> Result<Vec<PlanView>, ApiError> {
        let plans = self
            .read(move |s| s.plans_for_subject(&subject_ref))
            .await?;
        let mut out = Vec::with_capacity(plans.len());
        for p in plans {
            out.push(self.plan(p.id).await?);
        }
        Ok(out)
    }

    /// The plan context of a session, if it belongs to a plan.
    pub async fn plan_context(&self, session: SessionId) -> Result<Option<PlanContext>, ApiError> {
        let found = self.read(move |s| s.plan_of_session(session)).await?;
        Ok(found.map(|(plan, links, n)| context(&plan, &links, n)))
    }
}

/// What arming needs to know of a session's plan and numbing, read in the owner: the planned
/// depth and rate, and when numbing was last recorded applied.
pub(super) fn arming_facts(
    store: &Store,
    session: SessionId,
) -> Result<(Option<PlannedSession>, Option<i64>), LedgerError> {
    let planned = store
        .plan_of_session(session)?
        .and_then(|(plan, links, n)| context(&plan, &links, n).planned);
    Ok((planned, store.last_event_at(session, NUMBING_APPLIED)?))
}

/// Event kind: numbing applied to a session (the wait starts).
pub const NUMBING_APPLIED: &str = "numbing_applied";

impl Service {
    /// Records numbing applied to session `id` now (event `numbing_applied`, with when it
    /// will have acted); arming then waits `session.numbing_wait_min`. Refused once the
    /// session is armed or finished (`session_wrong_state`).
    pub async fn apply_numbing(
        &self,
        actor: &Actor,
        id: SessionId,
    ) -> Result<SessionRecord, ApiError> {
        let session = self.session(id).await?;
        if !matches!(session.state, SessionState::Created | SessionState::Bound) {
            return Err(super::rules::wrong_state(&session));
        }
        let now = unix_ms();
        let ready = numbing_ready_at(&self.policy, Some(now));
        let event = crate::store::Event::new(now, &actor.name, NUMBING_APPLIED)
            .session(id)
            .detail(serde_json::json!({ "ready_at_ms": ready }));
        self.ask(|reply| Msg::RecordEvent { event, reply }).await?;
        self.session(id).await
    }

    /// When session `id`'s numbing will have acted, if numbing was recorded and a wait is set.
    pub async fn numbing_ready(&self, id: SessionId) -> Result<Option<i64>, ApiError> {
        let applied = self
            .read(move |s| s.last_event_at(id, NUMBING_APPLIED))
            .await?;
        Ok(numbing_ready_at(&self.policy, applied))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::store::{ChecklistItem, PlanState};
    use needle_core::units::{Micrometers, MilliHertz};
    use std::collections::BTreeMap;
    use std::time::Duration;

    const DAY: i64 = 86_400_000;

    fn policy() -> Policy {
        Policy {
            areas: BTreeMap::from([
                ("face".to_string(), Micrometers(1_500)),
                ("neck".to_string(), Micrometers(1_000)),
            ]),
            checklist: Vec::new(),
            time_limit: Duration::from_secs(3_600),
            area_time_limits: BTreeMap::new(),
            warning_before: Duration::from_secs(60),
            min_interval: Duration::from_secs(0),
            limits: crate::store::CartridgeLimits::default(),
            post_care: String::new(),
            rate_range: (MilliHertz::from_hz(80), MilliHertz::from_hz(160)),
            numbing: Some(super::super::types::Numbing {
                wait: Duration::from_secs(20 * 60),
            }),
        }
    }

    fn plan(sessions: usize) -> PlanRecord {
        PlanRecord {
            id: 1,
            subject_ref: "S-1".into(),
            areas: vec!["face".into()],
            min_days: 28,
            max_days: 42,
            sessions: vec![
                PlannedSession {
                    depth_um: 500,
                    rate_mhz: 100_000
                };
                sessions
            ],
            state: PlanState::Active,
            created_at_ms: 0,
            created_by: "tech".into(),
            stopped_at_ms: None,
            stop_reason: None,
        }
    }

    fn session(id: i64, state: SessionState, started: i64, numbing: bool) -> SessionRecord {
        SessionRecord {
            id,
            operator: "op".into(),
            subject_ref: "S-1".into(),
            area: "face".into(),
            checklist: vec![ChecklistItem {
                item: "numbing".into(),
                confirmed: numbing,
            }],
            state,
            cartridge_id: None,
            created_at_ms: started,
            started_at_ms: Some(started),
            ended_at_ms: None,
            run_ms: 0,
            strokes: 0,
            end_reason: None,
        }
    }

    #[test]
    fn the_next_session_is_upcoming_then_due_then_overdue() {
        let links = vec![PlanSession {
            n: 1,
            session: session(1, SessionState::Ended, 10 * DAY, false),
        }];
        let at = |now| view(plan(3), links.clone(), Vec::new(), now);
        assert_eq!(at(20 * DAY).slots[1].status, SlotStatus::Upcoming);
        assert_eq!(at(38 * DAY).slots[1].status, SlotStatus::Due);
        assert_eq!(at(53 * DAY).slots[1].status, SlotStatus::Overdue);
        let v = at(38 * DAY);
        assert_eq!(v.slots[0].status, SlotStatus::Done);
        assert_eq!(v.slots[2].status, SlotStatus::Planned);
        assert_eq!(
            v.next_window,
            Some(Window {
                n: 2,
                opens_at_ms: 38 * DAY,
                closes_at_ms: Some(52 * DAY)
            })
        );
        assert_eq!((v.status, v.done, v.total), (PlanStatus::Active, 1, 3));
    }

    #[test]
    fn a_plan_is_complete_when_every_session_is_done_and_stopped_when_stopped() {
        let links = vec![PlanSession {
            n: 1,
            session: session(1, SessionState::Ended, DAY, false),
        }];
        let v = view(plan(1), links, Vec::new(), 2 * DAY);
        assert_eq!((v.status, v.next_window), (PlanStatus::Complete, None));
        let mut p = plan(2);
        p.state = PlanState::Stopped;
        let v = view(p, Vec::new(), Vec::new(), 0);
        assert_eq!(v.status, PlanStatus::Stopped);
        assert_eq!(v.slots[0].status, SlotStatus::NotGiven);
    }

    #[test]
    fn planned_depth_must_fit_every_area_of_the_plan() {
        let p = policy();
        let deep = [PlannedSession {
            depth_um: 1_200,
            rate_mhz: 100_000,
        }];
        assert!(check_plan(&p, &["face".into()], &deep).is_ok());
        let e = check_plan(&p, &["face".into(), "neck".into()], &deep).unwrap_err();
        assert_eq!(e.code, ErrorCode::DepthAboveAreaCeiling);
        assert_eq!(
            check_plan(&p, &["elbow".into()], &deep).unwrap_err().code,
            ErrorCode::UnknownArea
        );
        let fast = [PlannedSession {
            depth_um: 500,
            rate_mhz: 500_000,
        }];
        assert_eq!(
            check_plan(&p, &["face".into()], &fast).unwrap_err().code,
            ErrorCode::RateOutOfRange
        );
    }

    #[test]
    fn deeper_than_planned_and_early_after_numbing_need_a_technicians_reason() {
        let p = policy();
        let planned = Some(PlannedSession {
            depth_um: 500,
            rate_mhz: 100_000,
        });
        let minute = 60_000;
        let needed = arming_overrides(&p, Some(0), planned, Some(600), 5 * minute, true);
        let rules: Vec<&str> = needed.iter().map(|(r, _)| *r).collect();
        assert_eq!(rules, ["depth_above_plan", "numbing_wait"]);
        assert!(arming_overrides(&p, Some(0), planned, Some(500), 20 * minute, true).is_empty());
        let op = Actor {
            name: "op".into(),
            role: Role::Operator,
        };
        let tech = Actor {
            name: "tech".into(),
            role: Role::Technician,
        };
        assert_eq!(
            refuse_or_allow(&tech, &needed, None).unwrap_err().code,
            ErrorCode::DepthAbovePlan
        );
        assert_eq!(
            refuse_or_allow(&op, &needed, Some("scar tissue"))
                .unwrap_err()
                .code,
            ErrorCode::Forbidden
        );
        assert_eq!(
            refuse_or_allow(&tech, &needed, Some(" ")).unwrap_err().code,
            ErrorCode::ReasonRequired
        );
        assert!(refuse_or_allow(&tech, &needed, Some("scar tissue")).is_ok());
        assert!(arming_overrides(&p, None, None, Some(900), 0, true).is_empty());
        let deep = arming_overrides(&p, Some(0), planned, Some(900), 0, false);
        assert_eq!(
            deep.len(),
            1,
            "a setpoint change checks the plan, not the numbing"
        );
    }
}
