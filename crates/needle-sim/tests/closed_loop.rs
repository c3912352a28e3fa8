//! The core against the simulated rig, in virtual time. Every verdict comes from the rig's
//! physical truth, never from the controller's own telemetry.

use needle_core::units::{Micrometers, Micros, MilliHertz};
use needle_core::{Command, Controller, ControllerConfig, Fault, State};
use needle_sim::{Injection, Part, SimHardware, SimParams, SimRig};

type Ctrl = Controller<SimHardware>;

fn rig() -> (SimRig, Ctrl) {
    let rig = SimRig::new(SimParams::default());
    rig.inject(Injection::Cartridge(true));
    let mut ctrl = Controller::new(rig.hardware(), ControllerConfig::default()).unwrap();
    ctrl.tick(rig.now());
    (rig, ctrl)
}

fn homed() -> (SimRig, Ctrl) {
    let (rig, mut ctrl) = rig();
    ctrl.handle(Command::Home).unwrap();
    rig.run(&mut ctrl, Micros::from_millis(5_000), |c| {
        c.state() != State::Homing
    });
    assert_eq!(
        ctrl.state(),
        State::Idle,
        "homing failed: {:?}",
        ctrl.telemetry()
    );
    (rig, ctrl)
}

fn settle(rig: &SimRig, ctrl: &mut Ctrl) {
    rig.run(ctrl, Micros::from_millis(5_000), |c| {
        !c.telemetry().depth_moving
    });
    assert!(!ctrl.telemetry().depth_moving);
}

fn arm(rig: &SimRig, ctrl: &mut Ctrl, depth_um: i32, rate: MilliHertz) {
    let ceiling = ctrl.config().depth.max_depth;
    ctrl.handle(Command::Arm {
        depth: Micrometers(depth_um),
        rate,
        ceiling,
        max_run: Micros(u64::MAX),
        max_strokes: u32::MAX,
    })
    .unwrap();
    settle(rig, ctrl);
}

fn running(rate_hz: u32) -> (SimRig, Ctrl) {
    let (rig, mut ctrl) = homed();
    arm(&rig, &mut ctrl, 1_000, MilliHertz::from_hz(rate_hz));
    ctrl.handle(Command::Start).unwrap();
    rig.run(&mut ctrl, Micros::from_millis(400), |_| false);
    assert!(rig.truth().motor_powered);
    (rig, ctrl)
}

/// Steps one tick by hand: advance physics, heartbeat, tick.
fn tick(rig: &SimRig, ctrl: &mut Ctrl) {
    let t = rig.now().saturating_add(ctrl.config().safety.tick_period);
    rig.advance_to(t);
    ctrl.handle(Command::Heartbeat).unwrap_or(());
    ctrl.tick(t);
}

#[test]
fn rate_settles_within_one_percent_in_200ms_across_range() {
    for hz in (80..=160).step_by(10) {
        let (rig, mut ctrl) = homed();
        arm(&rig, &mut ctrl, 1_000, MilliHertz::from_hz(hz));
        ctrl.handle(Command::Start).unwrap();
        let start = rig.now();
        rig.run(&mut ctrl, Micros::from_millis(200), |_| false);
        // From 200 ms on, the true rate stays within +-1 % for the next second.
        let target = f64::from(hz);
        let mut worst: f64 = 0.0;
        while rig.now().since(start) < Micros::from_millis(1_200) {
            tick(&rig, &mut ctrl);
            worst = worst.max((rig.truth().rate_hz - target).abs() / target);
        }
        assert!(worst <= 0.01, "{hz} Hz: worst error {:.3} %", worst * 100.0);
        assert_eq!(ctrl.state(), State::Running);
    }
}

