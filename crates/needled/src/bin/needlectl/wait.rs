//! `needlectl wait`: polls the status until the controller reaches a state, with a grace for
//! faults that clear on their own.

use std::time::{Duration, Instant};

use crate::cli::WaitState;
use crate::client::TokenRole;
use crate::failure::{Exit, Failure};
use crate::render;
use crate::Ctx;

/// What `wait` waits for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wait {
    pub(crate) state: WaitState,
    pub(crate) settled: bool,
    pub(crate) ignore_faults: bool,
}

/// How long the controller may sit in Fault/EStop before `wait` gives up on another state.
const FAULT_GRACE: Duration = Duration::from_millis(500);

pub(crate) fn wait(
    ctx: &Ctx,
    until: Wait,
    timeout: Duration,
    interval: Duration,
) -> Result<(), Failure> {
    let api = ctx.api(TokenRole::Operator)?;
    let started = Instant::now();
    let target = until.state.as_str();
    let latching = |s: &str| s == "Fault" || s == "EStop";
    let mut faulted_since: Option<Instant> = None;
    loop {
        let reply = api.get("/v1/status")?;
        let v = reply.json()?;
        let state = render::text(&v["state"]);
        let moving = v["depth"]["moving"].as_bool() != Some(false);
        if state == target && !(until.settled && moving) {
            return ctx.show(&reply, |v| {
                let mut s = format!(
                    "state {target} after {:.2} s",
                    started.elapsed().as_secs_f64()
                );
                if until.settled {
                    s.push_str(&format!(
                        ", depth settled at {}",
                        render::depth(&v["depth"]["position_um"])
                    ));
                }
                s
            });
        }
        if latching(&state) && !latching(target) && !until.ignore_faults {
            let since = *faulted_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= FAULT_GRACE {
                let faults: Vec<String> = v["faults"]
                    .as_array()
                    .map(|a| a.iter().map(render::text).collect())
                    .unwrap_or_default();
                return Err(Failure::new(
                    Exit::NotReached,
                    "wait_faulted",
                    format!(
                        "the controller is in {state} (faults: {}) while waiting for {target}",
                        if faults.is_empty() { "none".to_string() } else { faults.join(", ") }
                    ),
                )
                .hint("remove the cause, then `needlectl faults clear --reason ...`; --ignore-faults keeps waiting"));
            }
        } else {
            faulted_since = None;
        }
        if started.elapsed() >= timeout {
            let detail = if state == target {
                " (depth still moving)".to_string()
            } else {
                String::new()
            };
            return Err(Failure::new(
                Exit::NotReached,
                "wait_timeout",
                format!(
                    "state {target} not reached within {} ms; last seen: {state}{detail}",
                    timeout.as_millis()
                ),
            ));
        }
        std::thread::sleep(
            interval
                .min(timeout.saturating_sub(started.elapsed()))
                .max(Duration::from_millis(1)),
        );
    }
}
