//! The HTTP API (axum): bearer tokens with roles, JSON in and out, errors as
//! `{"error": {"code": "...", "message": "..."}}` with a stable code, telemetry over SSE.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures::Stream;
use needle_core::units::Micros;
use needle_core::Telemetry;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Tokens;
use crate::error::ApiError;
use crate::service::{Actor, CreateSession, MonitorFault, MonitorHealth, Role, Service, Setpoints};
use crate::store::{report_csv, SessionId, MAX_EVENTS_PAGE};

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
    pub version: Arc<Value>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            Json(json!({ "error": { "code": self.code, "message": self.message } })),
        )
            .into_response()
    }
}

/// The caller, from `Authorization: Bearer <token>`.
pub struct Authed(pub Actor);

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::new(401, "unauthorized", "missing bearer token"))?;
        let token = header.strip_prefix("Bearer ").ok_or_else(|| {
            ApiError::new(
                401,
                "unauthorized",
                "expected 'Authorization: Bearer <token>'",
            )
        })?;
        state
            .tokens
            .lookup(token.trim())
            .map(Authed)
            .ok_or_else(|| ApiError::new(401, "unauthorized", "unknown token"))
    }
}

/// A caller with the technician role.
pub struct Technician(pub Actor);

impl FromRequestParts<AppState> for Technician {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Authed(actor) = Authed::from_request_parts(parts, state).await?;
        if actor.role != Role::Technician {
            return Err(ApiError::forbidden("this needs a technician token"));
        }
        Ok(Technician(actor))
    }
}

/// A JSON body whose rejections are API errors with stable codes.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(match e {
                JsonRejection::MissingJsonContentType(_) => ApiError::new(
                    415,
                    "unsupported_media_type",
                    "send Content-Type: application/json",
                ),
                JsonRejection::JsonSyntaxError(e) => {
                    ApiError::bad_request("invalid_json", e.body_text())
                }
                JsonRejection::JsonDataError(e) => {
                    ApiError::bad_request("invalid_request", e.body_text())
                }
                JsonRejection::BytesRejection(e) => {
                    ApiError::new(413, "body_too_large", e.body_text())
                }
                other => ApiError::bad_request("invalid_request", other.body_text()),
            }),
        }
    }
}

/// The body of an endpoint that takes none: any body at all is refused (400
/// `unexpected_body`) before the handler acts, so a request meant for another endpoint, or a
/// `{"dry_run": true}` the API does not know, never moves the needles.
pub struct NoBody;

impl<S: Send + Sync> FromRequest<S> for NoBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let body = axum::body::Bytes::from_request(req, state).await.map_err(
            |e: BytesRejection| match e.status().as_u16() {
                413 => ApiError::new(413, "body_too_large", e.body_text()),
                _ => ApiError::bad_request("invalid_request", e.body_text()),
            },
        )?;
        if body.is_empty() {
            Ok(NoBody)
        } else {
            Err(ApiError::bad_request(
                "unexpected_body",
                "this endpoint takes no request body",
            ))
        }
    }
}

/// A path parameter whose rejection is an API error (`invalid_path`), not axum's plain text.
pub struct Param<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Param<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(Param(v)),
            Err(e) => Err(ApiError::bad_request("invalid_path", e.body_text())),
        }
    }
}

/// A query string whose rejection is an API error (`invalid_query`), not axum's plain text.
pub struct QueryOf<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for QueryOf<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(QueryOf(v)),
            Err(e) => Err(ApiError::bad_request("invalid_query", e.body_text())),
        }
    }
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/status", get(status))
        .route("/v1/version", get(version))
        .route("/v1/telemetry", get(telemetry))
        .route("/v1/home", post(home))
        .route("/v1/faults/clear", post(clear_faults))
        .route("/v1/sessions", post(create_session))
        .route("/v1/sessions/{id}", get(get_session))
        .route("/v1/sessions/{id}/cartridge", post(bind_cartridge))
        .route("/v1/sessions/{id}/arm", post(arm))
        .route("/v1/sessions/{id}/start", post(start))
        .route("/v1/sessions/{id}/pause", post(pause))
        .route("/v1/sessions/{id}/end", post(end))
        .route("/v1/sessions/{id}/setpoints", put(setpoints))
        .route("/v1/sessions/{id}/report", get(report))
        .route("/v1/cartridges/{id}", get(cartridge))
        .route("/v1/lots/{lot}/recall", post(recall))
        .route("/v1/events", get(events))
        .route("/v1/sim/truth", get(sim_truth))
        .route("/v1/sim/ticks", get(sim_ticks))
        .route("/v1/sim/inject", post(sim_inject))
        .merge(crate::console::router())
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                405,
                "method_not_allowed",
                "this endpoint does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn health(State(s): State<AppState>) -> Json<Value> {
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

