//! The run's report in `target/hil-report/`: `summary.json` (rig, versions, every scenario's
//! checks with measured figures) and `points.csv` (every depth and rate point: setpoint,
//! measured, error).
//!
//! Scenarios run in separate processes (nextest), so each writes its own file under
//! `scenarios/` and then rebuilds the summary from all of them, under a file lock. A new run
//! (a new `NEXTEST_RUN_ID`) clears the previous run's files first.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::fs::{self, File};
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::bench::{Bench, RigKind};
use crate::error::{HilError, Result};
use crate::rig::RigOptions;

/// Overrides the report directory.
pub const REPORT_DIR_ENV: &str = "HIL_REPORT_DIR";

/// The report directory: `HIL_REPORT_DIR` or `<target>/hil-report`.
pub fn report_dir() -> PathBuf {
    std::env::var_os(REPORT_DIR_ENV).map_or_else(
        || crate::sim::target_dir().join("hil-report"),
        PathBuf::from,
    )
}

/// One pass/fail check with what was measured and the limit it was held to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// What is checked.
    pub name: String,
    /// The verdict.
    pub passed: bool,
    /// What the jig measured.
    pub measured: String,
    /// The limit.
    pub limit: String,
}

/// One depth or rate point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// `depth` (µm), `rate` (Hz) or `home` (µm).
    pub quantity: String,
    /// `up`, `down`, or empty.
    pub direction: String,
    /// Setpoint.
    pub setpoint: f64,
    /// What the jig measured.
    pub measured: f64,
    /// measured - setpoint.
    pub error: f64,
    /// Unit of the three.
    pub unit: String,
    /// Measurement uncertainty (half-width), same unit; 0 if not known.
    pub uncertainty: f64,
    /// Tolerance on the error, same unit.
    pub tolerance: f64,
    /// |error| within the tolerance.
    pub passed: bool,
}

/// What one scenario found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScenarioReport {
    /// Test name.
    pub name: String,
    /// What it proves.
    pub proves: String,
    /// `sim` or `pi`.
    pub rig: String,
    /// Whether every check passed and nothing failed.
    pub passed: bool,
    /// Start, unix ms.
    pub started_at_ms: u64,
    /// Wall time, s.
    pub duration_s: f64,
    /// Versions under test.
    pub versions: Value,
    /// The jig's instruments.
    pub jig: String,
    /// Where the jig config came from.
    pub jig_config: String,
    /// The tolerances in force.
    pub tolerances: Value,
    /// The checks.
    pub checks: Vec<Check>,
    /// Measured figures by name.
    pub figures: BTreeMap<String, Value>,
    /// Remarks: measurement resolution, what the rig cannot show, ...
    pub notes: Vec<String>,
    /// An error that stopped the scenario.
    pub error: Option<String>,
    /// Depth and rate points.
    pub points: Vec<Point>,
}

/// Collects a scenario's checks, figures and points.
#[derive(Debug)]
pub struct Recorder {
    report: ScenarioReport,
}

impl Recorder {
    /// Records a check; returns the verdict.
    pub fn check(
        &mut self,
        name: &str,
        passed: bool,
        measured: impl Display,
        limit: impl Display,
    ) -> bool {
        println!(
            "  {} {name}: {measured} (limit {limit})",
            if passed { "ok  " } else { "FAIL" }
        );
        self.report.checks.push(Check {
            name: name.into(),
            passed,
            measured: measured.to_string(),
            limit: limit.to_string(),
        });
        passed
    }

    /// Records that the jig saw the motor stay off (`powered`: whether it saw it powered at
    /// all); returns the verdict.
    pub fn check_motor_off(&mut self, name: &str, powered: bool) -> bool {
        self.check(
            name,
            !powered,
            if powered { "powered" } else { "off" },
            "off",
        )
    }

    /// An empty recorder, for unit tests of judging code.
    #[cfg(test)]
    pub(crate) fn for_test() -> Self {
        Self {
            report: ScenarioReport::default(),
        }
    }

    /// The checks recorded so far.
    pub fn checks(&self) -> &[Check] {
        &self.report.checks
    }

    /// Records a check that an operation was refused with `code`.
    pub fn check_refused(&mut self, name: &str, got: Result<(u16, String)>, code: &str) {
        let (passed, measured) = match got {
            Ok((status, c)) => (c == code && status >= 400, format!("HTTP {status} {c}")),
            Err(e) => (false, e.to_string()),
        };
        self.check(name, passed, measured, format!("refused with {code}"));
    }

