//! The pen's firmware, host build: [`needle_pen::Pen`] against needle-sim's physics, talking
//! the link over a serial device, with the rig's truth on a Unix socket for the jig.
//!
//! ```text
//! needle-pen --pty /tmp/pen.tty --truth /tmp/pen.truth [--pen-id PEN00001]
//! needle-pen --device /dev/ttyUSB0 --baud 1000000 --truth /tmp/pen.truth
//! ```
//!
//! With `--pty` the pen makes a pseudo-terminal and links its device path at the given name,
//! as a USB-CDC pen appears as `/dev/ttyACM0`: the host opens that path. The pen keeps
//! ticking when the host goes away; its dead-man stops the needles. The main loop asks for
//! SCHED_FIFO real-time priority where the system grants it: an MCU's main loop is never
//! preempted for long, and a starved host build would judge the host late for its own delay.
//!
//! The truth socket answers one JSON request a line, with one JSON line:
//! `{"op":"truth"}`, `{"op":"inject","what":"cartridge","on":true}` (`estop`, `pedal`,
//! `jam`, `cartridge`; a seated cartridge may carry `"tag_hex"`, its tag's EEPROM image, and
//! its authenticator chip: `"chip_secret_hex"` (a genuine chip's private key),
//! `"replay_answer_hex"` (a forger's part replaying one recorded answer) or neither (a
//! memory-only copy, which answers no chip command), and `"counter"`, its use counter; a
//! pulled cartridge's answer carries its chip's counter, `"chip_counter"`;
//! `host_link` cuts the serial line both ways while on, as a relay in the wire would),
//! `{"op":"ticks_between","after":µs,"until":µs}`. An injection answers the pen's clock when
//! it took effect, `at_us`.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use needle_core::units::Micros;
use needle_core::Telemetry;
use needle_link::{ChipAnswer, ChipCommand, Counters, PenId};
use needle_pen::{Chip, Pen};
use needle_sim::{Injection, SimParams, SimRig};
use nix::errno::Errno;
use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sys::stat::Mode;
use nix::sys::termios::{self, BaudRate, SetArg};
use nix::sys::time::TimeSpec;
use nix::time::{clock_gettime, clock_nanosleep, ClockId, ClockNanosleepFlags};
use serde_json::{json, Value};

