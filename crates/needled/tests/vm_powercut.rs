//! Power-cut campaign (vm/README.md, "power-cut"): the ledger on a real kernel's block layer
//! and filesystem, and the guest's power cut at random moments.
//!
//! This test runs on the host. It makes an ext4 image (the data directory, with the pen's
//! device key in it) and boots the VM rig's guest with it as a virtio disk with host caching
//! off (`cache=none`), reaching needled (sim backend) in the guest through QEMU's user network.
//! Each cycle a session runs with events flowing (created, cartridge seated and bound, homed,
//! armed, started, then setpoint changes, pauses and starts with the event log read after
//! each), and QEMU is SIGKILLed at a random moment: the guest loses its page cache and
//! everything in flight, as on a power cut. Now and then the next boot is cut too, while the
//! kernel replays ext4's journal or needled recovers. After each reboot:
//!
//! - the ledger as the cut left it (copied by the guest after mounting, before needled opens
//!   it): `PRAGMA integrity_check` is `ok`, `foreign_key_check` is empty, and every event the
//!   API returned before any cut is there with the same seq and kind;
//! - through the API after needled's restart: the same events in the log, every session the
//!   ledger holds is aborted (none was ever ended) and the pen free, and every cartridge a
//!   session holds is spent, each acknowledged binding still there.
//!
//! Run by `scripts/vm-test.sh powercut`, which sets `NEEDLE_VM_POWERCUT=1`; without it the test
//! prints SKIPPED. `NEEDLE_POWERCUT_CYCLES` (default 6) sets the cuts, `NEEDLE_POWERCUT_SEED`
//! replays a campaign (the seed is printed at the start).

mod vm_rig;

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use needled::cartridge::{self, FactoryKey, Needles, TagData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use vm_rig::api::{checklist, Api};

const OPERATOR_TOKEN: &str = "powercut-operator-0123456789abcdef";
const TECHNICIAN_TOKEN: &str = "powercut-technician-0123456789abcdef";
/// The longest a cycle's session runs before its cut, after its creation was acknowledged.
const CUT_WINDOW_MS: u64 = 12_000;

/// needled in the guest (`vm/guest/powercut.sh` runs it with `--bind 0.0.0.0:8080`): the sim
/// backend with the guest settings of vm/README.md (a TCG guest stalls for a second or two).
fn guest_config() -> String {
    format!(
        r#"[service]
log_format = "human"

[service.tls]
cert_file = "/share/powercut/tls-cert.pem"
key_file = "/share/powercut/tls-key.pem"

[[service.tokens]]
token = "{OPERATOR_TOKEN}"
role = "operator"
name = "powercut operator"

[[service.tokens]]
token = "{TECHNICIAN_TOKEN}"
role = "technician"
name = "powercut technician"

[control]
realtime_priority = false
max_tick_gap_ms = 1000
host_timeout_ms = 3000
service_stall_ms = 5000

[stroke]
stall_window_ms = 2000

[hardware]
backend = "sim"
"#
    )
}

// -------------------------------------------------------------------------------------------
// The rig: the repository's scripts and the built guest
// -------------------------------------------------------------------------------------------

struct Rig {
    root: PathBuf,
    /// target/vm/powercut: the disk image and the consoles.
    work: PathBuf,
    /// target/vm/share/powercut: the guest's /share/powercut.
    share: PathBuf,
    mkfs: PathBuf,
}

/// The rig, or `None` with the reason printed; under `CI=true` a missing piece panics.
fn rig(test: &str) -> Option<Rig> {
    if std::env::var("NEEDLE_VM_POWERCUT").as_deref() != Ok("1") {
        println!(
            "{test} SKIPPED: NEEDLE_VM_POWERCUT is not 1 (scripts/vm-test.sh powercut runs it; see vm/README.md)"
        );
        return None;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let vm = root.join("target/vm");
    let abi = fs::read_to_string(vm.join("current")).unwrap_or_default();
    let kernel = vm.join(abi.trim());
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    };
    let missing = if abi.trim().is_empty() || !kernel.join("initramfs.gz").is_file() {
        Some("the VM rig is not built (bash scripts/vm-build.sh)".to_string())
    } else if on_path("qemu-system-x86_64").is_none() {
        Some("no qemu-system-x86_64".to_string())
    } else if on_path("mkfs.ext4").is_none() {
        Some("no mkfs.ext4 (e2fsprogs)".to_string())
    } else {
        None
    };
    if let Some(why) = missing {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: {why} (CI=true requires the VM tests)"
        );
        println!("{test} SKIPPED: {why}");
        return None;
    }
    Some(Rig {
        work: vm.join("powercut"),
        share: vm.join("share/powercut"),
        mkfs: on_path("mkfs.ext4")?,
        root,
    })
}

