//! The operator web console, served at `/` from assets embedded in the binary (issue 4, in
//! progress: no routes yet).

use axum::Router;

use crate::api::AppState;

/// The console's routes (merged into the API router).
pub fn router() -> Router<AppState> {
    Router::new()
}