#[test]
fn depth_moves_land_within_one_step_from_both_directions() {
    let (rig, mut ctrl) = homed();
    arm(&rig, &mut ctrl, 0, MilliHertz::from_hz(120));
    let step_um = 1000.0 / f64::from(ctrl.config().depth.steps_per_mm);
    let targets: Vec<i32> = (0..=50).map(|i| i * 50).collect();
    // Up the range, down the range, and zig-zags that approach each point from above.
    let mut sequence = targets.clone();
    sequence.extend(targets.iter().rev());
    for &t in &targets {
        sequence.push((t + 400).min(2_500));
        sequence.push(t);
    }
    let lash = SimParams::default().backlash_um;
    for target in sequence {
        ctrl.handle(Command::SetDepth(Micrometers(target))).unwrap();
        settle(&rig, &mut ctrl);
        let truth = rig.truth().depth_um;
        let target = f64::from(target);
        // Moves finish going shallower after passing the target by the lash; at the maximum
        // depth there is no room to pass it, and the lash leaves the needle short.
        let short_by = if target + lash + step_um <= 2_500.0 {
            step_um
        } else {
            lash + step_um
        };
        assert!(
            truth <= target + 1e-6 && truth >= target - short_by,
            "target {target} um, true depth {truth:.1} um"
        );
    }
}

#[test]
fn homing_repeats_within_one_step() {
    let mut zeros = Vec::new();
    for start in [300.0, 1_200.0, 2_900.0, 0.0, -100.0] {
        let rig = SimRig::new(SimParams {
            start_depth_um: start,
            ..SimParams::default()
        });
        let mut ctrl = Controller::new(rig.hardware(), ControllerConfig::default()).unwrap();
        ctrl.tick(rig.now());
        ctrl.handle(Command::Home).unwrap();
        rig.run(&mut ctrl, Micros::from_millis(5_000), |c| {
            c.state() != State::Homing
        });
        assert_eq!(ctrl.state(), State::Idle, "from {start}");
        zeros.push(rig.truth().depth_um);
    }
    let spread = zeros.iter().cloned().fold(f64::MIN, f64::max)
        - zeros.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread <= 2.5, "home positions {zeros:?}");
}

/// Injects `injection` into a running rig and checks the motor is off in the very tick the
/// controller sees it, with `fault` latched.
fn assert_safe_in_same_tick(injection: Injection, fault: Fault) {
    let (rig, mut ctrl) = running(120);
    rig.inject(injection);
    tick(&rig, &mut ctrl);
    let truth = rig.truth();
    assert!(!truth.motor_powered, "{injection:?}: motor still powered");
    assert!(
        ctrl.telemetry().faults.contains(fault),
        "{injection:?}: {:?}",
        ctrl.telemetry().faults
    );
    assert!(matches!(ctrl.state(), State::Fault | State::EStop));
    // And it stays off.
    let pulses = truth.step_pulses;
    rig.run(&mut ctrl, Micros::from_millis(100), |_| false);
    assert!(!rig.truth().motor_powered);
    assert_eq!(
        rig.truth().step_pulses,
        pulses,
        "depth axis moved after {injection:?}"
    );
}

#[test]
fn estop_stops_motor_in_same_tick() {
    assert_safe_in_same_tick(Injection::EStop(true), Fault::EStop);
}

#[test]
fn cartridge_pull_stops_motor_in_same_tick() {
    assert_safe_in_same_tick(Injection::Cartridge(false), Fault::CartridgeRemoved);
}

#[test]
fn cartridge_pull_and_reseat_between_polls_is_counted() {
    // Idle (no fault latches): only the count can tell a host that polls every 20 ms.
    let (rig, mut ctrl) = homed();
    let before = ctrl.telemetry().cartridge_openings;
    let t = rig.now();
    rig.schedule(t.saturating_add(Micros(3_000)), Injection::Cartridge(false));
    rig.schedule(t.saturating_add(Micros(8_000)), Injection::Cartridge(true));
    rig.run(&mut ctrl, Micros::from_millis(20), |_| false);
    assert!(rig.cartridge_seated());
    let after = ctrl.telemetry();
    assert!(!after
        .interlocks
        .contains(needle_core::Interlock::CartridgeMissing));
    assert_eq!(after.cartridge_openings, before.wrapping_add(1));
}

#[test]
fn overheat_stops_motor_in_same_tick() {
    assert_safe_in_same_tick(Injection::Overheat(90.0), Fault::OverTemperature);
}

