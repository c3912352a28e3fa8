//! Session limits, enforced by the service's monitor: the time limit (with its warning) and
//! the cartridge's run-time budget, and a cartridge pulled between two looks. Built in-process
//! with short limits, on the sim backend.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use needle_core::units::{Micrometers, MilliHertz};
use needle_core::{Command, Controller, ControllerConfig};
use needle_sim::{Injection, SimParams};
use needled::cartridge::{self, FactoryKey, Needles, TagData};
use needled::control::{self, LoopConfig};
use needled::hal::sim::SimBackend;
use needled::session::{Actor, ChecklistSpec, CreateSession, Policy, Role, Service, Setpoints};
use needled::store::{CartridgeLimits, SessionState, Store};

fn service(
    dir: &std::path::Path,
    time_limit: Duration,
    limits: CartridgeLimits,
) -> (Service, FactoryKey) {
    let sim = SimBackend::new(SimParams::default());
    // Tests share 2 loaded cores with other tests and a browser, and this control thread runs
    // at normal priority (realtime: false): give the dead-man and the tick-gap check a margin
    // so a starved test process does not fault the session before its limit (one run beside
    // six builds, load average 19, saw a 1 s test drop back to `bound`). These tests are about
    // the monitor's limits; the dead-man is proven by
    // cut_host_link_faults_host_timeout_and_stops_motor and the tick gap by the core's tests.
    let mut config = ControllerConfig::default();
    config.safety.host_timeout = needle_core::units::Micros::from_millis(5_000);
    config.safety.max_tick_gap = needle_core::units::Micros::from_millis(5_000);
    let ctrl = Controller::new(sim.rig.hardware(), config).unwrap();
    let clock = sim.clock(control::monotonic_now());
    let handle = control::spawn(
        ctrl,
        clock,
        LoopConfig {
            period: Duration::from_millis(1),
            realtime: false,
            cpu: None,
        },
    )
    .unwrap();
    let key = cartridge::test_factory_key();
    let mut trust = cartridge::TrustStore::new();
    trust.trust(key.id(), &key.public_key()).unwrap();
    let policy = Policy {
        areas: BTreeMap::from([("face".to_string(), Micrometers(1_500))]),
        checklist: vec![ChecklistSpec {
            id: "consent".into(),
            text: "consent given".into(),
            required: true,
        }],
        time_limit: Duration::from_secs(3_600),
        // The area's own limit replaces the session default: what this test exercises.
        area_time_limits: BTreeMap::from([("face".to_string(), time_limit)]),
        warning_before: Duration::from_millis(500),
        min_interval: Duration::from_secs(0),
        limits,
        post_care: "keep it clean".into(),
        rate_range: (MilliHertz::from_hz(80), MilliHertz::from_hz(160)),
        numbing: None,
    };
    let store = Store::open(&dir.join("ledger.db")).unwrap();
    let tags = Box::new(sim.tag.clone());
    (
        Service::new(handle, store, trust, true, tags, policy, Some(sim)).unwrap(),
        key,
    )
}

fn actor() -> Actor {
    Actor {
        name: "tester".into(),
        role: Role::Technician,
    }
}

/// Drives the service to a session bound to a seated cartridge, the axis homed.
async fn bound_session(svc: &Service, key: &FactoryKey) -> i64 {
    let a = actor();
    svc.home(&a).await.unwrap();
    wait(svc, |s| s.telemetry.homed).await;
    let id = svc
        .create_session(
            &a,
            CreateSession {
                operator: Some("op".into()),
                subject_ref: "s-1".into(),
                area: "face".into(),
                checklist: BTreeMap::from([("consent".to_string(), true)]),
                override_reason: None,
                plan_id: None,
            },
        )
        .await
        .unwrap()
        .id;
    let data = TagData::new("C-1", "L-1", Needles::Pins12, "2099-01-01".parse().unwrap()).unwrap();
    svc.sim()
        .unwrap()
        .seat_cartridge(cartridge::provision(&data, key).unwrap().sim_chip(0));
    wait(svc, |s| {
        !s.telemetry
            .interlocks
            .contains(needle_core::Interlock::CartridgeMissing)
    })
    .await;
    svc.bind_cartridge(&a, id).await.unwrap();
    id
}

