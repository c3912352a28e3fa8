//! A bounded HTTP/1.1 load generator for loopback: C keep-alive connections, each on its own
//! thread, send one GET after another until the request budget or the time budget is spent,
//! whichever comes first. Records every request's latency (send to last body byte).
//!
//! Usage: loadgen --url http://127.0.0.1:PORT/v1/status [--token T] [--connections 4]
//!                [--requests 200000] [--seconds 10]
//!
//! Refuses any target outside the loopback range. Both budgets are capped (at most 2,000,000
//! requests and 600 s).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use needle_bench::clock::mono_ns;
use needle_bench::http::{parse_loopback_url, Conn};
use needle_bench::stats::Summary;
use needle_bench::{arg, args, print_result};
use serde_json::json;

fn main() {
    let a = args();
    let Some(url) = a.get("url") else {
        eprintln!("loadgen: --url http://127.0.0.1:PORT/PATH is required");
        std::process::exit(2);
    };
    let url = parse_loopback_url(url).unwrap_or_else(|e| {
        eprintln!("loadgen: {e}");
        std::process::exit(2)
    });
    let token = a.get("token").cloned();
    let connections: usize = arg(&a, "connections", 4).clamp(1, 256);
    let requests: u64 = arg(&a, "requests", 200_000).clamp(1, 2_000_000);
    let seconds: f64 = arg(&a, "seconds", 10.0f64).clamp(0.1, 600.0);

    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (url, token, issued) = (url.clone(), token.clone(), Arc::clone(&issued));
            std::thread::spawn(move || {
                let mut conn = Conn::new(url, token.as_deref());
                let mut lat = Vec::new();
                let (mut non_2xx, mut errors) = (0u64, 0u64);
                while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < requests
                {
                    let t0 = mono_ns();
                    match conn.get() {
                        Ok((status, _)) => {
                            lat.push((mono_ns() - t0) / 1_000);
                            if !(200..300).contains(&status) {
                                non_2xx += 1;
                            }
                        }
                        Err(_) => {
                            errors += 1;
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
                (lat, non_2xx, errors)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let (mut non_2xx, mut errors) = (0u64, 0u64);
    for w in workers {
        if let Ok((l, n, e)) = w.join() {
            lat.extend(l);
            non_2xx += n;
            errors += e;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let done = lat.len();
    let s = Summary::of(&mut lat);
    #[allow(clippy::cast_precision_loss)]
    let rps = done as f64 / elapsed;
    println!(
        "loadgen: {done} responses in {elapsed:.1} s over {connections} connections: {rps:.0} req/s, latency p50 {} us, \
         p99 {} us, max {} us; non-2xx {non_2xx}, transport errors {errors}",
        s.p50, s.p99, s.max
    );
    print_result(&json!({
        "bench": "loadgen",
        "url_path": url.path,
        "connections": connections,
        "responses": done,
        "seconds": (elapsed * 100.0).round() / 100.0,
        "rps": rps.round(),
        "latency": s.json("us"),
        "non_2xx": non_2xx,
        "errors": errors,
    }));
}
