//! The service configuration: a TOML file, deserialized into typed sections and validated.
//!
//! Every key carries its unit in its name (`max_depth_um`, `ramp_time_ms`, `rate_min_hz`),
//! as Klipper's configuration does. Every section and key is optional except where a rig must
//! be described explicitly (pin maps, ADC calibration); defaults are the core's defaults and
//! the clinical defaults of the domain brief. Unknown keys are refused, so a typo never turns
//! into a silently ignored setting.
//!
//! Every error names the file, the line and the key, and what was expected:
//!
//! ```text
//! config/default.toml:12: key 'depth.max_depth_um': expected 1 to 5000, got 9000
//! ```
//!
//! Errors found while deserializing carry toml's span; errors found by [`Config::validate`]
//! name a key path, whose line is looked up in an index of the document built from the same
//! text with [`toml::Spanned`] leaves (see [`KeyIndex`]).
//!
//! `config/default.toml` documents every key for operators.
//!
//! ```
//! let config = needled::config::parse("[depth]\nmax_depth_um = 3000\n", "example.toml").unwrap();
//! assert_eq!(config.depth.max_depth_um, 3000);
//! let err = needled::config::parse("[depth]\nmax_depth_um = 9000\n", "example.toml").unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "example.toml:2: key 'depth.max_depth_um': expected 1 to 5000, got 9000"
//! );
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};

use needle_core::config::{ControllerConfig, DepthConfig, SafetyConfig, StrokeConfig};
use needle_core::units::{
    Micrometers, Micros, MilliAmps, MilliCelsius, MilliHertz, MilliVolts, Permyriad,
};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// A configuration the service refuses to start with: where, which key, and what was expected.
///
/// Displays as `FILE:LINE: key 'KEY': MESSAGE`; the line or the key is left out when it is not
/// known (an unreadable file, a syntax error before any key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or other origin) the text came from, as given to [`load`] or [`parse`].
    pub origin: String,
    /// 1-based line of the offending key or value, if known.
    pub line: Option<usize>,
    /// Dotted key path such as `depth.max_depth_um` or `service.tokens[1].token`, if known.
    pub key: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl ConfigError {
    /// Stable error code for the API and logs.
    pub fn code(&self) -> &'static str {
        "config_invalid"
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key '{key}'")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A value [`Config::validate`] refuses, named by its key path; [`parse`] adds file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Dotted key path, such as `areas.face.max_depth_um`.
    pub key: String,
    /// What was expected, and what was found.
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key '{}': {}", self.key, self.message)
    }
}

impl std::error::Error for Invalid {}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        key: key.into(),
        message: message.into(),
    }
}

fn in_range<T: PartialOrd + fmt::Display>(
    key: &str,
    value: T,
    range: RangeInclusive<T>,
) -> Result<(), Invalid> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("expected {} to {}, got {value}", range.start(), range.end()),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// Reads, parses and validates the configuration file at `path`.
///
/// A relative `service.data_dir` is resolved against the current directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        origin: origin.clone(),
        line: None,
        key: None,
        message: format!("cannot read the configuration file: {e}"),
    })?;
    parse(&text, &origin)
}

/// Reads only the `[hardware]` table of the configuration file at `path`, for
/// `needled --safe-outputs`: the outputs must be driven safe even when another section of the
/// file would be refused. The table itself is parsed as strictly as by [`load`], and the
/// section of the chosen backend must be present; nothing else is checked.
pub fn load_hardware(path: &Path) -> Result<HardwareConfig, ConfigError> {
    let origin = path.display().to_string();
    let error = |line: Option<usize>, key: Option<String>, message: String| ConfigError {
        origin: origin.clone(),
        line,
        key,
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        error(
            None,
            None,
            format!("cannot read the configuration file: {e}"),
        )
    })?;
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| {
        let line = e.span().map(|s| line_of(&text, s.start));
        error(line, None, e.message().trim().replace('\n', ", "))
    })?;
    let hardware = match table.remove("hardware") {
        Some(value) => HardwareConfig::deserialize(value)
            .map_err(|e| error(None, Some("hardware".into()), e.message().to_owned()))?,
        None => HardwareConfig::default(),
    };
    let missing = match hardware.backend {
        Backend::Sim | Backend::Link => false,
        Backend::Rppal => hardware.rppal.is_none(),
        Backend::Linux => hardware.linux.is_none(),
    };
    if missing {
        let e = missing_backend_section(hardware.backend);
        return Err(error(None, Some(e.key), e.message));
    }
    Ok(hardware)
}

/// Parses and validates configuration text; `origin` names it in errors (usually the path).
///
/// A relative `service.data_dir` is resolved against the current directory.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let index = KeyIndex::build(text);
    let error_at = |span: Option<Range<usize>>, key: Option<String>, message: String| ConfigError {
        origin: origin.to_owned(),
        line: span.map(|s| line_of(text, s.start)),
        key,
        message,
    };
    let mut config: Config = toml::from_str(text).map_err(|e| {
        let span = e.span();
        let key = span.clone().and_then(|s| index.key_at(text, s));
        // toml's messages may span lines ("invalid table header\nexpected `.`, `]`").
        let message = e.message().trim().replace('\n', ", ");
        error_at(span, key, message)
    })?;
    config.validate().map_err(|e| {
        let (span, present) = index.locate(&e.key);
        let message = if present {
            e.message
        } else {
            format!(
                "{} (the key is not set in the file: its default applies)",
                e.message
            )
        };
        error_at(span, Some(e.key), message)
    })?;
    if config.service.data_dir.is_relative() {
        let cwd = std::env::current_dir().map_err(|e| {
            let (span, _) = index.locate("service.data_dir");
            error_at(
                span,
                Some("service.data_dir".into()),
                format!("cannot resolve the relative path against the current directory: {e}"),
            )
        })?;
        config.service.data_dir = cwd.join(&config.service.data_dir);
    }
    Ok(config)
}

/// 1-based line number of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    let end = at.min(text.len());
    text.as_bytes()
        .get(..end)
        .map_or(0, |head| head.iter().filter(|b| **b == b'\n').count())
        + 1
}

// ---------------------------------------------------------------------------------------------
// Where keys are in the document
// ---------------------------------------------------------------------------------------------

/// Where every leaf value of a TOML document is, by dotted key path.
///
/// Built from the same text in two passes, with public toml APIs only: the first parses it into
/// a [`toml::Value`] to learn its shape, the second walks it again with a seed that asks for a
/// [`toml::Spanned`] around every non-table value (tables made implicitly by `[a.b]` headers
/// or dotted keys have no span in toml 0.8, so spans are only requested on leaves). A TOML
/// value always starts on its key's line, so a leaf's span gives its key's line.
#[derive(Debug, Default)]
pub struct KeyIndex {
    entries: Vec<(String, Range<usize>)>,
}

impl KeyIndex {
    /// Indexes `text`; a document that does not parse gives an empty index.
    pub fn build(text: &str) -> KeyIndex {
        let mut entries = Vec::new();
        if let Ok(shape) = toml::from_str::<toml::Value>(text) {
            let seed = LeafSeed {
                shape: &shape,
                path: String::new(),
                out: &mut entries,
            };
            if seed.deserialize(toml::Deserializer::new(text)).is_err() {
                entries.clear();
            }
        }
        KeyIndex { entries }
    }

    /// Span of the value at `key`, or of the first value under it (a table), or of the
    /// nearest enclosing table's first value; `true` if `key` itself is in the document.
    pub fn locate(&self, key: &str) -> (Option<Range<usize>>, bool) {
        let mut path = key;
        let mut exact = true;
        loop {
            if let Some((_, span)) = self.entries.iter().find(|(p, _)| p == path) {
                return (Some(span.clone()), exact);
            }
            let first_under = self
                .entries
                .iter()
                .filter(|(p, _)| {
                    p.strip_prefix(path)
                        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
                })
                .map(|(_, span)| span.clone())
                .min_by_key(|span| span.start);
            if first_under.is_some() {
                return (first_under, exact);
            }
            exact = false;
            match path.rfind(['.', '[']) {
                Some(cut) if cut > 0 => path = &path[..cut],
                _ => return (None, false),
            }
        }
    }