#[test]
fn sensor_errors_stop_motor_in_same_tick() {
    for part in Part::ALL {
        if matches!(part, Part::DepthStep | Part::DepthDir) {
            continue; // written only while the axis moves: see the next test
        }
        assert_safe_in_same_tick(Injection::SensorError(part, true), Fault::SensorFault);
    }
}

#[test]
fn enable_never_rises_in_a_tick_whose_pwm_write_failed() {
    let (rig, mut ctrl) = homed();
    arm(&rig, &mut ctrl, 1_000, MilliHertz::from_hz(120));
    rig.inject(Injection::SensorError(Part::MotorPwm, true));
    let rises = rig.truth().enable_rises;
    ctrl.handle(Command::Start).unwrap();
    tick(&rig, &mut ctrl);
    assert!(ctrl.telemetry().faults.contains(Fault::SensorFault));
    assert_eq!(
        rig.truth().enable_rises,
        rises,
        "the driver enable rose although the PWM write had failed"
    );
    assert!(!rig.truth().motor_powered);
}

#[test]
fn depth_output_errors_stop_motor_in_the_tick_that_writes_them() {
    for part in [Part::DepthStep, Part::DepthDir] {
        let (rig, mut ctrl) = running(120);
        rig.inject(Injection::SensorError(part, true));
        ctrl.handle(Command::SetDepth(Micrometers(1_400))).unwrap();
        let mut ticks = 0;
        while ctrl.state() == State::Running && ticks < 100 {
            tick(&rig, &mut ctrl);
            ticks += 1;
            // Until the failing write happens, nothing is wrong; once it does, in that tick:
            if ctrl.state() != State::Running {
                assert!(!rig.truth().motor_powered, "{part:?}");
                assert!(
                    ctrl.telemetry().faults.contains(Fault::SensorFault),
                    "{part:?}"
                );
            }
        }
        assert_eq!(ctrl.state(), State::Fault, "{part:?} never failed");
        assert!(
            !ctrl.telemetry().homed,
            "{part:?}: steps may be lost, homing must be required"
        );
    }
}

#[test]
fn stuck_home_switch_deep_in_travel_stops_motor_in_same_tick() {
    assert_safe_in_same_tick(
        Injection::StuckHomeSwitch(Some(true)),
        Fault::DepthAxisFault,
    );
}

#[test]
fn brownout_stops_motor_after_its_window() {
    let (rig, mut ctrl) = running(120);
    rig.inject(Injection::BrownOut(true));
    let window = ctrl.config().safety.under_voltage_time;
    let took = rig.run(&mut ctrl, Micros::from_millis(100), |c| {
        c.state() == State::Fault
    });
    assert!(ctrl.telemetry().faults.contains(Fault::UnderVoltage));
    assert!(!rig.truth().motor_powered);
    assert!(
        took <= window.saturating_add(Micros(1_000)),
        "took {took:?}"
    );
}

#[test]
fn over_current_from_heavy_load_stops_motor() {
    let (rig, mut ctrl) = running(120);
    // A load the motor can only just carry, at a current above the limit.
    rig.inject(Injection::Load(0.03));
    rig.run(&mut ctrl, Micros::from_millis(1_000), |c| {
        c.state() == State::Fault
    });
    let faults = ctrl.telemetry().faults;
    assert!(
        faults.contains(Fault::OverCurrent) || faults.contains(Fault::StrokeStall),
        "{faults:?}"
    );
    assert!(!rig.truth().motor_powered);
}

#[test]
fn jam_stops_motor_by_over_current_before_stall_window() {
    let (rig, mut ctrl) = running(120);
    rig.inject(Injection::Jam(true));
    let took = rig.run(&mut ctrl, Micros::from_millis(1_000), |c| {
        c.state() == State::Fault
    });
    // A jammed DC motor draws stall current: the current limit trips first.
    assert!(
        ctrl.telemetry().faults.contains(Fault::OverCurrent),
        "{:?}",
        ctrl.telemetry()
    );
    assert!(!rig.truth().motor_powered);
    assert!(took <= ctrl.config().stroke.stall_window, "took {took:?}");
}

