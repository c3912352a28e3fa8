//! Bad input, table-driven over every endpoint of the real service: malformed JSON, wrong
//! types, unknown fields, huge bodies, out-of-range values, wrong-state calls, bad ids and
//! query strings, wrong methods, missing or wrong tokens, operator tokens on technician
//! endpoints.
//!
//! Every case must get its documented status and (where the API answers in JSON) its stable
//! error code with a message, and must change nothing: after each case the controller's
//! state, faults, setpoints and ceiling, the sessions and cartridges of the fixture, the rig's
//! cartridge and motor are compared with the snapshot taken before it, and the only events
//! allowed in the log since are refused `command` events (the audit record of a refused
//! controller command).
//!
//! Bad path parameters, bad query strings, wrong methods and oversized bodies get the API's
//! JSON error too (`invalid_path`, `invalid_query`, `method_not_allowed`, `body_too_large`),
//! not axum's plain-text rejection: this campaign found that and is its regression test.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use needled::cartridge::{self, Needles, TagData};
use needled::store::MAX_REASON_CHARS;
use serde_json::{json, Value};

use common::Needled;

fn start(data: &Path) -> Needled {
    // The product's 100 ms dead-man; a generous tick gap, so a loaded CI machine's late tick
    // cannot fault the armed controller between two cases.
    common::start(data, common::CI_CONFIG)
}

