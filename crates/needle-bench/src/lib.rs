//! Service-level benchmarks of needled (BENCHMARKS.md sections 2 to 4).
//!
//! Binaries (each prints what it measured and how, then one `RESULT {json}` line):
//! - `estop-reaction`: time from an E-stop press on the simulated rig to the motor being off,
//!   by the sim's own timestamps on the control clock, on needled's own control stack built
//!   in-process, beside `cyclictest` and optionally a CPU hog (section 2b).
//! - `loadgen`: a bounded HTTP/1.1 keep-alive load generator for loopback only (section 4).
//! - `sse-fanout`: N clients on the telemetry stream (section 4).
//! - `service-bench`: starts the real needled per phase (idle, GET /v1/status load from a
//!   second process, SSE fan-out, any of them beside `stress-ng --cpu N`) with `cyclictest`
//!   beside it as the floor, several runs, medians (sections 3 and 4).
//!
//! Every figure here is measured by the bench itself on CLOCK_MONOTONIC, by the sim rig's own
//! timestamps, by cyclictest, or read from needled's own loop statistics where that is the
//! figure asked for (tick lateness); nothing is assumed or copied.

pub mod clock;
pub mod http;
pub mod proc;
pub mod rt_tools;
pub mod stats;

/// Parses `--key value` pairs (and bare `--flag`s, as "true") from the command line.
pub fn args() -> std::collections::BTreeMap<String, String> {
    parse_args(std::env::args().skip(1))
}

/// [`args`] on any iterator, for tests.
pub fn parse_args(it: impl Iterator<Item = String>) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut pending: Option<String> = None;
    for a in it {
        if let Some(key) = a.strip_prefix("--") {
            if let Some(k) = pending.take() {
                out.insert(k, "true".to_string());
            }
            if let Some((k, v)) = key.split_once('=') {
                out.insert(k.to_string(), v.to_string());
            } else {
                pending = Some(key.to_string());
            }
        } else if let Some(k) = pending.take() {
            out.insert(k, a);
        } else {
            eprintln!("ignoring stray argument {a:?}");
        }
    }
    if let Some(k) = pending {
        out.insert(k, "true".to_string());
    }
    out
}

/// A typed argument with a default; exits with a message if it does not parse.
pub fn arg<T: std::str::FromStr>(
    args: &std::collections::BTreeMap<String, String>,
    key: &str,
    default: T,
) -> T {
    match args.get(key) {
        None => default,
        Some(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("--{key} {v}: cannot parse");
            std::process::exit(2)
        }),
    }
}

/// One line a script can pick out of the output: `RESULT {json}`.
pub fn print_result(value: &serde_json::Value) {
    println!("RESULT {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_parse_pairs_flags_and_equals() {
        let a = parse_args(
            ["--runs", "3", "--json", "--seconds=5"]
                .iter()
                .map(|s| s.to_string()),
        );
        assert_eq!(a.get("runs").map(String::as_str), Some("3"));
        assert_eq!(a.get("json").map(String::as_str), Some("true"));
        assert_eq!(a.get("seconds").map(String::as_str), Some("5"));
        assert_eq!(arg(&a, "runs", 1u32), 3);
        assert_eq!(arg(&a, "missing", 7u32), 7);
    }
}