#[test]
fn jam_is_detected_as_stall_within_window() {
    // A driver that limits current itself: only the stall detector can see the jam.
    let rig = SimRig::new(SimParams::default());
    rig.inject(Injection::Cartridge(true));
    let mut config = ControllerConfig::default();
    config.safety.max_current = needle_core::units::MilliAmps(100_000);
    let mut ctrl = Controller::new(rig.hardware(), config).unwrap();
    ctrl.tick(rig.now());
    ctrl.handle(Command::Home).unwrap();
    rig.run(&mut ctrl, Micros::from_millis(5_000), |c| {
        c.state() == State::Idle
    });
    arm(&rig, &mut ctrl, 1_000, MilliHertz::from_hz(120));
    ctrl.handle(Command::Start).unwrap();
    rig.run(&mut ctrl, Micros::from_millis(400), |_| false);
    rig.inject(Injection::Jam(true));
    let window = ctrl.config().stroke.stall_window;
    let took = rig.run(&mut ctrl, Micros::from_millis(1_000), |c| {
        c.state() == State::Fault
    });
    assert!(
        ctrl.telemetry().faults.contains(Fault::StrokeStall),
        "{:?}",
        ctrl.telemetry()
    );
    assert!(!rig.truth().motor_powered);
    // The rate estimate falls under half the setpoint within two strokes of the jam.
    let bound = window.saturating_add(Micros::from_millis(20));
    assert!(took <= bound, "stall took {took:?}, window {window:?}");
}

#[test]
fn sensor_dropout_is_detected_as_stall() {
    let (rig, mut ctrl) = running(120);
    rig.inject(Injection::SensorDropout(true));
    rig.run(&mut ctrl, Micros::from_millis(1_000), |c| {
        c.state() == State::Fault
    });
    assert!(ctrl.telemetry().faults.contains(Fault::StrokeStall));
    assert!(!rig.truth().motor_powered);
}

#[test]
fn stroke_edges_from_the_future_are_a_sensor_fault() {
    // A sensor clock far ahead: every edge reads as "just now", so a dropout would never
    // look like a stall. The core must refuse such edges at once.
    let (rig, mut ctrl) = running(120);
    rig.inject(Injection::SensorClockAhead(Micros::from_millis(5_000)));
    rig.inject(Injection::SensorDropout(true));
    let took = rig.run(&mut ctrl, Micros::from_millis(1_000), |_| {
        !rig.truth().motor_powered
    });
    assert!(
        !rig.truth().motor_powered,
        "motor still running blind after {took:?}"
    );
    assert!(took <= ctrl.config().safety.tick_period, "took {took:?}");
    assert!(ctrl.telemetry().faults.contains(Fault::SensorFault));

    // A sensor clock ahead by less than max_tick_gap (an edge between reading the clock and
    // reading the sensor, on a host preempted in between) is tolerated, and a dropout is still
    // a stall.
    let (rig, mut ctrl) = running(120);
    rig.inject(Injection::SensorClockAhead(Micros::from_millis(20)));
    rig.run(&mut ctrl, Micros::from_millis(100), |_| false);
    assert_eq!(ctrl.state(), State::Running, "{:?}", ctrl.telemetry());
    rig.inject(Injection::SensorDropout(true));
    let took = rig.run(&mut ctrl, Micros::from_millis(1_000), |_| {
        !rig.truth().motor_powered
    });
    assert!(ctrl.telemetry().faults.contains(Fault::StrokeStall));
    let bound = ctrl
        .config()
        .stroke
        .stall_window
        .saturating_add(Micros::from_millis(40));
    assert!(took <= bound, "stall took {took:?}");
}

#[test]
fn lost_host_stops_motor_within_timeout_plus_one_tick() {
    let (rig, mut ctrl) = running(120);
    let cut = rig.now();
    rig.inject(Injection::HostSilence(true));
    rig.run(&mut ctrl, Micros::from_millis(1_000), |_| {
        !rig.truth().motor_powered
    });
    let limit = ctrl
        .config()
        .safety
        .host_timeout
        .saturating_add(ctrl.config().safety.tick_period);
    assert!(
        rig.now().since(cut) <= limit,
        "motor off after {:?}",
        rig.now().since(cut)
    );
    assert!(ctrl.telemetry().faults.contains(Fault::HostTimeout));
}