impl Rig {
    /// A fresh ext4 image holding the data directory; needled and its configuration into the
    /// share (vm-boot.sh copies the guest script). Returns the factory key the sim trusts.
    fn prepare(&self) -> FactoryKey {
        let _ = fs::remove_dir_all(&self.work);
        let _ = fs::remove_dir_all(&self.share);
        let staging = self.work.join("staging");
        fs::create_dir_all(&staging).unwrap();
        fs::create_dir_all(&self.share).unwrap();
        let key = cartridge::test_factory_key();
        let image = self.work.join("ledger.img");
        let out = Command::new(&self.mkfs)
            .args(["-q", "-F", "-L", "ledger", "-d"])
            .arg(&staging)
            .arg(&image)
            .arg("64M")
            .output()
            .unwrap();
        assert!(out.status.success(), "mkfs.ext4: {out:?}");
        // Off loopback needled serves HTTPS only: a certificate for the forwarded address,
        // on the share so the host can trust it.
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        fs::write(self.share.join("tls-cert.pem"), made.cert.pem()).unwrap();
        fs::write(
            self.share.join("tls-key.pem"),
            made.key_pair.serialize_pem(),
        )
        .unwrap();
        let config = guest_config();
        needled::config::parse(&config, "powercut needled.toml").expect("a valid config");
        fs::write(self.share.join("needled.toml"), config).unwrap();
        // Without its debug info (a tenth of the size) needled loads from the 9p share in a
        // fraction of the boot; as it is when there is no `strip`.
        let needled = self.share.join("needled");
        let stripped = Command::new("strip")
            .args(["--strip-debug", "-o"])
            .arg(&needled)
            .arg(env!("CARGO_BIN_EXE_needled"))
            .status();
        if !stripped.is_ok_and(|s| s.success()) {
            fs::copy(env!("CARGO_BIN_EXE_needled"), &needled).unwrap();
        }
        key
    }
}

// -------------------------------------------------------------------------------------------
// A guest: one boot, ended by a power cut
// -------------------------------------------------------------------------------------------

struct Guest {
    /// `scripts/vm-boot.sh`, QEMU under it.
    child: Child,
    pidfile: PathBuf,
    console: PathBuf,
    started: Instant,
    port: u16,
    /// The share's TLS certificate, which the host trusts.
    cert: PathBuf,
}

