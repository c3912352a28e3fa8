//! Human views of the API's JSON: aligned key/value lines and tables.
//!
//! These read the JSON loosely (a missing field shows as `-`), so that a newer service with
//! more fields, or an older one with fewer, still shows what it has. Scripts use `--json`.

use serde_json::Value;

/// Plain text columns with comfy-table: no borders, two spaces between columns, the last
/// column unpadded, no trailing spaces, never wrapped to the terminal's width (scripts and
/// pipes read these lines too).
fn plain(header: Option<&[String]>, rows: &[Vec<String>]) -> String {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled);
    if let Some(header) = header {
        table.set_header(header);
    }
    for row in rows {
        table.add_row(row);
    }
    let columns = table.column_count();
    for (i, column) in table.column_iter_mut().enumerate() {
        column.set_padding(if i + 1 == columns { (0, 0) } else { (0, 2) });
    }
    table
        .lines()
        .map(|line| line.trim_end().to_string() + "\n")
        .collect()
}

/// Key/value lines with the values aligned.
#[derive(Debug, Default)]
pub struct Kv(Vec<(String, String)>);

impl Kv {
    /// An empty view.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a line.
    pub fn add(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.0.push((key.to_string(), value.into()));
        self
    }

    /// Aligned text; a value with several lines continues under its first line.
    pub fn render(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .0
            .iter()
            .map(|(k, v)| vec![k.clone(), v.clone()])
            .collect();
        plain(None, &rows)
    }
}

/// A table: a header row and rows, columns aligned, the last column unpadded.
#[derive(Debug)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; cells beyond the header's columns are dropped.
    pub fn row(&mut self, mut cells: Vec<String>) {
        cells.truncate(self.header.len());
        self.rows.push(cells);
    }

    /// Whether it has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Aligned text, with or without the header line.
    pub fn render(&self, header: bool) -> String {
        if !header && self.rows.is_empty() {
            return String::new();
        }
        plain(header.then_some(self.header.as_slice()), &self.rows)
    }
}

/// A string field, or `-`.
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) if s.is_empty() => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_string(),
        other => other.to_string(),
    }
}

/// Unix milliseconds as an ISO 8601 UTC time, e.g. `2025-11-21T23:10:05.123Z`; `-` if absent.
pub fn time(v: &Value) -> String {
    match v.as_i64() {
        Some(ms) => format_unix_ms(ms),
        None => "-".to_string(),
    }
}

/// Unix milliseconds as an ISO 8601 UTC time (jiff's calendar); out of its range, the number.
pub fn format_unix_ms(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        Err(_) => format!("{ms} ms (unix)"),
    }
}

/// A duration in ms for people: `12.345 s`, `29 min 58.120 s`, `2 h 03 min 00.000 s`.
pub fn duration_ms(v: &Value) -> String {
    let Some(ms) = v.as_u64() else {
        return "-".to_string();
    };
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    if h > 0 {
        format!("{h} h {m:02} min {s:02}.{milli:03} s")
    } else if m > 0 {
        format!("{m} min {s:02}.{milli:03} s")
    } else {
        format!("{s}.{milli:03} s")
    }
}

/// A stroke rate in mHz as Hz with three decimals, e.g. `120.000 Hz`.
pub fn rate(v: &Value) -> String {
    match v.as_u64() {
        Some(mhz) => format!("{}.{:03} Hz", mhz / 1000, mhz % 1000),
        None => "-".to_string(),
    }
}

/// A depth in µm.
pub fn depth(v: &Value) -> String {
    match v.as_i64() {
        Some(um) => format!("{um} um"),
        None => "-".to_string(),
    }
}

/// A fixed-point integer scaled down by 1000 (mV → V, m°C → °C), with `decimals` decimals.
fn milli(v: &Value, decimals: usize, unit: &str) -> String {
    match v.as_f64() {
        Some(x) => format!("{:.decimals$} {unit}", x / 1000.0),
        None => "-".to_string(),
    }
}

fn list(v: &Value) -> String {
    match v.as_array() {
        Some(a) if !a.is_empty() => a.iter().map(text).collect::<Vec<_>>().join(", "),
        _ => "none".to_string(),
    }
}