#[test]
fn late_tick_latches_control_overrun() {
    let (rig, mut ctrl) = running(120);
    let t = rig.now().saturating_add(Micros::from_millis(80));
    rig.advance_to(t);
    ctrl.handle(Command::Heartbeat).unwrap();
    ctrl.tick(t);
    assert!(ctrl.telemetry().faults.contains(Fault::ControlOverrun));
    assert!(!rig.truth().motor_powered);
}

#[test]
fn estop_during_move_requires_homing_again() {
    let (rig, mut ctrl) = homed();
    ctrl.handle(Command::Arm {
        depth: Micrometers(2_000),
        rate: MilliHertz::from_hz(100),
        ceiling: Micrometers(2_500),
        max_run: Micros(u64::MAX),
        max_strokes: u32::MAX,
    })
    .unwrap();
    rig.run(&mut ctrl, Micros::from_millis(50), |_| false);
    assert!(ctrl.telemetry().depth_moving);
    rig.inject(Injection::EStop(true));
    tick(&rig, &mut ctrl);
    assert_eq!(ctrl.state(), State::EStop);
    assert!(!ctrl.telemetry().homed);
    assert_eq!(
        ctrl.handle(Command::ClearFaults),
        Err(needle_core::Rejected::CauseStillPresent(Fault::EStop))
    );
    rig.inject(Injection::EStop(false));
    tick(&rig, &mut ctrl);
    assert_eq!(ctrl.state(), State::Fault);
    ctrl.handle(Command::ClearFaults).unwrap();
    assert_eq!(ctrl.state(), State::Boot);
}

#[test]
fn disarm_during_a_depth_move_stops_the_axis() {
    let (rig, mut ctrl) = homed();
    ctrl.handle(Command::Arm {
        depth: Micrometers(2_000),
        rate: MilliHertz::from_hz(100),
        ceiling: Micrometers(2_500),
        max_run: Micros(u64::MAX),
        max_strokes: u32::MAX,
    })
    .unwrap();
    rig.run(&mut ctrl, Micros::from_millis(50), |_| false);
    assert!(ctrl.telemetry().depth_moving);
    let at_disarm = rig.truth().depth_um;
    ctrl.handle(Command::Disarm).unwrap();
    // The host goes quiet right after: nothing may carry the needles on to the old target.
    rig.inject(Injection::HostSilence(true));
    rig.run(&mut ctrl, Micros::from_millis(500), |_| false);
    let pulses = rig.truth().step_pulses;
    rig.run(&mut ctrl, Micros::from_millis(500), |_| false);
    let truth = rig.truth();
    assert_eq!(
        truth.step_pulses, pulses,
        "axis still stepping after Disarm"
    );
    // The axis brakes along its deceleration ramp: at this point of the move, well under
    // 100 um more.
    assert!(
        truth.depth_um <= at_disarm + 100.0,
        "disarmed at {at_disarm:.0} um, axis went on to {:.0} um",
        truth.depth_um
    );
    assert!(!truth.motor_powered);
}

#[test]
fn fault_clears_only_when_cause_gone_and_motor_needs_new_start() {
    let (rig, mut ctrl) = running(120);
    rig.inject(Injection::Overheat(90.0));
    tick(&rig, &mut ctrl);
    assert_eq!(
        ctrl.handle(Command::ClearFaults),
        Err(needle_core::Rejected::CauseStillPresent(
            Fault::OverTemperature
        ))
    );
    rig.inject(Injection::Overheat(30.0));
    tick(&rig, &mut ctrl);
    ctrl.handle(Command::ClearFaults).unwrap();
    assert_eq!(ctrl.state(), State::Idle);
    rig.run(&mut ctrl, Micros::from_millis(100), |_| false);
    assert!(!rig.truth().motor_powered);
}

