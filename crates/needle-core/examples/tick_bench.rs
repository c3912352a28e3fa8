//! The cost of one `Controller::tick` with trivial in-memory pins, so the figure is the
//! core's own. Run under callgrind by `scripts/bench-tick.sh`, which takes the difference of
//! two run lengths so that start-up cancels out.
//!
//! Usage: `tick_bench <running|faulted|homing|idle> <ticks>`. Prints the heap allocations
//! made during the measured ticks (there must be none).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use embedded_hal::digital::{ErrorType as PinErrorType, InputPin, OutputPin};
use embedded_hal::pwm::{ErrorType as PwmErrorType, SetDutyCycle};
use needle_core::hal::{Analog, ErrorType, Hardware, Parts, StrokeSample, StrokeSensor};
use needle_core::units::{Micrometers, Micros, MilliHertz};
use needle_core::{Command, Controller, ControllerConfig, State};

struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged, only counting calls.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One in-memory pin or channel: a plain value, read and written without any locking.
#[derive(Default)]
struct Cellish {
    level: Cell<bool>,
    value: Cell<i32>,
    sample: Cell<StrokeSample>,
}

struct P<'a>(&'a Cellish);

impl PinErrorType for P<'_> {
    type Error = Infallible;
}
impl PwmErrorType for P<'_> {
    type Error = Infallible;
}
impl ErrorType for P<'_> {
    type Error = Infallible;
}
impl InputPin for P<'_> {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(self.0.level.get())
    }
    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(!self.0.level.get())
    }
}
impl OutputPin for P<'_> {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.0.level.set(false);
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        self.0.level.set(true);
        Ok(())
    }
}
impl SetDutyCycle for P<'_> {
    fn max_duty_cycle(&self) -> u16 {
        10_000
    }
    fn set_duty_cycle(&mut self, duty: u16) -> Result<(), Infallible> {
        self.0.value.set(i32::from(duty));
        Ok(())
    }
}
impl StrokeSensor for P<'_> {
    fn sample(&mut self) -> Result<StrokeSample, Infallible> {
        Ok(self.0.sample.get())
    }
}
impl Analog for P<'_> {
    fn read_milli(&mut self) -> Result<i32, Infallible> {
        Ok(self.0.value.get())
    }
}

struct Board<'a>([P<'a>; 13]);

impl<'a> Hardware for Board<'a> {
    type MotorPwm = P<'a>;
    type MotorEnable = P<'a>;
    type DepthStep = P<'a>;
    type DepthDir = P<'a>;
    type ChargePump = P<'a>;
    type HomeSwitch = P<'a>;
    type CartridgeSwitch = P<'a>;
    type EStop = P<'a>;
    type Pedal = P<'a>;
    type Stroke = P<'a>;
    type Current = P<'a>;
    type Temperature = P<'a>;
    type Supply = P<'a>;

    fn parts(&mut self) -> Parts<'_, Self> {
        let [pwm, en, step, dir, home, cart, estop, pedal, stroke, cur, temp, sup, pump] =
            &mut self.0;
        Parts {
            motor_pwm: pwm,
            motor_enable: en,
            depth_step: step,
            depth_dir: dir,
            charge_pump: pump,
            home_switch: home,
            cartridge_switch: cart,
            estop,
            pedal,
            stroke,
            current: cur,
            temperature: temp,
            supply: sup,
        }
    }
}

const HOME: usize = 4;
const CART: usize = 5;
const ESTOP: usize = 6;
const STROKE: usize = 8;
const CURRENT: usize = 9;
const TEMP: usize = 10;
const SUPPLY: usize = 11;

fn main() {
    let mut args = std::env::args().skip(1);
    let scenario = args.next().unwrap_or_else(|| "running".into());
    let ticks: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);

    let cells: [Cellish; 13] = Default::default();
    cells[CART].level.set(true);
    cells[CURRENT].value.set(800);
    cells[TEMP].value.set(30_000);
    cells[SUPPLY].value.set(12_000);
    let board = Board([
        P(&cells[0]),
        P(&cells[1]),
        P(&cells[2]),
        P(&cells[3]),
        P(&cells[4]),
        P(&cells[5]),
        P(&cells[6]),
        P(&cells[7]),
        P(&cells[8]),
        P(&cells[9]),
        P(&cells[10]),
        P(&cells[11]),
        P(&cells[12]),
    ]);
    let mut ctrl =
        Controller::new(board, ControllerConfig::default()).expect("default config is valid");
    let mut now = 0u64;
    let tick = |ctrl: &mut Controller<Board>, now: &mut u64| {
        *now += 1_000;
        let _ = ctrl.handle(Command::Heartbeat);
        // A motor turning at 120 Hz: one edge every 8333 us, timestamped.
        let period = 8_333;
        let edges = (*now / period) as u32;
        cells[STROKE].sample.set(StrokeSample {
            edges,
            last_edge: Some(Micros(u64::from(edges) * period)),
            last_period: Some(Micros(period)),
        });
        ctrl.tick(Micros(*now));
    };

    tick(&mut ctrl, &mut now);
    if scenario != "homing" {
        ctrl.handle(Command::Home).expect("home");
        // The switch closes at once, so homing backs off and re-approaches.
        for _ in 0..20_000 {
            let closed = ctrl.telemetry().depth_position.0 <= 0;
            cells[HOME].level.set(closed);
            tick(&mut ctrl, &mut now);
            if ctrl.state() == State::Idle {
                break;
            }
        }
        cells[HOME].level.set(false);
        assert_eq!(ctrl.state(), State::Idle, "homing in the bench failed");
    }
    match scenario.as_str() {
        "running" => {
            ctrl.handle(Command::Arm {
                depth: Micrometers(1_000),
                rate: MilliHertz::from_hz(120),
                ceiling: Micrometers(2_500),
                max_run: Micros(u64::MAX),
                max_strokes: u32::MAX,
            })
            .expect("arm");
            while ctrl.telemetry().depth_moving {
                tick(&mut ctrl, &mut now);
            }
            ctrl.handle(Command::Start).expect("start");
        }
        "faulted" => cells[ESTOP].level.set(true),
        "homing" => ctrl.handle(Command::Home).expect("home"),
        _ => {}
    }
    tick(&mut ctrl, &mut now);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..ticks {
        tick(black_box(&mut ctrl), &mut now);
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    println!(
        "scenario={scenario} ticks={ticks} state={:?} allocations={allocations}",
        ctrl.state()
    );
    assert_eq!(allocations, 0, "the tick allocated");
}
