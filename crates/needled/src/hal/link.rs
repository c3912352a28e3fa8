//! The link backend: the controller runs in the pen (needle-pen), reached over a serial device
//! with needle-link; needled keeps the same
//! [`ControlHandle`](crate::control::ControlHandle) so the service, API, SSE and events are
//! the same as with the in-process backends.
//!
//! One thread owns the port. It opens the device, asks the pen who it is, refuses a pen of
//! another protocol version or one already configured differently (by the configuration
//! hash), configures it, then streams commands (each verdict answers its API call), the
//! service's heartbeats (unnumbered: what keeps the pen's dead-man fed, once every command
//! sent before each is applied) and clock probes,
//! and publishes the pen's telemetry as
//! the control snapshot. When the pen falls silent for `lost_after_ms` the link is lost: the
//! snapshot shows a latched `HostTimeout` fault with the motor off (what the pen's own
//! dead-man does by then) until the pen speaks again. A reconnect never resumes a treatment:
//! the pen stays faulted until the operator clears it. A pen that comes back restarted
//! (unconfigured, or its clock behind what it said before) or another pen altogether is
//! latched as that same fault by needled until the operator clears faults, and meanwhile
//! every command but a heartbeat or a fault clear is refused. [`health`] is what
//! `GET /v1/health` shows of all this.

mod config;
mod health;
mod restart;
mod tags;

pub use config::{baud_rate, LinkConfig, LinkRefusal};
pub use health::{current as health, LinkHealth, PenEvent, Refusal};
pub use tags::LinkTags;
use tags::{ChipJob, ChipWait, TagAnswer, TagWait};

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};

use needle_core::units::Micros;
use needle_core::{Command, Controller, ControllerConfig, Fault, Rejected, State, Telemetry};
use needle_link::{
    config_hash, ConfigRefusal, FromPen, HostLink, Outcome, PenId, Reliable, PROTOCOL_VERSION,
};
use nix::errno::Errno;
use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sys::stat::Mode;
use nix::sys::termios::{self, BaudRate, SetArg};
use tokio::sync::oneshot;

use crate::control::{self, LoopStats, RemoteEnd, Snapshot};

fn open_port(device: &Path, baud: BaudRate) -> nix::Result<OwnedFd> {
    let fd = open(
        device,
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_NONBLOCK,
        Mode::empty(),
    )?;
    let mut t = termios::tcgetattr(&fd)?;
    termios::cfmakeraw(&mut t);
    termios::cfsetspeed(&mut t, baud)?;
    termios::tcsetattr(&fd, SetArg::TCSANOW, &t)?;
    // Whatever the pen sent while no host listened is stale.
    termios::tcflush(&fd, termios::FlushArg::TCIOFLUSH)?;
    let _ = fcntl(&fd, FcntlArg::F_GETFL)?;
    Ok(fd)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// No port open; try again at the time given.
    Closed { retry_at: Micros },
    /// Asking the pen who it is.
    Identifying { asked_at: Micros },
    /// Configure sent with this number.
    Configuring { seq: u8 },
    /// Driving the pen.
    Up,
    /// Will not drive this pen.
    Refused(LinkRefusal),
}

impl Phase {
    fn code(&self) -> &'static str {
        match self {
            Phase::Closed { .. } => "closed",
            Phase::Identifying { .. } => "identifying",
            Phase::Configuring { .. } => "configuring",
            Phase::Up => "up",
            Phase::Refused(_) => "refused",
        }
    }
}

/// What the control snapshot shows while the pen is not heard: a latched `HostTimeout` (the
/// fault the pen's own dead-man latches when armed or running and cut off from its host) with
/// the motor off, so the API and console show the lost link as a fault.
fn link_lost(last: &Telemetry) -> Telemetry {
    let mut t = *last;
    t.faults.insert(Fault::HostTimeout);
    t.last_fault = Some(Fault::HostTimeout);
    t.state = State::Fault;
    t.motor_enabled = false;
    t.duty = needle_core::units::Permyriad(0);
    t.rate_measured = needle_core::units::MilliHertz(0);
    t
}

