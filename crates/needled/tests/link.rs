//! needled with `hardware.backend = "link"` driving the pen firmware (needle-pen, host build)
//! over a real pseudo-terminal: real processes, judged by the pen's truth socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use needle_client::harness::{Launch, Running};
use serde_json::{json, Value};

/// Wall-clock patience for what takes a few ticks: a busy machine makes the tests slower,
/// never wrong.
const PATIENCE: Duration = Duration::from_secs(30);

/// The pen binary, built once (it is another crate's binary).
fn pen_binary() -> &'static PathBuf {
    static PEN: OnceLock<PathBuf> = OnceLock::new();
    PEN.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "needle-pen",
                "--bin",
                "needle-pen",
            ])
            .status()
            .expect("cargo build needle-pen");
        assert!(status.success(), "building needle-pen failed");
        // target/<profile>/deps/link-HASH -> target/<profile>/needle-pen
        let exe = std::env::current_exe().unwrap();
        exe.parent().unwrap().parent().unwrap().join("needle-pen")
    })
}

struct Pen {
    child: Child,
    tty: PathBuf,
    truth: PathBuf,
}

impl Pen {
    fn spawn(dir: &Path) -> Self {
        let tty = dir.join("pen.tty");
        let truth = dir.join("pen.truth");
        let _ = std::fs::remove_file(&tty);
        let _ = std::fs::remove_file(&truth);
        let child = Command::new(pen_binary())
            .arg("--pty")
            .arg(&tty)
            .arg("--truth")
            .arg(&truth)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while !(tty.exists() && truth.exists()) {
            assert!(start.elapsed() < PATIENCE, "needle-pen did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Self { child, tty, truth }
    }

    fn truth(&self) -> Value {
        self.ask(json!({"op": "truth"}))
    }

    fn ask(&self, request: Value) -> Value {
        let mut s = UnixStream::connect(&self.truth).unwrap();
        writeln!(s, "{request}").unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }
}

impl Drop for Pen {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// needled on needle-client's harness, its output in `log` (read for the refusal messages,
/// never for readiness).
struct Needled {
    running: Running,
    base: String,
    technician: String,
    operator: String,
    log: PathBuf,
}

/// This test's own factory key: a rig may not trust the published test key.
fn factory() -> needled::cartridge::FactoryKey {
    needled::cartridge::FactoryKey::from_secret("link-test-1", &[0x33; 32]).unwrap()
}

fn config(tty: &Path, host_timeout_ms: u32) -> String {
    format!(
        "[control]\nmax_tick_gap_ms = 500\nhost_timeout_ms = {host_timeout_ms}\n\
         [hardware]\nbackend = \"link\"\n\
         [link]\ndevice = \"{}\"\nlost_after_ms = 200\n\
         [cartridge]\nchip_required = true\n\
         [cartridge.trusted_keys]\n\"link-test-1\" = \"{}\"\n",
        tty.display(),
        hex::encode(factory().public_key())
    )
}

fn start_needled(data: &Path, config: &str) -> Needled {
    std::fs::create_dir_all(data).unwrap();
    let file = data.join("test.toml");
    std::fs::write(&file, config).unwrap();
    let log = data.join("needled.log");
    let running = Launch::new(env!("CARGO_BIN_EXE_needled"), &file, data)
        .log(&log)
        .start()
        .expect("start needled");
    Needled {
        base: running.base(),
        technician: running.token("technician").unwrap(),
        operator: running.token("operator").unwrap(),
        running,
        log,
    }
}

fn call(n: &Needled, method: &str, path: &str) -> (u16, Value) {
    send(n, method, path, None)
}

fn send(n: &Needled, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let token = if path.starts_with("/v1/sessions") {
        &n.operator
    } else {
        &n.technician
    };
    needle_client::Client::new(&n.base, token)
        .call(method, path, body.as_ref())
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn wait_status(n: &Needled, what: &str, until: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let (_, s) = call(n, "GET", "/v1/status");
        if until(&s) {
            return s;
        }
        if start.elapsed() > PATIENCE {
            let log = std::fs::read_to_string(&n.log).unwrap_or_default();
            panic!("waited in vain for {what}: {s}\nneedled's log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `GET /v1/health`'s `link` object satisfies `until`; returns it.
fn wait_health(n: &Needled, what: &str, until: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let (_, h) = call(n, "GET", "/v1/health");
        if until(&h["link"]) {
            return h["link"].clone();
        }
        assert!(start.elapsed() < PATIENCE, "waited in vain for {what}: {h}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A cartridge provisioned with this test's factory key: its signed tag and its chip's key.
fn cartridge(id: &str) -> needled::cartridge::Provisioned {
    use needled::cartridge::{self, Needles, TagData};
    let data = TagData::new(
        id,
        "LOT-LINK",
        Needles::Pins12,
        "2099-12-31".parse().unwrap(),
    )
    .unwrap();
    cartridge::provision(&data, &factory()).unwrap()
}

/// The pen's request seating `c`: its tag, and its genuine chip with use counter `counter`.
fn seat(c: &needled::cartridge::Provisioned, counter: u32) -> Value {
    json!({
        "op": "inject", "what": "cartridge", "on": true,
        "tag_hex": c.tag_hex(), "chip_secret_hex": c.chip_secret_hex(), "counter": counter,
    })
}

fn checklist() -> Value {
    let config = needled::config::parse("", "defaults").unwrap();
    Value::Object(
        config
            .session
            .checklist
            .iter()
            .map(|c| (c.id.clone(), Value::Bool(true)))
            .collect(),
    )
}

fn ok(n: &Needled, method: &str, path: &str, body: Option<Value>) -> Value {
    let (code, v) = send(n, method, path, body);
    assert!(code < 300, "{method} {path}: {code} {v}");
    v
}

/// Creates a session for `subject` with the whole checklist answered; returns its id.
fn create_session(n: &Needled, subject: &str) -> i64 {
    let body = json!({ "operator": "dr-link", "subject_ref": subject, "area": "face", "checklist": checklist() });
    ok(n, "POST", "/v1/sessions", Some(body))["id"]
        .as_i64()
        .unwrap()
}

/// Creates a session, seats and binds a cartridge (its tag read through the pen), homes,
/// arms and starts the needles; returns the session id once the rig's truth shows the motor
/// powered.
fn run_session(n: &Needled, pen: &Pen) -> i64 {
    wait_status(n, "the pen's telemetry", driving);
    let id = create_session(n, "subject-link");
    pen.ask(seat(&cartridge("CART-LINK-1"), 0));
    let bound = ok(n, "POST", &format!("/v1/sessions/{id}/cartridge"), None);
    assert_eq!(bound["id"], "CART-LINK-1", "{bound}");
    ok(n, "POST", "/v1/home", None);
    wait_status(n, "homed", |s| s["state"] == "Idle" && s["homed"] == true);
    let arm = json!({ "depth_um": 300, "rate_mhz": 120_000 });
    ok(n, "POST", &format!("/v1/sessions/{id}/arm"), Some(arm));
    wait_status(n, "armed and in position", |s| {
        s["state"] == "Armed" && s["depth"]["moving"] == false
    });
    ok(n, "POST", &format!("/v1/sessions/{id}/start"), None);
    wait_status(n, "running", |s| s["state"] == "Running");
    let start = Instant::now();
    while pen.truth()["motor_powered"] != true {
        assert!(start.elapsed() < PATIENCE, "the motor never ran");
        std::thread::sleep(Duration::from_millis(5));
    }
    id
}

fn driving(s: &Value) -> bool {
    s["controller_time_us"].as_u64().is_some_and(|t| t > 0)
}

#[test]
fn needled_drives_the_pen_over_a_pty_and_its_status_is_the_pens() {
    let dir = tempfile::tempdir().unwrap();
    let pen = Pen::spawn(dir.path());
    let n = start_needled(&dir.path().join("data"), &config(&pen.tty, 500));
    let s = wait_status(&n, "the pen's telemetry", driving);
    assert_eq!(s["state"], "Boot", "{s}");
    let (code, body) = call(&n, "POST", "/v1/home");
    assert_eq!(code, 200, "{body}");
    let s = wait_status(&n, "homed", |s| s["state"] == "Idle");
    assert_eq!(s["homed"], true);
    // The pen's own view agrees, and the rig's truth says the depth stop is at home.
    let t = pen.truth();
    assert_eq!(t["pen"]["telemetry"]["state"], "Idle", "{t}");
    assert!(t["depth_um"].as_f64().unwrap().abs() < 5.0, "{t}");
    assert!(t["pen"]["link"]["frames"].as_u64().unwrap() > 10, "{t}");
    assert_eq!(t["pen"]["link"]["crc"], 0, "{t}");
}

#[test]
fn a_lost_pen_is_a_fault_in_the_api_and_a_restarted_pen_is_driven_from_boot_once_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let mut pen = Pen::spawn(dir.path());
    let n = start_needled(&dir.path().join("data"), &config(&pen.tty, 500));
    wait_status(&n, "the pen's telemetry", driving);
    assert_eq!(call(&n, "POST", "/v1/home").0, 200);
    wait_status(&n, "homed", |s| s["state"] == "Idle");
    pen.child.kill().unwrap();
    pen.child.wait().unwrap();
    let s = wait_status(&n, "a fault", |s| s["state"] == "Fault");
    assert!(
        s["faults"]
            .as_array()
            .unwrap()
            .contains(&json!("host_timeout")),
        "{s}"
    );
    assert_eq!(s["motor_enabled"], false);
    // Commands are refused while the pen is out of reach.
    assert_ne!(call(&n, "POST", "/v1/home").0, 200);
    let link = wait_health(&n, "the loss", |l| l["losses"] == 1);
    assert_eq!(link["pen_restarts"], 0, "{link}");
    // The pen comes back on the same path, restarted: driven again, but latched as a fault
    // until the operator clears it.
    let _pen = Pen::spawn(dir.path());
    let link = wait_health(&n, "the restart", |l| {
        l["pen_restarts"] == 1 && l["state"] == "up"
    });
    assert_eq!(link["restart_latched"], true, "{link}");
    assert_eq!(link["last_restart"]["what"], "restarted", "{link}");
    let s = wait_status(&n, "the new pen, latched", |s| {
        driving(s) && s["homed"] == false
    });
    assert_eq!(s["state"], "Fault", "{s}");
    assert_eq!(call(&n, "POST", "/v1/home").0, 409, "refused while latched");
    ok(
        &n,
        "POST",
        "/v1/faults/clear",
        Some(json!({ "reason": "pen restarted; checked it" })),
    );
    let s = wait_status(&n, "the new pen", |s| s["state"] == "Boot" && driving(s));
    assert_eq!(s["homed"], false, "{s}");
    assert_eq!(
        call(&n, "GET", "/v1/health").1["link"]["restart_latched"],
        false
    );
    assert_eq!(call(&n, "POST", "/v1/home").0, 200);
    wait_status(&n, "the new pen homed", |s| s["state"] == "Idle");
}

#[test]
fn a_pen_restarted_mid_treatment_is_a_fault_and_the_treatment_does_not_resume() {
    let dir = tempfile::tempdir().unwrap();
    let mut pen = Pen::spawn(dir.path());
    let n = start_needled(&dir.path().join("data"), &config(&pen.tty, 500));
    let id = run_session(&n, &pen);
    pen.child.kill().unwrap();
    pen.child.wait().unwrap();
    let pen = Pen::spawn(dir.path());
    wait_health(&n, "the restart", |l| {
        l["pen_restarts"] == 1 && l["state"] == "up"
    });
    let s = wait_status(&n, "the new pen", driving);
    assert_eq!(s["state"], "Fault", "{s}");
    assert_eq!(s["motor_enabled"], false, "{s}");
    let (code, body) = send(&n, "POST", &format!("/v1/sessions/{id}/start"), None);
    assert_ne!(code, 200, "{body}");
    std::thread::sleep(Duration::from_millis(300));
    let t = pen.truth();
    assert_eq!(t["motor_powered"], false, "{t}");
    assert_eq!(t["strokes"], 0, "the new pen's needles never moved: {t}");
}

#[test]
fn pen_fault_and_stop_times_are_reported_on_the_hosts_clock() {
    let dir = tempfile::tempdir().unwrap();
    let pen = Pen::spawn(dir.path());
    let n = start_needled(&dir.path().join("data"), &config(&pen.tty, 500));
    run_session(&n, &pen);
    let before = needled::control::monotonic_now().0;
    pen.ask(json!({"op": "inject", "what": "estop", "on": true}));
    let after = needled::control::monotonic_now().0;
    wait_status(&n, "the e-stop", |s| s["state"] == "EStop");
    let link = wait_health(&n, "the fault's time", |l| {
        l["last_fault"]["what"] == "estop" && l["last_stop"]["host_time_us"].is_u64()
    });
    let at = link["last_fault"]["host_time_us"].as_u64().unwrap();
    let slack = link["clock"]["uncertainty_us"].as_u64().unwrap() + 1_000;
    eprintln!(
        "e-stop injected in [{before}, {after}] µs, latched on the pen at {at} µs (host clock)"
    );
    assert!(at + slack >= before, "before the injection: {link}");
    // The pen latches it at its next tick; a busy machine may run that tick late.
    assert!(at <= after + slack + 50_000, "{link}");
    // The stop, on the pen's clock, is the tick the rig's truth saw the motor go off.
    let stop = link["last_stop"]["pen_time_us"].as_u64().unwrap();
    let off = pen.truth()["motor_off_at_us"].as_u64().unwrap();
    assert!(
        stop.abs_diff(off) <= 1_000,
        "stop {stop} vs off {off}: {link}"
    );
}

/// A pen that answers every `Identify` claiming protocol version `version`.
fn fake_pen_of_version(dir: &Path, version: u16) -> (PathBuf, std::thread::JoinHandle<()>) {
    use needle_link::frame::{self, Decoder, Header};
    use needle_link::{HostMessage, PenId, PenMessage};
    let pty = nix::pty::openpty(None, None).unwrap();
    raw_nonblocking(&pty.slave);
    raw_nonblocking(&pty.master);
    let tty = dir.join("fake.tty");
    std::os::unix::fs::symlink(nix::unistd::ttyname(&pty.slave).unwrap(), &tty).unwrap();
    let thread = std::thread::spawn(move || {
        let _keep = pty.slave;
        let mut decoder = Decoder::new();
        let mut buf = [0u8; 512];
        let start = Instant::now();
        while start.elapsed() < PATIENCE {
            let n = nix::unistd::read(&pty.master, &mut buf).unwrap_or(0);
            for b in &buf[..n] {
                let Some(Ok(f)) = decoder.push(*b) else {
                    continue;
                };
                let Ok(HostMessage::Identify { .. }) = postcard::from_bytes(f.payload) else {
                    continue;
                };
                let identity = PenMessage::Identity {
                    version,
                    pen: PenId(*b"FAKEPEN1"),
                    config_hash: None,
                    next_seq: 0,
                    pen_time: needle_core::units::Micros(1_000),
                };
                let mut payload = [0u8; frame::MAX_PAYLOAD];
                let p = postcard::to_slice(&identity, &mut payload).unwrap();
                let mut wire = [0u8; frame::MAX_ENCODED];
                let k = frame::encode(Header { seq: 0 }, p, &mut wire).unwrap();
                let _ = nix::unistd::write(&pty.master, &wire[..k]);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    (tty, thread)
}

/// needled against a pen claiming protocol `version`: refused, and health says why.
fn assert_refused_for_its_version(version: u16) {
    let dir = tempfile::tempdir().unwrap();
    let (tty, _fake) = fake_pen_of_version(dir.path(), version);
    let n = start_needled(&dir.path().join("data"), &config(&tty, 500));
    let link = wait_health(&n, "the refusal", |l| l["state"] == "refused");
    assert_eq!(link["refusal"]["code"], "version", "{link}");
    let message = link["refusal"]["message"].as_str().unwrap();
    assert!(message.contains("update one of them"), "{link}");
    assert!(message.contains(&version.to_string()), "{link}");
    assert_eq!(link["pen"], "FAKEPEN1", "{link}");
    assert_ne!(call(&n, "POST", "/v1/home").0, 200);
}

#[test]
fn a_pen_of_another_protocol_version_is_refused_and_health_says_why() {
    assert_refused_for_its_version(needle_link::PROTOCOL_VERSION + 1);
}

/// Version 5 added the cartridge chip's messages: a pen still on version 4 would never
/// answer a chip command (needled would wait its patience out at every bind), so it is
/// refused, and so is one on version 3, whose telemetry layout version 4 changed.
#[test]
fn a_pen_of_an_older_protocol_version_is_refused_with_the_version_error() {
    assert_eq!(needle_link::PROTOCOL_VERSION, 6);
    assert_refused_for_its_version(5);
    assert_refused_for_its_version(4);
    assert_refused_for_its_version(3);
}

#[test]
fn a_pen_configured_differently_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let pen = Pen::spawn(dir.path());
    let first = start_needled(&dir.path().join("a"), &config(&pen.tty, 500));
    wait_status(&first, "the pen's telemetry", driving);
    drop(first); // SIGKILL: the pen keeps the configuration it was given
    let second = start_needled(&dir.path().join("b"), &config(&pen.tty, 400));
    let start = Instant::now();
    let log = loop {
        let log = std::fs::read_to_string(&second.log).unwrap();
        if log.contains("restart the pen") {
            break log;
        }
        assert!(start.elapsed() < PATIENCE, "no refusal in the log: {log}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(log.contains("configuration with hash"), "{log}");
    let link = wait_health(&second, "the refusal", |l| l["state"] == "refused");
    assert_eq!(link["refusal"]["code"], "config_hash", "{link}");
    let message = link["refusal"]["message"].as_str().unwrap();
    assert!(message.contains("restart the pen"), "{link}");
    let (_, s) = call(&second, "GET", "/v1/status");
    assert!(
        !driving(&s),
        "the refused pen's telemetry is not shown as ours: {s}"
    );
    assert_ne!(call(&second, "POST", "/v1/home").0, 200);
}

#[test]
fn a_whole_session_runs_through_needled_over_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let pen = Pen::spawn(dir.path());
    let n = start_needled(&dir.path().join("data"), &config(&pen.tty, 500));
    let id = run_session(&n, &pen);
    let strokes = pen.truth()["strokes"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        pen.truth()["strokes"].as_u64().unwrap() > strokes,
        "the needles stroke"
    );
    ok(
        &n,
        "PUT",
        &format!("/v1/sessions/{id}/setpoints"),
        Some(json!({ "depth_um": 400, "rate_mhz": 110_000 })),
    );
    wait_status(&n, "the new depth", |s| s["depth"]["setpoint_um"] == 400);
    ok(&n, "POST", &format!("/v1/sessions/{id}/pause"), None);
    wait_status(&n, "paused", |s| s["state"] == "Paused");
    let ended = ok(
        &n,
        "POST",
        &format!("/v1/sessions/{id}/end"),
        Some(json!({ "reason": "done" })),
    );
    assert_eq!(ended["state"], "ended", "{ended}");
    let t = pen.truth();
    assert_eq!(t["motor_powered"], false, "{t}");
    assert_eq!(t["pen"]["link"]["crc"], 0, "{t}");
    let (code, report) = call(&n, "GET", &format!("/v1/sessions/{id}/report"));
    assert_eq!(code, 200, "{report}");
}

#[test]
fn sigkill_of_needled_while_running_leaves_the_pen_to_stop_within_host_timeout_and_a_tick() {
    let dir = tempfile::tempdir().unwrap();
    let pen = Pen::spawn(dir.path());
    let mut n = start_needled(&dir.path().join("data"), &config(&pen.tty, 500));
    run_session(&n, &pen);
    assert!(n.running.kill().is_some(), "SIGKILL");
    let start = Instant::now();
    let t = loop {
        let t = pen.truth();
        if t["motor_powered"] == false {
            break t;
        }
        assert!(start.elapsed() < PATIENCE, "motor still powered: {t}");
        std::thread::sleep(Duration::from_millis(5));
    };
    let last = t["pen"]["last_refresh_us"].as_u64().unwrap();
    let off = t["motor_off_at_us"].as_u64().unwrap();
    assert_eq!(t["pen"]["telemetry"]["last_fault"], "HostTimeout", "{t}");
    // On the pen's clock, counted in the rig's own tick log: off at the first tick after
    // the last valid host frame plus host_timeout (500 ms here), or before.
    let late = pen.ask(json!({"op": "ticks_between", "after": last + 500_000, "until": off}))
        ["ticks"]
        .as_u64()
        .unwrap();
    assert!(late <= 1, "{late} ticks late: {t}");
    eprintln!(
        "motor off {} µs after needled's last accepted command",
        off - last
    );
}

/// A noisy line between the pen's pty and a new pty for needled: per byte, with a chance of
/// `per_mille`, a bit flipped, the byte dropped, doubled, or swapped with the next. Seeded,
/// so a failure replays.
struct Relay {
    tty: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    injected: std::sync::Arc<std::sync::atomic::AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Noise(u64, u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Passes `bytes` through the noise; returns them and the number of events injected.
    fn apply(&mut self, bytes: &[u8]) -> (Vec<u8>, u64) {
        let (mut out, mut events) = (Vec::with_capacity(bytes.len() + 8), 0);
        let mut i = 0;
        while i < bytes.len() {
            let (b, r) = (bytes[i], self.next());
            if r % 1000 >= self.1 {
                out.push(b);
            } else {
                events += 1;
                match (r >> 20) % 4 {
                    0 => out.push(b ^ (1 << ((r >> 30) % 8))),
                    1 => {}
                    2 => out.extend([b, b]),
                    _ if i + 1 < bytes.len() => {
                        out.extend([bytes[i + 1], b]);
                        i += 1;
                    }
                    _ => out.push(b),
                }
            }
            i += 1;
        }
        (out, events)
    }
}

fn raw_nonblocking(fd: impl std::os::fd::AsFd + Copy) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use nix::sys::termios::{self, SetArg};
    let mut t = termios::tcgetattr(fd).unwrap();
    termios::cfmakeraw(&mut t);
    termios::tcsetattr(fd, SetArg::TCSANOW, &t).unwrap();
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).unwrap());
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).unwrap();
}

impl Relay {
    fn start(pen_tty: &Path, dir: &Path, seed: u64, per_mille: u64) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::Arc;
        let pen = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(pen_tty)
            .unwrap();
        raw_nonblocking(&pen);
        let pty = nix::pty::openpty(None, None).unwrap();
        raw_nonblocking(&pty.slave);
        raw_nonblocking(&pty.master);
        let tty = dir.join("host.tty");
        let _ = std::fs::remove_file(&tty);
        std::os::unix::fs::symlink(nix::unistd::ttyname(&pty.slave).unwrap(), &tty).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let injected = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, injected) = (Arc::clone(&stop), Arc::clone(&injected));
            std::thread::spawn(move || {
                let _keep = pty.slave;
                let mut up = Noise(seed, per_mille);
                let mut down = Noise(seed.wrapping_mul(7919) | 1, per_mille);
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Acquire) {
                    let mut pass = |from: std::os::fd::BorrowedFd<'_>,
                                    to: std::os::fd::BorrowedFd<'_>,
                                    noise: &mut Noise| {
                        while let Ok(n @ 1..) = nix::unistd::read(from, &mut buf) {
                            let (bytes, events) = noise.apply(&buf[..n]);
                            injected.fetch_add(events, Ordering::Relaxed);
                            let mut rest = bytes.as_slice();
                            let since = Instant::now();
                            while !rest.is_empty() {
                                match nix::unistd::write(to, rest) {
                                    Ok(k) => rest = &rest[k..],
                                    // Nobody reads the other end (it died or is busy):
                                    // after a while the line drops the bytes, as a real
                                    // one would; that is noise too, and counted.
                                    Err(_)
                                        if since.elapsed() > Duration::from_millis(50)
                                            || stop.load(Ordering::Acquire) =>
                                    {
                                        injected.fetch_add(1, Ordering::Relaxed);
                                        break;
                                    }
                                    Err(_) => std::thread::sleep(Duration::from_micros(100)),
                                }
                            }
                        }
                    };
                    use std::os::fd::AsFd;
                    pass(pen.as_fd(), pty.master.as_fd(), &mut down);
                    pass(pty.master.as_fd(), pen.as_fd(), &mut up);
                    std::thread::sleep(Duration::from_micros(200));
                }
            })
        };
        Self {
            tty,
            stop,
            injected,
            thread: Some(thread),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn on_a_noisy_line_the_session_runs_or_goes_safe_and_every_rejection_is_counted() {
    for seed in [1u64, 2, 3] {
        let dir = tempfile::tempdir().unwrap();
        let pen = Pen::spawn(dir.path());
        let relay = Relay::start(&pen.tty, dir.path(), seed, 3);
        let n = start_needled(&dir.path().join("data"), &config(&relay.tty, 500));
        // Driving the session may fail when the noisy line (or this busy machine) costs
        // the link and the session goes safe; that is allowed, and checked below.
        let drive = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let id = run_session(&n, &pen);
            for (depth, rate) in [(350, 115_000), (450, 125_000), (400, 120_000)] {
                let body = json!({ "depth_um": depth, "rate_mhz": rate });
                wait_status(&n, "the depth axis still", |s| {
                    s["depth"]["moving"] == false
                });
                ok(
                    &n,
                    "PUT",
                    &format!("/v1/sessions/{id}/setpoints"),
                    Some(body),
                );
                wait_status(&n, "the depth reached", |s| {
                    s["depth"]["setpoint_um"] == depth && s["depth"]["moving"] == false
                        || s["state"] == "Fault"
                });
            }
            id
        }));
        let Ok(id) = drive else {
            let t = pen.truth();
            assert_eq!(t["motor_powered"], false, "seed {seed}: went safe? {t}");
            let (_, s) = call(&n, "GET", "/v1/status");
            assert_eq!(s["motor_enabled"], false, "seed {seed}: {s}");
            eprintln!("seed {seed}: the session went safe: {}", t["pen"]["link"]);
            continue;
        };
        let t = pen.truth();
        let pen_view = &t["pen"]["telemetry"];
        let state = pen_view["state"].as_str().unwrap().to_string();
        assert!(
            state == "Running" || (state == "Fault" && t["motor_powered"] == false),
            "seed {seed}: {t}"
        );
        // What the pen applied is what was sent, once: the last setpoints, uncorrupted.
        assert_eq!(pen_view["depth_setpoint"], 400, "seed {seed}: {t}");
        assert_eq!(pen_view["rate_setpoint"], 120_000, "seed {seed}: {t}");
        let ended = ok(
            &n,
            "POST",
            &format!("/v1/sessions/{id}/end"),
            Some(json!({ "reason": "done" })),
        );
        assert_eq!(ended["state"], "ended");
        let t = pen.truth();
        assert_eq!(t["motor_powered"], false, "{t}");
        let link = &t["pen"]["link"];
        let damaged: u64 = ["overlong", "framing", "length", "crc", "decode"]
            .iter()
            .map(|k| link[k].as_u64().unwrap())
            .sum();
        let injected = relay.injected.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!("seed {seed}: {injected} noise events both ways; the pen rejected {damaged} frames, dropped {} duplicates: {link}", link["duplicates"]);
        assert!(
            injected > 0 && damaged > 0,
            "seed {seed}: the noise reached the pen: {link}"
        );
    }
}

/// The cartridge's chip through the pen: needled challenges it over the link at bind, so a
/// byte-for-byte copy of a genuine tag on a part without the chip's key is refused, and so is
/// a part replaying a recorded answer; the genuine cartridge binds, and arming advances its
/// chip's use counter once on the pen (a cartridge used elsewhere is refused on any pen).
#[test]
fn the_cartridge_chip_answers_through_the_pen_and_a_copied_tag_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pen = Pen::spawn(dir.path());
    let n = start_needled(&dir.path().join("data"), &config(&pen.tty, 500));
    wait_status(&n, "the pen's telemetry", driving);
    let genuine = cartridge("CART-CHIP-1");
    let id = create_session(&n, "subject-clone");
    // A memory-only copy of the genuine tag: no chip key, no answer.
    pen.ask(json!({"op": "inject", "what": "cartridge", "on": true, "tag_hex": genuine.tag_hex()}));
    let (code, v) = send(&n, "POST", &format!("/v1/sessions/{id}/cartridge"), None);
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (409, Some("chip_challenge_failed")),
        "{v}"
    );
    // A forger's part replaying an answer the genuine chip gave to another challenge.
    let recorded = needle_sim::chip::sign(
        &<[u8; 32]>::try_from(hex::decode(genuine.chip_secret_hex()).unwrap()).unwrap(),
        &[7; 32],
    )
    .unwrap();
    pen.ask(json!({"op": "inject", "what": "cartridge", "on": false}));
    pen.ask(json!({
        "op": "inject", "what": "cartridge", "on": true,
        "tag_hex": genuine.tag_hex(), "replay_answer_hex": hex::encode(recorded),
    }));
    let (code, v) = send(&n, "POST", &format!("/v1/sessions/{id}/cartridge"), None);
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (409, Some("chip_challenge_failed")),
        "{v}"
    );
    // The genuine cartridge: bound, armed, and its chip's counter advanced once.
    pen.ask(json!({"op": "inject", "what": "cartridge", "on": false}));
    pen.ask(seat(&genuine, 0));
    let bound = ok(&n, "POST", &format!("/v1/sessions/{id}/cartridge"), None);
    assert_eq!(bound["id"], "CART-CHIP-1", "{bound}");
    ok(&n, "POST", "/v1/home", None);
    wait_status(&n, "homed", |s| s["state"] == "Idle" && s["homed"] == true);
    let arm = json!({ "depth_um": 300, "rate_mhz": 120_000 });
    ok(&n, "POST", &format!("/v1/sessions/{id}/arm"), Some(arm));
    ok(
        &n,
        "POST",
        &format!("/v1/sessions/{id}/end"),
        Some(json!({ "reason": "done" })),
    );
    let pulled = pen.ask(json!({"op": "inject", "what": "cartridge", "on": false}));
    assert_eq!(pulled["chip_counter"], 1, "{pulled}");
    // That cartridge's chip now counts a use no session of this needled made for a new one:
    // seated again for another session, it is refused as used.
    pen.ask(seat(&genuine, 1));
    let other = create_session(&n, "subject-reuse");
    let (code, v) = send(&n, "POST", &format!("/v1/sessions/{other}/cartridge"), None);
    assert_eq!(code, 409, "{v}");
    let t = pen.truth();
    assert_eq!(t["motor_powered"], false, "{t}");
}