/// Drives the service to a running session; keeps the dead-man fed and the monitor running
/// while waiting.
async fn running_session(svc: &Service, key: &FactoryKey) -> i64 {
    let a = actor();
    let id = bound_session(svc, key).await;
    svc.arm(
        &a,
        id,
        Setpoints {
            depth_um: Some(800),
            rate_mhz: Some(120_000),
            override_reason: None,
        },
    )
    .await
    .unwrap();
    wait(svc, |s| !s.telemetry.depth_moving).await;
    svc.start(&a, id).await.unwrap();
    id
}

async fn wait(svc: &Service, f: impl Fn(&needled::control::Snapshot) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f(&svc.control().snapshot()) {
        assert!(
            Instant::now() < deadline,
            "timed out: {:?}",
            svc.control().snapshot().telemetry
        );
        let _ = svc.control().command(Command::Heartbeat).await;
        // As main's monitor task does: arming and starting need a monitor that runs.
        svc.monitor().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs the monitor (and the heartbeat) for `d`, as main's tasks do.
async fn monitor_for(svc: &Service, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        let _ = svc.control().command(Command::Heartbeat).await;
        svc.monitor().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_time_limit_warns_then_ends_the_session_and_stops_the_motor() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, key) = service(
        dir.path(),
        Duration::from_secs(2),
        CartridgeLimits::default(),
    );
    let id = running_session(&svc, &key).await;
    monitor_for(&svc, Duration::from_millis(1_000)).await;
    assert_eq!(svc.session(id).await.unwrap().state, SessionState::Running);
    monitor_for(&svc, Duration::from_millis(700)).await;
    let events = svc.read(|s| s.events_after(0, 1000)).await.unwrap();
    assert!(
        events.iter().any(|e| e.event.kind == "time_limit_warning"),
        "no warning before the limit"
    );
    assert_eq!(
        svc.session(id).await.unwrap().state,
        SessionState::Running,
        "ended before the limit"
    );
    monitor_for(&svc, Duration::from_millis(800)).await;
    let s = svc.session(id).await.unwrap();
    assert_eq!(s.state, SessionState::Ended);
    assert_eq!(s.end_reason.as_deref(), Some("session time limit reached"));
    let t = svc.control().snapshot().telemetry;
    assert!(!t.motor_enabled, "motor still enabled after the time limit");
    assert!(svc.sim().unwrap().rig.truth().duty == 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cartridge_run_time_budget_ends_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let limits = CartridgeLimits {
        max_run_ms: 1_500,
        max_strokes: 1_000_000,
    };
    let (svc, key) = service(dir.path(), Duration::from_secs(600), limits);
    let id = running_session(&svc, &key).await;
    monitor_for(&svc, Duration::from_millis(3_500)).await;
    let s = svc.session(id).await.unwrap();
    assert_eq!(s.state, SessionState::Ended, "{s:?}");
    assert_eq!(
        s.end_reason.as_deref(),
        Some("cartridge run-time or stroke budget exhausted")
    );
    assert!(
        s.run_ms >= 1_000 && s.run_ms <= 2_600,
        "run time {} ms",
        s.run_ms
    );
    assert!(!svc.sim().unwrap().rig.truth().motor_powered);
    let cart = svc
        .read(move |s| s.cartridge("C-1", &limits))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cart.state, needled::store::CartridgeState::Spent);
}

/// Durations are on the monotonic clock: an NTP step of the wall clock by hours mid-session
/// (a Pi without an RTC) neither ends the session at once nor burns the cartridge's budget,
/// and a step back does not extend the time limit. Wall time only stamps the records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_clock_steps_neither_end_nor_extend_a_session_nor_burn_the_budget() {
    const HOUR_MS: i64 = 3_600_000;
    let dir = tempfile::tempdir().unwrap();
    let limits = CartridgeLimits {
        max_run_ms: 60_000,
        max_strokes: 1_000_000,
    };
    let (svc, key) = service(dir.path(), Duration::from_secs(2), limits);
    let id = running_session(&svc, &key).await;
    monitor_for(&svc, Duration::from_millis(300)).await;
    svc.sim_step_wall_clock(3 * HOUR_MS).unwrap();
    monitor_for(&svc, Duration::from_millis(700)).await;
    let s = svc.session(id).await.unwrap();
    assert_eq!(
        (s.state, s.end_reason.as_deref()),
        (SessionState::Running, None),
        "a wall-clock step forward ended the session"
    );
    let events = svc.read(|s| s.events_after(0, 1000)).await.unwrap();
    assert!(
        !events.iter().any(|e| e.event.kind == "time_limit_warning"),
        "a wall-clock step forward brought the time-limit warning"
    );
    let cart = svc
        .read(move |s| s.cartridge("C-1", &limits))
        .await
        .unwrap()
        .unwrap();
    assert!(
        cart.run_ms <= 2_000,
        "a wall-clock step forward burned {} ms of the cartridge's run time",
        cart.run_ms
    );
    svc.sim_step_wall_clock(-6 * HOUR_MS).unwrap();
    // The limit is 2 s of running from the first start; give it half a second more.
    monitor_for(&svc, Duration::from_millis(1_500)).await;
    let s = svc.session(id).await.unwrap();
    assert_eq!(
        (s.state, s.end_reason.as_deref()),
        (SessionState::Ended, Some("session time limit reached")),
        "a wall-clock step back extended the time limit"
    );
    assert!(
        (1_500..=2_600).contains(&s.run_ms),
        "run time {} ms for a 2 s limit",
        s.run_ms
    );
    let cart = svc
        .read(move |s| s.cartridge("C-1", &limits))
        .await
        .unwrap()
        .unwrap();
    assert!(
        cart.run_ms <= 2_600,
        "cartridge run time {} ms",
        cart.run_ms
    );
    assert!(!svc.sim().unwrap().rig.truth().motor_powered);
}

