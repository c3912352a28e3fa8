//! The README's walkthrough, run as written: every indented shell block between
//! `<!-- walkthrough: begin -->` and `<!-- walkthrough: end -->` is run, in order, by bash
//! with `set -euo pipefail`, against a sim needled, in a directory laid out as the README
//! assumes (the repository's root: `data/` is the service's data directory,
//! `target/release/needlectl` the built client). The only change made to the text: the
//! default address `http://127.0.0.1:7878` becomes the test service's.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const BEGIN: &str = "<!-- walkthrough: begin -->";
const END: &str = "<!-- walkthrough: end -->";

/// The commands of the README's walkthrough blocks, one logical command per entry
/// (continuation lines joined).
fn walkthrough_commands(readme: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut inside = false;
    let mut pending = String::new();
    for line in readme.lines() {
        match line.trim() {
            BEGIN => {
                assert!(!inside, "nested walkthrough markers");
                inside = true;
                continue;
            }
            END => {
                assert!(
                    inside && pending.is_empty(),
                    "unbalanced walkthrough markers"
                );
                inside = false;
                continue;
            }
            _ if !inside => continue,
            "" => continue,
            _ => {}
        }
        let code = line
            .strip_prefix("    ")
            .unwrap_or_else(|| panic!("walkthrough line is not an indented code line: {line:?}"));
        match code.strip_suffix('\\') {
            Some(head) => pending.push_str(head),
            None => {
                pending.push_str(code);
                commands.push(std::mem::take(&mut pending));
            }
        }
    }
    assert!(!inside, "walkthrough not closed");
    commands
}

#[test]
fn walkthrough_extraction_joins_continuations_and_needs_markers() {
    let text = "intro\n    not run\n<!-- walkthrough: begin -->\n    a one \\\n      two\n\n    b\n<!-- walkthrough: end -->\n    after\n";
    assert_eq!(walkthrough_commands(text), ["a one   two", "b"]);
}

#[test]
fn readme_walkthrough_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let commands = walkthrough_commands(&readme);
    assert!(
        commands.len() >= 10,
        "the walkthrough has {} commands",
        commands.len()
    );
    for c in &commands {
        assert!(
            !c.split_whitespace().any(|w| w == "..." || w == "…"),
            "a literal ... in the walkthrough: {c}"
        );
    }

    // The directory the README's commands run in, laid out like the repository's.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let n = common::start(&data, common::CI_CONFIG);
    let bin = dir.path().join("target/release");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_needlectl"), bin.join("needlectl")).unwrap();

    let mut script = String::from("set -euo pipefail\n");
    for (i, c) in commands.iter().enumerate() {
        let c = c.replace("http://127.0.0.1:7878", &n.base);
        script.push_str(&format!("echo '== step {}' >&2\n{c}\n", i + 1));
    }
    script.push_str("echo '== walkthrough done' >&2\n");
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("NEEDLE_URL", &n.base)
        .env_remove("NEEDLE_TOKEN")
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let failed_at = stderr
        .lines()
        .rfind(|l| l.starts_with("== step"))
        .unwrap_or("before the first step");
    assert!(
        out.status.success() && stderr.contains("== walkthrough done"),
        "the walkthrough failed at {failed_at}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        commands[failed_at
            .trim_start_matches("== step ")
            .parse::<usize>()
            .unwrap_or(1)
            .saturating_sub(1)]
    );
    assert!(!stderr.contains("Traceback"), "{stderr}");
    assert!(!stderr.contains("error:"), "{stderr}");

    // What the walkthrough did, from the service: one session, ended, its cartridge spent, the
    // late checklist confirmation recorded, and the report on disk.
    let get = |path: &str| -> Value {
        n.operator_client()
            .json("GET", path, None)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    };
    let events = get("/v1/events?after=0&limit=1000");
    let events = events["events"].as_array().unwrap().clone();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(kinds.contains(&"checklist_updated"), "{kinds:?}");
    let id = events
        .iter()
        .find(|e| e["kind"] == "session_created")
        .and_then(|e| e["session_id"].as_i64())
        .expect("a session was created");
    let session = get(&format!("/v1/sessions/{id}"));
    assert_eq!(session["state"], "ended", "{session}");
    assert!(session["started_at_ms"].is_i64(), "it ran: {session}");
    let cartridge = get("/v1/cartridges/C-0001");
    assert_eq!(cartridge["state"], "spent", "{cartridge}");
    let csv = std::fs::read_to_string(dir.path().join("session.csv")).expect("session.csv");
    assert!(
        csv.starts_with(needled::store::CSV_HEADER),
        "session.csv: {csv}"
    );
    assert!(csv.contains(",post_care,"), "session.csv: {csv}");
}
