//! The OS floor on its own: a bare 1 kHz `clock_nanosleep(TIMER_ABSTIME)` loop with needled's
//! deadline rules, for a number of seconds; prints its lateness p50/p99/max and overruns.
//!
//! Usage: floor [--seconds 10] [--period-us 1000] [--realtime true|false]

use std::time::Duration;

use needle_bench::clock::machine;
use needle_bench::floor::Floor;
use needle_bench::{arg, args, print_result};

fn main() {
    let a = args();
    let seconds: u64 = arg(&a, "seconds", 10).clamp(1, 3_600);
    let period: u64 = arg(&a, "period-us", 1_000);
    let realtime: bool = arg(&a, "realtime", true);
    let floor = Floor::spawn(period, realtime);
    std::thread::sleep(Duration::from_secs(seconds));
    let r = floor.stop();
    let s = r.summary();
    println!(
        "floor: {} ticks in {seconds} s, lateness p50 {} us, p99 {} us, max {} us, overruns {}, realtime {}",
        r.ticks, s.p50, s.p99, s.max, r.overruns, r.realtime
    );
    let mut v = r.json();
    v["machine"] = machine();
    v["seconds"] = seconds.into();
    print_result(&v);
}
