//! The OpenAPI 3.1 document of the API, generated from the handlers' `#[utoipa::path]`s and
//! the contract's types (`needle_api`). Served at `GET /v1/openapi.json` without a token (it
//! describes the API, it reveals nothing of the rig or the records) and checked in as
//! `docs/openapi.json`; `tests/openapi.rs` fails when the two differ. Regenerate the file
//! with `cargo run -q -p needled --bin needled -- --openapi > docs/openapi.json`.
//!
//! To add an endpoint to the contract: its bodies as types in `needle_api` (with
//! `ToSchema`), a `#[utoipa::path]` on its handler, the handler in `paths(...)` below, then
//! regenerate the file.

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{people, plans, record, sessions, sim, status};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "needled",
        description = "The needle pen host service: treatment sessions, the cartridge ledger, \
            the rig's status and telemetry, and the sim backend's controls. Every refusal is \
            an ErrorBody with a stable code (ErrorCode); a refused request changes nothing.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        status::health,
        status::status,
        status::version,
        status::telemetry_stream,
        serve,
        sessions::home,
        sessions::clear_faults,
        sessions::create_session,
        sessions::get_session,
        sessions::update_checklist,
        sessions::bind_cartridge,
        sessions::arm,
        sessions::start,
        sessions::pause,
        sessions::end,
        sessions::setpoints,
        sessions::report,
        sessions::cartridge,
        sessions::recall,
        sessions::events,
        record::session,
        plans::apply_numbing,
        plans::numbing,
        plans::create,
        plans::list,
        plans::get,
        plans::change,
        plans::stop,
        record::plan,
        people::list,
        people::add,
        people::revoke,
        sim::sim_truth,
        sim::sim_ticks,
        sim::sim_inject,
        crate::console::config,
    ),
    components(schemas(needle_api::ErrorBody, needle_api::TelemetryEvent, needle_api::ReportFormat)),
    modifiers(&Common, &Links),
    security(("bearer" = [])),
)]
struct ApiDoc;

/// What every operation shares: the bearer scheme, and the error body for every status the
/// operation does not list itself.
struct Common;

impl Modify for Common {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("an API token from the token file"))
                    .build(),
            ),
        );
        let error = ResponseBuilder::new()
            .description("refused: a stable code and a message; nothing changed")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        needle_api::ErrorBody::name(),
                    ))))
                    .build(),
            )
            .build();
        for item in doc.paths.paths.values_mut() {
            let ops: [&mut Option<Operation>; 4] = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
            ];
            for op in ops.into_iter().flatten() {
                op.responses
                    .responses
                    .insert("default".to_string(), RefOr::T(error.clone()));
            }
        }
    }
}

/// One group of response links: the response of `method path` with `status` names a resource
/// whose `param` the `targets` (operation ids) take, found in the response at `value` (a
/// runtime expression).
struct LinkGroup {
    method: HttpMethod,
    path: &'static str,
    status: &'static str,
    param: &'static str,
    value: &'static str,
    targets: &'static [&'static str],
}

/// The OpenAPI `links` from the operations that make a session, a cartridge binding, a plan
/// and a person to the operations on them: how a client (and schemathesis's stateful phase)
/// gets from a created resource to its `{id}` routes.
const LINKS: &[LinkGroup] = &[
    LinkGroup {
        method: HttpMethod::Post,
        path: "/v1/sessions",
        status: "201",
        param: "id",
        value: "$response.body#/id",
        targets: &[
            "get_session",
            "update_checklist",
            "bind_cartridge",
            "apply_numbing",
            "numbing",
            "arm",
            "start",
            "pause",
            "end",
            "setpoints",
            "report",
            "session_record",
        ],
    },
    LinkGroup {
        method: HttpMethod::Post,
        path: "/v1/sessions/{id}/cartridge",
        status: "200",
        param: "id",
        value: "$response.body#/id",
        targets: &["cartridge"],
    },
    LinkGroup {
        method: HttpMethod::Post,
        path: "/v1/plans",
        status: "201",
        param: "id",
        value: "$response.body#/id",
        targets: &["get_plan", "change_plan", "stop_plan", "plan_record"],
    },
    LinkGroup {
        method: HttpMethod::Post,
        path: "/v1/plans",
        status: "201",
        param: "subject_ref",
        value: "$response.body#/subject_ref",
        targets: &["list_plans"],
    },
    LinkGroup {
        method: HttpMethod::Post,
        path: "/v1/people",
        status: "201",
        param: "name",
        value: "$response.body#/name",
        targets: &["revoke_person"],
    },
];

/// Adds [`LINKS`] to the responses they start from.
struct Links;

impl Modify for Links {
    fn modify(&self, doc: &mut Document) {
        for group in LINKS {
            let Some(item) = doc.paths.paths.get_mut(group.path) else {
                continue;
            };
            let op = match group.method {
                HttpMethod::Get => item.get.as_mut(),
                HttpMethod::Put => item.put.as_mut(),
                _ => item.post.as_mut(),
            };
            let Some(RefOr::T(response)) =
                op.and_then(|op| op.responses.responses.get_mut(group.status))
            else {
                continue;
            };
            for target in group.targets {
                // utoipa 5.5 writes `Link::operation_id` as `operation_id` where OpenAPI says
                // `operationId` (its Link lacks serde's camelCase), and tools ignore the
                // misspelt field; the key is written through the link's flattened
                // extensions map instead, which serializes as given.
                let mut id = Extensions::default();
                id.insert("operationId".to_string(), (*target).into());
                let link = LinkBuilder::new()
                    .parameter(group.param, group.value)
                    .extensions(Some(id))
                    .build();
                response.links.insert((*target).to_string(), RefOr::T(link));
            }
        }
    }
}

/// The document.
pub fn document() -> Document {
    ApiDoc::openapi()
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "status", security(()),
    responses((status = 200, description = "the OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
pub(super) async fn serve() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document().to_pretty_json().unwrap_or_default(),
    )
}
