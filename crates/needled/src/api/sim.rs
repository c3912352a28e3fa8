//! The sim backend's endpoints: the rig's truth, its tick log and fault injections.

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use needle_api as wire;
use needle_api::{SimAction, StorageFailMode, TicksQuery};
use needle_core::units::Micros;

use super::{AppState, Body, QueryOf, Technician};
use crate::error::{ApiError, ErrorCode};
use crate::session::MonitorFault;

pub(super) fn sim(s: &AppState) -> Result<&crate::hal::sim::SimBackend, ApiError> {
    s.service
        .sim()
        .ok_or_else(|| ApiError::not_found("the sim endpoints exist only on the sim backend"))
}

/// The simulated rig's truth (technicians, sim backend only).
#[utoipa::path(get, path = "/v1/sim/truth", tag = "sim",
    responses((status = 200, description = "the rig's physics", body = wire::SimTruth)))]
pub(super) async fn sim_truth(
    State(s): State<AppState>,
    Technician(_): Technician,
) -> Result<Json<wire::SimTruth>, ApiError> {
    let backend = sim(&s)?;
    let t = backend.rig.truth();
    Ok(Json(wire::SimTruth {
        sim_time_us: t.now.0,
        depth_um: t.depth_um,
        rate_hz: t.rate_hz,
        strokes: t.strokes,
        motor_powered: t.motor_powered,
        duty: t.duty,
        current_a: t.current_a,
        temperature_c: t.temperature_c,
        supply_v: t.supply_v,
        motor_off_at_us: t.motor_off_at.map(|m| m.0),
        cartridge_seated: backend.rig.cartridge_seated(),
        ticks: backend.rig.ticks(),
    }))
}

/// The control ticks the rig saw in `(after_us, until_us]` of sim time: jigs judge a reaction
/// against the control thread's own schedule with it ("off in the first tick after the
/// press"), which holds on a busy machine where wall-clock limits do not.
#[utoipa::path(get, path = "/v1/sim/ticks", tag = "sim", params(TicksQuery),
    responses((status = 200, description = "ticks in the interval", body = wire::Ticks)))]
pub(super) async fn sim_ticks(
    State(s): State<AppState>,
    Technician(_): Technician,
    QueryOf(q): QueryOf<TicksQuery>,
) -> Result<Json<wire::Ticks>, ApiError> {
    if q.until_us < q.after_us {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            "until_us must not be before after_us",
        ));
    }
    let rig = &sim(&s)?.rig;
    match rig.ticks_between(Micros(q.after_us), Micros(q.until_us)) {
        Some(n) => Ok(Json(wire::Ticks { ticks: n })),
        None => Err(ApiError::new(
            409,
            ErrorCode::TicksForgotten,
            format!(
                "the rig keeps the last {} ticks; {} us is older",
                needle_sim::TICKS_KEPT,
                q.after_us
            ),
        )),
    }
}

pub(super) fn at_most_10s(ms: u64) -> Result<Duration, ApiError> {
    if ms > 10_000 {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidRequest,
            "ms must be at most 10000",
        ));
    }
    Ok(Duration::from_millis(ms))
}

/// The sim chip a `seat_cartridge` injection describes.
fn sim_chip(
    tag_hex: &str,
    secret_hex: Option<&str>,
    replay_hex: Option<&str>,
    counter: u32,
) -> Result<crate::cartridge::SimChip, ApiError> {
    use crate::cartridge::{from_hex, sim_key, SimAnswers, SimChip};
    let bad = |what: &str| {
        ApiError::bad_request(ErrorCode::InvalidRequest, format!("{what} is not valid"))
    };
    let answers = match (secret_hex, replay_hex) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidRequest,
                "give chip_secret_hex or replay_answer_hex, not both",
            ))
        }
        (Some(secret), None) => {
            let secret = hex::decode(secret.trim()).map_err(|_| bad("chip_secret_hex"))?;
            sim_key(&secret).ok_or_else(|| bad("chip_secret_hex"))?
        }
        (None, Some(answer)) => SimAnswers::Replay(
            hex::decode(answer.trim())
                .ok()
                .filter(|a| a.len() <= 128)
                .ok_or_else(|| bad("replay_answer_hex"))?,
        ),
        (None, None) => SimAnswers::Nothing,
    };
    Ok(SimChip {
        // A malformed `tag_hex` is a bad request (400), not a cartridge the ledger
        // refuses (409): nothing was seated.
        memory: from_hex(tag_hex).map_err(|e| ApiError {
            status: 400,
            ..ApiError::from(e)
        })?,
        answers,
        counter,
    })
}

/// Inject a fault or drive the rig's switches (technicians, sim backend only).
#[utoipa::path(post, path = "/v1/sim/inject", tag = "sim", request_body = SimAction,
    responses((status = 200, description = "applied", body = wire::Injected)))]
