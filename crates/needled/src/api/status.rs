//! Health, status, version and the SSE telemetry stream.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Json;
use futures::Stream;
use needle_core::Telemetry;
use serde_json::{json, Value};

use super::{AppState, Authed};
use crate::error::ApiError;
use crate::session::MonitorHealth;

pub(super) async fn health(State(s): State<AppState>) -> Json<Value> {
    let alive = s.service.control().is_alive(Duration::from_millis(500));
    let storage = s.service.storage_health();
    let monitor = s.service.monitor_health();
    let status = match monitor {
        _ if !alive => "control_loop_stalled",
        MonitorHealth::Failed => "monitor_failed",
        MonitorHealth::Stalled(_) => "monitor_stalled",
        MonitorHealth::Ok if !storage.ok => "storage_unavailable",
        MonitorHealth::Ok => "ok",
    };
    let mut body = json!({
        "status": status,
        "control_alive": alive,
        "monitor": monitor.code(),
        "storage": storage,
    });
    if let Some(link) = crate::hal::link::health() {
        body["link"] = json!(link);
    }
    Json(body)
}

pub(super) fn telemetry_json(t: &Telemetry) -> Value {
    json!({
        "state": format!("{:?}", t.state),
        "faults": t.faults.iter().map(|f| f.code()).collect::<Vec<_>>(),
        "last_fault": t.last_fault.map(|f| f.code()),
        "interlocks": t.interlocks.iter().map(|i| json!({ "code": i.code(), "reason": i.reason() })).collect::<Vec<_>>(),
        "homed": t.homed,
        "depth": {
            "setpoint_um": t.depth_setpoint.0,
            "position_um": t.depth_position.0,
            "ceiling_um": t.depth_ceiling.0,
            "moving": t.depth_moving,
        },
        "rate": { "setpoint_mhz": t.rate_setpoint.0, "measured_mhz": t.rate_measured.0 },
        "duty_permyriad": t.duty.0,
        "motor_enabled": t.motor_enabled,
        "stroke_count": t.stroke_count,
        "current_ma": t.current.0,
        "temperature_mc": t.temperature.0,
        "supply_mv": t.supply.0,
        "pedal": t.pedal,
        "controller_time_us": t.now.0,
    })
}

pub(super) async fn version(State(s): State<AppState>, Authed(_): Authed) -> Json<Value> {
    Json((*s.version).clone())
}

pub(super) async fn status(
    State(s): State<AppState>,
    Authed(_): Authed,
) -> Result<Json<Value>, ApiError> {
    let snap = s.service.control().snapshot();
    let mut body = telemetry_json(&snap.telemetry);
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
    if let Value::Object(map) = &mut body {
        map.insert("session".into(), json!(session));
        map.insert("cartridge".into(), json!(cartridge));
        map.insert("storage".into(), json!(s.service.storage_health()));
        map.insert("control".into(), json!(snap.stats));
        map.insert(
            "backend".into(),
            json!(if s.service.sim().is_some() {
                "sim"
            } else {
                "hardware"
            }),
        );
    }
    Ok(Json(body))
}

pub(super) async fn telemetry(
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
            let mut body = telemetry_json(&snap.telemetry);
            if let Value::Object(map) = &mut body {
                map.insert("session".into(), json!(control.active_session()));
                map.insert("control".into(), json!(snap.stats));
            }
            let event = SseEvent::default()
                .event("telemetry")
                .data(body.to_string());
            Some((Ok(event), tick))
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