/// `/v1/health`.
pub fn health(base: &str, v: &Value) -> String {
    let alive = v["control_alive"].as_bool() == Some(true);
    format!(
        "needled at {base}: {} (control loop {}, monitor {})",
        text(&v["status"]),
        if alive { "alive" } else { "NOT ticking" },
        text(&v["monitor"])
    )
}

/// `/v1/status`: state, faults, interlocks, depth, rate, session and cartridge.
pub fn status(v: &Value) -> String {
    let mut kv = Kv::new();
    let homed = if v["homed"].as_bool() == Some(true) {
        "homed"
    } else {
        "NOT homed"
    };
    kv.add("state", format!("{} ({homed})", text(&v["state"])));
    let mut faults = list(&v["faults"]);
    if !v["last_fault"].is_null() {
        faults.push_str(&format!("  (last fault: {})", text(&v["last_fault"])));
    }
    kv.add("faults", faults);
    let interlocks = match v["interlocks"].as_array() {
        Some(a) if !a.is_empty() => {
            let mut t = Table::new(&["code", "reason"]);
            for i in a {
                t.row(vec![text(&i["code"]), text(&i["reason"])]);
            }
            t.render(false)
        }
        _ => "none".to_string(),
    };
    kv.add("interlocks", interlocks);
    let d = &v["depth"];
    let moving = match d["moving"].as_bool() {
        Some(true) => "moving",
        Some(false) => "settled",
        None => "-",
    };
    kv.add(
        "depth",
        format!(
            "setpoint {}, position {}, ceiling {} ({moving})",
            depth(&d["setpoint_um"]),
            depth(&d["position_um"]),
            depth(&d["ceiling_um"])
        ),
    );
    let r = &v["rate"];
    kv.add(
        "rate",
        format!(
            "setpoint {}, measured {}",
            rate(&r["setpoint_mhz"]),
            rate(&r["measured_mhz"])
        ),
    );
    let enabled = if v["motor_enabled"].as_bool() == Some(true) {
        "ENABLED"
    } else {
        "off"
    };
    let duty = v["duty_permyriad"]
        .as_u64()
        .map_or("-".to_string(), |d| format!("{}.{:02} %", d / 100, d % 100));
    kv.add(
        "motor",
        format!(
            "{enabled}, duty {duty}, {} strokes",
            text(&v["stroke_count"])
        ),
    );
    kv.add(
        "pedal",
        if v["pedal"].as_bool() == Some(true) {
            "pressed"
        } else {
            "released"
        },
    );
    kv.add(
        "sensors",
        format!(
            "current {} mA, temperature {}, supply {}",
            text(&v["current_ma"]),
            milli(&v["temperature_mc"], 1, "°C"),
            milli(&v["supply_mv"], 2, "V")
        ),
    );
    let s = &v["session"];
    kv.add(
        "session",
        if s.is_object() {
            format!(
                "{} ({}), area {}, operator {}, subject {}",
                text(&s["id"]),
                text(&s["state"]),
                text(&s["area"]),
                text(&s["operator"]),
                text(&s["subject_ref"])
            )
        } else if s.is_null() {
            "none".to_string()
        } else {
            text(s)
        },
    );
    let c = &v["cartridge"];
    kv.add(
        "cartridge",
        if c.is_object() {
            format!(
                "{} lot {} ({}), {}{}\nremaining {} run time, {} strokes",
                text(&c["id"]),
                text(&c["lot"]),
                text(&c["needles"]),
                text(&c["state"]),
                if c["lot_recalled"].as_bool() == Some(true) {
                    ", LOT RECALLED"
                } else {
                    ""
                },
                duration_ms(&c["remaining_run_ms"]),
                text(&c["remaining_strokes"])
            )
        } else {
            "none bound".to_string()
        },
    );
    let ctl = &v["control"];
    let mut backend = text(&v["backend"]);
    if ctl.is_object() {
        backend.push_str(&format!(
            "; control loop {} Hz{}, {} overruns, lateness p99 {} us",
            text(&ctl["rate_hz"]),
            if ctl["realtime"].as_bool() == Some(true) {
                " (real-time)"
            } else {
                ""
            },
            text(&ctl["overruns"]),
            text(&ctl["lateness_p99_us"])
        ));
    }
    kv.add("backend", backend);
    if ctl.is_object() {
        kv.add("control thread", grants(ctl));
    }
    kv.render()
}