#[derive(Debug, Clone, Copy)]
enum Auth {
    None,
    Operator,
    Technician,
    /// A raw `Authorization` header value.
    Header(&'static str),
}

#[derive(Debug, Clone)]
enum Body {
    None,
    Json(Value),
    /// Raw bytes sent as application/json.
    Raw(Vec<u8>),
    /// Raw bytes with another content type.
    Typed(&'static str, Vec<u8>),
}

/// What the error must look like.
#[derive(Debug, Clone, Copy)]
enum Code {
    /// A JSON error with one of these codes.
    Json(&'static [&'static str]),
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    method: &'static str,
    path: String,
    auth: Auth,
    body: Body,
    status: u16,
    code: Code,
}

fn case(
    name: &str,
    method: &'static str,
    path: &str,
    auth: Auth,
    body: Body,
    status: u16,
    code: Code,
) -> Case {
    Case {
        name: name.to_string(),
        method,
        path: path.to_string(),
        auth,
        body,
        status,
        code,
    }
}

/// (status, content type, raw body text). On ureq, not needle-client: these tests send what
/// a typed client never would (raw bytes, other content types, malformed Authorization
/// headers) and read the content type.
fn send(n: &Needled, method: &str, path: &str, auth: Auth, body: &Body) -> (u16, String, String) {
    let mut req =
        ureq::request(method, &format!("{}{}", n.base, path)).timeout(Duration::from_secs(20));
    match auth {
        Auth::None => {}
        Auth::Operator => req = req.set("Authorization", &format!("Bearer {}", n.operator)),
        Auth::Technician => req = req.set("Authorization", &format!("Bearer {}", n.technician)),
        Auth::Header(h) => req = req.set("Authorization", h),
    }
    let result = match body {
        Body::None => req.call(),
        Body::Json(v) => req.send_json(v.clone()),
        Body::Raw(bytes) => req
            .set("Content-Type", "application/json")
            .send_bytes(bytes),
        Body::Typed(ct, bytes) => req.set("Content-Type", ct).send_bytes(bytes),
    };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let status = resp.status();
    let ctype = resp.content_type().to_string();
    (status, ctype, resp.into_string().unwrap_or_default())
}

fn ok(n: &Needled, method: &str, path: &str, auth: Auth, body: Option<Value>) -> Value {
    let body = body.map_or(Body::None, Body::Json);
    let (status, _, text) = send(n, method, path, auth, &body);
    assert!(status < 300, "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap()
}

fn wait_for(n: &Needled, what: &str, f: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = ok(n, "GET", "/v1/status", Auth::Operator, None);
        if f(&s) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The sim injection that seats a fresh cartridge `id` (test factory key, chip unused).
fn seat_body(id: &str) -> Value {
    let data = TagData::new(
        id,
        "LOT-BAD",
        Needles::Pins12,
        "2099-12-31".parse().unwrap(),
    )
    .unwrap();
    cartridge::provision_test(&data).unwrap().seat_json(0)
}

fn checklist() -> Value {
    let config = needled::config::parse("", "defaults").unwrap();
    Value::Object(
        config
            .session
            .checklist
            .iter()
            .map(|c| (c.id.clone(), Value::Bool(true)))
            .collect(),
    )
}

/// The fixture's sessions: `ended` (with cartridge C-END), `active` (holds the pen, cartridge
/// C-ACTIVE, bound; armed in phase 2), `created` (no cartridge).
struct Fixture {
    ended: i64,
    active: i64,
    created: i64,
}

fn create(n: &Needled, subject: &str) -> i64 {
    let body = json!({ "operator": "dr-bad", "subject_ref": subject, "area": "face", "checklist": checklist() });
    ok(n, "POST", "/v1/sessions", Auth::Operator, Some(body))["id"]
        .as_i64()
        .unwrap()
}

fn seat(n: &Needled, id: &str) {
    let body = seat_body(id);
    ok(n, "POST", "/v1/sim/inject", Auth::Technician, Some(body));
}

fn fixture(n: &Needled) -> Fixture {
    ok(n, "POST", "/v1/home", Auth::Operator, None);
    wait_for(n, "homed", |s| s["state"] == "Idle" && s["homed"] == true);
    let ended = create(n, "subject-ended");
    seat(n, "C-END");
    ok(
        n,
        "POST",
        &format!("/v1/sessions/{ended}/cartridge"),
        Auth::Operator,
        None,
    );
    ok(
        n,
        "POST",
        &format!("/v1/sessions/{ended}/end"),
        Auth::Operator,
        Some(json!({ "reason": "fixture" })),
    );
    let active = create(n, "subject-active");
    seat(n, "C-ACTIVE");
    ok(
        n,
        "POST",
        &format!("/v1/sessions/{active}/cartridge"),
        Auth::Operator,
        None,
    );
    let created = create(n, "subject-created");
    Fixture {
        ended,
        active,
        created,
    }
}

/// Everything a bad call must leave as it was.
fn snapshot(n: &Needled, f: &Fixture) -> Value {
    let s = ok(n, "GET", "/v1/status", Auth::Operator, None);
    let truth = ok(n, "GET", "/v1/sim/truth", Auth::Technician, None);
    let session = |id: i64| {
        ok(
            n,
            "GET",
            &format!("/v1/sessions/{id}"),
            Auth::Operator,
            None,
        )
    };
    let cartridge = |id: &str| {
        ok(
            n,
            "GET",
            &format!("/v1/cartridges/{id}"),
            Auth::Operator,
            None,
        )
    };
    json!({
        "state": s["state"],
        "faults": s["faults"],
        "interlocks": s["interlocks"],
        "homed": s["homed"],
        "depth_setpoint_um": s["depth"]["setpoint_um"],
        "depth_ceiling_um": s["depth"]["ceiling_um"],
        "rate_setpoint_mhz": s["rate"]["setpoint_mhz"],
        "motor_enabled": s["motor_enabled"],
        "pen": s["session"]["id"],
        "truth_motor_powered": truth["motor_powered"],
        "truth_cartridge_seated": truth["cartridge_seated"],
        // Nothing moved: the rig's own depth and stroke count.
        "truth_depth_um": truth["depth_um"].as_f64().map(f64::round),
        "truth_strokes": truth["strokes"],
        "sessions": [session(f.ended), session(f.active), session(f.created)],
        "cartridges": [cartridge("C-END"), cartridge("C-ACTIVE")],
    })
}

fn last_seq(n: &Needled) -> i64 {
    let mut after = 0;
    loop {
        let v = ok(
            n,
            "GET",
            &format!("/v1/events?after={after}&limit=1000"),
            Auth::Operator,
            None,
        );
        let page = v["events"].as_array().unwrap();
        if let Some(last) = page.last() {
            after = last["seq"].as_i64().unwrap();
        }
        if page.len() < 1000 {
            return after;
        }
    }
}

/// One byte over the service's 64 KiB body limit. Far over it, the service refuses after
/// reading 64 KiB and closes with the rest unread, and the client may see a broken pipe
/// instead of the 413; one byte over, it has read (nearly) everything when it refuses.
const HUGE: usize = needled::api::MAX_BODY + 1;

fn huge_json() -> Body {
    let filler = HUGE - "{\"reason\": \"\"}".len();
    Body::Raw(format!("{{\"reason\": \"{}\"}}", "x".repeat(filler)).into_bytes())
}

const JSON_ERR: Code = Code::Json(&["invalid_json"]);
const DATA_ERR: Code = Code::Json(&["invalid_request"]);
const TOO_LARGE: Code = Code::Json(&["body_too_large"]);
const UNAUTHORIZED: Code = Code::Json(&["unauthorized"]);
const FORBIDDEN: Code = Code::Json(&["forbidden"]);
const NOT_FOUND: Code = Code::Json(&["not_found"]);
const WRONG_STATE: Code = Code::Json(&["session_wrong_state"]);
const NOT_ACTIVE: Code = Code::Json(&["session_not_active"]);

/// The JSON-body malformations every body endpoint gets; `valid` is a body the endpoint would
/// accept (so a lenient parser would act on the malformed variants built from it).
fn body_cases(
    out: &mut Vec<Case>,
    name: &str,
    method: &'static str,
    path: &str,
    auth: Auth,
    valid: &Value,
) {
    let raw = |s: &str| Body::Raw(s.as_bytes().to_vec());
    let text = valid.to_string();
    let (k, v) = valid
        .as_object()
        .and_then(|o| o.iter().next())
        .expect("a non-empty object");
    let duplicated = format!("{{{}:{},{}", json!(k), v, &text[1..]);
    out.push(case(
        &format!("{name}: valid body then a second document"),
        method,
        path,
        auth,
        raw(&format!("{text} {text}")),
        400,
        JSON_ERR,
    ));
    out.push(case(
        &format!("{name}: valid body then garbage"),
        method,
        path,
        auth,
        raw(&format!("{text}x")),
        400,
        JSON_ERR,
    ));
    out.push(case(
        &format!("{name}: a field given twice"),
        method,
        path,
        auth,
        raw(&duplicated),
        400,
        DATA_ERR,
    ));
    let mut extra = valid.clone();
    extra["colour"] = json!("red");
    out.push(case(
        &format!("{name}: valid body plus an unknown field"),
        method,
        path,
        auth,
        Body::Json(extra),
        400,
        DATA_ERR,
    ));
    out.push(case(
        &format!("{name}: truncated JSON"),
        method,
        path,
        auth,
        raw("{"),
        400,
        JSON_ERR,
    ));
    out.push(case(
        &format!("{name}: not JSON"),
        method,
        path,
        auth,
        raw("not json"),
        400,
        JSON_ERR,
    ));
    out.push(case(
        &format!("{name}: empty body"),
        method,
        path,
        auth,
        raw(""),
        400,
        JSON_ERR,
    ));
    out.push(case(
        &format!("{name}: null"),
        method,
        path,
        auth,
        raw("null"),
        400,
        DATA_ERR,
    ));
    out.push(case(
        &format!("{name}: a string"),
        method,
        path,
        auth,
        raw("\"x\""),
        400,
        DATA_ERR,
    ));
    out.push(case(
        &format!("{name}: unknown field"),
        method,
        path,
        auth,
        raw("{\"colour\": \"red\"}"),
        400,
        DATA_ERR,
    ));
    out.push(case(
        &format!("{name}: huge body"),
        method,
        path,
        auth,
        huge_json(),
        413,
        TOO_LARGE,
    ));
    out.push(case(
        &format!("{name}: not application/json"),
        method,
        path,
        auth,
        Body::Typed("text/plain", b"{}".to_vec()),
        415,
        Code::Json(&["unsupported_media_type"]),
    ));
}

/// Bodies on the endpoints that take none: refused (`unexpected_body`) before they act, even
/// a body that would do something elsewhere or a flag the API does not know.
fn no_body_cases(out: &mut Vec<Case>, f: &Fixture) {
    let (a, b) = (f.active, f.created);
    let paths = [
        "/v1/home".to_string(),
        format!("/v1/sessions/{a}/start"),
        format!("/v1/sessions/{a}/pause"),
        format!("/v1/sessions/{b}/cartridge"),
    ];
    for path in &paths {
        for (what, body) in [
            ("a dry-run flag", Body::Json(json!({ "dry_run": true }))),
            ("an empty object", Body::Json(json!({}))),
            ("not JSON", Body::Typed("text/plain", b"go".to_vec())),
        ] {
            out.push(case(
                &format!("POST {path} with {what}"),
                "POST",
                path,
                Auth::Operator,
                body,
                400,
                Code::Json(&["unexpected_body"]),
            ));
        }
    }
}

/// Missing, wrong and malformed tokens on a protected endpoint with an otherwise valid call.
fn auth_cases(out: &mut Vec<Case>, method: &'static str, path: &str, body: Body) {
    for (what, auth) in [
        ("no token", Auth::None),
        (
            "unknown token",
            Auth::Header("Bearer not-a-token-of-this-device"),
        ),
        ("empty bearer", Auth::Header("Bearer ")),
        ("basic scheme", Auth::Header("Basic b3BlcmF0b3I6c2VjcmV0")),
        ("lower-case scheme", Auth::Header("bearer x")),
    ] {
        out.push(case(
            &format!("{method} {path}: {what}"),
            method,
            path,
            auth,
            body.clone(),
            401,
            UNAUTHORIZED,
        ));
    }
}

fn phase1_cases(f: &Fixture) -> Vec<Case> {
    let (a, b, e) = (f.active, f.created, f.ended);
    let op = Auth::Operator;
    let tech = Auth::Technician;
    let mut c = Vec::new();
    let reason = || Body::Json(json!({ "reason": "a good reason" }));
    let create_body = json!({ "operator": "dr-bad", "subject_ref": "subject-new", "area": "face", "checklist": checklist() });

    // Tokens, on every protected endpoint, with calls that would otherwise succeed or change
    // something.
    auth_cases(&mut c, "GET", "/v1/status", Body::None);
    auth_cases(&mut c, "GET", "/v1/telemetry", Body::None);
    auth_cases(&mut c, "POST", "/v1/home", Body::None);
    auth_cases(&mut c, "POST", "/v1/faults/clear", reason());
    auth_cases(
        &mut c,
        "POST",
        "/v1/sessions",
        Body::Json(create_body.clone()),
    );
    auth_cases(&mut c, "GET", &format!("/v1/sessions/{a}"), Body::None);
    auth_cases(
        &mut c,
        "POST",
        &format!("/v1/sessions/{b}/cartridge"),
        Body::None,
    );
    auth_cases(
        &mut c,
        "POST",
        &format!("/v1/sessions/{a}/arm"),
        Body::Json(json!({ "depth_um": 500, "rate_mhz": 120000 })),
    );
    auth_cases(
        &mut c,
        "POST",
        &format!("/v1/sessions/{a}/start"),
        Body::None,
    );
    auth_cases(
        &mut c,
        "POST",
        &format!("/v1/sessions/{a}/pause"),
        Body::None,
    );
    auth_cases(&mut c, "POST", &format!("/v1/sessions/{a}/end"), reason());
    auth_cases(
        &mut c,
        "PUT",
        &format!("/v1/sessions/{a}/setpoints"),
        Body::Json(json!({ "rate_mhz": 100000 })),
    );
    auth_cases(
        &mut c,
        "GET",
        &format!("/v1/sessions/{a}/report"),
        Body::None,
    );
    auth_cases(&mut c, "GET", "/v1/cartridges/C-ACTIVE", Body::None);
    auth_cases(&mut c, "POST", "/v1/lots/LOT-BAD/recall", reason());
    auth_cases(&mut c, "GET", "/v1/events", Body::None);
    auth_cases(&mut c, "GET", "/v1/sim/truth", Body::None);
    auth_cases(
        &mut c,
        "POST",
        "/v1/sim/inject",
        Body::Json(json!({ "action": "estop", "pressed": true })),
    );

    // Operator tokens on technician endpoints.
    c.push(case(
        "operator recalls a lot",
        "POST",
        "/v1/lots/LOT-BAD/recall",
        op,
        reason(),
        403,
        FORBIDDEN,
    ));
    c.push(case(
        "operator reads the sim truth",
        "GET",
        "/v1/sim/truth",
        op,
        Body::None,
        403,
        FORBIDDEN,
    ));
    for action in [
        json!({ "action": "estop", "pressed": true }),
        json!({ "action": "pull_cartridge" }),
        json!({ "action": "jam", "on": true }),
    ] {
        c.push(case(
            &format!("operator injects {action}"),
            "POST",
            "/v1/sim/inject",
            op,
            Body::Json(action),
            403,
            FORBIDDEN,
        ));
    }
    let mut with_override = create_body.clone();
    with_override["override_reason"] = json!("operator tries an override");
    c.push(case(
        "operator overrides the interval",
        "POST",
        "/v1/sessions",
        op,
        Body::Json(with_override),
        403,
        FORBIDDEN,
    ));

    // Bodies of every endpoint that takes one.
    body_cases(
        &mut c,
        "clear faults",
        "POST",
        "/v1/faults/clear",
        op,
        &json!({ "reason": "a good reason" }),
    );
    body_cases(
        &mut c,
        "create session",
        "POST",
        "/v1/sessions",
        op,
        &create_body,
    );
    body_cases(
        &mut c,
        "arm",
        "POST",
        &format!("/v1/sessions/{a}/arm"),
        op,
        &json!({ "depth_um": 500, "rate_mhz": 120000 }),
    );
    body_cases(
        &mut c,
        "recall",
        "POST",
        "/v1/lots/LOT-BAD/recall",
        tech,
        &json!({ "reason": "a good reason" }),
    );
    body_cases(
        &mut c,
        "inject",
        "POST",
        "/v1/sim/inject",
        tech,
        &json!({ "action": "estop", "pressed": true }),
    );
    // (setpoints: phase 2, where the session is armed and a body is otherwise accepted.)

    // Wrong types, missing fields and out-of-range values.
    let j = |v: Value| Body::Json(v);
    let new_session = |patch: Value| {
        let mut v = create_body.clone();
        for (k, x) in patch.as_object().unwrap() {
            if x.is_null() {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = x.clone();
            }
        }
        Body::Json(v)
    };
    let sessions = "/v1/sessions";
    c.push(case(
        "session: operator a number",
        "POST",
        sessions,
        op,
        new_session(json!({ "operator": 1 })),
        400,
        DATA_ERR,
    ));
    c.push(case(
        "session: area missing",
        "POST",
        sessions,
        op,
        new_session(json!({ "area": null })),
        400,
        DATA_ERR,
    ));
    c.push(case(
        "session: checklist answer a string",
        "POST",
        sessions,
        op,
        new_session(json!({ "checklist": { "consent": "yes" } })),
        400,
        DATA_ERR,
    ));
    c.push(case(
        "session: checklist a list",
        "POST",
        sessions,
        op,
        new_session(json!({ "checklist": ["consent"] })),
        400,
        DATA_ERR,
    ));
    c.push(case(
        "session: unknown area",
        "POST",
        sessions,
        op,
        new_session(json!({ "area": "elbow" })),
        400,
        Code::Json(&["unknown_area"]),
    ));
    c.push(case(
        "session: unknown checklist item",
        "POST",
        sessions,
        op,
        new_session(json!({ "checklist": { "bogus": true } })),
        400,
        Code::Json(&["unknown_checklist_item"]),
    ));
    c.push(case(
        "session: empty operator",
        "POST",
        sessions,
        op,
        new_session(json!({ "operator": "" })),
        400,
        Code::Json(&["invalid_input"]),
    ));
    c.push(case(
        "session: empty subject",
        "POST",
        sessions,
        op,
        new_session(json!({ "subject_ref": "" })),
        400,
        Code::Json(&["invalid_input"]),
    ));
    c.push(case(
        "session: operator of 5000 characters",
        "POST",
        sessions,
        op,
        new_session(json!({ "operator": "o".repeat(5000) })),
        400,
        Code::Json(&["invalid_input"]),
    ));
    c.push(case(
        "session: subject with a NUL",
        "POST",
        sessions,
        op,
        new_session(json!({ "subject_ref": "a\u{0}b" })),
        400,
        Code::Json(&["invalid_input"]),
    ));
    c.push(case(
        "session: empty override reason",
        "POST",
        sessions,
        tech,
        new_session(json!({ "override_reason": "" })),
        400,
        Code::Json(&["invalid_input"]),
    ));

    let arm = format!("/v1/sessions/{a}/arm");
    let arm_case = |name: &str, v: Value, status: u16, code: Code| {
        case(
            &format!("arm: {name}"),
            "POST",
            &arm,
            op,
            Body::Json(v),
            status,
            code,
        )
    };
    c.push(arm_case(
        "negative depth",
        json!({ "depth_um": -1, "rate_mhz": 120000 }),
        400,
        Code::Json(&["depth_above_area_ceiling"]),
    ));
    c.push(arm_case(
        "depth above the area ceiling",
        json!({ "depth_um": 1600, "rate_mhz": 120000 }),
        400,
        Code::Json(&["depth_above_area_ceiling"]),
    ));
    c.push(arm_case(
        "depth beyond i32",
        json!({ "depth_um": 2_147_483_648u64, "rate_mhz": 120000 }),
        400,
        DATA_ERR,
    ));
    c.push(arm_case(
        "depth a string",
        json!({ "depth_um": "500", "rate_mhz": 120000 }),
        400,
        DATA_ERR,
    ));
    c.push(arm_case(
        "depth a fraction",
        json!({ "depth_um": 500.5, "rate_mhz": 120000 }),
        400,
        DATA_ERR,
    ));
    c.push(arm_case(
        "rate zero",
        json!({ "depth_um": 500, "rate_mhz": 0 }),
        400,
        Code::Json(&["rate_out_of_range"]),
    ));
    c.push(arm_case(
        "rate above the ceiling",
        json!({ "depth_um": 500, "rate_mhz": 900000 }),
        400,
        Code::Json(&["rate_out_of_range"]),
    ));
    c.push(arm_case(
        "rate u32::MAX",
        json!({ "depth_um": 500, "rate_mhz": u32::MAX }),
        400,
        Code::Json(&["rate_out_of_range"]),
    ));
    c.push(arm_case(
        "rate beyond u32",
        json!({ "depth_um": 500, "rate_mhz": 4_294_967_296u64 }),
        400,
        DATA_ERR,
    ));
    c.push(arm_case(
        "rate negative",
        json!({ "depth_um": 500, "rate_mhz": -1 }),
        400,
        DATA_ERR,
    ));
    c.push(arm_case(
        "rate missing",
        json!({ "depth_um": 500 }),
        400,
        Code::Json(&["setpoints_required"]),
    ));
    c.push(arm_case(
        "no setpoints",
        json!({}),
        400,
        Code::Json(&["setpoints_required"]),
    ));

    c.push(case(
        "clear faults: reason a number",
        "POST",
        "/v1/faults/clear",
        op,
        j(json!({ "reason": 5 })),
        400,
        DATA_ERR,
    ));
    c.push(case(
        "clear faults: reason missing",
        "POST",
        "/v1/faults/clear",
        op,
        j(json!({})),
        400,
        DATA_ERR,
    ));
    c.push(case(
        "clear faults: empty reason",
        "POST",
        "/v1/faults/clear",
        op,
        j(json!({ "reason": "" })),
        400,
        Code::Json(&["reason_required"]),
    ));
    c.push(case(
        "clear faults: blank reason",
        "POST",
        "/v1/faults/clear",
        op,
        j(json!({ "reason": "  \t" })),
        400,
        Code::Json(&["reason_required"]),
    ));
    // Reasons the ledger refuses for the override event: nothing may be cleared either.
    for (what, reason) in [
        ("over-long reason", "r".repeat(MAX_REASON_CHARS + 1)),
        (
            "reason with a control character",
            "cleared\u{7}".to_string(),
        ),
    ] {
        c.push(case(
            &format!("clear faults: {what}"),
            "POST",
            "/v1/faults/clear",
            op,
            j(json!({ "reason": reason })),
            400,
            Code::Json(&["invalid_input"]),
        ));
    }

    c.push(case(
        "recall: empty reason",
        "POST",
        "/v1/lots/LOT-BAD/recall",
        tech,
        j(json!({ "reason": "" })),
        400,
        Code::Json(&["reason_required"]),
    ));
    c.push(case(
        "recall: reason a list",
        "POST",
        "/v1/lots/LOT-BAD/recall",
        tech,
        j(json!({ "reason": [] })),
        400,
        DATA_ERR,
    ));
    let long_lot = format!("/v1/lots/{}/recall", "L".repeat(300));
    c.push(case(
        "recall: lot of 300 characters",
        "POST",
        &long_lot,
        tech,
        reason(),
        400,
        Code::Json(&["invalid_input"]),
    ));

    let inject = "/v1/sim/inject";
    c.push(case(
        "inject: unknown action",
        "POST",
        inject,
        tech,
        j(json!({ "action": "self_destruct" })),
        400,
        DATA_ERR,
    ));
    c.push(case(
        "inject: action missing",
        "POST",
        inject,
        tech,
        j(json!({ "pressed": true })),
        400,
        DATA_ERR,
    ));
    c.push(case(
        "inject: pressed a string",
        "POST",
        inject,
        tech,
        j(json!({ "action": "estop", "pressed": "yes" })),
        400,
        DATA_ERR,
    ));
    c.push(case(
        "inject: extra field",
        "POST",
        inject,
        tech,
        j(json!({ "action": "estop", "pressed": true, "force": 1 })),
        400,
        DATA_ERR,
    ));
    c.push(case(
        "inject: heat to 1000 C",
        "POST",
        inject,
        tech,
        j(json!({ "action": "heat", "temperature_c": 1000.0 })),
        400,
        DATA_ERR,
    ));
    c.push(case(
        "inject: heat to -100 C",
        "POST",
        inject,
        tech,
        j(json!({ "action": "heat", "temperature_c": -100.0 })),
        400,
        DATA_ERR,
    ));
    c.push(case(
        "inject: tag not hex",
        "POST",
        inject,
        tech,
        j(json!({ "action": "seat_cartridge", "tag_hex": "zz" })),
        400,
        Code::Json(&["tag_unknown_format"]),
    ));
    c.push(case(
        "inject: tag over capacity",
        "POST",
        inject,
        tech,
        j(json!({ "action": "seat_cartridge", "tag_hex": "ab".repeat(300) })),
        400,
        Code::Json(&["tag_unknown_format"]),
    ));

    // End: an optional body, parsed by hand.
    let end = format!("/v1/sessions/{a}/end");
    let raw = |s: &str| Body::Raw(s.as_bytes().to_vec());
    c.push(case(
        "end: truncated JSON",
        "POST",
        &end,
        op,
        raw("{"),
        400,
        JSON_ERR,
    ));
    c.push(case(
        "end: valid body then a second document",
        "POST",
        &end,
        op,
        raw("{\"reason\": \"x\"} {}"),
        400,
        JSON_ERR,
    ));
    c.push(case(
        "end: a list",
        "POST",
        &end,
        op,
        raw("[1, 2]"),
        400,
        Code::Json(&["invalid_request"]),
    ));
    c.push(case(
        "end: reason a number",
        "POST",
        &end,
        op,
        raw("{\"reason\": 5}"),
        400,
        Code::Json(&["invalid_request"]),
    ));
    c.push(case(
        "end: unknown field",
        "POST",
        &end,
        op,
        raw("{\"reason\": \"x\", \"y\": 1}"),
        400,
        Code::Json(&["invalid_request"]),
    ));
    c.push(case(
        "end: empty reason",
        "POST",
        &end,
        op,
        raw("{\"reason\": \"\"}"),
        400,
        Code::Json(&["invalid_input", "reason_required"]),
    ));
    c.push(case(
        "end: huge body",
        "POST",
        &end,
        op,
        huge_json(),
        413,
        Code::Json(&["body_too_large"]),
    ));
    c.push(case(
        "end: over-long reason",
        "POST",
        &end,
        op,
        j(json!({ "reason": "r".repeat(MAX_REASON_CHARS + 1) })),
        400,
        Code::Json(&["invalid_input"]),
    ));
    no_body_cases(&mut c, f);

    // Wrong states. `a` is bound (not armed), `b` created while `a` holds the pen, `e` ended.
    c.push(case(
        "start a bound session",
        "POST",
        &format!("/v1/sessions/{a}/start"),
        op,
        Body::None,
        409,
        WRONG_STATE,
    ));
    c.push(case(
        "pause a bound session",
        "POST",
        &format!("/v1/sessions/{a}/pause"),
        op,
        Body::None,
        409,
        WRONG_STATE,
    ));
    c.push(case(
        "setpoints of a bound session",
        "PUT",
        &format!("/v1/sessions/{a}/setpoints"),
        op,
        j(json!({ "rate_mhz": 100000 })),
        409,
        WRONG_STATE,
    ));
    c.push(case(
        "bind a bound session again",
        "POST",
        &format!("/v1/sessions/{a}/cartridge"),
        op,
        Body::None,
        409,
        WRONG_STATE,
    ));
    c.push(case(
        "bind while another session holds the pen",
        "POST",
        &format!("/v1/sessions/{b}/cartridge"),
        op,
        Body::None,
        409,
        Code::Json(&["pen_in_use"]),
    ));
    c.push(case(
        "arm a session without the pen",
        "POST",
        &format!("/v1/sessions/{b}/arm"),
        op,
        j(json!({ "depth_um": 500, "rate_mhz": 120000 })),
        409,
        NOT_ACTIVE,
    ));
    c.push(case(
        "start a session without the pen",
        "POST",
        &format!("/v1/sessions/{b}/start"),
        op,
        Body::None,
        409,
        NOT_ACTIVE,
    ));
    c.push(case(
        "pause a session without the pen",
        "POST",
        &format!("/v1/sessions/{b}/pause"),
        op,
        Body::None,
        409,
        NOT_ACTIVE,
    ));
    c.push(case(
        "setpoints of a session without the pen",
        "PUT",
        &format!("/v1/sessions/{b}/setpoints"),
        op,
        j(json!({ "rate_mhz": 100000 })),
        409,
        NOT_ACTIVE,
    ));
    c.push(case(
        "end an ended session",
        "POST",
        &format!("/v1/sessions/{e}/end"),
        op,
        reason(),
        409,
        WRONG_STATE,
    ));
    c.push(case(
        "arm an ended session",
        "POST",
        &format!("/v1/sessions/{e}/arm"),
        op,
        j(json!({ "depth_um": 500, "rate_mhz": 120000 })),
        409,
        NOT_ACTIVE,
    ));
    c.push(case(
        "start an ended session",
        "POST",
        &format!("/v1/sessions/{e}/start"),
        op,
        Body::None,
        409,
        NOT_ACTIVE,
    ));
    c.push(case(
        "bind an ended session",
        "POST",
        &format!("/v1/sessions/{e}/cartridge"),
        op,
        Body::None,
        409,
        Code::Json(&["pen_in_use"]),
    ));

    // Sessions that do not exist, and ids that are not ids.
    let none = 999_999;
    c.push(case(
        "get a missing session",
        "GET",
        &format!("/v1/sessions/{none}"),
        op,
        Body::None,
        404,
        NOT_FOUND,
    ));
    c.push(case(
        "arm a missing session",
        "POST",
        &format!("/v1/sessions/{none}/arm"),
        op,
        j(json!({ "depth_um": 500, "rate_mhz": 120000 })),
        404,
        NOT_FOUND,
    ));
    c.push(case(
        // The fixture's active session holds the pen: still 404, not pen_in_use.
        "bind a missing session while the pen is held",
        "POST",
        &format!("/v1/sessions/{none}/cartridge"),
        op,
        Body::None,
        404,
        NOT_FOUND,
    ));
    c.push(case(
        "start a missing session",
        "POST",
        &format!("/v1/sessions/{none}/start"),
        op,
        Body::None,
        404,
        NOT_FOUND,
    ));
    c.push(case(
        "pause a missing session",
        "POST",
        &format!("/v1/sessions/{none}/pause"),
        op,
        Body::None,
        404,
        NOT_FOUND,
    ));
    c.push(case(
        "end a missing session",
        "POST",
        &format!("/v1/sessions/{none}/end"),
        op,
        reason(),
        404,
        NOT_FOUND,
    ));
    c.push(case(
        "setpoints of a missing session",
        "PUT",
        &format!("/v1/sessions/{none}/setpoints"),
        op,
        j(json!({ "rate_mhz": 100000 })),
        404,
        NOT_FOUND,
    ));
    c.push(case(
        "report of a missing session",
        "GET",
        &format!("/v1/sessions/{none}/report"),
        op,
        Body::None,
        404,
        NOT_FOUND,
    ));
    c.push(case(
        "negative session id",
        "GET",
        "/v1/sessions/-1",
        op,
        Body::None,
        404,
        NOT_FOUND,
    ));
    c.push(case(
        "session id not a number",
        "GET",
        "/v1/sessions/abc",
        op,
        Body::None,
        400,
        Code::Json(&["invalid_path"]),
    ));
    c.push(case(
        "session id beyond i64",
        "GET",
        "/v1/sessions/99999999999999999999",
        op,
        Body::None,
        400,
        Code::Json(&["invalid_path"]),
    ));
    c.push(case(
        "start session 'abc'",
        "POST",
        "/v1/sessions/abc/start",
        op,
        Body::None,
        400,
        Code::Json(&["invalid_path"]),
    ));
    c.push(case(
        "end session '1.5'",
        "POST",
        "/v1/sessions/1.5/end",
        op,
        reason(),
        400,
        Code::Json(&["invalid_path"]),
    ));
    c.push(case(
        "missing cartridge",
        "GET",
        "/v1/cartridges/NOPE",
        op,
        Body::None,
        404,
        NOT_FOUND,
    ));
    c.push(case(
        "cartridge id of 300 characters",
        "GET",
        &format!("/v1/cartridges/{}", "x".repeat(300)),
        op,
        Body::None,
        404,
        NOT_FOUND,
    ));

    // Query strings.
    c.push(case(
        "events after=abc",
        "GET",
        "/v1/events?after=abc",
        op,
        Body::None,
        400,
        Code::Json(&["invalid_query"]),
    ));
    c.push(case(
        "events limit=abc",
        "GET",
        "/v1/events?limit=abc",
        op,
        Body::None,
        400,
        Code::Json(&["invalid_query"]),
    ));
    c.push(case(
        "events limit beyond u32",
        "GET",
        "/v1/events?limit=99999999999",
        op,
        Body::None,
        400,
        Code::Json(&["invalid_query"]),
    ));
    c.push(case(
        "events unknown parameter",
        "GET",
        "/v1/events?bogus=1",
        op,
        Body::None,
        400,
        Code::Json(&["invalid_query"]),
    ));
    c.push(case(
        "report format=xml",
        "GET",
        &format!("/v1/sessions/{a}/report?format=xml"),
        op,
        Body::None,
        400,
        Code::Json(&["invalid_format"]),
    ));
    c.push(case(
        "report unknown parameter",
        "GET",
        &format!("/v1/sessions/{a}/report?junk=1"),
        op,
        Body::None,
        400,
        Code::Json(&["invalid_query"]),
    ));

    // Unknown endpoints and wrong methods.
    c.push(case(
        "unknown endpoint",
        "GET",
        "/v1/nope",
        op,
        Body::None,
        404,
        NOT_FOUND,
    ));
    c.push(case(
        "unknown session action",
        "POST",
        &format!("/v1/sessions/{a}/explode"),
        op,
        Body::None,
        404,
        NOT_FOUND,
    ));
    c.push(case(
        "DELETE a session",
        "DELETE",
        &format!("/v1/sessions/{a}"),
        op,
        Body::None,
        405,
        Code::Json(&["method_not_allowed"]),
    ));
    c.push(case(
        "PUT arm",
        "PUT",
        &arm,
        op,
        j(json!({ "depth_um": 500, "rate_mhz": 120000 })),
        405,
        Code::Json(&["method_not_allowed"]),
    ));
    c.push(case(
        "GET home",
        "GET",
        "/v1/home",
        op,
        Body::None,
        405,
        Code::Json(&["method_not_allowed"]),
    ));
    c.push(case(
        "POST status",
        "POST",
        "/v1/status",
        op,
        Body::None,
        405,
        Code::Json(&["method_not_allowed"]),
    ));
    c.push(case(
        "DELETE events",
        "DELETE",
        "/v1/events",
        op,
        Body::None,
        405,
        Code::Json(&["method_not_allowed"]),
    ));
    c.push(case(
        "POST health",
        "POST",
        "/v1/health",
        Auth::None,
        Body::None,
        405,
        Code::Json(&["method_not_allowed"]),
    ));
    c
}

/// Phase 2: the active session is armed (depth 500 um, 120 Hz).
fn phase2_cases(f: &Fixture) -> Vec<Case> {
    let (a, b) = (f.active, f.created);
    let op = Auth::Operator;
    let j = |v: Value| Body::Json(v);
    let mut c = Vec::new();
    let sp = format!("/v1/sessions/{a}/setpoints");
    body_cases(
        &mut c,
        "setpoints",
        "PUT",
        &sp,
        op,
        &json!({ "rate_mhz": 100000 }),
    );
    let sp_case = |name: &str, v: Value, status: u16, code: Code| {
        case(
            &format!("setpoints: {name}"),
            "PUT",
            &sp,
            op,
            j(v),
            status,
            code,
        )
    };
    c.push(sp_case(
        "none given",
        json!({}),
        400,
        Code::Json(&["setpoints_required"]),
    ));
    c.push(sp_case(
        "both null",
        json!({ "depth_um": null, "rate_mhz": null }),
        400,
        Code::Json(&["setpoints_required"]),
    ));
    c.push(sp_case(
        "depth above the ceiling",
        json!({ "depth_um": 1600 }),
        400,
        Code::Json(&["depth_above_area_ceiling"]),
    ));
    c.push(sp_case(
        "negative depth",
        json!({ "depth_um": -5 }),
        400,
        Code::Json(&["depth_above_area_ceiling"]),
    ));
    c.push(sp_case(
        "rate above the ceiling",
        json!({ "rate_mhz": 900000 }),
        400,
        Code::Json(&["rate_out_of_range"]),
    ));
    c.push(sp_case(
        "rate below the minimum",
        json!({ "rate_mhz": 1000 }),
        400,
        Code::Json(&["rate_out_of_range"]),
    ));
    // A good value beside a bad one must not go through alone.
    c.push(sp_case(
        "good depth, bad rate",
        json!({ "depth_um": 600, "rate_mhz": 900000 }),
        400,
        Code::Json(&["rate_out_of_range"]),
    ));
    c.push(sp_case(
        "bad depth, good rate",
        json!({ "depth_um": 1600, "rate_mhz": 100000 }),
        400,
        Code::Json(&["depth_above_area_ceiling"]),
    ));
    c.push(sp_case(
        "depth a string",
        json!({ "depth_um": "600" }),
        400,
        DATA_ERR,
    ));
    c.push(sp_case(
        "rate a bool",
        json!({ "rate_mhz": true }),
        400,
        DATA_ERR,
    ));
    c.push(case(
        "arm an armed session",
        "POST",
        &format!("/v1/sessions/{a}/arm"),
        op,
        j(json!({ "depth_um": 700, "rate_mhz": 100000 })),
        409,
        WRONG_STATE,
    ));
    c.push(case(
        "pause an armed session",
        "POST",
        &format!("/v1/sessions/{a}/pause"),
        op,
        Body::None,
        409,
        WRONG_STATE,
    ));
    c.push(case(
        "bind an armed session",
        "POST",
        &format!("/v1/sessions/{a}/cartridge"),
        op,
        Body::None,
        409,
        WRONG_STATE,
    ));
    c.push(case(
        "home while armed",
        "POST",
        "/v1/home",
        op,
        Body::None,
        409,
        Code::Json(&["wrong_state"]),
    ));
    c.push(case(
        "start a session without the pen",
        "POST",
        &format!("/v1/sessions/{b}/start"),
        op,
        Body::None,
        409,
        NOT_ACTIVE,
    ));
    // Refusals that must not disarm: a reason the ledger refuses is checked before anything.
    let end = format!("/v1/sessions/{a}/end");
    for (what, reason) in [
        ("empty reason", String::new()),
        ("blank reason", " \n ".to_string()),
        ("over-long reason", "r".repeat(MAX_REASON_CHARS + 1)),
    ] {
        c.push(case(
            &format!("end an armed session: {what}"),
            "POST",
            &end,
            op,
            j(json!({ "reason": reason })),
            400,
            Code::Json(&["invalid_input", "reason_required"]),
        ));
    }
    c.push(case(
        "clear faults while armed: over-long reason",
        "POST",
        "/v1/faults/clear",
        op,
        j(json!({ "reason": "r".repeat(MAX_REASON_CHARS + 1) })),
        400,
        Code::Json(&["invalid_input"]),
    ));
    no_body_cases(&mut c, f);
    auth_cases(&mut c, "PUT", &sp, j(json!({ "depth_um": 700 })));
    auth_cases(
        &mut c,
        "POST",
        &format!("/v1/sessions/{a}/start"),
        Body::None,
    );
    auth_cases(&mut c, "POST", &format!("/v1/sessions/{a}/end"), Body::None);
    c
}

/// Runs the cases; returns the failures.
fn run(n: &Needled, f: &Fixture, cases: &[Case]) -> Vec<String> {
    let mut failures = Vec::new();
    let mut before = snapshot(n, f);
    let mut seq = last_seq(n);
    for c in cases {
        let (status, ctype, text) = send(n, c.method, &c.path, c.auth, &c.body);
        let what = format!(
            "{} ({} {})",
            c.name,
            c.method,
            if c.path.len() > 80 {
                &c.path[..80]
            } else {
                &c.path
            }
        );
        if status != c.status {
            failures.push(format!(
                "{what}: status {status}, expected {}: {text}",
                c.status
            ));
        }
        let parsed: Option<Value> = serde_json::from_str(&text).ok();
        let code = parsed
            .as_ref()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_string));
        let message_ok = parsed.as_ref().is_some_and(|v| {
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        });
        match c.code {
            Code::Json(codes) => {
                if !ctype.starts_with("application/json")
                    || !message_ok
                    || !code.as_deref().is_some_and(|k| codes.contains(&k))
                {
                    failures.push(format!(
                        "{what}: expected a JSON error with code {codes:?}, got {ctype}: {text}"
                    ));
                }
            }
        }
        let after = snapshot(n, f);
        if after != before {
            failures.push(format!(
                "{what}: changed the state\n  before: {before}\n  after:  {after}"
            ));
            before = after;
        }
        let v = ok(
            n,
            "GET",
            &format!("/v1/events?after={seq}&limit=1000"),
            Auth::Operator,
            None,
        );
        for e in v["events"].as_array().unwrap() {
            seq = seq.max(e["seq"].as_i64().unwrap());
            // A command that reached the controller is recorded before it acts (its request)
            // and after (its verdict): a refused one leaves exactly those two records.
            let refused_command = e["kind"] == "command"
                && (e["detail"]["accepted"] == false || e["detail"]["phase"] == "requested");
            if !refused_command {
                failures.push(format!("{what}: wrote an event: {e}"));
            }
        }
    }
    failures
}

fn campaign() -> (usize, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path());
    let f = fixture(&n);
    let one = phase1_cases(&f);
    let mut failures = run(&n, &f, &one);
    ok(
        &n,
        "POST",
        &format!("/v1/sessions/{}/arm", f.active),
        Auth::Operator,
        Some(json!({ "depth_um": 500, "rate_mhz": 120000 })),
    );
    wait_for(&n, "armed and settled", |s| {
        s["state"] == "Armed" && s["depth"]["moving"] == false
    });
    let two = phase2_cases(&f);
    failures.extend(run(&n, &f, &two));
    if !failures.is_empty() {
        // A case changed the fixture: report the cases, not the epilogue's first surprise.
        return (one.len() + two.len(), failures);
    }
    // The service is still healthy and the fixture still usable after all of it.
    ok(
        &n,
        "POST",
        &format!("/v1/sessions/{}/start", f.active),
        Auth::Operator,
        None,
    );
    wait_for(&n, "running", |s| s["state"] == "Running");
    ok(
        &n,
        "POST",
        &format!("/v1/sessions/{}/end", f.active),
        Auth::Operator,
        None,
    );
    (one.len() + two.len(), failures)
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let (count, failures) = campaign();
    println!("bad input: {count} cases");
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
