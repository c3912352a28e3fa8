//! Sessions, cartridges, lot recalls and the event log.

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{AppState, Authed, Body, NoBody, Param, QueryOf, Technician};
use crate::error::ApiError;
use crate::session::{CreateSession, Setpoints, UpdateChecklist};
use crate::store::{report_csv, SessionId, MAX_EVENTS_PAGE};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Reason {
    reason: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct OptionalReason {
    #[serde(default)]
    reason: Option<String>,
}

pub(super) async fn home(
    State(s): State<AppState>,
    Authed(a): Authed,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    s.service.home(&a).await?;
    Ok(Json(json!({ "ok": true })))
}

pub(super) async fn clear_faults(
    State(s): State<AppState>,
    Authed(a): Authed,
    Body(r): Body<Reason>,
) -> Result<Json<Value>, ApiError> {
    s.service.clear_faults(&a, &r.reason).await?;
    Ok(Json(json!({ "ok": true })))
}

pub(super) async fn create_session(
    State(s): State<AppState>,
    Authed(a): Authed,
    Body(req): Body<CreateSession>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let record = s.service.create_session(&a, req).await?;
    Ok((StatusCode::CREATED, Json(json!(record))))
}

pub(super) async fn get_session(
    State(s): State<AppState>,
    Authed(_): Authed,
    Param(id): Param<SessionId>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(s.service.session(id).await?)))
}

pub(super) async fn update_checklist(
    State(s): State<AppState>,
    Authed(a): Authed,
    Param(id): Param<SessionId>,
    Body(req): Body<UpdateChecklist>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(s.service.update_checklist(&a, id, req).await?)))
}

pub(super) async fn bind_cartridge(
    State(s): State<AppState>,
    Authed(a): Authed,
    Param(id): Param<SessionId>,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(s.service.bind_cartridge(&a, id).await?)))
}

pub(super) async fn arm(
    State(s): State<AppState>,
    Authed(a): Authed,
    Param(id): Param<SessionId>,
    Body(set): Body<Setpoints>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(s.service.arm(&a, id, set).await?)))
}

pub(super) async fn start(
    State(s): State<AppState>,
    Authed(a): Authed,
    Param(id): Param<SessionId>,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(s.service.start(&a, id).await?)))
}

pub(super) async fn pause(
    State(s): State<AppState>,
    Authed(a): Authed,
    Param(id): Param<SessionId>,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(s.service.pause(&a, id).await?)))
}

pub(super) async fn end(
    State(s): State<AppState>,
    Authed(a): Authed,
    Param(id): Param<SessionId>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(|e| match e.status().as_u16() {
        413 => ApiError::new(413, "body_too_large", e.body_text()),
        _ => ApiError::bad_request("invalid_request", e.body_text()),
    })?;
    // The body is optional: none, or {"reason": "..."}.
    let given: OptionalReason = if body.iter().all(u8::is_ascii_whitespace) {
        OptionalReason::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| match e.classify() {
            // As on every other endpoint: broken JSON is invalid_json, a wrong field
            // invalid_request.
            serde_json::error::Category::Data => {
                ApiError::bad_request("invalid_request", e.to_string())
            }
            _ => ApiError::bad_request("invalid_json", e.to_string()),
        })?
    };
    let reason = given
        .reason
        .unwrap_or_else(|| "ended by the operator".to_string());
    Ok(Json(json!(s.service.end(&a, id, &reason).await?)))
}

pub(super) async fn setpoints(
    State(s): State<AppState>,
    Authed(a): Authed,
    Param(id): Param<SessionId>,
    Body(set): Body<Setpoints>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(s.service.set_setpoints(&a, id, set).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReportQuery {
    #[serde(default)]
    format: Option<String>,
}

pub(super) async fn report(
    State(s): State<AppState>,
    Authed(_): Authed,
    Param(id): Param<SessionId>,
    QueryOf(q): QueryOf<ReportQuery>,
) -> Result<Response, ApiError> {
    let report = s.service.read(move |st| st.session_report(id)).await?;
    match q.format.as_deref().unwrap_or("json") {
        "json" => {
            let mut body = json!(report);
            if let Value::Object(map) = &mut body {
                map.insert("post_care".into(), json!(s.service.policy().post_care));
            }
            Ok(Json(body).into_response())
        }
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
            "invalid_format",
            format!("format '{other}': expected json or csv"),
        )),
    }
}

pub(super) async fn cartridge(
    State(s): State<AppState>,
    Authed(_): Authed,
    Param(id): Param<String>,
) -> Result<Json<Value>, ApiError> {
    let limits = s.service.policy().limits;
    let key = id.clone();
    let record = s
        .service
        .read(move |st| st.cartridge(&key, &limits))
        .await?;
    record
        .map(|r| Json(json!(r)))
        .ok_or_else(|| ApiError::not_found(format!("no cartridge {id}")))
}

pub(super) async fn recall(
    State(s): State<AppState>,
    Technician(a): Technician,
    Param(lot): Param<String>,
    Body(r): Body<Reason>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "in_use": s.service.recall_lot(&a, &lot, &r.reason).await? }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    #[serde(default)]
    after: i64,
    #[serde(default)]
    limit: Option<u32>,
}

pub(super) async fn events(
    State(s): State<AppState>,
    Authed(_): Authed,
    QueryOf(q): QueryOf<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_EVENTS_PAGE);
    let after = q.after;
    let events = s
        .service
        .read(move |st| st.events_after(after, limit))
        .await?;
    Ok(Json(json!({ "events": events })))
}
