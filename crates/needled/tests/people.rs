//! Who did what: per-person tokens created by a technician (API and `needlectl person`),
//! revocation of one person leaving the others working, and the event log naming the
//! authenticated people, never a string the client wrote.

mod common;

use serde_json::{json, Value};

use common::Needled;

use common::call_with as call;

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn checklist() -> Value {
    let config = needled::config::parse("", "defaults").unwrap();
    config
        .session
        .checklist
        .iter()
        .map(|c| (c.id.clone(), Value::Bool(true)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn add(n: &Needled, name: &str, role: &str) -> String {
    let (status, v) = call(
        n,
        "POST",
        "/v1/people",
        &n.technician,
        Some(json!({ "name": name, "role": role })),
    );
    assert_eq!(status, 201, "{v}");
    let token = v["token"].as_str().expect("token").to_owned();
    assert_eq!(token.len(), 64, "256 bits, hex");
    token
}

fn people(n: &Needled) -> Value {
    let (status, v) = call(n, "GET", "/v1/people", &n.technician, None);
    assert_eq!(status, 200, "{v}");
    v["people"].clone()
}

fn events(n: &Needled) -> Vec<Value> {
    let (status, v) = call(n, "GET", "/v1/events?limit=1000", &n.technician, None);
    assert_eq!(status, 200, "{v}");
    v["events"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_revoked_persons_token_is_refused_while_another_works_and_events_name_people() {
    let dir = tempfile::tempdir().unwrap();
    let n = common::start(dir.path(), common::CI_CONFIG);
    let ann = add(&n, "ann", "operator");
    let bob = add(&n, "bob", "operator");

    // Ann creates a session claiming to be someone else: the session and its event name ann.
    let (status, s) = call(
        &n,
        "POST",
        "/v1/sessions",
        &ann,
        Some(
            json!({ "operator": "Dr. Mallory", "subject_ref": "s-1", "area": "face",
                     "checklist": checklist() }),
        ),
    );
    assert_eq!(status, 201, "{s}");
    assert_eq!(s["operator"], "ann", "{s}");
    let created: Vec<Value> = events(&n)
        .into_iter()
        .filter(|e| e["kind"] == "session_created")
        .collect();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["actor"], "ann");
    assert_eq!(created[0]["detail"]["stated_operator"], "Dr. Mallory");
    assert!(events(&n).iter().all(|e| e["actor"] != "Dr. Mallory"));

    // Ann's token is revoked by the technician; bob's keeps working.
    let (status, v) = call(&n, "POST", "/v1/people/ann/revoke", &n.technician, None);
    assert_eq!(status, 200, "{v}");
    let (status, v) = call(&n, "GET", "/v1/status", &ann, None);
    assert_eq!((status, code(&v)), (401, "unauthorized"), "{v}");
    let (status, v) = call(&n, "GET", "/v1/status", &bob, None);
    assert_eq!(status, 200, "{v}");

    let log = events(&n);
    let revoked = log
        .iter()
        .find(|e| e["kind"] == "person_revoked")
        .expect("logged");
    assert_eq!(revoked["actor"], "technician");
    assert_eq!(revoked["detail"]["name"], "ann");
    let added: Vec<(String, String)> = log
        .iter()
        .filter(|e| e["kind"] == "person_added")
        .map(|e| (e["actor"].to_string(), e["detail"]["name"].to_string()))
        .collect();
    let q = |s: &str| format!("\"{s}\"");
    assert_eq!(
        added,
        [
            (q("bootstrap"), q("operator")),
            (q("bootstrap"), q("technician")),
            (q("technician"), q("ann")),
            (q("technician"), q("bob")),
        ]
    );
}

#[test]
fn refused_people_changes_have_stable_codes_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let n = common::start(dir.path(), common::CI_CONFIG);
    add(&n, "ann", "operator");
    let before = (people(&n), events(&n).len());

    // An operator may not add or revoke people.
    let (status, v) = call(
        &n,
        "POST",
        "/v1/people",
        &n.operator,
        Some(json!({ "name": "eve", "role": "technician" })),
    );
    assert_eq!((status, code(&v)), (403, "forbidden"), "{v}");
    let (status, v) = call(&n, "POST", "/v1/people/ann/revoke", &n.operator, None);
    assert_eq!((status, code(&v)), (403, "forbidden"), "{v}");
    // Names are never reused; unknown names are not found; a revoked token cannot manage.
    let (status, v) = call(
        &n,
        "POST",
        "/v1/people",
        &n.technician,
        Some(json!({ "name": "ann", "role": "technician" })),
    );
    assert_eq!((status, code(&v)), (409, "person_exists"), "{v}");
    let (status, v) = call(&n, "POST", "/v1/people/zed/revoke", &n.technician, None);
    assert_eq!((status, code(&v)), (404, "person_not_found"), "{v}");
    let (status, v) = call(
        &n,
        "POST",
        "/v1/people",
        &n.technician,
        Some(json!({ "name": "x", "role": "admin" })),
    );
    assert_eq!((status, code(&v)), (400, "invalid_request"), "{v}");
    assert_eq!((people(&n), events(&n).len()), before);
}

#[test]
fn needlectl_person_add_list_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let n = common::start(dir.path(), common::CI_CONFIG);
    let ctl = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_needlectl"))
            .args(["--url", &n.base, "--token-file"])
            .arg(n.data.join("tokens.json"))
            .args(args)
            .env_remove("NEEDLE_TOKEN")
            .env_remove("NEEDLE_URL")
            .output()
            .expect("run needlectl");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (status, out) = ctl(&["--json", "person", "add", "carol", "--role", "operator"]);
    assert_eq!(status, Some(0), "{out}");
    let carol: Value = serde_json::from_str(&out).unwrap();
    let token = carol["token"].as_str().unwrap().to_owned();
    assert_eq!(call(&n, "GET", "/v1/status", &token, None).0, 200);
    let (status, out) = ctl(&["person", "list"]);
    assert_eq!(status, Some(0));
    assert!(out.contains("carol") && out.contains("technician"), "{out}");
    let (status, _) = ctl(&["person", "revoke", "carol"]);
    assert_eq!(status, Some(0));
    assert_eq!(call(&n, "GET", "/v1/status", &token, None).0, 401);
    // Revoking twice is refused (exit 4: refused by the service).
    assert_eq!(ctl(&["person", "revoke", "carol"]).0, Some(4));
}