    /// The key an error span of toml's deserializer refers to: the value containing it, or the
    /// first value after it on the same line (an unknown key's span covers the key only), or
    /// the header of a `[table]` line.
    pub fn key_at(&self, text: &str, span: Range<usize>) -> Option<String> {
        if let Some((path, _)) = self
            .entries
            .iter()
            .filter(|(_, s)| s.start <= span.start && span.start < s.end.max(s.start + 1))
            .min_by_key(|(_, s)| s.end - s.start)
        {
            return Some(path.clone());
        }
        let line = line_of(text, span.start);
        if let Some((path, _)) = self
            .entries
            .iter()
            .filter(|(_, s)| s.start >= span.start && line_of(text, s.start) == line)
            .min_by_key(|(_, s)| s.start)
        {
            return Some(path.clone());
        }
        let line_text = text.lines().nth(line.saturating_sub(1))?.trim();
        let header = line_text.strip_prefix('[')?;
        let header = header.split(']').next()?.trim_start_matches('[').trim();
        (!header.is_empty()).then(|| header.to_owned())
    }
}

/// Deserializes a document along its known shape, recording the span of every leaf value.
struct LeafSeed<'a> {
    shape: &'a toml::Value,
    path: String,
    out: &'a mut Vec<(String, Range<usize>)>,
}

impl<'de> DeserializeSeed<'de> for LeafSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.shape {
            toml::Value::Table(_) | toml::Value::Array(_) => deserializer.deserialize_any(self),
            _ => {
                let leaf = toml::Spanned::<IgnoredAny>::deserialize(deserializer)?;
                self.out.push((self.path, leaf.span()));
                Ok(())
            }
        }
    }
}

impl<'de> Visitor<'de> for LeafSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML table or array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let toml::Value::Table(table) = self.shape else {
            return Err(de::Error::custom("document changed between passes"));
        };
        while let Some(key) = map.next_key::<String>()? {
            let Some(shape) = table.get(&key) else {
                return Err(de::Error::custom("document changed between passes"));
            };
            let path = if self.path.is_empty() {
                key
            } else {
                format!("{}.{key}", self.path)
            };
            map.next_value_seed(LeafSeed {
                shape,
                path,
                out: &mut *self.out,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let toml::Value::Array(array) = self.shape else {
            return Err(de::Error::custom("document changed between passes"));
        };
        for (i, shape) in array.iter().enumerate() {
            let seed = LeafSeed {
                shape,
                path: format!("{}[{i}]", self.path),
                out: &mut *self.out,
            };
            if seq.next_element_seed(seed)?.is_none() {
                break;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The configuration
// ---------------------------------------------------------------------------------------------

/// The whole service configuration. An empty file gives [`Config::default`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[service]`: network, data directory, logs, API tokens.
    pub service: ServiceConfig,
    /// `[control]`: the real-time control thread.
    pub control: ControlConfig,
    /// `[stroke]`: the stroke motor and its rate loop.
    pub stroke: StrokeSection,
    /// `[depth]`: the depth axis.
    pub depth: DepthSection,
    /// `[safety]`: the supervisor's limits.
    pub safety: SafetySection,
    /// `[areas]`: treatment areas and their depth ceilings. If present in the file it replaces
    /// the whole default list.
    pub areas: BTreeMap<String, AreaConfig>,
    /// `[session]`: treatment session rules.
    pub session: SessionConfig,
    /// `[cartridge]`: cartridge limits and the tag key.
    pub cartridge: CartridgeConfig,
    /// `[hardware]`: which backend drives the rig, and its pin map.
    pub hardware: HardwareConfig,
    /// `[sim]`: the simulated rig.
    pub sim: SimConfig,
    /// `[link]`: the serial link to a pen MCU (with `hardware.backend = "link"`).
    pub link: crate::hal::link::LinkConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            service: ServiceConfig::default(),
            control: ControlConfig::default(),
            stroke: StrokeSection::default(),
            depth: DepthSection::default(),
            safety: SafetySection::default(),
            areas: default_areas(),
            session: SessionConfig::default(),
            cartridge: CartridgeConfig::default(),
            hardware: HardwareConfig::default(),
            sim: SimConfig::default(),
            link: crate::hal::link::LinkConfig::default(),
        }
    }
}

// --- [service] -------------------------------------------------------------------------------

/// `[service]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// `bind`: address and port of the HTTP API. Default `127.0.0.1:7878`.
    pub bind: SocketAddr,
    /// `data_dir`: database, device key, generated tokens. Default `data`; after [`parse`] it
    /// is absolute (a relative path is resolved against the current directory).
    pub data_dir: PathBuf,
    /// `log_format`: `"human"` (default) or `"json"`.
    pub log_format: LogFormat,
    /// `telemetry_hz`: rate of the SSE telemetry stream, 1 to 100. Default 20.
    pub telemetry_hz: u32,
    /// `[[service.tokens]]`: API bearer tokens. Required for a non-loopback `bind`.
    pub tokens: Vec<TokenConfig>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 7878)),
            data_dir: PathBuf::from("data"),
            log_format: LogFormat::Human,
            telemetry_hz: 20,
            tokens: Vec::new(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// One API token.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// `token`: the bearer token, at least [`MIN_TOKEN_LEN`] visible ASCII characters.
    pub token: String,
    /// `role`: `"operator"` or `"technician"`.
    pub role: Role,
    /// `name`: who holds it, recorded as the actor of every event.
    pub name: String,
}

impl fmt::Debug for TokenConfig {
    // Never print the secret into logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenConfig")
            .field("token", &"<redacted>")
            .field("role", &self.role)
            .field("name", &self.name)
            .finish()
    }
}

/// Shortest accepted API token.
pub const MIN_TOKEN_LEN: usize = 16;

/// Tokens starting with this are placeholders from the shipped example files.
pub const PLACEHOLDER_TOKEN_PREFIX: &str = "CHANGE-ME";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs treatment sessions.
    Operator,
    /// Also services the rig: calibration, overrides, fault injection on the sim.
    Technician,
}

// --- [control] -------------------------------------------------------------------------------

/// `[control]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// `rate_hz`: control ticks per second, 100 to 10000. Default 1000.
    pub rate_hz: u32,
    /// `host_timeout_ms`: dead-man timeout while armed or running. Default 100.
    pub host_timeout_ms: u32,
    /// `max_tick_gap_ms`: a longer gap between ticks latches `ControlOverrun`. Default 50.
    pub max_tick_gap_ms: u32,
    /// `service_stall_ms`: the heartbeat thread refreshes the core's dead-man only while the
    /// service's monitor completed a pass within this time; a hung service or monitor stops
    /// the needles within `service_stall_ms + host_timeout_ms`. Default 1000.
    pub service_stall_ms: u32,
    /// `realtime_priority`: run the control and heartbeat threads with SCHED_FIFO. Default
    /// true.
    pub realtime_priority: bool,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            rate_hz: 1_000,
            host_timeout_ms: 100,
            max_tick_gap_ms: 50,
            service_stall_ms: 1_000,
            realtime_priority: true,
        }
    }
}

impl ControlConfig {
    /// The tick period, rounded down to whole microseconds.
    pub fn tick_period(&self) -> Micros {
        Micros(1_000_000 / u64::from(self.rate_hz.max(1)))
    }
}

// --- [stroke], [depth], [safety] ---------------------------------------------------------------

/// `[stroke]`: needle-core's [`StrokeConfig`] with units in the key names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)] // each field is the core field of the same name; see StrokeConfig
pub struct StrokeSection {
    pub edges_per_stroke: u32,
    pub rate_min_hz: u32,
    pub rate_max_hz: u32,
    pub rate_ceiling_hz: u32,
    pub ramp_time_ms: u32,
    pub feedforward_permyriad_per_hz: u32,
    pub kp_permyriad_per_hz: u32,
    pub ki_permyriad_per_hz_s: u32,
    pub max_duty_permyriad: u32,
    pub stall_ratio_permille: u32,
    pub stall_window_ms: u32,
}

impl Default for StrokeSection {
    fn default() -> Self {
        let c = StrokeConfig::default();
        Self {
            edges_per_stroke: c.edges_per_stroke,
            rate_min_hz: c.rate_min.as_hz(),
            rate_max_hz: c.rate_max.as_hz(),
            rate_ceiling_hz: c.rate_ceiling.as_hz(),
            ramp_time_ms: millis_u32(c.ramp_time),
            feedforward_permyriad_per_hz: c.feedforward_permyriad_per_hz,
            kp_permyriad_per_hz: c.kp_permyriad_per_hz,
            ki_permyriad_per_hz_s: c.ki_permyriad_per_hz_s,
            max_duty_permyriad: u32::from(c.max_duty.0),
            stall_ratio_permille: c.stall_ratio_permille,
            stall_window_ms: millis_u32(c.stall_window),
        }
    }
}

