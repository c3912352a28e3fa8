//! Request extractors: who is calling, and the body, path and query; each refusal has a
//! stable code.

use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::Json;
use serde::de::DeserializeOwned;

use super::AppState;
use crate::error::{ApiError, ErrorCode};
use crate::session::{Actor, Role};

/// The caller, from `Authorization: Bearer <token>`.
pub struct Authed(pub Actor);

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::new(401, ErrorCode::Unauthorized, "missing bearer token"))?;
        let token = header.strip_prefix("Bearer ").ok_or_else(|| {
            ApiError::new(
                401,
                ErrorCode::Unauthorized,
                "expected 'Authorization: Bearer <token>'",
            )
        })?;
        state
            .tokens
            .lookup(token.trim())
            .map(Authed)
            // Unknown and revoked tokens alike: a caller learns nothing about who was revoked.
            .ok_or_else(|| {
                ApiError::new(401, ErrorCode::Unauthorized, "unknown token (or revoked)")
            })
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

/// A JSON body whose rejections are API errors with stable codes. Every request body of the
/// API is a JSON object: serde would also read a struct from an array of its fields in order
/// (`[]` for a body whose fields all have defaults), which the contract does not allow, so
/// anything but an object is refused (400 `invalid_request`).
pub struct Body<T>(pub T);

/// Whether the request says its body is JSON (`application/json` or `application/*+json`).
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The first byte of a JSON text that is not white space.
pub(super) fn first_token(bytes: &[u8]) -> Option<u8> {
    bytes.iter().copied().find(|b| !b.is_ascii_whitespace())
}

/// A refusal of a body that parsed but is not a JSON object.
pub(super) fn not_an_object() -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidRequest, "a request body is a JSON object")
}

/// A refusal of a request body that could not be read.
pub(super) fn unreadable(e: BytesRejection) -> ApiError {
    match e.status().as_u16() {
        413 => ApiError::new(413, ErrorCode::BodyTooLarge, e.body_text()),
        _ => ApiError::bad_request(ErrorCode::InvalidRequest, e.body_text()),
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !json_content_type(req.headers()) {
            return Err(ApiError::new(
                415,
                ErrorCode::UnsupportedMediaType,
                "send Content-Type: application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(unreadable)?;
        let value = match Json::<T>::from_bytes(&bytes) {
            Ok(Json(v)) => v,
            Err(e) => {
                return Err(match e {
                    JsonRejection::JsonSyntaxError(e) => {
                        ApiError::bad_request(ErrorCode::InvalidJson, e.body_text())
                    }
                    other => ApiError::bad_request(ErrorCode::InvalidRequest, other.body_text()),
                })
            }
        };
        if first_token(&bytes) != Some(b'{') {
            return Err(not_an_object());
        }
        Ok(Body(value))
    }
}

/// The body of an endpoint that takes none: any body at all is refused (400
/// `unexpected_body`) before the handler acts, so a request meant for another endpoint, or a
/// `{"dry_run": true}` the API does not know, never moves the needles.
pub struct NoBody;

impl<S: Send + Sync> FromRequest<S> for NoBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(unreadable)?;
        if body.is_empty() {
            Ok(NoBody)
        } else {
            Err(ApiError::bad_request(
                ErrorCode::UnexpectedBody,
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
            Err(e) => Err(ApiError::bad_request(ErrorCode::InvalidPath, e.body_text())),
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
            Err(e) => Err(ApiError::bad_request(
                ErrorCode::InvalidQuery,
                e.body_text(),
            )),
        }
    }
}
