//! The hazard trace in docs/hazards.md names the tests that prove each mitigation; this test
//! fails if a named test does not exist anywhere in the workspace's Rust sources.

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() && name != "target" && name != ".git" {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_test_named_in_hazard_trace_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let table = fs::read_to_string(root.join("docs/hazards.md")).expect("docs/hazards.md");
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    rust_files(&root.join("hil-tests"), &mut files);
    let sources: String = files
        .iter()
        .filter_map(|f| fs::read_to_string(f).ok())
        .collect();

    let mut named = 0;
    let mut missing = Vec::new();
    for row in table.lines().filter(|l| l.starts_with("| H")) {
        let tests = row.rsplit('|').nth(1).unwrap_or_default();
        let names: Vec<&str> = tests.split('`').skip(1).step_by(2).collect();
        assert!(!names.is_empty(), "hazard row names no test: {row}");
        for name in names {
            named += 1;
            if !sources.contains(&format!("fn {name}(")) {
                missing.push(name.to_string());
            }
        }
    }
    assert!(
        named >= 20,
        "only {named} tests named: is the table still there?"
    );
    assert!(
        missing.is_empty(),
        "tests named in docs/hazards.md but not found: {missing:?}"
    );
}