/// Starts the link thread; the handle works as with any backend, and the tag reader reads
/// through the pen. With `realtime` (`control.realtime_priority`) the thread asks for
/// SCHED_FIFO at the control thread's priority: it carries the commands and heartbeats that
/// refresh the pen's dead-man, as the control thread does in-process.
pub fn spawn(
    link: LinkConfig,
    core: ControllerConfig,
    realtime: bool,
) -> Result<(control::ControlHandle, LinkTags), String> {
    let baud = baud_rate(link.baud).ok_or(format!("link.baud: unsupported rate {}", link.baud))?;
    // The telemetry before any pen spoke: a controller at power-up (Boot, motor off).
    let boot = Controller::new(needle_sim::SimRig::new(Default::default()).hardware(), core)
        .map_err(|e| format!("controller config: {e}"))?
        .telemetry();
    let initial = Snapshot {
        telemetry: boot,
        stats: LoopStats::default(),
    };
    let (tag_requests, tag_queue) = mpsc::sync_channel(4);
    let (chip_requests, chip_queue) = mpsc::sync_channel(4);
    let tags = LinkTags {
        requests: tag_requests,
        chip_requests,
        device: link.device.clone(),
    };
    let handle = control::spawn_remote("needle-link", initial, move |end| {
        if realtime {
            control::try_realtime(50);
        }
        Driver::new(link, baud, core, boot, tag_queue, chip_queue).serve(end)
    })
    .map_err(|e| format!("link thread: {e}"))?;
    Ok((handle, tags))
}

struct Driver {
    config: LinkConfig,
    baud: BaudRate,
    core: ControllerConfig,
    hash: u32,
    port: Option<OwnedFd>,
    link: HostLink,
    phase: Phase,
    last_rx: Micros,
    last_sync: Micros,
    telemetry: Telemetry,
    replies: HashMap<u8, oneshot::Sender<Result<(), Rejected>>>,
    stats: LoopStats,
    tag_queue: Receiver<Sender<TagAnswer>>,
    tags_waiting: Vec<TagWait>,
    next_tag_request: u8,
    chip_queue: Receiver<ChipJob>,
    chip_waiting: Option<ChipWait>,
    /// The next chip request's number: from a random start, so a needled restarted while
    /// the pen still keeps an answer never takes that answer for its own request.
    next_chip_request: u32,
    /// The pen driven last and the latest pen time it told (telemetry, clock, identity).
    driven: Option<(PenId, Micros)>,
    /// The number of the fault clear sent to a faulted pen while a restart is latched.
    clearing: Option<u8>,
    /// The pen's own telemetry (the snapshot shows it overlaid while a restart is latched).
    pen_telemetry: Telemetry,
    health: LinkHealth,
    health_at: Micros,
}

impl Driver {
    fn new(
        config: LinkConfig,
        baud: BaudRate,
        core: ControllerConfig,
        boot: Telemetry,
        tag_queue: Receiver<Sender<TagAnswer>>,
        chip_queue: Receiver<ChipJob>,
    ) -> Self {
        let rto = Micros(u64::from(config.retransmit_ms) * 1_000);
        let health = LinkHealth::new(config.device.display().to_string());
        Self {
            config,
            baud,
            core,
            hash: config_hash(&core),
            port: None,
            link: HostLink::new(rto),
            phase: Phase::Closed {
                retry_at: Micros::ZERO,
            },
            last_rx: Micros::ZERO,
            last_sync: Micros::ZERO,
            telemetry: boot,
            replies: HashMap::new(),
            stats: LoopStats {
                rate_hz: 1_000,
                ..LoopStats::default()
            },
            tag_queue,
            tags_waiting: Vec::new(),
            next_tag_request: 0,
            chip_queue,
            chip_waiting: None,
            next_chip_request: rand::random(),
            driven: None,
            clearing: None,
            pen_telemetry: boot,
            health,
            health_at: Micros::ZERO,
        }
    }

