//! The Linux real-time community's own tools beside the service: `cyclictest` (Debian's
//! `rt-tests`) as the floor a 1 kHz loop is compared with, and `stress-ng --cpu N` as the CPU
//! hog. Both are child processes, stopped with a signal so they cover exactly the window the
//! bench chooses; `scripts/bench.sh` installs them when they are missing.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

/// cyclictest's histogram reaches this far, µs (needled's lateness histogram does too).
pub const HISTOGRAM_US: u64 = 20_000;
/// cyclictest's thread runs at this SCHED_FIFO priority, needled's control thread's.
pub const PRIORITY: u8 = needled::control::CONTROL_PRIORITY;

/// Sends `signal` to `child` and waits for it to exit.
fn signal_and_wait(child: &mut Child, signal: Signal) -> Result<(), String> {
    let pid = i32::try_from(child.id()).map_err(|e| e.to_string())?;
    // ESRCH: it has exited already; wait() below reaps it either way.
    let _ = kill(Pid::from_raw(pid), signal);
    child.wait().map(drop).map_err(|e| e.to_string())
}

/// A `cyclictest` measuring thread running until [`Cyclictest::stop`]: one thread, the given
/// period, absolute `clock_nanosleep` on CLOCK_MONOTONIC (its default, and needled's), memory
/// locked (`-m`), SCHED_FIFO at [`PRIORITY`] or normal priority, on one CPU (`-a`) or where
/// the scheduler puts it.
pub struct Cyclictest {
    child: Option<Child>,
    histfile: PathBuf,
    realtime: bool,
    _dir: tempfile::TempDir,
}

impl Cyclictest {
    /// Starts cyclictest; it stops by itself after `bound_s` seconds if never stopped.
    pub fn start(
        period_us: u64,
        realtime: bool,
        cpu: Option<u32>,
        bound_s: u64,
    ) -> Result<Cyclictest, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let histfile = dir.path().join("cyclictest.hist");
        let mut cmd = Command::new("cyclictest");
        cmd.args(["-q", "-m", "-t", "1"])
            .arg(format!("--interval={period_us}"))
            .arg(format!("--histogram={HISTOGRAM_US}"))
            .arg(format!("--histfile={}", histfile.display()))
            .arg(format!("--duration={bound_s}"));
        if let Some(cpu) = cpu {
            cmd.arg(format!("--affinity={cpu}"));
        }
        if realtime {
            cmd.arg(format!("--priority={PRIORITY}"))
                .arg("--policy=fifo");
        } else {
            cmd.arg("--policy=other");
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cyclictest: {e} (apt-get install rt-tests; scripts/bench.sh does)")
            })?;
        Ok(Cyclictest {
            child: Some(child),
            histfile,
            realtime,
            _dir: dir,
        })
    }

    /// Stops it (SIGINT: it writes its histogram and exits) and reads what it measured.
    pub fn stop(mut self) -> Result<CyclictestResult, String> {
        if let Some(mut child) = self.child.take() {
            signal_and_wait(&mut child, Signal::SIGINT)?;
        }
        let text = std::fs::read_to_string(&self.histfile)
            .map_err(|e| format!("cyclictest wrote no histogram: {e}"))?;
        CyclictestResult::parse(&text, self.realtime)
    }
}

impl Drop for Cyclictest {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = signal_and_wait(&mut child, Signal::SIGKILL);
        }
    }
}

/// What cyclictest measured, from its histogram file.
#[derive(Debug, Clone, PartialEq)]
pub struct CyclictestResult {
    /// Wake-ups measured.
    pub count: u64,
    /// Median lateness, µs (nearest rank, as needled computes it).
    pub p50: u64,
    /// 99th percentile lateness, µs.
    pub p99: u64,
    /// Largest lateness, µs (cyclictest's own "Max Latencies").
    pub max: u64,
    /// The histogram: (lateness µs, wake-ups), overflows last at the maximum.
    buckets: Vec<(u64, u64)>,
    /// Whether it ran under SCHED_FIFO.
    pub realtime: bool,
}

