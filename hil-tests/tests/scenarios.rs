//! The scenario suite: one test per scenario, each on its own bench (on the sim: its own
//! needled process), named for what it proves. `NEEDLE_RIG=pi` runs them on the bench jig.
//! Each writes its part of `target/hil-report/`; `cargo run -p hil-tests --bin hil-report`
//! prints the run.

use std::process::Command;

use hil_tests::bench::RigKind;
use hil_tests::report::{run_scenario_on, Recorder};
use hil_tests::scenarios::{motion, rules, safety};
use hil_tests::{run_scenario, Bench, HilError, RigOptions};

#[test]
fn homing_repeats_within_one_step() {
    run_scenario(
        "homing_repeats_within_one_step",
        "the home position repeats within one depth step over repeated homings from different depths",
        RigOptions::default(),
        motion::homing_repeatability,
    );
}

#[test]
fn depth_lands_within_tolerance_from_both_directions() {
    run_scenario(
        "depth_lands_within_tolerance_from_both_directions",
        "every depth setpoint from 0.25 to 2.5 mm in 0.05 mm steps lands within +-0.02 mm, going deeper and going shallower",
        RigOptions::default(),
        motion::depth_accuracy_sweep,
    );
}

#[test]
fn stroke_rate_holds_within_one_percent_and_settles() {
    run_scenario(
        "stroke_rate_holds_within_one_percent_and_settles",
        "the stroke rate holds within +-1 % across the rate range and settles after each change",
        RigOptions::default(),
        motion::stroke_rate_accuracy,
    );
}

#[test]
fn estop_turns_motor_off_within_one_control_period() {
    run_scenario(
        "estop_turns_motor_off_within_one_control_period",
        "pressing the E-stop turns the motor off within one control period plus the HAL's write latency, and it stays off",
        RigOptions::default(),
        safety::estop_to_motor_off,
    );
}

#[test]
fn stall_stops_motor_within_stall_window() {
    run_scenario(
        "stall_stops_motor_within_stall_window",
        "a jammed needle stops the motor within the stall window plus two strokes, by the current limit or the stall detector",
        RigOptions::default(),
        safety::stall_to_fault,
    );
}

#[test]
fn pulled_cartridge_stops_motor_and_is_spent() {
    run_scenario(
        "pulled_cartridge_stops_motor_and_is_spent",
        "pulling the cartridge stops the motor within one control period, ends the session and spends the cartridge for good",
        RigOptions::default(),
        safety::cartridge_pulled_while_running,
    );
}

#[test]
fn host_link_cut_stops_motor_within_host_timeout() {
    run_scenario(
        "host_link_cut_stops_motor_within_host_timeout",
        "when the host stops refreshing the dead-man, the motor stops within the host timeout plus one control period",
        // The product's default dead-man timeout (the other sim scenarios run with a longer one).
        RigOptions { host_timeout_ms: Some(100), ..RigOptions::default() },
        safety::host_link_cut,
    );
}

#[test]
fn service_killed_mid_session_aborts_session_spends_cartridge_loses_nothing() {
    run_scenario(
        "service_killed_mid_session_aborts_session_spends_cartridge_loses_nothing",
        "a service killed mid-session restarts with the session aborted, the cartridge spent and refused, every event kept, the motor off",
        RigOptions::default(),
        safety::service_killed_mid_session,
    );
}

#[test]
fn spent_expired_recalled_and_counterfeit_cartridges_are_refused() {
    run_scenario(
        "spent_expired_recalled_and_counterfeit_cartridges_are_refused",
        "spent, expired, recalled and counterfeit cartridges are each refused with their own code and the needles never run",
        RigOptions::default(),
        rules::refused_cartridges,
    );
}

#[test]
fn copied_cartridge_is_refused_by_its_chip() {
    run_scenario(
        "copied_cartridge_is_refused_by_its_chip",
        "a byte-for-byte copy of a genuine cartridge's tag on another chip fails the challenge at bind and the needles never run; the genuine one is accepted",
        RigOptions::default(),
        rules::copied_cartridge_refused_by_its_chip,
    );
}

#[test]
fn depth_above_area_ceiling_is_refused() {
    run_scenario(
        "depth_above_area_ceiling_is_refused",
        "a depth above the treatment area's ceiling is refused when arming, while armed and while running; the stop never goes deeper",
        RigOptions::default(),
        rules::depth_above_area_ceiling,
    );
}

