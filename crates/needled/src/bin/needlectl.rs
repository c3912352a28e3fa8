//! `needlectl`: the command-line client of needled, for bench engineers and jig scripts.
//!
//! One command per HTTP API call, plus `wait` (polls the status until a state is reached) and
//! `tag` (makes and verifies cartridge tags offline with the device key). Human views by
//! default; `--json` prints the API's JSON unchanged. Failures exit with a code per class
//! (see `needlectl --help` and [`failure::Exit`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde_json::{json, Map, Value};

#[path = "needlectl/cli.rs"]
mod cli;
#[path = "needlectl/client.rs"]
mod client;
#[path = "needlectl/failure.rs"]
mod failure;
#[path = "needlectl/offline.rs"]
mod offline;
#[path = "needlectl/people.rs"]
mod people;
#[path = "needlectl/plan.rs"]
mod plan;
#[path = "needlectl/render.rs"]
mod render;
#[path = "needlectl/wait.rs"]
mod wait;

use cli::{CartridgeCmd, Cli, Cmd, FaultsCmd, LotCmd, SessionCmd, SimCmd, Stuck};
use client::{segment, Api, TokenRole};
use failure::{emit, Exit, Failure};
use offline::{tag_cmd, tag_hex_of_file};
use wait::{wait, Wait};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            f.report(json);
            ExitCode::from(f.exit_code())
        }
    }
}

/// What every command needs from the global options.
pub(crate) struct Ctx {
    pub(crate) url: Option<String>,
    pub(crate) token: Option<String>,
    pub(crate) token_file: PathBuf,
    pub(crate) role: Option<TokenRole>,
    pub(crate) json: bool,
    pub(crate) timeout: Duration,
}

impl Ctx {
    /// A client without a token (health).
    fn anonymous(&self) -> Result<Api, Failure> {
        Ok(Api::new(
            client::base_url(self.url.as_deref())?,
            self.timeout,
            None,
        ))
    }

    /// A client with the token of `--role`, or of `default` when no role was given.
    pub(crate) fn api(&self, default: TokenRole) -> Result<Api, Failure> {
        let base = client::base_url(self.url.as_deref())?;
        let token = client::resolve_token(
            self.token.as_deref(),
            &self.token_file,
            self.role.unwrap_or(default),
        )?;
        Ok(Api::new(base, self.timeout, Some(token)))
    }

