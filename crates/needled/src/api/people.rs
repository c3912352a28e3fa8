//! People and their tokens (technicians only): `GET /v1/people`, `POST /v1/people`
//! (answers the new token, once), `POST /v1/people/{name}/revoke`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{AppState, Body, NoBody, Param, Technician};
use crate::auth::{new_token, Tokens};
use crate::error::{ApiError, ErrorCode};
use crate::session::Role;
use crate::store::{token_hash, PeopleError};

/// `POST /v1/people`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewPerson {
    name: String,
    role: Role,
}

fn refused(e: PeopleError) -> ApiError {
    ApiError::new(e.status(), crate::error::known(e.code()), e.to_string())
}

/// Runs `f` on the people off the async runtime (SQLite never runs on an async worker).
async fn with_people<T: Send + 'static>(
    tokens: &Arc<Tokens>,
    f: impl FnOnce(&Tokens) -> Result<T, PeopleError> + Send + 'static,
) -> Result<T, ApiError> {
    let tokens = Arc::clone(tokens);
    tokio::task::spawn_blocking(move || f(&tokens))
        .await
        .map_err(|e| ApiError::new(500, ErrorCode::InternalError, e.to_string()))?
        .map_err(refused)
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

pub(super) async fn list(
    State(s): State<AppState>,
    Technician(_): Technician,
) -> Result<Json<Value>, ApiError> {
    let people = with_people(&s.tokens, |t| t.people()).await?;
    Ok(Json(json!({ "people": people })))
}

pub(super) async fn add(
    State(s): State<AppState>,
    Technician(a): Technician,
    Body(p): Body<NewPerson>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let token = new_token();
    let hash = token_hash(&token);
    let (name, role) = (p.name.clone(), p.role);
    with_people(&s.tokens, move |t| {
        t.add_person(&name, role, &hash, &a.name, now_ms())
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": p.name, "role": p.role, "token": token })),
    ))
}

pub(super) async fn revoke(
    State(s): State<AppState>,
    Technician(a): Technician,
    Param(name): Param<String>,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    let who = name.clone();
    with_people(&s.tokens, move |t| t.revoke_person(&who, &a.name, now_ms())).await?;
    Ok(Json(json!({ "name": name, "revoked": true })))
}
