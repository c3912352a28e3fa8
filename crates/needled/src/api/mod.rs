//! The HTTP API (axum): bearer tokens with roles, JSON in and out, errors as
//! `{"error": {"code": "...", "message": "..."}}` with a stable code, telemetry over SSE.
//!
//! Files: `extract.rs` (the request extractors: bearer auth, roles, bodies, paths, queries,
//! each refusal a stable code), `status.rs` (health, status, version, the SSE telemetry),
//! `sessions.rs` (sessions, cartridges, recalls, events), `plans.rs` (treatment plans),
//! `record.rs` (the printable record, HTML), `sim.rs` (the sim backend's truth,
//! tick log and injections), `wire.rs` (the service's types into the contract's, the
//! `needle_api` crate), `openapi.rs` (the OpenAPI document, served at `/v1/openapi.json`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};

use crate::auth::Tokens;
use crate::error::{ApiError, ErrorCode};
use crate::session::Service;
mod extract;
mod openapi;
mod people;
mod plans;
mod record;
mod sessions;
mod sim;
mod status;
mod wire;

pub use extract::{Authed, Body, NoBody, Param, QueryOf, Technician};
pub use openapi::document as openapi_document;

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The service.
    pub service: Arc<Service>,
    /// The API tokens.
    pub tokens: Arc<Tokens>,
    /// Period of the SSE telemetry.
    pub telemetry_period: Duration,
    /// What `GET /v1/version` answers: build and configuration identity.
    pub version: Arc<needle_api::Version>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.body())).into_response()
    }
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/health", get(status::health))
        .route("/v1/status", get(status::status))
        .route("/v1/version", get(status::version))
        .route("/v1/telemetry", get(status::telemetry_stream))
        .route("/v1/openapi.json", get(openapi::serve))
        .route("/v1/home", post(sessions::home))
        .route("/v1/faults/clear", post(sessions::clear_faults))
        .route("/v1/sessions", post(sessions::create_session))
        .route("/v1/sessions/{id}", get(sessions::get_session))
        .route(
            "/v1/sessions/{id}/cartridge",
            post(sessions::bind_cartridge),
        )
        .route("/v1/sessions/{id}/arm", post(sessions::arm))
        .route("/v1/sessions/{id}/start", post(sessions::start))
        .route("/v1/sessions/{id}/pause", post(sessions::pause))
        .route("/v1/sessions/{id}/end", post(sessions::end))
        .route("/v1/sessions/{id}/setpoints", put(sessions::setpoints))
        .route(
            "/v1/sessions/{id}/checklist",
            put(sessions::update_checklist),
        )
        .route("/v1/sessions/{id}/report", get(sessions::report))
        .route("/v1/sessions/{id}/record", get(record::session))
        .route(
            "/v1/sessions/{id}/numbing",
            post(plans::apply_numbing).get(plans::numbing),
        )
        .route("/v1/plans", post(plans::create).get(plans::list))
        .route("/v1/plans/{id}", get(plans::get))
        .route("/v1/plans/{id}/change", post(plans::change))
        .route("/v1/plans/{id}/stop", post(plans::stop))
        .route("/v1/plans/{id}/record", get(record::plan))
        .route("/v1/cartridges/{id}", get(sessions::cartridge))
        .route("/v1/lots/{lot}/recall", post(sessions::recall))
        .route("/v1/events", get(sessions::events))
        .route("/v1/people", get(people::list).post(people::add))
        .route("/v1/people/{name}/revoke", post(people::revoke))
        .route("/v1/sim/truth", get(sim::sim_truth))
        .route("/v1/sim/ticks", get(sim::sim_ticks))
        .route("/v1/sim/inject", post(sim::sim_inject))
        .merge(crate::console::router())
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                405,
                ErrorCode::MethodNotAllowed,
                "this endpoint does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}