    fn serve(mut self, end: RemoteEnd) {
        let period = Micros(1_000);
        let mut deadline = control::monotonic_now();
        while !end.stop.load(Ordering::Acquire) {
            deadline = deadline.saturating_add(period);
            control::sleep_until(deadline);
            let now = control::monotonic_now();
            if now.since(deadline) > period {
                deadline = now;
            }
            end.alive.store(now.0, Ordering::Release);
            self.step(now, &end);
            self.stats.ticks += 1;
        }
        // Leave the pen safe: disarm, and give the line a moment to carry it.
        if self.phase == Phase::Up {
            let _ = self.link.send_reliable(
                Reliable::Command(needle_core::Command::Disarm),
                control::monotonic_now(),
            );
            self.write();
        }
    }

    fn step(&mut self, now: Micros, end: &RemoteEnd) {
        if let Phase::Closed { retry_at } = self.phase {
            if now >= retry_at {
                self.open(now);
            }
        }
        self.read(now, end);
        self.take_requests(end);
        self.ask_tags(now);
        self.ask_chip(now);
        match self.phase {
            Phase::Identifying { asked_at } if now.since(asked_at) >= Micros(100_000) => {
                self.link.identify();
                self.phase = Phase::Identifying { asked_at: now };
            }
            Phase::Up | Phase::Configuring { .. }
                if now.since(self.last_sync) >= Micros(u64::from(self.config.sync_ms) * 1_000) =>
            {
                self.link.sync(now);
                self.last_sync = now;
            }
            _ => {}
        }
        let lost_after = Micros(u64::from(self.config.lost_after_ms) * 1_000);
        if matches!(self.phase, Phase::Up | Phase::Configuring { .. })
            && now.since(self.last_rx) > lost_after
        {
            tracing::error!(device = %self.config.device.display(), "link to the pen lost: no frame for {} ms", self.config.lost_after_ms);
            self.lose(now, end);
        }
        self.link.poll(now);
        self.write();
        self.report(now);
    }

    /// Publishes the link's health when its state changed, at once after [`Self::changed`],
    /// or every 100 ms for its counters.
    fn report(&mut self, now: Micros) {
        let state = self.phase.code();
        if state == self.health.state && now.since(self.health_at) < Micros(100_000) {
            return;
        }
        self.health.state = state;
        self.health.received = self.link.counters();
        self.health.retransmissions = self.link.retransmissions();
        self.health.clock(self.link.clock());
        self.health.publish();
        self.health_at = now;
    }

    fn open(&mut self, now: Micros) {
        match open_port(&self.config.device, self.baud) {
            Ok(fd) => {
                tracing::info!(device = %self.config.device.display(), "link: port open, identifying the pen");
                self.port = Some(fd);
                self.link = HostLink::new(Micros(u64::from(self.config.retransmit_ms) * 1_000));
                self.link.identify();
                self.phase = Phase::Identifying { asked_at: now };
            }
            Err(e) => {
                tracing::warn!(device = %self.config.device.display(), error = %e, "link: cannot open the pen's port; retrying");
                self.phase = Phase::Closed {
                    retry_at: now.saturating_add(Micros(500_000)),
                };
            }
        }
    }

    /// The pen is not heard: fail what waits, show the fault, and ask again who is there.
    fn lose(&mut self, now: Micros, end: &RemoteEnd) {
        if matches!(self.phase, Phase::Up | Phase::Configuring { .. }) {
            self.health.losses += 1;
        }
        self.replies.clear();
        self.telemetry = link_lost(&self.telemetry);
        self.publish(end);
        self.link.identify();
        self.phase = Phase::Identifying { asked_at: now };
    }

    fn publish(&self, end: &RemoteEnd) {
        end.snapshots.publish(Snapshot {
            telemetry: self.telemetry,
            stats: self.stats,
        });
    }

