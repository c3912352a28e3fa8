//! The command line: global options and the command tree, one command per API call.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

use crate::client::TokenRole;

const EXIT_CODES: &str = "\
Exit codes (stable, for jig scripts):
  0  success
  1  local failure after the work was done (e.g. the --output file could not be written)
  2  usage or configuration error (bad option, URL, key file, tag file)
  3  connection failure: needled unreachable, or no answer within --timeout-ms
  4  refused by the service (HTTP 4xx other than 401/403) or by `tag verify`; nothing changed
  5  service failure (HTTP 5xx, malformed answer) or `health` finds the control loop stalled
  6  authentication: no token found, or the service answered 401/403
  7  `wait` did not see the state: timed out, or the controller latched a fault

Errors print `error: <code>: <message>` on stderr; with --json also the error JSON on stdout.";

/// needlectl: command-line client of needled, the needle pen's host service.
///
/// Every command maps to one HTTP API call (plus `wait`, which polls the status, and `tag`,
/// which works offline). Output is a human view by default; --json prints the API's JSON
/// unchanged for scripts.
#[derive(Debug, Parser)]
#[command(name = "needlectl", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Base URL of needled [env: NEEDLE_URL] [default: http://127.0.0.1:7878]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "URL"
    )]
    pub url: Option<String>,

    /// API token [env: NEEDLE_TOKEN]. Prefer NEEDLE_TOKEN or --token-file: a token on the
    /// command line is visible to other users of the machine.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "TOKEN"
    )]
    pub token: Option<String>,

    /// The tokens.json that needled writes into its data directory; read when neither
    /// --token nor NEEDLE_TOKEN is given
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "FILE",
        default_value = "data/tokens.json"
    )]
    pub token_file: PathBuf,

    /// Which token of --token-file to use [default: operator; technician for `sim`,
    /// `lot recall` and `plan create`, `change` and `stop`, which only a technician may call]
    #[arg(long, global = true, help_heading = "Global options", value_enum)]
    pub role: Option<TokenRole>,

    /// Print the API's JSON unchanged (streams: one JSON document per line); on errors, print
    /// the error JSON on stdout too
    #[arg(long, global = true)]
    pub json: bool,

    /// How long each HTTP request may take, in milliseconds (give it before the command)
    #[arg(long, value_name = "MS", default_value_t = 10_000, help_heading = "Global options", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: u64,

    /// For an https:// URL: the SHA-256 fingerprint of needled's certificate, as needled
    /// prints it at start [env: NEEDLE_TLS_SHA256]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "HEX"
    )]
    pub tls_sha256: Option<String>,

    /// For an https:// URL: a PEM file of the CA (or the certificate itself) to trust
    /// [env: NEEDLE_CA_FILE]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "FILE"
    )]
    pub ca_file: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Is needled up and its control loop ticking? (no token needed; exit 5 if stalled)
    Health,
    /// Controller state, faults, interlocks, depth, stroke rate, session and cartridge
    Status,
    /// Live telemetry from the stream /v1/telemetry, one line per event
    Telemetry {
        /// How many events to print; 0 streams until interrupted (Ctrl-C)
        #[arg(long, default_value_t = 10)]
        count: u64,
    },
    /// Home the depth axis (needed after power-up and after faults that lose position);
    /// returns at once: `wait --state Idle` waits for homing to finish
    Home,
    /// Latched faults
    #[command(subcommand)]
    Faults(FaultsCmd),
    /// Treatment sessions: create, bind a cartridge, arm, start, pause, end, report
    #[command(subcommand)]
    Session(SessionCmd),
    /// Treatment plans: a subject's series, numbing, the printable record
    #[command(subcommand)]
    Plan(crate::plan::PlanCmd),
    /// The cartridge ledger
    #[command(subcommand)]
    Cartridge(CartridgeCmd),
    /// Production lots of cartridges
    #[command(subcommand)]
    Lot(LotCmd),
    /// The append-only event log (every command, state change, fault and override)
    Events {
        /// Only events with a sequence number above this
        #[arg(long, value_name = "SEQ", default_value_t = 0)]
        after: i64,
        /// At most this many events per request (1..=1000; the service's default is 100)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
        /// Keep polling and print new events as they are appended, until interrupted
        #[arg(long)]
        follow: bool,
        /// With --follow: how often to poll, in milliseconds
        #[arg(long, value_name = "MS", default_value_t = 500, requires = "follow", value_parser = clap::value_parser!(u64).range(10..))]
        interval_ms: u64,
    },
    /// The simulated rig (sim backend only; technician token): truth and fault injection
    #[command(subcommand)]
    Sim(SimCmd),
    /// Poll the status until the controller is in STATE (for jig scripts)
    Wait {
        /// The controller state to wait for (case does not matter)
        #[arg(long, value_enum, ignore_case = true)]
        state: WaitState,
        /// Also wait until the depth axis has stopped moving
        #[arg(long)]
        settled: bool,
        /// Give up after this many milliseconds in total (exit 7)
        #[arg(long, value_name = "MS", default_value_t = 30_000)]
        timeout_ms: u64,
        /// How often to poll, in milliseconds
        #[arg(long, value_name = "MS", default_value_t = 50, value_parser = clap::value_parser!(u64).range(5..))]
        interval_ms: u64,
        /// Keep waiting even when the controller sits in Fault or EStop (by default that
        /// fails the wait after half a second, unless it is the state waited for)
        #[arg(long)]
        ignore_faults: bool,
    },
    /// Cartridge tags, offline: make (sign) and verify with the device key
    #[command(subcommand)]
    Tag(TagCmd),
    /// People and their tokens: add (prints the token once), list, revoke (technician token)
    #[command(subcommand)]
    Person(crate::people::PersonCmd),
    /// The SHA-256 fingerprint of needled's TLS certificate, offline from its file (compare
    /// it with the one needled logs; pass it to --tls-sha256)
    TlsFingerprint {
        /// The certificate (PEM), the self-signed one in the data directory by default
        #[arg(long, value_name = "FILE", default_value = "data/tls-cert.pem")]
        cert: PathBuf,
    },
}