/// `[depth]`: needle-core's [`DepthConfig`] with units in the key names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)] // each field is the core field of the same name; see DepthConfig
pub struct DepthSection {
    pub steps_per_mm: u32,
    pub max_depth_um: u32,
    pub backlash_um: u32,
    pub speed_um_per_s: u32,
    pub running_speed_um_per_s: u32,
    pub accel_um_per_s2: u32,
    pub homing_fast_um_per_s: u32,
    pub homing_slow_um_per_s: u32,
    pub homing_backoff_um: u32,
    pub homing_travel_limit_um: u32,
    pub home_switch_window_um: u32,
    pub max_steps_per_tick: u32,
}

impl Default for DepthSection {
    fn default() -> Self {
        let c = DepthConfig::default();
        let um = |m: Micrometers| u32::try_from(m.0).unwrap_or(0);
        Self {
            steps_per_mm: c.steps_per_mm,
            max_depth_um: um(c.max_depth),
            backlash_um: um(c.backlash),
            speed_um_per_s: c.speed_um_per_s,
            running_speed_um_per_s: c.running_speed_um_per_s,
            accel_um_per_s2: c.accel_um_per_s2,
            homing_fast_um_per_s: c.homing_fast_um_per_s,
            homing_slow_um_per_s: c.homing_slow_um_per_s,
            homing_backoff_um: um(c.homing_backoff),
            homing_travel_limit_um: um(c.homing_travel_limit),
            home_switch_window_um: um(c.home_switch_window),
            max_steps_per_tick: c.max_steps_per_tick,
        }
    }
}

/// `[safety]`: needle-core's [`SafetyConfig`] limits with units in the key names. Its timing
/// fields (tick period, maximum tick gap, host timeout) come from `[control]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SafetySection {
    /// `max_current_ma`: motor current limit.
    pub max_current_ma: u32,
    /// `over_current_time_ms`: how long the current may stay above its limit.
    pub over_current_time_ms: u32,
    /// `max_temperature_c`: temperature limit, whole degrees Celsius.
    pub max_temperature_c: u32,
    /// `temperature_hysteresis_c`: how far under the limit before the fault may be cleared.
    pub temperature_hysteresis_c: u32,
    /// `min_supply_mv`: lowest supply voltage.
    pub min_supply_mv: u32,
    /// `under_voltage_time_ms`: how long the supply may stay under its minimum.
    pub under_voltage_time_ms: u32,
}

impl Default for SafetySection {
    fn default() -> Self {
        let c = SafetyConfig::default();
        let non_negative = |v: i32| u32::try_from(v).unwrap_or(0);
        Self {
            max_current_ma: non_negative(c.max_current.0),
            over_current_time_ms: millis_u32(c.over_current_time),
            max_temperature_c: non_negative(c.max_temperature.0 / 1000),
            temperature_hysteresis_c: non_negative(c.temperature_hysteresis.0 / 1000),
            min_supply_mv: non_negative(c.min_supply.0),
            under_voltage_time_ms: millis_u32(c.under_voltage_time),
        }
    }
}

fn millis_u32(t: Micros) -> u32 {
    u32::try_from(t.as_millis()).unwrap_or(u32::MAX)
}

// --- [areas] ---------------------------------------------------------------------------------

/// One treatment area, such as `[areas.face]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AreaConfig {
    /// `max_depth_um`: depth ceiling in this area; at most `depth.max_depth_um`.
    pub max_depth_um: u32,
    /// `time_limit_min`: session time limit in this area, if shorter than
    /// `session.time_limit_min`.
    #[serde(default)]
    pub time_limit_min: Option<u32>,
}

/// The default treatment areas and depth ceilings (domain brief: 0.5 to 2.5 mm, deeper for
/// scars and stretch marks on the body).
pub fn default_areas() -> BTreeMap<String, AreaConfig> {
    [
        ("face", 1_500),
        ("forehead", 1_000),
        ("neck", 1_000),
        ("decolletage", 1_500),
        ("hands", 1_000),
        ("body", 2_500),
        ("scalp", 1_500),
    ]
    .into_iter()
    .map(|(name, max_depth_um)| {
        (
            name.to_owned(),
            AreaConfig {
                max_depth_um,
                time_limit_min: None,
            },
        )
    })
    .collect()
}

// --- [session] -------------------------------------------------------------------------------

/// `[session]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// `time_limit_min`: longest session. Default 60.
    pub time_limit_min: u32,
    /// `warning_before_min`: warn this long before the limit. Default 5.
    pub warning_before_min: u32,
    /// `min_interval_days`: shortest interval between two sessions of one subject; a shorter
    /// one needs an override with a recorded reason. Default 28.
    pub min_interval_days: u32,
    /// `[[session.checklist]]`: what the operator confirms before a session may arm. If
    /// present in the file it replaces the whole default list.
    pub checklist: Vec<ChecklistItem>,
    /// `post_care`: after-care advice printed in every session report.
    pub post_care: String,
}

/// The default after-care advice (DOMAIN.md: redness for 24 to 48 hours).
pub const DEFAULT_POST_CARE: &str = "Expect redness and sensitivity for 24 to 48 hours. Keep the \
    area clean; no makeup for 24 hours; no retinoids, exfoliants or peels and no sun exposure for \
    48 hours; use sunscreen. Contact the clinic about swelling, pus, fever or pain that grows.";

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            time_limit_min: 60,
            warning_before_min: 5,
            min_interval_days: 28,
            checklist: default_checklist(),
            post_care: DEFAULT_POST_CARE.to_string(),
        }
    }
}

/// One item of the pre-treatment checklist.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecklistItem {
    /// `id`: stable identifier recorded with the answer, `[a-z0-9_]`.
    pub id: String,
    /// `text`: what the operator confirms.
    pub text: String,
    /// `required`: whether the session may not arm without it. Default true.
    #[serde(default = "yes")]
    pub required: bool,
}

fn yes() -> bool {
    true
}

/// The default checklist: the contraindications of the domain brief, consent, and numbing
/// (optional).
pub fn default_checklist() -> Vec<ChecklistItem> {
    [
        (
            "no_active_acne",
            "No active acne in the treatment area",
            true,
        ),
        ("no_eczema", "No eczema in the treatment area", true),
        ("no_rosacea", "No rosacea in the treatment area", true),
        ("no_keloid_history", "No history of keloid scarring", true),
        (
            "no_sunburn_or_tan",
            "Skin is not sunburned or freshly tanned",
            true,
        ),
        (
            "no_recent_actives",
            "No recent retinoids, exfoliants, chemical peels or laser treatment",
            true,
        ),
        ("consent", "The subject has given informed consent", true),
        (
            "numbing",
            "Numbing cream applied 20 to 30 minutes before",
            false,
        ),
    ]
    .into_iter()
    .map(|(id, text, required)| ChecklistItem {
        id: id.to_owned(),
        text: text.to_owned(),
        required,
    })
    .collect()
}

// --- [cartridge] -----------------------------------------------------------------------------

/// `[cartridge]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CartridgeConfig {
    /// `max_run_min`: run time budget of one cartridge. Default 30.
    pub max_run_min: u32,
    /// `max_strokes`: stroke budget of one cartridge. Default 300000.
    pub max_strokes: u64,
    /// `key_file`: the device key that authenticates tags; relative to `service.data_dir`.
    /// Default `device.key`.
    pub key_file: PathBuf,
}

impl Default for CartridgeConfig {
    fn default() -> Self {
        Self {
            max_run_min: 30,
            max_strokes: 300_000,
            key_file: PathBuf::from("device.key"),
        }
    }
}

// --- [hardware] ------------------------------------------------------------------------------

/// `[hardware]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HardwareConfig {
    /// `backend`: `"sim"` (default), `"rppal"`, `"linux"` or `"link"`.
    pub backend: Backend,
    /// `[hardware.rppal]`: required when `backend = "rppal"`.
    pub rppal: Option<RppalConfig>,
    /// `[hardware.linux]`: required when `backend = "linux"`.
    pub linux: Option<LinuxConfig>,
}

/// Which hardware backend builds the rig.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The simulated rig (needle-sim).
    #[default]
    Sim,
    /// A Raspberry Pi through rppal (cargo feature `rppal`).
    Rppal,
    /// Any Linux board through gpio-cdev, sysfs PWM and i2c-dev (cargo feature `linux`).
    Linux,
    /// A pen MCU running needle-core, over the serial link in `[link]`.
    Link,
}

