//! The jig on the sim: the physics' truth (`GET /v1/sim/truth`) and the sim's actuators
//! (`POST /v1/sim/inject`), through the API; on the link rig the same truth and actuators on
//! the pen's truth socket ([`PenSocket`]). Never the controller's telemetry.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::REQUEST_TIMEOUT;
use crate::api::{Api, Endpoint, Role};
use crate::error::{HilError, Result};
use crate::rig::{Actuation, DepthReading, Interval, Jig, RateMeasurement, RateReading};

/// The sim's physical truth, as `GET /v1/sim/truth` reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Truth {
    /// Simulation time, µs.
    pub sim_time_us: u64,
    /// Where the depth stop really is, µm.
    pub depth_um: f64,
    /// The cam's real rate, strokes per second.
    pub rate_hz: f64,
    /// Strokes really made.
    pub strokes: u64,
    /// Whether the motor driver is enabled with a non-zero duty.
    pub motor_powered: bool,
    /// Sim time of the latest powered-to-unpowered transition, if the service reports it.
    pub motor_off_at_us: Option<u64>,
}

impl Truth {
    /// Reads the fields of a truth answer.
    pub fn from_json(v: &Value) -> Result<Truth> {
        let missing = |k: &str| HilError::Jig(format!("/v1/sim/truth has no numeric '{k}': {v}"));
        Ok(Truth {
            sim_time_us: v["sim_time_us"]
                .as_u64()
                .ok_or_else(|| missing("sim_time_us"))?,
            depth_um: v["depth_um"].as_f64().ok_or_else(|| missing("depth_um"))?,
            rate_hz: v["rate_hz"].as_f64().ok_or_else(|| missing("rate_hz"))?,
            strokes: v["strokes"].as_u64().ok_or_else(|| missing("strokes"))?,
            motor_powered: v["motor_powered"]
                .as_bool()
                .ok_or_else(|| missing("motor_powered"))?,
            motor_off_at_us: v["motor_off_at_us"].as_u64(),
        })
    }
}

/// The jig on the sim: the physics' truth and the sim's injections, through the API (or
/// the pen's truth socket on the link rig).
pub struct SimJig {
    endpoint: Arc<RwLock<Endpoint>>,
    api: Mutex<Option<Api>>,
    pen: Option<PenSocket>,
}

/// The link rig's jig channel: the pen firmware's truth socket, one JSON request a line.
#[derive(Debug, Clone)]
pub struct PenSocket {
    path: std::path::PathBuf,
}

impl PenSocket {
    /// Asks the pen; an `error` in the answer is an error.
    pub fn ask(&self, request: &Value) -> Result<Value> {
        use std::io::{BufRead, BufReader, Write};
        let failed = |e: std::io::Error| HilError::io(&self.path, e);
        let mut s = std::os::unix::net::UnixStream::connect(&self.path).map_err(failed)?;
        s.set_read_timeout(Some(REQUEST_TIMEOUT)).map_err(failed)?;
        writeln!(s, "{request}").map_err(failed)?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).map_err(failed)?;
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| HilError::Jig(format!("the pen's truth socket answered {line:?}: {e}")))?;
        match v["error"].as_str() {
            Some(e) => Err(HilError::Jig(format!("the pen refused {request}: {e}"))),
            None => Ok(v),
        }
    }

    /// The pen's truth in the sim's terms (its clock is the rig's, `sim_time_us`).
    fn truth(&self) -> Result<Value> {
        let mut v = self.ask(&json!({ "op": "truth" }))?;
        v["sim_time_us"] = v["pen_time_us"].clone();
        Ok(v)
    }

    /// A sim injection body as the pen's request; its answer as the sim's.
    fn inject(&self, body: &Value) -> Result<Value> {
        let on = |key: &str| body[key].as_bool().unwrap_or(true);
        let request = match body["action"].as_str() {
            Some("estop") => json!({ "op": "inject", "what": "estop", "on": on("pressed") }),
            // The tag and the chip: its key (or a replayed answer, or neither) and counter.
            Some("seat_cartridge") => json!({
                "op": "inject", "what": "cartridge", "on": true, "tag_hex": body["tag_hex"],
                "chip_secret_hex": body["chip_secret_hex"],
                "replay_answer_hex": body["replay_answer_hex"], "counter": body["counter"],
            }),
            Some("pull_cartridge") => json!({ "op": "inject", "what": "cartridge", "on": false }),
            Some("jam") => json!({ "op": "inject", "what": "jam", "on": on("on") }),
            // The host link cut is a cut in the serial line.
            Some("host_silence") => json!({ "op": "inject", "what": "host_link", "on": on("on") }),
            other => return Err(HilError::Jig(format!("no pen injection for {other:?}"))),
        };
        let reply = self.ask(&request)?;
        Ok(json!({ "applied_at_us": reply["at_us"] }))
    }
}