/// `faults ...`
#[derive(Debug, Subcommand)]
pub enum FaultsCmd {
    /// Clear latched faults once their cause is gone (recorded with your reason)
    Clear {
        /// Why it is safe to continue (recorded in the event log)
        #[arg(long)]
        reason: String,
    },
}

/// A stroke rate, in Hz or mHz.
#[derive(Debug, Clone, Copy, Args)]
pub struct RateArgs {
    /// Stroke rate in Hz, up to 3 decimals (e.g. 120 or 95.5)
    #[arg(long, value_name = "HZ", value_parser = parse_rate_hz, conflicts_with = "rate_mhz")]
    pub rate_hz: Option<u32>,
    /// Stroke rate in mHz, as the API takes it (120000 = 120 Hz)
    #[arg(long, value_name = "MHZ")]
    pub rate_mhz: Option<u32>,
}

impl RateArgs {
    /// The rate in mHz, if given.
    pub fn mhz(self) -> Option<u32> {
        self.rate_hz.or(self.rate_mhz)
    }
}

/// `session ...`
#[derive(Debug, Subcommand)]
pub enum SessionCmd {
    /// Create a session (then: bind, arm, start)
    Create {
        /// Who performs the treatment, as stated (recorded beside the session; its operator
        /// and every event's actor is the person whose token is used)
        #[arg(long)]
        operator: Option<String>,
        /// Opaque subject reference (never a name)
        #[arg(long, value_name = "REF")]
        subject: String,
        /// Treatment area; it sets the depth ceiling (e.g. face, forehead, body)
        #[arg(long)]
        area: String,
        /// Confirm a checklist item by id (repeat for each item)
        #[arg(long = "check", value_name = "ID")]
        checks: Vec<String>,
        /// Confirm every checklist item without listing them. For bench jigs and tests; at a
        /// treatment, confirm each item with --check after checking it
        #[arg(long)]
        all_checked: bool,
        /// With --all-checked: the service configuration whose checklist is confirmed
        /// [default: config/default.toml if present, else needled's built-in checklist]
        #[arg(long, value_name = "FILE", requires = "all_checked")]
        checklist_config: Option<PathBuf>,
        /// Override the minimum interval between a subject's sessions, or the plan's window
        /// (technician; recorded)
        #[arg(long, value_name = "REASON")]
        override_reason: Option<String>,
        /// The plan this session belongs to (it becomes the plan's next session)
        #[arg(long, value_name = "PLAN_ID")]
        plan: Option<i64>,
    },
    /// Confirm (or withdraw) checklist items of a created or bound session, before arming
    #[command(group(ArgGroup::new("answers").args(["checks", "unchecks", "all_checked"]).required(true).multiple(true)))]
    Checklist {
        /// Session id
        id: i64,
        /// Confirm a checklist item by id (repeat for each item)
        #[arg(long = "check", value_name = "ID")]
        checks: Vec<String>,
        /// Withdraw the confirmation of a checklist item by id (repeat for each item)
        #[arg(long = "uncheck", value_name = "ID")]
        unchecks: Vec<String>,
        /// Confirm every checklist item. For bench jigs and tests only
        #[arg(long)]
        all_checked: bool,
        /// With --all-checked: the service configuration whose checklist is confirmed
        #[arg(long, value_name = "FILE", requires = "all_checked")]
        checklist_config: Option<PathBuf>,
    },
    /// Show a session
    Show {
        /// Session id
        id: i64,
    },
    /// Bind the seated cartridge to the session (reads and authenticates its tag)
    Bind {
        /// Session id
        id: i64,
    },
    /// Arm with depth and stroke rate: the depth axis moves; the motor stays off until start
    #[command(group(ArgGroup::new("rate").args(["rate_hz", "rate_mhz"]).required(true)))]
    Arm {
        /// Session id
        id: i64,
        /// Needle depth in micrometres (at most the area's ceiling)
        #[arg(long, value_name = "UM", value_parser = clap::value_parser!(i32).range(0..))]
        depth_um: i32,
        /// The stroke rate.
        #[command(flatten)]
        rate: RateArgs,
        /// Arm deeper than the plan's depth or before the numbing has acted (technician;
        /// recorded as an override)
        #[arg(long, value_name = "REASON")]
        override_reason: Option<String>,
    },
    /// Start (or resume) the stroke motor
    Start {
        /// Session id
        id: i64,
    },
    /// Pause the stroke motor (the session stays armed)
    Pause {
        /// Session id
        id: i64,
    },
    /// End the session: motor off, cartridge spent
    End {
        /// Session id
        id: i64,
        /// Why it ended [the service records "ended by the operator" if none is given]
        #[arg(long)]
        reason: Option<String>,
    },
    /// Change depth and/or stroke rate while armed, running or paused
    #[command(group(ArgGroup::new("change").args(["depth_um", "rate_hz", "rate_mhz"]).required(true).multiple(true)))]
    Setpoints {
        /// Session id
        id: i64,
        /// New needle depth in micrometres
        #[arg(long, value_name = "UM", value_parser = clap::value_parser!(i32).range(0..))]
        depth_um: Option<i32>,
        /// The new stroke rate.
        #[command(flatten)]
        rate: RateArgs,
    },
    /// The session's report: summary, setpoints, faults, overrides and timeline
    Report {
        /// Session id
        id: i64,
        /// json (shown as a human view unless --json or --output) or csv (the timeline)
        #[arg(long, value_enum, default_value_t = ReportFormat::Json)]
        format: ReportFormat,
        /// Write the report, as the service sent it, to this file instead of stdout
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// The whole report as JSON.
    Json,
    /// The timeline as CSV.
    Csv,
}

impl ReportFormat {
    /// The API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportFormat::Json => "json",
            ReportFormat::Csv => "csv",
        }
    }
}

