//! Crash consistency campaign: the real needled, driven through random session flows over
//! HTTP, killed with SIGKILL at random moments, restarted, and checked.
//!
//! Each cycle: a driver thread runs a random prefix of a session flow (create, seat a cartridge,
//! bind, home, arm, start, run, pause, resume, change setpoints, pull the cartridge, end; now
//! and then first an attempt to bind a cartridge that an earlier session already used), with
//! random pauses and reads of the event log; meanwhile the main thread kills needled with
//! SIGKILL after a random delay. Sometimes the restart is itself killed a few milliseconds in
//! (during crash recovery). Then needled restarts and the checks run:
//!
//! - through the API: every session the campaign ever created is finished; one whose `end` was
//!   acknowledged is `ended`; one that was open when it was last acknowledged, with no end,
//!   cartridge pull or kill-in-flight end possible, is `aborted`; every acknowledged binding
//!   (session <-> cartridge) is still there and the cartridge is spent; every event the API
//!   returned before the kill is still in the log with the same seq and kind; no cartridge
//!   that was bound was ever accepted by a second session;
//! - by opening the SQLite file read-only: `PRAGMA integrity_check` is `ok`,
//!   `PRAGMA foreign_key_check` is empty, no cartridge is bound to two sessions (in either
//!   table, or in the `cartridge_bound` history), the two sides of every binding agree, no
//!   session is left open, and every acknowledged event seq is present.
//!
//! `CRASH_CYCLES` sets the number of cycles (default 20, the CI form; run 200 on demand:
//! `CRASH_CYCLES=200 cargo test -p needled --test crash_campaign -- --nocapture`).
//! `CRASH_SEED` replays a campaign; the seed is printed at the start.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use needle_client::harness::{Launch, Running};
use needle_client::Client;
use needled::cartridge::{self, Needles, TagData};
use rusqlite::OpenFlags;
use serde_json::{json, Value};

// -------------------------------------------------------------------------------------------
// The service as a child process
// -------------------------------------------------------------------------------------------

struct Needled {
    running: Running,
    api: Api,
}

#[derive(Clone)]
struct Api {
    operator: Client,
    technician: Client,
}

/// needled on needle-client's harness, with a generous tick gap: as the service tests, so a
/// loaded CI machine does not latch ControlOverrun in the middle of a flow (that would be
/// correct, but not this test).
fn launch(data: &Path) -> Launch {
    let config = data.join("test.toml");
    if !config.exists() {
        std::fs::write(&config, "[control]\nmax_tick_gap_ms = 500\n").unwrap();
    }
    Launch::new(env!("CARGO_BIN_EXE_needled"), config, data)
}

fn start(data: &Path) -> Needled {
    let running = launch(data)
        .start()
        .expect("needled starts (after a crash it must always come back)");
    let operator = Client::new(running.base(), running.token("operator").unwrap());
    let technician = operator.as_token(running.token("technician").unwrap());
    Needled {
        running,
        api: Api {
            operator,
            technician,
        },
    }
}

/// A transport failure: the service is gone (killed), or did not answer in time.
#[derive(Debug)]
struct Gone(String);

impl Api {
    fn call(
        &self,
        method: &str,
        path: &str,
        technician: bool,
        body: Option<Value>,
    ) -> Result<(u16, Value), Gone> {
        let client = if technician {
            &self.technician
        } else {
            &self.operator
        };
        client
            .call(method, path, body.as_ref())
            .map_err(|e| match e {
                needle_client::Error::Transport(e) => Gone(format!("{method} {path}: {e}")),
                e => panic!("{method} {path}: {e}"),
            })
    }

    fn must(&self, method: &str, path: &str) -> Value {
        let (status, v) = self
            .call(method, path, false, None)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(status < 300, "{method} {path}: {status} {v}");
        v
    }

    /// The sim injection that seats a fresh cartridge `id` (test factory key, chip unused).
    fn tag(&self, id: &str) -> Value {
        let data = TagData::new(
            id,
            "LOT-CRASH",
            Needles::Pins12,
            "2099-12-31".parse().unwrap(),
        )
        .unwrap();
        cartridge::provision_test(&data).unwrap().seat_json(0)
    }