    fn read(&mut self, now: Micros, end: &RemoteEnd) {
        let Some(port) = &self.port else { return };
        let mut buf = [0u8; 4096];
        let mut said = Vec::new();
        loop {
            match nix::unistd::read(port, &mut buf) {
                Err(Errno::EAGAIN) => break,
                Ok(n @ 1..) => {
                    for b in buf.get(..n).unwrap_or(&[]) {
                        if let Some(m) = self.link.receive(*b, now) {
                            said.push(m);
                        }
                    }
                }
                Err(Errno::EINTR) => {}
                // End of file (the device hung up) or an error: the port is gone.
                failed => {
                    let error = failed.err().unwrap_or(Errno::EIO);
                    tracing::error!(device = %self.config.device.display(), %error, "link: port failed; reopening");
                    self.port = None;
                    self.lose(now, end);
                    self.phase = Phase::Closed {
                        retry_at: now.saturating_add(Micros(500_000)),
                    };
                    break;
                }
            }
        }
        // While driving, only telemetry shows the pen alive and configured (a pen that
        // restarted still answers probes, unconfigured); before that, any frame does.
        if !said.is_empty() && self.phase != Phase::Up {
            self.last_rx = now;
        }
        for m in said {
            self.hear(m, now, end);
        }
    }

    fn hear(&mut self, message: FromPen, now: Micros, end: &RemoteEnd) {
        match message {
            FromPen::Identity {
                version,
                pen,
                config_hash,
                next_seq,
                pen_time,
            } => {
                if !matches!(self.phase, Phase::Identifying { .. }) {
                    return;
                }
                self.health.pen = Some(String::from_utf8_lossy(&pen.0).into_owned());
                let refusal = if version != PROTOCOL_VERSION {
                    Some(LinkRefusal::Version {
                        pen: version,
                        host: PROTOCOL_VERSION,
                    })
                } else {
                    config_hash
                        .filter(|h| *h != self.hash)
                        .map(|h| LinkRefusal::Config {
                            pen: h,
                            host: self.hash,
                        })
                };
                if let Some(r) = refusal {
                    tracing::error!(pen = %String::from_utf8_lossy(&pen.0), "link: {r}");
                    self.refuse(r, now);
                    return;
                }
                self.restarted(pen, config_hash, pen_time, now, end);
                tracing::info!(pen = %String::from_utf8_lossy(&pen.0), configured = config_hash.is_some(), "link: pen identified; configuring");
                self.link.start(next_seq);
                let configure = Reliable::Configure {
                    config: self.core,
                    telemetry_every: self.config.telemetry_every.max(1),
                };
                self.phase = match self.link.send_reliable(configure, now) {
                    Ok(seq) => Phase::Configuring { seq },
                    Err(_) => Phase::Identifying { asked_at: now },
                };
                self.last_rx = now;
            }
            FromPen::Verdict { seq, outcome, .. } => {
                if self.phase == (Phase::Configuring { seq }) {
                    let refusal = match outcome {
                        Outcome::Configured(h) if h == self.hash => {
                            tracing::info!("link: pen configured; driving it");
                            self.phase = Phase::Up;
                            return;
                        }
                        Outcome::Configured(h)
                        | Outcome::ConfigRefused(ConfigRefusal::AlreadyConfigured(h)) => {
                            LinkRefusal::Config {
                                pen: h,
                                host: self.hash,
                            }
                        }
                        _ => LinkRefusal::Invalid,
                    };
                    tracing::error!("link: {refusal}");
                    self.refuse(refusal, now);
                    return;
                }
                let Some(reply) = self.replies.remove(&seq) else {
                    return;
                };
                if let Outcome::Command(verdict) = outcome {
                    if verdict.is_ok() && self.clearing == Some(seq) {
                        self.unlatch(end);
                    }
                    let _ = reply.send(verdict);
                }
            }
            FromPen::Telemetry(t) => {
                if self.phase == Phase::Up {
                    self.last_rx = now;
                    if self
                        .health
                        .observe(&self.pen_telemetry, &t, self.link.clock())
                    {
                        self.changed();
                    }
                    self.pen_telemetry = t;
                    if let Some((_, seen)) = &mut self.driven {
                        *seen = t.now;
                    }
                    self.show(end);
                }
            }
            FromPen::Tag { request, image } => {
                if let Some(i) = self.tags_waiting.iter().position(|w| w.request == request) {
                    let wait = self.tags_waiting.swap_remove(i);
                    let _ = wait.reply.send(image.map(|t| t.as_bytes().to_vec()));
                }
            }
            FromPen::Chip { request, answer } => self.chip_answered(request, answer, now),
            // Telemetry that lost its key frame to noise: the pen is up and configured.
            FromPen::Unanchored if self.phase == Phase::Up => self.last_rx = now,
            FromPen::Clock { pen_time } => {
                if let Some((_, seen)) = &mut self.driven {
                    *seen = (*seen).max(pen_time);
                }
            }
            FromPen::Counters(_) | FromPen::Unanchored => {}
        }
    }

