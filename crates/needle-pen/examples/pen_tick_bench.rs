//! The pen firmware's cost per tick with the link: `Pen::receive` of what needled sends in a
//! tick, `Pen::tick` (the controller's tick and a telemetry frame), and draining the queued
//! bytes, with trivial in-memory pins. Run under callgrind by `scripts/bench-pen-tick.sh`,
//! which measures `step` and `Controller::tick` inside it, and takes the difference of two
//! run lengths so that start-up cancels out.
//!
//! Usage: `pen_tick_bench <ticks> [telemetry_every] [sync_every]` (a clock probe every
//! `sync_every` ticks, default 100: needled's `link.sync_ms = 100`). The host side (needle-link's
//! `HostLink`, as needled drives it: a clock probe every `sync_every` ticks, a heartbeat
//! command every 20) runs in the same process, outside the measured function.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use embedded_hal::digital::{ErrorType as PinErrorType, InputPin, OutputPin};
use embedded_hal::pwm::{ErrorType as PwmErrorType, SetDutyCycle};
use needle_core::hal::{Analog, ErrorType, Hardware, Parts, StrokeSample, StrokeSensor};
use needle_core::units::{Micrometers, Micros, MilliHertz};
use needle_core::{Command, ControllerConfig, State};
use needle_link::{FromPen, HostLink, PenId, Reliable};
use needle_pen::Pen;

struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Allocations made inside the pen's step (the host side may allocate; the pen must not).
static STEP_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

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
const STROKE: usize = 8;
const CURRENT: usize = 9;
const TEMP: usize = 10;
const SUPPLY: usize = 11;

/// The UART's DMA channel: what it was handed to send. It sends without the CPU, so the
/// bench copies the bytes out for the host outside `step`.
#[derive(Default)]
struct Dma {
    /// Bytes of the queue's front handed over at the last step.
    handed: usize,
}

/// One pen tick as the firmware's main loop runs it: the transfer handed to the DMA last
/// tick is done (at 1 Mbaud a tick's frames take well under a tick), so its bytes leave the
/// queue; bytes in, tick, and the queue's pending bytes handed to the DMA in place, as one
/// slice (a pointer and a length), not copied. The queue is released before anything is
/// queued, so it never moves bytes the DMA is reading.
#[inline(never)]
fn step(pen: &mut Pen<Board<'_>>, bytes: &[u8], now: Micros, dma: &mut Dma) {
    pen.consume(dma.handed);
    pen.receive(bytes, now);
    pen.tick(now);
    let pending = black_box(pen.pending());
    dma.handed = pending.len();
}

