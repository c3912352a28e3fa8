//! The pen's firmware as a real process on a real pseudo-terminal, driven by a host on the
//! link and judged by the rig's truth socket.

mod common;

use common::{Host, PenProcess, PATIENCE};
use needle_core::units::Micros;
use needle_core::{Command, ControllerConfig, State};
use needle_link::frame::{self, Header};
use needle_link::{config_hash, ConfigRefusal, FromPen, HostMessage, Outcome, PROTOCOL_VERSION};
use std::io::Write;
use std::time::{Duration, Instant};

/// The controller's defaults with margins for a loaded machine, as needled's tests use: a
/// late tick on a busy box must not fault the pen in the middle of a test.
fn test_config() -> ControllerConfig {
    let mut c = ControllerConfig::default();
    c.safety.max_tick_gap = Micros(500_000);
    c.safety.host_timeout = Micros(500_000);
    c
}

/// Waits for the truth to show the motor unpowered; returns the truth then.
fn wait_motor_off(truth: &mut common::Truth) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let t = truth.now();
        if t["motor_powered"] == false {
            return t;
        }
        assert!(start.elapsed() < PATIENCE, "motor still powered: {t}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The pen's dead-man: the motor off at the first pen tick after the last command that
/// refreshed it plus `host_timeout`, counted in the rig's own tick log on the pen's clock.
fn assert_stopped_within_host_timeout(pen: &PenProcess, config: &ControllerConfig) {
    let mut truth = pen.truth();
    let t = wait_motor_off(&mut truth);
    let last = t["pen"]["last_refresh_us"].as_u64().unwrap();
    let off = t["motor_off_at_us"].as_u64().unwrap();
    let timeout = config.safety.host_timeout.0;
    let state = &t["pen"]["telemetry"]["state"];
    assert_eq!(state, "Fault", "{t}");
    assert!(off > last, "{t}");
    // Ticks after the deadline until the motor was off: at most one.
    let late_ticks = truth.ticks_between(last + timeout, off);
    assert!(
        late_ticks <= 1,
        "{late_ticks} ticks after the deadline: {t}"
    );
    eprintln!(
        "motor off {} µs after the last refresh (host_timeout {} µs), {} tick(s) after the deadline",
        off - last,
        timeout,
        late_ticks
    );
}

#[test]
fn a_host_gone_quiet_leaves_the_needles_stopped_by_the_pen_within_host_timeout_and_a_tick() {
    let pen = PenProcess::spawn();
    let mut truth = pen.truth();
    truth.inject("cartridge", true);
    let config = test_config();
    let mut host = Host::open(&pen.tty);
    host.handshake();
    host.run_needles(config);
    assert_eq!(truth.now()["motor_powered"], true);
    // The host stops talking, its port still open (a hung needled).
    let _hung = host;
    assert_stopped_within_host_timeout(&pen, &config);
    let t = truth.now();
    assert_eq!(t["pen"]["telemetry"]["last_fault"], "HostTimeout", "{t}");
}

#[test]
fn closing_the_port_stops_the_needles_the_same_way() {
    let pen = PenProcess::spawn();
    pen.truth().inject("cartridge", true);
    let config = test_config();
    let mut host = Host::open(&pen.tty);
    host.handshake();
    host.run_needles(config);
    drop(host);
    assert_stopped_within_host_timeout(&pen, &config);
}

#[test]
fn a_reconnecting_host_sees_the_fault_and_the_pen_does_not_resume() {
    let pen = PenProcess::spawn();
    let mut truth = pen.truth();
    truth.inject("cartridge", true);
    let config = test_config();
    let mut host = Host::open(&pen.tty);
    host.handshake();
    host.run_needles(config);
    drop(host);
    wait_motor_off(&mut truth);
    let mut host = Host::open(&pen.tty);
    let identity = host.handshake();
    assert!(matches!(
        identity,
        FromPen::Identity { config_hash: Some(h), .. } if h == config_hash(&config)
    ));
    // The same configuration is accepted again; the pen stays faulted until cleared.
    assert!(matches!(host.configure(config), Outcome::Configured(_)));
    let t = host.wait("telemetry", |_| true);
    assert_eq!(t.state, State::Fault);
    assert!(!t.motor_enabled);
    assert_eq!(truth.now()["motor_powered"], false);
}

#[test]
fn a_host_with_another_configuration_is_refused_with_the_pens_hash() {
    let pen = PenProcess::spawn();
    let ours = test_config();
    let mut host = Host::open(&pen.tty);
    host.handshake();
    assert_eq!(
        host.configure(ours),
        Outcome::Configured(config_hash(&ours))
    );
    let mut theirs = ours;
    theirs.safety.host_timeout = Micros(250_000);
    let mut other = Host::open(&pen.tty);
    other.handshake();
    assert_eq!(
        other.configure(theirs),
        Outcome::ConfigRefused(ConfigRefusal::AlreadyConfigured(config_hash(&ours)))
    );
    // And the pen still runs ours.
    assert_eq!(other.command(Command::Home), Outcome::Command(Ok(())));
}

#[test]
fn a_host_of_another_protocol_version_learns_the_pens_and_is_not_obeyed() {
    let pen = PenProcess::spawn();
    let mut host = Host::open(&pen.tty);
    let mut wire = [0u8; frame::MAX_ENCODED];
    let mut payload = [0u8; frame::MAX_PAYLOAD];
    let identify = HostMessage::Identify {
        version: PROTOCOL_VERSION + 1,
    };
    let p = postcard::to_slice(&identify, &mut payload).unwrap();
    let n = frame::encode(Header { seq: 0 }, p, &mut wire).unwrap();
    host.port.write_all(&wire[..n]).unwrap();
    let start = Instant::now();
    let version = loop {
        assert!(start.elapsed() < PATIENCE);
        if let Some(FromPen::Identity { version, .. }) = host.pump().into_iter().next() {
            break version;
        }
    };
    assert_eq!(version, PROTOCOL_VERSION);
    let t = pen.truth().now();
    assert_eq!(t["pen"]["link"]["version"], 1, "{t}");
}
