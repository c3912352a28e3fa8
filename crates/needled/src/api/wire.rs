//! From the service's own types to the API contract's (`needle_api`): the one place where
//! what the ledger and the controller hold becomes what the wire carries.

use needle_api as wire;
use needle_core::protocol::State;
use needle_core::Telemetry;

use crate::cartridge::Needles;
use crate::session::{PlanSlot, PlanView, StorageHealth, Window};
use crate::store::{
    CartridgeRecord, CartridgeState, ChecklistItem, EventRecord, PlanSession, ReportCartridge,
    SessionRecord, SessionReport, SessionState, SetpointEntry, TimelineEntry,
};

impl From<SessionState> for wire::SessionState {
    fn from(s: SessionState) -> Self {
        match s {
            SessionState::Created => wire::SessionState::Created,
            SessionState::Bound => wire::SessionState::Bound,
            SessionState::Armed => wire::SessionState::Armed,
            SessionState::Running => wire::SessionState::Running,
            SessionState::Paused => wire::SessionState::Paused,
            SessionState::Ended => wire::SessionState::Ended,
            SessionState::Aborted => wire::SessionState::Aborted,
        }
    }
}

impl From<CartridgeState> for wire::CartridgeState {
    fn from(s: CartridgeState) -> Self {
        match s {
            CartridgeState::New => wire::CartridgeState::New,
            CartridgeState::InUse => wire::CartridgeState::InUse,
            CartridgeState::Spent => wire::CartridgeState::Spent,
        }
    }
}

impl From<Needles> for wire::Needles {
    fn from(n: Needles) -> Self {
        match n {
            Needles::Pins12 => wire::Needles::Pins12,
            Needles::Pins24 => wire::Needles::Pins24,
            Needles::Pins36 => wire::Needles::Pins36,
            Needles::Pins42 => wire::Needles::Pins42,
            Needles::Nano => wire::Needles::Nano,
        }
    }
}

impl From<wire::Needles> for Needles {
    fn from(n: wire::Needles) -> Self {
        match n {
            wire::Needles::Pins12 => Needles::Pins12,
            wire::Needles::Pins24 => Needles::Pins24,
            wire::Needles::Pins36 => Needles::Pins36,
            wire::Needles::Pins42 => Needles::Pins42,
            wire::Needles::Nano => Needles::Nano,
        }
    }
}

fn checklist(items: Vec<ChecklistItem>) -> Vec<wire::ChecklistItem> {
    items
        .into_iter()
        .map(|c| wire::ChecklistItem {
            item: c.item,
            confirmed: c.confirmed,
        })
        .collect()
}

impl From<SessionRecord> for wire::Session {
    fn from(s: SessionRecord) -> Self {
        wire::Session {
            id: s.id,
            operator: s.operator,
            subject_ref: s.subject_ref,
            area: s.area,
            checklist: checklist(s.checklist),
            state: s.state.into(),
            cartridge_id: s.cartridge_id,
            created_at_ms: s.created_at_ms,
            started_at_ms: s.started_at_ms,
            ended_at_ms: s.ended_at_ms,
            run_ms: s.run_ms,
            strokes: s.strokes,
            end_reason: s.end_reason,
        }
    }
}

impl From<CartridgeRecord> for wire::Cartridge {
    fn from(c: CartridgeRecord) -> Self {
        wire::Cartridge {
            id: c.id,
            lot: c.lot,
            needles: c.needles.into(),
            expiry: c.expiry.to_string(),
            state: c.state.into(),
            session_id: c.session_id,
            run_ms: c.run_ms,
            strokes: c.strokes,
            remaining_run_ms: c.remaining_run_ms,
            remaining_strokes: c.remaining_strokes,
            lot_recalled: c.lot_recalled,
            registered_at_ms: c.registered_at_ms,
            bound_at_ms: c.bound_at_ms,
            spent_at_ms: c.spent_at_ms,
            spent_reason: c.spent_reason,
        }
    }
}

impl From<EventRecord> for wire::EventRecord {
    fn from(r: EventRecord) -> Self {
        let e = r.event;
        wire::EventRecord {
            seq: r.seq,
            at_ms: e.at_ms,
            actor: e.actor,
            kind: e.kind,
            session_id: e.session_id,
            cartridge_id: e.cartridge_id,
            reason: e.reason,
            detail: e.detail,
        }
    }
}

fn events(list: Vec<EventRecord>) -> Vec<wire::EventRecord> {
    list.into_iter().map(Into::into).collect()
}

impl From<ReportCartridge> for wire::ReportCartridge {
    fn from(c: ReportCartridge) -> Self {
        wire::ReportCartridge {
            id: c.id,
            lot: c.lot,
            needles: c.needles.into(),
            expiry: c.expiry.to_string(),
            state: c.state.into(),
            spent_reason: c.spent_reason,
        }
    }
}

impl From<SetpointEntry> for wire::SetpointEntry {
    fn from(s: SetpointEntry) -> Self {
        wire::SetpointEntry {
            seq: s.seq,
            at_ms: s.at_ms,
            depth_um: s.depth_um,
            rate_mhz: s.rate_mhz,
            actor: s.actor,
        }
    }
}

impl From<TimelineEntry> for wire::TimelineEntry {
    fn from(t: TimelineEntry) -> Self {
        wire::TimelineEntry {
            seq: t.seq,
            at_ms: t.at_ms,
            kind: t.kind,
            depth_um: t.depth_um,
            rate_mhz: t.rate_mhz,
            actor: t.actor,
            reason: t.reason,
        }
    }
}