    /// Has the next [`Self::report`] publish the health.
    fn changed(&mut self) {
        self.health_at = Micros::ZERO;
    }

    fn refuse(&mut self, refusal: LinkRefusal, now: Micros) {
        self.changed();
        self.health.refusal = Some(Refusal {
            code: refusal.code(),
            message: refusal.to_string(),
            host_time_us: now.0,
        });
        self.phase = Phase::Refused(refusal);
    }

    fn take_requests(&mut self, end: &RemoteEnd) {
        while self.link.in_flight() < usize::from(needle_link::host::WINDOW) {
            let request = match end.requests.try_recv() {
                Ok(r) => r,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            };
            if self.phase != Phase::Up {
                // Dropping the reply tells the caller the controller is out of reach.
                continue;
            }
            let mut clearing = false;
            if self.health.restart_latched {
                match request.command {
                    Command::Heartbeat => {}
                    // The pen's own faults, if any, are cleared by the pen; a pen without
                    // any (a restarted one is in Boot) has nothing to clear.
                    Command::ClearFaults
                        if matches!(self.pen_telemetry.state, State::Fault | State::EStop) =>
                    {
                        clearing = true;
                    }
                    Command::ClearFaults => {
                        self.unlatch(end);
                        let _ = request.reply.send(Ok(()));
                        continue;
                    }
                    _ => {
                        let _ = request
                            .reply
                            .send(Err(Rejected::FaultLatched(Fault::HostTimeout)));
                        continue;
                    }
                }
            }
            if request.command == Command::Heartbeat {
                // Not numbered and not answered by the pen (needle-link's
                // `HostMessage::Heartbeat`): the reply says it went out. The pen applies it
                // only after every command sent before it; the next one stands for a lost one.
                if self.link.heartbeat().is_ok() {
                    let _ = request.reply.send(Ok(()));
                }
                continue;
            }
            let now = control::monotonic_now();
            match self
                .link
                .send_reliable(Reliable::Command(request.command), now)
            {
                Ok(seq) => {
                    if clearing {
                        self.clearing = Some(seq);
                    }
                    self.replies.insert(seq, request.reply);
                }
                Err(_) => continue,
            }
        }
    }

    fn write(&mut self) {
        let Some(port) = &self.port else { return };
        while !self.link.pending().is_empty() {
            match nix::unistd::write(port, self.link.pending()) {
                Ok(n) => self.link.consume(n),
                Err(Errno::EINTR) => {}
                // EAGAIN: the line is full; the rest goes next loop.
                Err(_) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_link_shows_a_latched_host_timeout_with_the_motor_off() {
        let rig = needle_sim::SimRig::new(Default::default());
        let mut t = Controller::new(rig.hardware(), ControllerConfig::default())
            .unwrap()
            .telemetry();
        t.state = State::Running;
        t.motor_enabled = true;
        let lost = link_lost(&t);
        assert_eq!(lost.state, State::Fault);
        assert!(lost.faults.contains(Fault::HostTimeout));
        assert!(!lost.motor_enabled);
    }

    #[test]
    fn refusals_name_both_sides() {
        let r = LinkRefusal::Config {
            pen: 0xdead_beef,
            host: 0x1234_5678,
        };
        let text = r.to_string();
        assert!(
            text.contains("deadbeef") && text.contains("12345678"),
            "{text}"
        );
    }
}
