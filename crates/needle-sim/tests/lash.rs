//! Backlash and the depth ceiling, judged by the rig's truth: whatever the real lash of the
//! lead screw and whatever lash the configuration claims, the needle never goes deeper than
//! the armed ceiling, in moves in either direction, armed or running.

use needle_core::units::{Micrometers, Micros, MilliHertz};
use needle_core::{Command, Controller, ControllerConfig, State};
use needle_sim::{Injection, SimHardware, SimParams, SimRig};
use proptest::prelude::*;

type Ctrl = Controller<SimHardware>;

const STEP_UM: f64 = 2.5;

/// Ticks until the axis rests, checking the truth against the ceiling after every tick.
/// Returns the deepest true depth seen.
fn settle_under(rig: &SimRig, ctrl: &mut Ctrl, ceiling: f64) -> Result<f64, TestCaseError> {
    let period = ctrl.config().safety.tick_period;
    let mut deepest = f64::MIN;
    for _ in 0..20_000 {
        let t = rig.now().saturating_add(period);
        rig.advance_to(t);
        let _ = ctrl.handle(Command::Heartbeat);
        ctrl.tick(t);
        let depth = rig.truth().depth_um;
        deepest = deepest.max(depth);
        prop_assert!(
            depth <= ceiling + 1e-6,
            "true depth {depth:.2} um passed the ceiling {ceiling} um (telemetry says {:?})",
            ctrl.telemetry().depth_position
        );
        if !ctrl.telemetry().depth_moving {
            return Ok(deepest);
        }
    }
    Err(TestCaseError::fail("depth axis never came to rest"))
}

/// A move: a depth (possibly above the ceiling, which is refused) and whether the motor runs.
fn moves() -> impl Strategy<Value = Vec<(i32, bool)>> {
    prop::collection::vec((0..2_600i32, any::<bool>()), 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn true_depth_never_passes_the_ceiling_whatever_the_true_and_configured_lash(
        true_lash in prop_oneof![Just(0.0), Just(20.0), 0.0..150.0f64],
        configured_lash in prop_oneof![Just(0), Just(199), 0..200i32],
        ceiling in prop_oneof![Just(1_500), 100..=2_500i32],
        arm_at_ceiling in any::<bool>(),
        arm_depth in 0..2_500i32,
        moves in moves(),
    ) {
        let rig = SimRig::new(SimParams { backlash_um: true_lash, ..SimParams::default() });
        rig.inject(Injection::Cartridge(true));
        let mut config = ControllerConfig::default();
        config.depth.backlash = Micrometers(configured_lash);
        let mut ctrl = Controller::new(rig.hardware(), config).unwrap();
        ctrl.tick(rig.now());
        ctrl.handle(Command::Home).unwrap();
        rig.run(&mut ctrl, Micros::from_millis(10_000), |c| c.state() != State::Homing);
        prop_assert_eq!(ctrl.state(), State::Idle, "homing failed: {:?}", ctrl.telemetry());
        prop_assert!(
            (f64::from(ctrl.telemetry().depth_lash.0) - true_lash).abs() <= STEP_UM,
            "measured lash {:?}, real {true_lash:.1} um", ctrl.telemetry().depth_lash
        );

        let c = f64::from(ceiling);
        let depth = if arm_at_ceiling { ceiling } else { arm_depth.min(ceiling) };
        ctrl.handle(Command::Arm {
            depth: Micrometers(depth),
            rate: MilliHertz::from_hz(120),
            ceiling: Micrometers(ceiling),
            max_run: Micros(u64::MAX),
            max_strokes: u32::MAX,
        }).unwrap();
        settle_under(&rig, &mut ctrl, c)?;

        for (target, run) in moves {
            match (run, ctrl.state()) {
                (true, State::Armed | State::Paused) => ctrl.handle(Command::Start).unwrap(),
                (false, State::Running) => ctrl.handle(Command::Pause).unwrap(),
                _ => {}
            }
            let accepted = ctrl.handle(Command::SetDepth(Micrometers(target))).is_ok();
            prop_assert_eq!(accepted, target <= ceiling);
            settle_under(&rig, &mut ctrl, c)?;
            if run {
                prop_assert_eq!(ctrl.state(), State::Running);
            }
            if accepted {
                // At rest, lash can only leave the needle short: by nothing where the move
                // had room to pass the target, by up to the real lash at the ceiling.
                let truth = rig.truth().depth_um;
                let t = f64::from(target);
                let room = t + true_lash + 3.0 * STEP_UM <= c;
                let short = if room { STEP_UM } else { true_lash + 2.0 * STEP_UM };
                // The target itself is rounded to the nearest step.
                prop_assert!(
                    truth <= t + STEP_UM / 2.0 + 1e-6 && truth >= t - short,
                    "target {target} um, true depth {truth:.2} um, true lash {true_lash:.1}, configured {configured_lash}"
                );
            }
        }
    }
}

/// The case of the review: no real lash, 200 um configured, ceiling 1500 um. Compensating
/// the configured lash used to drive the needle to 1700 um while telemetry said 1500.
#[test]
fn configured_lash_larger_than_real_never_drives_past_the_ceiling() {
    let rig = SimRig::new(SimParams {
        backlash_um: 0.0,
        ..SimParams::default()
    });
    rig.inject(Injection::Cartridge(true));
    let mut config = ControllerConfig::default();
    config.depth.backlash = Micrometers(200);
    config.depth.homing_backoff = Micrometers(250);
    let mut ctrl = Controller::new(rig.hardware(), config).unwrap();
    ctrl.tick(rig.now());
    ctrl.handle(Command::Home).unwrap();
    rig.run(&mut ctrl, Micros::from_millis(10_000), |c| {
        c.state() != State::Homing
    });
    assert_eq!(ctrl.state(), State::Idle);
    ctrl.handle(Command::Arm {
        depth: Micrometers(1_500),
        rate: MilliHertz::from_hz(120),
        ceiling: Micrometers(1_500),
        max_run: Micros(u64::MAX),
        max_strokes: u32::MAX,
    })
    .unwrap();
    let deepest = settle_under(&rig, &mut ctrl, 1_500.0).unwrap();
    assert!(deepest <= 1_500.0, "true depth reached {deepest:.1} um");
    // Deeper while running, then shallower, then back to the ceiling.
    ctrl.handle(Command::Start).unwrap();
    for target in [1_000, 1_500, 1_200, 1_499] {
        ctrl.handle(Command::SetDepth(Micrometers(target))).unwrap();
        settle_under(&rig, &mut ctrl, 1_500.0).unwrap();
    }
    assert_eq!(ctrl.state(), State::Running);
}
