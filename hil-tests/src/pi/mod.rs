//! The real bench: [`PiRig`] is the rig's `needled` reached over the bench network with the
//! jig's tokens; [`PiJig`] is a second Raspberry Pi with its own instruments: an optical
//! stroke sensor and a motor-power sense input (gpio-cdev edges with kernel timestamps), an
//! I2C displacement gauge, and relays for the E-stop, the cartridge fixture, a needle brake
//! and the host link.
//!
//! The jig's logic works on the small traits of [`instruments`], so it is tested with fakes;
//! the Pi drivers are in [`linux`] behind the `pi` feature.

pub mod instruments;
#[cfg(feature = "pi")]
pub mod linux;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use needled::cartridge::FactoryKey;
use serde::{Deserialize, Serialize};

use crate::api::{Api, Endpoint};
use crate::config::RigSettings;
use crate::error::{HilError, Result};
use crate::rig::{
    Actuation, DepthReading, Interval, Jig, RateMeasurement, RateReading, Rig, RigOptions, Versions,
};
use instruments::{
    rate_uncertainty_hz, Clock, Displacement, Edge, EdgeInput, Relay, StrokeCounter, TagWriter,
};

/// `[pi]` of the jig configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PiConfig {
    /// The rig's service, e.g. `https://rig-pi.local:7878` (off loopback needled serves only
    /// TLS).
    pub url: String,
    /// The SHA-256 of the rig's TLS certificate, as needled logs it at start and
    /// `needlectl tls-fingerprint` prints it: the jig trusts exactly that certificate.
    #[serde(default)]
    pub tls_sha256: Option<String>,
    /// Or a PEM file of the rig's certificate or its CA (instead of `tls_sha256`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A technician token of the rig's service (the jig recalls lots and services the rig).
    pub token: String,
    /// An operator token for the session calls; the technician token if left out.
    #[serde(default)]
    pub operator_token: Option<String>,
    /// A copy of the rig's `needled.toml`: the scenarios take the control period, timeouts,
    /// areas and checklist from it.
    pub rig_config: PathBuf,
    /// A factory key file (`needle-factory keygen`) whose public key the rig's needled.toml
    /// trusts, to provision the test cartridges' tags. Never the key of production cartridges.
    pub factory_key: PathBuf,
    /// Kills the rig's needled with SIGKILL, e.g. `["ssh", "rig", "sudo", "systemctl",
    /// "kill", "--signal=SIGKILL", "needled"]`. Without it the restart scenario fails.
    #[serde(default)]
    pub kill_command: Option<Vec<String>>,
    /// Starts it again; leave out when systemd restarts it by itself (`Restart=always`).
    #[serde(default)]
    pub start_command: Option<Vec<String>>,
    /// How long the service may take to come back, s.
    #[serde(default = "default_restart_timeout_s")]
    pub restart_timeout_s: u64,
    /// GPIO character device of the jig's header.
    #[serde(default = "default_gpio_chip")]
    pub gpio_chip: PathBuf,
    /// Optical stroke sensor (slotted opto on the cam), one rising edge per stroke. Pins are
    /// line offsets; `!` marks active-low.
    pub stroke_sensor: String,
    /// Motor power sense: an opto-isolator across the motor terminals, active while powered.
    pub motor_power_sense: String,
    /// E-stop sense: the rig's E-stop line, to time from the moment the rig sees the press.
    #[serde(default)]
    pub estop_sense: Option<String>,
    /// Cartridge sense: the rig's cartridge switch line, to time from the moment it opens.
    #[serde(default)]
    pub cartridge_sense: Option<String>,
    /// Relay wired across the E-stop's normally closed contacts: energised = pressed.
    pub estop_relay: String,
    /// Relay of the cartridge fixture's solenoid: energised = seated.
    pub cartridge_relay: String,
    /// Relay of a needle brake that jams the cam.
    #[serde(default)]
    pub jam_relay: Option<String>,
    /// Relay that cuts the host link (only where the controller is on its own board).
    #[serde(default)]
    pub host_link_relay: Option<String>,
    /// Timestamp jitter of the jig's GPIO edges, µs (interrupt latency).
    #[serde(default = "default_edge_jitter_us")]
    pub edge_jitter_us: f64,
    /// The jig's I2C bus.
    #[serde(default = "default_i2c_device")]
    pub i2c_device: PathBuf,
    /// The displacement gauge.
    pub displacement: DisplacementConfig,
    /// The test cartridge's tag EEPROM; without it, cartridge scenarios fail.
    #[serde(default)]
    pub tag_eeprom: Option<EepromConfig>,
}

