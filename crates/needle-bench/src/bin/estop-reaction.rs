//! BENCHMARKS.md section 2: wall time from an E-stop press to the motor being off.
//!
//! Builds needled's control stack in-process, exactly as `needled` wires the sim backend
//! (`SimBackend` + `Controller` + `control::spawn` with the `SimClock`, configuration from
//! `needled::config`), so no HTTP sits between the press and the measurement. A heartbeat
//! thread refreshes the dead-man through the same `ControlHandle` the service uses. A bare
//! 1 kHz floor loop runs beside it for the target (one period plus the floor's p99 lateness).
//!
//! Each press: the motor runs (armed and started), the bench thread waits a random 0-3 ms so
//! presses land at random phases of the tick, records CLOCK_MONOTONIC, presses the E-stop on
//! the rig (`rig.inject(Injection::EStop(true))`) and spins reading the rig's physical truth
//! (`truth().motor_powered`) until it is false, recording CLOCK_MONOTONIC again. Then it
//! releases the E-stop, clears the latched fault, re-arms and starts for the next press.
//!
//! Usage: estop-reaction [--presses 1000] [--realtime true|false] [--runs 1]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use needle_bench::clock::{machine, mono_ns};
use needle_bench::floor::Floor;
use needle_bench::stats::{median, Summary};
use needle_bench::{arg, args, print_result};
use needle_core::units::{Micrometers, Micros, MilliHertz};
use needle_core::{Command, Controller, State};
use needle_sim::{Injection, SimParams};
use needled::control::{self, ControlHandle, LoopConfig};
use needled::hal::sim::SimBackend;
use serde_json::json;

fn wait(
    h: &ControlHandle,
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}: {:?}", h.snapshot()));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

fn command(h: &ControlHandle, c: Command) -> Result<(), String> {
    match block_on(h.command(c)) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(r)) => Err(format!("{c:?} refused: {}", r.code())),
        Err(e) => Err(format!("{c:?}: {e}")),
    }
}

/// A tiny xorshift for the press phase (no need for cryptographic randomness).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn run_once(presses: usize, realtime: bool, seed: u64) -> Result<serde_json::Value, String> {
    let config = needled::config::parse("", "defaults").map_err(|e| e.to_string())?;
    let core = config.controller_config();
    let period_us = core.safety.tick_period.0;
    let sim = SimBackend::new(SimParams::default());
    sim.seat_cartridge(None);
    let ctrl =
        Controller::new(sim.rig.hardware(), core).map_err(|e| format!("controller config: {e}"))?;
    let loop_config = LoopConfig {
        period: Duration::from_micros(period_us),
        realtime,
    };
    let handle = Arc::new(
        control::spawn(ctrl, sim.clock(control::monotonic_now()), loop_config)
            .map_err(|e| e.to_string())?,
    );
    let floor = Floor::spawn(period_us, realtime);

    // The dead-man: what needled's heartbeat task does, every host_timeout / 5.
    let stop = Arc::new(AtomicBool::new(false));
    let heartbeat = {
        let (h, stop) = (Arc::clone(&handle), Arc::clone(&stop));
        let every = Duration::from_micros(core.safety.host_timeout.0 / 5);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let _ = block_on(h.command(Command::Heartbeat));
                std::thread::sleep(every);
            }
        })
    };

    let state = |h: &ControlHandle| h.snapshot().telemetry.state;
    command(&handle, Command::Home)?;
    wait(&handle, "homing", Duration::from_secs(20), || {
        state(&handle) == State::Idle && handle.snapshot().telemetry.homed
    })?;

    let mut rng = Rng(seed | 1);
    let mut results: Vec<u64> = Vec::with_capacity(presses);
    let mut rehomed = 0u32;
    let arm = Command::Arm {
        depth: Micrometers(500),
        rate: MilliHertz::from_hz(120),
        ceiling: Micrometers(1_500),
        max_run: Micros(u64::MAX),
        max_strokes: u32::MAX,
    };
    for i in 0..presses {
        command(&handle, arm)?;
        wait(
            &handle,
            "armed and settled",
            Duration::from_secs(10),
            || {
                let t = handle.snapshot().telemetry;
                t.state == State::Armed && !t.depth_moving
            },
        )
        .map_err(|e| format!("press {i}: {e}"))?;
        command(&handle, Command::Start)?;
        wait(&handle, "motor powered", Duration::from_secs(2), || {
            sim.rig.truth().motor_powered
        })?;
        // A random phase against the tick.
        let pause = Duration::from_micros(rng.next() % 3_000);
        std::thread::sleep(pause);
        if !sim.rig.truth().motor_powered {
            return Err(format!(
                "press {i}: the motor stopped by itself: {:?}",
                handle.snapshot().telemetry
            ));
        }

        let t0 = mono_ns();
        sim.rig.inject(Injection::EStop(true));
        let mut spins = 0u64;
        while sim.rig.truth().motor_powered {
            spins += 1;
            if spins.is_multiple_of(64) {
                if mono_ns() - t0 > 1_000_000_000 {
                    return Err(format!(
                        "press {i}: motor still powered 1 s after the E-stop"
                    ));
                }
                std::thread::yield_now();
            }
            std::hint::spin_loop();
        }
        let t1 = mono_ns();
        results.push(t1 - t0);

        // Release, clear, and be ready for the next press.
        sim.rig.inject(Injection::EStop(false));
        wait(
            &handle,
            "E-stop fault latched",
            Duration::from_secs(2),
            || {
                let t = handle.snapshot().telemetry;
                t.state == State::Fault || t.state == State::EStop
            },
        )?;
        wait(&handle, "fault cleared", Duration::from_secs(2), || {
            block_on(handle.command(Command::ClearFaults)).is_ok_and(|r| r.is_ok())
        })?;
        wait(&handle, "idle", Duration::from_secs(2), || {
            state(&handle) == State::Idle
        })?;
        if !handle.snapshot().telemetry.homed {
            rehomed += 1;
            command(&handle, Command::Home)?;
            wait(&handle, "re-homing", Duration::from_secs(20), || {
                state(&handle) == State::Idle && handle.snapshot().telemetry.homed
            })?;
        }
    }
    let loop_stats = handle.snapshot().stats;
    stop.store(true, Ordering::Release);
    let _ = heartbeat.join();
    let floor = floor.stop();
    drop(handle);

    let mut us: Vec<u64> = results.iter().map(|ns| ns / 1_000).collect();
    let s = Summary::of(&mut us);
    let floor_s = floor.summary();
    let target_us = period_us + floor_s.p99;
    Ok(json!({
        "presses": results.len(),
        "reaction": s.json("us"),
        "rehomed": rehomed,
        "period_us": period_us,
        "control_loop": loop_stats,
        "floor": floor.json(),
        "target_p99_us": target_us,
        "meets_target": s.p99 <= target_us,
    }))
}