    /// Records a measured figure.
    pub fn figure(&mut self, name: &str, value: impl Serialize) {
        let v = serde_json::to_value(value).unwrap_or(Value::Null);
        println!("  figure {name} = {v}");
        self.report.figures.insert(name.into(), v);
    }

    /// Records a remark.
    pub fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        println!("  note: {text}");
        self.report.notes.push(text);
    }

    /// Records a point; returns whether it is within its tolerance.
    #[allow(clippy::too_many_arguments)]
    pub fn point(
        &mut self,
        quantity: &str,
        direction: &str,
        setpoint: f64,
        measured: f64,
        unit: &str,
        uncertainty: f64,
        tolerance: f64,
    ) -> bool {
        let error = measured - setpoint;
        let passed = error.abs() <= tolerance;
        self.report.points.push(Point {
            quantity: quantity.into(),
            direction: direction.into(),
            setpoint,
            measured,
            error,
            unit: unit.into(),
            uncertainty,
            tolerance,
            passed,
        });
        passed
    }

    /// The points so far.
    pub fn points(&self) -> &[Point] {
        &self.report.points
    }

    /// Records an operation's failure as a failed check and goes on.
    pub fn must<T>(&mut self, what: &str, r: Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.check(what, false, e.to_string(), "no error");
                None
            }
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
}

/// This run's id: nextest's, or one per process under `cargo test`.
pub fn run_id() -> String {
    std::env::var("NEXTEST_RUN_ID").unwrap_or_else(|_| {
        static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        ID.get_or_init(|| format!("process-{}-{}", std::process::id(), unix_ms()))
            .clone()
    })
}

/// Runs a scenario on the bench the environment selects (see [`run_scenario_on`]).
pub fn run_scenario(
    name: &str,
    proves: &str,
    options: RigOptions,
    body: impl FnOnce(&mut Bench, &mut Recorder) -> Result<()>,
) {
    let kind = crate::bench::rig_kind_from_env();
    run_scenario_on(kind, name, proves, options, body)
}

