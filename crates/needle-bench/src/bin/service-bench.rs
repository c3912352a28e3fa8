//! BENCHMARKS.md sections 3 and 4: the real needled's control-loop lateness beside
//! `cyclictest` (the floor: same 1 ms period, same SCHED_FIFO priority, same window), idle,
//! with the API under load from a second process, and beside a CPU hog; and the API's own
//! figures under that load.
//!
//! For every run and phase a fresh needled starts (release binary, default configuration but
//! for `control.realtime_priority`) with a fresh data directory, so its loop statistics (which
//! accumulate from the control thread's start) cover that phase alone; cyclictest starts as
//! soon as needled listens and is stopped (SIGINT) when needled's statistics are read, so both
//! cover the same wall-clock window. In every phase the motor runs (a session at 1000 um,
//! 120 Hz), so the control thread does its full work and the physics advance every tick.
//!
//! Phases:
//! - `idle`: no API traffic for the phase's seconds.
//! - `status`: `loadgen` (a second process) sends GET /v1/status over keep-alive connections as
//!   fast as they answer, bounded by time and a request cap.
//! - `sse`: `sse-fanout` (a second process) holds 50 telemetry streams open.
//! - any of them with `+hog` (`idle+hog`): `stress-ng --cpu N` (N = `--hog-cpus`, default one
//!   per CPU) spins at normal priority from before needled starts to the end of the phase.
//!
//! After each phase, correctness under that load is judged by the rig's truth, not the
//! controller's telemetry: still running, no fault latched (a tick later than
//! `control.max_tick_gap_ms` would latch ControlOverrun; a starved heartbeat would latch
//! HostTimeout), true stroke rate within 1 % of the setpoint, true depth within one step
//! (2.5 um) of the setpoint.
//!
//! On a rig with isolated CPUs, `--cpu N` gives needled `control.cpu = N` and
//! `--cyclictest-cpu M` pins cyclictest to CPU M (a CPU of its own too: on one CPU, two
//! 1 kHz SCHED_FIFO threads delay each other whenever their wake-ups meet).
//!
//! Usage: service-bench [--runs 3] [--seconds 20] [--phases idle,status,sse,idle+hog]
//!                      [--realtime true] [--connections 4] [--clients 50] [--hog-cpus 0]
//!                      [--cpu N] [--cyclictest-cpu M] [--needled PATH]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use needle_bench::clock::machine;
use needle_bench::proc::{sibling_binary, Needled};
use needle_bench::rt_tools::{ratio, Cyclictest, Hog};
use needle_bench::stats::median;
use needle_bench::{arg, args, print_result};
use serde_json::{json, Value};

const DEPTH_UM: i32 = 1_000;
const RATE_HZ: u32 = 120;
const PERIOD_US: u64 = 1_000;
/// Phases whose p99 must be within 10 % of cyclictest's (issue 16): idle and API load.
const RATIO_TARGET: f64 = 1.10;

/// How a phase runs.
struct Setup {
    seconds: u64,
    realtime: bool,
    connections: usize,
    clients: usize,
    hog_cpus: usize,
    cpu: Option<u32>,
    cyclictest_cpu: Option<u32>,
}

/// Runs a sibling bench binary and returns its `RESULT` JSON.
fn run_tool(name: &str, args: &[String]) -> Result<Value, String> {
    let bin = sibling_binary(name);
    let mut child = Command::new(&bin)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let out = child.stdout.take().ok_or("no stdout")?;
    let mut result = None;
    for line in BufReader::new(out).lines() {
        let line = line.map_err(|e| e.to_string())?;
        if let Some(j) = line.strip_prefix("RESULT ") {
            result = serde_json::from_str(j).ok();
        } else {
            println!("    {line}");
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("{name} failed: {status}"));
    }
    result.ok_or_else(|| format!("{name} printed no RESULT line"))
}