/// What the control thread was granted: its scheduling, its CPU, and the memory lock.
fn grants(ctl: &Value) -> String {
    let scheduling = match ctl["priority"].as_u64() {
        Some(p) => format!("SCHED_FIFO {p}"),
        None => "normal scheduling".to_string(),
    };
    let cpu = match ctl["cpu"].as_u64() {
        Some(c) => format!("pinned to CPU {c}"),
        None => "not pinned".to_string(),
    };
    let memory = match ctl["memory_locked"].as_bool() {
        Some(true) => "memory locked",
        Some(false) => "memory not locked",
        None => "memory lock unknown",
    };
    format!("{scheduling}, {cpu}, {memory}")
}

/// One line of the telemetry stream.
pub fn telemetry_line(v: &Value) -> String {
    let t = v["controller_time_us"]
        .as_u64()
        .map_or("-".to_string(), |us| {
            format!("{}.{:06} s", us / 1_000_000, us % 1_000_000)
        });
    let d = &v["depth"];
    let r = &v["rate"];
    let depth = format!("{}/{} um", text(&d["setpoint_um"]), text(&d["position_um"]));
    let hz = |x: &Value| {
        x.as_u64()
            .map_or("-".to_string(), |m| format!("{}.{:03}", m / 1000, m % 1000))
    };
    let rate = format!("{}/{} Hz", hz(&r["setpoint_mhz"]), hz(&r["measured_mhz"]));
    let faults = match v["faults"].as_array() {
        Some(a) if !a.is_empty() => a.iter().map(text).collect::<Vec<_>>().join(","),
        _ => "-".to_string(),
    };
    format!(
        "{t:>14}  {:<8} depth {depth:<13} rate {rate:<17} motor {:<3}  pedal {:<4}  strokes {:<7} faults {faults}  session {}",
        text(&v["state"]),
        if v["motor_enabled"].as_bool() == Some(true) { "ON" } else { "off" },
        if v["pedal"].as_bool() == Some(true) { "down" } else { "up" },
        text(&v["stroke_count"]),
        text(&v["session"])
    )
}

/// A session record.
pub fn session(v: &Value) -> String {
    let mut kv = Kv::new();
    kv.add("session", text(&v["id"]))
        .add("state", text(&v["state"]))
        .add("operator", text(&v["operator"]))
        .add("subject", text(&v["subject_ref"]))
        .add("area", text(&v["area"]))
        .add("cartridge", text(&v["cartridge_id"]))
        .add("created", time(&v["created_at_ms"]))
        .add("started", time(&v["started_at_ms"]))
        .add("ended", time(&v["ended_at_ms"]))
        .add("run time", duration_ms(&v["run_ms"]))
        .add("strokes", text(&v["strokes"]))
        .add("end reason", text(&v["end_reason"]));
    kv.add("checklist", checklist(&v["checklist"]));
    kv.render()
}

fn checklist(v: &Value) -> String {
    let Some(items) = v.as_array().filter(|a| !a.is_empty()) else {
        return "none".to_string();
    };
    let mut t = Table::new(&["item", "confirmed"]);
    for i in items {
        t.row(vec![text(&i["item"]), text(&i["confirmed"])]);
    }
    t.render(false)
}