fn main() {
    let mut args = std::env::args().skip(1);
    let ticks: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let telemetry_every: u16 = args.next().and_then(|n| n.parse().ok()).unwrap_or(1);
    // needled's `link.sync_ms` at 1 kHz ticks: a clock probe every this many ticks.
    let sync_every: u64 = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100)
        .max(1);

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
    let mut pen = Pen::new(board, PenId(*b"BENCHPEN"));
    let mut host = HostLink::new(Micros(20_000));
    let mut now = 0u64;
    let mut dma = Dma::default();
    let mut tx = Vec::with_capacity(8192);
    let mut rx = Vec::with_capacity(8192);
    let mut bytes_out = 0usize;
    let mut frames_out = 0usize;
    // One tick: the host's bytes for this tick in, the pen's step, the pen's bytes to the host.
    let mut tick =
        |pen: &mut Pen<Board>, host: &mut HostLink, now: &mut u64, dma: &mut Dma| -> usize {
            *now += 1_000;
            let period = 8_333;
            let edges = (*now / period) as u32;
            cells[STROKE].sample.set(StrokeSample {
                edges,
                last_edge: Some(Micros(u64::from(edges) * period)),
                last_period: Some(Micros(period)),
            });
            let t = *now / 1_000;
            if t.is_multiple_of(sync_every) {
                host.sync(Micros(*now));
            }
            if t.is_multiple_of(20) {
                let _ = host.heartbeat();
            }
            host.poll(Micros(*now));
            tx.clear();
            while !host.pending().is_empty() {
                tx.extend_from_slice(host.pending());
                let n = host.pending().len();
                host.consume(n);
            }
            rx.clear();
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            step(black_box(pen), black_box(&tx), Micros(*now), dma);
            STEP_ALLOCATIONS.fetch_add(
                ALLOCATIONS.load(Ordering::Relaxed) - before,
                Ordering::Relaxed,
            );
            // The DMA's transfer, without the CPU: the handed bytes reach the host.
            rx.extend_from_slice(pen.pending().get(..dma.handed).unwrap_or(&[]));
            for b in &rx {
                let _ = host.receive(*b, Micros(*now));
            }
            rx.len()
        };
    // Handshake and set-up run through the same path, unmeasured by the script's difference.
    host.identify();
    let mut said = Vec::new();
    for _ in 0..5 {
        let bytes = host.pending().to_vec();
        host.consume(bytes.len());
        pen.receive(&bytes, Micros(now));
        let out = pen.pending().to_vec();
        pen.consume(out.len());
        said.extend(out.iter().filter_map(|b| host.receive(*b, Micros(now))));
    }
    let Some(FromPen::Identity { next_seq, .. }) = said.first().copied() else {
        panic!("no identity: {said:?}");
    };
    host.start(next_seq);
    let command =
        |pen: &mut Pen<Board>, host: &mut HostLink, dma: &mut Dma, message: Reliable, now: u64| {
            // Between ticks: the DMA's last transfer is done.
            pen.consume(std::mem::take(&mut dma.handed));
            host.send_reliable(message, Micros(now)).expect("window");
            let bytes = host.pending().to_vec();
            host.consume(bytes.len());
            pen.receive(&bytes, Micros(now));
            let out = pen.pending().to_vec();
            pen.consume(out.len());
            for b in out {
                let _ = host.receive(b, Micros(now));
            }
        };
    command(
        &mut pen,
        &mut host,
        &mut dma,
        Reliable::Configure {
            config: ControllerConfig::default(),
            telemetry_every,
        },
        now,
    );
    command(
        &mut pen,
        &mut host,
        &mut dma,
        Reliable::Command(Command::Home),
        now,
    );
    for _ in 0..20_000 {
        let closed = pen
            .controller()
            .is_some_and(|c| c.telemetry().depth_position.0 <= 0);
        cells[HOME].level.set(closed);
        tick(&mut pen, &mut host, &mut now, &mut dma);
        if pen.controller().is_some_and(|c| c.state() == State::Idle) {
            break;
        }
    }
    cells[HOME].level.set(false);
    let arm = Command::Arm {
        depth: Micrometers(1_000),
        rate: MilliHertz::from_hz(120),
        ceiling: Micrometers(2_500),
        max_run: Micros(u64::MAX),
        max_strokes: u32::MAX,
    };
    command(&mut pen, &mut host, &mut dma, Reliable::Command(arm), now);
    while pen.controller().is_some_and(|c| c.telemetry().depth_moving) {
        tick(&mut pen, &mut host, &mut now, &mut dma);
    }
    command(
        &mut pen,
        &mut host,
        &mut dma,
        Reliable::Command(Command::Start),
        now,
    );
    let before = STEP_ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..ticks {
        let sent = tick(&mut pen, &mut host, &mut now, &mut dma);
        bytes_out += sent;
        frames_out += usize::from(sent > 0);
    }
    let counters = host.counters();
    // Telemetry frames on the wire, with the clock and counters ten hours in (their
    // varints are then as long as a treatment day makes them): a key frame, then the delta
    // frames of the next `KEY_EVERY - 1` telemetry ticks from it, the last of which (the
    // furthest from its key) is reported. The same ticks in both run lengths, so they cancel.
    let ten_hours = |mut t: needle_core::Telemetry| {
        t.now = Micros(t.now.0 + 36_000_000_000);
        t.ticks += 36_000_000;
        t.stroke_count += 4_320_000;
        t
    };
    let snapshot =
        |pen: &Pen<Board>| ten_hours(pen.controller().map(|c| c.telemetry()).expect("configured"));
    let mut link = needle_link::PenLink::new(PenId(*b"BENCHPEN"));
    link.set_step(needle_link::telemetry::Step::of(
        Micros(1_000),
        telemetry_every,
    ));
    link.telemetry(&snapshot(&pen));
    let key_bytes = link.pending().len();
    link.consume(key_bytes);
    let mut delta_bytes = 0;
    // Delta frames before the next key: `KEY_EVERY` frames or `KEY_PERIOD`, whichever first.
    let step = 1_000 * u64::from(telemetry_every);
    let frames_per_key = u64::from(needle_link::telemetry::KEY_EVERY)
        .min(needle_link::telemetry::KEY_PERIOD.0.div_ceil(step));
    for _ in 1..frames_per_key {
        for _ in 0..telemetry_every {
            tick(&mut pen, &mut host, &mut now, &mut dma);
        }
        link.telemetry(&snapshot(&pen));
        delta_bytes = link.pending().len();
        link.consume(delta_bytes);
    }
    println!("telemetry_frame_bytes={delta_bytes} key_frame_bytes={key_bytes}");
    assert_eq!(counters.damaged(), 0);
    let allocations = STEP_ALLOCATIONS.load(Ordering::Relaxed) - before;
    let state = pen.controller().map(|c| c.state());
    println!(
        "ticks={ticks} telemetry_every={telemetry_every} state={state:?} bytes_out={bytes_out} \
         ticks_with_output={frames_out} host_frames={} retransmissions={} allocations={allocations}",
        counters.frames,
        host.retransmissions()
    );
    assert_eq!(
        state,
        Some(State::Running),
        "the bench must measure the running state"
    );
}
