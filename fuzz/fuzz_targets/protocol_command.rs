//! The protocol decoder: `postcard::from_bytes::<needle_core::Command>`, as a microcontroller
//! build of the core would decode commands from the host over a serial link.
//!
//! Properties: decoding never panics; a decoded command re-encodes and decodes to itself; and a
//! stream of decoded commands fed to a controller on the simulated rig, one tick apart, never
//! panics the core and never leaves the motor powered outside `Running` (judged by the rig's
//! truth).
#![no_main]

use libfuzzer_sys::fuzz_target;
use needle_core::units::Micros;
use needle_core::{Command, Controller, ControllerConfig, State};
use needle_sim::{Injection, SimParams, SimRig};

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = postcard::from_bytes::<Command>(data) {
        let bytes = postcard::to_allocvec(&cmd).expect("encode");
        assert_eq!(
            postcard::from_bytes::<Command>(&bytes).ok(),
            Some(cmd),
            "round trip"
        );
    }
    let rig = SimRig::new(SimParams::default());
    rig.inject(Injection::Cartridge(true));
    let Ok(mut ctrl) = Controller::new(rig.hardware(), ControllerConfig::default()) else {
        panic!("the default configuration is refused")
    };
    let period = ctrl.config().safety.tick_period;
    let mut now = Micros(0);
    ctrl.tick(now);
    let mut rest = data;
    for _ in 0..64 {
        let Ok((cmd, tail)) = postcard::take_from_bytes::<Command>(rest) else {
            break;
        };
        rest = tail;
        let _ = ctrl.handle(cmd);
        // A few ticks per command, so moves and the motor get going.
        for _ in 0..4 {
            now = now.saturating_add(period);
            rig.advance_to(now);
            ctrl.tick(now);
            assert!(
                !rig.truth().motor_powered || ctrl.state() == State::Running,
                "motor powered in {:?} after {cmd:?}",
                ctrl.state()
            );
        }
    }
});
