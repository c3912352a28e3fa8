//! Fault-injection campaign (single-fault safety): every fault the sim can inject, at random
//! times in random states, alone and in pairs, followed by random commands. The motor is
//! never powered outside `Running`, every fault is latched and reported, and no command
//! starts the motor while a fault is latched. Judged by the rig's truth.
//!
//! `PROPTEST_CASES` sets the number of campaigns (default 64 here; run e.g. 2000 on demand).

use needle_core::units::{Micrometers, Micros, MilliHertz};
use needle_core::{Command, Controller, ControllerConfig, Fault, State};
use needle_sim::{Injection, Part, SimHardware, SimParams, SimRig};
use proptest::prelude::*;

#[derive(Debug, Clone, Copy)]
enum Stage {
    Boot,
    Homing,
    Idle,
    Armed,
    Running,
    Paused,
}

/// A fault to inject and the fault(s) the controller must latch for it.
fn injections() -> impl Strategy<Value = Injection> {
    prop_oneof![
        Just(Injection::EStop(true)),
        Just(Injection::Cartridge(false)),
        Just(Injection::Jam(true)),
        Just(Injection::StuckHomeSwitch(Some(true))),
        Just(Injection::SensorDropout(true)),
        prop::sample::select(Part::ALL.to_vec()).prop_map(|p| Injection::SensorError(p, true)),
        (75.0..150.0f64).prop_map(Injection::Overheat),
        Just(Injection::BrownOut(true)),
        Just(Injection::HostSilence(true)),
        Just(Injection::DepthOverload(true)),
    ]
}

fn commands() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::Start),
        Just(Command::ClearFaults),
        Just(Command::Home),
        Just(Command::Arm {
            depth: Micrometers(800),
            rate: MilliHertz::from_hz(120),
            ceiling: Micrometers(2_000),
            max_run: Micros(u64::MAX),
            max_strokes: u32::MAX,
        }),
        Just(Command::Pause),
        Just(Command::Disarm),
        Just(Command::SetRate(MilliHertz::from_hz(150))),
    ]
}

fn reach(rig: &SimRig, ctrl: &mut Controller<SimHardware>, stage: Stage) {
    let run = |rig: &SimRig,
               ctrl: &mut Controller<SimHardware>,
               ms: u64,
               until: fn(&Controller<SimHardware>) -> bool| {
        rig.run(ctrl, Micros::from_millis(ms), until);
    };
    if matches!(stage, Stage::Boot) {
        return;
    }
    ctrl.handle(Command::Home).unwrap();
    if matches!(stage, Stage::Homing) {
        run(rig, ctrl, 100, |_| false);
        return;
    }
    run(rig, ctrl, 5_000, |c| c.state() == State::Idle);
    if matches!(stage, Stage::Idle) {
        return;
    }
    ctrl.handle(Command::Arm {
        depth: Micrometers(1_000),
        rate: MilliHertz::from_hz(120),
        ceiling: Micrometers(2_500),
        max_run: Micros(u64::MAX),
        max_strokes: u32::MAX,
    })
    .unwrap();
    run(rig, ctrl, 5_000, |c| !c.telemetry().depth_moving);
    if matches!(stage, Stage::Armed) {
        return;
    }
    ctrl.handle(Command::Start).unwrap();
    run(rig, ctrl, 300, |_| false);
    if matches!(stage, Stage::Paused) {
        ctrl.handle(Command::Pause).unwrap();
        run(rig, ctrl, 50, |_| false);
    }
}