fn phase(full_name: &str, s: &Setup) -> Result<Value, String> {
    let (name, hog) = match full_name.strip_suffix("+hog") {
        Some(base) => (base, true),
        None => (full_name, false),
    };
    let (seconds, realtime) = (s.seconds, s.realtime);
    // Bounds, should this process die before stopping them: the phase plus set-up time.
    let bound = seconds + 120;
    let hog = if hog {
        Some(Hog::start(s.hog_cpus, bound)?)
    } else {
        None
    };
    let bin = sibling_binary("needled");
    let cpu = s.cpu.map_or(String::new(), |c| format!("cpu = {c}\n"));
    let n = Needled::start(
        &bin,
        &format!("[control]\nrealtime_priority = {realtime}\n{cpu}"),
    )?;
    let floor = Cyclictest::start(PERIOD_US, realtime, s.cyclictest_cpu, bound)?;
    let setup = n.start_running_session(DEPTH_UM, RATE_HZ);
    let load = match (&setup, name) {
        (Err(_), _) => Value::Null,
        (Ok(_), "idle") => {
            std::thread::sleep(Duration::from_secs(seconds));
            Value::Null
        }
        (Ok(_), "status") => run_tool(
            "loadgen",
            &[
                "--url".into(),
                format!("{}/v1/status", n.base),
                "--token".into(),
                n.operator.clone(),
                "--connections".into(),
                s.connections.to_string(),
                "--seconds".into(),
                seconds.to_string(),
                "--requests".into(),
                (seconds * 50_000).to_string(),
            ],
        )?,
        (Ok(_), "sse") => run_tool(
            "sse-fanout",
            &[
                "--base".into(),
                n.base.clone(),
                "--token".into(),
                n.operator.clone(),
                "--clients".into(),
                s.clients.to_string(),
                "--seconds".into(),
                seconds.to_string(),
            ],
        )?,
        (Ok(_), other) => return Err(format!("unknown phase {other}")),
    };
    let status = n.status();
    let floor = floor.stop()?;
    let hog_cpus = hog.as_ref().map(|h| h.cpus);
    drop(hog);
    setup?;
    let status = status?;
    let truth = n.truth()?;
    let rate = truth["rate_hz"].as_f64().unwrap_or(f64::NAN);
    let depth = truth["depth_um"].as_f64().unwrap_or(f64::NAN);
    let faults = status["faults"].clone();
    let correct = status["state"] == "Running"
        && faults.as_array().is_some_and(Vec::is_empty)
        && (rate - f64::from(RATE_HZ)).abs() <= f64::from(RATE_HZ) * 0.01
        && (depth - f64::from(DEPTH_UM)).abs() <= 2.5;
    let service = status["control"].clone();
    let sp99 = service["lateness_p99_us"].as_f64().unwrap_or(f64::NAN);
    let smax = service["lateness_max_us"].as_f64().unwrap_or(f64::NAN);
    let (fp99, fmax) = (floor.p99 as f64, floor.max as f64);
    Ok(json!({
        "phase": full_name,
        "hog_cpus": hog_cpus,
        "service": service,
        "cyclictest": floor.json(PERIOD_US),
        "p99_ratio": ratio(sp99, fp99),
        "max_ratio": ratio(smax, fmax),
        "p99_difference_us": sp99 - fp99,
        "load": load,
        "correct": correct,
        "end_state": status["state"],
        "faults": faults,
        "true_rate_hz": (rate * 1000.0).round() / 1000.0,
        "true_depth_um": (depth * 10.0).round() / 10.0,
    }))
}

