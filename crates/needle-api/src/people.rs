//! People and their API tokens (technicians only).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Roles of API tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs sessions.
    Operator,
    /// Everything an operator does, plus overrides, recalls, plans, people and the sim
    /// controls.
    Technician,
}

/// One person as listed (never their token or its hash; the ledger lists this type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Person {
    /// Unique name, recorded as the actor of their calls.
    pub name: String,
    /// Their role.
    pub role: Role,
    /// When they were added, unix ms.
    pub created_at_ms: i64,
    /// The technician (or `bootstrap`) who added them.
    pub created_by: String,
    /// When their token was revoked, unix ms.
    pub revoked_at_ms: Option<i64>,
    /// Who revoked it.
    pub revoked_by: Option<String>,
}

/// Everyone who holds or held a token (`GET /v1/people`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct People {
    /// The people.
    pub people: Vec<Person>,
}

/// A request to add a person (`POST /v1/people`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPerson {
    /// Unique name (never reused, not `system` or `bootstrap`).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub name: String,
    /// Their role.
    pub role: Role,
}

/// A person added, with their new token: shown this once, stored only as its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewToken {
    /// Their name.
    pub name: String,
    /// Their role.
    pub role: Role,
    /// The bearer token.
    pub token: String,
}

/// A person's token revoked (`POST /v1/people/{name}/revoke`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Revoked {
    /// Their name.
    pub name: String,
    /// Always true.
    pub revoked: bool,
}
