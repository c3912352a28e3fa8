//! The pen encodes each tick's telemetry frame straight from the controller's accessors
//! (`needle_link::telemetry::Fields`), not from a snapshot: those frames must be, byte for
//! byte, the frames of the controller's own `telemetry()` snapshot, in every state a
//! session passes through, faults included.

use needle_core::units::{Micrometers, Micros, MilliHertz};
use needle_core::{Command, Controller, ControllerConfig, State};
use needle_link::telemetry::{self, Key, Kind, Step, MAX_LEN};
use needle_sim::{Injection, SimHardware, SimParams, SimRig};

/// Asserts that key and delta frames from the controller equal those from its snapshot.
fn check(ctrl: &Controller<SimHardware>, key: &Key) {
    let snapshot = ctrl.telemetry();
    let kinds = [
        Kind::Key(key.number, key.step),
        Kind::Delta(key, 1),
        Kind::Delta(key, 49),
    ];
    for kind in kinds {
        let (mut direct, mut copied) = ([0u8; MAX_LEN], [0u8; MAX_LEN]);
        let n = telemetry::encode(ctrl, kind, &mut direct).expect("fits");
        let m = telemetry::encode(&snapshot, kind, &mut copied).expect("fits");
        assert_eq!(direct[..n], copied[..m], "{kind:?} in {:?}", snapshot.state);
    }
    assert_eq!(
        Key::of(ctrl, key.number, key.step),
        Key::of(&snapshot, key.number, key.step)
    );
}

#[test]
fn frames_from_the_controller_are_the_frames_of_its_snapshot_through_a_session() {
    let rig = SimRig::new(SimParams::default());
    let mut ctrl = Controller::new(rig.hardware(), ControllerConfig::default()).unwrap();
    let key = Key::of(&ctrl.telemetry(), 3, Step::DEFAULT);
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

/// The whole path as the pen runs it: each tick's frame encoded from the controller by the
/// pen's link and decoded by the host's, through a session (homing, arming, running, an
/// E-stop), with frames lost on the way, key frames among them. Every telemetry the host
/// passes on is exactly the controller's state at that tick; a lost key costs only the
/// delta frames up to the next key, which the host counts and never completes wrongly.
#[test]
fn the_host_decodes_the_controllers_exact_state_every_tick_with_frames_lost_between() {
    use needle_link::{FromPen, HostLink, PenId, PenLink};
    let rig = SimRig::new(SimParams::default());
    let mut ctrl = Controller::new(rig.hardware(), ControllerConfig::default()).unwrap();
    let period = ctrl.config().safety.tick_period;
    let mut pen = PenLink::new(PenId(*b"FIELDS01"));
    pen.set_step(Step::of(period, 1));
    let mut host = HostLink::new(Micros(20_000));
    pen.identity(None, Micros(0));
    let identity = pen.pending().to_vec();
    pen.consume(identity.len());
    assert!(identity
        .iter()
        .any(|b| matches!(host.receive(*b, Micros(0)), Some(FromPen::Identity { .. }))));
    let (mut frames, mut delivered, mut exact, mut unanchored, mut lost_keys) = (0u64, 0, 0, 0, 0);
    let mut resynced_after_a_lost_key = false;
    let mut waiting_for_key = false;
    let mut run = |ctrl: &mut Controller<SimHardware>, ticks: u32| {
        for _ in 0..ticks {
            rig.run(ctrl, period, |_| false);
            pen.telemetry(ctrl);
            let wire = pen.pending().to_vec();
            pen.consume(wire.len());
            frames += 1;
            // A frame lost now and then: one in 23, and every key frame of a stretch.
            let is_key = wire.get(3).is_some_and(|flags| flags & 1 != 0);
            let stretch = frames % 2_000 > 1_700;
            if frames % 23 == 0 || (is_key && stretch) {
                lost_keys += u64::from(is_key);
                waiting_for_key |= is_key;
                continue;
            }
            let now = ctrl.now();
            delivered += 1;
            for b in &wire {
                match host.receive(*b, now) {
                    Some(FromPen::Telemetry(t)) => {
                        assert_eq!(t, ctrl.telemetry(), "tick {}", ctrl.ticks());
                        exact += 1;
                        resynced_after_a_lost_key |= waiting_for_key && is_key;
                        waiting_for_key &= !is_key;
                    }
                    Some(FromPen::Unanchored) => {
                        assert!(waiting_for_key, "unanchored only after a lost key");
                        unanchored += 1;
                    }
                    None => {}
                    other => panic!("not telemetry: {other:?}"),
                }
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
    run(&mut ctrl, 3_000);
    assert_eq!(ctrl.state(), State::Running);
    // Rare numbers moved by commands mid-run (between key frames, so only the controller's
    // revision tells the link to look at them again): the rate and the depth setpoints.
    ctrl.handle(Command::SetRate(MilliHertz::from_hz(140)))
        .unwrap();
    run(&mut ctrl, 7);
    ctrl.handle(Command::SetDepth(Micrometers(1_200))).unwrap();
    run(&mut ctrl, 400);
    assert_eq!(ctrl.rate_setpoint(), MilliHertz::from_hz(140));
    rig.inject(Injection::EStop(true));
    run(&mut ctrl, 50);
    assert_eq!(ctrl.state(), State::EStop);
    // Released and cleared: faults and interlocks go back.
    rig.inject(Injection::EStop(false));
    run(&mut ctrl, 3);
    ctrl.handle(Command::ClearFaults).unwrap();
    run(&mut ctrl, 20);
    assert_ne!(ctrl.state(), State::EStop);
    assert!(
        lost_keys > 0 && unanchored > 0,
        "the key path: {lost_keys} {unanchored}"
    );
    assert!(
        resynced_after_a_lost_key,
        "a key frame after lost ones anchors again"
    );
    assert_eq!(
        exact + unanchored,
        delivered,
        "every frame delivered is exact or unanchored"
    );
    // Lost: one frame in 23, and the deltas of keys lost in the stretches (3 of 20 of the
    // time).
    assert!(exact > frames * 7 / 10, "{exact} of {frames} exact");
}