/// `cartridge ...`
#[derive(Debug, Subcommand)]
pub enum CartridgeCmd {
    /// Show a cartridge: state, usage, remaining budget, lot recall
    Show {
        /// Cartridge id (from its tag)
        id: String,
    },
}

/// `lot ...`
#[derive(Debug, Subcommand)]
pub enum LotCmd {
    /// Recall a lot: its cartridges are refused from now on, a running session on one is
    /// stopped (technician)
    Recall {
        /// The lot
        lot: String,
        /// Why (recorded)
        #[arg(long)]
        reason: String,
    },
}

/// On or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// On / pressed.
    On,
    /// Off / released.
    Off,
}

impl Switch {
    /// Whether on.
    pub fn on(self) -> bool {
        self == Switch::On
    }
}

/// How the home switch is stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Stuck {
    /// Stuck closed (always reads "at home").
    Closed,
    /// Stuck open (never reads "at home").
    Open,
    /// Working normally again.
    Off,
}

/// `sim ...`
#[derive(Debug, Subcommand)]
pub enum SimCmd {
    /// The rig's physical truth (motor power, true rate and depth), not the controller's view
    Truth,
    /// Seat a cartridge; its tag from --tag-hex or --tag-file, else a cartridge whose tag does
    /// not answer
    Seat {
        /// The tag as hex text (e.g. from `needle-factory provision`)
        #[arg(long, value_name = "HEX", conflicts_with = "tag_file")]
        tag_hex: Option<String>,
        /// A file with the tag: hex text or raw bytes
        #[arg(long, value_name = "FILE")]
        tag_file: Option<PathBuf>,
        /// The sim chip's private key (hex, `chip_secret_hex` of `needle-factory provision`);
        /// without it the part is a copied tag with no key, which fails the chip's challenge
        #[arg(long, value_name = "HEX")]
        chip_secret: Option<String>,
    },
    /// Seat a fresh cartridge provisioned with the sim's test factory key (sim only; a
    /// genuine chip, counter 0)
    SeatNew {
        /// Cartridge id, `[A-Za-z0-9-]{1,16}` (default: a random `SIM-` id)
        #[arg(long)]
        id: Option<String>,
        /// Lot, `[A-Za-z0-9-]{1,16}`
        #[arg(long)]
        lot: Option<String>,
    },
    /// Pull the cartridge out (mid-session this spends it and ends the session)
    Pull,
    /// Press (on) or release (off) the E-stop
    Estop {
        /// on = pressed
        #[arg(value_enum)]
        state: Switch,
    },
    /// Press (on) or release (off) the foot pedal
    Pedal {
        /// on = pressed
        #[arg(value_enum)]
        state: Switch,
    },
    /// Jam the stroke mechanism (on) or free it (off)
    Jam {
        /// on = jammed
        #[arg(value_enum)]
        state: Switch,
    },
    /// Set the motor temperature, in °C (-40..=200)
    Heat {
        /// Temperature in °C
        #[arg(long, allow_negative_numbers = true)]
        celsius: f64,
    },
    /// Brown the supply out (on) or restore it (off)
    Brownout {
        /// on = supply low
        #[arg(value_enum)]
        state: Switch,
    },
    /// Make the sensors drop out (on) or answer again (off)
    Dropout {
        /// on = sensors silent
        #[arg(value_enum)]
        state: Switch,
    },
    /// Stick the depth home switch closed or open, or free it (off)
    StuckHome {
        /// closed, open or off
        #[arg(value_enum)]
        state: Stuck,
    },
}

