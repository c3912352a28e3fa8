//! The link rig in every test run: a representative subset of the scenario suite against
//! needled driving the pen firmware's host build over a pty (`NEEDLE_RIG=link`), judged by the
//! pen's truth socket. The whole suite on the link rig (`NEEDLE_RIG=link cargo nextest run -p
//! hil-tests --test scenarios`, 13 of 13 passed, 62 s wall alone) adds a minute and doubles the
//! suite's processes, so CI runs these: the reactions that must hold across the
//! line (E-stop, a pulled cartridge, a cut line, a killed service) and two refusals (a depth
//! above the ceiling; a copied cartridge, refused by the challenge the pen relays to its chip).

use hil_tests::bench::RigKind;
use hil_tests::report::run_scenario_on;
use hil_tests::scenarios::{rules, safety};
use hil_tests::RigOptions;

#[test]
fn link_estop_turns_motor_off_within_one_control_period() {
    run_scenario_on(
        Ok(RigKind::Link),
        "link_estop_turns_motor_off_within_one_control_period",
        "over the link: pressing the E-stop turns the motor off within one control period, and it stays off",
        RigOptions::default(),
        safety::estop_to_motor_off,
    );
}

#[test]
fn link_pulled_cartridge_stops_motor_and_is_spent() {
    run_scenario_on(
        Ok(RigKind::Link),
        "link_pulled_cartridge_stops_motor_and_is_spent",
        "over the link: pulling the cartridge stops the motor within one control period, ends the session and spends the cartridge",
        RigOptions::default(),
        safety::cartridge_pulled_while_running,
    );
}

#[test]
fn link_cut_line_stops_motor_within_host_timeout() {
    run_scenario_on(
        Ok(RigKind::Link),
        "link_cut_line_stops_motor_within_host_timeout",
        "a cut serial line stops the motor within the host timeout plus one control period, by the pen's own dead-man",
        RigOptions { host_timeout_ms: Some(100), ..RigOptions::default() },
        safety::host_link_cut,
    );
}

#[test]
fn link_service_killed_mid_session_aborts_session_spends_cartridge_loses_nothing() {
    run_scenario_on(
        Ok(RigKind::Link),
        "link_service_killed_mid_session_aborts_session_spends_cartridge_loses_nothing",
        "over the link: a service killed mid-session leaves the pen to stop the needles; it restarts with the session aborted and the cartridge spent",
        RigOptions::default(),
        safety::service_killed_mid_session,
    );
}

#[test]
fn link_depth_above_area_ceiling_is_refused() {
    run_scenario_on(
        Ok(RigKind::Link),
        "link_depth_above_area_ceiling_is_refused",
        "over the link: a depth above the treatment area's ceiling is refused; the stop never goes deeper",
        RigOptions::default(),
        rules::depth_above_area_ceiling,
    );
}

#[test]
fn link_copied_cartridge_is_refused_by_its_chip() {
    run_scenario_on(
        Ok(RigKind::Link),
        "link_copied_cartridge_is_refused_by_its_chip",
        "over the link: a copy of a genuine cartridge's tag on another chip fails the challenge the pen relays to it, and the needles never run",
        RigOptions::default(),
        rules::copied_cartridge_refused_by_its_chip,
    );
}