fn main() {
    let a = args();
    let presses: usize = arg(&a, "presses", 1_000);
    let realtime: bool = arg(&a, "realtime", true);
    let runs: usize = arg(&a, "runs", 1).max(1);
    let seed: u64 = arg(&a, "seed", mono_ns());
    println!("estop-reaction: {presses} presses x {runs} run(s), realtime={realtime}, seed={seed}");
    println!("machine: {}", machine());
    let mut all = Vec::new();
    for r in 0..runs {
        match run_once(presses, realtime, seed.wrapping_add(r as u64)) {
            Ok(v) => {
                println!(
                    "run {}: p50 {} us, p99 {} us, max {} us (target p99 <= {} us: {}); \
                     control loop p99 lateness {} us, floor p99 {} us, realtime {}",
                    r + 1,
                    v["reaction"]["p50_us"],
                    v["reaction"]["p99_us"],
                    v["reaction"]["max_us"],
                    v["target_p99_us"],
                    if v["meets_target"] == true {
                        "met"
                    } else {
                        "MISSED"
                    },
                    v["control_loop"]["lateness_p99_us"],
                    v["floor"]["lateness_p99_us"],
                    v["control_loop"]["realtime"],
                );
                all.push(v);
            }
            Err(e) => {
                eprintln!("estop-reaction: run {}: {e}", r + 1);
                std::process::exit(1);
            }
        }
    }
    let med =
        |f: &dyn Fn(&serde_json::Value) -> f64| median(&all.iter().map(f).collect::<Vec<_>>());
    let summary = json!({
        "bench": "estop-reaction",
        "runs": all.len(),
        "presses_per_run": presses,
        "median_p50_us": med(&|v| v["reaction"]["p50_us"].as_f64().unwrap_or(f64::NAN)),
        "median_p99_us": med(&|v| v["reaction"]["p99_us"].as_f64().unwrap_or(f64::NAN)),
        "median_max_us": med(&|v| v["reaction"]["max_us"].as_f64().unwrap_or(f64::NAN)),
        "median_target_p99_us": med(&|v| v["target_p99_us"].as_f64().unwrap_or(f64::NAN)),
        "runs_meeting_target": all.iter().filter(|v| v["meets_target"] == true).count(),
        "machine": machine(),
        "per_run": all,
    });
    print_result(&summary);
}