    /// Reads the event log after `model.last_seq`, acknowledging every event it returns.
    fn read_events(&self, model: &Mutex<Model>) -> Result<(), Gone> {
        loop {
            let after = model.lock().unwrap().last_seq;
            let (status, v) = self.call(
                "GET",
                &format!("/v1/events?after={after}&limit=1000"),
                false,
                None,
            )?;
            assert_eq!(status, 200, "{v}");
            let events = v["events"].as_array().cloned().unwrap_or_default();
            let mut m = model.lock().unwrap();
            for e in &events {
                let seq = e["seq"].as_i64().unwrap();
                let kind = e["kind"].as_str().unwrap().to_string();
                assert!(
                    seq > m.last_seq,
                    "event log out of order: {seq} after {}",
                    m.last_seq
                );
                m.last_seq = seq;
                m.events.insert(seq, kind);
            }
            if events.len() < 1000 {
                return Ok(());
            }
        }
    }
}

// -------------------------------------------------------------------------------------------
// What the API acknowledged
// -------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct SessionAck {
    /// Last state an API response showed.
    state: String,
    /// The cartridge a bind response acknowledged.
    cartridge: Option<String>,
    /// An end or a cartridge pull was sent (acknowledged or not): the session may have ended
    /// instead of being aborted by the restart.
    may_end: bool,
}

#[derive(Debug, Default)]
struct Model {
    sessions: BTreeMap<i64, SessionAck>,
    /// Cartridge id -> the session a bind response acknowledged.
    bound: BTreeMap<String, i64>,
    /// Every event seq the API returned, with its kind.
    events: BTreeMap<i64, String>,
    last_seq: i64,
    /// Binds of already used cartridges that were refused, by code.
    reuse_refusals: BTreeMap<String, u32>,
    violations: Vec<String>,
    /// The flow step each kill landed in.
    killed_in: BTreeMap<&'static str, u32>,
    step: &'static str,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
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

// -------------------------------------------------------------------------------------------
// The driver: a random prefix of a session flow
// -------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Create,
    Seat,
    Bind,
    Home,
    Arm,
    Start,
    Run,
    Pause,
    Resume,
    Setpoints,
    Pull,
    End,
}

const FLOW: [Step; 12] = [
    Step::Create,
    Step::Seat,
    Step::Bind,
    Step::Home,
    Step::Arm,
    Step::Start,
    Step::Run,
    Step::Pause,
    Step::Resume,
    Step::Setpoints,
    Step::Pull,
    Step::End,
];

fn step_name(s: Step) -> &'static str {
    match s {
        Step::Create => "create",
        Step::Seat => "seat",
        Step::Bind => "bind",
        Step::Home => "home",
        Step::Arm => "arm",
        Step::Start => "start",
        Step::Run => "run",
        Step::Pause => "pause",
        Step::Resume => "resume",
        Step::Setpoints => "setpoints",
        Step::Pull => "pull",
        Step::End => "end",
    }
}

fn set_state(model: &Mutex<Model>, id: i64, v: &Value) {
    if let Some(state) = v["state"].as_str() {
        if let Some(s) = model.lock().unwrap().sessions.get_mut(&id) {
            s.state = state.to_string();
        }
    }
}