/// A session report with the after-care advice the service is configured with.
pub(super) fn report(r: SessionReport, post_care: String) -> wire::SessionReport {
    wire::SessionReport {
        session_id: r.session_id,
        operator: r.operator,
        subject_ref: r.subject_ref,
        area: r.area,
        checklist: checklist(r.checklist),
        state: r.state.into(),
        cartridge: r.cartridge.map(Into::into),
        created_at_ms: r.created_at_ms,
        started_at_ms: r.started_at_ms,
        ended_at_ms: r.ended_at_ms,
        run_ms: r.run_ms,
        strokes: r.strokes,
        end_reason: r.end_reason,
        setpoints: r.setpoints.into_iter().map(Into::into).collect(),
        faults: events(r.faults),
        overrides: events(r.overrides),
        timeline: r.timeline.into_iter().map(Into::into).collect(),
        plan: r.plan.map(|p| needle_api::ReportPlan {
            plan_id: p.plan_id,
            n: p.n,
            total: p.total,
            planned_depth_um: p.planned_depth_um,
            planned_rate_mhz: p.planned_rate_mhz,
            plan_status: p.plan_status,
            next_window_opens_at_ms: p.next_window_opens_at_ms,
            next_window_closes_at_ms: p.next_window_closes_at_ms,
        }),
        post_care,
    }
}

impl From<Window> for wire::PlanWindow {
    fn from(w: Window) -> Self {
        wire::PlanWindow {
            n: w.n,
            opens_at_ms: w.opens_at_ms,
            closes_at_ms: w.closes_at_ms,
        }
    }
}

impl From<PlanSlot> for wire::PlanSlot {
    fn from(s: PlanSlot) -> Self {
        wire::PlanSlot {
            n: s.n,
            planned: s.planned,
            status: s.status,
            session_id: s.session_id,
        }
    }
}

impl From<PlanSession> for wire::PlanSession {
    fn from(p: PlanSession) -> Self {
        wire::PlanSession {
            n: p.n,
            session: p.session.into(),
        }
    }
}

impl From<PlanView> for wire::Plan {
    fn from(v: PlanView) -> Self {
        wire::Plan {
            plan: v.plan,
            status: v.status,
            done: v.done,
            total: v.total,
            next_window: v.next_window.map(Into::into),
            slots: v.slots.into_iter().map(Into::into).collect(),
            history: v.history.into_iter().map(Into::into).collect(),
            events: v.events,
        }
    }
}

impl From<StorageHealth> for wire::StorageHealth {
    fn from(s: StorageHealth) -> Self {
        wire::StorageHealth {
            ok: s.ok,
            failed_at_ms: s.failed_at_ms,
            error: s.error,
            pending: s.pending as u64,
        }
    }
}

fn controller_state(s: State) -> wire::ControllerState {
    match s {
        State::Boot => wire::ControllerState::Boot,
        State::Homing => wire::ControllerState::Homing,
        State::Idle => wire::ControllerState::Idle,
        State::Armed => wire::ControllerState::Armed,
        State::Running => wire::ControllerState::Running,
        State::Paused => wire::ControllerState::Paused,
        State::Fault => wire::ControllerState::Fault,
        State::EStop => wire::ControllerState::EStop,
    }
}

/// The controller's telemetry as the API shows it.
pub(super) fn telemetry(t: &Telemetry) -> wire::Telemetry {
    wire::Telemetry {
        state: controller_state(t.state),
        faults: t.faults.iter().map(|f| f.code().to_string()).collect(),
        last_fault: t.last_fault.map(|f| f.code().to_string()),
        interlocks: t
            .interlocks
            .iter()
            .map(|i| wire::InterlockInfo {
                code: i.code().to_string(),
                reason: i.reason().to_string(),
            })
            .collect(),
        homed: t.homed,
        depth: wire::Depth {
            setpoint_um: t.depth_setpoint.0,
            position_um: t.depth_position.0,
            ceiling_um: t.depth_ceiling.0,
            moving: t.depth_moving,
        },
        rate: wire::Rate {
            setpoint_mhz: t.rate_setpoint.0,
            measured_mhz: t.rate_measured.0,
        },
        duty_permyriad: t.duty.0,
        motor_enabled: t.motor_enabled,
        stroke_count: t.stroke_count,
        current_ma: t.current.0,
        temperature_mc: t.temperature.0,
        supply_mv: t.supply.0,
        pedal: t.pedal,
        controller_time_us: t.now.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_states_keep_their_debug_names_on_the_wire() {
        for s in [
            State::Boot,
            State::Homing,
            State::Idle,
            State::Armed,
            State::Running,
            State::Paused,
            State::Fault,
            State::EStop,
        ] {
            let json = serde_json::to_value(controller_state(s)).unwrap();
            assert_eq!(json, serde_json::json!(format!("{s:?}")));
        }
    }

    #[test]
    fn session_and_cartridge_states_and_needles_keep_their_names() {
        for s in [
            SessionState::Created,
            SessionState::Bound,
            SessionState::Armed,
            SessionState::Running,
            SessionState::Paused,
            SessionState::Ended,
            SessionState::Aborted,
        ] {
            assert_eq!(
                serde_json::to_value(wire::SessionState::from(s)).unwrap(),
                serde_json::to_value(s).unwrap()
            );
        }
        for s in CartridgeState::ALL {
            assert_eq!(
                serde_json::to_value(wire::CartridgeState::from(s)).unwrap(),
                serde_json::to_value(s).unwrap()
            );
        }
        for n in Needles::ALL {
            let w = wire::Needles::from(n);
            assert_eq!(
                serde_json::to_value(w).unwrap(),
                serde_json::to_value(n).unwrap()
            );
            assert_eq!(Needles::from(w), n);
        }
    }
}