/// Controller states, as the API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WaitState {
    /// Powered up, not homed.
    #[value(name = "Boot")]
    Boot,
    /// Homing the depth axis.
    #[value(name = "Homing")]
    Homing,
    /// Homed, motor off.
    #[value(name = "Idle")]
    Idle,
    /// Armed: setpoints accepted, motor off.
    #[value(name = "Armed")]
    Armed,
    /// Motor running.
    #[value(name = "Running")]
    Running,
    /// Paused.
    #[value(name = "Paused")]
    Paused,
    /// A fault is latched.
    #[value(name = "Fault")]
    Fault,
    /// The E-stop is pressed.
    #[value(name = "EStop")]
    EStop,
}

impl WaitState {
    /// The API's name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitState::Boot => "Boot",
            WaitState::Homing => "Homing",
            WaitState::Idle => "Idle",
            WaitState::Armed => "Armed",
            WaitState::Running => "Running",
            WaitState::Paused => "Paused",
            WaitState::Fault => "Fault",
            WaitState::EStop => "EStop",
        }
    }
}

/// `tag ...`: tags are made by the factory tool (`needle-factory provision`), never here.
#[derive(Debug, Subcommand)]
pub enum TagCmd {
    /// Verify a tag's factory signature against the keys a configuration trusts and show its
    /// contents (exit 4 if refused). The chip's challenge is the pen's job, at seat and arm
    #[command(group(ArgGroup::new("tag").args(["hex", "file"]).required(true)))]
    Verify {
        /// The tag as hex text
        #[arg(long, value_name = "HEX")]
        hex: Option<String>,
        /// A file with the tag: hex text or raw bytes
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// The needled configuration whose `[cartridge]` keys to trust (default: the built-in
        /// defaults, which trust the test factory key only)
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// Parses a stroke rate in Hz with at most 3 decimals into mHz, without floating point.
pub fn parse_rate_hz(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !(frac.is_empty() || digits(frac)) || (t.contains('.') && frac.is_empty())
    {
        return Err(format!("'{text}' is not a rate in Hz (e.g. 120 or 95.5)"));
    }
    if frac.len() > 3 {
        return Err(format!(
            "'{text}': at most 3 decimals (the API counts in mHz)"
        ));
    }
    let whole: u64 = whole
        .parse()
        .map_err(|_| format!("'{text}' is too large"))?;
    let frac_mhz: u64 = format!("{frac:0<3}")
        .parse()
        .map_err(|_| format!("'{text}' is not a rate"))?;
    let mhz = whole
        .checked_mul(1000)
        .and_then(|w| w.checked_add(frac_mhz))
        .unwrap_or(u64::MAX);
    u32::try_from(mhz).map_err(|_| format!("'{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn rates_in_hz_become_millihertz_exactly() {
        assert_eq!(parse_rate_hz("120"), Ok(120_000));
        assert_eq!(parse_rate_hz("95.5"), Ok(95_500));
        assert_eq!(parse_rate_hz("0.001"), Ok(1));
        assert!(parse_rate_hz("120.0005").is_err());
        assert!(parse_rate_hz("-1").is_err());
        assert!(parse_rate_hz("1e3").is_err());
        assert!(parse_rate_hz("12.").is_err());
        assert!(parse_rate_hz("nan").is_err());
        assert!(parse_rate_hz("4294968").is_err());
    }
}
