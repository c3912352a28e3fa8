//! Treatment plans: create, read, change and stop (a technician, with a reason), and a
//! subject's plans; numbing as a timed step. Request bodies are the typed structs of
//! `session::plans`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{AppState, Authed, Body, NoBody, Param, QueryOf, Technician};
use crate::error::ApiError;
use crate::session::{ChangePlan, CreatePlan};
use crate::store::{PlanId, SessionId};

/// `POST /v1/plans/{id}/stop`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopPlan {
    /// Why the plan stops.
    pub reason: String,
}

/// `GET /v1/plans?subject_ref=...`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlansQuery {
    /// The subject whose plans to list.
    pub subject_ref: String,
}

pub(super) async fn create(
    State(s): State<AppState>,
    Technician(a): Technician,
    Body(req): Body<CreatePlan>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let plan = s.service.create_plan(&a, req).await?;
    Ok((StatusCode::CREATED, Json(json!(plan))))
}

pub(super) async fn get(
    State(s): State<AppState>,
    Authed(_): Authed,
    Param(id): Param<PlanId>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(s.service.plan(id).await?)))
}

pub(super) async fn list(
    State(s): State<AppState>,
    Authed(_): Authed,
    QueryOf(q): QueryOf<PlansQuery>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "plans": s.service.plans_for_subject(q.subject_ref).await? }),
    ))
}

pub(super) async fn change(
    State(s): State<AppState>,
    Technician(a): Technician,
    Param(id): Param<PlanId>,
    Body(req): Body<ChangePlan>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(s.service.change_plan(&a, id, req).await?)))
}

pub(super) async fn stop(
    State(s): State<AppState>,
    Technician(a): Technician,
    Param(id): Param<PlanId>,
    Body(req): Body<StopPlan>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(s.service.stop_plan(&a, id, &req.reason).await?)))
}

/// `POST /v1/sessions/{id}/numbing`: numbing applied now; arming waits for it to act.
pub(super) async fn apply_numbing(
    State(s): State<AppState>,
    Authed(a): Authed,
    Param(id): Param<SessionId>,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    s.service.apply_numbing(&a, id).await?;
    numbing_json(&s, id).await.map(Json)
}

/// `GET /v1/sessions/{id}/numbing`: when the numbing will have acted (the console's countdown).
pub(super) async fn numbing(
    State(s): State<AppState>,
    Authed(_): Authed,
    Param(id): Param<SessionId>,
) -> Result<Json<Value>, ApiError> {
    s.service.session(id).await?;
    numbing_json(&s, id).await.map(Json)
}

async fn numbing_json(s: &AppState, id: SessionId) -> Result<Value, ApiError> {
    let ready = s.service.numbing_ready(id).await?;
    let now = crate::session::unix_ms();
    Ok(json!({
        "session_id": id,
        "ready_at_ms": ready,
        "wait_left_ms": ready.map_or(0, |r| (r - now).max(0)),
    }))
}
