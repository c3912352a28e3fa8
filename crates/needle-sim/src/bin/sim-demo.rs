//! A demonstration on the simulated rig, in virtual time: home, arm at 1.2 mm and 120 Hz,
//! run for a second, press the E-stop, clear. Prints the controller's telemetry beside the
//! rig's truth every 100 ms.

use needle_core::units::{Micrometers, Micros, MilliHertz};
use needle_core::{Command, Controller, ControllerConfig, State};
use needle_sim::{Injection, SimHardware, SimParams, SimRig};

fn main() {
    let rig = SimRig::new(SimParams::default());
    rig.inject(Injection::Cartridge(true));
    let mut ctrl = match Controller::new(rig.hardware(), ControllerConfig::default()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sim-demo: invalid configuration: {e}");
            std::process::exit(2);
        }
    };
    ctrl.tick(rig.now());
    println!(
        "{:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>7} {:>6}",
        "t_ms", "state", "rate_set", "rate_meas", "rate_true", "depth_um", "true_um", "duty%"
    );
    let step =
        |ctrl: &mut Controller<SimHardware>, what: &str, command: Option<Command>, ms: u64| {
            if let Some(c) = command {
                if let Err(e) = ctrl.handle(c) {
                    eprintln!("sim-demo: {what} refused: {e:?}");
                    std::process::exit(1);
                }
            }
            println!("-- {what}");
            for _ in 0..ms / 100 {
                rig.run(ctrl, Micros::from_millis(100), |_| false);
                let t = ctrl.telemetry();
                let truth = rig.truth();
                println!(
                    "{:>8} {:>8} {:>9.1} {:>9.1} {:>9.1} {:>9} {:>7.0} {:>6.1}",
                    t.now.as_millis(),
                    format!("{:?}", t.state),
                    f64::from(t.rate_setpoint.0) / 1000.0,
                    f64::from(t.rate_measured.0) / 1000.0,
                    truth.rate_hz,
                    t.depth_position.0,
                    truth.depth_um,
                    f64::from(t.duty.0) / 100.0,
                );
            }
        };
    step(&mut ctrl, "home", Some(Command::Home), 1_500);
    let arm = Command::Arm {
        depth: Micrometers(1_200),
        rate: MilliHertz::from_hz(120),
        ceiling: Micrometers(1_500),
        max_run: Micros(u64::MAX),
        max_strokes: u32::MAX,
    };
    step(&mut ctrl, "arm 1.2 mm, 120 Hz", Some(arm), 500);
    step(&mut ctrl, "start", Some(Command::Start), 1_000);
    step(
        &mut ctrl,
        "rate 150 Hz",
        Some(Command::SetRate(MilliHertz::from_hz(150))),
        500,
    );
    rig.inject(Injection::EStop(true));
    step(&mut ctrl, "E-stop pressed", None, 200);
    rig.inject(Injection::EStop(false));
    step(&mut ctrl, "E-stop released, clear faults", None, 100);
    step(&mut ctrl, "cleared", Some(Command::ClearFaults), 100);
    let ok = ctrl.state() == State::Idle && !rig.truth().motor_powered;
    println!(
        "final state {:?}, motor powered: {}",
        ctrl.state(),
        rig.truth().motor_powered
    );
    std::process::exit(if ok { 0 } else { 1 });
}
