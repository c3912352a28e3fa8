//! The append-only event log.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A stored event with its sequence number (strictly increasing, never reused).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventRecord {
    /// Position in the log.
    pub seq: i64,
    /// When it happened, unix ms.
    pub at_ms: i64,
    /// Who did it (operator, technician, token name, or `system`).
    pub actor: String,
    /// What happened: `[a-z0-9_]{1,64}`.
    pub kind: String,
    /// The session it concerns, if any.
    pub session_id: Option<i64>,
    /// The cartridge it concerns, if any.
    pub cartridge_id: Option<String>,
    /// Why, if anyone said.
    pub reason: Option<String>,
    /// Anything else, a JSON value whose shape depends on the kind.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// A page of `GET /v1/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Events {
    /// The events after the asked seq, oldest first.
    pub events: Vec<EventRecord>,
}

/// The query of `GET /v1/events`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events with a larger seq (default 0: from the start).
    #[serde(default)]
    pub after: i64,
    /// At most this many (default 100, clamped to 1..=1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}
