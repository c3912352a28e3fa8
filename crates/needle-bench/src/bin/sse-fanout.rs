//! SSE fan-out: N clients hold GET /v1/telemetry open for a number of seconds and time every
//! event they receive.
//!
//! Per event: the gap since the client's previous event (the stream's period is
//! 1 / service.telemetry_hz, 50 ms by default) and the age of the telemetry it carries when it
//! arrives. The age needs needled's clock: the sim backend's controller time is CLOCK_MONOTONIC
//! minus the moment the control thread started, and that moment is estimated NTP-style from
//! 50 GET /v1/status calls (the one with the shortest round trip; the estimate is good to
//! about half that round trip plus half a tick, printed as `offset_uncertainty_us`).
//!
//! Usage: sse-fanout --base http://127.0.0.1:PORT --token T [--clients 50] [--seconds 10]

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use needle_bench::clock::mono_us;
use needle_bench::http::parse_loopback_url;
use needle_bench::stats::Summary;
use needle_bench::{arg, args, print_result};
use needle_client::Client;
use serde_json::{json, Value};

/// (estimated control-thread start on CLOCK_MONOTONIC, uncertainty), both µs.
fn estimate_start(base: &str, token: &str) -> Result<(i64, i64), String> {
    let client = Client::with_timeout(base, token, Duration::from_secs(5));
    let mut best: Option<(u64, i64)> = None;
    for _ in 0..50 {
        let a = mono_us();
        // The typed call decodes before `b`: a few µs more round trip, on the safe side.
        let status = client.status().map_err(|e| e.to_string())?;
        let b = mono_us();
        let ct = i64::try_from(status.telemetry.controller_time_us).map_err(|e| e.to_string())?;
        let rtt = b - a;
        // The snapshot was taken at the last tick before the read, on average half a period
        // before the middle of the round trip.
        let start = i64::try_from(a + rtt / 2).unwrap_or(0) - 500 - ct;
        if best.is_none_or(|(r, _)| rtt < r) {
            best = Some((rtt, start));
        }
    }
    let (rtt, start) = best.ok_or("no status")?;
    Ok((start, i64::try_from(rtt / 2).unwrap_or(0) + 500))
}

fn main() {
    let a = args();
    let base = a.get("base").cloned().unwrap_or_default();
    if let Err(e) = parse_loopback_url(&base) {
        eprintln!("sse-fanout: --base: {e}");
        std::process::exit(2);
    }
    let token = a.get("token").cloned().unwrap_or_default();
    let clients: usize = arg(&a, "clients", 50).clamp(1, 500);
    let seconds: f64 = arg(&a, "seconds", 10.0f64).clamp(1.0, 600.0);
    let (start_us, uncertainty) = match estimate_start(&base, &token) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("sse-fanout: {e}");
            std::process::exit(1);
        }
    };
    let begin = Instant::now();
    let deadline = begin + Duration::from_secs_f64(seconds);
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (base, token) = (base.clone(), token.clone());
            std::thread::spawn(move || -> Result<(Vec<u64>, Vec<u64>), String> {
                // The raw stream (needle-client, each read within 5 s), so an event is timed
                // when its line arrives, before any decoding.
                let stream = Client::with_timeout(&base, &token, Duration::from_secs(5))
                    .stream("/v1/telemetry")
                    .map_err(|e| e.to_string())?;
                let mut reader = BufReader::new(stream);
                let (mut gaps, mut ages) = (Vec::new(), Vec::new());
                let mut last: Option<u64> = None;
                let mut line = String::new();
                while Instant::now() < deadline {
                    line.clear();
                    if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                        return Err("stream ended".into());
                    }
                    let Some(data) = line.strip_prefix("data:") else {
                        continue;
                    };
                    let now = mono_us();
                    let v: Value = serde_json::from_str(data.trim()).map_err(|e| e.to_string())?;
                    if let Some(ct) = v["controller_time_us"].as_i64() {
                        let age = i64::try_from(now).unwrap_or(0) - (start_us + ct);
                        ages.push(u64::try_from(age.max(0)).unwrap_or(0));
                    }
                    if let Some(prev) = last {
                        gaps.push(now - prev);
                    }
                    last = Some(now);
                }
                Ok((gaps, ages))
            })
        })
        .collect();
    let (mut gaps, mut ages) = (Vec::new(), Vec::new());
    let mut failed = Vec::new();
    for t in threads {
        match t.join() {
            Ok(Ok((g, a))) => {
                gaps.extend(g);
                ages.extend(a);
            }
            Ok(Err(e)) => failed.push(e),
            Err(_) => failed.push("client thread panicked".into()),
        }
    }
    let elapsed = begin.elapsed().as_secs_f64();
    let events = ages.len();
    let g = Summary::of(&mut gaps);
    let age = Summary::of(&mut ages);
    #[allow(clippy::cast_precision_loss)]
    let rate = events as f64 / elapsed;
    println!(
        "sse-fanout: {clients} clients, {events} events in {elapsed:.1} s ({rate:.0}/s in all); gap between events \
         p50 {} us, p99 {} us, max {} us; telemetry age on arrival p50 {} us, p99 {} us, max {} us (+-{uncertainty} us); \
         failed clients {}",
        g.p50,
        g.p99,
        g.max,
        age.p50,
        age.p99,
        age.max,
        failed.len()
    );
    print_result(&json!({
        "bench": "sse-fanout",
        "clients": clients,
        "events": events,
        "events_per_s": rate.round(),
        "gap": g.json("us"),
        "age": age.json("us"),
        "offset_uncertainty_us": uncertainty,
        "failed_clients": failed.len(),
        "failures": failed.iter().take(3).collect::<Vec<_>>(),
    }));
}
