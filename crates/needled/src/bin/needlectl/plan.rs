//! `needlectl plan ...`: treatment plans, a subject's history, numbing, the printable record.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{json, Value};

use crate::client::{segment, TokenRole};
use crate::failure::{emit, Failure};
use crate::Ctx;

/// `plan ...`
#[derive(Debug, Subcommand)]
pub enum PlanCmd {
    /// Create a plan for a subject (technician)
    Create {
        /// Opaque subject reference (never a name)
        #[arg(long, value_name = "REF")]
        subject: String,
        /// Treatment area (repeat for several)
        #[arg(long = "area", required = true)]
        areas: Vec<String>,
        /// Earliest days between sessions
        #[arg(long, default_value_t = 28)]
        min_days: u32,
        /// Latest days between sessions (then the next is overdue)
        #[arg(long, default_value_t = 42)]
        max_days: u32,
        /// A planned session as DEPTH_UM:RATE_HZ, e.g. 500:100 (repeat, in order)
        #[arg(long = "session", value_name = "DEPTH_UM:RATE_HZ", required = true, value_parser = planned)]
        sessions: Vec<Value>,
        /// Why (recorded)
        #[arg(long)]
        reason: Option<String>,
    },
    /// Show a plan: its sessions done, due (with the window) or overdue, and its log
    Show {
        /// Plan id
        id: i64,
    },
    /// A subject's plans and their sessions
    List {
        /// Opaque subject reference
        #[arg(long, value_name = "REF")]
        subject: String,
    },
    /// Change a plan's window or planned sessions, with a reason (technician)
    Change {
        /// Plan id
        id: i64,
        /// Why (recorded)
        #[arg(long)]
        reason: String,
        /// New earliest days
        #[arg(long)]
        min_days: Option<u32>,
        /// New latest days
        #[arg(long)]
        max_days: Option<u32>,
        /// The new planned sessions as DEPTH_UM:RATE_HZ (repeat, all of them, in order)
        #[arg(long = "session", value_name = "DEPTH_UM:RATE_HZ", value_parser = planned)]
        sessions: Vec<Value>,
    },
    /// Stop a plan with a reason (technician)
    Stop {
        /// Plan id
        id: i64,
        /// Why (recorded)
        #[arg(long)]
        reason: String,
    },
    /// Record numbing applied to a session now; arming then waits for it to act
    Numbing {
        /// Session id
        session: i64,
    },
    /// Write the printable record (HTML; print it from a browser) of a plan or a session
    Record {
        /// Plan id (or session id with --session)
        id: i64,
        /// The id is a session's
        #[arg(long)]
        session: bool,
        /// Write it here
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
    },
}

fn planned(text: &str) -> Result<Value, String> {
    let (depth, rate) = text
        .split_once(':')
        .ok_or_else(|| format!("'{text}': expected DEPTH_UM:RATE_HZ, e.g. 500:100"))?;
    let depth: u32 = depth.parse().map_err(|e| format!("depth '{depth}': {e}"))?;
    let rate: u32 = rate.parse().map_err(|e| format!("rate '{rate}': {e}"))?;
    Ok(json!({ "depth_um": depth, "rate_mhz": rate.saturating_mul(1_000) }))
}

fn human(v: &Value) -> String {
    let mut out = format!(
        "plan {} for {}: {} ({} of {} done), areas {}, window {} to {} days\n",
        v["id"],
        crate::render::text(&v["subject_ref"]),
        crate::render::text(&v["status"]),
        v["done"],
        v["total"],
        v["areas"],
        v["min_days"],
        v["max_days"]
    );
    for slot in v["slots"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {}. {} um at {} mHz: {}{}\n",
            slot["n"],
            slot["planned"]["depth_um"],
            slot["planned"]["rate_mhz"],
            crate::render::text(&slot["status"]),
            slot["session_id"]
                .as_i64()
                .map_or_else(String::new, |s| format!(" (session {s})"))
        ));
    }
    if let Some(w) = v["next_window"].as_object() {
        out.push_str(&format!(
            "  next: session {} from {} until {} (unix ms)\n",
            w["n"], w["opens_at_ms"], w["closes_at_ms"]
        ));
    }
    out.trim_end().to_string()
}

/// Runs a `plan` command.
pub fn plan(ctx: &Ctx, cmd: PlanCmd) -> Result<(), Failure> {
    let tech = TokenRole::Technician;
    let op = TokenRole::Operator;
    match cmd {
        PlanCmd::Create {
            subject,
            areas,
            min_days,
            max_days,
            sessions,
            reason,
        } => {
            let mut body = json!({ "subject_ref": subject, "areas": areas, "min_days": min_days,
                                   "max_days": max_days, "sessions": sessions });
            if let Some(r) = reason {
                body["reason"] = Value::String(r);
            }
            ctx.show(&ctx.api(tech)?.post("/v1/plans", Some(&body))?, human)
        }
        PlanCmd::Show { id } => ctx.show(&ctx.api(op)?.get(&format!("/v1/plans/{id}"))?, human),
        PlanCmd::List { subject } => {
            let reply = ctx
                .api(op)?
                .get(&format!("/v1/plans?subject_ref={}", segment(&subject)))?;
            ctx.show(&reply, |v| {
                let plans: Vec<String> = v["plans"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(human)
                    .collect();
                if plans.is_empty() {
                    format!("no plans for {subject}")
                } else {
                    plans.join("\n")
                }
            })
        }
        PlanCmd::Change {
            id,
            reason,
            min_days,
            max_days,
            sessions,
        } => {
            let mut body = json!({ "reason": reason });
            if let Some(d) = min_days {
                body["min_days"] = json!(d);
            }
            if let Some(d) = max_days {
                body["max_days"] = json!(d);
            }
            if !sessions.is_empty() {
                body["sessions"] = json!(sessions);
            }
            ctx.show(
                &ctx.api(tech)?
                    .post(&format!("/v1/plans/{id}/change"), Some(&body))?,
                human,
            )
        }
        PlanCmd::Stop { id, reason } => ctx.show(
            &ctx.api(tech)?.post(
                &format!("/v1/plans/{id}/stop"),
                Some(&json!({ "reason": reason })),
            )?,
            human,
        ),
        PlanCmd::Numbing { session } => ctx.show(
            &ctx.api(op)?
                .post(&format!("/v1/sessions/{session}/numbing"), None)?,
            |v| {
                format!(
                    "numbing recorded on session {session}; arming waits {} s",
                    v["wait_left_ms"].as_i64().unwrap_or(0) / 1_000
                )
            },
        ),
        PlanCmd::Record {
            id,
            session,
            output,
        } => {
            let path = if session {
                format!("/v1/sessions/{id}/record")
            } else {
                format!("/v1/plans/{id}/record")
            };
            let reply = ctx.api(op)?.get(&path)?;
            std::fs::write(&output, reply.text.as_bytes()).map_err(|e| {
                Failure::local(
                    "output_failed",
                    format!("cannot write the record to {}: {e}", output.display()),
                )
            })?;
            emit(&format!(
                "record written to {} ({} bytes): open it in a browser and print (A4 or Letter)",
                output.display(),
                reply.text.len()
            ))
        }
    }
}
