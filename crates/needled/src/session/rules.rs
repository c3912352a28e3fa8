//! The session rules as plain functions: who may hold the pen, which states allow what, the
//! area's depth ceiling, the checklist, and the checks on a new session.

use std::collections::BTreeMap;

use needle_core::units::Micrometers;

use super::types::{Actor, CreateSession, MonitorHealth, Policy, Role};
use crate::error::{ApiError, ErrorCode};
use crate::store::{
    ChecklistItem, NewSession, Now, Override, SessionId, SessionRecord, SessionState,
};

/// Now on the wall clock, for records and the ledger's date checks.
pub(super) fn now() -> Result<Now, ApiError> {
    Now::utc(super::unix_ms()).ok_or_else(|| {
        ApiError::new(
            500,
            ErrorCode::ClockInvalid,
            "the system clock is out of range",
        )
    })
}

/// 503 `monitor_unavailable` unless the monitor is healthy: nothing may be armed or started
/// that the monitor would not watch.
pub(super) fn require_monitor(health: MonitorHealth) -> Result<(), ApiError> {
    match health {
        MonitorHealth::Ok => Ok(()),
        h => Err(monitor_unavailable(h)),
    }
}

/// The refusal of every change once the session owner (which runs the monitor) has died.
pub(super) fn owner_gone() -> ApiError {
    monitor_unavailable(MonitorHealth::Failed)
}

fn monitor_unavailable(health: MonitorHealth) -> ApiError {
    ApiError::new(
        503,
        ErrorCode::MonitorUnavailable,
        format!(
            "the service's monitor is {}: the needles stay stopped",
            health.code()
        ),
    )
}

/// 409 `pen_in_use` unless the pen is free or held by session `id`.
pub(super) fn check_pen_free(holder: Option<SessionId>, id: SessionId) -> Result<(), ApiError> {
    match holder {
        Some(h) if h != id => Err(ApiError::conflict(
            ErrorCode::PenInUse,
            format!("session {h} holds the pen"),
        )),
        _ => Ok(()),
    }
}

/// 409 `session_not_active` unless session `id` holds the pen.
pub(super) fn require_active(holder: Option<SessionId>, id: SessionId) -> Result<(), ApiError> {
    match holder {
        Some(h) if h == id => Ok(()),
        _ => Err(not_active(id)),
    }
}

/// 409 `session_not_active`: session `id` does not hold the pen.
pub(super) fn not_active(id: SessionId) -> ApiError {
    ApiError::conflict(
        ErrorCode::SessionNotActive,
        format!("session {id} does not hold the pen"),
    )
}

/// Whether a session in `state` has the needles armed (armed, running or paused).
pub(super) fn armed(state: SessionState) -> bool {
    matches!(
        state,
        SessionState::Armed | SessionState::Running | SessionState::Paused
    )
}

/// 409 `session_wrong_state`: what a session in its state cannot do.
pub(super) fn wrong_state(session: &SessionRecord) -> ApiError {
    ApiError::conflict(
        ErrorCode::SessionWrongState,
        format!("session is {}", session.state.as_str()),
    )
}

/// A reason for an override or a recall: not empty, and one the ledger will take.
pub(super) fn require_reason(reason: &str, missing: &str) -> Result<(), ApiError> {
    if crate::store::is_blank(reason) {
        return Err(ApiError::bad_request(ErrorCode::ReasonRequired, missing));
    }
    Ok(crate::store::check_reason(reason)?)
}

/// The depth ceiling of the session's treatment area.
pub(super) fn area_ceiling(
    policy: &Policy,
    session: &SessionRecord,
) -> Result<Micrometers, ApiError> {
    policy.areas.get(&session.area).copied().ok_or_else(|| {
        ApiError::conflict(
            ErrorCode::UnknownArea,
            format!("area '{}' is no longer configured", session.area),
        )
    })
}

