//! The API's OpenAPI document: the checked-in `docs/openapi.json` is what the code generates
//! and what a running needled serves (the way `scripts/soup.py --check` keeps docs/soup.md in
//! step). Regenerate it with
//! `cargo run -q -p needled --bin needled -- --openapi > docs/openapi.json`.

mod common;

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
const REGENERATE: &str =
    "regenerate it: cargo run -q -p needled --bin needled -- --openapi > docs/openapi.json";

fn checked_in() -> serde_json::Value {
    let text = std::fs::read_to_string(FILE).expect("docs/openapi.json exists");
    serde_json::from_str(&text).expect("docs/openapi.json is JSON")
}

#[test]
fn checked_in_openapi_document_is_the_generated_one() {
    let generated: serde_json::Value =
        serde_json::from_str(&needled::api::openapi_document().to_pretty_json().unwrap()).unwrap();
    assert!(
        generated == checked_in(),
        "docs/openapi.json differs from the routes and types; {REGENERATE}"
    );
}

#[test]
fn served_openapi_document_is_the_checked_in_one_and_needs_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let needled = common::start(dir.path(), common::CI_CONFIG);
    let served = needle_client::Client::anonymous(&needled.base)
        .build()
        .unwrap()
        .openapi()
        .expect("GET /v1/openapi.json without a token");
    assert_eq!(served["openapi"], "3.1.0");
    assert!(
        served == checked_in(),
        "the served document differs; {REGENERATE}"
    );
}

#[test]
fn every_route_of_the_router_is_in_the_document() {
    // The route tables' paths, as api/mod.rs and the console's router (its one /v1 route)
    // list them: a route added without its #[utoipa::path] and a line in openapi.rs fails here.
    let source = concat!(
        include_str!("../src/api/mod.rs"),
        include_str!("../src/console.rs")
    );
    let doc = checked_in();
    let mut routes = 0;
    for piece in source.split("\"/v1/").skip(1) {
        let path = format!("/v1/{}", piece.split('"').next().unwrap());
        routes += 1;
        assert!(
            doc["paths"].get(&path).is_some(),
            "route {path} is not in docs/openapi.json"
        );
    }
    assert!(routes >= 22, "found only {routes} routes in api/mod.rs");
}

/// `body` is a `T` field for field: it parses as the contract's type and that type writes it
/// back unchanged (no field the type lacks, none it adds or renames).
fn is_a<T: serde::de::DeserializeOwned + serde::Serialize>(what: &str, body: &serde_json::Value) {
    let typed: T = serde_json::from_value(body.clone())
        .unwrap_or_else(|e| panic!("{what}: not its contract type: {e}: {body}"));
    assert_eq!(
        &serde_json::to_value(&typed).unwrap(),
        body,
        "{what}: the contract type does not carry the body as it is"
    );
}

