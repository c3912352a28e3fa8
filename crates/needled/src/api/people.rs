//! People and their tokens (technicians only): `GET /v1/people`, `POST /v1/people`
//! (answers the new token, once), `POST /v1/people/{name}/revoke`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use needle_api as wire;
use needle_api::NewPerson;

use super::{AppState, Body, NoBody, Param, Technician};
use crate::auth::{new_token, Tokens};
use crate::error::{ApiError, ErrorCode};
use crate::store::{token_hash, PeopleError};

/// The path of `POST /v1/people/{name}/revoke`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // only its documentation is used: the handler takes `Param<String>`
pub(super) struct PersonPath {
    /// The person's name.
    name: String,
}

fn refused(e: PeopleError) -> ApiError {
    ApiError::new(e.status(), e.code(), e.to_string())
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

/// Everyone who holds or held a token (technicians only).
#[utoipa::path(get, path = "/v1/people", operation_id = "list_people", tag = "people",
    responses((status = 200, description = "the people", body = wire::People)))]
pub(super) async fn list(
    State(s): State<AppState>,
    Technician(_): Technician,
) -> Result<Json<wire::People>, ApiError> {
    let people = with_people(&s.tokens, |t| t.people()).await?;
    Ok(Json(wire::People { people }))
}

/// Add a person with a new token, answered this once (technicians only).
#[utoipa::path(post, path = "/v1/people", operation_id = "add_person", tag = "people", request_body = NewPerson,
    responses((status = 201, description = "added: the new token", body = wire::NewToken)))]
pub(super) async fn add(
    State(s): State<AppState>,
    Technician(a): Technician,
    Body(p): Body<NewPerson>,
) -> Result<(StatusCode, Json<wire::NewToken>), ApiError> {
    let token = new_token();
    let hash = token_hash(&token);
    let (name, role) = (p.name.clone(), p.role);
    with_people(&s.tokens, move |t| {
        t.add_person(&name, role, &hash, &a.name, now_ms())
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(wire::NewToken {
            name: p.name,
            role: p.role,
            token,
        }),
    ))
}

/// Revoke a person's token for good (technicians only).
#[utoipa::path(post, path = "/v1/people/{name}/revoke", operation_id = "revoke_person", tag = "people", params(PersonPath),
    responses((status = 200, description = "revoked", body = wire::Revoked)))]
pub(super) async fn revoke(
    State(s): State<AppState>,
    Technician(a): Technician,
    Param(name): Param<String>,
    _: NoBody,
) -> Result<Json<wire::Revoked>, ApiError> {
    let who = name.clone();
    with_people(&s.tokens, move |t| t.revoke_person(&who, &a.name, now_ms())).await?;
    Ok(Json(wire::Revoked {
        name,
        revoked: true,
    }))
}
