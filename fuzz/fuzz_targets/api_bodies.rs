//! JSON request bodies of the API, decoded with serde_json into the public request types
//! (`needled::session::CreateSession` for POST /v1/sessions, `needled::session::Setpoints`
//! for POST .../arm and PUT .../setpoints).
//!
//! The other body and query types are private to `api.rs` and are not reached here:
//! `Reason` (POST /v1/faults/clear, POST /v1/lots/{lot}/recall), `OptionalReason`
//! (POST .../end), `SimAction` (POST /v1/sim/inject), `ReportQuery` and `EventsQuery`. Their
//! behaviour on bad input is covered end to end by `crates/needled/tests/bad_input.rs`.
//!
//! Properties: never panics; `deny_unknown_fields` holds (an accepted JSON object has only the
//! type's fields); an accepted body decodes the same from its `serde_json::Value`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use needled::session::{CreateSession, Setpoints};
use serde_json::Value;

fn only_known_keys(body: &[u8], known: &[&str]) {
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
        for k in map.keys() {
            assert!(known.contains(&k.as_str()), "accepted unknown field {k:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    if which % 2 == 0 {
        if let Ok(req) = serde_json::from_slice::<CreateSession>(body) {
            only_known_keys(
                body,
                &[
                    "operator",
                    "subject_ref",
                    "area",
                    "checklist",
                    "override_reason",
                    "plan_id",
                ],
            );
            if let Ok(v) = serde_json::from_slice::<Value>(body) {
                let again =
                    serde_json::from_value::<CreateSession>(v).expect("decodes from its value");
                assert_eq!(format!("{again:?}"), format!("{req:?}"));
            }
        }
    } else if let Ok(set) = serde_json::from_slice::<Setpoints>(body) {
        only_known_keys(body, &["depth_um", "rate_mhz", "override_reason"]);
        if let Ok(v) = serde_json::from_slice::<Value>(body) {
            let again = serde_json::from_value::<Setpoints>(v).expect("decodes from its value");
            assert_eq!(
                (again.depth_um, again.rate_mhz),
                (set.depth_um, set.rate_mhz)
            );
        }
    }
});
