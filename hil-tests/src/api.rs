//! The service's public HTTP API as a jig uses it: bearer tokens, JSON in and out, errors as
//! `{"error": {"code", "message"}}`. Nothing here reaches around the API. On needle-client:
//! [`Api::client`] gives its typed calls; the JSON calls here serve the scenarios' routes
//! the contract does not type yet and their refusal checks.

use std::time::Duration;

use serde_json::Value;

use crate::error::{HilError, Result};

/// Which token a call carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Runs sessions.
    Operator,
    /// Also recalls lots and drives the sim's controls.
    Technician,
}

/// Where the service is and the tokens to reach it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Base URL, e.g. `http://127.0.0.1:7878`.
    pub base: String,
    /// Operator bearer token.
    pub operator_token: String,
    /// Technician bearer token.
    pub technician_token: String,
}

/// A client of the service's API. Cloning shares the connection pool.
#[derive(Clone)]
pub struct Api {
    endpoint: Endpoint,
    operator: needle_client::Client,
    technician: needle_client::Client,
    anonymous: needle_client::Client,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("base", &self.endpoint.base)
            .finish_non_exhaustive()
    }
}

/// An answer: HTTP status and JSON body (a string value if the body was not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Value,
}

impl Reply {
    /// The error code of an error answer.
    pub fn code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }
}

impl Api {
    /// A client for `endpoint`; each request may take at most `timeout`.
    pub fn new(endpoint: Endpoint, timeout: Duration) -> Self {
        let operator =
            needle_client::Client::with_timeout(&endpoint.base, &endpoint.operator_token, timeout);
        let technician = operator.as_token(&endpoint.technician_token);
        let anonymous = needle_client::Client::anonymous(&endpoint.base)
            .timeout(timeout)
            .build()
            // Only TLS trust can fail to build, and none is asked for here.
            .unwrap_or_else(|_| operator.as_token(""));
        Self {
            endpoint,
            operator,
            technician,
            anonymous,
        }
    }

    /// A client for an `https://` `endpoint` trusted by `tls` (a rig Pi off loopback serves
    /// only TLS, with a self-signed certificate whose fingerprint it logs), or as
    /// [`Api::new`] without it. A trust that cannot be built (a malformed pin, an unreadable
    /// PEM file) is an error here, not a failed call later.
    pub fn with_tls(
        endpoint: Endpoint,
        timeout: Duration,
        tls: Option<needle_client::Tls>,
    ) -> Result<Self, needle_client::Error> {
        let Some(tls) = tls else {
            return Ok(Self::new(endpoint, timeout));
        };
        let operator = needle_client::Client::builder(&endpoint.base, &endpoint.operator_token)
            .timeout(timeout)
            .tls(tls.clone())
            .build()?;
        let technician = operator.as_token(&endpoint.technician_token);
        let anonymous = needle_client::Client::anonymous(&endpoint.base)
            .timeout(timeout)
            .tls(tls)
            .build()?;
        Ok(Self {
            endpoint,
            operator,
            technician,
            anonymous,
        })
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The typed client (needle-client) with the token of `role`.
    pub fn client(&self, role: Role) -> &needle_client::Client {
        match role {
            Role::Operator => &self.operator,
            Role::Technician => &self.technician,
        }
    }

    /// One request; any HTTP status is an answer, only transport failures are errors.
    pub fn call(
        &self,
        role: Option<Role>,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply> {
        let client = role.map_or(&self.anonymous, |r| self.client(r));
        let (status, body) = client
            .call(method, path, body)
            .map_err(|e| HilError::Transport {
                method: method.into(),
                path: path.into(),
                detail: e.to_string(),
            })?;
        Ok(Reply { status, body })
    }

    /// A request that must succeed (2xx); a refusal becomes [`HilError::Api`].
    pub fn ok(&self, role: Role, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let reply = self.call(Some(role), method, path, body)?;
        if (200..300).contains(&reply.status) {
            return Ok(reply.body);
        }
        Err(HilError::Api {
            method: method.into(),
            path: path.into(),
            status: reply.status,
            code: reply.code().unwrap_or("").to_string(),
            message: reply.body["error"]["message"]
                .as_str()
                .map_or_else(|| reply.body.to_string(), str::to_string),
        })
    }

    /// `GET` as the operator.
    pub fn get(&self, path: &str) -> Result<Value> {
        self.ok(Role::Operator, "GET", path, None)
    }

    /// `POST` as the operator.
    pub fn post(&self, path: &str, body: Option<&Value>) -> Result<Value> {
        self.ok(Role::Operator, "POST", path, body)
    }

    /// `PUT` as the operator.
    pub fn put(&self, path: &str, body: &Value) -> Result<Value> {
        self.ok(Role::Operator, "PUT", path, Some(body))
    }

    /// The controller's status (state, faults, homed, moving). Scenarios use it to know what
    /// the controller is doing, never to judge it.
    pub fn status(&self) -> Result<Value> {
        self.get("/v1/status")
    }
}