/// A depth within the area's ceiling.
pub(super) fn check_depth(
    policy: &Policy,
    session: &SessionRecord,
    depth: i32,
) -> Result<Micrometers, ApiError> {
    let ceiling = area_ceiling(policy, session)?;
    if depth < 0 || depth > ceiling.0 {
        return Err(ApiError::bad_request(
            ErrorCode::DepthAboveAreaCeiling,
            format!(
                "depth {depth} um is outside 0..={} um for area '{}'",
                ceiling.0, session.area
            ),
        ));
    }
    Ok(Micrometers(depth))
}

/// 409 `checklist_incomplete` unless every required item is confirmed.
pub(super) fn require_checklist(policy: &Policy, session: &SessionRecord) -> Result<(), ApiError> {
    let missing: Vec<&str> = policy
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
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ApiError::conflict(
            ErrorCode::ChecklistIncomplete,
            format!("checklist items not confirmed: {missing:?}"),
        ))
    }
}

/// 400 `unknown_checklist_item` unless every id answered is on the configured checklist.
fn require_known_items(policy: &Policy, answers: &BTreeMap<String, bool>) -> Result<(), ApiError> {
    match answers
        .keys()
        .find(|id| !policy.checklist.iter().any(|c| &c.id == *id))
    {
        Some(id) => Err(ApiError::bad_request(
            ErrorCode::UnknownChecklistItem,
            format!("unknown checklist item '{id}'"),
        )),
        None => Ok(()),
    }
}

/// Checklist answers given after creation, checked against the policy: at least one, every
/// one a configured item (400 `invalid_request`, `unknown_checklist_item`).
pub(super) fn checklist_update(
    policy: &Policy,
    answers: &BTreeMap<String, bool>,
) -> Result<Vec<ChecklistItem>, ApiError> {
    if answers.is_empty() {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidRequest,
            "checklist: give at least one answer",
        ));
    }
    require_known_items(policy, answers)?;
    Ok(answers
        .iter()
        .map(|(item, confirmed)| ChecklistItem {
            item: item.clone(),
            confirmed: *confirmed,
        })
        .collect())
}

/// A request to create a session checked against the policy: a known area, known checklist
/// items, an interval override only from a technician.
pub(super) fn new_session(
    policy: &Policy,
    actor: &Actor,
    req: CreateSession,
) -> Result<(NewSession, Option<Override>), ApiError> {
    if !policy.areas.contains_key(&req.area) {
        let known: Vec<&String> = policy.areas.keys().collect();
        return Err(ApiError::bad_request(
            ErrorCode::UnknownArea,
            format!("unknown treatment area '{}'; known: {known:?}", req.area),
        ));
    }
    require_known_items(policy, &req.checklist)?;
    let checklist = policy
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
        operator: actor.name.clone(),
        stated_operator: req.operator,
        subject_ref: req.subject_ref,
        area: req.area,
        checklist,
    };
    Ok((new, override_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pen_is_free_for_its_holder_and_no_one_else() {
        assert!(check_pen_free(None, 1).is_ok());
        assert!(check_pen_free(Some(1), 1).is_ok());
        assert_eq!(
            check_pen_free(Some(2), 1).unwrap_err().code.as_str(),
            "pen_in_use"
        );
        assert!(require_active(Some(1), 1).is_ok());
        assert_eq!(
            require_active(Some(2), 1).unwrap_err().code.as_str(),
            "session_not_active"
        );
        assert_eq!(
            require_active(None, 1).unwrap_err().code.as_str(),
            "session_not_active"
        );
    }

    #[test]
    fn only_a_healthy_monitor_lets_the_needles_be_armed() {
        assert!(require_monitor(MonitorHealth::Ok).is_ok());
        let stalled = require_monitor(MonitorHealth::Stalled(std::time::Duration::from_secs(2)));
        assert_eq!(stalled.unwrap_err().code.as_str(), "monitor_unavailable");
        let gone = owner_gone();
        assert_eq!(
            (gone.status, gone.code.as_str()),
            (503, "monitor_unavailable")
        );
    }

    #[test]
    fn a_blank_reason_is_refused_before_the_ledger_sees_it() {
        let e = require_reason("  ", "a recall needs a reason").unwrap_err();
        assert_eq!(e.code.as_str(), "reason_required");
        assert!(require_reason("supplier notice 43", "unused").is_ok());
    }
}