impl Backend {
    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sim => "sim",
            Backend::Rppal => "rppal",
            Backend::Linux => "linux",
            Backend::Link => "link",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Pull resistor of an input pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pull {
    /// None (external resistor, or a push-pull sensor).
    #[default]
    None,
    /// Pull-up (`^` in the pin string).
    Up,
    /// Pull-down (`~` in the pin string).
    Down,
}

/// A pin: a number (BCM GPIO for rppal, line offset for linux) with Klipper-style marks.
///
/// In the file either an integer (`17`) or a string: `"!17"` is active-low (the input reads
/// active, or the output drives active, at a low level), `"^17"` enables the pull-up, `"~17"`
/// the pull-down; marks combine as `"^!17"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinSpec {
    /// BCM GPIO number or line offset.
    pub pin: u32,
    /// Active-low wiring.
    pub active_low: bool,
    /// Pull resistor (inputs only).
    pub pull: Pull,
}

impl PinSpec {
    /// An active-high pin without pull resistor.
    pub const fn plain(pin: u32) -> Self {
        Self {
            pin,
            active_low: false,
            pull: Pull::None,
        }
    }
}

impl fmt::Display for PinSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pull {
            Pull::None => {}
            Pull::Up => f.write_str("^")?,
            Pull::Down => f.write_str("~")?,
        }
        if self.active_low {
            f.write_str("!")?;
        }
        write!(f, "{}", self.pin)
    }
}

impl std::str::FromStr for PinSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = || {
            format!(
                "expected a pin number or a string like \"!17\" (active-low), \"^17\" (pull-up) \
                 or \"~17\" (pull-down), got \"{s}\""
            )
        };
        let mut spec = PinSpec::plain(0);
        let mut rest = s.trim();
        loop {
            let mut chars = rest.chars();
            match chars.next() {
                Some('!') if !spec.active_low => spec.active_low = true,
                Some('^') if spec.pull == Pull::None => spec.pull = Pull::Up,
                Some('~') if spec.pull == Pull::None => spec.pull = Pull::Down,
                _ => break,
            }
            rest = chars.as_str().trim_start();
        }
        if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
            return Err(expected());
        }
        spec.pin = rest.parse().map_err(|_| expected())?;
        Ok(spec)
    }
}

impl<'de> Deserialize<'de> for PinSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PinVisitor;

        impl Visitor<'_> for PinVisitor {
            type Value = PinSpec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a pin number or a string like \"!17\"")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PinSpec, E> {
                u32::try_from(v)
                    .map(PinSpec::plain)
                    .map_err(|_| E::custom(format!("expected a pin number 0 or above, got {v}")))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PinSpec, E> {
                u32::try_from(v)
                    .map(PinSpec::plain)
                    .map_err(|_| E::custom(format!("pin number {v} is too large")))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<PinSpec, E> {
                v.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_any(PinVisitor)
    }
}

/// Whether a pin is read or driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinRole {
    /// Read by the controller.
    Input,
    /// Driven by the controller.
    Output,
}

/// The pins every GPIO backend maps, by key name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinMap {
    /// `motor_enable`: stroke motor driver enable (output; low is the safe state).
    pub motor_enable: PinSpec,
    /// `depth_step`: STEP of the depth stepper driver (output).
    pub depth_step: PinSpec,
    /// `depth_dir`: DIR of the depth stepper driver (output; active moves deeper).
    pub depth_dir: PinSpec,
    /// `charge_pump`: toggled every control tick while no fault is latched (output). It feeds
    /// the retriggerable monostable the motor driver's enable is ANDed with (README, "Charge
    /// pump"), so the driver loses power when the ticks stop.
    pub charge_pump: PinSpec,
    /// `home_switch`: depth axis home switch (input).
    pub home_switch: PinSpec,
    /// `cartridge_switch`: cartridge-seated switch (input).
    pub cartridge_switch: PinSpec,
    /// `estop`: emergency stop (input; active when pressed).
    pub estop: PinSpec,
    /// `pedal`: foot pedal (input).
    pub pedal: PinSpec,
    /// `stroke_sensor`: stroke sensor on the cam (input with edge events).
    pub stroke_sensor: PinSpec,
}

impl PinMap {
    /// Every pin with its key name and role.
    pub fn all(&self) -> [(&'static str, PinSpec, PinRole); 9] {
        [
            ("motor_enable", self.motor_enable, PinRole::Output),
            ("depth_step", self.depth_step, PinRole::Output),
            ("depth_dir", self.depth_dir, PinRole::Output),
            ("charge_pump", self.charge_pump, PinRole::Output),
            ("home_switch", self.home_switch, PinRole::Input),
            ("cartridge_switch", self.cartridge_switch, PinRole::Input),
            ("estop", self.estop, PinRole::Input),
            ("pedal", self.pedal, PinRole::Input),
            ("stroke_sensor", self.stroke_sensor, PinRole::Input),
        ]
    }
}

/// `[hardware.rppal]`: a Raspberry Pi through rppal. Pins are BCM GPIO numbers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // pin keys: see PinMap
pub struct RppalConfig {
    pub motor_enable: PinSpec,
    pub depth_step: PinSpec,
    pub depth_dir: PinSpec,
    pub charge_pump: PinSpec,
    pub home_switch: PinSpec,
    pub cartridge_switch: PinSpec,
    pub estop: PinSpec,
    pub pedal: PinSpec,
    pub stroke_sensor: PinSpec,
    /// `pwm_channel`: hardware PWM channel of the motor driver, 0 (GPIO18) or 1 (GPIO19).
    #[serde(default)]
    pub pwm_channel: u8,
    /// `pwm_frequency_hz`: motor PWM frequency. Default 20000.
    #[serde(default = "default_pwm_frequency_hz")]
    pub pwm_frequency_hz: u32,
    /// `i2c_bus`: I2C bus number (`/dev/i2c-N`). Default 1 (GPIO2/3).
    #[serde(default = "default_i2c_bus")]
    pub i2c_bus: u8,
    /// `tag_eeprom_address`: 7-bit I2C address of the cartridge tag EEPROM. Default 0x50.
    #[serde(default = "default_tag_eeprom_address")]
    pub tag_eeprom_address: u8,
    /// `tag_eeprom_address_bytes`: word address width of the EEPROM: 1 (24C01/02, default)
    /// or 2 (24C32 and larger).
    #[serde(default = "default_tag_eeprom_address_bytes")]
    pub tag_eeprom_address_bytes: u8,
    /// `step_pulse_us`: minimum STEP high and low time. Default 2.
    #[serde(default = "default_step_pulse_us")]
    pub step_pulse_us: u32,
    /// `dir_setup_us`: minimum time from a DIR change to the next STEP edge. Default 1.
    #[serde(default = "default_dir_setup_us")]
    pub dir_setup_us: u32,
    /// `[hardware.rppal.adc]`: the ADS1115 for current, temperature and supply.
    pub adc: AdcConfig,
}

impl RppalConfig {
    /// The pin map.
    pub fn pins(&self) -> PinMap {
        PinMap {
            motor_enable: self.motor_enable,
            depth_step: self.depth_step,
            depth_dir: self.depth_dir,
            charge_pump: self.charge_pump,
            home_switch: self.home_switch,
            cartridge_switch: self.cartridge_switch,
            estop: self.estop,
            pedal: self.pedal,
            stroke_sensor: self.stroke_sensor,
        }
    }
}

/// `[hardware.linux]`: any Linux board through gpio-cdev, sysfs PWM and i2c-dev. Pins are
/// line offsets of `gpio_chip`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // pin keys: see PinMap
pub struct LinuxConfig {
    /// `gpio_chip`: the GPIO character device. Default `/dev/gpiochip0`.
    #[serde(default = "default_gpio_chip")]
    pub gpio_chip: PathBuf,
    pub motor_enable: PinSpec,
    pub depth_step: PinSpec,
    pub depth_dir: PinSpec,
    pub charge_pump: PinSpec,
    pub home_switch: PinSpec,
    pub cartridge_switch: PinSpec,
    pub estop: PinSpec,
    pub pedal: PinSpec,
    pub stroke_sensor: PinSpec,
    /// `pwm_chip`: the sysfs PWM chip. Default `/sys/class/pwm/pwmchip0`.
    #[serde(default = "default_pwm_chip")]
    pub pwm_chip: PathBuf,
    /// `pwm_channel`: channel of `pwm_chip`. Default 0.
    #[serde(default)]
    pub pwm_channel: u32,
    /// `pwm_frequency_hz`: motor PWM frequency. Default 20000.
    #[serde(default = "default_pwm_frequency_hz")]
    pub pwm_frequency_hz: u32,
    /// `i2c_device`: the I2C bus device. Default `/dev/i2c-1`.
    #[serde(default = "default_i2c_device")]
    pub i2c_device: PathBuf,
    /// `tag_eeprom_address`: see [`RppalConfig::tag_eeprom_address`].
    #[serde(default = "default_tag_eeprom_address")]
    pub tag_eeprom_address: u8,
    /// `tag_eeprom_address_bytes`: see [`RppalConfig::tag_eeprom_address_bytes`].
    #[serde(default = "default_tag_eeprom_address_bytes")]
    pub tag_eeprom_address_bytes: u8,
    /// `step_pulse_us`: see [`RppalConfig::step_pulse_us`].
    #[serde(default = "default_step_pulse_us")]
    pub step_pulse_us: u32,
    /// `dir_setup_us`: see [`RppalConfig::dir_setup_us`].
    #[serde(default = "default_dir_setup_us")]
    pub dir_setup_us: u32,
    /// `[hardware.linux.adc]`: the ADS1115 for current, temperature and supply.
    pub adc: AdcConfig,
}

impl LinuxConfig {
    /// The pin map.
    pub fn pins(&self) -> PinMap {
        PinMap {
            motor_enable: self.motor_enable,
            depth_step: self.depth_step,
            depth_dir: self.depth_dir,
            charge_pump: self.charge_pump,
            home_switch: self.home_switch,
            cartridge_switch: self.cartridge_switch,
            estop: self.estop,
            pedal: self.pedal,
            stroke_sensor: self.stroke_sensor,
        }
    }
}

fn default_pwm_frequency_hz() -> u32 {
    20_000
}
fn default_i2c_bus() -> u8 {
    1
}
fn default_tag_eeprom_address() -> u8 {
    0x50
}
fn default_tag_eeprom_address_bytes() -> u8 {
    1
}
fn default_step_pulse_us() -> u32 {
    2
}
fn default_dir_setup_us() -> u32 {
    1
}
fn default_gpio_chip() -> PathBuf {
    PathBuf::from("/dev/gpiochip0")
}
fn default_pwm_chip() -> PathBuf {
    PathBuf::from("/sys/class/pwm/pwmchip0")
}
fn default_i2c_device() -> PathBuf {
    PathBuf::from("/dev/i2c-1")
}

/// An ADS1115 analog-to-digital converter reading motor current, temperature and supply.
///
/// Its channels need an explicit calibration: a wrong default scale could hide an
/// over-current.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdcConfig {
    /// `address`: 7-bit I2C address, 0x48 to 0x4B. Default 0x48.
    #[serde(default = "default_adc_address")]
    pub address: u8,
    /// `data_rate_sps`: conversions per second: 8, 16, 32, 64, 128, 250, 475 or 860 (default).
    #[serde(default = "default_adc_data_rate_sps")]
    pub data_rate_sps: u32,
    /// `max_age_ms`: a reading older than this is a sensor fault. Default 50.
    #[serde(default = "default_adc_max_age_ms")]
    pub max_age_ms: u32,
    /// `[...adc.current]`: motor current, mA.
    pub current: AdcChannelConfig,
    /// `[...adc.temperature]`: motor or driver temperature, m°C.
    pub temperature: AdcChannelConfig,
    /// `[...adc.supply]`: supply voltage, mV.
    pub supply: AdcChannelConfig,
}