fn arm_with_limits(rig: &SimRig, ctrl: &mut Ctrl, max_run: Micros, max_strokes: u32) {
    ctrl.handle(Command::Arm {
        depth: Micrometers(1_000),
        rate: MilliHertz::from_hz(120),
        ceiling: Micrometers(2_500),
        max_run,
        max_strokes,
    })
    .unwrap();
    settle(rig, ctrl);
}

#[test]
fn arming_run_time_and_stroke_limits_stop_the_motor_in_the_core() {
    // Run time: 300 ms of motor time, split by a pause that does not count. The host keeps
    // the dead-man fed and never stops the motor itself.
    let (rig, mut ctrl) = homed();
    let period = ctrl.config().safety.tick_period;
    arm_with_limits(&rig, &mut ctrl, Micros::from_millis(300), u32::MAX);
    let mut powered = Micros::ZERO;
    let mut count = |rig: &SimRig| {
        if rig.truth().motor_powered {
            powered = powered.saturating_add(period);
        }
    };
    ctrl.handle(Command::Start).unwrap();
    rig.run(&mut ctrl, Micros::from_millis(100), |_| {
        count(&rig);
        false
    });
    ctrl.handle(Command::Pause).unwrap();
    rig.run(&mut ctrl, Micros::from_millis(200), |_| false);
    ctrl.handle(Command::Start).unwrap();
    rig.run(&mut ctrl, Micros::from_millis(2_000), |_| {
        count(&rig);
        false
    });
    assert!(!rig.truth().motor_powered);
    assert!(
        powered <= Micros::from_millis(301) && powered >= Micros::from_millis(298),
        "motor powered for {powered:?}"
    );
    let t = ctrl.telemetry();
    assert_eq!(t.state, State::Idle);
    assert_eq!(t.arming_ended_by, Some(needle_core::ArmingLimit::RunTime));
    assert_eq!(
        ctrl.handle(Command::Start),
        Err(needle_core::Rejected::WrongState(State::Idle))
    );

    // Strokes: 30, counted by the rig's truth up to the moment the motor loses power.
    let (rig, mut ctrl) = homed();
    arm_with_limits(&rig, &mut ctrl, Micros(u64::MAX), 30);
    let start = rig.truth().strokes;
    ctrl.handle(Command::Start).unwrap();
    rig.run(&mut ctrl, Micros::from_millis(2_000), |_| {
        !rig.truth().motor_powered
    });
    let truth = rig.truth();
    assert!(!truth.motor_powered, "motor still running");
    assert!(
        truth.strokes - start <= 30 && truth.strokes - start >= 29,
        "{} strokes made",
        truth.strokes - start
    );
    assert_eq!(
        ctrl.telemetry().arming_ended_by,
        Some(needle_core::ArmingLimit::Strokes)
    );
    assert_eq!(ctrl.state(), State::Idle);
}

#[test]
fn pedal_starts_and_pauses() {
    let (rig, mut ctrl) = homed();
    arm(&rig, &mut ctrl, 500, MilliHertz::from_hz(100));
    rig.inject(Injection::Pedal(true));
    rig.run(&mut ctrl, Micros::from_millis(300), |_| false);
    assert_eq!(ctrl.state(), State::Running);
    assert!(rig.truth().motor_powered);
    rig.inject(Injection::Pedal(false));
    tick(&rig, &mut ctrl);
    assert_eq!(ctrl.state(), State::Paused);
    assert!(!rig.truth().motor_powered);
}

