//! BENCHMARKS.md section 6: a seated cartridge to its verdict, and a bind, with the share that
//! is cryptography.
//!
//! Part 1, in-process, the tag thread's work at each bind and arm (`session/seat.rs`) on the
//! sim's chip: read the tag, verify the factory's P-256 signature (`cartridge::parse`), send a
//! fresh nonce and take the chip's answer (on the sim the chip's ECDSA signing runs on this
//! CPU; an ATECC608 signs in its own silicon), verify the answer, read the counter. Each step
//! is timed with the monotonic clock around it.
//!
//! Part 2, a real `needled` (the sibling binary, sim backend) over HTTP: for each iteration a
//! session is created, a fresh cartridge seated, and `POST /v1/sessions/{id}/cartridge` timed
//! (the seat verdict on the tag thread plus the ledger's bind transaction with its fsync);
//! then the session is ended.
//!
//! Usage: cartridge-seat [--verdicts 2000] [--binds 200]

use std::time::Instant;

use needle_bench::proc::{sibling_binary, Needled};
use needle_bench::stats::Summary;
use needle_bench::{arg, args, print_result};
use needle_sim::SimParams;
use needled::cartridge::{self, Needles, TagData, TrustStore};
use needled::hal::sim::SimBackend;
use needled::hal::CartridgeChip;
use serde_json::json;

fn ns(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn main() -> Result<(), String> {
    let a = args();
    let verdicts: usize = arg(&a, "verdicts", 2_000);
    let binds: usize = arg(&a, "binds", 200);

    let factory = cartridge::test_factory_key();
    let mut trust = TrustStore::new();
    trust
        .trust(factory.id(), &factory.public_key())
        .map_err(|e| e.to_string())?;
    let sim = SimBackend::new(SimParams::default());
    let mut slot = sim.tag.clone();
    let expiry = "2099-12-31".parse().map_err(|_| "date")?;
    let (mut total, mut read, mut verify_tag, mut chip, mut verify_answer) =
        (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..verdicts {
        let data = TagData::new(format!("C-B{i}"), "LOT-B", Needles::Pins12, expiry)
            .map_err(|e| e.to_string())?;
        let made = cartridge::provision(&data, &factory).map_err(|e| e.to_string())?;
        sim.seat_cartridge(made.sim_chip(0));
        let t0 = Instant::now();
        let image = slot
            .read_tag()
            .map_err(|e| e.to_string())?
            .ok_or("no tag")?;
        read.push(ns(t0));
        let t = Instant::now();
        let tag = cartridge::parse(&image, &trust).map_err(|e| e.to_string())?;
        verify_tag.push(ns(t));
        let t = Instant::now();
        let nonce = cartridge::fresh_nonce();
        let answer = slot.sign_challenge(&nonce).map_err(|e| e.to_string())?;
        chip.push(ns(t));
        let t = Instant::now();
        cartridge::verify_answer(tag.chip_key(), &nonce, &answer).map_err(|e| e.to_string())?;
        verify_answer.push(ns(t));
        let counter = slot.read_counter().map_err(|e| e.to_string())?;
        total.push(ns(t0));
        if counter != 0 {
            return Err("a fresh chip counted a use".into());
        }
    }
    let (t, r, vt, c, va) = (
        Summary::of(&mut total),
        Summary::of(&mut read),
        Summary::of(&mut verify_tag),
        Summary::of(&mut chip),
        Summary::of(&mut verify_answer),
    );
    #[allow(clippy::cast_precision_loss)]
    let share = |x: &Summary| x.p50 as f64 / t.p50.max(1) as f64;
    print_result(&json!({
        "part": "verdict_in_process",
        "verdicts": verdicts,
        "total": t.json("ns"),
        "read_tag": r.json("ns"),
        "verify_tag_signature": vt.json("ns"),
        "sim_chip_signs": c.json("ns"),
        "verify_chip_answer": va.json("ns"),
        "pen_crypto_share_of_median": share(&vt) + share(&va),
        "sim_chip_share_of_median": share(&c),
    }));

    let n = Needled::start(
        &sibling_binary("needled"),
        "[control]\nmax_tick_gap_ms = 500\n",
    )?;
    let checklist = needle_bench::proc::all_checked()?;
    let mut bind = vec![];
    for i in 0..binds {
        let s = n.ok(
            "POST",
            "/v1/sessions",
            false,
            Some(json!({ "operator": "bench", "subject_ref": format!("bench-{i}"), "area": "body", "checklist": checklist })),
        )?;
        let id = s["id"].as_i64().ok_or("no session id")?;
        n.ok(
            "POST",
            "/v1/sim/inject",
            true,
            Some(n.seat_body(&format!("C-BIND-{i}"))?),
        )?;
        let t = Instant::now();
        n.ok("POST", &format!("/v1/sessions/{id}/cartridge"), false, None)?;
        bind.push(ns(t));
        n.ok("POST", &format!("/v1/sessions/{id}/end"), false, None)?;
    }
    let b = Summary::of(&mut bind);
    #[allow(clippy::cast_precision_loss)]
    let crypto_share = (vt.p50 + va.p50) as f64 / b.p50.max(1) as f64;
    print_result(&json!({
        "part": "bind_over_http",
        "binds": binds,
        "bind": b.json("ns"),
        "pen_crypto_median_share_of_bind_median": crypto_share,
    }));
    Ok(())
}