impl AdcConfig {
    /// The channels in the order of the core's parts: current, temperature, supply.
    pub fn channels(&self) -> [AdcChannelConfig; 3] {
        [self.current, self.temperature, self.supply]
    }
}

fn default_adc_address() -> u8 {
    0x48
}
fn default_adc_data_rate_sps() -> u32 {
    860
}
fn default_adc_max_age_ms() -> u32 {
    50
}

/// One single-ended ADS1115 input and its calibration:
/// `reading (thousandths of the unit) = volts at the input * milli_per_volt + offset_milli`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdcChannelConfig {
    /// `input`: AIN0 to AIN3 (0 to 3), measured against GND.
    pub input: u8,
    /// `full_scale_mv`: programmable gain range: 6144, 4096 (default), 2048, 1024, 512 or 256.
    #[serde(default = "default_full_scale_mv")]
    pub full_scale_mv: u32,
    /// `milli_per_volt`: thousandths of the channel's unit per volt at the input (mA/V,
    /// m°C/V, mV/V); may be negative.
    pub milli_per_volt: i32,
    /// `offset_milli`: reading at 0 V, in thousandths of the unit. Default 0.
    #[serde(default)]
    pub offset_milli: i32,
}

fn default_full_scale_mv() -> u32 {
    4_096
}

impl AdcChannelConfig {
    /// The reading at `microvolts` at the input, in thousandths of the channel's unit, if it
    /// fits in an `i32`.
    pub fn milli_at_microvolts(&self, microvolts: i64) -> Option<i32> {
        let scaled = i128::from(microvolts) * i128::from(self.milli_per_volt) / 1_000_000;
        i32::try_from(scaled + i128::from(self.offset_milli)).ok()
    }

    /// The lowest and highest readings the channel can produce (0 V to full scale).
    pub fn reading_range(&self) -> (i64, i64) {
        let at = |uv: i64| {
            i64::from(self.offset_milli) + uv * i64::from(self.milli_per_volt) / 1_000_000
        };
        let a = at(0);
        let b = at(i64::from(self.full_scale_mv) * 1_000);
        (a.min(b), a.max(b))
    }
}

/// ADS1115 full-scale ranges, mV.
pub const ADS1115_FULL_SCALES_MV: [u32; 6] = [6_144, 4_096, 2_048, 1_024, 512, 256];
/// ADS1115 data rates, samples per second.
pub const ADS1115_DATA_RATES_SPS: [u32; 8] = [8, 16, 32, 64, 128, 250, 475, 860];

// --- [sim] -----------------------------------------------------------------------------------

/// `[sim]`: the simulated rig (only used with `hardware.backend = "sim"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// `cartridge_seated_at_start`: start with a cartridge in place. Default false.
    pub cartridge_seated_at_start: bool,
    /// `motor_load_permille`: mechanical load on the stroke motor, 1000 = nominal.
    pub motor_load_permille: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            cartridge_seated_at_start: false,
            motor_load_permille: 1_000,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validation and conversion
// ---------------------------------------------------------------------------------------------

