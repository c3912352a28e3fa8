//! The printable treatment record: one HTML page per session or per plan, laid out for print
//! (A4 and Letter alike: the page size is the printer's, the margins and breaks are the
//! record's), with the depth and stroke-rate plot drawn here as SVG from the recorded
//! setpoint events, the checklist as confirmed, the cartridge, the operator, every override
//! with its reason, every fault and how it was cleared, and the after-care advice.
//!
//! Everything on the page is escaped text from the ledger; the page loads nothing else.

use std::fmt::Write as _;

use crate::session::{ChecklistSpec, PlanView};
use crate::store::{EventRecord, SessionReport};

/// Escapes text for HTML.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A unix-ms time as `YYYY-MM-DD HH:MM UTC`.
pub fn when(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| format!("{ms} ms"))
}

fn date(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_else(|_| format!("{ms} ms"))
}

const STYLE: &str = r#"
body { font: 11pt/1.35 system-ui, sans-serif; color: #111; margin: 2em auto; max-width: 190mm; }
h1 { font-size: 16pt; margin: 0 0 .2em; } h2 { font-size: 12pt; margin: 1.1em 0 .3em;
  border-bottom: 1px solid #888; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: 2px 6px;
  border-bottom: 1px solid #ddd; vertical-align: top; } th { font-weight: 600; }
.meta td:first-child { width: 32%; color: #444; } .none { color: #666; font-style: italic; }
svg { width: 100%; height: auto; } .depth { stroke: #0b5; } .rate { stroke: #15c; }
.fault { stroke: #c22; stroke-dasharray: 3 2; } .sign { margin-top: 2em; }
.session { break-before: page; } .session:first-of-type { break-before: auto; }
@page { margin: 14mm 12mm; }
@media print { body { margin: 0; max-width: none; font-size: 10pt; }
  h2, tr, svg, section.part { break-inside: avoid; } }
"#;

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>\n",
        esc(title)
    )
}

/// The depth and stroke-rate plot of a session over time, as SVG: step lines from the
/// setpoint events, faults as red marks. `end_ms` closes the last step.
pub fn plot_svg(report: &SessionReport, end_ms: i64) -> String {
    const W: f64 = 700.0;
    const H: f64 = 220.0;
    const L: f64 = 50.0;
    const R: f64 = 50.0;
    const T: f64 = 12.0;
    const B: f64 = 28.0;
    let pts = &report.setpoints;
    let mut svg = format!(
        "<svg id=\"plot\" viewBox=\"0 0 {W} {H}\" role=\"img\" \
         aria-label=\"depth and stroke rate over time\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    let (Some(first), Some(_)) = (pts.first(), pts.last()) else {
        svg.push_str(
            "<text x=\"10\" y=\"30\" class=\"none\">no setpoints were recorded</text></svg>",
        );
        return svg;
    };
    let t0 = first.at_ms;
    let t1 = end_ms.max(t0 + 1);
    // Axes from zero, rounded up with headroom so the two lines rarely lie on each other:
    // depth in 0.25 mm steps, rate in 10 Hz steps.
    let round_up = |v: u32, step: u32| v.div_ceil(step).max(1) * step;
    let dmax = f64::from(round_up(
        pts.iter()
            .map(|p| p.depth_um)
            .max()
            .unwrap_or(0)
            .saturating_mul(5)
            / 4,
        250,
    ));
    let rmax = f64::from(round_up(
        pts.iter()
            .map(|p| p.rate_mhz)
            .max()
            .unwrap_or(0)
            .saturating_mul(8)
            / 5,
        10_000,
    ));
    #[allow(clippy::cast_precision_loss)] // milliseconds within a session fit an f64
    let x = |t: i64| L + (t - t0) as f64 / (t1 - t0) as f64 * (W - L - R);
    let y = |v: f64, max: f64| T + (1.0 - v / max) * (H - T - B);
    let step = |value: &dyn Fn(&crate::store::SetpointEntry) -> f64, max: f64| {
        let mut d = String::new();
        for (i, p) in pts.iter().enumerate() {
            let yy = y(value(p), max);
            if i == 0 {
                let _ = write!(d, "M{:.1},{yy:.1}", x(p.at_ms));
            } else {
                let _ = write!(d, " H{:.1} V{yy:.1}", x(p.at_ms));
            }
        }
        let _ = write!(d, " H{:.1}", x(t1));
        d
    };
    let _ = write!(
        svg,
        "<rect x=\"{L}\" y=\"{T}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>",
        W - L - R,
        H - T - B
    );
    let _ = write!(
        svg,
        "<path class=\"depth\" fill=\"none\" stroke-width=\"2\" d=\"{}\"/>",
        step(&|p| f64::from(p.depth_um), dmax)
    );
    let _ = write!(
        svg,
        "<path class=\"rate\" fill=\"none\" stroke-width=\"2\" d=\"{}\"/>",
        step(&|p| f64::from(p.rate_mhz), rmax)
    );
    for f in &report.faults {
        let xf = x(f.event.at_ms.clamp(t0, t1));
        let _ = write!(
            svg,
            "<line class=\"fault\" x1=\"{xf:.1}\" x2=\"{xf:.1}\" y1=\"{T}\" y2=\"{}\"/>",
            H - B
        );
    }
    let _ = write!(
        svg,
        "<text x=\"4\" y=\"{}\" font-size=\"10\" fill=\"#0b5\">{:.2} mm</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"#15c\">{:.0} Hz</text>\
         <text x=\"{L}\" y=\"{}\" font-size=\"10\">{}</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{}</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">\
         depth (green, left) and stroke rate (blue, right); faults dashed red</text></svg>",
        y(dmax, dmax) + 4.0,
        dmax / 1000.0,
        W - R + 4.0,
        y(rmax, rmax) + 4.0,
        rmax / 1000.0,
        H - 10.0,
        esc(&when(t0)),
        W - R,
        H - 10.0,
        esc(&when(t1)),
        W / 2.0,
        H - 1.0,
    );
    svg
}

fn events_table(
    id: &str,
    rows: &[EventRecord],
    empty: &str,
    cleared: Option<&[EventRecord]>,
) -> String {
    if rows.is_empty() {
        return format!("<p id=\"{id}\" class=\"none\">{}</p>", esc(empty));
    }
    let mut t =
        format!("<table id=\"{id}\"><tr><th>when</th><th>what</th><th>who</th><th>reason</th>");
    if cleared.is_some() {
        t.push_str("<th>cleared</th>");
    }
    t.push_str("</tr>");
    for e in rows {
        let what = e
            .event
            .detail
            .get("action")
            .or_else(|| e.event.detail.get("fault"))
            .or_else(|| e.event.detail.get("faults"))
            .map_or_else(
                || e.event.kind.clone(),
                |v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                },
            );
        let _ = write!(
            t,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            esc(&when(e.event.at_ms)),
            esc(&what),
            esc(&e.event.actor),
            esc(e.event.reason.as_deref().unwrap_or(""))
        );
        if let Some(clears) = cleared {
            let clear = clears.iter().find(|c| {
                c.seq > e.seq
                    && c.event.detail.get("action").and_then(|a| a.as_str()) == Some("clear_faults")
            });
            let text = clear.map_or_else(
                || "not cleared in this session".to_string(),
                |c| {
                    format!(
                        "{} by {}: {}",
                        when(c.event.at_ms),
                        c.event.actor,
                        c.event.reason.as_deref().unwrap_or("")
                    )
                },
            );
            let _ = write!(t, "<td>{}</td>", esc(&text));
        }
        t.push_str("</tr>");
    }
    t.push_str("</table>");
    t
}

/// A run time as `M min S s`.
fn minutes(ms: u64) -> String {
    let s = ms / 1_000;
    format!("{} min {} s", s / 60, s % 60)
}

/// One session's record as an HTML fragment (a `<section>`).
pub fn session_section(
    report: &SessionReport,
    checklist: &[ChecklistSpec],
    post_care: &str,
) -> String {
    let end = report
        .ended_at_ms
        .or_else(|| report.timeline.last().map(|e| e.at_ms))
        .unwrap_or(report.created_at_ms);
    let mut s = format!(
        "<section class=\"session\" id=\"session-{}\"><h1>Treatment record: session {}</h1>",
        report.session_id, report.session_id
    );
    let plan = report.plan.as_ref().map_or_else(
        || "not part of a plan".to_string(),
        |p| {
            let next = match (p.next_window_opens_at_ms, p.next_window_closes_at_ms) {
                (Some(o), Some(c)) => format!("; next session between {} and {}", date(o), date(c)),
                (Some(o), None) => format!("; next session from {}", date(o)),
                _ => format!("; plan {}", p.plan_status),
            };
            format!("session {} of {} in plan {}{next}", p.n, p.total, p.plan_id)
        },
    );
    let planned = report
        .plan
        .as_ref()
        .and_then(|p| Some((p.planned_depth_um?, p.planned_rate_mhz?)));
    let _ = write!(
        s,
        "<table class=\"meta\" id=\"record-meta\">\
         <tr><td>subject reference</td><td>{}</td></tr>\
         <tr><td>treatment area</td><td>{}</td></tr>\
         <tr><td>plan</td><td id=\"record-plan\">{}</td></tr>\
         <tr><td>planned depth / rate</td><td>{}</td></tr>\
         <tr><td>operator</td><td id=\"record-operator\">{}</td></tr>\
         <tr><td>created / started / ended</td><td>{} / {} / {}</td></tr>\
         <tr><td>outcome</td><td>{} ({})</td></tr>\
         <tr><td>run time / strokes</td><td>{} / {}</td></tr></table>",
        esc(&report.subject_ref),
        esc(&report.area),
        esc(&plan),
        planned.map_or_else(
            || "none".to_string(),
            |(d, r)| format!(
                "{:.2} mm / {:.0} Hz",
                f64::from(d) / 1000.0,
                f64::from(r) / 1000.0
            )
        ),
        esc(&report.operator),
        esc(&when(report.created_at_ms)),
        report
            .started_at_ms
            .map_or_else(|| "never ran".to_string(), when),
        report.ended_at_ms.map_or_else(|| "open".to_string(), when),
        report.state.as_str(),
        esc(report.end_reason.as_deref().unwrap_or("")),
        minutes(report.run_ms),
        report.strokes,
    );
    s.push_str("<section class=\"part\"><h2>Depth and stroke rate</h2>");
    s.push_str(&plot_svg(report, end));
    s.push_str("</section><section class=\"part\"><h2>Pre-treatment checklist</h2><table id=\"record-checklist\"><tr><th>item</th><th>confirmed</th></tr>");
    for item in &report.checklist {
        let text = checklist
            .iter()
            .find(|c| c.id == item.item)
            .map_or(item.item.as_str(), |c| c.text.as_str());
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td></tr>",
            esc(text),
            if item.confirmed { "yes" } else { "no" }
        );
    }
    s.push_str("</table></section><section class=\"part\"><h2>Cartridge</h2>");
    match &report.cartridge {
        Some(c) => {
            let _ = write!(
                s,
                "<table class=\"meta\" id=\"record-cartridge\"><tr><td>id</td><td>{}</td></tr>\
                 <tr><td>lot</td><td>{}</td></tr><tr><td>needles</td><td>{:?}</td></tr>\
                 <tr><td>expiry</td><td>{}</td></tr><tr><td>state</td><td>{:?} {}</td></tr></table>",
                esc(&c.id),
                esc(&c.lot),
                c.needles,
                c.expiry,
                c.state,
                esc(c.spent_reason.as_deref().unwrap_or(""))
            );
        }
        None => s.push_str("<p id=\"record-cartridge\" class=\"none\">no cartridge was bound</p>"),
    }
    s.push_str("</section><section class=\"part\"><h2>Overrides</h2>");
    s.push_str(&events_table(
        "record-overrides",
        &report.overrides,
        "no overrides",
        None,
    ));
    s.push_str("</section><section class=\"part\"><h2>Faults and how they were cleared</h2>");
    s.push_str(&events_table(
        "record-faults",
        &report.faults,
        "no faults",
        Some(&report.overrides),
    ));
    let _ = write!(
        s,
        "</section><section class=\"part\"><h2>After-care</h2><p id=\"record-aftercare\">{}</p></section>\
         <p class=\"sign\">Operator's signature: ______________________ &nbsp; Date: ____________</p></section>",
        esc(post_care)
    );
    s
}

/// The record of one session as a page.
pub fn session_page(
    report: &SessionReport,
    checklist: &[ChecklistSpec],
    post_care: &str,
) -> String {
    page(
        &format!("Treatment record, session {}", report.session_id),
        &session_section(report, checklist, post_care),
    )
}

/// The record of a whole plan: its summary and history, then every session's record.
pub fn plan_page(
    plan: &PlanView,
    reports: &[SessionReport],
    checklist: &[ChecklistSpec],
    post_care: &str,
) -> String {
    let p = &plan.plan;
    let mut s = format!(
        "<section id=\"plan-summary\"><h1>Treatment plan {}</h1><table class=\"meta\">\
         <tr><td>subject reference</td><td>{}</td></tr><tr><td>areas</td><td>{}</td></tr>\
         <tr><td>sessions</td><td>{} of {} done; plan {}</td></tr>\
         <tr><td>interval window</td><td>{} to {} days</td></tr>\
         <tr><td>created</td><td>{} by {}</td></tr>",
        p.id,
        esc(&p.subject_ref),
        esc(&p.areas.join(", ")),
        plan.done,
        plan.total,
        plan.status,
        p.min_days,
        p.max_days,
        esc(&when(p.created_at_ms)),
        esc(&p.created_by)
    );
    if let (Some(at), Some(r)) = (p.stopped_at_ms, p.stop_reason.as_deref()) {
        let _ = write!(
            s,
            "<tr><td>stopped</td><td>{}: {}</td></tr>",
            esc(&when(at)),
            esc(r)
        );
    }
    s.push_str("</table><h2>Sessions</h2><table id=\"plan-history\"><tr><th>n</th><th>planned</th><th>status</th><th>date</th><th>depth / rate used</th><th>strokes</th><th>cartridge (lot)</th><th>operator</th><th>outcome</th></tr>");
    for slot in &plan.slots {
        let r = slot
            .session_id
            .and_then(|id| reports.iter().find(|r| r.session_id == id));
        let used = r
            .and_then(|r| {
                let d = r.setpoints.iter().map(|p| p.depth_um).max()?;
                let rate = r.setpoints.last()?.rate_mhz;
                Some(format!(
                    "{:.2} mm / {:.0} Hz",
                    f64::from(d) / 1000.0,
                    f64::from(rate) / 1000.0
                ))
            })
            .unwrap_or_default();
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{:.2} mm / {:.0} Hz</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            slot.n,
            f64::from(slot.planned.depth_um) / 1000.0,
            f64::from(slot.planned.rate_mhz) / 1000.0,
            slot.status,
            r.map_or_else(String::new, |r| date(r.started_at_ms.unwrap_or(r.created_at_ms))),
            esc(&used),
            r.map_or_else(String::new, |r| r.strokes.to_string()),
            esc(&r.and_then(|r| r.cartridge.as_ref()).map_or_else(String::new, |c| format!("{} ({})", c.id, c.lot))),
            esc(r.map_or("", |r| r.operator.as_str())),
            esc(&r.map_or_else(String::new, |r| format!("{} {}", r.state.as_str(), r.end_reason.as_deref().unwrap_or("")))),
        );
    }
    s.push_str("</table><h2>Changes to the plan</h2><table id=\"plan-events\"><tr><th>when</th><th>what</th><th>who</th><th>reason</th></tr>");
    for e in &plan.events {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&when(e.at_ms)),
            esc(&e.kind),
            esc(&e.actor),
            esc(e.reason.as_deref().unwrap_or(""))
        );
    }
    s.push_str("</table></section>");
    for r in reports {
        s.push_str(&session_section(r, checklist, post_care));
    }
    page(&format!("Treatment plan {}", p.id), &s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_the_ledger_is_escaped() {
        assert_eq!(
            esc("<b>\"a\" & 'b'</b>"),
            "&lt;b&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/b&gt;"
        );
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
    }
}