struct Args {
    pty: Option<PathBuf>,
    device: Option<PathBuf>,
    baud: u32,
    truth: PathBuf,
    pen: PenId,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        pty: None,
        device: None,
        baud: 1_000_000,
        truth: PathBuf::from("needle-pen.truth"),
        pen: PenId(*b"PEN00001"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--pty" => args.pty = Some(value()?.into()),
            "--device" => args.device = Some(value()?.into()),
            "--truth" => args.truth = value()?.into(),
            "--baud" => args.baud = value()?.parse().map_err(|e| format!("--baud: {e}"))?,
            "--pen-id" => {
                let id = value()?;
                let bytes = id.as_bytes();
                let mut serial = [b' '; 8];
                if bytes.len() > 8 {
                    return Err("--pen-id: at most 8 characters".into());
                }
                serial[..bytes.len()].copy_from_slice(bytes);
                args.pen = PenId(serial);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.pty.is_some() == args.device.is_some() {
        return Err("give one of --pty PATH or --device PATH".into());
    }
    Ok(args)
}

fn baud(rate: u32) -> Result<BaudRate, String> {
    Ok(match rate {
        115_200 => BaudRate::B115200,
        230_400 => BaudRate::B230400,
        460_800 => BaudRate::B460800,
        921_600 => BaudRate::B921600,
        1_000_000 => BaudRate::B1000000,
        2_000_000 => BaudRate::B2000000,
        other => return Err(format!("unsupported baud rate {other}")),
    })
}

/// Raw 8N1 at `rate`, non-blocking.
fn make_raw(fd: impl AsFd + Copy, rate: BaudRate) -> nix::Result<()> {
    let mut t = termios::tcgetattr(fd)?;
    termios::cfmakeraw(&mut t);
    termios::cfsetspeed(&mut t, rate)?;
    termios::tcsetattr(fd, SetArg::TCSANOW, &t)?;
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// The serial port: the fd the pen reads and writes, and what must stay open with it.
struct Port {
    io: OwnedFd,
    _keep: Option<OwnedFd>,
}

fn open_port(args: &Args) -> Result<Port, String> {
    let rate = baud(args.baud)?;
    if let Some(link) = &args.pty {
        let pty = nix::pty::openpty(None, None).map_err(|e| format!("openpty: {e}"))?;
        // Settings live on the slave; the pen keeps it open so they hold between hosts.
        make_raw(&pty.slave, rate).map_err(|e| format!("pty slave: {e}"))?;
        make_raw(&pty.master, rate).map_err(|e| format!("pty master: {e}"))?;
        let path = nix::unistd::ttyname(&pty.slave).map_err(|e| format!("ttyname: {e}"))?;
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(&path, link)
            .map_err(|e| format!("link {} -> {}: {e}", link.display(), path.display()))?;
        return Ok(Port {
            io: pty.master,
            _keep: Some(pty.slave),
        });
    }
    let device = args.device.as_deref().ok_or("no device")?;
    let fd = open(device, OFlag::O_RDWR | OFlag::O_NOCTTY, Mode::empty())
        .map_err(|e| format!("{}: {e}", device.display()))?;
    make_raw(&fd, rate).map_err(|e| format!("{}: {e}", device.display()))?;
    Ok(Port {
        io: fd,
        _keep: None,
    })
}

fn monotonic() -> Micros {
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(Micros::ZERO, |ts| {
        Micros(ts.tv_sec() as u64 * 1_000_000 + ts.tv_nsec() as u64 / 1_000)
    })
}

fn sleep_until(deadline: Micros) {
    let ts = TimeSpec::new(
        (deadline.0 / 1_000_000) as i64,
        ((deadline.0 % 1_000_000) * 1_000) as i64,
    );
    let _ = clock_nanosleep(
        ClockId::CLOCK_MONOTONIC,
        ClockNanosleepFlags::TIMER_ABSTIME,
        &ts,
    );
}

/// What the firmware shows the jig beside the rig's truth (the pen's own view, labelled so).
#[derive(Default, Clone)]
struct PenView {
    ticks: u64,
    last_host_frame: Option<Micros>,
    last_refresh: Option<Micros>,
    telemetry: Option<Telemetry>,
    counters: Counters,
    tx_dropped: u32,
    config_hash: Option<u32>,
}

/// The seated cartridge's tag image, as the jig seated it.
type TagSlot = Mutex<Option<Vec<u8>>>;

/// The seated cartridge's authenticator chip, as the jig seated it.
#[derive(Debug, Clone)]
struct SeatedChip {
    /// A genuine chip's private key.
    secret: Option<[u8; 32]>,
    /// What a forger's part answers every challenge with instead.
    replay: Option<[u8; 64]>,
    /// The monotonic use counter.
    counter: u32,
}

impl SeatedChip {
    /// Runs `command` as the part would; a part without a key answers nothing.
    fn run(&mut self, command: ChipCommand) -> ChipAnswer {
        let halves = |sig: [u8; 64]| {
            let (r, s) = sig.split_at(32);
            match (r.try_into(), s.try_into()) {
                (Ok(r), Ok(s)) => ChipAnswer::Signed { r, s },
                _ => ChipAnswer::NoAnswer,
            }
        };
        match (command, self.secret) {
            (ChipCommand::Sign(nonce), Some(secret)) => {
                needle_sim::chip::sign(&secret, &nonce).map_or(ChipAnswer::NoAnswer, halves)
            }
            (ChipCommand::Sign(_), None) => self.replay.map_or(ChipAnswer::NoAnswer, halves),
            (ChipCommand::ReadCounter, Some(_)) => ChipAnswer::Counter(self.counter),
            // A real counter stops at its limit (an execution error), never wraps.
            (ChipCommand::AdvanceCounter, Some(_)) => match self.counter.checked_add(1) {
                Some(n) => {
                    self.counter = n;
                    ChipAnswer::Counter(n)
                }
                None => ChipAnswer::Status(0x0F),
            },
            (_, None) => ChipAnswer::NoAnswer,
        }
    }
}

/// How long the simulated chip takes: an ATECC608's Sign is about 50 ms, a Counter about
/// 20 ms (datasheet maxima), many pen ticks.
fn chip_time(command: ChipCommand) -> std::time::Duration {
    std::time::Duration::from_millis(match command {
        ChipCommand::Sign(_) => 50,
        ChipCommand::ReadCounter | ChipCommand::AdvanceCounter => 20,
    })
}

/// The pen's chip driver in the host build: commands run on a worker thread, as an MCU's
/// I2C transfer runs beside the main loop, so the tick never waits for the chip.
struct SimChipDriver {
    work: std::sync::mpsc::Sender<ChipCommand>,
    done: std::sync::mpsc::Receiver<ChipAnswer>,
}

impl SimChipDriver {
    fn spawn(wires: Arc<Wires>) -> Self {
        let (work, jobs) = std::sync::mpsc::channel::<ChipCommand>();
        let (answers, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for command in jobs {
                std::thread::sleep(chip_time(command));
                let answer = match wires
                    .chip
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_mut()
                {
                    Some(chip) => chip.run(command),
                    None => ChipAnswer::NoAnswer,
                };
                if answers.send(answer).is_err() {
                    return;
                }
            }
        });
        Self { work, done }
    }
}

impl Chip for SimChipDriver {
    fn start(&mut self, command: ChipCommand) -> Result<(), ChipAnswer> {
        self.work.send(command).map_err(|_| ChipAnswer::NoAnswer)
    }

    fn poll(&mut self) -> Option<ChipAnswer> {
        self.done.try_recv().ok()
    }
}

/// What the jig works besides the rig's physics.
#[derive(Default)]
struct Wires {
    /// The seated cartridge's tag image.
    tag: TagSlot,
    /// The seated cartridge's chip.
    chip: Mutex<Option<SeatedChip>>,
    /// Whether the serial line is cut.
    cut: AtomicBool,
}

fn from_hex(hex: &str) -> Option<Vec<u8>> {
    let hex = hex.as_bytes();
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

/// The chip of a cartridge seating request: `None` with no tag (no cartridge part at all).
fn seated_chip(request: &Value) -> Result<Option<SeatedChip>, String> {
    if request["tag_hex"].as_str().is_none() {
        return Ok(None);
    }
    let bytes = |key: &str| -> Result<Option<Vec<u8>>, String> {
        match request[key].as_str() {
            None => Ok(None),
            Some(hex) => from_hex(hex).map(Some).ok_or(format!("{key}: not hex")),
        }
    };
    let secret = match bytes("chip_secret_hex")? {
        None => None,
        Some(b) => Some(<[u8; 32]>::try_from(b).map_err(|_| "chip_secret_hex: 32 bytes")?),
    };
    let replay = match bytes("replay_answer_hex")? {
        None => None,
        Some(b) => Some(<[u8; 64]>::try_from(b).map_err(|_| "replay_answer_hex: 64 bytes")?),
    };
    if secret.is_some() && replay.is_some() {
        return Err("give chip_secret_hex or replay_answer_hex, not both".into());
    }
    let counter = match request["counter"].as_u64() {
        None => 0,
        Some(n) => u32::try_from(n).map_err(|_| "counter: at most 2^32 - 1")?,
    };
    Ok(Some(SeatedChip {
        secret,
        replay,
        counter,
    }))
}

fn answer(rig: &SimRig, view: &Mutex<PenView>, wires: &Wires, request: &str) -> Value {
    let request: Value = match serde_json::from_str(request) {
        Ok(v) => v,
        Err(e) => return json!({ "error": format!("bad request: {e}") }),
    };
    match request["op"].as_str() {
        Some("truth") => {
            let t = rig.truth();
            let v = view.lock().unwrap_or_else(|p| p.into_inner()).clone();
            json!({
                "pen_time_us": t.now.0,
                "rig_ticks": rig.ticks(),
                "motor_powered": t.motor_powered,
                "motor_off_at_us": t.motor_off_at.map(|m| m.0),
                "duty": t.duty,
                "rate_hz": t.rate_hz,
                "strokes": t.strokes,
                "depth_um": t.depth_um,
                "cartridge": rig.cartridge_seated(),
                "pen": {
                    "ticks": v.ticks,
                    "last_host_frame_us": v.last_host_frame.map(|m| m.0),
                    "last_refresh_us": v.last_refresh.map(|m| m.0),
                    "config_hash": v.config_hash,
                    "telemetry": v.telemetry,
                    "link": v.counters,
                    "tx_dropped": v.tx_dropped,
                },
            })
        }
        Some("inject") => {
            let on = request["on"].as_bool().unwrap_or(true);
            let injection = match request["what"].as_str() {
                Some("cartridge") => {
                    let image = request["tag_hex"].as_str().and_then(from_hex);
                    let chip = match seated_chip(&request) {
                        Ok(chip) => chip,
                        Err(e) => return json!({ "error": e }),
                    };
                    *wires.tag.lock().unwrap_or_else(|p| p.into_inner()) = image.filter(|_| on);
                    let pulled = std::mem::replace(
                        &mut *wires.chip.lock().unwrap_or_else(|p| p.into_inner()),
                        chip.filter(|_| on),
                    );
                    let at = rig.inject(Injection::Cartridge(on));
                    return json!({
                        "at_us": at.0,
                        "chip_counter": pulled.filter(|_| !on).map(|c| c.counter),
                    });
                }
                Some("host_link") => {
                    wires.cut.store(on, Ordering::Release);
                    return json!({ "at_us": rig.truth().now.0 });
                }
                Some("estop") => Injection::EStop(on),
                Some("pedal") => Injection::Pedal(on),
                Some("jam") => Injection::Jam(on),
                other => return json!({ "error": format!("unknown injection {other:?}") }),
            };
            json!({ "at_us": rig.inject(injection).0 })
        }
        Some("ticks_between") => {
            let after = Micros(request["after"].as_u64().unwrap_or(0));
            let until = Micros(request["until"].as_u64().unwrap_or(u64::MAX));
            json!({ "ticks": rig.ticks_between(after, until) })
        }
        other => json!({ "error": format!("unknown op {other:?}") }),
    }
}

fn serve_truth(listener: UnixListener, rig: SimRig, view: Arc<Mutex<PenView>>, wires: Arc<Wires>) {
    for stream in listener.incoming().flatten() {
        let rig = rig.clone();
        let view = Arc::clone(&view);
        let wires = Arc::clone(&wires);
        std::thread::spawn(move || serve_client(stream, &rig, &view, &wires));
    }
}

fn serve_client(stream: UnixStream, rig: &SimRig, view: &Mutex<PenView>, wires: &Wires) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        let reply = answer(rig, view, wires, &line);
        if writeln!(out, "{reply}").is_err() {
            return;
        }
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("needle-pen: {e}");
            std::process::exit(2);
        }
    };
    let port = match open_port(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("needle-pen: {e}");
            std::process::exit(1);
        }
    };
    // The host build runs the sim against this machine's wall clock without real-time
    // scheduling: the charge-pump monostable lasts the core's default max_tick_gap (50 ms), as
    // in needled's sim, so a scheduling hiccup the controller tolerates does not cut the motor.
    // A pen that stops ticking still loses motor power within it.
    let rig = SimRig::new(SimParams {
        charge_pump_hold: Some(Micros::from_millis(50)),
        ..SimParams::default()
    });
    let view = Arc::new(Mutex::new(PenView::default()));
    let _ = std::fs::remove_file(&args.truth);
    let listener = match UnixListener::bind(&args.truth) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("needle-pen: truth socket {}: {e}", args.truth.display());
            std::process::exit(1);
        }
    };
    let wires = Arc::new(Wires::default());
    {
        let (rig, view, wires) = (rig.clone(), Arc::clone(&view), Arc::clone(&wires));
        std::thread::spawn(move || serve_truth(listener, rig, view, wires));
    }
    realtime();
    eprintln!("needle-pen: ready");
    let chip = SimChipDriver::spawn(Arc::clone(&wires));
    run(
        &port.io,
        &rig,
        &view,
        &wires,
        Pen::with_chip(rig.hardware(), args.pen, chip),
    );
}