pub(super) async fn sim_inject(
    State(s): State<AppState>,
    Technician(a): Technician,
    Body(action): Body<SimAction>,
) -> Result<Json<wire::Injected>, ApiError> {
    use needle_sim::Injection;
    let backend = sim(&s)?;
    let applied_at = match &action {
        SimAction::SeatCartridge {
            tag_hex,
            chip_secret_hex,
            replay_answer_hex,
            counter,
        } => {
            let chip = match tag_hex {
                Some(h) => Some(sim_chip(
                    h,
                    chip_secret_hex.as_deref(),
                    replay_answer_hex.as_deref(),
                    counter.unwrap_or(0),
                )?),
                None => None,
            };
            backend.seat_cartridge(chip)
        }
        SimAction::SeatNewCartridge {
            id,
            lot,
            needles,
            expiry,
        } => {
            let expiry = match expiry {
                Some(text) => Some(text.parse::<crate::cartridge::Date>().map_err(|e| {
                    ApiError::bad_request(ErrorCode::InvalidRequest, format!("expiry: {e}"))
                })?),
                None => None,
            };
            let made = s.service.sim_cartridge(
                id.clone(),
                lot.clone(),
                needles.map(Into::into),
                expiry,
            )?;
            let answers = crate::cartridge::sim_key(&made.chip_secret).ok_or_else(|| {
                ApiError::new(
                    500,
                    ErrorCode::InternalError,
                    "the sim made an invalid chip key",
                )
            })?;
            backend.seat_cartridge(Some(crate::cartridge::SimChip {
                memory: made.tag,
                answers,
                counter: 0,
            }))
        }
        SimAction::PullCartridge => {
            let (at, chip) = backend.pull_cartridge();
            tracing::info!(actor = %a.name, "sim injection: pull_cartridge");
            // The pulled chip, as a jig would carry it to another pen: its memory, key and
            // counter.
            let pulled = chip.map(|c| needle_api::PulledChip {
                tag_hex: crate::cartridge::to_hex(&c.memory),
                chip_secret_hex: c.secret().map(hex::encode),
                counter: c.counter,
            });
            return Ok(Json(wire::Injected {
                ok: true,
                applied_at_us: at.0,
                pulled,
            }));
        }
        SimAction::Estop { pressed } => backend.rig.inject(Injection::EStop(*pressed)),
        SimAction::Pedal { pressed } => backend.rig.inject(Injection::Pedal(*pressed)),
        SimAction::Jam { on } => backend.rig.inject(Injection::Jam(*on)),
        SimAction::Heat { temperature_c } => {
            if !temperature_c.is_finite() || !(-40.0..=200.0).contains(temperature_c) {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidRequest,
                    "temperature_c must be -40..=200",
                ));
            }
            backend.rig.inject(Injection::Overheat(*temperature_c))
        }
        SimAction::Brownout { on } => backend.rig.inject(Injection::BrownOut(*on)),
        SimAction::SensorDropout { on } => backend.rig.inject(Injection::SensorDropout(*on)),
        SimAction::StuckHomeSwitch { closed } => {
            backend.rig.inject(Injection::StuckHomeSwitch(*closed))
        }
        SimAction::HostSilence { on } => backend.rig.inject(Injection::HostSilence(*on)),
        SimAction::SlowTag { ms } => {
            at_most_10s(*ms)?;
            backend.tag.set_read_delay_ms(*ms);
            backend.rig.now()
        }
        SimAction::SlowLedger { ms } => {
            at_most_10s(*ms)?;
            if let Some(f) = s.service.write_faults() {
                f.set_delay_ms(*ms);
            }
            backend.rig.now()
        }
        SimAction::StorageFail { mode } => {
            if let Some(f) = s.service.write_faults() {
                f.set_mode(match mode {
                    StorageFailMode::Off => crate::store::FailMode::Off,
                    StorageFailMode::Write => crate::store::FailMode::Write,
                    StorageFailMode::Fsync => crate::store::FailMode::Fsync,
                });
            }
            backend.rig.now()
        }
        SimAction::StallService { ms } => {
            let stall = at_most_10s(*ms)?;
            // One blocking task per worker: none can run the progress stamp until they end.
            for _ in 0..tokio::runtime::Handle::current().metrics().num_workers() {
                tokio::spawn(async move { std::thread::sleep(stall) });
            }
            backend.rig.now()
        }
        SimAction::PanicMonitor => {
            s.service.sim_break_monitor(MonitorFault::Panic)?;
            backend.rig.now()
        }
        SimAction::StallMonitor { ms } => {
            s.service
                .sim_break_monitor(MonitorFault::Stall(at_most_10s(*ms)?))?;
            backend.rig.now()
        }
        SimAction::StepWallClock { ms } => {
            if ms.unsigned_abs() > 30 * 86_400_000 {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidRequest,
                    "ms must be within 30 days either way",
                ));
            }
            s.service.sim_step_wall_clock(*ms)?;
            backend.rig.now()
        }
        SimAction::FailDisarm { times } => {
            if *times > 1_000 {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidRequest,
                    "times must be at most 1000",
                ));
            }
            s.service.sim_fail_disarms(*times)?;
            backend.rig.now()
        }
    };
    tracing::info!(actor = %a.name, ?action, "sim injection");
    // The sim time it was applied at, read under the same lock: jigs time reactions from it.
    Ok(Json(wire::Injected {
        ok: true,
        applied_at_us: applied_at.0,
        pulled: None,
    }))
}