fn wait_status(api: &Api, timeout: Duration, f: impl Fn(&Value) -> bool) -> Result<bool, Gone> {
    let deadline = Instant::now() + timeout;
    loop {
        let (_, s) = api.call("GET", "/v1/status", false, None)?;
        if f(&s) {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Tries to bind a cartridge an earlier session already used to a new session: must be
/// refused, whatever happened before.
fn try_reuse(api: &Api, model: &Mutex<Model>, rng: &mut Rng, cycle: u32) -> Result<(), Gone> {
    let used: Vec<String> = model.lock().unwrap().bound.keys().cloned().collect();
    if used.is_empty() {
        return Ok(());
    }
    let old = &used[usize::try_from(rng.below(used.len() as u64)).unwrap()];
    model.lock().unwrap().step = "reuse";
    let body = json!({ "operator": "dr-crash", "subject_ref": format!("reuse-{cycle}-{}", rng.below(1_000_000)), "area": "face", "checklist": checklist() });
    let (status, v) = api.call("POST", "/v1/sessions", false, Some(body))?;
    if status != 201 {
        return Ok(());
    }
    let id = v["id"].as_i64().unwrap();
    model.lock().unwrap().sessions.insert(
        id,
        SessionAck {
            state: "created".into(),
            cartridge: None,
            may_end: false,
        },
    );
    let (status, _) = api.call("POST", "/v1/sim/inject", true, Some(api.tag(old)))?;
    assert_eq!(status, 200);
    let (status, v) = api.call("POST", &format!("/v1/sessions/{id}/cartridge"), false, None)?;
    let mut m = model.lock().unwrap();
    if status < 300 {
        let first = m.bound[old];
        m.violations.push(format!(
            "cartridge {old}, bound to session {first}, was bound again to session {id}"
        ));
    } else {
        *m.reuse_refusals
            .entry(v["error"]["code"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    m.sessions.get_mut(&id).unwrap().may_end = true;
    drop(m);
    let (status, v) = api.call(
        "POST",
        &format!("/v1/sessions/{id}/end"),
        false,
        Some(json!({ "reason": "reuse probe" })),
    )?;
    if status < 300 {
        set_state(model, id, &v);
    }
    api.call(
        "POST",
        "/v1/sim/inject",
        true,
        Some(json!({ "action": "pull_cartridge" })),
    )?;
    Ok(())
}

/// Flows one after another until the kill cuts one short (at most a few). Half the cycles home
/// the axis before `ready` tells the killer to start its clock, so kills also land in the
/// later steps of a flow rather than mostly in homing.
fn drive(
    api: &Api,
    model: &Mutex<Model>,
    rng: &mut Rng,
    cycle: u32,
    ready: std::sync::mpsc::Sender<()>,
) -> Result<(), Gone> {
    if rng.chance(50) {
        model.lock().unwrap().step = "home";
        api.call("POST", "/v1/home", false, None)?;
        wait_status(api, Duration::from_secs(15), |s| {
            s["state"] == "Idle" && s["homed"] == true
        })?;
    }
    let _ = ready.send(());
    for flow in 0..4 {
        one_flow(api, model, rng, cycle, flow)?;
    }
    model.lock().unwrap().step = "done";
    Ok(())
}

fn one_flow(
    api: &Api,
    model: &Mutex<Model>,
    rng: &mut Rng,
    cycle: u32,
    flow: u32,
) -> Result<(), Gone> {
    if rng.chance(30) {
        try_reuse(api, model, rng, cycle)?;
    }
    let prefix = 1 + usize::try_from(rng.below(FLOW.len() as u64)).unwrap();
    let cartridge = format!("CR-{cycle:04}-{flow}-{}", rng.below(1000));
    let mut session: Option<i64> = None;
    for &step in &FLOW[..prefix] {
        model.lock().unwrap().step = step_name(step);
        if rng.chance(40) {
            api.read_events(model)?;
        }
        std::thread::sleep(Duration::from_millis(rng.below(120)));
        let path = |what: &str| format!("/v1/sessions/{}/{what}", session.unwrap_or(0));
        match step {
            Step::Create => {
                let body = json!({ "operator": "dr-crash", "subject_ref": format!("subject-{cycle}-{flow}"), "area": "body", "checklist": checklist() });
                let (status, v) = api.call("POST", "/v1/sessions", false, Some(body))?;
                if status != 201 {
                    break;
                }
                let id = v["id"].as_i64().unwrap();
                session = Some(id);
                model.lock().unwrap().sessions.insert(
                    id,
                    SessionAck {
                        state: "created".into(),
                        cartridge: None,
                        may_end: false,
                    },
                );
            }
            Step::Seat => {
                let tag = api.tag(&cartridge);
                api.call("POST", "/v1/sim/inject", true, Some(tag))?;
            }
            Step::Bind => {
                let (status, v) = api.call("POST", &path("cartridge"), false, None)?;
                if status >= 300 {
                    break;
                }
                assert_eq!(v["id"], cartridge.as_str(), "{v}");
                let id = session.unwrap();
                let mut m = model.lock().unwrap();
                if let Some(other) = m.bound.insert(cartridge.clone(), id) {
                    m.violations.push(format!(
                        "cartridge {cartridge} bound to session {other} and then to {id}"
                    ));
                }
                let s = m.sessions.get_mut(&id).unwrap();
                s.state = "bound".into();
                s.cartridge = Some(cartridge.clone());
            }
            Step::Home => {
                // Home once per process; a homed axis keeps its reference.
                let (_, status) = api.call("GET", "/v1/status", false, None)?;
                if status["homed"] != true {
                    api.call("POST", "/v1/home", false, None)?;
                }
                if !wait_status(api, Duration::from_secs(15), |s| {
                    s["state"] == "Idle" && s["homed"] == true
                })? {
                    break;
                }
            }
            Step::Arm => {
                let depth = 200 + 50 * i64::try_from(rng.below(30)).unwrap();
                let (status, v) = api.call(
                    "POST",
                    &path("arm"),
                    false,
                    Some(json!({ "depth_um": depth, "rate_mhz": 120_000 })),
                )?;
                if status >= 300 {
                    break;
                }
                set_state(model, session.unwrap(), &v);
                wait_status(api, Duration::from_secs(10), |s| {
                    s["depth"]["moving"] == false
                })?;
            }
            Step::Start | Step::Resume => {
                let (status, v) = api.call("POST", &path("start"), false, None)?;
                if status < 300 {
                    set_state(model, session.unwrap(), &v);
                }
            }
            Step::Run => std::thread::sleep(Duration::from_millis(rng.below(600))),
            Step::Pause => {
                let (status, v) = api.call("POST", &path("pause"), false, None)?;
                if status < 300 {
                    set_state(model, session.unwrap(), &v);
                }
            }
            Step::Setpoints => {
                let (status, v) = api.call(
                    "PUT",
                    &path("setpoints"),
                    false,
                    Some(json!({ "depth_um": 900, "rate_mhz": 110_000 })),
                )?;
                if status < 300 {
                    set_state(model, session.unwrap(), &v);
                }
            }
            Step::Pull => {
                if rng.chance(30) {
                    if let Some(id) = session {
                        model.lock().unwrap().sessions.get_mut(&id).unwrap().may_end = true;
                    }
                    api.call(
                        "POST",
                        "/v1/sim/inject",
                        true,
                        Some(json!({ "action": "pull_cartridge" })),
                    )?;
                }
            }
            Step::End => {
                let id = session.unwrap();
                model.lock().unwrap().sessions.get_mut(&id).unwrap().may_end = true;
                let (status, v) = api.call(
                    "POST",
                    &path("end"),
                    false,
                    Some(json!({ "reason": "crash campaign" })),
                )?;
                if status < 300 {
                    set_state(model, id, &v);
                }
            }
        }
    }
    api.read_events(model)?;
    // Leave the pen free for the next flow (a no-op if this one ended).
    if let Some(id) = session {
        let state = model.lock().unwrap().sessions[&id].state.clone();
        if state != "ended" && state != "aborted" {
            model.lock().unwrap().sessions.get_mut(&id).unwrap().may_end = true;
            let (status, v) = api.call(
                "POST",
                &format!("/v1/sessions/{id}/end"),
                false,
                Some(json!({ "reason": "next flow" })),
            )?;
            if status < 300 {
                set_state(model, id, &v);
            }
        }
    }
    Ok(())
}

// -------------------------------------------------------------------------------------------
// The checks after a restart
// -------------------------------------------------------------------------------------------

fn check_api(api: &Api, model: &Mutex<Model>, cycle: u32) {
    let before: BTreeMap<i64, String> = model.lock().unwrap().events.clone();
    // Re-read the whole log and compare with every event acknowledged so far.
    let mut log = BTreeMap::new();
    let mut after = 0;
    loop {
        let v = api.must("GET", &format!("/v1/events?after={after}&limit=1000"));
        let page = v["events"].as_array().cloned().unwrap_or_default();
        for e in &page {
            let seq = e["seq"].as_i64().unwrap();
            assert!(seq > after, "cycle {cycle}: event log out of order");
            after = seq;
            log.insert(seq, e["kind"].as_str().unwrap().to_string());
        }
        if page.len() < 1000 {
            break;
        }
    }
    for (seq, kind) in &before {
        assert_eq!(
            log.get(seq),
            Some(kind),
            "cycle {cycle}: acknowledged event {seq} ({kind}) lost or changed"
        );
    }
    {
        let mut m = model.lock().unwrap();
        m.last_seq = after;
        m.events = log;
    }

    let m = model.lock().unwrap();
    for (id, ack) in &m.sessions {
        let s = api.must("GET", &format!("/v1/sessions/{id}"));
        let state = s["state"].as_str().unwrap();
        assert!(
            state == "ended" || state == "aborted",
            "cycle {cycle}: session {id} left {state} after restart: {s}"
        );
        if ack.state == "ended" {
            assert_eq!(
                state, "ended",
                "cycle {cycle}: acknowledged end of session {id} lost: {s}"
            );
        } else if !ack.may_end {
            assert_eq!(
                state, "aborted",
                "cycle {cycle}: session {id} (last acknowledged {}) not aborted: {s}",
                ack.state
            );
        }
        if let Some(c) = &ack.cartridge {
            assert_eq!(
                s["cartridge_id"],
                c.as_str(),
                "cycle {cycle}: acknowledged binding of session {id} lost: {s}"
            );
        }
    }
    for (c, id) in &m.bound {
        let r = api.must("GET", &format!("/v1/cartridges/{c}"));
        assert_eq!(
            r["session_id"], *id,
            "cycle {cycle}: cartridge {c} binding: {r}"
        );
        assert_eq!(
            r["state"], "spent",
            "cycle {cycle}: cartridge {c} of a finished session not spent: {r}"
        );
    }
    let status = api.must("GET", "/v1/status");
    assert!(
        status["session"].is_null(),
        "cycle {cycle}: a session holds the pen after restart: {status}"
    );
    assert!(m.violations.is_empty(), "cycle {cycle}: {:?}", m.violations);
}

fn check_sqlite(db: &Path, model: &Mutex<Model>, cycle: u32) {
    let conn = rusqlite::Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .expect("open the ledger read-only");
    let integrity: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(integrity, ["ok"], "cycle {cycle}: integrity_check");
    let rows = |sql: &str| -> Vec<String> {
        let mut stmt = conn.prepare(sql).unwrap();
        let n = stmt.column_count();
        stmt.query_map([], |r| {
            Ok((0..n)
                .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                .collect::<Vec<_>>()
                .join("|"))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    let checks = [
        ("foreign keys", "PRAGMA foreign_key_check"),
        (
            "a cartridge bound to two sessions",
            "SELECT cartridge_id FROM sessions WHERE cartridge_id IS NOT NULL GROUP BY cartridge_id HAVING count(*) > 1",
        ),
        (
            "a session holding two cartridges",
            "SELECT session_id FROM cartridges WHERE session_id IS NOT NULL GROUP BY session_id HAVING count(*) > 1",
        ),
        (
            "a cartridge bound twice in the history",
            "SELECT cartridge_id FROM events WHERE kind = 'cartridge_bound' GROUP BY cartridge_id HAVING count(*) > 1",
        ),
        (
            "the two sides of a binding disagree",
            "SELECT c.id, c.session_id, s.cartridge_id FROM cartridges c LEFT JOIN sessions s ON s.id = c.session_id \
             WHERE c.session_id IS NOT NULL AND s.cartridge_id IS NOT c.id \
             UNION ALL SELECT s.cartridge_id, s.id, c.session_id FROM sessions s LEFT JOIN cartridges c ON c.id = s.cartridge_id \
             WHERE s.cartridge_id IS NOT NULL AND c.session_id IS NOT s.id",
        ),
        ("a session left open", "SELECT id, state FROM sessions WHERE state NOT IN ('ended', 'aborted')"),
        ("a cartridge of a finished session not spent", "SELECT c.id FROM cartridges c WHERE c.state = 'in_use'"),
    ];
    for (what, sql) in checks {
        let found = rows(sql);
        assert!(found.is_empty(), "cycle {cycle}: {what}: {found:?}");
    }
    let seqs: BTreeSet<i64> = conn
        .prepare("SELECT seq FROM events")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let m = model.lock().unwrap();
    let missing: Vec<&i64> = m.events.keys().filter(|s| !seqs.contains(s)).collect();
    assert!(
        missing.is_empty(),
        "cycle {cycle}: acknowledged events missing from the file: {missing:?}"
    );
}

// -------------------------------------------------------------------------------------------
// The campaign
// -------------------------------------------------------------------------------------------

#[test]
fn sigkill_at_random_moments_never_breaks_the_ledger() {
    let cycles: u32 = std::env::var("CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            u64::try_from(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
                    % u128::from(u64::MAX),
            )
            .unwrap()
        });
    println!("crash campaign: {cycles} cycles, CRASH_SEED={seed}");
    let mut rng = Rng(seed | 1);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let model = Arc::new(Mutex::new(Model::default()));
    let started = Instant::now();
    let mut n = start(&data);
    let mut early_kills = 0;
    for cycle in 1..=cycles {
        let api = n.api.clone();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let driver = {
            let (model, mut rng) = (Arc::clone(&model), Rng(rng.next() | 1));
            std::thread::spawn(move || drive(&api, &model, &mut rng, cycle, ready_tx))
        };
        let _ = ready.recv_timeout(Duration::from_secs(20));
        // SIGKILL at a random moment of the flow (or after it).
        std::thread::sleep(Duration::from_millis(rng.below(2_500)));
        assert!(n.running.kill().is_some(), "needled ran until the kill");
        {
            let mut m = model.lock().unwrap();
            let step = m.step;
            *m.killed_in.entry(step).or_default() += 1;
        }
        if let Err(Gone(why)) = driver.join().expect("driver thread panicked") {
            println!("cycle {cycle}: flow cut by the kill at {why}");
        }
        drop(n);
        if rng.chance(20) {
            // Kill the restart itself a few milliseconds in: during recovery.
            let mut early = launch(&data).spawn().expect("start needled");
            std::thread::sleep(Duration::from_millis(rng.below(60)));
            early.kill().unwrap();
            early.wait().unwrap();
            early_kills += 1;
        }
        n = start(&data);
        check_api(&n.api, &model, cycle);
        check_sqlite(&data.join("needled.db"), &model, cycle);
    }
    let m = model.lock().unwrap();
    println!(
        "crash campaign: {cycles} cycles in {:.1} s, {} sessions, {} bindings, {} events checked, kills in {:?}, \
         {early_kills} kills during recovery, reuse refusals {:?}",
        started.elapsed().as_secs_f64(),
        m.sessions.len(),
        m.bound.len(),
        m.events.len(),
        m.killed_in,
        m.reuse_refusals
    );
    assert!(m.violations.is_empty(), "{:?}", m.violations);
}

/// Regression for a crash window found while building this campaign: needled creates
/// `tokens.json` with `create_new` and then writes it, so a kill (or a power cut before the
/// data reaches the disk) between the two leaves an empty file, and every later start fails
/// on it ("tokens.json: EOF while parsing") until someone deletes the file. The fix belongs to
/// `crates/needled/src/auth.rs`: write the file atomically (a temporary file, fsync, then
/// hard-link it into place, as `DeviceKey::load_or_create` does), and treat an empty
/// `tokens.json` (what the old code can have left) as absent, since no token was ever handed
/// out from it.
#[test]
fn restart_after_a_kill_during_token_file_creation() {
    let dir = tempfile::tempdir().unwrap();
    // The state a SIGKILL between `create_new` and `write_all` leaves.
    std::fs::write(dir.path().join("tokens.json"), b"").unwrap();
    let n = start(dir.path());
    assert_eq!(n.api.call("GET", "/v1/health", false, None).unwrap().0, 200);
}
