//! BENCHMARKS.md section 2b: time from an E-stop press to the motor being off, on the control
//! clock.
//!
//! Builds needled's control stack in-process, exactly as `needled` wires the sim backend
//! (`SimBackend` + `Controller` + `control::spawn` with the `SimClock`, configuration from
//! `needled::config`, the memory locked as `needled` locks it), so no HTTP sits between the
//! press and the measurement. A heartbeat thread refreshes the dead-man through the same
//! `ControlHandle` the service uses. `cyclictest` runs beside it over the whole run for the
//! target (one period plus cyclictest's p99 lateness); with `--hog true`, `stress-ng --cpu N`
//! spins beside both.
//!
//! Each press: the motor runs (armed and started), the bench thread waits a random 0-3 ms so
//! presses land at random phases of the tick, reads the control clock (the sim's time: the
//! SimClock's CLOCK_MONOTONIC minus its start) and presses the E-stop on the rig
//! (`rig.inject(Injection::EStop(true))`). The motor-off time is the rig's own record
//! (`truth().motor_off_at`: the sim time of the tick that cut the power), so the reaction is
//! measured by the sim's timestamps on the control clock; the bench thread only sleeps while
//! it waits, and does not perturb what it measures. The press's time is read before the
//! injection, so a press delayed between the two only lengthens the reaction measured. Then it
//! releases the E-stop, clears the latched fault, re-arms and starts for the next press.
//!
//! Usage: estop-reaction [--presses 1000] [--realtime true|false] [--runs 1] [--hog false]
//!                       [--hog-cpus 0]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use needle_bench::clock::{machine, mono_ns};
use needle_bench::rt_tools::{ratio, Cyclictest, Hog};
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
        // Sparse polls: every look at the rig or the snapshot takes a lock the control thread
        // also takes.
        std::thread::sleep(Duration::from_millis(1));
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

/// How the runs go.
struct Setup {
    presses: usize,
    realtime: bool,
    /// `stress-ng --cpu` workers beside the run (0: one per CPU), if any.
    hog: Option<usize>,
}

fn run_once(setup: &Setup, seed: u64) -> Result<serde_json::Value, String> {
    let (presses, realtime) = (setup.presses, setup.realtime);
    // A bound for the helpers, should this process die before stopping them.
    let bound = 600 + presses as u64;
    let hog = setup.hog.map(|cpus| Hog::start(cpus, bound)).transpose()?;
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
        cpu: None,
    };
    let start = control::monotonic_now();
    let handle =
        Arc::new(control::spawn(ctrl, sim.clock(start), loop_config).map_err(|e| e.to_string())?);
    // The control clock: what the SimClock gives the controller and the rig.
    let control_clock = || control::monotonic_now().since(start);
    let floor = Cyclictest::start(period_us, realtime, None, bound)?;

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
    let mut ticks_to_off: Vec<u64> = Vec::with_capacity(presses);
    let mut inject_max_us = 0u64;
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

        let pressed = control_clock();
        sim.rig.inject(Injection::EStop(true));
        inject_max_us = inject_max_us.max(control_clock().since(pressed).0);
        wait(&handle, "motor off", Duration::from_secs(1), || {
            !sim.rig.truth().motor_powered
        })
        .map_err(|e| format!("press {i}: {e}"))?;
        let off = sim
            .rig
            .truth()
            .motor_off_at
            .ok_or_else(|| format!("press {i}: the rig recorded no motor-off time"))?;
        // A press that lands inside a tick which then reads it is off at that tick's time,
        // before the press: 0.
        results.push(off.since(pressed).0);
        ticks_to_off.push(sim.rig.ticks_between(pressed, off).unwrap_or(u64::MAX));

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
    let floor = floor.stop()?;
    drop(handle);
    let hog_cpus = hog.as_ref().map(|h| h.cpus);
    drop(hog);

    let s = Summary::of(&mut results);
    let target_us = period_us + floor.p99;
    #[allow(clippy::cast_precision_loss)] // microsecond figures, far below 2^52
    let (lp99, lmax) = (
        loop_stats.lateness_p99_us as f64,
        loop_stats.lateness_max_us as f64,
    );
    Ok(json!({
        "presses": results.len(),
        "reaction": s.json("us"),
        "off_in_first_tick_after_press": ticks_to_off.iter().filter(|&&n| n <= 1).count(),
        "ticks_to_off_max": ticks_to_off.iter().max(),
        "press_injection_max_us": inject_max_us,
        "rehomed": rehomed,
        "period_us": period_us,
        "hog_cpus": hog_cpus,
        "control_loop": loop_stats,
        "cyclictest": floor.json(period_us),
        "loop_p99_ratio": ratio(lp99, floor.p99 as f64),
        "loop_max_ratio": ratio(lmax, floor.max as f64),
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
    let hog = arg(&a, "hog", false).then(|| arg(&a, "hog-cpus", 0usize));
    let setup = Setup {
        presses,
        realtime,
        hog,
    };
    // As needled does at start (it is not fatal there either).
    let memory = needled::realtime::lock_memory().map_or_else(|e| e, |()| "locked".into());
    println!(
        "estop-reaction: {presses} presses x {runs} run(s), realtime={realtime}, hog={hog:?}, \
         memory {memory}, seed={seed}"
    );
    println!("machine: {}", machine());
    let mut all = Vec::new();
    for r in 0..runs {
        match run_once(&setup, seed.wrapping_add(r as u64)) {
            Ok(v) => {
                println!(
                    "run {}: p50 {} us, p99 {} us, max {} us (target p99 <= {} us: {}); off in the \
                     first tick after the press {} of {}; control loop p99/max lateness {}/{} us, \
                     cyclictest {}/{} us, ratio p99 {} max {}, priority {}",
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
                    v["off_in_first_tick_after_press"],
                    v["presses"],
                    v["control_loop"]["lateness_p99_us"],
                    v["control_loop"]["lateness_max_us"],
                    v["cyclictest"]["lateness_p99_us"],
                    v["cyclictest"]["lateness_max_us"],
                    v["loop_p99_ratio"],
                    v["loop_max_ratio"],
                    v["control_loop"]["priority"],
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
        "median_loop_p99_ratio": med(&|v| v["loop_p99_ratio"].as_f64().unwrap_or(f64::NAN)),
        "median_loop_max_ratio": med(&|v| v["loop_max_ratio"].as_f64().unwrap_or(f64::NAN)),
        "hog": hog,
        "runs_meeting_target": all.iter().filter(|v| v["meets_target"] == true).count(),
        "machine": machine(),
        "per_run": all,
    });
    print_result(&summary);
}