fn telemetry_json(t: &Telemetry) -> Value {
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

async fn version(State(s): State<AppState>, Authed(_): Authed) -> Json<Value> {
    Json((*s.version).clone())
}

async fn status(State(s): State<AppState>, Authed(_): Authed) -> Result<Json<Value>, ApiError> {
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

async fn telemetry(
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reason {
    reason: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OptionalReason {
    #[serde(default)]
    reason: Option<String>,
}

async fn home(
    State(s): State<AppState>,
    Authed(a): Authed,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    s.service.home(&a).await?;
    Ok(Json(json!({ "ok": true })))
}

async fn clear_faults(
    State(s): State<AppState>,
    Authed(a): Authed,
    Body(r): Body<Reason>,
) -> Result<Json<Value>, ApiError> {
    s.service.clear_faults(&a, &r.reason).await?;
    Ok(Json(json!({ "ok": true })))
}

async fn create_session(
    State(s): State<AppState>,
    Authed(a): Authed,
    Body(req): Body<CreateSession>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let record = s.service.create_session(&a, req).await?;
    Ok((StatusCode::CREATED, Json(json!(record))))
}

async fn get_session(
    State(s): State<AppState>,
    Authed(_): Authed,
    Param(id): Param<SessionId>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(s.service.session(id).await?)))
}

async fn bind_cartridge(
    State(s): State<AppState>,
    Authed(a): Authed,
    Param(id): Param<SessionId>,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(s.service.bind_cartridge(&a, id).await?)))
}

async fn arm(
    State(s): State<AppState>,
    Authed(a): Authed,
    Param(id): Param<SessionId>,
    Body(set): Body<Setpoints>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(s.service.arm(&a, id, set).await?)))
}

async fn start(
    State(s): State<AppState>,
    Authed(a): Authed,
    Param(id): Param<SessionId>,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(s.service.start(&a, id).await?)))
}

async fn pause(
    State(s): State<AppState>,
    Authed(a): Authed,
    Param(id): Param<SessionId>,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(s.service.pause(&a, id).await?)))
}

async fn end(
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

async fn setpoints(
    State(s): State<AppState>,
    Authed(a): Authed,
    Param(id): Param<SessionId>,
    Body(set): Body<Setpoints>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(s.service.set_setpoints(&a, id, set).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    #[serde(default)]
    format: Option<String>,
}

async fn report(
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
            report_csv(&report),
        )
            .into_response()),
        other => Err(ApiError::bad_request(
            "invalid_format",
            format!("format '{other}': expected json or csv"),
        )),
    }
}