/// A disarm at a limit that fails (a full command queue) is not ignored: the session stays
/// open and watched, every monitor pass tries again, and the session ends only once the rig's
/// truth shows the motor stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_disarm_at_a_limit_is_retried_until_the_motor_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, key) = service(
        dir.path(),
        Duration::from_secs(1),
        CartridgeLimits::default(),
    );
    let id = running_session(&svc, &key).await;
    // Paused: the session's time runs on (it counts from the first start), the motor time the
    // core was given in the Arm does not, so only the service's own stop can end this arming,
    // and the core stays armed (a pedal press would start it) until a disarm takes.
    monitor_for(&svc, Duration::from_millis(200)).await;
    svc.pause(&actor(), id).await.unwrap();
    svc.sim_fail_disarms(20).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while svc.session(id).await.unwrap().state != SessionState::Ended {
        assert!(Instant::now() < deadline, "the session never ended");
        monitor_for(&svc, Duration::from_millis(10)).await;
        let state = svc.control().snapshot().telemetry.state;
        if svc.sim().unwrap().rig.truth().motor_powered
            || matches!(
                state,
                needle_core::State::Armed
                    | needle_core::State::Paused
                    | needle_core::State::Running
            )
        {
            assert_ne!(
                svc.session(id).await.unwrap().state,
                SessionState::Ended,
                "the session was ended while the needles still ran or could be started"
            );
        }
    }
    let s = svc.session(id).await.unwrap();
    assert_eq!(s.end_reason.as_deref(), Some("session time limit reached"));
    assert!(!svc.sim().unwrap().rig.truth().motor_powered);
    let events = svc.read(|s| s.events_after(0, 1000)).await.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event.kind == "disarm_failed")
            .count(),
        1,
        "the failed disarm is recorded once"
    );
}

