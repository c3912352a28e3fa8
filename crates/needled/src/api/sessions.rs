//! Sessions, cartridges, lot recalls and the event log.

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use needle_api as wire;
use needle_api::{CreateSession, EndSession, EventsQuery, Reason, ReportQuery, Setpoints};

use super::{AppState, Authed, Body, NoBody, Param, QueryOf, Technician};
use crate::error::{ApiError, ErrorCode};
use crate::session::UpdateChecklist;
use crate::store::{report_csv, SessionId, MAX_EVENTS_PAGE};

/// Home the depth axis.
#[utoipa::path(post, path = "/v1/home", tag = "control",
    responses((status = 200, description = "homing started", body = wire::Ok)))]
pub(super) async fn home(
    State(s): State<AppState>,
    Authed(a): Authed,
    _: NoBody,
) -> Result<Json<wire::Ok>, ApiError> {
    s.service.home(&a).await?;
    Ok(Json(wire::Ok::YES))
}

/// Clear latched faults, with a recorded reason.
#[utoipa::path(post, path = "/v1/faults/clear", tag = "control", request_body = Reason,
    responses((status = 200, description = "faults cleared", body = wire::Ok)))]
pub(super) async fn clear_faults(
    State(s): State<AppState>,
    Authed(a): Authed,
    Body(r): Body<Reason>,
) -> Result<Json<wire::Ok>, ApiError> {
    s.service.clear_faults(&a, &r.reason).await?;
    Ok(Json(wire::Ok::YES))
}

/// Create a session (it takes the pen).
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions", request_body = CreateSession,
    responses((status = 201, description = "created", body = wire::Session)))]
pub(super) async fn create_session(
    State(s): State<AppState>,
    Authed(a): Authed,
    Body(req): Body<CreateSession>,
) -> Result<(StatusCode, Json<wire::Session>), ApiError> {
    let record = s.service.create_session(&a, req).await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// A session.
#[utoipa::path(get, path = "/v1/sessions/{id}", tag = "sessions", params(SessionPath),
    responses((status = 200, description = "the session", body = wire::Session)))]
pub(super) async fn get_session(
    State(s): State<AppState>,
    Authed(_): Authed,
    Param(id): Param<SessionId>,
) -> Result<Json<wire::Session>, ApiError> {
    Ok(Json(s.service.session(id).await?.into()))
}

/// Merge checklist answers into a created or bound session (before arming).
#[utoipa::path(put, path = "/v1/sessions/{id}/checklist", tag = "sessions", params(SessionPath),
    request_body = UpdateChecklist,
    responses((status = 200, description = "the session with the merged answers", body = wire::Session)))]
pub(super) async fn update_checklist(
    State(s): State<AppState>,
    Authed(a): Authed,
    Param(id): Param<SessionId>,
    Body(req): Body<UpdateChecklist>,
) -> Result<Json<wire::Session>, ApiError> {
    Ok(Json(s.service.update_checklist(&a, id, req).await?.into()))
}

/// The path of the session endpoints.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // only its documentation is used: the handlers take `Param<SessionId>`
pub(super) struct SessionPath {
    /// Session id.
    id: i64,
}

/// Bind the seated cartridge to the session.
#[utoipa::path(post, path = "/v1/sessions/{id}/cartridge", tag = "sessions", params(SessionPath),
    responses((status = 200, description = "bound: the cartridge", body = wire::Cartridge)))]
pub(super) async fn bind_cartridge(
    State(s): State<AppState>,
    Authed(a): Authed,
    Param(id): Param<SessionId>,
    _: NoBody,
) -> Result<Json<wire::Cartridge>, ApiError> {
    Ok(Json(s.service.bind_cartridge(&a, id).await?.into()))
}

/// Arm with a depth and a stroke rate.
#[utoipa::path(post, path = "/v1/sessions/{id}/arm", tag = "sessions", params(SessionPath),
    request_body = Setpoints,
    responses((status = 200, description = "armed", body = wire::Session)))]
pub(super) async fn arm(
    State(s): State<AppState>,
    Authed(a): Authed,
    Param(id): Param<SessionId>,
    Body(set): Body<Setpoints>,
) -> Result<Json<wire::Session>, ApiError> {
    Ok(Json(s.service.arm(&a, id, set).await?.into()))
}

/// Start the needles (an armed or paused session).
#[utoipa::path(post, path = "/v1/sessions/{id}/start", tag = "sessions", params(SessionPath),
    responses((status = 200, description = "running", body = wire::Session)))]
pub(super) async fn start(
    State(s): State<AppState>,
    Authed(a): Authed,
    Param(id): Param<SessionId>,
    _: NoBody,
) -> Result<Json<wire::Session>, ApiError> {
    Ok(Json(s.service.start(&a, id).await?.into()))
}

/// Pause the needles.
#[utoipa::path(post, path = "/v1/sessions/{id}/pause", tag = "sessions", params(SessionPath),
    responses((status = 200, description = "paused", body = wire::Session)))]
pub(super) async fn pause(
    State(s): State<AppState>,
    Authed(a): Authed,
    Param(id): Param<SessionId>,
    _: NoBody,
) -> Result<Json<wire::Session>, ApiError> {
    Ok(Json(s.service.pause(&a, id).await?.into()))
}