impl std::fmt::Debug for SimJig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimJig")
    }
}

/// When a truth poll sees the stroke count change: the edge that made `count` happened in
/// `(lo_us, hi_us]`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct EdgeBracket {
    count: u64,
    lo_us: u64,
    hi_us: u64,
}

impl SimJig {
    /// `truth`: the pen's truth socket on the link rig; `None` reads the sim through the API.
    pub(super) fn new(endpoint: Arc<RwLock<Endpoint>>, truth: Option<std::path::PathBuf>) -> Self {
        Self {
            endpoint,
            api: Mutex::new(None),
            pen: truth.map(|path| PenSocket { path }),
        }
    }

    fn api(&self) -> Api {
        let endpoint = self
            .endpoint
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut cached = self.api.lock().unwrap_or_else(|p| p.into_inner());
        match cached.as_ref() {
            Some(api) if api.endpoint().base == endpoint.base => api.clone(),
            _ => {
                let api = Api::new(endpoint, REQUEST_TIMEOUT);
                *cached = Some(api.clone());
                api
            }
        }
    }

    /// The physics' truth now.
    pub fn truth(&self) -> Result<Truth> {
        if let Some(pen) = &self.pen {
            return Truth::from_json(&pen.truth()?);
        }
        Truth::from_json(
            &self
                .api()
                .ok(Role::Technician, "GET", "/v1/sim/truth", None)?,
        )
    }

    fn inject(&self, body: &Value) -> Result<Value> {
        if let Some(pen) = &self.pen {
            return pen.inject(body);
        }
        let reply =
            self.api()
                .call(Some(Role::Technician), "POST", "/v1/sim/inject", Some(body))?;
        if (200..300).contains(&reply.status) {
            return Ok(reply.body);
        }
        let message = reply.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if reply.status == 400 && message.contains("unknown variant") {
            return Err(HilError::Unsupported {
                what: format!("sim action {}", body["action"]),
                why: format!(
                    "this needled does not know it ({message}); it needs POST /v1/sim/inject \
                     {{\"action\": \"host_silence\", \"on\": bool}} that stops the service's heartbeat task"
                ),
            });
        }
        Err(HilError::Api {
            method: "POST".into(),
            path: "/v1/sim/inject".into(),
            status: reply.status,
            code: reply.code().unwrap_or_default().to_string(),
            message,
        })
    }

    fn action_body(action: Actuation<'_>) -> Value {
        match action {
            Actuation::EStop(pressed) => json!({ "action": "estop", "pressed": pressed }),
            Actuation::SeatCartridge(cartridge) => cartridge.seat_json(0),
            Actuation::PullCartridge => json!({ "action": "pull_cartridge" }),
            Actuation::Jam(on) => json!({ "action": "jam", "on": on }),
            Actuation::CutHostLink(cut) => json!({ "action": "host_silence", "on": cut }),
        }
    }

    /// Polls the truth until the stroke count changes.
    fn next_edge(&self, timeout: Duration) -> Result<EdgeBracket> {
        let deadline = Instant::now() + timeout;
        let mut before = self.truth()?;
        loop {
            let now = self.truth()?;
            if now.strokes != before.strokes {
                return Ok(EdgeBracket {
                    count: now.strokes,
                    lo_us: before.sim_time_us,
                    hi_us: now.sim_time_us,
                });
            }
            if Instant::now() > deadline {
                return Err(HilError::Jig(format!(
                    "no stroke edge within {timeout:?}: the cam is not turning"
                )));
            }
            before = now;
        }
    }