impl CyclictestResult {
    /// Parses `--histfile` output: `BUCKET COUNT` lines of 1 µs buckets, then `# Total:`,
    /// `# Max Latencies:` and `# Histogram Overflows:` (samples past [`HISTOGRAM_US`]).
    pub fn parse(text: &str, realtime: bool) -> Result<CyclictestResult, String> {
        let mut buckets: Vec<(u64, u64)> = Vec::new();
        let mut max = None;
        let mut overflows = 0u64;
        for line in text.lines() {
            let number = |prefix: &str| {
                line.strip_prefix(prefix)
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse::<u64>().ok())
            };
            if let Some(m) = number("# Max Latencies:") {
                max = Some(m);
            } else if let Some(o) = number("# Histogram Overflows:") {
                overflows = o;
            } else if !line.starts_with('#') {
                let mut it = line.split_whitespace().map(str::parse::<u64>);
                if let (Some(Ok(us)), Some(Ok(n))) = (it.next(), it.next()) {
                    buckets.push((us, n));
                }
            }
        }
        let max = max.ok_or("cyclictest's histogram has no '# Max Latencies' line")?;
        if overflows > 0 {
            buckets.push((max.max(HISTOGRAM_US + 1), overflows));
        }
        let count: u64 = buckets.iter().map(|(_, n)| n).sum();
        if count == 0 {
            return Err("cyclictest measured no wake-up".into());
        }
        let percentile = |per_mille: u64| {
            let rank = (count * per_mille).div_ceil(1000).max(1);
            let mut seen = 0;
            buckets
                .iter()
                .find(|(_, n)| {
                    seen += n;
                    seen >= rank
                })
                .map_or(max, |(us, _)| *us)
        };
        Ok(CyclictestResult {
            count,
            p50: percentile(500),
            p99: percentile(990),
            max,
            buckets,
            realtime,
        })
    }

    /// Wake-ups more than `period_us` late.
    pub fn later_than(&self, period_us: u64) -> u64 {
        self.buckets
            .iter()
            .filter(|(us, _)| *us > period_us)
            .map(|(_, n)| n)
            .sum()
    }

    /// As JSON, with the keys of needled's `LoopStats` (overruns: wake-ups more than
    /// `period_us` late).
    pub fn json(&self, period_us: u64) -> Value {
        json!({
            "ticks": self.count,
            "overruns": self.later_than(period_us),
            "lateness_p50_us": self.p50,
            "lateness_p99_us": self.p99,
            "lateness_max_us": self.max,
            "realtime": self.realtime,
            "priority": if self.realtime { Some(PRIORITY) } else { None },
        })
    }
}

/// `stress-ng --cpu N`: N workers spinning at normal priority until dropped.
pub struct Hog {
    child: Option<Child>,
    /// Workers.
    pub cpus: usize,
}

impl Hog {
    /// Starts `cpus` workers (0: one per online CPU), stopping by themselves after `bound_s`.
    pub fn start(cpus: usize, bound_s: u64) -> Result<Hog, String> {
        let cpus = if cpus == 0 {
            std::thread::available_parallelism().map_or(1, usize::from)
        } else {
            cpus
        };
        let child = Command::new("stress-ng")
            .args(["--quiet", "--cpu"])
            .arg(cpus.to_string())
            .arg("--timeout")
            .arg(format!("{bound_s}s"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("stress-ng: {e} (apt-get install stress-ng; scripts/bench.sh does)")
            })?;
        Ok(Hog {
            child: Some(child),
            cpus,
        })
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        // SIGINT: stress-ng stops its workers and exits (SIGKILL would orphan them).
        if let Some(mut child) = self.child.take() {
            let _ = signal_and_wait(&mut child, Signal::SIGINT);
        }
    }
}

/// `service / floor`, rounded to 3 places; NaN when the floor is 0.
pub fn ratio(service: f64, floor: f64) -> f64 {
    if floor > 0.0 {
        ((service / floor) * 1000.0).round() / 1000.0
    } else {
        f64::NAN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HIST: &str = "# Histogram\n000000 000000\n000014 000003\n000015 000090\n\
                        000016 000006\n001500 000001\n# Total: 000000100\n\
                        # Min Latencies: 00014\n# Avg Latencies: 00015\n\
                        # Max Latencies: 25000\n# Histogram Overflows: 00001\n\
                        # Histogram Overflow at cycle number:\n# Thread 0: 00077\n";

    #[test]
    fn cyclictest_histogram_gives_percentiles_max_and_late_wakeups() {
        let r = CyclictestResult::parse(HIST, true).unwrap();
        assert_eq!((r.count, r.p50, r.p99, r.max), (101, 15, 1_500, 25_000));
        assert_eq!(r.later_than(1_000), 2);
        assert_eq!(r.json(1_000)["priority"], 50);
        assert!(CyclictestResult::parse("# Histogram\n", true).is_err());
    }

    #[test]
    fn ratio_rounds_and_refuses_a_zero_floor() {
        assert_eq!(ratio(110.0, 100.0), 1.1);
        assert!(ratio(1.0, 0.0).is_nan());
    }
}
