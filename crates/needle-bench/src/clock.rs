//! CLOCK_MONOTONIC, absolute sleeps and real-time priority, as needled's control thread uses
//! them (so the floor loop is the same code path minus the controller).

use nix::sys::time::TimeSpec;
use nix::time::{clock_gettime, clock_nanosleep, ClockId, ClockNanosleepFlags};

/// CLOCK_MONOTONIC in nanoseconds.
pub fn mono_ns() -> u64 {
    match clock_gettime(ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => {
            u64::try_from(ts.tv_sec()).unwrap_or(0) * 1_000_000_000
                + u64::try_from(ts.tv_nsec()).unwrap_or(0)
        }
        Err(_) => 0,
    }
}

/// CLOCK_MONOTONIC in microseconds (truncated, like `needled::control::monotonic_now`).
pub fn mono_us() -> u64 {
    mono_ns() / 1_000
}

/// Sleeps until the absolute CLOCK_MONOTONIC time `deadline_us`.
pub fn sleep_until_us(deadline_us: u64) {
    let ts = TimeSpec::new(
        i64::try_from(deadline_us / 1_000_000).unwrap_or(i64::MAX),
        i64::try_from((deadline_us % 1_000_000) * 1_000).unwrap_or(0),
    );
    let _ = clock_nanosleep(
        ClockId::CLOCK_MONOTONIC,
        ClockNanosleepFlags::TIMER_ABSTIME,
        &ts,
    );
}

/// Puts the calling thread under SCHED_FIFO at `priority` (needled's control thread uses 50).
/// Returns whether it worked.
pub fn try_realtime(priority: u8) -> bool {
    use thread_priority::{
        set_thread_priority_and_policy, thread_native_id, RealtimeThreadSchedulePolicy,
        ThreadPriority, ThreadSchedulePolicy,
    };
    let Ok(priority) = priority.try_into() else {
        return false;
    };
    let policy = ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo);
    set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Crossplatform(priority),
        policy,
    )
    .is_ok()
}

/// What this machine is, for the record: CPU model, core count, kernel, load average.
pub fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let load = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string();
    serde_json::json!({ "cpu": model, "cores": cores, "kernel": kernel, "loadavg": load })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_sleep_is_never_early() {
        let start = mono_us();
        let deadline = start + 2_000;
        sleep_until_us(deadline);
        assert!(mono_us() >= deadline);
    }
}