/// The monitor reconciles a controller that is armed or running with no session the ledger
/// shows armed (here: the session was ended in the ledger behind the service's back): it
/// disarms, and records that it did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_disarms_a_core_running_without_an_armed_session() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, key) = service(
        dir.path(),
        Duration::from_secs(600),
        CartridgeLimits::default(),
    );
    let id = running_session(&svc, &key).await;
    wait(&svc, |_| svc.sim().unwrap().rig.truth().motor_powered).await;
    // Another writer on the same ledger file (a second handle), behind the service's back.
    Store::open(&dir.path().join("ledger.db"))
        .unwrap()
        .end_session(
            id,
            needled::session::unix_ms(),
            0,
            0,
            "ended by another ledger user",
            "tester",
        )
        .unwrap();
    monitor_for(&svc, Duration::from_millis(300)).await;
    assert!(
        !svc.sim().unwrap().rig.truth().motor_powered,
        "the needles run with no session watching them"
    );
    assert_eq!(
        svc.control().snapshot().telemetry.state,
        needle_core::State::Idle
    );
    let events = svc.read(|s| s.events_after(0, 1000)).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.event.kind == "reconcile_disarm" && e.event.detail["disarmed"] == true),
        "no reconcile_disarm event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cartridge_pulled_and_reseated_between_two_polls_is_spent() {
    let dir = tempfile::tempdir().unwrap();
    let limits = CartridgeLimits::default();
    let (svc, key) = service(dir.path(), Duration::from_secs(600), limits);
    let id = bound_session(&svc, &key).await;
    svc.monitor().await;
    assert_eq!(svc.session(id).await.unwrap().state, SessionState::Bound);
    // Out and back in within 10 ms, between two looks of the monitor.
    let rig = svc.sim().unwrap().rig.clone();
    let t = rig.now();
    rig.schedule(
        t.saturating_add(needle_core::units::Micros(5_000)),
        Injection::Cartridge(false),
    );
    rig.schedule(
        t.saturating_add(needle_core::units::Micros(15_000)),
        Injection::Cartridge(true),
    );
    while rig.now().since(t) < needle_core::units::Micros(40_000) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(rig.cartridge_seated());
    svc.monitor().await;
    let s = svc.session(id).await.unwrap();
    assert_eq!(s.state, SessionState::Ended, "{s:?}");
    assert_eq!(
        s.end_reason.as_deref(),
        Some("cartridge removed during the session")
    );
    let cart = svc
        .read(move |s| s.cartridge("C-1", &limits))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cart.state, needled::store::CartridgeState::Spent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_stops_the_motor_at_the_cartridge_budget_without_the_monitor() {
    // The service's monitor never looks (hung, or busy): only the budget given in the Arm
    // can stop the needles. The heartbeat goes on, so the dead-man does not.
    let dir = tempfile::tempdir().unwrap();
    let limits = CartridgeLimits {
        max_run_ms: 1_000,
        max_strokes: 1_000_000,
    };
    let (svc, key) = service(dir.path(), Duration::from_secs(600), limits);
    let id = running_session(&svc, &key).await;
    let rig = svc.sim().unwrap().rig.clone();
    let started = rig.now();
    let end = Instant::now() + Duration::from_millis(2_500);
    while Instant::now() < end {
        let _ = svc.control().command(Command::Heartbeat).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let truth = rig.truth();
    assert!(!truth.motor_powered, "motor still running past the budget");
    let off = truth.motor_off_at.expect("motor went off").since(started);
    assert!(
        off <= needle_core::units::Micros::from_millis(1_100),
        "motor off after {off:?}"
    );
    // The monitor's next look ends the session as its own budget stop would.
    svc.monitor().await;
    let s = svc.session(id).await.unwrap();
    assert_eq!(s.state, SessionState::Ended, "{s:?}");
    assert_eq!(
        s.end_reason.as_deref(),
        Some("cartridge run-time or stroke budget exhausted")
    );
    let cart = svc
        .read(move |s| s.cartridge("C-1", &limits))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cart.state, needled::store::CartridgeState::Spent);
}
