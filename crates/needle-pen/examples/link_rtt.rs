//! Command round trip over the pty: the pen firmware's host build as a real process, a host
//! on needle-link sending one command at a time, as needled does.
//!
//! Usage: `link_rtt <path to needle-pen> [commands]` (`scripts/bench-link.sh` builds and runs
//! it). For each command it records, on the host's clock, the time from send to the verdict's
//! arrival, and, on the pen's clock (mapped by the link's clock sync), the time from send to
//! the command being applied, in pen ticks: the tick the pen applied it before is the first
//! to act on it.
//!
//! It also measures the clock fit's true error: the pen's host build prints its clock's
//! origin on CLOCK_MONOTONIC, the host's clock here is CLOCK_MONOTONIC too, so the pen time
//! at each send is known exactly and compared with the fit's mapping of it.
//!
//! Usage: `link_rtt <path to needle-pen> [commands] [sync_ms]`, `sync_ms` the clock probe
//! period (needled's `link.sync_ms`, default 100).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use needle_core::units::Micros;
use needle_core::{Command, ControllerConfig};
use needle_link::{FromPen, HostLink, Outcome, Reliable};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::termios::{self, SetArg};
use nix::time::{clock_gettime, ClockId};

/// CLOCK_MONOTONIC in µs, the clock the pen's host build counts from.
fn monotonic() -> u64 {
    let ts = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    ts.tv_sec() as u64 * 1_000_000 + ts.tv_nsec() as u64 / 1_000
}

struct Host {
    port: File,
    link: HostLink,
    /// CLOCK_MONOTONIC at the host clock's zero, µs.
    start: u64,
}

impl Host {
    fn now(&self) -> Micros {
        Micros(monotonic() - self.start)
    }

    fn pump(&mut self) -> Vec<FromPen> {
        while !self.link.pending().is_empty() {
            match self.port.write(self.link.pending()) {
                Ok(n) => self.link.consume(n),
                Err(_) => break,
            }
        }
        let mut said = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = self.port.read(&mut buf) {
            let now = self.now();
            said.extend(buf[..n].iter().filter_map(|b| self.link.receive(*b, now)));
        }
        said
    }

    fn until<T>(&mut self, mut f: impl FnMut(&mut HostLink, FromPen) -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            assert!(start.elapsed() < Duration::from_secs(20), "no answer");
            for m in self.pump() {
                if let Some(t) = f(&mut self.link, m) {
                    return t;
                }
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let pen_bin = args.next().expect("path to needle-pen");
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let sync_ms: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let dir = std::env::temp_dir().join(format!("link-rtt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tty = dir.join("pen.tty");
    let mut pen = Process::new(pen_bin)
        .arg("--pty")
        .arg(&tty)
        .arg("--truth")
        .arg(dir.join("pen.truth"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The pen's clock origin (CLOCK_MONOTONIC µs), from its first lines.
    let (origin_tx, origin_rx) = std::sync::mpsc::channel();
    let stderr = pen.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("needle-pen: clock origin ") {
                let origin: u64 = rest.split(' ').next().unwrap().parse().unwrap();
                let _ = origin_tx.send(origin);
            }
        }
    });
    while !tty.exists() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let port = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&tty)
        .unwrap();
    let mut t = termios::tcgetattr(&port).unwrap();
    termios::cfmakeraw(&mut t);
    termios::tcsetattr(&port, SetArg::TCSANOW, &t).unwrap();
    let flags = OFlag::from_bits_truncate(fcntl(&port, FcntlArg::F_GETFL).unwrap());
    fcntl(&port, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).unwrap();
    let mut host = Host {
        port,
        link: HostLink::new(Micros(20_000)),
        start: monotonic(),
    };
    let origin = origin_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the pen's clock origin");
    // The pen's true clock at host time `h`.
    let host_start = host.start;
    let truth = |h: Micros| (h.0 + host_start) as i64 - origin as i64;
    host.link.identify();
    host.until(|link, m| match m {
        FromPen::Identity { next_seq, .. } => {
            link.start(next_seq);
            Some(())
        }
        _ => None,
    });
    let config = ControllerConfig::default();
    let period = config.safety.tick_period.0 as f64;
    let now = host.now();
    host.link
        .send_reliable(
            Reliable::Configure {
                config,
                telemetry_every: 1,
            },
            now,
        )
        .unwrap();
    host.until(|_, m| matches!(m, FromPen::Verdict { .. }).then_some(()));
    let mut round_trip_us = Vec::with_capacity(n);
    let mut applied_ticks = Vec::with_capacity(n);
    let mut fit_error_us = Vec::with_capacity(n);
    let mut last_sync = Micros::ZERO;
    for i in 0..n {
        // Keep the clock fit fresh, as needled does (every `link.sync_ms`).
        let now = host.now();
        if now.since(last_sync) >= Micros(sync_ms * 1_000) {
            host.link.sync(now);
            last_sync = now;
        }
        let sent = host.now();
        host.link
            .send_reliable(Reliable::Command(Command::Heartbeat), sent)
            .unwrap();
        let (at, outcome) = host.until(|_, m| match m {
            FromPen::Verdict { at, outcome, .. } => Some((at, outcome)),
            _ => None,
        });
        let received = host.now();
        assert_eq!(outcome, Outcome::Command(Ok(())));
        round_trip_us.push(received.since(sent).0 as f64);
        if let Some(sent_on_pen) = host.link.clock().to_pen(sent) {
            fit_error_us.push((sent_on_pen.0 as i64 - truth(sent)).unsigned_abs() as f64);
            // The command is applied before the tick at `at`, the first to act on it.
            let ticks = (at.0 as f64 - sent_on_pen.0 as f64) / period;
            applied_ticks.push(ticks.max(0.0));
        }
        // A spread of gaps, so sends do not lock to one phase of the pen's ticks.
        std::thread::sleep(Duration::from_micros(1_500 + (i as u64 * 373) % 1_000));
    }
    let _ = pen.kill();
    let _ = pen.wait();
    let _ = std::fs::remove_dir_all(&dir);
    round_trip_us.sort_by(f64::total_cmp);
    applied_ticks.sort_by(f64::total_cmp);
    fit_error_us.sort_by(f64::total_cmp);
    let fit = host.link.clock().fit().unwrap();
    println!("commands: {n}, a clock probe every {sync_ms} ms");
    println!(
        "host round trip (send -> verdict received), us: p50 {:.0}  p99 {:.0}  max {:.0}",
        percentile(&round_trip_us, 0.5),
        percentile(&round_trip_us, 0.99),
        round_trip_us.last().unwrap()
    );
    println!(
        "send -> applied in the pen's tick, pen ticks: p50 {:.2}  p99 {:.2}  max {:.2}  (clock fit uncertainty {} us, rate {:.6})",
        percentile(&applied_ticks, 0.5),
        percentile(&applied_ticks, 0.99),
        applied_ticks.last().unwrap(),
        fit.uncertainty.0,
        fit.rate
    );
    println!(
        "clock fit's error against the pen's true clock at each send, us: p50 {:.0}  p99 {:.0}  max {:.0}",
        percentile(&fit_error_us, 0.5),
        percentile(&fit_error_us, 0.99),
        fit_error_us.last().unwrap()
    );
}
