//! The `Host` check: every request (API and console) must name this service by one of the
//! configured names, so a page whose DNS name was rebound to the rig's address cannot use the
//! API from a browser on the rig or the bench network. A foreign or missing Host gets 421
//! `host_not_allowed` and reaches no handler.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::ServiceConfig;
use crate::error::ApiError;

/// The names the Host header may carry (lower case, without port).
#[derive(Debug, Clone)]
pub struct AllowedHosts(Arc<BTreeSet<String>>);

impl AllowedHosts {
    /// The loopback names, the bind address and `service.allowed_hosts`.
    pub fn from_config(service: &ServiceConfig) -> Self {
        let mut names: BTreeSet<String> = ["localhost", "127.0.0.1", "::1"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        names.insert(service.bind.ip().to_string());
        for h in &service.allowed_hosts {
            names.insert(strip_brackets(&h.to_ascii_lowercase()).to_owned());
        }
        AllowedHosts(Arc::new(names))
    }

    /// Every allowed name, for the log and the certificate's names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Whether a `Host` value (`name`, `name:port`, `[v6]:port`) is allowed.
    pub fn allows(&self, host: &str) -> bool {
        host_name(host).is_some_and(|name| self.0.contains(&name.to_ascii_lowercase()))
    }
}

fn strip_brackets(s: &str) -> &str {
    s.strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s)
}

/// The name of a Host value without its port; `None` if malformed.
fn host_name(host: &str) -> Option<&str> {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        return (after.is_empty() || port(after.strip_prefix(':')?)).then_some(v6);
    }
    match host.rsplit_once(':') {
        // A bare IPv6 address has several colons and no port.
        Some((name, p)) if !name.contains(':') => port(p).then_some(name),
        Some(_) => Some(host),
        None => (!host.is_empty()).then_some(host),
    }
    .filter(|n| !n.is_empty())
}

fn port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// The middleware: refuses a request whose Host (or HTTP/2 authority) is not allowed.
pub async fn check(State(allowed): State<AllowedHosts>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
    match host {
        Some(h) if allowed.allows(&h) => next.run(req).await,
        other => {
            tracing::warn!(host = ?other, "request refused: Host not allowed");
            ApiError::new(
                421,
                crate::error::ErrorCode::HostNotAllowed,
                "this Host is not one of service.allowed_hosts (or loopback, or the bind address)",
            )
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_with_and_without_ports() {
        let service = ServiceConfig {
            bind: "192.168.7.2:7878".parse().unwrap(),
            allowed_hosts: vec!["Pen-7.local".into(), "[fd00::7]".into()],
            ..ServiceConfig::default()
        };
        let a = AllowedHosts::from_config(&service);
        for ok in [
            "localhost",
            "localhost:7878",
            "127.0.0.1:1",
            "[::1]:7878",
            "::1",
            "192.168.7.2:7878",
            "pen-7.local",
            "PEN-7.LOCAL:443",
            "[fd00::7]:7878",
        ] {
            assert!(a.allows(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:7878",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "pen-7.local:x",
            "[::1]x",
            "",
            ":7878",
        ] {
            assert!(!a.allows(refused), "{refused}");
        }
    }
}