    /// Prints a reply: unchanged with `--json`, else through `human`.
    pub(crate) fn show(
        &self,
        reply: &client::Reply,
        human: impl FnOnce(&Value) -> String,
    ) -> Result<(), Failure> {
        if self.json {
            return emit(&reply.text);
        }
        emit(&human(&reply.json()?))
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    client::init_tls(cli.tls_sha256.as_deref(), cli.ca_file.as_deref())?;
    let ctx = Ctx {
        url: cli.url,
        token: cli.token,
        token_file: cli.token_file,
        role: cli.role,
        json: cli.json,
        timeout: Duration::from_millis(cli.timeout_ms),
    };
    let op = TokenRole::Operator;
    match cli.command {
        Cmd::Health => health(&ctx),
        Cmd::Status => {
            let reply = ctx.api(op)?.get("/v1/status")?;
            ctx.show(&reply, render::status)
        }
        Cmd::Telemetry { count } => telemetry(&ctx, count),
        Cmd::Home => {
            let reply = ctx.api(op)?.post("/v1/home", None)?;
            ctx.show(&reply, |_| {
                "homing started: `needlectl wait --state Idle` waits until it is done".into()
            })
        }
        Cmd::Faults(FaultsCmd::Clear { reason }) => {
            let reply = ctx
                .api(op)?
                .post("/v1/faults/clear", Some(&json!({ "reason": reason })))?;
            ctx.show(&reply, |_| "faults cleared".into())
        }
        Cmd::Session(cmd) => session(&ctx, cmd),
        Cmd::Plan(cmd) => plan::plan(&ctx, cmd),
        Cmd::Cartridge(CartridgeCmd::Show { id }) => {
            let reply = ctx
                .api(op)?
                .get(&format!("/v1/cartridges/{}", segment(&id)))?;
            ctx.show(&reply, render::cartridge)
        }
        Cmd::Lot(LotCmd::Recall { lot, reason }) => {
            let api = ctx.api(TokenRole::Technician)?;
            let reply = api.post(
                &format!("/v1/lots/{}/recall", segment(&lot)),
                Some(&json!({ "reason": reason })),
            )?;
            ctx.show(&reply, |v| {
                let stopped: Vec<String> = v["in_use"]
                    .as_array()
                    .map(|a| a.iter().map(render::text).collect())
                    .unwrap_or_default();
                if stopped.is_empty() {
                    format!("lot {lot} recalled; no cartridge of it was in use")
                } else {
                    format!(
                        "lot {lot} recalled; stopped the session on cartridge(s) {}",
                        stopped.join(", ")
                    )
                }
            })
        }
        Cmd::Events {
            after,
            limit,
            follow,
            interval_ms,
        } => events(&ctx, after, limit, follow, interval_ms),
        Cmd::Sim(cmd) => sim(&ctx, cmd),
        Cmd::Wait {
            state,
            settled,
            timeout_ms,
            interval_ms,
            ignore_faults,
        } => {
            let until = Wait {
                state,
                settled,
                ignore_faults,
            };
            wait(
                &ctx,
                until,
                Duration::from_millis(timeout_ms),
                Duration::from_millis(interval_ms),
            )
        }
        Cmd::Tag(cmd) => tag_cmd(&ctx, cmd),
        Cmd::Person(cmd) => people::person(&ctx, cmd),
        Cmd::TlsFingerprint { cert } => people::tls_fingerprint(&ctx, &cert),
    }
}

fn health(ctx: &Ctx) -> Result<(), Failure> {
    let api = ctx.anonymous()?;
    let reply = api.get("/v1/health")?;
    let v = reply.json()?;
    if v["status"] == "ok" {
        return ctx.show(&reply, |v| render::health(api.base(), v));
    }
    let mut failure = Failure::new(
        Exit::Server,
        &render::text(&v["status"]),
        if v["status"] == "storage_unavailable" {
            format!(
                "needled at {} answers, but its ledger cannot write: the needles are stopped",
                api.base()
            )
        } else {
            format!(
                "needled at {} answers, but its control loop is not ticking",
                api.base()
            )
        },
    );
    // With --json, scripts get the health answer itself.
    failure.body = Some(reply.text);
    Err(failure)
}

fn telemetry(ctx: &Ctx, count: u64) -> Result<(), Failure> {
    let api = ctx.api(TokenRole::Operator)?;
    let mut stream = api.stream("/v1/telemetry")?;
    let mut seen = 0u64;
    while count == 0 || seen < count {
        let Some((_event, data)) = client::next_event(&mut stream)
            .map_err(|e| api.transport_io("GET", "/v1/telemetry", &e))?
        else {
            return Err(Failure::new(
                Exit::Connection,
                "stream_ended",
                format!(
                    "needled at {} closed the telemetry stream after {seen} events",
                    api.base()
                ),
            ));
        };
        if ctx.json {
            emit(&data)?;
        } else {
            let v: Value = serde_json::from_str(&data).map_err(|e| {
                Failure::new(
                    Exit::Server,
                    "bad_response",
                    format!("a telemetry event is not JSON ({e})"),
                )
            })?;
            emit(&render::telemetry_line(&v))?;
        }
        seen += 1;
    }
    Ok(())
}

fn session(ctx: &Ctx, cmd: SessionCmd) -> Result<(), Failure> {
    let api = ctx.api(TokenRole::Operator)?;
    let path = |id: i64, what: &str| format!("/v1/sessions/{id}{what}");
    match cmd {
        SessionCmd::Create {
            operator,
            subject,
            area,
            checks,
            all_checked,
            checklist_config,
            override_reason,
            plan,
        } => {
            let checklist =
                checklist_answers(all_checked, checklist_config.as_deref(), checks, Vec::new())?;
            let mut body = json!({ "subject_ref": subject, "area": area, "checklist": checklist });
            // The service records the token's person as the operator; a name given here is
            // kept beside it as the stated operator.
            if let Some(operator) = operator {
                body["operator"] = Value::String(operator);
            }
            if let Some(reason) = override_reason {
                body["override_reason"] = Value::String(reason);
            }
            if let Some(plan) = plan {
                body["plan_id"] = json!(plan);
            }
            let reply = api.post("/v1/sessions", Some(&body))?;
            ctx.show(&reply, render::session)
        }
        SessionCmd::Checklist {
            id,
            checks,
            unchecks,
            all_checked,
            checklist_config,
        } => {
            let checklist =
                checklist_answers(all_checked, checklist_config.as_deref(), checks, unchecks)?;
            let body = json!({ "checklist": checklist });
            ctx.show(&api.put(&path(id, "/checklist"), &body)?, render::session)
        }
        SessionCmd::Show { id } => ctx.show(&api.get(&path(id, ""))?, render::session),
        SessionCmd::Bind { id } => {
            ctx.show(&api.post(&path(id, "/cartridge"), None)?, render::cartridge)
        }
        SessionCmd::Arm {
            id,
            depth_um,
            rate,
            override_reason,
        } => {
            let mut body = json!({ "depth_um": depth_um, "rate_mhz": rate.mhz() });
            if let Some(reason) = override_reason {
                body["override_reason"] = Value::String(reason);
            }
            ctx.show(&api.post(&path(id, "/arm"), Some(&body))?, render::session)
        }
        SessionCmd::Start { id } => {
            ctx.show(&api.post(&path(id, "/start"), None)?, render::session)
        }
        SessionCmd::Pause { id } => {
            ctx.show(&api.post(&path(id, "/pause"), None)?, render::session)
        }
        SessionCmd::End { id, reason } => {
            let body = reason.map(|r| json!({ "reason": r }));
            ctx.show(
                &api.post(&path(id, "/end"), body.as_ref())?,
                render::session,
            )
        }
        SessionCmd::Setpoints { id, depth_um, rate } => {
            let mut body = Map::new();
            if let Some(d) = depth_um {
                body.insert("depth_um".into(), json!(d));
            }
            if let Some(r) = rate.mhz() {
                body.insert("rate_mhz".into(), json!(r));
            }
            ctx.show(
                &api.put(&path(id, "/setpoints"), &Value::Object(body))?,
                render::session,
            )
        }
        SessionCmd::Report { id, format, output } => {
            let reply = api.get(&format!(
                "/v1/sessions/{id}/report?format={}",
                format.as_str()
            ))?;
            if let Some(file) = output {
                std::fs::write(&file, reply.text.as_bytes()).map_err(|e| {
                    Failure::local(
                        "output_failed",
                        format!("cannot write the report to {}: {e}", file.display()),
                    )
                })?;
                if !ctx.json {
                    emit(&format!(
                        "report of session {id} ({}, {} bytes) written to {}",
                        format.as_str(),
                        reply.text.len(),
                        file.display()
                    ))?;
                }
                return Ok(());
            }
            match format {
                cli::ReportFormat::Csv => emit(&reply.text),
                cli::ReportFormat::Json => ctx.show(&reply, render::report),
            }
        }
    }
}

/// The checklist ids that `--all-checked` confirms: from the given configuration, else from
/// `config/default.toml` when present, else needled's built-in checklist.
/// Checklist answers by item id: every configured item with `all_checked`, then `checks`
/// confirmed and `unchecks` withdrawn.
fn checklist_answers(
    all_checked: bool,
    config: Option<&Path>,
    checks: Vec<String>,
    unchecks: Vec<String>,
) -> Result<Map<String, Value>, Failure> {
    let mut answers = Map::new();
    if all_checked {
        for item in checklist_ids(config)? {
            answers.insert(item, Value::Bool(true));
        }
    }
    for item in checks {
        answers.insert(item, Value::Bool(true));
    }
    for item in unchecks {
        answers.insert(item, Value::Bool(false));
    }
    Ok(answers)
}

fn checklist_ids(config: Option<&Path>) -> Result<Vec<String>, Failure> {
    let default = Path::new("config/default.toml");
    let file = match config {
        Some(f) => Some(f),
        None if default.exists() => Some(default),
        None => None,
    };
    let items = match file {
        Some(f) => {
            needled::config::load(f)
                .map_err(|e| {
                    Failure::usage("bad_config", format!("checklist for --all-checked: {e}"))
                })?
                .session
                .checklist
        }
        None => needled::config::default_checklist(),
    };
    Ok(items.into_iter().map(|c| c.id).collect())
}

fn events(
    ctx: &Ctx,
    after: i64,
    limit: Option<u32>,
    follow: bool,
    interval_ms: u64,
) -> Result<(), Failure> {
    let api = ctx.api(TokenRole::Operator)?;
    let query = |after: i64| match limit {
        Some(l) => format!("/v1/events?after={after}&limit={l}"),
        None => format!("/v1/events?after={after}"),
    };
    if !follow {
        let reply = api.get(&query(after))?;
        return ctx.show(&reply, |v| {
            let empty = Vec::new();
            let events = v["events"].as_array().unwrap_or(&empty);
            if events.is_empty() {
                format!("no events after {after}")
            } else {
                render::events_table(events).render(true)
            }
        });
    }
    let mut last = after;
    let mut header = true;
    loop {
        let v = api.get(&query(last))?.json()?;
        let events = v["events"].as_array().cloned().unwrap_or_default();
        if let Some(seq) = events.iter().filter_map(|e| e["seq"].as_i64()).max() {
            last = last.max(seq);
        }
        if ctx.json {
            for e in &events {
                emit(&e.to_string())?;
            }
        } else if !events.is_empty() {
            emit(&render::events_table(&events).render(header))?;
            header = false;
        }
        // A full page means more are waiting: fetch at once.
        let full = limit.map_or(events.len() >= 100, |l| events.len() >= l as usize);
        if !full {
            std::thread::sleep(Duration::from_millis(interval_ms));
        }
    }
}

fn sim(ctx: &Ctx, cmd: SimCmd) -> Result<(), Failure> {
    let api = ctx.api(TokenRole::Technician)?;
    let on_off = |on: bool, yes: &str, no: &str| if on { yes.to_string() } else { no.to_string() };
    let (body, done) = match cmd {
        SimCmd::Truth => return ctx.show(&api.get("/v1/sim/truth")?, render::truth),
        SimCmd::Seat {
            tag_hex,
            tag_file,
            chip_secret,
        } => {
            let hex = match (tag_hex, tag_file) {
                (Some(h), _) => Some(h.trim().to_string()),
                (None, Some(f)) => Some(tag_hex_of_file(&f)?),
                (None, None) => None,
            };
            let done = if hex.is_some() {
                "cartridge seated"
            } else {
                "cartridge seated (its tag does not answer)"
            };
            (
                json!({ "action": "seat_cartridge", "tag_hex": hex, "chip_secret_hex": chip_secret }),
                done.to_string(),
            )
        }
        SimCmd::SeatNew { id, lot } => (
            json!({ "action": "seat_new_cartridge", "id": id, "lot": lot }),
            "cartridge seated (provisioned with the sim's test factory key)".to_string(),
        ),
        SimCmd::Pull => (
            json!({ "action": "pull_cartridge" }),
            "cartridge pulled".to_string(),
        ),
        SimCmd::Estop { state } => (
            json!({ "action": "estop", "pressed": state.on() }),
            on_off(state.on(), "E-stop pressed", "E-stop released"),
        ),
        SimCmd::Pedal { state } => (
            json!({ "action": "pedal", "pressed": state.on() }),
            on_off(state.on(), "pedal pressed", "pedal released"),
        ),
        SimCmd::Jam { state } => (
            json!({ "action": "jam", "on": state.on() }),
            on_off(state.on(), "stroke mechanism jammed", "jam freed"),
        ),
        SimCmd::Heat { celsius } => (
            json!({ "action": "heat", "temperature_c": celsius }),
            format!("motor temperature set to {celsius} °C"),
        ),
        SimCmd::Brownout { state } => (
            json!({ "action": "brownout", "on": state.on() }),
            on_off(state.on(), "supply browned out", "supply restored"),
        ),
        SimCmd::Dropout { state } => (
            json!({ "action": "sensor_dropout", "on": state.on() }),
            on_off(state.on(), "sensors dropped out", "sensors answer again"),
        ),
        SimCmd::StuckHome { state } => {
            let closed = match state {
                Stuck::Closed => Some(true),
                Stuck::Open => Some(false),
                Stuck::Off => None,
            };
            let done = match state {
                Stuck::Closed => "home switch stuck closed",
                Stuck::Open => "home switch stuck open",
                Stuck::Off => "home switch works again",
            };
            (
                json!({ "action": "stuck_home_switch", "closed": closed }),
                done.to_string(),
            )
        }
    };
    let reply = api.post("/v1/sim/inject", Some(&body))?;
    ctx.show(&reply, |_| done)
}