#[test]
fn depth_change_while_running_is_rate_limited_and_capped_by_ceiling() {
    let (rig, mut ctrl) = homed();
    let ceiling = Micrometers(1_500);
    ctrl.handle(Command::Arm {
        depth: Micrometers(500),
        rate: MilliHertz::from_hz(120),
        ceiling,
        max_run: Micros(u64::MAX),
        max_strokes: u32::MAX,
    })
    .unwrap();
    settle(&rig, &mut ctrl);
    ctrl.handle(Command::Start).unwrap();
    assert_eq!(
        ctrl.handle(Command::SetDepth(Micrometers(1_501))),
        Err(needle_core::Rejected::DepthOutOfRange)
    );
    ctrl.handle(Command::SetDepth(Micrometers(1_500))).unwrap();
    let speed = f64::from(ctrl.config().depth.running_speed_um_per_s);
    let mut peak: f64 = 0.0;
    let mut fastest: f64 = 0.0;
    let mut window_start = (rig.now(), rig.truth().depth_um);
    let mut ticks = 0;
    while ctrl.telemetry().depth_moving || ticks == 0 {
        tick(&rig, &mut ctrl);
        ticks += 1;
        let depth = rig.truth().depth_um;
        peak = peak.max(depth);
        let elapsed = rig.now().since(window_start.0);
        if elapsed >= Micros::from_millis(100) {
            fastest = fastest.max((depth - window_start.1).abs() / (elapsed.0 as f64 * 1e-6));
            window_start = (rig.now(), depth);
        }
        assert!(ticks < 10_000, "move never finished");
    }
    assert!(
        fastest <= speed * 1.05,
        "moved at {fastest:.0} um/s, running speed {speed}"
    );
    assert!(fastest >= speed * 0.8, "moved at only {fastest:.0} um/s");
    assert!(peak <= 1_500.0 + 2.5, "passed the ceiling: {peak:.1} um");
    assert_eq!(ctrl.state(), State::Running);
}

/// The controller stops ticking (a SIGKILLed or hung process) with the motor running: no
/// more ticks, no Drop, the enable line left high.
fn freeze_while_running(params: SimParams) -> (SimRig, Micros) {
    let rig = SimRig::new(params);
    rig.inject(Injection::Cartridge(true));
    let mut ctrl = Controller::new(rig.hardware(), ControllerConfig::default()).unwrap();
    ctrl.tick(rig.now());
    ctrl.handle(Command::Home).unwrap();
    rig.run(&mut ctrl, Micros::from_millis(5_000), |c| {
        c.state() == State::Idle
    });
    arm(&rig, &mut ctrl, 1_000, MilliHertz::from_hz(120));
    ctrl.handle(Command::Start).unwrap();
    rig.run(&mut ctrl, Micros::from_millis(400), |_| false);
    assert!(rig.truth().motor_powered);
    let last_tick = rig.now();
    std::mem::forget(ctrl);
    (rig, last_tick)
}

#[test]
fn frozen_controller_loses_motor_power_within_the_charge_pump_time() {
    let hold = SimParams::default().charge_pump_hold.unwrap();
    let (rig, last_tick) = freeze_while_running(SimParams::default());
    rig.advance_to(last_tick.saturating_add(Micros::from_millis(50)));
    let truth = rig.truth();
    assert!(!truth.motor_powered && !truth.driver_enabled);
    let off = truth.motor_off_at.expect("the motor went off");
    assert!(
        off > last_tick.saturating_sub(Micros::from_millis(1))
            && off <= last_tick.saturating_add(hold),
        "last tick at {last_tick:?}, motor off at {off:?}"
    );
    // The enable line is still high: the charge pump alone took the power away.
    use embedded_hal::digital::InputPin;
    assert!(rig.hardware().motor_enable.is_high().unwrap());
    // And the needles stop.
    rig.advance_to(last_tick.saturating_add(Micros::from_millis(500)));
    assert!(rig.truth().rate_hz < 1.0, "{:?}", rig.truth());
}

#[test]
fn frozen_controller_without_charge_pump_circuit_leaves_the_motor_running() {
    let (rig, last_tick) = freeze_while_running(SimParams {
        charge_pump_hold: None,
        ..SimParams::default()
    });
    rig.advance_to(last_tick.saturating_add(Micros::from_millis(500)));
    assert!(rig.truth().motor_powered);
    assert!(rig.truth().rate_hz > 50.0);
}

#[test]
fn live_controller_keeps_the_charge_pump_alive_every_tick() {
    let (rig, mut ctrl) = running(120);
    for _ in 0..1_000 {
        tick(&rig, &mut ctrl);
        assert!(rig.truth().driver_enabled, "{:?}", rig.truth());
        assert!(rig.truth().motor_powered);
    }
    assert_eq!(ctrl.state(), State::Running);
}
