//! [`Pen`]: the dispatcher between the link and the controller.

use needle_core::hal::Hardware;
use needle_core::units::Micros;
use needle_core::{Command, Controller, ControllerConfig};
use needle_link::{
    config_hash, ChipAnswer, ConfigRefusal, Outcome, PenId, PenLink, Received, TagImage,
};

use crate::chip::{Chip, NoChip};

/// The pen sends its link counters every this many ticks.
pub const COUNTERS_EVERY: u16 = 250;

/// Tick period before a host configured one: the controller's default.
const UNCONFIGURED_PERIOD: Micros = Micros(1_000);

// One `Slot` lives for the pen's life and there is no heap to box the controller into.
#[allow(clippy::large_enum_variant)]
enum Slot<H: Hardware> {
    /// Power-up: outputs at their reset (safe) levels until a host configures the controller.
    Waiting(H),
    Configured {
        ctrl: Controller<H>,
        hash: u32,
        telemetry_every: u16,
    },
    /// Never seen: only while moving the hardware from `Waiting` into a controller.
    Moving,
}

/// The pen's firmware logic over the hardware `H` and the cartridge chip's driver `C`.
pub struct Pen<H: Hardware, C: Chip = NoChip> {
    link: PenLink,
    chip: C,
    /// The chip request running, if any: its number.
    chip_running: Option<u32>,
    slot: Slot<H>,
    now: Micros,
    ticks: u64,
    /// Ticks until the next telemetry frame and the next counters frame: counted down, not
    /// a division of `ticks` a tick.
    until_telemetry: u16,
    until_counters: u16,
    last_host_frame: Option<Micros>,
    last_refresh: Option<Micros>,
    tag: Option<TagImage>,
}

impl<H: Hardware> Pen<H> {
    /// The pen at power-up, waiting for a host, with no chip bus.
    pub fn new(hardware: H, pen: PenId) -> Self {
        Self::with_chip(hardware, pen, NoChip)
    }
}

impl<H: Hardware, C: Chip> Pen<H, C> {
    /// The pen at power-up, waiting for a host, with the cartridge chip's driver `chip`.
    pub fn with_chip(hardware: H, pen: PenId, chip: C) -> Self {
        Self {
            link: PenLink::new(pen),
            chip,
            chip_running: None,
            slot: Slot::Waiting(hardware),
            now: Micros::ZERO,
            ticks: 0,
            until_telemetry: 1,
            until_counters: COUNTERS_EVERY,
            last_host_frame: None,
            last_refresh: None,
            tag: None,
        }
    }

    /// The controller, once a host configured it.
    pub fn controller(&self) -> Option<&Controller<H>> {
        match &self.slot {
            Slot::Configured { ctrl, .. } => Some(ctrl),
            _ => None,
        }
    }

    /// The link, for its counters.
    pub fn link(&self) -> &PenLink {
        &self.link
    }

    /// The hash of the configuration in force.
    pub fn config_hash(&self) -> Option<u32> {
        match &self.slot {
            Slot::Configured { hash, .. } => Some(*hash),
            _ => None,
        }
    }

    /// The period `main` must tick at: the configured controller's, or 1 ms before that.
    pub fn tick_period(&self) -> Micros {
        self.controller()
            .map_or(UNCONFIGURED_PERIOD, |c| c.config().safety.tick_period)
    }

    /// When (pen clock) the last valid host frame came, if any.
    pub fn last_host_frame(&self) -> Option<Micros> {
        self.last_host_frame
    }

    /// When (pen clock) the controller last accepted a command, which refreshed its dead-man.
    pub fn last_refresh(&self) -> Option<Micros> {
        self.last_refresh
    }

    /// Ticks run.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// Sets the seated cartridge's tag image (`main` reads the tag's EEPROM when a cartridge
    /// is seated), or `None` when no tag answers. Longer than a tag can be: `None`.
    pub fn seat_tag(&mut self, image: Option<&[u8]>) {
        self.tag = image.and_then(TagImage::new);
    }

    /// Takes bytes from the serial port, received by pen time `now`.
    #[inline]
    pub fn receive(&mut self, bytes: &[u8], now: Micros) {
        // Most ticks bring no bytes: the frame work stays out of the main loop's code.
        if !bytes.is_empty() {
            self.receive_bytes(bytes, now);
        }
    }

