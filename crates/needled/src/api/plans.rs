//! Treatment plans: create, read, change and stop (a technician, with a reason), and a
//! subject's plans; numbing as a timed step. Bodies are the contract's types (`needle_api`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use needle_api as wire;
use needle_api::{ChangePlan, CreatePlan, PlansQuery, Reason};

use super::sessions::SessionPath;
use super::{AppState, Authed, Body, NoBody, Param, QueryOf, Technician};
use crate::error::ApiError;
use crate::store::{PlanId, SessionId};

/// The path of the plan endpoints.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // only its documentation is used: the handlers take `Param<PlanId>`
pub(super) struct PlanPath {
    /// Plan id.
    id: i64,
}

/// Create a treatment plan (technicians only).
#[utoipa::path(post, path = "/v1/plans", operation_id = "create_plan", tag = "plans", request_body = CreatePlan,
    responses((status = 201, description = "created: the plan", body = wire::Plan)))]
pub(super) async fn create(
    State(s): State<AppState>,
    Technician(a): Technician,
    Body(req): Body<CreatePlan>,
) -> Result<(StatusCode, Json<wire::Plan>), ApiError> {
    let plan = s.service.create_plan(&a, req).await?;
    Ok((StatusCode::CREATED, Json(plan.into())))
}

/// A plan with its status, slots, window, history and log.
#[utoipa::path(get, path = "/v1/plans/{id}", operation_id = "get_plan", tag = "plans", params(PlanPath),
    responses((status = 200, description = "the plan", body = wire::Plan)))]
pub(super) async fn get(
    State(s): State<AppState>,
    Authed(_): Authed,
    Param(id): Param<PlanId>,
) -> Result<Json<wire::Plan>, ApiError> {
    Ok(Json(s.service.plan(id).await?.into()))
}

/// A subject's plans, oldest first.
#[utoipa::path(get, path = "/v1/plans", operation_id = "list_plans", tag = "plans", params(PlansQuery),
    responses((status = 200, description = "the subject's plans", body = wire::Plans)))]
pub(super) async fn list(
    State(s): State<AppState>,
    Authed(_): Authed,
    QueryOf(q): QueryOf<PlansQuery>,
) -> Result<Json<wire::Plans>, ApiError> {
    let plans = s.service.plans_for_subject(q.subject_ref).await?;
    Ok(Json(wire::Plans {
        plans: plans.into_iter().map(Into::into).collect(),
    }))
}

/// Change a plan's window or planned sessions, with a reason (technicians only).
#[utoipa::path(post, path = "/v1/plans/{id}/change", operation_id = "change_plan", tag = "plans", params(PlanPath),
    request_body = ChangePlan,
    responses((status = 200, description = "changed: the plan", body = wire::Plan)))]
pub(super) async fn change(
    State(s): State<AppState>,
    Technician(a): Technician,
    Param(id): Param<PlanId>,
    Body(req): Body<ChangePlan>,
) -> Result<Json<wire::Plan>, ApiError> {
    Ok(Json(s.service.change_plan(&a, id, req).await?.into()))
}

/// Stop a plan for good, with a reason (technicians only).
#[utoipa::path(post, path = "/v1/plans/{id}/stop", operation_id = "stop_plan", tag = "plans", params(PlanPath),
    request_body = Reason,
    responses((status = 200, description = "stopped: the plan", body = wire::Plan)))]
pub(super) async fn stop(
    State(s): State<AppState>,
    Technician(a): Technician,
    Param(id): Param<PlanId>,
    Body(req): Body<Reason>,
) -> Result<Json<wire::Plan>, ApiError> {
    Ok(Json(s.service.stop_plan(&a, id, &req.reason).await?.into()))
}

/// Record numbing applied now (a created or bound session); arming waits for it to act.
#[utoipa::path(post, path = "/v1/sessions/{id}/numbing", operation_id = "apply_numbing", tag = "sessions", params(SessionPath),
    responses((status = 200, description = "recorded: the wait", body = wire::Numbing)))]
pub(super) async fn apply_numbing(
    State(s): State<AppState>,
    Authed(a): Authed,
    Param(id): Param<SessionId>,
    _: NoBody,
) -> Result<Json<wire::Numbing>, ApiError> {
    s.service.apply_numbing(&a, id).await?;
    numbing_wait(&s, id).await.map(Json)
}

/// When the session's numbing will have acted (the console's countdown).
#[utoipa::path(get, path = "/v1/sessions/{id}/numbing", operation_id = "numbing", tag = "sessions", params(SessionPath),
    responses((status = 200, description = "the wait", body = wire::Numbing)))]
pub(super) async fn numbing(
    State(s): State<AppState>,
    Authed(_): Authed,
    Param(id): Param<SessionId>,
) -> Result<Json<wire::Numbing>, ApiError> {
    s.service.session(id).await?;
    numbing_wait(&s, id).await.map(Json)
}

async fn numbing_wait(s: &AppState, id: SessionId) -> Result<wire::Numbing, ApiError> {
    let ready = s.service.numbing_ready(id).await?;
    let now = crate::session::unix_ms();
    Ok(wire::Numbing {
        session_id: id,
        ready_at_ms: ready,
        wait_left_ms: ready.map_or(0, |r| (r - now).max(0)),
    })
}