/// Opens a bench, runs `body`, writes the scenario's report and rebuilds the run's summary;
/// then panics (fails the test) if any check failed, the body returned an error or panicked,
/// or the bench could not be opened.
pub fn run_scenario_on(
    kind: Result<RigKind>,
    name: &str,
    proves: &str,
    options: RigOptions,
    body: impl FnOnce(&mut Bench, &mut Recorder) -> Result<()>,
) {
    println!("scenario {name}: {proves}");
    let started = Instant::now();
    let mut rec = Recorder {
        report: ScenarioReport {
            name: name.into(),
            proves: proves.into(),
            started_at_ms: unix_ms(),
            ..ScenarioReport::default()
        },
    };
    if let Ok(k) = &kind {
        rec.report.rig = match k {
            RigKind::Sim => "sim".into(),
            RigKind::Pi => "pi".into(),
            RigKind::Link => "link".into(),
        };
    }
    let outcome: std::result::Result<(), String> =
        match kind.and_then(|k| Bench::open_kind(k, options)) {
            Err(e) => Err(format!("the bench could not be opened: {e}")),
            Ok(mut bench) => {
                let versions = bench.rig.versions();
                rec.report.rig = versions.rig.clone();
                rec.report.versions = serde_json::to_value(&versions).unwrap_or(Value::Null);
                rec.report.jig = bench.jig.describe();
                rec.report.jig_config = bench
                    .config_source
                    .as_ref()
                    .map_or_else(|| "defaults".into(), |p| p.display().to_string());
                rec.report.tolerances = json!({
                    "tolerances": bench.config.tolerances,
                    "scenarios": bench.config.scenarios,
                    "rig_settings": bench.rig.settings(),
                });
                let result = catch_unwind(AssertUnwindSafe(|| body(&mut bench, &mut rec)));
                let failed =
                    !matches!(result, Ok(Ok(()))) || rec.report.checks.iter().any(|c| !c.passed);
                if let Some(log) = bench.rig.log_tail().filter(|_| failed) {
                    println!("needled's log ends:\n{log}");
                    rec.report.notes.push(format!("needled's log ends:\n{log}"));
                }
                match result {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(panic) => Err(panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panicked".into())),
                }
            }
        };
    rec.report.duration_s = started.elapsed().as_secs_f64();
    if let Err(e) = &outcome {
        rec.report.error = Some(e.clone());
    }
    let failed: Vec<&Check> = rec.report.checks.iter().filter(|c| !c.passed).collect();
    rec.report.passed = outcome.is_ok() && failed.is_empty() && !rec.report.checks.is_empty();
    let write = write_scenario(&report_dir(), &run_id(), &rec.report);
    let mut problems = Vec::new();
    if rec.report.checks.is_empty() && outcome.is_ok() {
        problems.push("the scenario recorded no checks".to_string());
    }
    problems.extend(failed.iter().map(|c| {
        format!(
            "check '{}' failed: measured {}, limit {}",
            c.name, c.measured, c.limit
        )
    }));
    if let Err(e) = outcome {
        problems.push(format!("error: {e}"));
    }
    if let Err(e) = write {
        problems.push(format!("the report could not be written: {e}"));
    }
    println!(
        "scenario {name}: {} in {:.1} s",
        if problems.is_empty() { "PASS" } else { "FAIL" },
        rec.report.duration_s
    );
    assert!(
        problems.is_empty(),
        "scenario {name} failed:\n  {}",
        problems.join("\n  ")
    );
}

/// Writes one scenario's report into `dir` and rebuilds the summary and the points CSV.
pub fn write_scenario(dir: &Path, run_id: &str, report: &ScenarioReport) -> Result<()> {
    let scenarios = dir.join("scenarios");
    fs::create_dir_all(&scenarios).map_err(|e| HilError::io(&scenarios, e))?;
    let lock_path = dir.join(".lock");
    let lock = File::create(&lock_path).map_err(|e| HilError::io(&lock_path, e))?;
    lock.lock().map_err(|e| HilError::io(&lock_path, e))?;
    let run_path = dir.join("run.json");
    let previous: Option<Value> = fs::read_to_string(&run_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    if previous.as_ref().and_then(|v| v["run_id"].as_str()) != Some(run_id) {
        // A new run: the previous run's scenarios are not part of it.
        if let Ok(entries) = fs::read_dir(&scenarios) {
            for entry in entries.flatten() {
                let _ = fs::remove_file(entry.path());
            }
        }
        write_atomic(
            &run_path,
            json!({ "run_id": run_id, "started_at_ms": unix_ms() })
                .to_string()
                .as_bytes(),
        )?;
    }
    let text =
        serde_json::to_string_pretty(report).map_err(|e| HilError::Service(e.to_string()))?;
    write_atomic(
        &scenarios.join(format!("{}.json", report.name)),
        text.as_bytes(),
    )?;
    let all = read_scenarios(dir)?;
    write_atomic(
        &dir.join("summary.json"),
        serde_json::to_string_pretty(&summary(run_id, &all))
            .unwrap_or_default()
            .as_bytes(),
    )?;
    write_atomic(&dir.join("points.csv"), points_csv(&all).as_bytes())?;
    drop(lock);
    Ok(())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(|e| HilError::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| HilError::io(&tmp, e))?;
    f.sync_all().map_err(|e| HilError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| HilError::io(path, e))
}

/// Every scenario report of the current run in `dir`, by name.
pub fn read_scenarios(dir: &Path) -> Result<Vec<ScenarioReport>> {
    let scenarios = dir.join("scenarios");
    let mut out = Vec::new();
    let entries = fs::read_dir(&scenarios).map_err(|e| HilError::io(&scenarios, e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = fs::read_to_string(&path).map_err(|e| HilError::io(&path, e))?;
            let r: ScenarioReport = serde_json::from_str(&text)
                .map_err(|e| HilError::Service(format!("{}: {e}", path.display())))?;
            out.push(r);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The run's summary: rig, versions, and each scenario without its points.
pub fn summary(run_id: &str, all: &[ScenarioReport]) -> Value {
    let passed = all.iter().filter(|r| r.passed).count();
    let first = all.iter().find(|r| !r.rig.is_empty());
    let rigs: std::collections::BTreeSet<&str> = all
        .iter()
        .map(|r| r.rig.as_str())
        .filter(|r| !r.is_empty())
        .collect();
    json!({
        "run_id": run_id,
        "generated_at_ms": unix_ms(),
        "rig": rigs.into_iter().collect::<Vec<_>>().join("+"),
        "versions": first.map_or(Value::Null, |r| r.versions.clone()),
        "jig": first.map_or(String::new(), |r| r.jig.clone()),
        "jig_config": first.map_or(String::new(), |r| r.jig_config.clone()),
        "tolerances": first.map_or(Value::Null, |r| r.tolerances.clone()),
        "passed": passed,
        "failed": all.len() - passed,
        "points": all.iter().map(|r| r.points.len()).sum::<usize>(),
        "scenarios": all.iter().map(|r| json!({
            "name": r.name,
            "proves": r.proves,
            "rig": r.rig,
            "passed": r.passed,
            "duration_s": (r.duration_s * 10.0).round() / 10.0,
            "checks": r.checks,
            "figures": r.figures,
            "notes": r.notes,
            "error": r.error,
            "versions": r.versions,
            "points": r.points.len(),
        })).collect::<Vec<_>>(),
    })
}

/// Every point of every scenario as CSV.
pub fn points_csv(all: &[ScenarioReport]) -> String {
    let mut out = String::from(
        "scenario,quantity,direction,setpoint,measured,error,unit,uncertainty,tolerance,passed\n",
    );
    for r in all {
        for p in &r.points {
            out.push_str(&format!(
                "{},{},{},{},{:.4},{:.4},{},{:.4},{},{}\n",
                r.name,
                p.quantity,
                p.direction,
                p.setpoint,
                p.measured,
                p.error,
                p.unit,
                p.uncertainty,
                p.tolerance,
                p.passed
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(name: &str, passed: bool) -> ScenarioReport {
        ScenarioReport {
            name: name.into(),
            rig: "sim".into(),
            passed,
            checks: vec![Check {
                name: "c".into(),
                passed,
                measured: "1".into(),
                limit: "<= 2".into(),
            }],
            points: vec![Point {
                quantity: "depth".into(),
                direction: "up".into(),
                setpoint: 250.0,
                measured: 251.25,
                error: 1.25,
                unit: "um".into(),
                uncertainty: 0.0,
                tolerance: 20.0,
                passed: true,
            }],
            ..ScenarioReport::default()
        }
    }

    #[test]
    fn scenarios_merge_into_one_summary_and_a_new_run_starts_clean() {
        let dir = tempfile::tempdir().unwrap();
        write_scenario(dir.path(), "run-1", &report("a", true)).unwrap();
        write_scenario(dir.path(), "run-1", &report("b", false)).unwrap();
        let s: Value =
            serde_json::from_str(&fs::read_to_string(dir.path().join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(
            (
                s["passed"].as_u64(),
                s["failed"].as_u64(),
                s["points"].as_u64()
            ),
            (Some(1), Some(1), Some(2))
        );
        assert_eq!(s["rig"], "sim");
        let csv = fs::read_to_string(dir.path().join("points.csv")).unwrap();
        assert_eq!(csv.lines().count(), 3);
        assert!(
            csv.lines()
                .nth(1)
                .unwrap()
                .starts_with("a,depth,up,250,251.2500,1.2500,um,"),
            "{csv}"
        );
        // The next run drops the previous run's scenarios.
        write_scenario(dir.path(), "run-2", &report("c", true)).unwrap();
        let names: Vec<String> = read_scenarios(dir.path())
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, vec!["c".to_string()]);
    }

    #[test]
    fn points_judge_the_error_against_the_tolerance() {
        let mut rec = Recorder {
            report: ScenarioReport::default(),
        };
        assert!(rec.point("depth", "up", 1000.0, 1019.9, "um", 0.0, 20.0));
        assert!(!rec.point("depth", "down", 1000.0, 979.0, "um", 0.0, 20.0));
        assert!((rec.points()[1].error + 21.0).abs() < 1e-9);
        rec.check_refused(
            "spent",
            Ok((409, "cartridge_spent".into())),
            "cartridge_spent",
        );
        rec.check_refused(
            "wrong code",
            Ok((409, "cartridge_expired".into())),
            "cartridge_spent",
        );
        rec.check_refused("accepted", Ok((200, String::new())), "cartridge_spent");
        let verdicts: Vec<bool> = rec.report.checks.iter().map(|c| c.passed).collect();
        assert_eq!(verdicts, vec![true, false, false]);
    }
}
