//! Health, status, version and the SSE telemetry stream.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Json;
use futures::Stream;
use needle_api as wire;

use super::wire::telemetry;
use super::{AppState, Authed};
use crate::error::ApiError;
use crate::session::MonitorHealth;

/// Whether the service is fit to drive the rig. Needs no token: a supervisor or a load
/// balancer asks it.
#[utoipa::path(get, path = "/v1/health", tag = "status", security(()),
    responses((status = 200, description = "the verdict", body = wire::Health)))]
pub(super) async fn health(State(s): State<AppState>) -> Json<wire::Health> {
    let alive = s.service.control().is_alive(Duration::from_millis(500));
    let storage = s.service.storage_health();
    let monitor = s.service.monitor_health();
    let status = match monitor {
        _ if !alive => wire::HealthStatus::ControlLoopStalled,
        MonitorHealth::Failed => wire::HealthStatus::MonitorFailed,
        MonitorHealth::Stalled(_) => wire::HealthStatus::MonitorStalled,
        MonitorHealth::Ok if !storage.ok => wire::HealthStatus::StorageUnavailable,
        MonitorHealth::Ok => wire::HealthStatus::Ok,
    };
    let monitor = match monitor {
        MonitorHealth::Ok => wire::MonitorCode::Ok,
        MonitorHealth::Stalled(_) => wire::MonitorCode::Stalled,
        MonitorHealth::Failed => wire::MonitorCode::Failed,
    };
    Json(wire::Health {
        status,
        control_alive: alive,
        monitor,
        storage: storage.into(),
        link: crate::hal::link::health().map(|link| serde_json::to_value(link).unwrap_or_default()),
    })
}

/// Build and configuration identity.
#[utoipa::path(get, path = "/v1/version", tag = "status",
    responses((status = 200, description = "the build", body = wire::Version)))]
pub(super) async fn version(State(s): State<AppState>, Authed(_): Authed) -> Json<wire::Version> {
    Json((*s.version).clone())
}

/// Telemetry, the active session and its cartridge, storage and the control loop.
#[utoipa::path(get, path = "/v1/status", tag = "status",
    responses((status = 200, description = "the rig and the service", body = wire::Status)))]
pub(super) async fn status(
    State(s): State<AppState>,
    Authed(_): Authed,
) -> Result<Json<wire::Status>, ApiError> {
    let snap = s.service.control().snapshot();
    let session = match s.service.active_session() {
        Some(id) => Some(s.service.session(id).await?),
        None => None,
    };
    let cartridge = match session.as_ref().and_then(|x| x.cartridge_id.clone()) {
        Some(id) => {
            let limits = s.service.policy().limits;
            s.service.read(move |st| st.cartridge(&id, &limits)).await?
        }
        None => None,
    };
    Ok(Json(wire::Status {
        telemetry: telemetry(&snap.telemetry),
        session: session.map(Into::into),
        cartridge: cartridge.map(Into::into),
        storage: s.service.storage_health().into(),
        control: snap.stats,
        backend: if s.service.sim().is_some() {
            wire::Backend::Sim
        } else {
            wire::Backend::Hardware
        },
    }))
}

/// Telemetry as server-sent events: one `telemetry` event per period, its data a
/// `TelemetryEvent` in JSON.
#[utoipa::path(get, path = "/v1/telemetry", tag = "status",
    responses((status = 200, description = "an endless stream of `telemetry` events whose data is a TelemetryEvent",
        content_type = "text/event-stream", body = String)))]
pub(super) async fn telemetry_stream(
    State(s): State<AppState>,
    Authed(_): Authed,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let control = s.service.clone();
    let period = s.telemetry_period;
    let stream = futures::stream::unfold(tokio::time::interval(period), move |mut tick| {
        let control = control.clone();
        async move {
            tick.tick().await;
            let snap = control.control().snapshot();
            let body = wire::TelemetryEvent {
                telemetry: telemetry(&snap.telemetry),
                session: control.active_session(),
                control: snap.stats,
            };
            let event = SseEvent::default()
                .event("telemetry")
                .json_data(&body)
                .unwrap_or_else(|_| SseEvent::default().event("telemetry").data("{}"));
            Some((Ok(event), tick))
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