    /// The next stroke edge whose time the polls pin down to `max_bracket_us`: a poll that
    /// came late (a loaded machine) leaves a wide bracket, so wait for another edge, a few
    /// strokes at most. Returns the tightest seen if none is that tight.
    fn next_sharp_edge(&self, max_bracket_us: u64) -> Result<EdgeBracket> {
        let mut best = self.next_edge(Duration::from_secs(2))?;
        for _ in 0..8 {
            if best.hi_us - best.lo_us <= max_bracket_us {
                break;
            }
            let e = self.next_edge(Duration::from_secs(2))?;
            if e.hi_us - e.lo_us < best.hi_us - best.lo_us {
                best = e;
            }
        }
        Ok(best)
    }
}

/// An edge bracketed by two polls this close is pinned down well enough: two control ticks.
const SHARP_EDGE_US: u64 = 2_000;

/// The rate over two bracketed edges and how well it is known.
fn rate_between(a: EdgeBracket, b: EdgeBracket) -> RateMeasurement {
    let strokes = b.count.saturating_sub(a.count);
    let n = strokes as f64;
    let mid = |e: EdgeBracket| (e.lo_us as f64 + e.hi_us as f64) / 2.0;
    let span_s = (mid(b) - mid(a)) / 1e6;
    let longest = (b.hi_us.saturating_sub(a.lo_us)) as f64 / 1e6;
    let shortest = (b.lo_us.saturating_sub(a.hi_us)) as f64 / 1e6;
    let rate = if span_s > 0.0 { n / span_s } else { 0.0 };
    let (slow, fast) = (
        n / longest.max(f64::MIN_POSITIVE),
        if shortest > 0.0 {
            n / shortest
        } else {
            f64::INFINITY
        },
    );
    RateMeasurement {
        rate_hz: rate,
        uncertainty_hz: (fast - slow) / 2.0,
        window_s: span_s,
        strokes,
    }
}

impl Jig for SimJig {
    fn describe(&self) -> String {
        if let Some(pen) = &self.pen {
            return format!("link jig: the pen's truth socket {} (depth_um, strokes, pen_time_us, motor_powered, injections)", pen.path.display());
        }
        "sim jig: GET /v1/sim/truth (depth_um, strokes, sim_time_us, motor_powered), POST /v1/sim/inject".into()
    }

    fn now_us(&mut self) -> Result<u64> {
        Ok(self.truth()?.sim_time_us)
    }

    fn depth(&mut self) -> Result<DepthReading> {
        let t = self.truth()?;
        Ok(DepthReading {
            depth_um: t.depth_um,
            at_us: t.sim_time_us,
        })
    }

    fn instant_rate(&mut self) -> Result<RateReading> {
        let t = self.truth()?;
        Ok(RateReading {
            rate_hz: t.rate_hz,
            at_us: t.sim_time_us,
        })
    }

    fn stroke_rate(&mut self, window: Duration) -> Result<RateMeasurement> {
        // As an optical counter with timestamped edges: count whole strokes between two edges.
        // The truth is polled, so each edge's time is only known to lie between two polls;
        // the uncertainty says how much that matters.
        let start = self.next_sharp_edge(SHARP_EDGE_US)?;
        let window_us = u64::try_from(window.as_micros()).unwrap_or(u64::MAX);
        loop {
            let t = self.truth()?;
            let left = (start.hi_us + window_us).saturating_sub(t.sim_time_us);
            if left < 20_000 {
                break;
            }
            std::thread::sleep(Duration::from_micros(left - 15_000));
        }
        let end = self.next_sharp_edge(SHARP_EDGE_US)?;
        Ok(rate_between(start, end))
    }

    fn strokes(&mut self) -> Result<u64> {
        Ok(self.truth()?.strokes)
    }

    fn motor_powered(&mut self) -> Result<bool> {
        Ok(self.truth()?.motor_powered)
    }

