//! The printable treatment record (HTML, print CSS) of a session and of a whole plan.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::plans::PlanPath;
use super::sessions::SessionPath;
use super::{AppState, Authed, Param};
use crate::error::ApiError;
use crate::record;
use crate::store::{PlanId, SessionId};

fn html(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// A session's printable treatment record.
#[utoipa::path(get, path = "/v1/sessions/{id}/record", operation_id = "session_record", tag = "sessions", params(SessionPath),
    responses((status = 200, description = "the record, an HTML page with print CSS",
        content_type = "text/html", body = String)))]
pub(super) async fn session(
    State(s): State<AppState>,
    Authed(_): Authed,
    Param(id): Param<SessionId>,
) -> Result<Response, ApiError> {
    let report = s.service.read(move |st| st.session_report(id)).await?;
    let policy = s.service.policy();
    Ok(html(record::session_page(
        &report,
        &policy.checklist,
        &policy.post_care,
    )))
}

/// A plan's printable treatment record: every session of it.
#[utoipa::path(get, path = "/v1/plans/{id}/record", operation_id = "plan_record", tag = "plans", params(PlanPath),
    responses((status = 200, description = "the record, an HTML page with print CSS",
        content_type = "text/html", body = String)))]
pub(super) async fn plan(
    State(s): State<AppState>,
    Authed(_): Authed,
    Param(id): Param<PlanId>,
) -> Result<Response, ApiError> {
    let view = s.service.plan(id).await?;
    let ids: Vec<SessionId> = view.history.iter().map(|l| l.session.id).collect();
    let reports = s
        .service
        .read(move |st| {
            ids.iter()
                .map(|&i| st.session_report(i))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    let policy = s.service.policy();
    Ok(html(record::plan_page(
        &view,
        &reports,
        &policy.checklist,
        &policy.post_care,
    )))
}