#[test]
fn session_time_limit_stops_motor_and_ends_session() {
    run_scenario(
        "session_time_limit_stops_motor_and_ends_session",
        "the needles run until the session time limit (1 min on this rig) and stop at it; the session ends, the cartridge is spent",
        RigOptions { session_time_limit_min: Some(1), ..RigOptions::default() },
        rules::session_time_limit,
    );
}

/// Runs the bench engineer's example script against the sim service and checks its CSV.
fn jig_script(b: &mut Bench, r: &mut Recorder) -> hil_tests::Result<()> {
    let script = hil_tests::sim::workspace_root().join("examples/jig/depth_sweep.py");
    let out_dir = tempfile::tempdir().map_err(|e| HilError::io("tempdir", e))?;
    let out = out_dir.path().join("sweep.csv");
    let (cartridge, tag) = b.new_cartridge()?;
    let endpoint = b.api().endpoint().clone();
    // The script is an OpenHTF test on needlepen: it runs in the kit's venv, which
    // scripts/python-kit.sh makes (scripts/test.sh runs it first), or under $PYTHON.
    let kit = hil_tests::sim::workspace_root().join("target/python-kit/bin/python");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| kit.display().to_string());
    let (from, to, step) = (250u32, 2_500u32, 250u32);
    let run = Command::new(&python)
        .arg(&script)
        .args([
            "--url",
            &endpoint.base,
            "--token",
            &endpoint.technician_token,
        ])
        .args(["--sim-seat-tag", &tag.tag_hex()])
        .args(["--sim-chip-secret", &tag.chip_secret_hex()])
        .args([
            "--from-um",
            &from.to_string(),
            "--to-um",
            &to.to_string(),
            "--step-um",
            &step.to_string(),
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .map_err(|e| {
            HilError::Service(format!(
                "cannot run {python} {}: {e} (run bash scripts/python-kit.sh first, or set PYTHON to a python with needlepen and openhtf)",
                script.display()
            ))
        })?;
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    println!("{stdout}{stderr}");
    r.check(
        "the script exits 0",
        run.status.success(),
        format!("{} {}", run.status, stderr.trim()),
        "exit status 0",
    );
    let csv = std::fs::read_to_string(&out).map_err(|e| HilError::io(&out, e))?;
    let mut lines = csv.lines();
    let header = lines.next().unwrap_or_default();
    let expected_header =
        "index,direction,setpoint_um,measured_um,error_um,within_tolerance,jig_time_us";
    r.check(
        "the CSV has the documented header",
        header == expected_header,
        header,
        expected_header,
    );
    let up: Vec<u32> = (from..=to).step_by(step as usize).collect();
    let down: Vec<u32> = up.iter().rev().skip(1).copied().collect();
    let expected: Vec<(&str, u32)> = up
        .iter()
        .map(|d| ("up", *d))
        .chain(down.iter().map(|d| ("down", *d)))
        .collect();
    let rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    r.check(
        "one row per setpoint, both directions",
        rows.len() == expected.len(),
        rows.len(),
        expected.len(),
    );
    let tol = b.config.tolerances.depth_um;
    let mut consistent = true;
    for (row, (dir, setpoint)) in rows.iter().zip(&expected) {
        let num = |i: usize| {
            row.get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        let (sp, measured, error) = (num(2), num(3), num(4));
        consistent &= row.get(1).map(String::as_str) == Some(*dir) && sp == f64::from(*setpoint);
        consistent &= (error - (measured - sp)).abs() < 0.01;
        consistent &= row.get(5).map(String::as_str)
            == Some(if error.abs() <= tol { "true" } else { "false" });
        r.point("depth", dir, sp, measured, "um", 0.0, tol);
    }
    r.check(
        "every row has its setpoint, direction and error = measured - setpoint",
        consistent,
        consistent,
        true,
    );
    let outside = r.points().iter().filter(|p| !p.passed).count();
    r.check(
        "the script's sweep lands within tolerance",
        outside == 0,
        format!("{outside} outside"),
        format!("+-{tol} um"),
    );
    let c = b.api().get(&format!("/v1/cartridges/{cartridge}"))?;
    r.check(
        "the script ended its session (cartridge spent)",
        c["state"] == "spent",
        &c["state"],
        "spent",
    );
    Ok(())
}

#[test]
fn jig_script_depth_sweep_writes_a_correct_csv() {
    // The example script reads the sim's truth as its instrument: it runs on the sim in every
    // mode (it tests the script, not the device).
    run_scenario_on(
        Ok(RigKind::Sim),
        "jig_script_depth_sweep_writes_a_correct_csv",
        "examples/jig/depth_sweep.py authenticates, sweeps the depth through the API, reads the jig and writes a correct CSV",
        RigOptions::default(),
        jig_script,
    );
}