/// Asks for SCHED_FIFO (priority 50, as needled's control thread) for this thread.
fn realtime() {
    use thread_priority::{
        set_thread_priority_and_policy, thread_native_id, RealtimeThreadSchedulePolicy,
        ThreadPriority, ThreadSchedulePolicy,
    };
    let policy = ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo);
    let level = 50u8.try_into().map(ThreadPriority::Crossplatform);
    match level.map(|l| set_thread_priority_and_policy(thread_native_id(), l, policy)) {
        Ok(Ok(())) => eprintln!("needle-pen: main loop at SCHED_FIFO priority 50"),
        _ => eprintln!("needle-pen: no real-time priority; running at normal priority"),
    }
}

/// The firmware's main loop: the pen's clock is the rig's (time since power-up).
fn run(
    io: &OwnedFd,
    rig: &SimRig,
    view: &Mutex<PenView>,
    wires: &Wires,
    mut pen: Pen<needle_sim::SimHardware, SimChipDriver>,
) -> ! {
    let start = monotonic();
    // The pen's clock is CLOCK_MONOTONIC minus this: a host on the same machine (link_rtt)
    // knows the true relation and can measure its clock fit's error against it.
    eprintln!("needle-pen: clock origin {} us of CLOCK_MONOTONIC", start.0);
    let mut deadline = start;
    let mut buf = [0u8; 4096];
    loop {
        let period = pen.tick_period();
        deadline = deadline.saturating_add(period);
        sleep_until(deadline);
        let wake = monotonic();
        if wake.since(deadline) > period {
            // A whole period lost (a busy machine): re-anchor rather than burst; the
            // controller sees the gap and judges it (`ControlOverrun`).
            deadline = wake;
        }
        let now = wake.since(start);
        rig.tick_to(now);
        // As an MCU's main reads the EEPROM when the cartridge switch closes.
        pen.seat_tag(
            wires
                .tag
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_deref(),
        );
        let cut = wires.cut.load(Ordering::Acquire);
        loop {
            match nix::unistd::read(io, &mut buf) {
                Ok(0) | Err(_) => break,
                // A cut line: what the host sent never arrives.
                Ok(_) if cut => {}
                Ok(n) => pen.receive(buf.get(..n).unwrap_or(&[]), now),
            }
        }
        pen.tick(now);
        if cut {
            // Nor does what the pen sends.
            let n = pen.pending().len();
            pen.consume(n);
        }
        while !pen.pending().is_empty() {
            match nix::unistd::write(io, pen.pending()) {
                Ok(n) => pen.consume(n),
                Err(Errno::EINTR) => {}
                // EAGAIN: the line is full; the rest goes next tick. EIO: no host.
                Err(_) => break,
            }
        }
        let mut v = view.lock().unwrap_or_else(|p| p.into_inner());
        v.ticks = pen.ticks();
        v.last_host_frame = pen.last_host_frame();
        v.last_refresh = pen.last_refresh();
        v.telemetry = pen.controller().map(|c| c.telemetry());
        v.counters = pen.link().counters();
        v.tx_dropped = pen.link().tx_dropped();
        v.config_hash = pen.config_hash();
    }
}
