//! Session reports: everything recorded about one session, as JSON (serde) or CSV.

use serde::Serialize;

use crate::cartridge::{Date, Needles};

use super::cartridges::{self, CartridgeLimits, CartridgeState};
use super::events::{self, kinds, EventRecord};
use super::plans::{self, PlanId};
use super::sessions::{self, ChecklistItem, SessionId, SessionState};
use super::{LedgerError, Store};

/// The cartridge used in a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportCartridge {
    /// Cartridge id.
    pub id: String,
    /// Production lot.
    pub lot: String,
    /// Needle configuration.
    pub needles: Needles,
    /// Expiry date.
    pub expiry: Date,
    /// Its state now.
    pub state: CartridgeState,
    /// Why it was spent.
    pub spent_reason: Option<String>,
}

/// Depth and stroke-rate setpoints from one moment on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetpointEntry {
    /// Event seq.
    pub seq: i64,
    /// When, unix ms.
    pub at_ms: i64,
    /// Needle depth, µm.
    pub depth_um: u32,
    /// Stroke rate, mHz.
    pub rate_mhz: u32,
    /// Who set them.
    pub actor: String,
}

/// One row of a session's timeline (one event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineEntry {
    /// Event seq.
    pub seq: i64,
    /// When, unix ms.
    pub at_ms: i64,
    /// Event kind.
    pub kind: String,
    /// Depth setpoint, µm (setpoint events only).
    pub depth_um: Option<u32>,
    /// Rate setpoint, mHz (setpoint events only).
    pub rate_mhz: Option<u32>,
    /// Who.
    pub actor: String,
    /// Why, if recorded.
    pub reason: Option<String>,
}

/// The session's place in its treatment plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportPlan {
    /// The plan.
    pub plan_id: PlanId,
    /// This session's number in the plan.
    pub n: u32,
    /// Sessions in the plan.
    pub total: u32,
    /// This session's planned depth, µm.
    pub planned_depth_um: Option<u32>,
    /// This session's planned stroke rate, mHz.
    pub planned_rate_mhz: Option<u32>,
    /// Where the plan stands now.
    pub plan_status: super::PlanStatus,
    /// The next session's window opens, unix ms (while the plan goes on).
    pub next_window_opens_at_ms: Option<i64>,
    /// The next session's window closes, unix ms.
    pub next_window_closes_at_ms: Option<i64>,
}

/// Everything the ledger recorded about one session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionReport {
    /// Session id.
    pub session_id: SessionId,
    /// Who performed it.
    pub operator: String,
    /// Opaque subject reference.
    pub subject_ref: String,
    /// Treatment area.
    pub area: String,
    /// Checklist answers.
    pub checklist: Vec<ChecklistItem>,
    /// State when the report was made.
    pub state: SessionState,
    /// The cartridge used, if one was bound.
    pub cartridge: Option<ReportCartridge>,
    /// Created, unix ms.
    pub created_at_ms: i64,
    /// First reached running, unix ms.
    pub started_at_ms: Option<i64>,
    /// Ended or aborted, unix ms.
    pub ended_at_ms: Option<i64>,
    /// Motor run time, ms.
    pub run_ms: u64,
    /// Strokes.
    pub strokes: u64,
    /// Why it ended or was aborted.
    pub end_reason: Option<String>,
    /// Setpoints over time.
    pub setpoints: Vec<SetpointEntry>,
    /// Fault events (kind `fault`).
    pub faults: Vec<EventRecord>,
    /// Override events (kinds `interval_override` and `override`).
    pub overrides: Vec<EventRecord>,
    /// Every event of the session, in order.
    pub timeline: Vec<TimelineEntry>,
    /// The treatment plan it belongs to (session n of N, the next window), if any.
    pub plan: Option<ReportPlan>,
}