async fn cartridge(
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

async fn recall(
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
struct EventsQuery {
    #[serde(default)]
    after: i64,
    #[serde(default)]
    limit: Option<u32>,
}

async fn events(
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

fn sim(s: &AppState) -> Result<&crate::hal::sim::SimBackend, ApiError> {
    s.service
        .sim()
        .ok_or_else(|| ApiError::not_found("the sim endpoints exist only on the sim backend"))
}

async fn sim_truth(
    State(s): State<AppState>,
    Technician(_): Technician,
) -> Result<Json<Value>, ApiError> {
    let t = sim(&s)?.rig.truth();
    Ok(Json(json!({
        "sim_time_us": t.now.0,
        "depth_um": t.depth_um,
        "rate_hz": t.rate_hz,
        "strokes": t.strokes,
        "motor_powered": t.motor_powered,
        "duty": t.duty,
        "current_a": t.current_a,
        "temperature_c": t.temperature_c,
        "supply_v": t.supply_v,
        "motor_off_at_us": t.motor_off_at.map(|m| m.0),
        "cartridge_seated": sim(&s)?.rig.cartridge_seated(),
        "ticks": sim(&s)?.rig.ticks(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TicksQuery {
    after_us: u64,
    until_us: u64,
}

/// The control ticks the rig saw in `(after_us, until_us]` of sim time: jigs judge a reaction
/// against the control thread's own schedule with it ("off in the first tick after the
/// press"), which holds on a busy machine where wall-clock limits do not.
async fn sim_ticks(
    State(s): State<AppState>,
    Technician(_): Technician,
    QueryOf(q): QueryOf<TicksQuery>,
) -> Result<Json<Value>, ApiError> {
    if q.until_us < q.after_us {
        return Err(ApiError::bad_request(
            "invalid_query",
            "until_us must not be before after_us",
        ));
    }
    let rig = &sim(&s)?.rig;
    match rig.ticks_between(Micros(q.after_us), Micros(q.until_us)) {
        Some(n) => Ok(Json(json!({ "ticks": n }))),
        None => Err(ApiError::new(
            409,
            "ticks_forgotten",
            format!(
                "the rig keeps the last {} ticks; {} us is older",
                needle_sim::TICKS_KEPT,
                q.after_us
            ),
        )),
    }
}

/// A sim control, as a technician or jig sends it.
#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
enum SimAction {
    SeatCartridge {
        tag_hex: Option<String>,
    },
    /// Seat a fresh cartridge whose tag the service signs with its own key (sim only: a jig
    /// or the console need not hold the device key). Every field has a default.
    SeatNewCartridge {
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        lot: Option<String>,
        #[serde(default)]
        needles: Option<crate::tag::Needles>,
        #[serde(default)]
        expiry: Option<crate::tag::Date>,
    },
    PullCartridge,
    Estop {
        pressed: bool,
    },
    Pedal {
        pressed: bool,
    },
    Jam {
        on: bool,
    },
    Heat {
        temperature_c: f64,
    },
    Brownout {
        on: bool,
    },
    SensorDropout {
        on: bool,
    },
    StuckHomeSwitch {
        closed: Option<bool>,
    },
    /// Cut (`on`) or restore the host link: the service stops refreshing the dead-man.
    HostSilence {
        on: bool,
    },
    /// Block every async worker for `ms` (a deadlock or a very slow fsync, as the service
    /// would suffer it), to prove the dead-man's progress check.
    StallService {
        ms: u64,
    },
    /// Make every cartridge tag read take `ms` (a slow I2C bus; 0 restores it).
    SlowTag {
        ms: u64,
    },
    /// Make every ledger write wait `ms` before it starts (a slow fsync; 0 restores it).
    SlowLedger {
        ms: u64,
    },
    /// Make ledger writes fail: `write` as on a full disk, `fsync` as when the WAL's fsync
    /// fails at commit; `off` lets them succeed again.
    StorageFail {
        mode: StorageFailMode,
    },
    /// Make the service's next monitor pass panic (the dead-man must stop the needles).
    PanicMonitor,
    /// Make the service's next monitor pass hang for `ms` while the rest of the runtime
    /// carries on (a deadlock in the monitor alone).
    StallMonitor {
        ms: u64,
    },
    /// Step the wall clock the service records with by `ms` (an NTP step), at most 30 days
    /// either way.
    StepWallClock {
        ms: i64,
    },
    /// Make the service's next `times` disarms fail, as a full command queue would.
    FailDisarm {
        times: u32,
    },
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StorageFailMode {
    Off,
    Write,
    Fsync,
}

fn at_most_10s(ms: u64) -> Result<Duration, ApiError> {
    if ms > 10_000 {
        return Err(ApiError::bad_request(
            "invalid_request",
            "ms must be at most 10000",
        ));
    }
    Ok(Duration::from_millis(ms))
}

async fn sim_inject(
    State(s): State<AppState>,
    Technician(a): Technician,
    Body(action): Body<SimAction>,
) -> Result<Json<Value>, ApiError> {
    use needle_sim::Injection;
    let backend = sim(&s)?;
    let applied_at = match &action {
        SimAction::SeatCartridge { tag_hex } => {
            let image = match tag_hex {
                Some(h) => Some(crate::tag::from_hex(h)?),
                None => None,
            };
            backend.seat_cartridge(image)
        }
        SimAction::SeatNewCartridge {
            id,
            lot,
            needles,
            expiry,
        } => {
            let image = s
                .service
                .sim_tag(id.clone(), lot.clone(), *needles, *expiry)?;
            backend.seat_cartridge(Some(image))
        }
        SimAction::PullCartridge => backend.pull_cartridge(),
        SimAction::Estop { pressed } => backend.rig.inject(Injection::EStop(*pressed)),
        SimAction::Pedal { pressed } => backend.rig.inject(Injection::Pedal(*pressed)),
        SimAction::Jam { on } => backend.rig.inject(Injection::Jam(*on)),
        SimAction::Heat { temperature_c } => {
            if !temperature_c.is_finite() || !(-40.0..=200.0).contains(temperature_c) {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "temperature_c must be -40..=200",
                ));
            }
            backend.rig.inject(Injection::Overheat(*temperature_c))
        }
        SimAction::Brownout { on } => backend.rig.inject(Injection::BrownOut(*on)),
        SimAction::SensorDropout { on } => backend.rig.inject(Injection::SensorDropout(*on)),
        SimAction::StuckHomeSwitch { closed } => {
            backend.rig.inject(Injection::StuckHomeSwitch(*closed))
        }
        SimAction::HostSilence { on } => backend.rig.inject(Injection::HostSilence(*on)),
        SimAction::SlowTag { ms } => {
            at_most_10s(*ms)?;
            backend.tag.set_read_delay_ms(*ms);
            backend.rig.now()
        }
        SimAction::SlowLedger { ms } => {
            at_most_10s(*ms)?;
            if let Some(f) = s.service.write_faults() {
                f.set_delay_ms(*ms);
            }
            backend.rig.now()
        }
        SimAction::StorageFail { mode } => {
            if let Some(f) = s.service.write_faults() {
                f.set_mode(match mode {
                    StorageFailMode::Off => crate::store::FailMode::Off,
                    StorageFailMode::Write => crate::store::FailMode::Write,
                    StorageFailMode::Fsync => crate::store::FailMode::Fsync,
                });
            }
            backend.rig.now()
        }
        SimAction::StallService { ms } => {
            let stall = at_most_10s(*ms)?;
            // One blocking task per worker: none can run the progress stamp until they end.
            for _ in 0..tokio::runtime::Handle::current().metrics().num_workers() {
                tokio::spawn(async move { std::thread::sleep(stall) });
            }
            backend.rig.now()
        }
        SimAction::PanicMonitor => {
            s.service.sim_break_monitor(MonitorFault::Panic)?;
            backend.rig.now()
        }
        SimAction::StallMonitor { ms } => {
            s.service
                .sim_break_monitor(MonitorFault::Stall(at_most_10s(*ms)?))?;
            backend.rig.now()
        }
        SimAction::StepWallClock { ms } => {
            if ms.unsigned_abs() > 30 * 86_400_000 {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "ms must be within 30 days either way",
                ));
            }
            s.service.sim_step_wall_clock(*ms)?;
            backend.rig.now()
        }
        SimAction::FailDisarm { times } => {
            if *times > 1_000 {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "times must be at most 1000",
                ));
            }
            s.service.sim_fail_disarms(*times)?;
            backend.rig.now()
        }
    };
    tracing::info!(actor = %a.name, ?action, "sim injection");
    // The sim time it was applied at, read under the same lock: jigs time reactions from it.
    Ok(Json(json!({ "ok": true, "applied_at_us": applied_at.0 })))
}
