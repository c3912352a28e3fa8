//! Session rules: what the service must refuse, checked by the refusal and by the jig seeing
//! that nothing moved.

use std::time::{Duration, Instant};

use needled::cartridge::{FactoryKey, Provisioned};
use serde_json::json;

use super::{deepest_area, mid_rate};
use crate::api::Role;
use crate::bench::Bench;
use crate::error::Result;
use crate::report::Recorder;

/// A counterfeiter's key: not the device's.
const FORGED_KEY: [u8; 32] = [0xC0; 32];

/// Spent, expired, recalled and counterfeit cartridges refused: seats each kind in turn and
/// tries to bind it to a session. Proves each is refused with its own stable code, the
/// session stays unarmed, the motor never runs, and a genuine cartridge is still accepted
/// afterwards (the refusals are specific, not a stuck pen).
pub fn refused_cartridges(b: &mut Bench, r: &mut Recorder) -> Result<()> {
    let (area, _) = deepest_area(b);
    let mut moved = b.jig.motor_powered()?;

    // Spent: used by one session, then offered to another.
    let first = b.create_session(&area)?;
    let (spent_id, spent) = b.new_cartridge()?;
    b.seat(&spent)?;
    b.bind(first)?;
    b.end(first)?;
    let cartridge = b.api().get(&format!("/v1/cartridges/{spent_id}"))?;
    r.check(
        "a cartridge is spent when its session ends",
        cartridge["state"] == "spent",
        &cartridge["state"],
        "spent",
    );

    let id = b.create_session(&area)?;
    let bind_path = format!("/v1/sessions/{id}/cartridge");
    b.seat(&spent)?;
    r.check_refused(
        "spent cartridge refused",
        b.try_call(Role::Operator, "POST", &bind_path, None),
        "cartridge_spent",
    );
    moved |= b.motor_ever_powered(Duration::from_millis(50))?;

    let expired_id = b.unique();
    let expired = b.tag(&expired_id, &format!("L{expired_id}"), "2001-01-01")?;
    b.seat(&expired)?;
    r.check_refused(
        "expired cartridge refused",
        b.try_call(Role::Operator, "POST", &bind_path, None),
        "cartridge_expired",
    );
    moved |= b.motor_ever_powered(Duration::from_millis(50))?;

    let recalled_id = b.unique();
    let lot = format!("R{recalled_id}");
    b.api().ok(
        Role::Technician,
        "POST",
        &format!("/v1/lots/{lot}/recall"),
        Some(&json!({ "reason": "hil: recalled lot scenario" })),
    )?;
    let recalled = b.tag(&recalled_id, &lot, "2099-12-31")?;
    b.seat(&recalled)?;
    r.check_refused(
        "cartridge of a recalled lot refused",
        b.try_call(Role::Operator, "POST", &bind_path, None),
        "lot_recalled",
    );
    moved |= b.motor_ever_powered(Duration::from_millis(50))?;

    let forged_id = b.unique();
    let forged = Bench::tag_signed(
        &forged_id,
        &format!("L{forged_id}"),
        "2099-12-31",
        &FactoryKey::from_secret(b.factory_key_id(), &FORGED_KEY)
            .map_err(|e| crate::error::HilError::Config(e.to_string()))?,
    )?;
    b.seat(&forged)?;
    r.check_refused(
        "counterfeit cartridge (tag not signed by the factory key) refused",
        b.try_call(Role::Operator, "POST", &bind_path, None),
        "tag_bad_signature",
    );
    moved |= b.motor_ever_powered(Duration::from_millis(50))?;

    let session = b.api().get(&format!("/v1/sessions/{id}"))?;
    r.check(
        "the session holds no cartridge after the refusals",
        session["state"] == "created",
        &session["state"],
        "created",
    );
    let arm = b.try_call(
        Role::Operator,
        "POST",
        &format!("/v1/sessions/{id}/arm"),
        Some(&json!({ "depth_um": 500, "rate_mhz": mid_rate(b) * 1000 })),
    );
    r.check_refused(
        "arming without an accepted cartridge is refused",
        arm,
        "session_not_active",
    );
    moved |= b.motor_ever_powered(Duration::from_millis(50))?;
    r.check_motor_off("the motor never ran", moved);

    let (_, genuine) = b.new_cartridge()?;
    check_accepted(
        b,
        r,
        id,
        &genuine,
        "a genuine new cartridge is accepted afterwards",
    )?;
    b.end(id)?;
    Ok(())
}

