//! A host for tests: [`HostLink`] over the pen's pseudo-terminal, and a client of the pen's
//! truth socket. Real processes, real ptys.

#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use needle_core::units::Micros;
use needle_core::{Command, ControllerConfig, State, Telemetry};
use needle_link::{FromPen, HostLink, Outcome, Reliable};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::termios::{self, SetArg};
use serde_json::{json, Value};

/// Wall-clock patience for things the pen does in a few ticks: generous, so a busy machine
/// only makes the tests slower, never wrong.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A running pen process and its paths.
pub struct PenProcess {
    pub child: Child,
    pub tty: PathBuf,
    pub truth: PathBuf,
    _dir: tempdir::Dir,
}

mod tempdir {
    use std::path::PathBuf;

    /// A directory removed on drop.
    pub struct Dir(pub PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl PenProcess {
    pub fn spawn() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "needle-pen-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let tty = dir.join("pen.tty");
        let truth = dir.join("pen.truth");
        let child = Process::new(env!("CARGO_BIN_EXE_needle-pen"))
            .arg("--pty")
            .arg(&tty)
            .arg("--truth")
            .arg(&truth)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while !(tty.exists() && truth.exists()) {
            assert!(start.elapsed() < PATIENCE, "needle-pen did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Self {
            child,
            tty,
            truth,
            _dir: tempdir::Dir(dir),
        }
    }

    pub fn truth(&self) -> Truth {
        Truth::connect(&self.truth)
    }
}

impl Drop for PenProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

/// A client of the pen's truth socket.
pub struct Truth {
    out: UnixStream,
    input: BufReader<UnixStream>,
}

impl Truth {
    pub fn connect(path: &Path) -> Self {
        let out = UnixStream::connect(path).unwrap();
        let input = BufReader::new(out.try_clone().unwrap());
        Self { out, input }
    }

    pub fn ask(&mut self, request: Value) -> Value {
        writeln!(self.out, "{request}").unwrap();
        let mut line = String::new();
        self.input.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    pub fn now(&mut self) -> Value {
        self.ask(json!({"op": "truth"}))
    }

    pub fn inject(&mut self, what: &str, on: bool) -> u64 {
        self.ask(json!({"op": "inject", "what": what, "on": on}))["at_us"]
            .as_u64()
            .unwrap()
    }

    pub fn ticks_between(&mut self, after: u64, until: u64) -> u64 {
        self.ask(json!({"op": "ticks_between", "after": after, "until": until}))["ticks"]
            .as_u64()
            .expect("tick log reaches back")
    }
}

/// A host on the pen's tty.
pub struct Host {
    pub port: File,
    pub link: HostLink,
    start: Instant,
    last_sync: Micros,
    pub telemetry: Option<Telemetry>,
    pub identity: Option<FromPen>,
}

impl Host {
    pub fn open(tty: &Path) -> Self {
        let port = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(tty)
            .unwrap();
        let mut t = termios::tcgetattr(&port).unwrap();
        termios::cfmakeraw(&mut t);
        termios::tcsetattr(&port, SetArg::TCSANOW, &t).unwrap();
        let flags = OFlag::from_bits_truncate(fcntl(&port, FcntlArg::F_GETFL).unwrap());
        fcntl(&port, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).unwrap();
        termios::tcflush(&port, termios::FlushArg::TCIOFLUSH).unwrap();
        Self {
            port,
            link: HostLink::new(Micros(20_000)),
            start: Instant::now(),
            last_sync: Micros::ZERO,
            telemetry: None,
            identity: None,
        }
    }

    pub fn now(&self) -> Micros {
        Micros(self.start.elapsed().as_micros() as u64)
    }

    /// Writes what is queued, reads what came, keeps the link alive; returns what the pen said.
    pub fn pump(&mut self) -> Vec<FromPen> {
        let now = self.now();
        if self.identity.is_some() && now.since(self.last_sync) >= Micros(10_000) {
            self.link.sync(now);
            // As needled's service does: a heartbeat, which refreshes the dead-man.
            let _ = self.link.heartbeat();
            self.last_sync = now;
        }
        self.link.poll(now);
        while !self.link.pending().is_empty() {
            match self.port.write(self.link.pending()) {
                Ok(n) => self.link.consume(n),
                Err(_) => break,
            }
        }
        let mut said = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = self.port.read(&mut buf) {
            for b in &buf[..n] {
                if let Some(m) = self.link.receive(*b, self.now()) {
                    match m {
                        FromPen::Telemetry(t) => self.telemetry = Some(t),
                        // Telemetry from before a verdict may predate what it changed.
                        FromPen::Verdict { .. } => self.telemetry = None,
                        _ => {}
                    }
                    said.push(m);
                }
            }
        }
        std::thread::sleep(Duration::from_micros(200));
        said
    }

    /// Identifies, and starts numbering at the pen's next sequence number.
    pub fn handshake(&mut self) -> FromPen {
        let start = Instant::now();
        let mut asked = Instant::now() - Duration::from_secs(1);
        loop {
            assert!(start.elapsed() < PATIENCE, "no identity from the pen");
            if asked.elapsed() > Duration::from_millis(100) {
                self.link.identify();
                asked = Instant::now();
            }
            for m in self.pump() {
                if let FromPen::Identity { next_seq, .. } = m {
                    self.link.start(next_seq);
                    self.identity = Some(m);
                    return m;
                }
            }
        }
    }

    pub fn send(&mut self, message: Reliable) -> Outcome {
        let seq = self.link.send_reliable(message, self.now()).unwrap();
        let start = Instant::now();
        loop {
            assert!(start.elapsed() < PATIENCE, "no verdict for {message:?}");
            for m in self.pump() {
                if let FromPen::Verdict {
                    seq: s, outcome, ..
                } = m
                {
                    if s == seq {
                        return outcome;
                    }
                }
            }
        }
    }

    pub fn configure(&mut self, config: ControllerConfig) -> Outcome {
        self.send(Reliable::Configure {
            config,
            telemetry_every: 10,
        })
    }

    pub fn command(&mut self, command: Command) -> Outcome {
        self.send(Reliable::Command(command))
    }

    /// Pumps until telemetry satisfies `until`.
    pub fn wait(&mut self, what: &str, mut until: impl FnMut(&Telemetry) -> bool) -> Telemetry {
        let start = Instant::now();
        loop {
            assert!(start.elapsed() < PATIENCE, "waited in vain for {what}");
            self.pump();
            if let Some(t) = self.telemetry.filter(|t| until(t)) {
                return t;
            }
        }
    }

    /// Configures, homes, arms and starts the needles.
    pub fn run_needles(&mut self, config: ControllerConfig) {
        assert!(matches!(self.configure(config), Outcome::Configured(_)));
        assert_eq!(self.command(Command::Home), Outcome::Command(Ok(())));
        self.wait("homed", |t| t.state == State::Idle);
        let arm = Command::Arm {
            depth: needle_core::units::Micrometers(500),
            rate: needle_core::units::MilliHertz::from_hz(120),
            ceiling: needle_core::units::Micrometers(1_000),
            max_run: needle_core::units::Micros(u64::MAX),
            max_strokes: u32::MAX,
        };
        assert_eq!(self.command(arm), Outcome::Command(Ok(())));
        self.wait("depth settled", |t| !t.depth_moving);
        assert_eq!(self.command(Command::Start), Outcome::Command(Ok(())));
        self.wait("running", |t| t.state == State::Running && t.motor_enabled);
    }
}