/// A cartridge record.
pub fn cartridge(v: &Value) -> String {
    let mut kv = Kv::new();
    let mut state = text(&v["state"]);
    if !v["spent_reason"].is_null() {
        state.push_str(&format!(" ({})", text(&v["spent_reason"])));
    }
    let mut lot = text(&v["lot"]);
    if v["lot_recalled"].as_bool() == Some(true) {
        lot.push_str(" (RECALLED)");
    }
    kv.add("cartridge", text(&v["id"]))
        .add("lot", lot)
        .add("needles", text(&v["needles"]))
        .add("expiry", text(&v["expiry"]))
        .add("state", state)
        .add("session", text(&v["session_id"]))
        .add(
            "used",
            format!(
                "{} run time, {} strokes",
                duration_ms(&v["run_ms"]),
                text(&v["strokes"])
            ),
        )
        .add(
            "remaining",
            format!(
                "{} run time, {} strokes",
                duration_ms(&v["remaining_run_ms"]),
                text(&v["remaining_strokes"])
            ),
        )
        .add("registered", time(&v["registered_at_ms"]))
        .add("bound", time(&v["bound_at_ms"]))
        .add("spent", time(&v["spent_at_ms"]));
    kv.render()
}

/// The columns of an event table.
pub const EVENT_COLUMNS: [&str; 8] = [
    "SEQ",
    "TIME (UTC)",
    "ACTOR",
    "KIND",
    "SESSION",
    "CARTRIDGE",
    "REASON",
    "DETAIL",
];

/// A table of events (`/v1/events`, report faults and overrides).
pub fn events_table(events: &[Value]) -> Table {
    let mut t = Table::new(&EVENT_COLUMNS);
    for e in events {
        let detail = match &e["detail"] {
            Value::Object(m) if m.is_empty() => "-".to_string(),
            Value::Null => "-".to_string(),
            d => d.to_string(),
        };
        t.row(vec![
            text(&e["seq"]),
            time(&e["at_ms"]),
            text(&e["actor"]),
            text(&e["kind"]),
            text(&e["session_id"]),
            text(&e["cartridge_id"]),
            text(&e["reason"]),
            detail,
        ]);
    }
    t
}

/// A session report (JSON form): summary, setpoints, faults, overrides and timeline.
pub fn report(v: &Value) -> String {
    let mut kv = Kv::new();
    let c = &v["cartridge"];
    let cartridge = if c.is_object() {
        let mut s = format!(
            "{} lot {} ({}), expiry {}, {}",
            text(&c["id"]),
            text(&c["lot"]),
            text(&c["needles"]),
            text(&c["expiry"]),
            text(&c["state"])
        );
        if !c["spent_reason"].is_null() {
            s.push_str(&format!(" ({})", text(&c["spent_reason"])));
        }
        s
    } else {
        "none bound".to_string()
    };
    kv.add("session", text(&v["session_id"]))
        .add("state", text(&v["state"]))
        .add("operator", text(&v["operator"]))
        .add("subject", text(&v["subject_ref"]))
        .add("area", text(&v["area"]))
        .add("cartridge", cartridge)
        .add("created", time(&v["created_at_ms"]))
        .add("started", time(&v["started_at_ms"]))
        .add("ended", time(&v["ended_at_ms"]))
        .add("run time", duration_ms(&v["run_ms"]))
        .add("strokes", text(&v["strokes"]))
        .add("end reason", text(&v["end_reason"]))
        .add("checklist", checklist(&v["checklist"]));
    let mut out = kv.render();
    let empty = Vec::new();
    let mut setpoints = Table::new(&["SEQ", "TIME (UTC)", "DEPTH", "RATE", "ACTOR"]);
    for s in v["setpoints"].as_array().unwrap_or(&empty) {
        setpoints.row(vec![
            text(&s["seq"]),
            time(&s["at_ms"]),
            depth(&s["depth_um"]),
            rate(&s["rate_mhz"]),
            text(&s["actor"]),
        ]);
    }
    section(&mut out, "setpoints", &setpoints);
    section(
        &mut out,
        "faults",
        &events_table(v["faults"].as_array().unwrap_or(&empty)),
    );
    section(
        &mut out,
        "overrides",
        &events_table(v["overrides"].as_array().unwrap_or(&empty)),
    );
    let mut timeline = Table::new(&[
        "SEQ",
        "TIME (UTC)",
        "KIND",
        "DEPTH",
        "RATE",
        "ACTOR",
        "REASON",
    ]);
    for e in v["timeline"].as_array().unwrap_or(&empty) {
        let opt =
            |x: &Value, f: fn(&Value) -> String| if x.is_null() { "-".to_string() } else { f(x) };
        timeline.row(vec![
            text(&e["seq"]),
            time(&e["at_ms"]),
            text(&e["kind"]),
            opt(&e["depth_um"], depth),
            opt(&e["rate_mhz"], rate),
            text(&e["actor"]),
            text(&e["reason"]),
        ]);
    }
    section(&mut out, "timeline", &timeline);
    out
}