/// Seats `cartridge`, binds it to session `id` and checks that it is accepted (`in_use`).
fn check_accepted(
    b: &mut Bench,
    r: &mut Recorder,
    id: i64,
    cartridge: &Provisioned,
    name: &str,
) -> Result<()> {
    b.seat(cartridge)?;
    let accepted = b.bind(id).map(|c| c["state"].clone());
    r.check(
        name,
        accepted.as_ref().is_ok_and(|s| s == "in_use"),
        accepted.map_or_else(|e| e.to_string(), |s| s.to_string()),
        "in_use",
    );
    Ok(())
}

/// A copy of a genuine cartridge's tag on a part with a key of its own (a forger's blank
/// chip; a memory-only copy answers nothing and fails the same way) refused at bind by the
/// fresh challenge its chip cannot answer for the key the factory signed, with the motor
/// never running; the genuine cartridge is then accepted. Proves the pen refuses copies, not
/// only forgeries, on this rig (a rig whose jig writes a tag alone and whose backend reaches
/// no chip fails this by design: it cannot tell a copy from its original).
pub fn copied_cartridge_refused_by_its_chip(b: &mut Bench, r: &mut Recorder) -> Result<()> {
    let (area, _) = deepest_area(b);
    let id = b.create_session(&area)?;
    let bind_path = format!("/v1/sessions/{id}/cartridge");
    let (_, genuine) = b.new_cartridge()?;
    let copy = Provisioned {
        chip_secret: [0x5A; 32],
        tag: genuine.tag.clone(),
    };
    b.seat(&copy)?;
    r.check_refused(
        "a byte-for-byte copy of a genuine tag on another chip refused",
        b.try_call(Role::Operator, "POST", &bind_path, None),
        "chip_challenge_failed",
    );
    let moved = b.motor_ever_powered(Duration::from_millis(50))?;
    check_accepted(
        b,
        r,
        id,
        &genuine,
        "the genuine cartridge the copy was made from is accepted afterwards",
    )?;
    r.check_motor_off("the motor never ran", moved);
    b.end(id)?;
    Ok(())
}

/// Depth above the area ceiling refused: in the area with the shallowest ceiling, arming
/// above it, raising the depth above it while armed and while running, and asking for more
/// than the device's own maximum are all refused; the jig watches the depth stop throughout.
/// Proves the needles never go deeper than the area allows.
pub fn depth_above_area_ceiling(b: &mut Bench, r: &mut Recorder) -> Result<()> {
    let settings = b.rig.settings().clone();
    let tol = b.config.tolerances.depth_um;
    let (area, ceiling) = settings
        .shallowest_area()
        .map(|(a, c)| (a.to_string(), c))
        .ok_or_else(|| {
            crate::error::HilError::Config("the rig's config has no treatment areas".into())
        })?;
    let rate = mid_rate(b);
    let above = ceiling + 50;
    let device_max_plus = settings.max_depth_um + 100;
    b.ensure_homed()?;
    let id = b.create_session(&area)?;
    let (_, tag) = b.new_cartridge()?;
    b.seat(&tag)?;
    b.bind(id)?;
    let mut deepest = b.jig.depth()?.depth_um;
    let arm_path = format!("/v1/sessions/{id}/arm");
    let set_path = format!("/v1/sessions/{id}/setpoints");
    let arm = |d: u32| json!({ "depth_um": d, "rate_mhz": rate * 1000 });
    r.check_refused(
        &format!("arming at {above} um in '{area}' (ceiling {ceiling} um) is refused"),
        b.try_call(Role::Operator, "POST", &arm_path, Some(&arm(above))),
        "depth_above_area_ceiling",
    );
    r.check_refused(
        &format!("arming at {device_max_plus} um (above the device maximum) is refused"),
        b.try_call(
            Role::Operator,
            "POST",
            &arm_path,
            Some(&arm(device_max_plus)),
        ),
        "depth_above_area_ceiling",
    );
    let session = b.api().get(&format!("/v1/sessions/{id}"))?;
    r.check(
        "the refused session stays bound",
        session["state"] == "bound",
        &session["state"],
        "bound",
    );
    deepest = deepest.max(b.jig.depth()?.depth_um);

    b.arm(id, ceiling, rate)?;
    let at_ceiling = b.settled_depth()?.depth_um;
    r.point(
        "depth",
        "up",
        f64::from(ceiling),
        at_ceiling,
        "um",
        0.0,
        tol,
    );
    deepest = deepest.max(at_ceiling);
    r.check_refused(
        "raising the depth above the ceiling while armed is refused",
        b.try_call(
            Role::Operator,
            "PUT",
            &set_path,
            Some(&json!({ "depth_um": above })),
        ),
        "depth_above_area_ceiling",
    );
    deepest = deepest.max(b.jig.depth()?.depth_um);
    b.start(id)?;
    r.check_refused(
        "raising the depth above the ceiling while running is refused",
        b.try_call(
            Role::Operator,
            "PUT",
            &set_path,
            Some(&json!({ "depth_um": above })),
        ),
        "depth_above_area_ceiling",
    );
    let watch_until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < watch_until {
        deepest = deepest.max(b.jig.depth()?.depth_um);
        std::thread::sleep(Duration::from_millis(5));
    }
    b.end(id)?;
    r.figure("deepest_seen_um", deepest);
    r.check(
        "the depth stop never went deeper than the ceiling",
        deepest <= f64::from(ceiling) + tol,
        format!("{deepest:.1} um"),
        format!("<= {ceiling} um + {tol} um"),
    );
    Ok(())
}

