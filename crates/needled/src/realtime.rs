//! Real-time hygiene for the control thread, as the Linux real-time community sets a process
//! up (cyclictest does the same): memory locked, so the loop never waits on a page fault; a CPU
//! of its own (`control.cpu`), with every other thread of the process kept off it; its stack
//! touched before the loop starts.
//!
//! [`prepare`] runs once in `main`, before the async runtime or any other thread starts:
//! it locks the process's memory (`mlockall(MCL_CURRENT | MCL_FUTURE)`) and, when
//! `control.cpu` is set, restricts the calling thread to the other CPUs. Linux threads inherit
//! their creator's affinity, so the tokio workers, their blocking pool, the heartbeat thread
//! and the ledger's threads all stay off the control CPU; the control thread alone then moves
//! onto it ([`pin_to`]). What was granted is reported in the control loop's statistics
//! (`/v1/status` "control") and logged once when the control thread starts.

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sched::{sched_setaffinity, CpuSet};
use nix::sys::mman::{mlockall, MlockAllFlags};
use nix::unistd::Pid;

use crate::config::ControlConfig;

/// Stack the control thread touches before its loop, bytes: far more than a tick uses.
pub const STACK_PREFAULT: usize = 256 * 1024;
/// CAP_IPC_LOCK's bit in the capability sets of `/proc/self/status`.
const CAP_IPC_LOCK: u32 = 14;

/// Whether [`lock_memory`] locked this process's memory.
static MEMORY_LOCKED: AtomicBool = AtomicBool::new(false);

/// Locks the process's memory and keeps the calling thread (and so every thread it starts
/// later) off `control.cpu`. Returns an error only when `control.require_memory_lock` is set
/// and the memory could not be locked, or when the CPU mask cannot be set; anything else not
/// granted is logged and reported, not fatal.
pub fn prepare(control: &ControlConfig) -> Result<(), String> {
    match lock_memory() {
        Ok(()) => tracing::info!("memory locked (mlockall): no page faults in the control loop"),
        Err(why) if control.require_memory_lock => {
            return Err(format!(
                "control.require_memory_lock is set but memory cannot be locked: {why}"
            ));
        }
        Err(why) => tracing::warn!(
            "memory not locked: {why}; the control loop may wait on page faults \
             (see the README's Raspberry Pi section)"
        ),
    }
    if let Some(cpu) = control.cpu {
        let others = keep_off(cpu).map_err(|e| format!("control.cpu = {cpu}: {e}"))?;
        tracing::info!(
            control_cpu = cpu,
            other_threads = %others,
            "the control thread gets CPU {cpu} to itself"
        );
    }
    Ok(())
}

/// `mlockall(MCL_CURRENT | MCL_FUTURE)`, when it is safe to: with a finite RLIMIT_MEMLOCK and
/// no CAP_IPC_LOCK the lock could succeed now and make a later allocation past the limit fail,
/// so it is not tried then.
pub fn lock_memory() -> Result<(), String> {
    let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK)
        .map_err(|e| format!("getrlimit(RLIMIT_MEMLOCK): {e}"))?;
    if soft != libc::RLIM_INFINITY && !has_ipc_lock() {
        return Err(format!(
            "RLIMIT_MEMLOCK is {soft} bytes and the process lacks CAP_IPC_LOCK \
             (systemd: LimitMEMLOCK=infinity)"
        ));
    }
    mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE)
        .map_err(|e| format!("mlockall: {e}"))?;
    MEMORY_LOCKED.store(true, Ordering::Release);
    Ok(())
}

/// Whether [`lock_memory`] locked this process's memory.
pub fn memory_locked() -> bool {
    MEMORY_LOCKED.load(Ordering::Acquire)
}

fn has_ipc_lock() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// The CPUs present and online (`/sys/devices/system/cpu/online`). Not the process's own
/// affinity: a CPU taken out of the scheduler's default set with `isolcpus=` is online, and
/// is the one to give the control thread.
pub fn online_cpus() -> Result<Vec<u32>, String> {
    let path = "/sys/devices/system/cpu/online";
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    parse_cpu_list(&text).ok_or_else(|| format!("{path}: cannot parse {:?}", text.trim()))
}

/// Parses a kernel CPU list such as `0-3,5` (the format of `/sys/devices/system/cpu/online`,
/// `isolcpus=` and `Cpus_allowed_list`).
pub fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (first, last): (u32, u32) = match part.split_once('-') {
            Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
            None => {
                let n = part.parse().ok()?;
                (n, n)
            }
        };
        if first > last {
            return None;
        }
        out.extend(first..=last);
    }
    Some(out)
}

/// Writes CPUs as a kernel CPU list (`0,2-3`).
pub fn format_cpu_list(cpus: &[u32]) -> String {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &c in cpus {
        match runs.last_mut() {
            Some((_, last)) if c == *last + 1 => *last = c,
            _ => runs.push((c, c)),
        }
    }
    runs.iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn set_affinity(cpus: &[u32]) -> Result<(), String> {
    let mut set = CpuSet::new();
    for &c in cpus {
        let index = usize::try_from(c).map_err(|e| e.to_string())?;
        set.set(index).map_err(|e| format!("CPU {c}: {e}"))?;
    }
    // Pid 0: the calling thread.
    sched_setaffinity(Pid::from_raw(0), &set).map_err(|e| format!("sched_setaffinity: {e}"))
}

/// Restricts the calling thread to the online CPUs other than `cpu`; returns them as a list.
pub fn keep_off(cpu: u32) -> Result<String, String> {
    let others: Vec<u32> = online_cpus()?.into_iter().filter(|&c| c != cpu).collect();
    if others.is_empty() {
        return Err("no other CPU is online".into());
    }
    set_affinity(&others)?;
    Ok(format_cpu_list(&others))
}

/// Pins the calling thread to `cpu`.
pub fn pin_to(cpu: u32) -> Result<(), String> {
    set_affinity(&[cpu])
}

/// Touches [`STACK_PREFAULT`] bytes of the calling thread's stack, so the loop's deepest calls
/// do not fault a stack page in (with the memory locked, the page then stays).
#[inline(never)]
pub fn prefault_stack() {
    let mut stack = [0u8; STACK_PREFAULT];
    for byte in stack.iter_mut().step_by(4096) {
        *byte = 1;
    }
    std::hint::black_box(&mut stack);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_and_format_as_the_kernel_writes_them() {
        assert_eq!(parse_cpu_list("0-3,5\n"), Some(vec![0, 1, 2, 3, 5]));
        assert_eq!(parse_cpu_list("1"), Some(vec![1]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 5]), "0-3,5");
        assert_eq!(format_cpu_list(&[0, 2, 3]), "0,2-3");
        assert_eq!(format_cpu_list(&[]), "");
    }

    #[test]
    fn this_machine_has_an_online_cpu_0() {
        let cpus = online_cpus().unwrap();
        assert!(cpus.contains(&0), "{cpus:?}");
    }

    #[test]
    fn prefaulting_the_stack_returns() {
        std::thread::Builder::new()
            .stack_size(STACK_PREFAULT * 2)
            .spawn(prefault_stack)
            .unwrap()
            .join()
            .unwrap();
    }
}