/// `[pi.displacement]`: a linear gauge read by an ADS1115.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DisplacementConfig {
    /// I2C address of the ADS1115.
    #[serde(default = "default_ads_address")]
    pub address: u8,
    /// Single-ended input 0 to 3.
    #[serde(default)]
    pub input: u8,
    /// Full scale of the gain setting, mV.
    #[serde(default = "default_full_scale_mv")]
    pub full_scale_mv: u32,
    /// Conversion rate, samples per second.
    #[serde(default = "default_data_rate_sps")]
    pub data_rate_sps: u32,
    /// Counts at zero depth (calibrate against gauge blocks).
    pub zero_counts: i32,
    /// µm per count.
    pub um_per_count: f64,
    /// Readings averaged per measurement.
    #[serde(default = "default_samples")]
    pub samples: u32,
}

/// `[pi.tag_eeprom]`: the test cartridge's tag, written on the jig's bus.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EepromConfig {
    /// I2C address.
    #[serde(default = "default_eeprom_address")]
    pub address: u8,
    /// Page size, bytes.
    #[serde(default = "default_page_bytes")]
    pub page_bytes: usize,
    /// Write cycle time, ms.
    #[serde(default = "default_write_cycle_ms")]
    pub write_cycle_ms: u64,
}

fn default_restart_timeout_s() -> u64 {
    30
}
fn default_gpio_chip() -> PathBuf {
    PathBuf::from("/dev/gpiochip0")
}
fn default_edge_jitter_us() -> f64 {
    50.0
}
fn default_i2c_device() -> PathBuf {
    PathBuf::from("/dev/i2c-1")
}
fn default_ads_address() -> u8 {
    0x48
}
fn default_full_scale_mv() -> u32 {
    4096
}
fn default_data_rate_sps() -> u32 {
    128
}
fn default_samples() -> u32 {
    8
}
fn default_eeprom_address() -> u8 {
    0x50
}
fn default_page_bytes() -> usize {
    8
}
fn default_write_cycle_ms() -> u64 {
    5
}

/// A GPIO line and whether it is active-low (`"!17"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinSpec {
    /// Line offset on the chip.
    pub line: u32,
    /// Active-low.
    pub active_low: bool,
}

/// Parses a pin: a line offset with an optional leading `!` for active-low.
pub fn parse_pin(key: &str, text: &str) -> Result<PinSpec> {
    let t = text.trim();
    let (active_low, number) = match t.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let line = number.parse::<u32>().map_err(|_| {
        HilError::Config(format!(
            "pi.{key}: expected a line offset like \"17\" or \"!17\", got \"{text}\""
        ))
    })?;
    Ok(PinSpec { line, active_low })
}

/// The jig's instruments, as traits.
pub struct PiInstruments {
    /// The jig's monotonic clock (the edges' clock).
    pub clock: Box<dyn Clock>,
    /// Optical stroke sensor.
    pub stroke_sensor: Box<dyn EdgeInput>,
    /// Motor power sense.
    pub motor_power: Box<dyn EdgeInput>,
    /// The rig's E-stop line, if wired.
    pub estop_sense: Option<Box<dyn EdgeInput>>,
    /// The rig's cartridge switch line, if wired.
    pub cartridge_sense: Option<Box<dyn EdgeInput>>,
    /// Displacement gauge.
    pub gauge: Box<dyn Displacement>,
    /// E-stop relay.
    pub estop_relay: Box<dyn Relay>,
    /// Cartridge fixture relay.
    pub cartridge_relay: Box<dyn Relay>,
    /// Needle brake relay, if fitted.
    pub jam_relay: Option<Box<dyn Relay>>,
    /// Host link relay, if fitted.
    pub host_link_relay: Option<Box<dyn Relay>>,
    /// Tag EEPROM writer, if fitted.
    pub tag_writer: Option<Box<dyn TagWriter>>,
}