/// Session time limit: runs the needles in a session on a rig whose session time limit is
/// 1 minute and times, with the jig, from the start until the motor loses power. Proves the
/// needles run until the limit and stop at it (at most `tolerances.time_limit_late_ms`
/// late), the session is ended and its cartridge spent.
pub fn session_time_limit(b: &mut Bench, r: &mut Recorder) -> Result<()> {
    let limit_ms = f64::from(b.rig.settings().session_time_limit_min) * 60_000.0;
    let late = b.config.tolerances.time_limit_late_ms;
    let (area, _) = deepest_area(b);
    let s = b.armed_session(&area, 500, mid_rate(b))?;
    let start_lo = b.jig.now_us()?;
    b.start(s.id)?;
    let start_hi = b.jig.now_us()?;
    // Coarse watch until shortly before the limit: the motor must keep running.
    let mut last_on = start_hi;
    let mut stopped_early = None;
    loop {
        let now = b.jig.now_us()?;
        let elapsed_ms = now.saturating_sub(start_lo) as f64 / 1_000.0;
        if elapsed_ms >= limit_ms - 1_000.0 {
            break;
        }
        if !b.jig.motor_powered()? {
            stopped_early = Some(elapsed_ms);
            break;
        }
        last_on = now;
        std::thread::sleep(Duration::from_millis(if limit_ms - elapsed_ms > 3_000.0 {
            250
        } else {
            20
        }));
    }
    // Fine watch around the limit.
    let deadline = Instant::now() + Duration::from_millis(late as u64 + 3_000);
    let off_at = loop {
        let before = b.jig.now_us()?;
        if !b.jig.motor_powered()? {
            // The motor went off before this poll answered: the jig's clock read after it is
            // the upper bound (the one read before could be earlier than the stop, when a busy
            // machine delays the poll).
            break Some(b.jig.now_us()?);
        }
        last_on = before;
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    r.check(
        "the needles run until the time limit",
        stopped_early.is_none(),
        stopped_early.map_or_else(
            || "ran".to_string(),
            |ms| format!("stopped after {ms:.0} ms"),
        ),
        format!("running until {limit_ms:.0} ms"),
    );
    // What the controller says about the stop and its loop timing: diagnosis, not verdict.
    let status = b.api().status()?;
    r.figure(
        "controller_at_stop",
        json!({ "state": status["state"], "faults": status["faults"], "control": status["control"] }),
    );
    let Some(off_at) = off_at else {
        r.check(
            "the motor stops at the time limit",
            false,
            "still powered",
            format!("<= {limit_ms:.0} ms + {late} ms"),
        );
        return Ok(());
    };
    // The stop is known to lie between the last poll that saw it on and the first that saw it off.
    let lo = last_on.saturating_sub(start_hi) as f64 / 1_000.0;
    let hi = off_at.saturating_sub(start_lo) as f64 / 1_000.0;
    r.figure("motor_off_after_start_ms", json!({ "lo": lo, "hi": hi }));
    r.check(
        "the motor stops at the time limit, not before and not late",
        hi >= limit_ms && lo <= limit_ms + late,
        format!("within [{lo:.1}, {hi:.1}] ms after the start"),
        format!("{limit_ms:.0} ms to {:.0} ms", limit_ms + late),
    );
    let session = b.wait_session(s.id, "ended", Duration::from_secs(2));
    r.check(
        "the session is ended by the time limit",
        session.as_ref().is_ok_and(|v| {
            v["end_reason"]
                .as_str()
                .is_some_and(|t| t.contains("time limit"))
        }),
        session.as_ref().map_or_else(ToString::to_string, |v| {
            format!("{} ({})", v["state"], v["end_reason"])
        }),
        "ended: session time limit reached",
    );
    let cartridge = b.api().get(&format!("/v1/cartridges/{}", s.cartridge))?;
    r.check(
        "its cartridge is spent",
        cartridge["state"] == "spent",
        &cartridge["state"],
        "spent",
    );
    let again = b.try_call(
        Role::Operator,
        "POST",
        &format!("/v1/sessions/{}/start", s.id),
        None,
    );
    r.check_refused(
        "starting the ended session again is refused",
        again,
        "session_not_active",
    );
    Ok(())
}
