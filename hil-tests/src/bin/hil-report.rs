//! Prints the last run's report (`target/hil-report/summary.json`) as a table for people.
//!
//! `cargo run -p hil-tests --bin hil-report [REPORT_DIR]`; exits 1 if any scenario failed,
//! 2 if there is no report.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::Value;

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn main() -> ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map_or_else(hil_tests::report::report_dir, PathBuf::from);
    let path = dir.join("summary.json");
    let summary: Value = match std::fs::read_to_string(&path).map(|t| serde_json::from_str(&t)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            eprintln!("hil-report: {}: {e}", path.display());
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!(
                "hil-report: {}: {e} (run `cargo nextest run -p hil-tests` first)",
                path.display()
            );
            return ExitCode::from(2);
        }
    };
    let v = &summary["versions"];
    println!("hil report {}", dir.display());
    println!("  run        {}", text(&summary["run_id"]));
    println!("  rig        {}", text(&summary["rig"]));
    println!("  firmware   {}", text(&v["firmware"]));
    println!("  config     sha256 {}", text(&v["rig_config_sha256"]));
    println!("  suite      {}", text(&v["suite"]));
    println!("  jig        {}", text(&summary["jig"]));
    println!("  jig config {}", text(&summary["jig_config"]));
    println!();
    let scenarios = summary["scenarios"].as_array().cloned().unwrap_or_default();
    let width = scenarios
        .iter()
        .map(|s| text(&s["name"]).len())
        .max()
        .unwrap_or(8)
        .max(8);
    println!(
        "{:<width$}  {:<6}  {:>7}  {:>6}",
        "scenario", "result", "time s", "points"
    );
    println!("{}", "-".repeat(width + 26));
    for s in &scenarios {
        let result = if s["passed"] == true { "PASS" } else { "FAIL" };
        println!(
            "{:<width$}  {:<6}  {:>7}  {:>6}",
            text(&s["name"]),
            result,
            text(&s["duration_s"]),
            text(&s["points"])
        );
    }
    for s in &scenarios {
        println!();
        println!(
            "{} ({})",
            text(&s["name"]),
            if s["passed"] == true { "PASS" } else { "FAIL" }
        );
        println!("  proves: {}", text(&s["proves"]));
        for c in s["checks"].as_array().into_iter().flatten() {
            let mark = if c["passed"] == true { "ok  " } else { "FAIL" };
            println!(
                "  {mark} {}: {} (limit {})",
                text(&c["name"]),
                text(&c["measured"]),
                text(&c["limit"])
            );
        }
        if let Some(figures) = s["figures"].as_object() {
            for (k, f) in figures {
                let shown = text(f);
                let shown = if shown.chars().count() > 160 {
                    format!("{}...", shown.chars().take(157).collect::<String>())
                } else {
                    shown
                };
                println!("  figure {k}: {shown}");
            }
        }
        for n in s["notes"].as_array().into_iter().flatten() {
            println!("  note: {}", text(n));
        }
        if !s["error"].is_null() {
            println!("  ERROR: {}", text(&s["error"]));
        }
    }
    let (passed, failed) = (
        summary["passed"].as_u64().unwrap_or(0),
        summary["failed"].as_u64().unwrap_or(0),
    );
    println!();
    println!(
        "{passed} passed, {failed} failed; every point in {}",
        dir.join("points.csv").display()
    );
    if failed > 0 || passed == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