    fn actuate(&mut self, action: Actuation<'_>) -> Result<()> {
        self.inject(&Self::action_body(action)).map(|_| ())
    }

    fn time_motor_off(&mut self, action: Actuation<'_>, timeout: Duration) -> Result<Interval> {
        let before = self.truth()?;
        if !before.motor_powered {
            return Err(HilError::Jig(format!(
                "the motor was not powered before {action:?}"
            )));
        }
        let reply = self.inject(&Self::action_body(action))?;
        // The actuation took effect at a sim time in [a_lo, a_hi]; exact if the service says when.
        let (a_lo, mut a_hi) = match reply["applied_at_us"].as_u64() {
            Some(at) => (at, Some(at)),
            None => (before.sim_time_us, None),
        };
        let mut last_on = before.sim_time_us;
        let deadline = Instant::now() + timeout;
        let off = loop {
            let t = self.truth()?;
            a_hi.get_or_insert(t.sim_time_us);
            if !t.motor_powered {
                break t;
            }
            last_on = t.sim_time_us;
            if Instant::now() > deadline {
                return Err(HilError::Timeout {
                    what: format!("the motor to lose power after {action:?}"),
                    waited: timeout,
                });
            }
        };
        let a_hi = a_hi.unwrap_or(off.sim_time_us);
        // The motor went off in (last_on, off]; exact if the service reports the transition.
        let (o_lo, o_hi) = match off.motor_off_at_us {
            Some(at) if at >= before.sim_time_us => (at, at),
            _ => (last_on, off.sim_time_us),
        };
        let ms = |us: u64| us as f64 / 1_000.0;
        Ok(Interval {
            lo_ms: ms(o_lo.saturating_sub(a_hi)),
            hi_ms: ms(o_hi.saturating_sub(a_lo)),
            span_us: (a_lo == a_hi && o_lo == o_hi).then_some((a_lo, o_lo)),
        })
    }

    fn control_ticks(&mut self, after_us: u64, until_us: u64) -> Result<Option<u64>> {
        if until_us <= after_us {
            return Ok(Some(0));
        }
        if let Some(pen) = &self.pen {
            let v =
                pen.ask(&json!({ "op": "ticks_between", "after": after_us, "until": until_us }))?;
            return v["ticks"].as_u64().map(Some).ok_or_else(|| {
                HilError::Jig(format!(
                    "the pen's ticks_between has no numeric 'ticks': {v}"
                ))
            });
        }
        let v = self.api().ok(
            Role::Technician,
            "GET",
            &format!("/v1/sim/ticks?after_us={after_us}&until_us={until_us}"),
            None,
        )?;
        v["ticks"]
            .as_u64()
            .map(Some)
            .ok_or_else(|| HilError::Jig(format!("/v1/sim/ticks has no numeric 'ticks': {v}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_between_bracketed_edges_and_its_uncertainty() {
        // 120 strokes between edges known to 1 ms each, 1 s apart: 120 Hz +- 0.12 Hz.
        let a = EdgeBracket {
            count: 10,
            lo_us: 99_000,
            hi_us: 100_000,
        };
        let b = EdgeBracket {
            count: 130,
            lo_us: 1_099_000,
            hi_us: 1_100_000,
        };
        let r = rate_between(a, b);
        assert_eq!(r.strokes, 120);
        assert!((r.rate_hz - 120.0).abs() < 1e-9, "{r:?}");
        assert!((r.uncertainty_hz - 0.12).abs() < 0.001, "{r:?}");
        assert!((r.window_s - 1.0).abs() < 1e-9);
    }

    #[test]
    fn truth_parses_and_names_a_missing_field() {
        let t = Truth::from_json(&json!({
            "sim_time_us": 5, "depth_um": 1.5, "rate_hz": 0.0, "strokes": 3, "motor_powered": false
        }))
        .unwrap();
        assert_eq!((t.sim_time_us, t.strokes, t.motor_off_at_us), (5, 3, None));
        let e = Truth::from_json(&json!({ "sim_time_us": 5 }))
            .unwrap_err()
            .to_string();
        assert!(e.contains("depth_um"), "{e}");
    }
}
