//! The pen encodes each tick's telemetry frame straight from the controller's accessors
//! (`needle_link::telemetry::Fields`), not from a snapshot: those frames must be, byte for
//! byte, the frames of the controller's own `telemetry()` snapshot, in every state a
//! session passes through, faults included.

use needle_core::units::{Micrometers, Micros, MilliHertz};
use needle_core::{Command, Controller, ControllerConfig, State};
use needle_link::telemetry::{self, Key, Kind, MAX_LEN};
use needle_sim::{Injection, SimHardware, SimParams, SimRig};

/// Asserts that key and delta frames from the controller equal those from its snapshot.
fn check(ctrl: &Controller<SimHardware>, key: &Key) {
    let snapshot = ctrl.telemetry();
    let kinds = [Kind::Key(key.number), Kind::Delta(key)];
    for kind in kinds {
        let (mut direct, mut copied) = ([0u8; MAX_LEN], [0u8; MAX_LEN]);
        let n = telemetry::encode(ctrl, kind, &mut direct).expect("fits");
        let m = telemetry::encode(&snapshot, kind, &mut copied).expect("fits");
        assert_eq!(direct[..n], copied[..m], "{kind:?} in {:?}", snapshot.state);
    }
    assert_eq!(Key::of(ctrl, key.number), Key::of(&snapshot, key.number));
}

#[test]
fn frames_from_the_controller_are_the_frames_of_its_snapshot_through_a_session() {
    let rig = SimRig::new(SimParams::default());
    let mut ctrl = Controller::new(rig.hardware(), ControllerConfig::default()).unwrap();
    let key = Key::of(&ctrl.telemetry(), 3);
    let mut states = Vec::new();
    let mut run = |ctrl: &mut Controller<SimHardware>, ticks: u32| {
        for _ in 0..ticks {
            rig.run(ctrl, ctrl.config().safety.tick_period, |_| false);
            check(ctrl, &key);
            if states.last() != Some(&ctrl.state()) {
                states.push(ctrl.state());
            }
        }
    };
    run(&mut ctrl, 2);
    ctrl.handle(Command::Home).unwrap();
    run(&mut ctrl, 3_000);
    assert_eq!(ctrl.state(), State::Idle, "homed");
    rig.inject(Injection::Cartridge(true));
    run(&mut ctrl, 2);
    ctrl.handle(Command::Arm {
        depth: Micrometers(1_000),
        rate: MilliHertz::from_hz(120),
        ceiling: Micrometers(2_500),
        max_run: Micros(60_000_000),
        max_strokes: 100_000,
    })
    .unwrap();
    for _ in 0..5_000 {
        if !ctrl.depth_moving() {
            break;
        }
        run(&mut ctrl, 1);
    }
    ctrl.handle(Command::Start).unwrap();
    run(&mut ctrl, 300);
    assert_eq!(ctrl.state(), State::Running);
    rig.inject(Injection::EStop(true));
    run(&mut ctrl, 5);
    for want in [
        State::Homing,
        State::Idle,
        State::Armed,
        State::Running,
        State::EStop,
    ] {
        assert!(states.contains(&want), "{want:?} not reached: {states:?}");
    }
}