/// Opens the Pi's instruments. Without the `pi` feature this fails with what to do.
pub fn open_instruments(config: &PiConfig) -> Result<PiInstruments> {
    #[cfg(feature = "pi")]
    {
        linux::open(config)
    }
    #[cfg(not(feature = "pi"))]
    {
        let _ = config;
        Err(HilError::Unsupported {
            what: "NEEDLE_RIG=pi".into(),
            why: "hil-tests was built without its Pi drivers: run with --features pi".into(),
        })
    }
}

/// The jig on the bench.
pub struct PiJig {
    inst: PiInstruments,
    strokes: StrokeCounter,
    edge_jitter_us: f64,
    description: String,
}

impl std::fmt::Debug for PiJig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

/// How often the jig looks at its inputs while waiting. Timing comes from the edges'
/// timestamps, not from this.
const POLL: Duration = Duration::from_millis(1);

impl PiJig {
    /// A jig with these instruments.
    pub fn new(inst: PiInstruments, edge_jitter_us: f64, description: String) -> Self {
        Self {
            inst,
            strokes: StrokeCounter::default(),
            edge_jitter_us,
            description,
        }
    }

    fn pump(&mut self) -> Result<()> {
        let edges = self.inst.stroke_sensor.drain()?;
        self.strokes.feed(&edges);
        Ok(())
    }

    fn relay<'a>(
        relay: &'a mut Option<Box<dyn Relay>>,
        what: &str,
        key: &str,
    ) -> Result<&'a mut Box<dyn Relay>> {
        relay.as_mut().ok_or_else(|| HilError::Unsupported {
            what: what.into(),
            why: format!("the jig config has no pi.{key}"),
        })
    }
}

fn first(edges: &[Edge], rising: bool) -> Option<u64> {
    edges.iter().find(|e| e.rising == rising).map(|e| e.at_us)
}

impl Jig for PiJig {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn now_us(&mut self) -> Result<u64> {
        Ok(self.inst.clock.now_us())
    }

    fn depth(&mut self) -> Result<DepthReading> {
        let depth_um = self.inst.gauge.read_um()?;
        Ok(DepthReading {
            depth_um,
            at_us: self.inst.clock.now_us(),
        })
    }

    fn instant_rate(&mut self) -> Result<RateReading> {
        self.pump()?;
        let rate_hz = self.strokes.instant_rate_hz().unwrap_or(0.0);
        let at_us = self
            .strokes
            .last()
            .map_or_else(|| self.inst.clock.now_us(), |l| l.1);
        Ok(RateReading { rate_hz, at_us })
    }

