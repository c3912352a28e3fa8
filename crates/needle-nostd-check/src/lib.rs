//! Proves that needle-core, needle-link and needle-pen's logic build without std: this staticlib brings its own panic handler,
//! which collides with std's if std is linked anywhere in the graph.
#![no_std]
#![deny(unsafe_code)]

use core::convert::Infallible;
use core::panic::PanicInfo;

use embedded_hal::digital::{ErrorType as PinErrorType, InputPin, OutputPin};
use embedded_hal::pwm::{ErrorType as PwmErrorType, SetDutyCycle};
use needle_core::hal::{Analog, ErrorType, Hardware, Parts, StrokeSample, StrokeSensor};
use needle_core::units::Micros;
use needle_core::{Command, Controller, ControllerConfig};
use needle_link::{config_hash, HostLink, PenId, PenLink, Received, Reliable};
use needle_pen::Pen;

/// A part that reads low and zero and accepts every write: enough to exercise the code paths.
pub struct Null;

impl PinErrorType for Null {
    type Error = Infallible;
}
impl PwmErrorType for Null {
    type Error = Infallible;
}
impl ErrorType for Null {
    type Error = Infallible;
}
impl InputPin for Null {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(false)
    }
    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(true)
    }
}
impl OutputPin for Null {
    fn set_low(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}
impl SetDutyCycle for Null {
    fn max_duty_cycle(&self) -> u16 {
        1000
    }
    fn set_duty_cycle(&mut self, _duty: u16) -> Result<(), Infallible> {
        Ok(())
    }
}
impl StrokeSensor for Null {
    fn sample(&mut self) -> Result<StrokeSample, Infallible> {
        Ok(StrokeSample::default())
    }
}
impl Analog for Null {
    fn read_milli(&mut self) -> Result<i32, Infallible> {
        Ok(0)
    }
}

/// Thirteen null parts.
pub struct Board([Null; 13]);

impl Hardware for Board {
    type MotorPwm = Null;
    type MotorEnable = Null;
    type DepthStep = Null;
    type DepthDir = Null;
    type ChargePump = Null;
    type HomeSwitch = Null;
    type CartridgeSwitch = Null;
    type EStop = Null;
    type Pedal = Null;
    type Stroke = Null;
    type Current = Null;
    type Temperature = Null;
    type Supply = Null;

    fn parts(&mut self) -> Parts<'_, Self> {
        let [a, b, c, d, e, f, g, h, i, j, k, l, m] = &mut self.0;
        Parts {
            motor_pwm: a,
            motor_enable: b,
            depth_step: c,
            depth_dir: d,
            charge_pump: m,
            home_switch: e,
            cartridge_switch: f,
            estop: g,
            pedal: h,
            stroke: i,
            current: j,
            temperature: k,
            supply: l,
        }
    }
}

fn board() -> Board {
    Board([
        Null, Null, Null, Null, Null, Null, Null, Null, Null, Null, Null, Null, Null,
    ])
}

/// Runs `ticks` ticks of the controller and returns its state's discriminant, so the whole
/// controller is compiled into this library.
pub extern "C" fn needle_check_run(ticks: u32) -> u32 {
    let Ok(mut ctrl) = Controller::new(board(), ControllerConfig::default()) else {
        return u32::MAX;
    };
    let _ = ctrl.handle(Command::Home);
    for t in 0..ticks {
        ctrl.tick(Micros(u64::from(t) * 1000));
    }
    ctrl.state() as u32
}

/// Feeds `len` bytes at `bytes` to both ends of the link and returns the frames accepted, so
/// the link's decoders, sequencing and encoders are compiled into this library.
pub extern "C" fn needle_check_link(seed: u32, len: u32) -> u32 {
    let mut pen = PenLink::new(PenId(*b"NOSTDPEN"));
    let mut host = HostLink::new(Micros(5_000));
    host.identify();
    let _ = host.send_reliable(Reliable::Command(Command::Heartbeat), Micros(0));
    let mut x = seed;
    for _ in 0..len {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let byte = (x >> 16) as u8;
        if let Some(Received::Identify) = pen.receive(byte) {
            pen.identity(Some(config_hash(&ControllerConfig::default())), Micros(0));
        }
        let _ = host.receive(byte, Micros(u64::from(x)));
    }
    if let Ok(ctrl) = Controller::new(board(), ControllerConfig::default()) {
        pen.telemetry(&ctrl.telemetry());
    }
    pen.counters().frames.wrapping_add(host.counters().frames)
}

/// Runs the pen firmware's logic for `ticks` ticks over `len` noise bytes a tick; returns the
/// frames it queued, so the dispatcher between link and core is compiled in.
pub extern "C" fn needle_check_pen(ticks: u32, seed: u32) -> u32 {
    let mut pen = Pen::new(board(), PenId(*b"NOSTDPEN"));
    let mut x = seed;
    let mut queued = 0u32;
    for t in 0..ticks {
        let mut noise = [0u8; 16];
        for b in noise.iter_mut() {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            *b = (x >> 16) as u8;
        }
        let now = Micros(u64::from(t) * 1000);
        pen.receive(&noise, now);
        pen.tick(now);
        let n = pen.pending().len();
        queued = queued.wrapping_add(n as u32);
        pen.consume(n);
    }
    queued
}

#[panic_handler]
fn panic(_info: &PanicInfo) -> ! {
    loop {}
}