impl Config {
    /// Checks every value, the rules between sections, and needle-core's own
    /// [`ControllerConfig::validate`]; the first refused value is returned with its key.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.validate_service()?;
        self.validate_control()?;
        self.validate_motion()?;
        self.validate_core()?;
        self.validate_session()?;
        self.validate_areas()?;
        self.validate_cartridge()?;
        self.validate_hardware()?;
        in_range(
            "sim.motor_load_permille",
            self.sim.motor_load_permille,
            1..=5_000,
        )
    }

    fn validate_service(&self) -> Result<(), Invalid> {
        let s = &self.service;
        in_range("service.telemetry_hz", s.telemetry_hz, 1..=100)?;
        if s.data_dir.as_os_str().is_empty() {
            return Err(invalid(
                "service.data_dir",
                "expected a directory, got \"\"",
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, t) in s.tokens.iter().enumerate() {
            let key = format!("service.tokens[{i}]");
            // Never echo a token: it may be a real secret with one character too few.
            if t.token.len() < MIN_TOKEN_LEN {
                return Err(invalid(
                    format!("{key}.token"),
                    format!(
                        "expected at least {MIN_TOKEN_LEN} characters, got {}",
                        t.token.chars().count()
                    ),
                ));
            }
            if !t.token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid(
                    format!("{key}.token"),
                    "expected visible ASCII characters only (no spaces)",
                ));
            }
            if !seen.insert(t.token.as_str()) {
                return Err(invalid(
                    format!("{key}.token"),
                    "expected a token different from every other token",
                ));
            }
            if t.name.trim().is_empty() {
                return Err(invalid(format!("{key}.name"), "expected a non-empty name"));
            }
        }
        if !s.bind.ip().is_loopback() {
            if s.tokens.is_empty() {
                return Err(invalid(
                    "service.bind",
                    format!(
                        "expected a loopback address (127.0.0.1, ::1) unless [[service.tokens]] \
                         are configured in this file, got {}",
                        s.bind
                    ),
                ));
            }
            if let Some(i) = s
                .tokens
                .iter()
                .position(|t| t.token.starts_with(PLACEHOLDER_TOKEN_PREFIX))
            {
                return Err(invalid(
                    format!("service.tokens[{i}].token"),
                    format!(
                        "expected a real token: placeholders starting with \
                         {PLACEHOLDER_TOKEN_PREFIX} are refused on a non-loopback bind ({})",
                        s.bind
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_control(&self) -> Result<(), Invalid> {
        let c = &self.control;
        in_range("control.rate_hz", c.rate_hz, 100..=10_000)?;
        in_range("control.host_timeout_ms", c.host_timeout_ms, 1..=5_000)?;
        in_range("control.max_tick_gap_ms", c.max_tick_gap_ms, 1..=1_000)?;
        in_range("control.service_stall_ms", c.service_stall_ms, 50..=10_000)
    }

    fn validate_motion(&self) -> Result<(), Invalid> {
        let s = &self.stroke;
        in_range("stroke.edges_per_stroke", s.edges_per_stroke, 1..=64)?;
        in_range("stroke.rate_min_hz", s.rate_min_hz, 1..=1_000)?;
        in_range("stroke.rate_max_hz", s.rate_max_hz, 1..=1_000)?;
        in_range("stroke.rate_ceiling_hz", s.rate_ceiling_hz, 1..=1_000)?;
        in_range("stroke.ramp_time_ms", s.ramp_time_ms, 1..=10_000)?;
        in_range(
            "stroke.feedforward_permyriad_per_hz",
            s.feedforward_permyriad_per_hz,
            0..=10_000,
        )?;
        in_range(
            "stroke.kp_permyriad_per_hz",
            s.kp_permyriad_per_hz,
            0..=10_000,
        )?;
        in_range(
            "stroke.ki_permyriad_per_hz_s",
            s.ki_permyriad_per_hz_s,
            0..=1_000_000,
        )?;
        in_range(
            "stroke.max_duty_permyriad",
            s.max_duty_permyriad,
            1..=10_000,
        )?;
        in_range(
            "stroke.stall_ratio_permille",
            s.stall_ratio_permille,
            1..=999,
        )?;
        in_range("stroke.stall_window_ms", s.stall_window_ms, 1..=10_000)?;

        let d = &self.depth;
        in_range("depth.steps_per_mm", d.steps_per_mm, 1..=100_000)?;
        in_range("depth.max_depth_um", d.max_depth_um, 1..=5_000)?;
        in_range("depth.backlash_um", d.backlash_um, 0..=500)?;
        for (key, speed) in [
            ("depth.speed_um_per_s", d.speed_um_per_s),
            ("depth.running_speed_um_per_s", d.running_speed_um_per_s),
            ("depth.homing_fast_um_per_s", d.homing_fast_um_per_s),
            ("depth.homing_slow_um_per_s", d.homing_slow_um_per_s),
        ] {
            in_range(key, speed, 1..=50_000)?;
        }
        in_range("depth.accel_um_per_s2", d.accel_um_per_s2, 1..=10_000_000)?;
        in_range("depth.homing_backoff_um", d.homing_backoff_um, 1..=20_000)?;
        in_range(
            "depth.homing_travel_limit_um",
            d.homing_travel_limit_um,
            1..=20_000,
        )?;
        in_range(
            "depth.home_switch_window_um",
            d.home_switch_window_um,
            0..=5_000,
        )?;
        in_range("depth.max_steps_per_tick", d.max_steps_per_tick, 1..=64)?;

        let f = &self.safety;
        in_range("safety.max_current_ma", f.max_current_ma, 1..=100_000)?;
        in_range(
            "safety.over_current_time_ms",
            f.over_current_time_ms,
            1..=10_000,
        )?;
        in_range("safety.max_temperature_c", f.max_temperature_c, 1..=150)?;
        in_range(
            "safety.temperature_hysteresis_c",
            f.temperature_hysteresis_c,
            0..=100,
        )?;
        in_range("safety.min_supply_mv", f.min_supply_mv, 0..=100_000)?;
        in_range(
            "safety.under_voltage_time_ms",
            f.under_voltage_time_ms,
            1..=10_000,
        )
    }

    fn validate_core(&self) -> Result<(), Invalid> {
        self.controller_config()
            .validate()
            .map_err(|e| invalid(core_field_key(e.field), format!("expected {}", e.expected)))
    }

    fn validate_session(&self) -> Result<(), Invalid> {
        let s = &self.session;
        in_range("session.time_limit_min", s.time_limit_min, 1..=480)?;
        in_range(
            "session.warning_before_min",
            s.warning_before_min,
            0..=s.time_limit_min.saturating_sub(1),
        )?;
        in_range("session.min_interval_days", s.min_interval_days, 0..=365)?;
        if s.post_care.chars().count() > 2_000 {
            return Err(Invalid {
                key: "session.post_care".into(),
                message: format!(
                    "expected at most 2000 characters, got {}",
                    s.post_care.chars().count()
                ),
            });
        }
        let mut seen = BTreeSet::new();
        for (i, item) in s.checklist.iter().enumerate() {
            let key = format!("session.checklist[{i}]");
            if !is_identifier(&item.id) {
                return Err(invalid(
                    format!("{key}.id"),
                    format!(
                        "expected 1 to 64 characters of a-z, 0-9 and _, got \"{}\"",
                        item.id
                    ),
                ));
            }
            if !seen.insert(item.id.as_str()) {
                return Err(invalid(
                    format!("{key}.id"),
                    format!("expected a unique id, \"{}\" is used twice", item.id),
                ));
            }
            if item.text.trim().is_empty() {
                return Err(invalid(format!("{key}.text"), "expected a non-empty text"));
            }
        }
        Ok(())
    }

    fn validate_areas(&self) -> Result<(), Invalid> {
        if self.areas.is_empty() {
            return Err(invalid("areas", "expected at least one treatment area"));
        }
        for (name, area) in &self.areas {
            let key = format!("areas.{name}");
            if !is_identifier(name) {
                return Err(invalid(
                    key,
                    "expected an area name of 1 to 64 characters of a-z, 0-9 and _",
                ));
            }
            if !(1..=self.depth.max_depth_um).contains(&area.max_depth_um) {
                return Err(invalid(
                    format!("{key}.max_depth_um"),
                    format!(
                        "expected 1 to {} (depth.max_depth_um), got {}",
                        self.depth.max_depth_um, area.max_depth_um
                    ),
                ));
            }
            if let Some(limit) = area.time_limit_min {
                if !(1..=self.session.time_limit_min).contains(&limit) {
                    return Err(invalid(
                        format!("{key}.time_limit_min"),
                        format!(
                            "expected 1 to {} (session.time_limit_min), got {limit}",
                            self.session.time_limit_min
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_cartridge(&self) -> Result<(), Invalid> {
        let c = &self.cartridge;
        in_range("cartridge.max_run_min", c.max_run_min, 1..=600)?;
        in_range("cartridge.max_strokes", c.max_strokes, 1..=100_000_000)?;
        if c.key_file.as_os_str().is_empty() {
            return Err(invalid(
                "cartridge.key_file",
                "expected a file name, got \"\"",
            ));
        }
        Ok(())
    }

    fn validate_hardware(&self) -> Result<(), Invalid> {
        let h = &self.hardware;
        match h.backend {
            Backend::Sim => Ok(()),
            Backend::Link => {
                let l = &self.link;
                if l.device.as_os_str().is_empty() {
                    return Err(invalid(
                        "link.device",
                        "expected the pen's serial device path",
                    ));
                }
                if crate::hal::link::baud_rate(l.baud).is_none() {
                    return Err(invalid("link.baud", format!("unsupported rate {}", l.baud)));
                }
                if u64::from(l.sync_ms) * 2_000 > self.controller_config().safety.host_timeout.0 {
                    return Err(invalid(
                        "link.sync_ms",
                        "must be at most half of safety.host_timeout, or the pen's dead-man trips",
                    ));
                }
                Ok(())
            }
            Backend::Rppal => {
                let Some(r) = &h.rppal else {
                    return Err(missing_backend_section(h.backend));
                };
                let p = "hardware.rppal";
                in_range(&format!("{p}.pwm_channel"), r.pwm_channel, 0..=1)?;
                let mut reserved = vec![(
                    if r.pwm_channel == 0 { 18 } else { 19 },
                    "the hardware PWM pin of pwm_channel",
                )];
                if r.i2c_bus == 1 {
                    reserved.push((2, "I2C1 SDA"));
                    reserved.push((3, "I2C1 SCL"));
                }
                validate_pins(p, &r.pins(), 0..=27, true, &reserved)?;
                in_range(&format!("{p}.i2c_bus"), r.i2c_bus, 0..=22)?;
                self.validate_bus_devices(
                    p,
                    r.pwm_frequency_hz,
                    r.tag_eeprom_address,
                    r.tag_eeprom_address_bytes,
                    r.step_pulse_us,
                    r.dir_setup_us,
                    &r.adc,
                )
            }
            Backend::Linux => {
                let Some(l) = &h.linux else {
                    return Err(missing_backend_section(h.backend));
                };
                let p = "hardware.linux";
                for (key, path) in [
                    ("gpio_chip", &l.gpio_chip),
                    ("pwm_chip", &l.pwm_chip),
                    ("i2c_device", &l.i2c_device),
                ] {
                    if !path.is_absolute() {
                        return Err(invalid(
                            format!("{p}.{key}"),
                            format!("expected an absolute path, got \"{}\"", path.display()),
                        ));
                    }
                }
                validate_pins(p, &l.pins(), 0..=u32::MAX, false, &[])?;
                in_range(&format!("{p}.pwm_channel"), l.pwm_channel, 0..=63)?;
                self.validate_bus_devices(
                    p,
                    l.pwm_frequency_hz,
                    l.tag_eeprom_address,
                    l.tag_eeprom_address_bytes,
                    l.step_pulse_us,
                    l.dir_setup_us,
                    &l.adc,
                )
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn validate_bus_devices(
        &self,
        p: &str,
        pwm_frequency_hz: u32,
        tag_address: u8,
        tag_address_bytes: u8,
        step_pulse_us: u32,
        dir_setup_us: u32,
        adc: &AdcConfig,
    ) -> Result<(), Invalid> {
        in_range(
            &format!("{p}.pwm_frequency_hz"),
            pwm_frequency_hz,
            100..=100_000,
        )?;
        in_range(&format!("{p}.tag_eeprom_address"), tag_address, 0x50..=0x57)?;
        in_range(
            &format!("{p}.tag_eeprom_address_bytes"),
            tag_address_bytes,
            1..=2,
        )?;
        in_range(&format!("{p}.step_pulse_us"), step_pulse_us, 1..=50)?;
        in_range(&format!("{p}.dir_setup_us"), dir_setup_us, 0..=50)?;
        // The core emits up to max_steps_per_tick pulses per tick, each taking two
        // step_pulse_us holds; they must fit in a fraction of the tick.
        let pulse_budget = u64::from(self.depth.max_steps_per_tick) * 2 * u64::from(step_pulse_us)
            + u64::from(dir_setup_us);
        let tick = self.control.tick_period().0;
        if pulse_budget * 4 > tick {
            return Err(invalid(
                format!("{p}.step_pulse_us"),
                format!(
                    "expected step pulses to fit in a quarter tick: {} steps x 2 x {step_pulse_us} us \
                     + {dir_setup_us} us is more than {} us",
                    self.depth.max_steps_per_tick,
                    tick / 4
                ),
            ));
        }
        self.validate_adc(&format!("{p}.adc"), adc)
    }

    fn validate_adc(&self, p: &str, adc: &AdcConfig) -> Result<(), Invalid> {
        in_range(&format!("{p}.address"), adc.address, 0x48..=0x4B)?;
        if !ADS1115_DATA_RATES_SPS.contains(&adc.data_rate_sps) {
            return Err(invalid(
                format!("{p}.data_rate_sps"),
                format!(
                    "expected one of {ADS1115_DATA_RATES_SPS:?}, got {}",
                    adc.data_rate_sps
                ),
            ));
        }
        // Two full scans of the three channels must fit in max_age_ms.
        let scan_ms = 2 * 3 * 1_000_u32.div_ceil(adc.data_rate_sps) + 2;
        in_range(&format!("{p}.max_age_ms"), adc.max_age_ms, scan_ms..=1_000)?;
        // Readings are in thousandths of the unit: mA, m°C, mV.
        let f = &self.safety;
        let channels = [
            (
                "current",
                &adc.current,
                i64::from(f.max_current_ma),
                "safety.max_current_ma",
            ),
            (
                "temperature",
                &adc.temperature,
                i64::from(f.max_temperature_c) * 1_000,
                "safety.max_temperature_c",
            ),
            (
                "supply",
                &adc.supply,
                i64::from(f.min_supply_mv),
                "safety.min_supply_mv",
            ),
        ];
        let mut inputs = BTreeSet::new();
        for (name, ch, _, _) in &channels {
            let key = format!("{p}.{name}");
            in_range(&format!("{key}.input"), ch.input, 0..=3)?;
            if !inputs.insert(ch.input) {
                return Err(invalid(
                    format!("{key}.input"),
                    format!(
                        "expected an input not used by another channel, got {}",
                        ch.input
                    ),
                ));
            }
            if !ADS1115_FULL_SCALES_MV.contains(&ch.full_scale_mv) {
                return Err(invalid(
                    format!("{key}.full_scale_mv"),
                    format!(
                        "expected one of {ADS1115_FULL_SCALES_MV:?}, got {}",
                        ch.full_scale_mv
                    ),
                ));
            }
            if ch.milli_per_volt == 0 {
                return Err(invalid(
                    format!("{key}.milli_per_volt"),
                    "expected a non-zero scale, got 0",
                ));
            }
        }
        // A limit outside what a channel can read could never trip: refuse the calibration.
        for (name, ch, limit, limit_key) in &channels {
            let (lo, hi) = ch.reading_range();
            if !(lo < *limit && *limit < hi) {
                return Err(invalid(
                    format!("{p}.{name}.milli_per_volt"),
                    format!(
                        "expected a calibration whose readings from 0 V to full scale ({lo} to \
                         {hi}) include the limit {limit_key} ({limit}), or the limit could \
                         never trip"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// needle-core's configuration: `[stroke]`, `[depth]`, `[safety]` in the core's units,
    /// with the tick period, tick gap and host timeout from `[control]`.
    ///
    /// Meaningful for a configuration that passed [`Config::validate`]; out-of-range values
    /// saturate instead of panicking.
    pub fn controller_config(&self) -> ControllerConfig {
        let ms = |v: u32| Micros::from_millis(u64::from(v));
        let um = |v: u32| Micrometers(i32::try_from(v).unwrap_or(i32::MAX));
        let signed = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        let s = &self.stroke;
        let d = &self.depth;
        let f = &self.safety;
        ControllerConfig {
            stroke: StrokeConfig {
                edges_per_stroke: s.edges_per_stroke,
                rate_min: MilliHertz::from_hz(s.rate_min_hz),
                rate_max: MilliHertz::from_hz(s.rate_max_hz),
                rate_ceiling: MilliHertz::from_hz(s.rate_ceiling_hz),
                ramp_time: ms(s.ramp_time_ms),
                feedforward_permyriad_per_hz: s.feedforward_permyriad_per_hz,
                kp_permyriad_per_hz: s.kp_permyriad_per_hz,
                ki_permyriad_per_hz_s: s.ki_permyriad_per_hz_s,
                max_duty: Permyriad(u16::try_from(s.max_duty_permyriad).unwrap_or(u16::MAX)),
                stall_ratio_permille: s.stall_ratio_permille,
                stall_window: ms(s.stall_window_ms),
            },
            depth: DepthConfig {
                steps_per_mm: d.steps_per_mm,
                max_depth: um(d.max_depth_um),
                backlash: um(d.backlash_um),
                speed_um_per_s: d.speed_um_per_s,
                running_speed_um_per_s: d.running_speed_um_per_s,
                accel_um_per_s2: d.accel_um_per_s2,
                homing_fast_um_per_s: d.homing_fast_um_per_s,
                homing_slow_um_per_s: d.homing_slow_um_per_s,
                homing_backoff: um(d.homing_backoff_um),
                homing_travel_limit: um(d.homing_travel_limit_um),
                home_switch_window: um(d.home_switch_window_um),
                max_steps_per_tick: d.max_steps_per_tick,
            },
            safety: SafetyConfig {
                tick_period: self.control.tick_period(),
                max_tick_gap: ms(self.control.max_tick_gap_ms),
                host_timeout: ms(self.control.host_timeout_ms),
                max_current: MilliAmps(signed(f.max_current_ma)),
                over_current_time: ms(f.over_current_time_ms),
                max_temperature: MilliCelsius(signed(f.max_temperature_c).saturating_mul(1000)),
                temperature_hysteresis: MilliCelsius(
                    signed(f.temperature_hysteresis_c).saturating_mul(1000),
                ),
                min_supply: MilliVolts(signed(f.min_supply_mv)),
                under_voltage_time: ms(f.under_voltage_time_ms),
            },
        }
    }

    /// The device key file: `cartridge.key_file` resolved against `service.data_dir`.
    pub fn key_file_path(&self) -> PathBuf {
        self.service.data_dir.join(&self.cartridge.key_file)
    }

    /// Things that are allowed but deserve a line in the log at start-up.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, t) in self.service.tokens.iter().enumerate() {
            if t.token.starts_with(PLACEHOLDER_TOKEN_PREFIX) {
                out.push(format!(
                    "service.tokens[{i}] ({}) is a placeholder: replace it before the rig leaves \
                     the bench",
                    t.name
                ));
            }
        }
        out
    }
}

fn missing_backend_section(backend: Backend) -> Invalid {
    invalid(
        "hardware.backend",
        format!("backend \"{backend}\" needs a [hardware.{backend}] section with its pin map"),
    )
}

fn validate_pins(
    prefix: &str,
    pins: &PinMap,
    range: RangeInclusive<u32>,
    pull_supported: bool,
    reserved: &[(u32, &str)],
) -> Result<(), Invalid> {
    let mut used: BTreeMap<u32, &str> = BTreeMap::new();
    for (name, spec, role) in pins.all() {
        let key = format!("{prefix}.{name}");
        in_range(&key, spec.pin, range.clone())?;
        if spec.pull != Pull::None {
            if role == PinRole::Output {
                return Err(invalid(
                    key,
                    format!("expected no pull resistor mark (^ or ~) on an output, got \"{spec}\""),
                ));
            }
            if !pull_supported {
                return Err(invalid(
                    key,
                    format!(
                        "pull resistor marks (^ or ~) are not supported by this backend: set the \
                         bias in the device tree or wire a resistor, got \"{spec}\""
                    ),
                ));
            }
        }
        if let Some(other) = used.insert(spec.pin, name) {
            return Err(invalid(
                key,
                format!("pin {} is already used by {prefix}.{other}", spec.pin),
            ));
        }
        if let Some((_, what)) = reserved.iter().find(|(pin, _)| *pin == spec.pin) {
            return Err(invalid(
                key,
                format!("pin {} is reserved for {what}", spec.pin),
            ));
        }
    }
    Ok(())
}

fn is_identifier(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The TOML key of a needle-core [`ConfigError`](needle_core::config::ConfigError) field.
fn core_field_key(field: &str) -> String {
    let key = match field {
        "stroke.rate_min" => "stroke.rate_min_hz",
        "stroke.rate_max" => "stroke.rate_max_hz",
        "stroke.rate_ceiling" => "stroke.rate_ceiling_hz",
        "stroke.ramp_time" => "stroke.ramp_time_ms",
        "stroke.max_duty" => "stroke.max_duty_permyriad",
        "stroke.gains" => "stroke.kp_permyriad_per_hz",
        "stroke.stall_window" => "stroke.stall_window_ms",
        "depth.max_depth" => "depth.max_depth_um",
        "depth.backlash" => "depth.backlash_um",
        "depth.homing_backoff" => "depth.homing_backoff_um",
        "depth.homing_travel_limit" => "depth.homing_travel_limit_um",
        "depth.home_switch_window" => "depth.home_switch_window_um",
        "safety.tick_period" => "control.rate_hz",
        "safety.max_tick_gap" => "control.max_tick_gap_ms",
        "safety.host_timeout" => "control.host_timeout_ms",
        "safety.max_current" => "safety.max_current_ma",
        "safety.over_current_time" => "safety.over_current_time_ms",
        "safety.max_temperature" => "safety.max_temperature_c",
        "safety.temperature_hysteresis" => "safety.temperature_hysteresis_c",
        "safety.min_supply" => "safety.min_supply_mv",
        "safety.under_voltage_time" => "safety.under_voltage_time_ms",
        // Fields whose TOML key has the core's name (edges_per_stroke, steps_per_mm, the
        // speeds...), and any field a newer core adds.
        other => other,
    };
    key.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_defaults_and_the_core_defaults() {
        let config = parse("", "empty.toml").unwrap();
        let mut expected = Config::default();
        expected.service.data_dir = std::env::current_dir().unwrap().join("data");
        assert_eq!(config, expected);
        assert_eq!(config.controller_config(), ControllerConfig::default());
        assert_eq!(config.areas.len(), 7);
        assert!(config
            .session
            .checklist
            .iter()
            .any(|c| c.id == "numbing" && !c.required));
    }

    #[test]
    fn pin_strings_parse_klipper_style() {
        assert_eq!("17".parse::<PinSpec>(), Ok(PinSpec::plain(17)));
        let p: PinSpec = "^!4".parse().unwrap();
        assert_eq!((p.pin, p.active_low, p.pull), (4, true, Pull::Up));
        let p: PinSpec = "!~ 5".parse().unwrap();
        assert_eq!((p.pin, p.active_low, p.pull), (5, true, Pull::Down));
        assert_eq!(p.to_string(), "~!5");
        for bad in ["", "!", "!!17", "^~17", "GPIO17", "-3", "17!", "1 7"] {
            assert!(bad.parse::<PinSpec>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn every_core_field_maps_to_an_existing_key() {
        // A core field name that does not map to a key of ours would point operators at
        // nothing; keep this list in step with ControllerConfig::validate.
        let text = include_str!("../../../config/default.toml");
        let index = KeyIndex::build(text);
        for field in [
            "stroke.edges_per_stroke",
            "stroke.rate_min",
            "stroke.rate_max",
            "stroke.rate_ceiling",
            "stroke.ramp_time",
            "stroke.max_duty",
            "stroke.gains",
            "stroke.stall_ratio_permille",
            "stroke.stall_window",
            "depth.steps_per_mm",
            "depth.max_depth",
            "depth.backlash",
            "depth.speed_um_per_s",
            "depth.running_speed_um_per_s",
            "depth.homing_fast_um_per_s",
            "depth.homing_slow_um_per_s",
            "depth.accel_um_per_s2",
            "depth.homing_backoff",
            "depth.homing_travel_limit",
            "depth.home_switch_window",
            "depth.max_steps_per_tick",
            "safety.tick_period",
            "safety.max_tick_gap",
            "safety.host_timeout",
            "safety.max_current",
            "safety.temperature_hysteresis",
            "safety.min_supply",
        ] {
            let key = core_field_key(field);
            assert!(
                index.locate(&key).1,
                "{field} -> {key} is not in default.toml"
            );
        }
    }

    #[test]
    fn core_validation_errors_name_our_key_and_line() {
        let text = "[depth]\nsteps_per_mm = 2000\n";
        let err = parse(text, "t.toml").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("depth.speed_um_per_s"));
        // The key is not in the file: the error points at its section and says so.
        assert_eq!(err.line, Some(2));
        assert!(err.message.contains("default applies"), "{err}");
    }

    #[test]
    fn index_locates_keys_in_every_toml_form() {
        let text = "a.b = 1\n[hardware.rppal]\nestop = \"!17\"\n[service]\ntokens = [ { token = \"x\" },\n  { token = \"y\" } ]\n[[session.checklist]]\nid = \"a\"\n[[session.checklist]]\nid = \"b\"\n[areas]\nface = { max_depth_um = 1500 }\n";
        let index = KeyIndex::build(text);
        let line = |key: &str| index.locate(key).0.map(|s| line_of(text, s.start));
        assert_eq!(line("a.b"), Some(1));
        assert_eq!(line("hardware.rppal.estop"), Some(3));
        assert_eq!(line("service.tokens[1].token"), Some(6));
        assert_eq!(line("session.checklist[1].id"), Some(10));
        assert_eq!(line("areas.face.max_depth_um"), Some(12));
        assert_eq!(line("areas.face"), Some(12));
        let (span, present) = index.locate("areas.face.time_limit_min");
        assert_eq!(
            (span.map(|s| line_of(text, s.start)), present),
            (Some(12), false)
        );
        // An unknown key's error span covers the key; the value after it names the path.
        assert_eq!(index.key_at(text, 0..1).as_deref(), Some("a.b"));
        // A table header line names the table.
        assert_eq!(index.key_at(text, 9..14).as_deref(), Some("hardware.rppal"));
    }
}