/// End the session (the body is optional); its cartridge is spent.
#[utoipa::path(post, path = "/v1/sessions/{id}/end", tag = "sessions", params(SessionPath),
    request_body(content = Option<EndSession>, description = "none, `null`, or a reason"),
    responses((status = 200, description = "ended", body = wire::Session)))]
pub(super) async fn end(
    State(s): State<AppState>,
    Authed(a): Authed,
    Param(id): Param<SessionId>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Json<wire::Session>, ApiError> {
    let body = body.map_err(super::extract::unreadable)?;
    // The body is optional: none, `null`, or {"reason": "..."} (an object, as every body).
    let given: EndSession = if body.iter().all(u8::is_ascii_whitespace) {
        EndSession::default()
    } else {
        serde_json::from_slice::<Option<EndSession>>(&body)
            .map(Option::unwrap_or_default)
            .map_err(|e| match e.classify() {
                // As on every other endpoint: broken JSON is invalid_json, a wrong field
                // invalid_request.
                serde_json::error::Category::Data => {
                    ApiError::bad_request(ErrorCode::InvalidRequest, e.to_string())
                }
                _ => ApiError::bad_request(ErrorCode::InvalidJson, e.to_string()),
            })?
    };
    if !matches!(super::extract::first_token(&body), None | Some(b'{' | b'n')) {
        return Err(super::extract::not_an_object());
    }
    let reason = given
        .reason
        .unwrap_or_else(|| "ended by the operator".to_string());
    Ok(Json(s.service.end(&a, id, &reason).await?.into()))
}

/// Change the setpoints of an armed, running or paused session.
#[utoipa::path(put, path = "/v1/sessions/{id}/setpoints", tag = "sessions", params(SessionPath),
    request_body = Setpoints,
    responses((status = 200, description = "changed", body = wire::Session)))]
pub(super) async fn setpoints(
    State(s): State<AppState>,
    Authed(a): Authed,
    Param(id): Param<SessionId>,
    Body(set): Body<Setpoints>,
) -> Result<Json<wire::Session>, ApiError> {
    Ok(Json(s.service.set_setpoints(&a, id, set).await?.into()))
}

/// The session's report, as JSON or CSV.
#[utoipa::path(get, path = "/v1/sessions/{id}/report", tag = "sessions",
    params(SessionPath, ReportQuery),
    responses((status = 200, description = "the report",
        content((wire::SessionReport = "application/json"), (String = "text/csv")))))]
pub(super) async fn report(
    State(s): State<AppState>,
    Authed(_): Authed,
    Param(id): Param<SessionId>,
    QueryOf(q): QueryOf<ReportQuery>,
) -> Result<Response, ApiError> {
    let report = s.service.read(move |st| st.session_report(id)).await?;
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(super::wire::report(
            report,
            s.service.policy().post_care.clone(),
        ))
        .into_response()),
        "csv" => Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"session-{id}.csv\""),
                ),
            ],
            report_csv(&report, &s.service.policy().post_care),
        )
            .into_response()),
        other => Err(ApiError::bad_request(
            ErrorCode::InvalidFormat,
            format!("format '{other}': expected json or csv"),
        )),
    }
}

/// A cartridge by id.
#[utoipa::path(get, path = "/v1/cartridges/{id}", tag = "cartridges",
    params(("id" = String, Path, description = "cartridge id")),
    responses((status = 200, description = "the cartridge", body = wire::Cartridge)))]
pub(super) async fn cartridge(
    State(s): State<AppState>,
    Authed(_): Authed,
    Param(id): Param<String>,
) -> Result<Json<wire::Cartridge>, ApiError> {
    let limits = s.service.policy().limits;
    let key = id.clone();
    let record = s
        .service
        .read(move |st| st.cartridge(&key, &limits))
        .await?;
    record
        .map(|r| Json(r.into()))
        .ok_or_else(|| ApiError::not_found(format!("no cartridge {id}")))
}

/// Recall a lot (technicians): its cartridges are refused, a session on one is stopped.
#[utoipa::path(post, path = "/v1/lots/{lot}/recall", tag = "cartridges",
    params(("lot" = String, Path, description = "production lot")), request_body = Reason,
    responses((status = 200, description = "recalled", body = wire::Recalled)))]
pub(super) async fn recall(
    State(s): State<AppState>,
    Technician(a): Technician,
    Param(lot): Param<String>,
    Body(r): Body<Reason>,
) -> Result<Json<wire::Recalled>, ApiError> {
    Ok(Json(wire::Recalled {
        in_use: s.service.recall_lot(&a, &lot, &r.reason).await?,
    }))
}

/// The event log, a page at a time.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventsQuery),
    responses((status = 200, description = "a page of events", body = wire::Events)))]
pub(super) async fn events(
    State(s): State<AppState>,
    Authed(_): Authed,
    QueryOf(q): QueryOf<EventsQuery>,
) -> Result<Json<wire::Events>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_EVENTS_PAGE);
    let after = q.after;
    let events = s
        .service
        .read(move |st| st.events_after(after, limit))
        .await?;
    Ok(Json(wire::Events {
        events: events.into_iter().map(Into::into).collect(),
    }))
}