fn detail_u32(event: &EventRecord, key: &str) -> Option<u32> {
    event
        .event
        .detail
        .get(key)
        .and_then(serde_json::Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
}

impl Store {
    /// The report of session `id`, read from one consistent snapshot. Refuses `not_found`.
    pub fn session_report(&self, id: SessionId) -> Result<SessionReport, LedgerError> {
        self.read(|tx| {
            let session = sessions::require(tx, id)?;
            let cartridge = match session.cartridge_id.as_deref() {
                Some(cid) => {
                    let c = cartridges::require(tx, cid, &CartridgeLimits::default())?;
                    Some(ReportCartridge {
                        id: c.id,
                        lot: c.lot,
                        needles: c.needles,
                        expiry: c.expiry,
                        state: c.state,
                        spent_reason: c.spent_reason,
                    })
                }
                None => None,
            };
            let log = events::for_session(tx, id)?;
            let is_setpoints = |e: &EventRecord| e.event.kind == kinds::SETPOINTS;
            let setpoints = log
                .iter()
                .filter(|e| is_setpoints(e))
                .filter_map(|e| {
                    Some(SetpointEntry {
                        seq: e.seq,
                        at_ms: e.event.at_ms,
                        depth_um: detail_u32(e, "depth_um")?,
                        rate_mhz: detail_u32(e, "rate_mhz")?,
                        actor: e.event.actor.clone(),
                    })
                })
                .collect();
            let faults = log
                .iter()
                .filter(|e| e.event.kind == kinds::FAULT)
                .cloned()
                .collect();
            let overrides = log
                .iter()
                .filter(|e| {
                    e.event.kind == kinds::INTERVAL_OVERRIDE || e.event.kind == kinds::OVERRIDE
                })
                .cloned()
                .collect();
            let timeline = log
                .iter()
                .map(|e| TimelineEntry {
                    seq: e.seq,
                    at_ms: e.event.at_ms,
                    kind: e.event.kind.clone(),
                    depth_um: is_setpoints(e).then(|| detail_u32(e, "depth_um")).flatten(),
                    rate_mhz: is_setpoints(e).then(|| detail_u32(e, "rate_mhz")).flatten(),
                    actor: e.event.actor.clone(),
                    reason: e.event.reason.clone(),
                })
                .collect();
            let plan = plans::report_context(tx, id)?;
            Ok(SessionReport {
                session_id: session.id,
                operator: session.operator,
                subject_ref: session.subject_ref,
                area: session.area,
                checklist: session.checklist,
                state: session.state,
                cartridge,
                created_at_ms: session.created_at_ms,
                started_at_ms: session.started_at_ms,
                ended_at_ms: session.ended_at_ms,
                run_ms: session.run_ms,
                strokes: session.strokes,
                end_reason: session.end_reason,
                setpoints,
                faults,
                overrides,
                timeline,
                plan,
            })
        })
    }
}

/// The header row of [`report_csv`]: the timeline's columns, then the plan context repeated
/// on every row (empty for a session outside a plan).
pub const CSV_HEADER: &str = "at_ms,kind,depth_um,rate_mhz,actor,reason,plan_id,plan_session,\
plan_sessions,next_window_opens_at_ms,next_window_closes_at_ms";

/// The `kind` of the CSV's last row, which carries the after-care advice in its `reason`
/// cell (the JSON report's `post_care`).
pub const CSV_POST_CARE_KIND: &str = "post_care";

/// The first characters that make a spreadsheet read a cell as a formula (OWASP's CSV
/// injection list): `=`, `+`, `-`, `@`, tab and carriage return.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A text cell of the CSV: neutralised against formula injection as OWASP recommends (a cell
/// that starts with one of [`FORMULA_STARTS`] gets a leading `'`, so a spreadsheet shows it
/// as text), then quoted if it contains a comma, a quote or a line break (RFC 4180, quotes
/// doubled). Numbers the ledger wrote are not text cells and are written as they are.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(FORMULA_STARTS) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// The report's timeline as CSV (RFC 4180, CRLF line ends): the header [`CSV_HEADER`], then
/// one row per timeline entry, then one row of kind [`CSV_POST_CARE_KIND`] with the
/// after-care advice `post_care` as its reason. Empty cells for absent values; text cells
/// (kind, actor, reason) are neutralised against spreadsheet formula injection.
pub fn report_csv(report: &SessionReport, post_care: &str) -> String {
    let mut out = String::new();
    out.push_str(CSV_HEADER);
    out.push_str("\r\n");
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    let plan = report.plan.as_ref();
    let plan_cells = [
        opt(plan.map(|p| p.plan_id)),
        opt(plan.map(|p| i64::from(p.n))),
        opt(plan.map(|p| i64::from(p.total))),
        opt(plan.and_then(|p| p.next_window_opens_at_ms)),
        opt(plan.and_then(|p| p.next_window_closes_at_ms)),
    ];
    for entry in &report.timeline {
        let cells = [
            entry.at_ms.to_string(),
            csv_field(&entry.kind),
            entry.depth_um.map(|v| v.to_string()).unwrap_or_default(),
            entry.rate_mhz.map(|v| v.to_string()).unwrap_or_default(),
            csv_field(&entry.actor),
            entry.reason.as_deref().map(csv_field).unwrap_or_default(),
        ];
        out.push_str(&cells.join(","));
        out.push(',');
        out.push_str(&plan_cells.join(","));
        out.push_str("\r\n");
    }
    // The after-care row has every column too, the plan context included.
    out.push_str(&format!(
        ",{CSV_POST_CARE_KIND},,,,{},{}\r\n",
        csv_field(post_care),
        plan_cells.join(",")
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("plain text"), "plain text");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field("cr\rhere"), "\"cr\rhere\"");
        assert_eq!(csv_field(""), "");
    }

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_as_formulas_are_neutralised() {
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("+1+1"), "'+1+1");
        assert_eq!(csv_field("-2+3"), "'-2+3");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("\t=1"), "'\t=1");
        assert_eq!(csv_field("\r=1"), "\"'\r=1\"");
        assert_eq!(csv_field("=1,2"), "\"'=1,2\"");
        // Only the first character matters.
        assert_eq!(csv_field("a=b"), "a=b");
        assert_eq!(csv_field("dr-chen"), "dr-chen");
    }

    #[test]
    fn csv_of_an_empty_timeline_is_the_header_alone() {
        let report = SessionReport {
            session_id: 1,
            operator: "op".to_owned(),
            subject_ref: "s".to_owned(),
            area: "face".to_owned(),
            checklist: Vec::new(),
            state: SessionState::Created,
            cartridge: None,
            created_at_ms: 0,
            started_at_ms: None,
            ended_at_ms: None,
            run_ms: 0,
            strokes: 0,
            end_reason: None,
            setpoints: Vec::new(),
            faults: Vec::new(),
            overrides: Vec::new(),
            timeline: Vec::new(),
            plan: None,
        };
        assert_eq!(
            report_csv(&report, "Keep it clean, \"dry\"."),
            format!("{CSV_HEADER}\r\n,post_care,,,,\"Keep it clean, \"\"dry\"\".\",,,,,\r\n")
        );
    }
}