/// Ticks once by hand, heartbeat first unless the host link is cut, and checks the
/// invariants against the truth.
fn tick_checked(rig: &SimRig, ctrl: &mut Controller<SimHardware>) -> Result<(), TestCaseError> {
    let t = rig.now().saturating_add(ctrl.config().safety.tick_period);
    rig.advance_to(t);
    if !rig.host_silent() {
        let _ = ctrl.handle(Command::Heartbeat);
    }
    ctrl.tick(t);
    let truth = rig.truth();
    if truth.motor_powered {
        prop_assert_eq!(
            ctrl.state(),
            State::Running,
            "motor powered outside Running"
        );
    }
    if !ctrl.telemetry().faults.is_empty() {
        prop_assert!(
            !truth.motor_powered,
            "motor powered with faults latched {:?}",
            ctrl.telemetry().faults
        );
        prop_assert!(matches!(ctrl.state(), State::Fault | State::EStop));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn no_fault_or_pair_of_faults_leaves_the_motor_powered(
        stage in prop::sample::select(vec![Stage::Boot, Stage::Homing, Stage::Idle, Stage::Armed, Stage::Running, Stage::Paused]),
        first in injections(),
        first_after_ms in 0u64..200,
        second in proptest::option::of((injections(), 0u64..200)),
        after in prop::collection::vec(commands(), 0..8),
    ) {
        let rig = SimRig::new(SimParams::default());
        rig.inject(Injection::Cartridge(true));
        let mut ctrl = Controller::new(rig.hardware(), ControllerConfig::default()).unwrap();
        ctrl.tick(rig.now());
        reach(&rig, &mut ctrl, stage);
        if matches!(stage, Stage::Running) {
            prop_assert!(rig.truth().motor_powered, "the campaign did not reach a running motor");
        }
        let t0 = rig.now();
        rig.schedule(t0.saturating_add(Micros::from_millis(first_after_ms)), first);
        if let Some((inj, ms)) = second {
            rig.schedule(t0.saturating_add(Micros::from_millis(first_after_ms + ms)), inj);
        }
        let mut faults_seen = needle_core::Faults::EMPTY;
        for _ in 0..700 {
            tick_checked(&rig, &mut ctrl)?;
            let latched = ctrl.telemetry().faults;
            // Once latched, a fault stays latched until ClearFaults (none sent yet).
            prop_assert!(faults_seen.without(latched).is_empty(), "a fault unlatched by itself");
            faults_seen = latched;
        }
        // Commands after the faults: none may power the motor while a fault is latched.
        for command in after {
            let had_faults = !ctrl.telemetry().faults.is_empty();
            let result = ctrl.handle(command);
            if had_faults && command == Command::Start {
                prop_assert!(result.is_err(), "Start accepted with faults latched");
            }
            for _ in 0..20 {
                tick_checked(&rig, &mut ctrl)?;
            }
        }
    }
}

/// The fault each injection must latch when the motor runs: every injection is seen.
#[test]
fn every_injection_while_running_latches_its_fault() {
    let cases: Vec<(Injection, &[Fault])> = vec![
        (Injection::EStop(true), &[Fault::EStop]),
        (Injection::Cartridge(false), &[Fault::CartridgeRemoved]),
        (
            Injection::Jam(true),
            &[Fault::OverCurrent, Fault::StrokeStall],
        ),
        (
            Injection::StuckHomeSwitch(Some(true)),
            &[Fault::DepthAxisFault],
        ),
        (Injection::SensorDropout(true), &[Fault::StrokeStall]),
        (Injection::Overheat(100.0), &[Fault::OverTemperature]),
        (Injection::BrownOut(true), &[Fault::UnderVoltage]),
        (Injection::HostSilence(true), &[Fault::HostTimeout]),
    ];
    for (injection, expected) in cases {
        let rig = SimRig::new(SimParams::default());
        rig.inject(Injection::Cartridge(true));
        let mut ctrl = Controller::new(rig.hardware(), ControllerConfig::default()).unwrap();
        ctrl.tick(rig.now());
        reach(&rig, &mut ctrl, Stage::Running);
        rig.inject(injection);
        for _ in 0..1_000 {
            let t = rig.now().saturating_add(Micros(1_000));
            rig.advance_to(t);
            if !rig.host_silent() {
                let _ = ctrl.handle(Command::Heartbeat);
            }
            ctrl.tick(t);
            if ctrl.state() != State::Running {
                break;
            }
        }
        let faults = ctrl.telemetry().faults;
        assert!(
            expected.iter().any(|f| faults.contains(*f)),
            "{injection:?}: latched {faults:?}, expected one of {expected:?}"
        );
        assert!(!rig.truth().motor_powered, "{injection:?}");
    }
}