impl Guest {
    fn boot(rig: &Rig, n: u32) -> Guest {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let pidfile = rig.work.join("qemu.pid");
        let console = rig.work.join(format!("console-{n:03}.log"));
        let _ = fs::remove_file(&pidfile);
        let _ = fs::remove_dir_all(rig.share.join("pre"));
        let child = Command::new("bash")
            .arg(rig.root.join("scripts/vm-boot.sh"))
            .arg("powercut.sh")
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,if=virtio,cache=none",
                rig.work.join("ledger.img").display()
            ))
            .arg("-netdev")
            .arg(format!("user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:8080"))
            // No option ROM: iPXE's start costs seconds under TCG and the guest boots -kernel.
            .args(["-device", "virtio-net-pci,netdev=net0,romfile="])
            .arg("-pidfile")
            .arg(&pidfile)
            .env("VM_LOG", &console)
            .env("VM_TIMEOUT", "600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("bash scripts/vm-boot.sh");
        Guest {
            child,
            pidfile,
            console,
            started: Instant::now(),
            port,
            cert: rig.share.join("tls-cert.pem"),
        }
    }

    fn api(&self, token: &str) -> Api {
        // The guest binds 0.0.0.0, so needled serves HTTPS only: with the certificate
        // `prepare` made on the share.
        let cert = &self.cert;
        Api {
            base: format!("https://127.0.0.1:{}", self.port),
            token: token.into(),
            tls: Some(std::sync::Arc::new(
                needled::tls::client_with_ca(cert).expect("the share's certificate"),
            )),
        }
    }

    /// Panics with the console's end if the guest is gone.
    fn assert_alive(&mut self, what: &str) {
        if let Ok(Some(rc)) = self.child.try_wait() {
            let log = fs::read_to_string(&self.console).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "{what}: the guest exited ({rc}); console {}:\n{}",
                self.console.display(),
                tail.join("\n")
            );
        }
    }

    /// Waits until needled in the guest answers `/v1/health`.
    fn wait_listening(&mut self) -> Duration {
        let api = self.api(OPERATOR_TOKEN);
        loop {
            self.assert_alive("waiting for needled");
            if matches!(api.try_call("GET", "/v1/health", None), Ok((200, _))) {
                return self.started.elapsed();
            }
            assert!(
                self.started.elapsed() < Duration::from_secs(300),
                "needled in the guest did not answer within 300 s ({})",
                self.console.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The power cut: QEMU SIGKILLed.
    fn cut(mut self) {
        if let Err(e) = self.kill() {
            panic!("the power cut: {e}");
        }
    }

    /// SIGKILLs QEMU (by the pid it wrote) unless the guest is gone already; reaps vm-boot.sh.
    fn kill(&mut self) -> Result<(), String> {
        if self.child.try_wait().ok().flatten().is_some() {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let pid = loop {
            match fs::read_to_string(&self.pidfile) {
                Ok(p) if !p.trim().is_empty() => break p.trim().to_string(),
                _ if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err(format!("QEMU wrote no {}", self.pidfile.display()));
                }
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        let killed = Command::new("kill").args(["-KILL", &pid]).status();
        let _ = self.child.wait();
        match killed {
            Ok(s) if s.success() => Ok(()),
            other => Err(format!("kill -KILL {pid}: {other:?}")),
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        // A failing check must not leave QEMU running (nor panic again while unwinding).
        let _ = self.kill();
    }
}

// -------------------------------------------------------------------------------------------
// What the API acknowledged, and the session that makes events flow
// -------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Acked {
    /// Every event seq the API returned, with its kind.
    events: BTreeMap<i64, String>,
    last_seq: i64,
    /// Every session whose creation was acknowledged, with the cartridge a bind acknowledged.
    sessions: BTreeMap<i64, Option<String>>,
    /// The flow step the driver was in (where a cut lands).
    step: &'static str,
    /// The faults cleared before homing (guest stalls), as the status listed them.
    faults_cleared: Vec<String>,
}

/// Reads the event log after the last acknowledged seq, acknowledging what it returns.
fn read_events(api: &Api, acked: &Mutex<Acked>) -> Result<(), String> {
    loop {
        let after = acked.lock().unwrap().last_seq;
        let (status, v) =
            api.try_call("GET", &format!("/v1/events?after={after}&limit=1000"), None)?;
        assert_eq!(status, 200, "{v}");
        let events = v["events"].as_array().cloned().unwrap_or_default();
        let mut a = acked.lock().unwrap();
        for e in &events {
            let seq = e["seq"].as_i64().unwrap();
            assert!(
                seq > a.last_seq,
                "event log out of order: {seq} after {}",
                a.last_seq
            );
            a.last_seq = seq;
            a.events
                .insert(seq, e["kind"].as_str().unwrap().to_string());
        }
        if events.len() < 1000 {
            return Ok(());
        }
    }
}

fn step(acked: &Mutex<Acked>, name: &'static str) {
    acked.lock().unwrap().step = name;
}

/// One session until the cut: `ready` is sent once its creation is acknowledged.
#[allow(clippy::too_many_arguments)]
fn drive(
    op: &Api,
    tech: &Api,
    key: &FactoryKey,
    acked: &Mutex<Acked>,
    rng: &mut StdRng,
    cycle: u32,
    ready: mpsc::Sender<()>,
) -> Result<(), String> {
    // Half the cycles home the axis before the session, so more cuts land in its event flow.
    if rng.gen_bool(0.5) {
        step(acked, "home first");
        home(op, acked)?;
    }
    step(acked, "create");
    let body = json!({ "operator": "dr-powercut", "subject_ref": format!("cut-{cycle}"), "area": "face", "checklist": checklist() });
    let (status, v) = op.try_call("POST", "/v1/sessions", Some(body))?;
    assert_eq!(status, 201, "create: {v}");
    let id = v["id"].as_i64().unwrap();
    acked.lock().unwrap().sessions.insert(id, None);
    let _ = ready.send(());
    read_events(op, acked)?;

    step(acked, "seat");
    let cartridge = format!("CUT-{cycle:03}-{}", rng.gen_range(0..1_000_000));
    let data = TagData::new(
        &cartridge,
        "LOT-CUT",
        Needles::Pins12,
        "2099-12-31".parse().unwrap(),
    )
    .unwrap();
    let seat = cartridge::provision(&data, key).unwrap().seat_json(0);
    let (status, v) = tech.try_call("POST", "/v1/sim/inject", Some(seat))?;
    assert_eq!(status, 200, "seat: {v}");
    step(acked, "bind");
    let (status, v) = op.try_call("POST", &format!("/v1/sessions/{id}/cartridge"), None)?;
    assert!(status < 300, "bind: {status} {v}");
    assert_eq!(v["id"], cartridge.as_str(), "{v}");
    acked.lock().unwrap().sessions.insert(id, Some(cartridge));
    read_events(op, acked)?;

    // Homing, arming and starting may be refused (a TCG stall can latch a fault): the events
    // still flow, each refused command writes its request and its outcome too.
    step(acked, "home");
    home(op, acked)?;
    read_events(op, acked)?;
    step(acked, "arm");
    let (status, _) = op.try_call(
        "POST",
        &format!("/v1/sessions/{id}/arm"),
        Some(json!({ "depth_um": 300, "rate_mhz": 120_000 })),
    )?;
    if status < 300 {
        wait_status(op, |s| s["depth"]["moving"] == false)?;
    }
    step(acked, "start");
    op.try_call("POST", &format!("/v1/sessions/{id}/start"), None)?;
    read_events(op, acked)?;

    // Events flowing until the cut: setpoint changes, pauses and starts (each writes its
    // request and its outcome), the log read after each.
    let until = Instant::now() + Duration::from_secs(120);
    while Instant::now() < until {
        let (name, method, path, body) = match rng.gen_range(0..4) {
            0 => ("pause", "POST", "pause", None),
            1 => ("start", "POST", "start", None),
            _ => (
                "setpoints",
                "PUT",
                "setpoints",
                Some(
                    json!({ "depth_um": 200 + 50 * rng.gen_range(0..20), "rate_mhz": 100_000 + 1_000 * rng.gen_range(0..40) }),
                ),
            ),
        };
        step(acked, name);
        op.try_call(method, &format!("/v1/sessions/{id}/{path}"), body)?;
        step(acked, "events");
        read_events(op, acked)?;
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..50)));
    }
    step(acked, "flow over");
    Ok(())
}

/// Homes the axis unless it is homed; first clears a fault if one is latched (a guest stall
/// past `max_tick_gap_ms` latches `control_overrun`, which refuses homing: not this test's
/// subject, and counted).
fn home(op: &Api, acked: &Mutex<Acked>) -> Result<(), String> {
    let (_, status) = op.try_call("GET", "/v1/status", None)?;
    if status["homed"] == true {
        return Ok(());
    }
    if let Some(faults) = status["faults"].as_array().filter(|f| !f.is_empty()) {
        acked
            .lock()
            .unwrap()
            .faults_cleared
            .push(format!("{faults:?}"));
        let reason = json!({ "reason": "power-cut campaign: a guest stall latched it" });
        op.try_call("POST", "/v1/faults/clear", Some(reason))?;
    }
    op.try_call("POST", "/v1/home", None)?;
    wait_status(op, |s| s["state"] == "Idle" && s["homed"] == true)
}

/// Polls `/v1/status` until `pred` holds or 60 s have passed.
fn wait_status(api: &Api, pred: impl Fn(&Value) -> bool) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, s) = api.try_call("GET", "/v1/status", None)?;
        if pred(&s) || Instant::now() > deadline {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// -------------------------------------------------------------------------------------------
// The checks after a reboot
// -------------------------------------------------------------------------------------------

/// The ledger as the cut left it, copied by the guest before needled opened it.
fn check_file(pre: &Path, acked: &Acked, boot: u32) {
    assert!(
        pre.join("copied").is_file(),
        "boot {boot}: the guest did not finish copying the ledger to {}",
        pre.display()
    );
    // Checked on a copy: opening it replays the WAL, and `pre` stays as the cut left it.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("needled.db");
    for f in ["needled.db", "needled.db-wal"] {
        if pre.join(f).is_file() {
            fs::copy(pre.join(f), dir.path().join(f)).unwrap();
        }
    }
    assert!(
        db.is_file(),
        "boot {boot}: the guest copied no ledger to {}",
        pre.display()
    );
    let conn = rusqlite::Connection::open(&db).expect("open the copied ledger");
    // One row "ok", or the problems found, one a row.
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        integrity,
        "ok",
        "boot {boot}: integrity_check of {}",
        pre.display()
    );
    let foreign: i64 = conn
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(
        foreign,
        0,
        "boot {boot}: foreign_key_check of {}",
        pre.display()
    );
    let mut stmt = conn.prepare("SELECT seq, kind FROM events").unwrap();
    let in_file: BTreeMap<i64, String> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (seq, kind) in &acked.events {
        assert_eq!(
            in_file.get(seq),
            Some(kind),
            "boot {boot}: acknowledged event {seq} ({kind}) not in the file as the cut left it"
        );
    }
    for id in acked.sessions.keys() {
        let n: i64 = conn
            .query_row("SELECT count(*) FROM sessions WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(
            n, 1,
            "boot {boot}: acknowledged session {id} not in the file"
        );
    }
}