fn main() {
    let a = args();
    let runs: usize = arg(&a, "runs", 3).clamp(1, 50);
    let seconds: u64 = arg(&a, "seconds", 20).clamp(1, 600);
    let realtime: bool = arg(&a, "realtime", true);
    let setup = Setup {
        seconds,
        realtime,
        connections: arg(&a, "connections", 4).clamp(1, 64),
        clients: arg(&a, "clients", 50).clamp(1, 500),
        hog_cpus: arg(&a, "hog-cpus", 0).clamp(0, 64),
        cpu: a.contains_key("cpu").then(|| arg(&a, "cpu", 0)),
        cyclictest_cpu: a
            .contains_key("cyclictest-cpu")
            .then(|| arg(&a, "cyclictest-cpu", 0)),
    };
    let phases: Vec<String> = a
        .get("phases")
        .map_or("idle,status,sse,idle+hog", String::as_str)
        .split(',')
        .map(str::to_string)
        .collect();
    if let Some(p) = a.get("needled") {
        std::env::set_var("NEEDLED_BIN", p);
    }
    println!(
        "service-bench: {runs} run(s) x phases {phases:?}, {seconds} s each, realtime={realtime}, needled {}",
        sibling_binary("needled").display()
    );
    println!("machine: {}", machine());
    let mut rows: Vec<Value> = Vec::new();
    for run in 1..=runs {
        for p in &phases {
            match phase(p, &setup) {
                Ok(row) => {
                    println!(
                        "run {run} {p:>8}: service lateness p50/p99/max {}/{}/{} us, overruns {}, priority {}, \
                         cpu {}, memory locked {} | cyclictest {}/{}/{} us, overruns {} | ratio p99 {} max {} \
                         | correct {} (rate {} Hz, depth {} um, faults {})",
                        row["service"]["lateness_p50_us"],
                        row["service"]["lateness_p99_us"],
                        row["service"]["lateness_max_us"],
                        row["service"]["overruns"],
                        row["service"]["priority"],
                        row["service"]["cpu"],
                        row["service"]["memory_locked"],
                        row["cyclictest"]["lateness_p50_us"],
                        row["cyclictest"]["lateness_p99_us"],
                        row["cyclictest"]["lateness_max_us"],
                        row["cyclictest"]["overruns"],
                        row["p99_ratio"],
                        row["max_ratio"],
                        row["correct"],
                        row["true_rate_hz"],
                        row["true_depth_um"],
                        row["faults"],
                    );
                    let mut row = row;
                    row["run"] = run.into();
                    rows.push(row);
                }
                Err(e) => {
                    eprintln!("service-bench: run {run} phase {p}: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
    let mut summary = serde_json::Map::new();
    for p in &phases {
        let of: Vec<&Value> = rows.iter().filter(|r| r["phase"] == p.as_str()).collect();
        let med = |path: &[&str]| {
            let vals: Vec<f64> = of
                .iter()
                .filter_map(|r| {
                    path.iter()
                        .try_fold(*r, |v, k| v.get(k))
                        .and_then(Value::as_f64)
                })
                .collect();
            (median(&vals) * 1000.0).round() / 1000.0
        };
        let mut m = json!({
            "service_p50_us": med(&["service", "lateness_p50_us"]),
            "service_p99_us": med(&["service", "lateness_p99_us"]),
            "service_max_us": med(&["service", "lateness_max_us"]),
            "service_overruns": med(&["service", "overruns"]),
            "cyclictest_p50_us": med(&["cyclictest", "lateness_p50_us"]),
            "cyclictest_p99_us": med(&["cyclictest", "lateness_p99_us"]),
            "cyclictest_max_us": med(&["cyclictest", "lateness_max_us"]),
            "cyclictest_overruns": med(&["cyclictest", "overruns"]),
            "p99_ratio": med(&["p99_ratio"]),
            "max_ratio": med(&["max_ratio"]),
            "p99_difference_us": med(&["p99_difference_us"]),
            "correct_runs": of.iter().filter(|r| r["correct"] == true).count(),
            "runs": of.len(),
        });
        if !p.ends_with("+hog") {
            // The target (issue 16): idle and under API load, the service's p99 lateness
            // within 10 % of cyclictest's in the same window, as a median over the runs.
            // Beside the hog the target is correctness alone.
            m["meets_p99_ratio_target"] = (med(&["p99_ratio"]) <= RATIO_TARGET).into();
        }
        if p.starts_with("status") {
            m["rps"] = med(&["load", "rps"]).into();
            m["latency_p50_us"] = med(&["load", "latency", "p50_us"]).into();
            m["latency_p99_us"] = med(&["load", "latency", "p99_us"]).into();
            m["latency_max_us"] = med(&["load", "latency", "max_us"]).into();
            m["non_2xx"] = med(&["load", "non_2xx"]).into();
        }
        if p.starts_with("sse") {
            m["events_per_s"] = med(&["load", "events_per_s"]).into();
            m["gap_p50_us"] = med(&["load", "gap", "p50_us"]).into();
            m["gap_p99_us"] = med(&["load", "gap", "p99_us"]).into();
            m["age_p50_us"] = med(&["load", "age", "p50_us"]).into();
            m["age_p99_us"] = med(&["load", "age", "p99_us"]).into();
            m["failed_clients"] = med(&["load", "failed_clients"]).into();
        }
        println!("median over {} run(s), {p}: {m}", of.len());
        summary.insert(p.clone(), m);
    }
    print_result(&json!({
        "bench": "service-bench",
        "runs": runs,
        "seconds": seconds,
        "realtime": realtime,
        "machine": machine(),
        "medians": summary,
        "per_run": rows,
    }));
}