    fn stroke_rate(&mut self, window: Duration) -> Result<RateMeasurement> {
        self.pump()?;
        let from = self.inst.clock.now_us();
        std::thread::sleep(window);
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            self.pump()?;
            if let Some((rate_hz, strokes, window_s)) = self.strokes.rate_since(from) {
                if window_s * 1e6 >= window.as_micros() as f64 * 0.9 {
                    let uncertainty_hz =
                        rate_uncertainty_hz(rate_hz, window_s, self.edge_jitter_us);
                    return Ok(RateMeasurement {
                        rate_hz,
                        uncertainty_hz,
                        window_s,
                        strokes,
                    });
                }
            }
            if Instant::now() > deadline {
                return Err(HilError::Jig(
                    "too few stroke edges in the window: the cam is not turning".into(),
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    fn strokes(&mut self) -> Result<u64> {
        self.pump()?;
        Ok(self.strokes.count())
    }

    fn motor_powered(&mut self) -> Result<bool> {
        self.inst.motor_power.level()
    }

    fn actuate(&mut self, action: Actuation<'_>) -> Result<()> {
        match action {
            Actuation::EStop(pressed) => self.inst.estop_relay.set(pressed),
            Actuation::SeatCartridge(cartridge) => {
                let writer =
                    self.inst
                        .tag_writer
                        .as_mut()
                        .ok_or_else(|| HilError::Unsupported {
                            what: "seating a test cartridge".into(),
                            why: "the jig config has no [pi.tag_eeprom] to write its tag".into(),
                        })?;
                self.inst.cartridge_relay.set(false)?;
                // The jig's EEPROM holds a tag, no chip: the rig runs with
                // cartridge.chip_required = false until the ATECC608 driver exists.
                writer.write_tag(&needled::cartridge::image_of(&cartridge.tag))?;
                self.inst.cartridge_relay.set(true)
            }
            Actuation::PullCartridge => self.inst.cartridge_relay.set(false),
            Actuation::Jam(on) => {
                Self::relay(&mut self.inst.jam_relay, "jamming the needle", "jam_relay")?.set(on)
            }
            Actuation::CutHostLink(cut) => Self::relay(
                &mut self.inst.host_link_relay,
                "cutting the host link",
                "host_link_relay",
            )?
            .set(cut),
        }
    }

    fn time_motor_off(&mut self, action: Actuation<'_>, timeout: Duration) -> Result<Interval> {
        if !self.inst.motor_power.level()? {
            return Err(HilError::Jig(format!(
                "the motor was not powered before {action:?}"
            )));
        }
        self.inst.motor_power.drain()?;
        let mut sense = match action {
            Actuation::EStop(true) => self.inst.estop_sense.take(),
            Actuation::PullCartridge => self.inst.cartridge_sense.take(),
            _ => None,
        };
        if let Some(s) = sense.as_mut() {
            s.drain()?;
        }
        let commanded = self.inst.clock.now_us();
        let acted = self.actuate(action);
        let deadline = Instant::now() + timeout;
        let mut start = None;
        let result = loop {
            if let Err(e) = acted {
                break Err(e);
            }
            if let Some(s) = sense.as_mut() {
                // The E-stop sense is active when pressed; the cartridge sense when seated.
                let edges = s.drain()?;
                let wanted = matches!(action, Actuation::EStop(_));
                start = start.or(first(&edges, wanted));
            }
            let off = first(&self.inst.motor_power.drain()?, false);
            if let Some(off) = off {
                if sense.is_none() || start.is_some() {
                    break Ok(off);
                }
            }
            if Instant::now() > deadline {
                break Err(HilError::Timeout {
                    what: format!("the motor to lose power after {action:?}"),
                    waited: timeout,
                });
            }
            std::thread::sleep(POLL);
        };
        match action {
            Actuation::EStop(true) => self.inst.estop_sense = sense,
            Actuation::PullCartridge => self.inst.cartridge_sense = sense,
            _ => {}
        }
        let off = result?;
        let ms = |us: u64| us as f64 / 1_000.0;
        Ok(match start {
            // Both edges timestamped by the kernel: exact.
            Some(start) => Interval::exact(ms(off.saturating_sub(start))),
            // Only the command time: the relay's operate time is inside the figure.
            None => Interval::bracket(0.0, ms(off.saturating_sub(commanded))),
        })
    }
}

/// The rig's service on the bench network.
pub struct PiRig {
    config: PiConfig,
    api: Api,
    settings: RigSettings,
}

impl std::fmt::Debug for PiRig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PiRig")
            .field("url", &self.config.url)
            .finish_non_exhaustive()
    }
}

impl PiConfig {
    /// How the jig trusts the rig's `https://` service: `tls_sha256` or `ca_file`, not both;
    /// an `https://` url needs one of them, an `http://` one neither.
    pub fn tls(&self) -> Result<Option<needle_client::Tls>> {
        let https = self.url.starts_with("https://");
        match (&self.tls_sha256, &self.ca_file) {
            (Some(_), Some(_)) => Err(HilError::Config(
                "[pi] sets both tls_sha256 and ca_file: give one".into(),
            )),
            (Some(_), None) | (None, Some(_)) if !https => Err(HilError::Config(format!(
                "[pi] tls_sha256/ca_file given, but url {} is not https://",
                self.url
            ))),
            (Some(pin), None) => Ok(Some(needle_client::Tls::Sha256(pin.clone()))),
            (None, Some(pem)) => Ok(Some(needle_client::Tls::CaFile(pem.clone()))),
            (None, None) if https => Err(HilError::Config(format!(
                "[pi] url {} is https://: set tls_sha256 (needled logs it; `needlectl \
                 tls-fingerprint`) or ca_file",
                self.url
            ))),
            (None, None) => Ok(None),
        }
    }
}

impl PiRig {
    /// Reaches the rig's service and checks that its configuration meets `options`.
    pub fn open(config: &PiConfig, options: RigOptions) -> Result<PiRig> {
        let text = std::fs::read_to_string(&config.rig_config)
            .map_err(|e| HilError::io(&config.rig_config, e))?;
        let settings =
            RigSettings::from_needled_config(&text, &config.rig_config.display().to_string())?;
        check_options(&settings, &config.rig_config.display().to_string(), options)?;
        let endpoint = Endpoint {
            base: config.url.trim_end_matches('/').to_string(),
            operator_token: config
                .operator_token
                .clone()
                .unwrap_or_else(|| config.token.clone()),
            technician_token: config.token.clone(),
        };
        let api = Api::with_tls(endpoint, crate::sim::REQUEST_TIMEOUT, config.tls()?)
            .map_err(|e| HilError::Config(format!("[pi] TLS: {e}")))?;
        let rig = PiRig {
            config: config.clone(),
            api,
            settings,
        };
        rig.wait_healthy(Duration::from_secs(5))?;
        Ok(rig)
    }

    fn wait_healthy(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let last = match self.api.call(None, "GET", "/v1/health", None) {
                Ok(r) if r.status == 200 && r.body["status"] == "ok" => return Ok(()),
                Ok(r) => format!("HTTP {} {}", r.status, r.body),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                return Err(HilError::Service(format!(
                    "cannot reach a healthy needled at {}: {last}",
                    self.config.url
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn run(what: &str, command: &[String]) -> Result<()> {
        let (program, args) = command
            .split_first()
            .ok_or_else(|| HilError::Config(format!("pi.{what}: empty command")))?;
        let status = Command::new(program)
            .args(args)
            .status()
            .map_err(|e| HilError::Service(format!("pi.{what} {command:?}: {e}")))?;
        if !status.success() {
            return Err(HilError::Service(format!(
                "pi.{what} {command:?} failed: {status}"
            )));
        }
        Ok(())
    }
}

/// Whether a rig running `settings` can serve a scenario needing `options`.
pub fn check_options(settings: &RigSettings, origin: &str, options: RigOptions) -> Result<()> {
    if let Some(min) = options.session_time_limit_min {
        if settings.session_time_limit_min != min {
            return Err(HilError::Unsupported {
                what: format!("a session time limit of {min} min"),
                why: format!(
                    "{origin} sets session.time_limit_min = {}: set it to {min} (warning_before_min = 0) on the \
                     bench rig for this scenario",
                    settings.session_time_limit_min
                ),
            });
        }
    }
    if let Some(ma) = options.max_current_ma {
        if settings.max_current_ma < ma {
            return Err(HilError::Unsupported {
                what: format!(
                    "a current limit of at least {ma} mA (only the stall detector sees a jam)"
                ),
                why: format!(
                    "{origin} sets safety.max_current_ma = {}",
                    settings.max_current_ma
                ),
            });
        }
    }
    Ok(())
}

impl Rig for PiRig {
    fn kind(&self) -> &'static str {
        "pi"
    }

    fn api(&self) -> Api {
        self.api.clone()
    }

    fn settings(&self) -> &RigSettings {
        &self.settings
    }

    fn factory_key(&self) -> Result<FactoryKey> {
        let path = &self.config.factory_key;
        let text = std::fs::read_to_string(path).map_err(|e| HilError::io(path, e))?;
        let mut words = text.split_whitespace();
        let bad = |why: &str| HilError::Config(format!("{}: {why}", path.display()));
        let (Some(id), Some(secret)) = (words.next(), words.next()) else {
            return Err(bad(
                "expected \"ID HEX\" as needle-factory keygen writes it",
            ));
        };
        let secret = hex::decode(secret).map_err(|_| bad("the key is not hex"))?;
        FactoryKey::from_secret(id, &secret).map_err(|e| bad(&e.to_string()))
    }

    fn kill_service(&mut self) -> Result<()> {
        let command = self
            .config
            .kill_command
            .clone()
            .ok_or_else(|| HilError::Unsupported {
                what: "killing the rig's service".into(),
                why: "the jig config has no pi.kill_command".into(),
            })?;
        Self::run("kill_command", &command)
    }

    fn start_service(&mut self) -> Result<()> {
        if let Some(command) = self.config.start_command.clone() {
            Self::run("start_command", &command)?;
        }
        self.wait_healthy(Duration::from_secs(self.config.restart_timeout_s))
    }

    fn versions(&self) -> Versions {
        let firmware = match self.api.call(None, "GET", "/v1/version", None) {
            Ok(r) if r.status == 200 => r.body.to_string(),
            _ => "unknown: the service has no GET /v1/version".into(),
        };
        Versions {
            rig: "pi".into(),
            firmware,
            rig_config_sha256: self.settings.config_sha256.clone(),
            suite: format!(
                "hil-tests {} (git {})",
                env!("CARGO_PKG_VERSION"),
                crate::sim::git_revision()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::path::Path;
    use std::rc::Rc;

    use super::*;
    use crate::api::Role;

    /// The example jig configuration's `[pi]`, with `url`, `tls_sha256` and `ca_file` set.
    fn pi_config(url: &str, pin: Option<&str>, ca: Option<&str>) -> PiConfig {
        let doc: toml::Value = toml::from_str(include_str!("../../jig.example.toml")).unwrap();
        let mut pi = doc["pi"].as_table().unwrap().clone();
        pi.insert("url".into(), url.into());
        pi.remove("tls_sha256");
        pi.remove("ca_file");
        if let Some(pin) = pin {
            pi.insert("tls_sha256".into(), pin.into());
        }
        if let Some(ca) = ca {
            pi.insert("ca_file".into(), ca.into());
        }
        toml::Value::Table(pi).try_into().unwrap()
    }

    #[test]
    fn pi_tls_trust_is_a_pin_or_a_pem_file_and_https_needs_one() {
        let pin = "ab".repeat(32);
        assert!(pi_config("http://rig:7878", None, None)
            .tls()
            .unwrap()
            .is_none());
        let tls = pi_config("https://rig:7878", Some(&pin), None)
            .tls()
            .unwrap();
        assert!(matches!(tls, Some(needle_client::Tls::Sha256(p)) if p == pin));
        let tls = pi_config("https://rig:7878", None, Some("/etc/rig.pem"))
            .tls()
            .unwrap();
        assert!(
            matches!(tls, Some(needle_client::Tls::CaFile(p)) if p == Path::new("/etc/rig.pem"))
        );
        for (config, says) in [
            (pi_config("https://rig:7878", None, None), "set tls_sha256"),
            (
                pi_config("https://rig:7878", Some(&pin), Some("/x.pem")),
                "both",
            ),
            (
                pi_config("http://rig:7878", Some(&pin), None),
                "is not https://",
            ),
        ] {
            let e = config.tls().unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    /// The jig's API client against a real needled serving TLS off loopback, as a rig Pi
    /// does: trusted by the certificate's pin it answers; by another pin it is refused.
    #[test]
    fn the_jig_reaches_a_tls_needled_by_its_pin_and_refuses_another_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("test.toml");
        std::fs::write(&config, "[control]\nmax_tick_gap_ms = 500\n").unwrap();
        let running = needle_client::harness::Launch::new(
            crate::sim::needled_binary().unwrap(),
            &config,
            dir.path(),
        )
        .bind("0.0.0.0:0")
        .start()
        .unwrap();
        let endpoint = || Endpoint {
            base: running.base(),
            operator_token: running.token("operator").unwrap(),
            technician_token: running.token("technician").unwrap(),
        };
        assert!(
            endpoint().base.starts_with("https://"),
            "{}",
            endpoint().base
        );
        let pin = running.tls_sha256.clone().expect("a TLS fingerprint");
        let timeout = std::time::Duration::from_secs(10);
        let api =
            Api::with_tls(endpoint(), timeout, Some(needle_client::Tls::Sha256(pin))).unwrap();
        assert!(api.client(Role::Operator).status().is_ok());
        assert!(api.client(Role::Technician).version().is_ok());
        let other = Api::with_tls(
            endpoint(),
            timeout,
            Some(needle_client::Tls::Sha256("00".repeat(32))),
        )
        .unwrap();
        let e = other.client(Role::Operator).status().unwrap_err();
        assert_eq!(e.status(), None, "refused before any HTTP answer: {e}");
        // Without TLS trust the https:// service is not reached either.
        assert!(Api::new(endpoint(), timeout)
            .client(Role::Operator)
            .status()
            .is_err());
        let e = Api::with_tls(
            endpoint(),
            timeout,
            Some(needle_client::Tls::Sha256("xyz".into())),
        );
        assert!(
            e.is_err(),
            "a malformed pin is refused when the client is built"
        );
    }

    #[test]
    fn pins_parse_with_active_low_mark() {
        assert_eq!(
            parse_pin("estop_relay", "5").unwrap(),
            PinSpec {
                line: 5,
                active_low: false
            }
        );
        assert_eq!(
            parse_pin("estop_relay", " !22 ").unwrap(),
            PinSpec {
                line: 22,
                active_low: true
            }
        );
        let e = parse_pin("estop_relay", "GPIO5").unwrap_err().to_string();
        assert!(e.contains("pi.estop_relay") && e.contains("GPIO5"), "{e}");
    }

    /// A fake bench: a shared timeline that the fake inputs read and the relays act on.
    #[derive(Default)]
    struct Bench {
        now_us: u64,
        motor: bool,
        estop: bool,
        cartridge: bool,
        motor_edges: Vec<Edge>,
        estop_edges: Vec<Edge>,
        stroke_edges: Vec<Edge>,
        tag: Vec<u8>,
        /// The rig's E-stop line follows the relay after this, and the motor goes off this
        /// much after the line.
        relay_operate_us: u64,
        motor_off_after_us: u64,
    }

    type Shared = Rc<RefCell<Bench>>;

    struct FakeClock(Shared);
    impl Clock for FakeClock {
        fn now_us(&mut self) -> u64 {
            let mut b = self.0.borrow_mut();
            b.now_us += 100;
            b.now_us
        }
    }

    struct Input(Shared, &'static str);
    impl EdgeInput for Input {
        fn drain(&mut self) -> Result<Vec<Edge>> {
            let mut b = self.0.borrow_mut();
            Ok(match self.1 {
                "motor" => std::mem::take(&mut b.motor_edges),
                "estop" => std::mem::take(&mut b.estop_edges),
                _ => std::mem::take(&mut b.stroke_edges),
            })
        }
        fn level(&mut self) -> Result<bool> {
            let b = self.0.borrow();
            Ok(match self.1 {
                "motor" => b.motor,
                "estop" => b.estop,
                _ => false,
            })
        }
    }

    struct FakeRelay(Shared, &'static str);
    impl Relay for FakeRelay {
        fn set(&mut self, on: bool) -> Result<()> {
            let mut b = self.0.borrow_mut();
            match self.1 {
                "estop" if on && !b.estop => {
                    let line = b.now_us + b.relay_operate_us;
                    let off = line + b.motor_off_after_us;
                    b.estop = true;
                    b.motor = false;
                    b.estop_edges.push(Edge {
                        at_us: line,
                        rising: true,
                    });
                    b.motor_edges.push(Edge {
                        at_us: off,
                        rising: false,
                    });
                }
                "cartridge" => b.cartridge = on,
                _ => {}
            }
            Ok(())
        }
    }

    struct Gauge;
    impl Displacement for Gauge {
        fn read_um(&mut self) -> Result<f64> {
            Ok(1_234.5)
        }
    }

    struct Tag(Shared);
    impl TagWriter for Tag {
        fn write_tag(&mut self, image: &[u8]) -> Result<()> {
            let mut b = self.0.borrow_mut();
            assert!(
                !b.cartridge,
                "the tag is written while the cartridge is out"
            );
            b.tag = image.to_vec();
            Ok(())
        }
    }

    fn jig(bench: &Shared, estop_sense: bool) -> PiJig {
        let inst = PiInstruments {
            clock: Box::new(FakeClock(bench.clone())),
            stroke_sensor: Box::new(Input(bench.clone(), "stroke")),
            motor_power: Box::new(Input(bench.clone(), "motor")),
            estop_sense: estop_sense
                .then(|| Box::new(Input(bench.clone(), "estop")) as Box<dyn EdgeInput>),
            cartridge_sense: None,
            gauge: Box::new(Gauge),
            estop_relay: Box::new(FakeRelay(bench.clone(), "estop")),
            cartridge_relay: Box::new(FakeRelay(bench.clone(), "cartridge")),
            jam_relay: None,
            host_link_relay: None,
            tag_writer: Some(Box::new(Tag(bench.clone()))),
        };
        PiJig::new(inst, 20.0, "fake".into())
    }

    #[test]
    fn estop_timing_runs_from_the_sensed_line_edge_to_the_motor_edge() {
        let bench: Shared = Rc::new(RefCell::new(Bench {
            motor: true,
            relay_operate_us: 4_000,
            motor_off_after_us: 700,
            ..Bench::default()
        }));
        let mut j = jig(&bench, true);
        let t = j
            .time_motor_off(Actuation::EStop(true), Duration::from_millis(100))
            .unwrap();
        // Exact, and without the relay's 4 ms operate time.
        assert_eq!(t, Interval::exact(0.7));
        assert!(
            j.inst.estop_sense.is_some(),
            "the sense input is given back"
        );
    }

    #[test]
    fn without_a_sense_line_the_timing_is_an_upper_bound_from_the_command() {
        let bench: Shared = Rc::new(RefCell::new(Bench {
            motor: true,
            relay_operate_us: 4_000,
            motor_off_after_us: 700,
            ..Bench::default()
        }));
        let mut j = jig(&bench, false);
        let t = j
            .time_motor_off(Actuation::EStop(true), Duration::from_millis(100))
            .unwrap();
        assert_eq!(t.lo_ms, 0.0);
        assert!((t.hi_ms - 4.7).abs() < 0.2, "{t:?}");
    }

    #[test]
    fn timing_refuses_a_motor_that_was_not_running() {
        let bench: Shared = Rc::new(RefCell::new(Bench::default()));
        let mut j = jig(&bench, true);
        let e = j
            .time_motor_off(Actuation::EStop(true), Duration::from_millis(10))
            .unwrap_err();
        assert!(e.to_string().contains("not powered"), "{e}");
    }

    #[test]
    fn seating_writes_the_tag_first_and_missing_actuators_say_which_key() {
        let bench: Shared = Rc::new(RefCell::new(Bench::default()));
        let mut j = jig(&bench, false);
        j.actuate(Actuation::SeatCartridge(&needled::cartridge::Provisioned {
            chip_secret: [0; 32],
            tag: vec![1, 2, 3],
        }))
        .unwrap();
        assert_eq!(
            bench.borrow().tag,
            needled::cartridge::image_of(&[1, 2, 3]).to_vec()
        );
        assert!(bench.borrow().cartridge);
        j.actuate(Actuation::PullCartridge).unwrap();
        assert!(!bench.borrow().cartridge);
        let e = j.actuate(Actuation::Jam(true)).unwrap_err().to_string();
        assert!(e.contains("pi.jam_relay"), "{e}");
        let e = j
            .actuate(Actuation::CutHostLink(true))
            .unwrap_err()
            .to_string();
        assert!(e.contains("pi.host_link_relay"), "{e}");
    }

    #[test]
    fn stroke_rate_counts_kernel_timestamped_edges() {
        let bench: Shared = Rc::new(RefCell::new(Bench::default()));
        let mut j = jig(&bench, false);
        // Edges at 100 Hz from just after "now".
        let edges: Vec<Edge> = (0..200)
            .map(|i| Edge {
                at_us: 1_000 + i * 10_000,
                rising: true,
            })
            .collect();
        bench.borrow_mut().stroke_edges = edges;
        let r = j.stroke_rate(Duration::from_millis(1)).unwrap();
        assert!((r.rate_hz - 100.0).abs() < 1e-9, "{r:?}");
        assert_eq!(r.strokes, 199);
        assert!(r.uncertainty_hz < 0.01);
        assert_eq!(j.strokes().unwrap(), 200);
        assert!((j.instant_rate().unwrap().rate_hz - 100.0).abs() < 1e-9);
        assert_eq!(j.depth().unwrap().depth_um, 1_234.5);
    }

    #[test]
    fn a_rig_config_that_cannot_serve_a_scenario_is_refused_with_the_fix() {
        let s = RigSettings::from_needled_config("", "rig.toml").unwrap();
        let e = check_options(
            &s,
            "rig.toml",
            RigOptions {
                session_time_limit_min: Some(1),
                ..RigOptions::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("rig.toml") && e.contains("time_limit_min = 60"),
            "{e}"
        );
        assert!(check_options(
            &s,
            "rig.toml",
            RigOptions {
                max_current_ma: Some(100_000),
                ..RigOptions::default()
            }
        )
        .is_err());
        assert!(check_options(&s, "rig.toml", RigOptions::default()).is_ok());
    }

    #[test]
    fn example_jig_config_parses() {
        let text = include_str!("../../jig.example.toml");
        let c = crate::config::JigConfig::parse(text, "jig.example.toml").unwrap();
        let pi = c.pi.unwrap();
        assert_eq!(pi.displacement.address, 0x48);
        for pin in [
            &pi.stroke_sensor,
            &pi.motor_power_sense,
            &pi.estop_relay,
            &pi.cartridge_relay,
        ] {
            parse_pin("pin", pin).unwrap();
        }
    }
}