    #[inline(never)]
    fn receive_bytes(&mut self, bytes: &[u8], now: Micros) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let (took, event) = self.link.receive_some(rest);
            rest = rest.get(took..).unwrap_or(&[]);
            if let Some(event) = &event {
                // By reference: an event can hold a whole configuration.
                self.dispatch(event, now);
            }
        }
    }

    /// Applies a valid host frame's event: a heartbeat here, the rest out of line.
    #[inline(always)]
    fn dispatch(&mut self, event: &Received, now: Micros) {
        self.last_host_frame = Some(now);
        if let Received::Heartbeat = event {
            self.heartbeat();
        } else {
            self.answer(event, now);
        }
    }

    /// Feeds the controller's dead-man. Unanswered: an unconfigured pen has no dead-man.
    #[inline(always)]
    fn heartbeat(&mut self) {
        let _ = self.command(Command::Heartbeat);
    }

    #[inline(never)]
    fn answer(&mut self, event: &Received, now: Micros) {
        match *event {
            Received::Identify => self.link.identity(self.config_hash(), now),
            Received::Heartbeat => self.heartbeat(),
            Received::Sync { host_time } => self.link.clock(host_time, now),
            Received::Command { seq, command } => {
                let outcome = self.command(command);
                self.link.verdict(seq, outcome, self.ticks, now);
            }
            Received::Configure {
                seq,
                telemetry_every,
            } => {
                let outcome = match self.link.take_configuration() {
                    Some(config) => self.configure(config, telemetry_every.max(1)),
                    // Not reached: the link keeps each configuration for its event.
                    None => Outcome::ConfigRefused(ConfigRefusal::Invalid),
                };
                self.link.verdict(seq, outcome, self.ticks, now);
            }
            Received::ReadTag { request } => self.link.tag(request, self.tag),
            Received::Chip { request, command } => {
                if self.chip_running.is_some() {
                    // One at a time: the host asks again with a new number.
                    self.link.chip_answer(request, ChipAnswer::Busy);
                } else {
                    match self.chip.start(command) {
                        Ok(()) => self.chip_running = Some(request),
                        Err(answer) => self.link.chip_answer(request, answer),
                    }
                }
            }
            Received::Duplicate | Received::Ahead => {}
        }
    }

    fn command(&mut self, command: Command) -> Outcome {
        match &mut self.slot {
            Slot::Configured { ctrl, .. } => {
                let verdict = ctrl.handle(command);
                if verdict.is_ok() {
                    self.last_refresh = Some(self.now);
                }
                Outcome::Command(verdict)
            }
            _ => Outcome::NotConfigured,
        }
    }

    fn configure(&mut self, config: ControllerConfig, telemetry_every: u16) -> Outcome {
        let hash = config_hash(&config);
        if let Slot::Configured { hash: ours, .. } = self.slot {
            // Like Klipper's MCU: a configuration holds until the pen restarts.
            return if ours == hash {
                Outcome::Configured(hash)
            } else {
                Outcome::ConfigRefused(ConfigRefusal::AlreadyConfigured(ours))
            };
        }
        if config.validate().is_err() {
            return Outcome::ConfigRefused(ConfigRefusal::Invalid);
        }
        let Slot::Waiting(hardware) = core::mem::replace(&mut self.slot, Slot::Moving) else {
            return Outcome::ConfigRefused(ConfigRefusal::Invalid);
        };
        let period = config.safety.tick_period;
        match Controller::new(hardware, config) {
            Ok(ctrl) => {
                self.link
                    .set_step(needle_link::telemetry::Step::of(period, telemetry_every));
                self.slot = Slot::Configured {
                    ctrl,
                    hash,
                    telemetry_every,
                };
                Outcome::Configured(hash)
            }
            // Validated above, so not reached; the hardware is gone with the error.
            Err(_) => Outcome::ConfigRefused(ConfigRefusal::Invalid),
        }
    }

    /// One tick at pen time `now`: the controller's, then telemetry when due.
    pub fn tick(&mut self, now: Micros) {
        self.now = now;
        // Wrapping: 2^64 ticks of 100 µs are 58 million years.
        self.ticks = self.ticks.wrapping_add(1);
        if let Slot::Configured {
            ctrl,
            telemetry_every,
            ..
        } = &mut self.slot
        {
            ctrl.tick(now);
            if self.until_telemetry > 1 {
                self.until_telemetry -= 1;
            } else {
                self.until_telemetry = *telemetry_every;
                // Straight from the controller's fields: no snapshot a tick.
                self.link.telemetry(ctrl);
            }
        }
        if self.chip_running.is_some() {
            self.poll_chip();
        }
        if self.until_counters > 1 {
            self.until_counters -= 1;
        } else {
            self.until_counters = COUNTERS_EVERY;
            self.link.send_counters();
        }
    }

    /// Passes the running chip request's answer on once the chip is done.
    #[cold]
    fn poll_chip(&mut self) {
        if let (Some(request), Some(answer)) = (self.chip_running, self.chip.poll()) {
            self.chip_running = None;
            self.link.chip_answer(request, answer);
        }
    }

    /// Bytes waiting for the serial port.
    pub fn pending(&self) -> &[u8] {
        self.link.pending()
    }

    /// Drops the first `n` pending bytes, which the serial port took.
    pub fn consume(&mut self, n: usize) {
        self.link.consume(n);
    }
}