/// Through the API after needled's restart in the guest.
fn check_api(op: &Api, acked: &mut Acked, boot: u32) {
    let mut log = BTreeMap::new();
    let mut after = 0;
    loop {
        let v = op.ok("GET", &format!("/v1/events?after={after}&limit=1000"), None);
        let page = v["events"].as_array().cloned().unwrap_or_default();
        for e in &page {
            after = e["seq"].as_i64().unwrap();
            log.insert(after, e["kind"].as_str().unwrap().to_string());
        }
        if page.len() < 1000 {
            break;
        }
    }
    for (seq, kind) in &acked.events {
        assert_eq!(
            log.get(seq),
            Some(kind),
            "boot {boot}: acknowledged event {seq} ({kind}) lost or changed"
        );
    }
    acked.events = log;
    acked.last_seq = after;

    // Every session the ledger holds (ids count up from 1), acknowledged or not.
    let mut id = 1;
    loop {
        let (status, s) = op.call("GET", &format!("/v1/sessions/{id}"), None);
        if status == 404 {
            break;
        }
        assert_eq!(status, 200, "boot {boot}: session {id}: {s}");
        assert_eq!(
            s["state"], "aborted",
            "boot {boot}: session {id} (never ended) after the restart: {s}"
        );
        if let Some(Some(c)) = acked.sessions.get(&id) {
            assert_eq!(
                s["cartridge_id"],
                c.as_str(),
                "boot {boot}: acknowledged binding of session {id} lost: {s}"
            );
        }
        if let Some(c) = s["cartridge_id"].as_str() {
            let r = op.ok("GET", &format!("/v1/cartridges/{c}"), None);
            assert_eq!(r["session_id"], id, "boot {boot}: cartridge {c}: {r}");
            assert_eq!(
                r["state"], "spent",
                "boot {boot}: cartridge {c} of aborted session {id}: {r}"
            );
        }
        id += 1;
    }
    let known = acked.sessions.keys().next_back().copied().unwrap_or(0);
    assert!(
        id > known,
        "boot {boot}: acknowledged session {known} missing (the ledger holds {})",
        id - 1
    );
    let status = op.ok("GET", "/v1/status", None);
    assert!(
        status["session"].is_null(),
        "boot {boot}: a session holds the pen after the restart: {status}"
    );
}

