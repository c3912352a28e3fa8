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

/// Routes that landed beside the contract (treatment plans, numbing, the printable record,
/// people) and still answer untyped JSON or HTML: not yet in the document, a known gap of
/// issue 13. No other route may be missing, and this list may only shrink.
const NOT_YET_IN_THE_CONTRACT: &[&str] = &[
    "/v1/sessions/{id}/record",
    "/v1/sessions/{id}/numbing",
    "/v1/plans",
    "/v1/plans/{id}",
    "/v1/plans/{id}/change",
    "/v1/plans/{id}/stop",
    "/v1/plans/{id}/record",
    "/v1/people",
    "/v1/people/{name}/revoke",
];

#[test]
fn every_route_of_the_router_is_in_the_document() {
    // The route table's paths, as api/mod.rs lists them: a route added without its
    // #[utoipa::path] and a line in openapi.rs fails here.
    let source = include_str!("../src/api/mod.rs");
    let doc = checked_in();
    let mut routes = 0;
    for piece in source.split("\"/v1/").skip(1) {
        let path = format!("/v1/{}", piece.split('"').next().unwrap());
        routes += 1;
        if NOT_YET_IN_THE_CONTRACT.contains(&path.as_str()) {
            // Listed as a gap: it must still be one (drop it from the list once documented).
            assert!(
                doc["paths"].get(&path).is_none(),
                "{path} is documented now: take it off NOT_YET_IN_THE_CONTRACT"
            );
            continue;
        }
        assert!(
            doc["paths"].get(&path).is_some(),
            "route {path} is not in docs/openapi.json"
        );
    }
    assert!(routes >= 22, "found only {routes} routes in api/mod.rs");
}