#[test]
fn plan_numbing_record_and_people_routes_answer_their_contract_types() {
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let n = common::start(dir.path(), common::CI_CONFIG);
    let (op, tech) = (n.operator.clone(), n.technician.clone());
    let call = |method: &str, path: &str, token: &str, body: Option<serde_json::Value>| {
        let (status, v) = common::call_with(&n, method, path, token, body);
        (status, v)
    };

    for token in [&op, &tech] {
        let (status, config) = call("GET", "/v1/console/config", token, None);
        assert_eq!(status, 200, "{config}");
        is_a::<needle_api::ConsoleConfig>("GET /v1/console/config", &config);
    }

    let plan = json!({ "subject_ref": "s-typed", "areas": ["face"], "min_days": 28,
        "max_days": 42, "sessions": [{ "depth_um": 500, "rate_mhz": 100_000 }] });
    let (status, created) = call("POST", "/v1/plans", &tech, Some(plan));
    assert_eq!(status, 201, "{created}");
    is_a::<needle_api::Plan>("POST /v1/plans", &created);
    let id = created["id"].as_i64().unwrap();
    let (status, got) = call("GET", &format!("/v1/plans/{id}"), &op, None);
    assert_eq!(status, 200);
    is_a::<needle_api::Plan>("GET /v1/plans/{id}", &got);
    let (_, list) = call("GET", "/v1/plans?subject_ref=s-typed", &op, None);
    is_a::<needle_api::Plans>("GET /v1/plans", &list);
    assert_eq!(list["plans"][0]["id"], id);
    let (status, changed) = call(
        "POST",
        &format!("/v1/plans/{id}/change"),
        &tech,
        Some(json!({ "reason": "longer gap", "max_days": 60 })),
    );
    assert_eq!(status, 200, "{changed}");
    is_a::<needle_api::Plan>("POST /v1/plans/{id}/change", &changed);

    let session = json!({ "subject_ref": "s-typed", "area": "face", "plan_id": id });
    let (status, s) = call("POST", "/v1/sessions", &op, Some(session));
    assert_eq!(status, 201, "{s}");
    let sid = s["id"].as_i64().unwrap();
    let (status, applied) = call("POST", &format!("/v1/sessions/{sid}/numbing"), &op, None);
    assert_eq!(status, 200, "{applied}");
    is_a::<needle_api::Numbing>("POST /v1/sessions/{id}/numbing", &applied);
    let (_, wait) = call("GET", &format!("/v1/sessions/{sid}/numbing"), &op, None);
    is_a::<needle_api::Numbing>("GET /v1/sessions/{id}/numbing", &wait);
    assert_eq!(wait["session_id"], sid);

    for path in [
        format!("/v1/sessions/{sid}/record"),
        format!("/v1/plans/{id}/record"),
    ] {
        let resp = ureq::get(&format!("{}{path}", n.base))
            .set("Authorization", &format!("Bearer {op}"))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert!(
            resp.content_type() == "text/html",
            "{path}: {}",
            resp.content_type()
        );
    }

    let (status, ended) = call("POST", &format!("/v1/sessions/{sid}/end"), &op, None);
    assert_eq!(status, 200, "{ended}");
    let (status, stopped) = call(
        "POST",
        &format!("/v1/plans/{id}/stop"),
        &tech,
        Some(json!({ "reason": "subject moved away" })),
    );
    assert_eq!(status, 200, "{stopped}");
    is_a::<needle_api::Plan>("POST /v1/plans/{id}/stop", &stopped);
    assert_eq!(stopped["status"], "stopped");

    let (status, added) = call(
        "POST",
        "/v1/people",
        &tech,
        Some(json!({ "name": "ann", "role": "operator" })),
    );
    assert_eq!(status, 201, "{added}");
    is_a::<needle_api::NewToken>("POST /v1/people", &added);
    let (_, people) = call("GET", "/v1/people", &tech, None);
    is_a::<needle_api::People>("GET /v1/people", &people);
    let (status, revoked) = call("POST", "/v1/people/ann/revoke", &tech, None);
    assert_eq!(status, 200, "{revoked}");
    is_a::<needle_api::Revoked>("POST /v1/people/{name}/revoke", &revoked);
    let (status, again) = call("POST", "/v1/people/ann/revoke", &tech, None);
    assert_eq!(status, 409);
    is_a::<needle_api::ErrorBody>("a refused revoke", &again);
    assert_eq!(again["error"]["code"], "person_revoked");
}

#[test]
fn every_response_link_names_an_operation_and_a_parameter_of_it() {
    let doc = checked_in();
    let mut params: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let methods = ["get", "post", "put", "delete"];
    for item in doc["paths"].as_object().unwrap().values() {
        for m in methods {
            let Some(op) = item.get(m) else { continue };
            let names = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| p["name"].as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default();
            params.insert(op["operationId"].as_str().unwrap().to_string(), names);
        }
    }
    let mut from_session = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in methods {
            let Some(op) = item.get(m) else { continue };
            for response in op["responses"].as_object().unwrap().values() {
                let Some(links) = response["links"].as_object() else {
                    continue;
                };
                for link in links.values() {
                    let target = link["operationId"].as_str().expect("an operationId");
                    let taken = params
                        .get(target)
                        .unwrap_or_else(|| panic!("{path}: a link to no operation {target}"));
                    for name in link["parameters"].as_object().unwrap().keys() {
                        assert!(
                            taken.contains(name),
                            "{path}: link to {target} passes {name}, which it does not take"
                        );
                    }
                    if path == "/v1/sessions" {
                        from_session.push(target.to_string());
                    }
                }
            }
        }
    }
    // Every operation on a session by its id is reachable from the session just created.
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/v1/sessions/{id}") {
            continue;
        }
        for m in methods {
            if let Some(op) = item.get(m) {
                let id = op["operationId"].as_str().unwrap();
                assert!(
                    from_session.iter().any(|t| t == id),
                    "no link from POST /v1/sessions to {id} ({m} {path})"
                );
            }
        }
    }
}