// -------------------------------------------------------------------------------------------
// The campaign
// -------------------------------------------------------------------------------------------

#[test]
fn power_cut_at_random_moments_keeps_every_acknowledged_record() {
    let Some(rig) = rig("power_cut_at_random_moments_keeps_every_acknowledged_record") else {
        return;
    };
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let cycles = u32::try_from(env("NEEDLE_POWERCUT_CYCLES").unwrap_or(6)).unwrap();
    let seed = env("NEEDLE_POWERCUT_SEED").unwrap_or_else(|| {
        let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        t.as_secs() ^ u64::from(t.subsec_nanos())
    });
    println!("power-cut campaign: {cycles} cycles, NEEDLE_POWERCUT_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let key = Arc::new(rig.prepare());
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut cut_in: BTreeMap<&'static str, u32> = BTreeMap::new();
    let (mut boots, mut boot_cuts) = (0, 0);
    let mut listen_times = Vec::new();
    let campaign = Instant::now();

    for cycle in 0..=cycles {
        // Now and then the boot itself is cut: the kernel replaying the journal, the guest
        // copying the ledger, needled recovering.
        if cycle > 0 && rng.gen_bool(0.2) {
            let last = listen_times
                .last()
                .copied()
                .unwrap_or(Duration::from_secs(10));
            let at = last.mul_f64(rng.gen_range(0.5..1.0));
            boots += 1;
            let guest = Guest::boot(&rig, boots);
            std::thread::sleep(at);
            guest.cut();
            boot_cuts += 1;
            println!("boot {boots}: cut {:.1} s into the boot", at.as_secs_f64());
        }
        boots += 1;
        let mut guest = Guest::boot(&rig, boots);
        let listening = guest.wait_listening();
        listen_times.push(listening);
        let (op, tech) = (guest.api(OPERATOR_TOKEN), guest.api(TECHNICIAN_TOKEN));
        if cycle > 0 {
            // Every cut left ext4 mounted: the kernel must have replayed its journal.
            let console = fs::read_to_string(&guest.console).unwrap_or_default();
            assert!(
                console.contains("EXT4-fs (vda): recovery complete"),
                "boot {boots}: ext4 found no journal to replay after a cut ({})",
                guest.console.display()
            );
            let mut a = acked.lock().unwrap();
            check_file(&rig.share.join("pre"), &a, boots);
            check_api(&op, &mut a, boots);
            println!(
                "boot {boots}: needled answering after {:.1} s; checked: {} events, {} sessions",
                listening.as_secs_f64(),
                a.events.len(),
                a.sessions.len()
            );
        } else {
            println!(
                "boot {boots}: needled answering after {:.1} s",
                listening.as_secs_f64()
            );
        }
        if cycle == cycles {
            break; // the last boot only checks
        }

        let events_before = acked.lock().unwrap().events.len();
        let (ready_tx, ready) = mpsc::channel();
        let driver = {
            let (acked, key, mut rng) = (
                Arc::clone(&acked),
                Arc::clone(&key),
                StdRng::seed_from_u64(rng.gen()),
            );
            std::thread::spawn(move || {
                drive(&op, &tech, &key, &acked, &mut rng, cycle + 1, ready_tx)
            })
        };
        ready
            .recv_timeout(Duration::from_secs(180))
            .expect("the session's creation was not acknowledged within 180 s");
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..CUT_WINDOW_MS)));
        guest.assert_alive("before the cut");
        guest.cut();
        let at = t0.elapsed();
        let (step, events) = {
            let a = acked.lock().unwrap();
            (a.step, a.events.len() - events_before)
        };
        *cut_in.entry(step).or_default() += 1;
        let how = match driver.join().expect("the driver thread panicked") {
            Err(why) => format!("the flow's next call: {why}"),
            Ok(()) => "after the flow".into(),
        };
        println!(
            "cycle {}: cut {:.1} s into the session, in {step}, {events} events acknowledged in it ({how})",
            cycle + 1,
            at.as_secs_f64()
        );
    }
    let a = acked.lock().unwrap();
    let total = campaign.elapsed().as_secs_f64();
    println!(
        "power-cut campaign: {cycles} cycles ({boots} boots, {boot_cuts} of them cut during the boot) in {total:.0} s, \
         {:.1} s per cycle; needled answering {:.1}-{:.1} s after QEMU started; {} acknowledged events and {} sessions \
         checked after every reboot; cuts in {cut_in:?}; faults a guest stall latched, cleared before homing: {:?}",
        total / f64::from(cycles.max(1)),
        listen_times.iter().min().unwrap_or(&Duration::ZERO).as_secs_f64(),
        listen_times.iter().max().unwrap_or(&Duration::ZERO).as_secs_f64(),
        a.events.len(),
        a.sessions.len(),
        a.faults_cleared,
    );
}