fn section(out: &mut String, title: &str, table: &Table) {
    out.push('\n');
    if table.is_empty() {
        out.push_str(&format!("{title}: none\n"));
    } else {
        out.push_str(&format!("{title}:\n"));
        out.push_str(&table.render(true));
    }
}

/// `/v1/sim/truth`: the rig's physics, not the controller's view.
pub fn truth(v: &Value) -> String {
    let num = |x: &Value, decimals: usize, unit: &str| match x.as_f64() {
        Some(f) => format!("{f:.decimals$} {unit}"),
        None => "-".to_string(),
    };
    let mut kv = Kv::new();
    kv.add(
        "sim time",
        v["sim_time_us"].as_u64().map_or("-".to_string(), |us| {
            format!("{}.{:06} s", us / 1_000_000, us % 1_000_000)
        }),
    )
    .add(
        "motor powered",
        if v["motor_powered"].as_bool() == Some(true) {
            "YES"
        } else {
            "no"
        },
    )
    .add("duty", num(&v["duty"], 3, ""))
    .add("rate", num(&v["rate_hz"], 2, "Hz"))
    .add("depth", num(&v["depth_um"], 1, "um"))
    .add("strokes", text(&v["strokes"]))
    .add("current", num(&v["current_a"], 3, "A"))
    .add("temperature", num(&v["temperature_c"], 1, "°C"))
    .add("supply", num(&v["supply_v"], 2, "V"))
    .add("cartridge seated", text(&v["cartridge_seated"]));
    kv.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_are_utc_iso() {
        assert_eq!(format_unix_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_unix_ms(1_763_766_605_123),
            "2025-11-21T23:10:05.123Z"
        );
        assert_eq!(format_unix_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_unix_ms(i64::MAX), format!("{} ms (unix)", i64::MAX));
    }

    #[test]
    fn units_are_spelled_out() {
        assert_eq!(rate(&json!(120_000)), "120.000 Hz");
        assert_eq!(rate(&json!(500)), "0.500 Hz");
        assert_eq!(duration_ms(&json!(1_798_120)), "29 min 58.120 s");
        assert_eq!(duration_ms(&json!(812)), "0.812 s");
        assert_eq!(duration_ms(&json!(7_380_000)), "2 h 03 min 00.000 s");
    }

    #[test]
    fn control_grants_are_spelled_out() {
        let granted = json!({"priority": 50, "cpu": 1, "memory_locked": true});
        assert_eq!(
            grants(&granted),
            "SCHED_FIFO 50, pinned to CPU 1, memory locked"
        );
        let refused = json!({"priority": null, "cpu": null, "memory_locked": false});
        assert_eq!(
            grants(&refused),
            "normal scheduling, not pinned, memory not locked"
        );
        assert_eq!(
            grants(&json!({})),
            "normal scheduling, not pinned, memory lock unknown"
        );
    }

    #[test]
    fn tables_align_columns() {
        let mut t = Table::new(&["A", "LONG"]);
        t.row(vec!["12345".into(), "x".into()]);
        assert_eq!(t.render(true), "A      LONG\n12345  x\n");
        let mut kv = Kv::new();
        kv.add("k", "v").add("longer", "a\nb").add("empty", "");
        assert_eq!(kv.render(), "k       v\nlonger  a\n        b\nempty\n");
        let mut wide = Table::new(&["X", "Y"]);
        wide.row(vec!["a".repeat(300), "b".into(), "dropped".into()]);
        assert_eq!(wide.render(false), format!("{}  b\n", "a".repeat(300)));
        assert_eq!(Table::new(&["X"]).render(false), "");
    }
}
