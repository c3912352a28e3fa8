//! The operator web console, served at `/` from assets embedded in the binary.
//!
//! The console is a single page (`assets/index.html`, `console.js`, `console.css`) with the
//! uPlot charting library vendored under `assets/vendor/uplot/` (MIT, its license beside it).
//! Nothing here is built at run or build time: `cargo run -p needled` serves it as it is.
//!
//! The page uses only the public API with the operator's bearer token. The static files need
//! no token (the login form must load), and they carry no data. The one route the console adds
//! to the API is `GET /v1/console/config`: what the page needs to draw its forms (treatment
//! areas with their depth ceilings, the checklist, the time limits, the cartridge budget,
//! every interlock and fault code) and who the caller is, so it can tell an operator that the
//! sim panel needs a technician token before they press a button.
//!
//! Telemetry: `EventSource` cannot send an `Authorization` header, so the page reads
//! `GET /v1/telemetry` with `fetch()` and parses the event stream from its `ReadableStream`;
//! the token never appears in a URL or a log line.

use axum::extract::State;
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use needle_core::protocol::{Fault, Interlock};

use crate::api::{AppState, Authed};
use crate::session::Role;

/// One embedded file: its bytes and content type.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
}

static INDEX: Asset = Asset {
    body: include_bytes!("../assets/index.html"),
    content_type: "text/html; charset=utf-8",
};
static SCRIPT: Asset = Asset {
    body: include_bytes!("../assets/console.js"),
    content_type: "text/javascript; charset=utf-8",
};
static STYLE: Asset = Asset {
    body: include_bytes!("../assets/console.css"),
    content_type: "text/css; charset=utf-8",
};
static UPLOT_JS: Asset = Asset {
    body: include_bytes!("../assets/vendor/uplot/uPlot.iife.min.js"),
    content_type: "text/javascript; charset=utf-8",
};
static UPLOT_CSS: Asset = Asset {
    body: include_bytes!("../assets/vendor/uplot/uPlot.min.css"),
    content_type: "text/css; charset=utf-8",
};
static UPLOT_LICENSE: Asset = Asset {
    body: include_bytes!("../assets/vendor/uplot/LICENSE"),
    content_type: "text/plain; charset=utf-8",
};

/// Only our own origin: no inline script, no third-party anything, no framing.
/// (`style-src 'unsafe-inline'` because uPlot sizes and places its canvas with inline styles.)
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data: blob:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

impl IntoResponse for &'static Asset {
    fn into_response(self) -> Response {
        (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(self.content_type),
                ),
                // The files change with the binary: always revalidate, never serve a stale console.
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
                (
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(CONTENT_SECURITY_POLICY),
                ),
                (
                    HeaderName::from_static("referrer-policy"),
                    HeaderValue::from_static("no-referrer"),
                ),
            ],
            self.body,
        )
            .into_response()
    }
}

/// The console's routes (merged into the API router).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { &INDEX }))
        .route("/index.html", get(|| async { &INDEX }))
        .route("/console/console.js", get(|| async { &SCRIPT }))
        .route("/console/console.css", get(|| async { &STYLE }))
        .route(
            "/console/vendor/uplot/uPlot.iife.min.js",
            get(|| async { &UPLOT_JS }),
        )
        .route(
            "/console/vendor/uplot/uPlot.min.css",
            get(|| async { &UPLOT_CSS }),
        )
        .route(
            "/console/vendor/uplot/LICENSE",
            get(|| async { &UPLOT_LICENSE }),
        )
        .route("/v1/console/config", get(config))
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What the console needs to draw its forms (areas and their depth ceilings, the checklist,
/// the time limits, the cartridge budget, the stroke-rate range, every interlock and fault
/// code), and who is calling.
#[utoipa::path(get, path = "/v1/console/config", operation_id = "console_config", tag = "console",
    responses((status = 200, description = "the console's configuration", body = needle_api::ConsoleConfig)))]
pub(crate) async fn config(
    State(s): State<AppState>,
    Authed(actor): Authed,
) -> Json<needle_api::ConsoleConfig> {
    use needle_api as wire;
    let policy = s.service.policy();
    Json(wire::ConsoleConfig {
        you: wire::ConsoleCaller {
            name: actor.name.clone(),
            role: actor.role,
            technician: actor.role == Role::Technician,
        },
        backend: if s.service.sim().is_some() {
            "sim"
        } else {
            "hardware"
        }
        .to_string(),
        server_time_ms: crate::session::unix_ms(),
        telemetry_period_ms: millis(s.telemetry_period),
        areas: policy
            .areas
            .iter()
            .map(|(name, ceiling)| wire::ConsoleArea {
                name: name.clone(),
                max_depth_um: ceiling.0,
            })
            .collect(),
        checklist: policy
            .checklist
            .iter()
            .map(|c| wire::ConsoleChecklistItem {
                id: c.id.clone(),
                text: c.text.clone(),
                required: c.required,
            })
            .collect(),
        session: wire::ConsoleSessionLimits {
            time_limit_ms: millis(policy.time_limit),
            warning_before_ms: millis(policy.warning_before),
            min_interval_ms: millis(policy.min_interval),
        },
        cartridge: wire::ConsoleCartridgeBudget {
            max_run_ms: policy.limits.max_run_ms,
            max_strokes: policy.limits.max_strokes,
        },
        stroke: wire::ConsoleStrokeRange {
            rate_min_mhz: policy.rate_range.0 .0,
            rate_max_mhz: policy.rate_range.1 .0,
        },
        interlocks: Interlock::ALL
            .iter()
            .map(|i| wire::ConsoleInterlock {
                code: i.code().to_string(),
                reason: i.reason().to_string(),
            })
            .collect(),
        faults: Fault::ALL.iter().map(|f| f.code().to_string()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_embedded_with_its_type() {
        for (asset, starts, kind) in [
            (&INDEX, "<!doctype html>", "text/html"),
            (&SCRIPT, "//", "text/javascript"),
            (&STYLE, "/*", "text/css"),
            (&UPLOT_JS, "", "text/javascript"),
            (&UPLOT_CSS, "", "text/css"),
            (&UPLOT_LICENSE, "The MIT License", "text/plain"),
        ] {
            assert!(!asset.body.is_empty());
            assert!(
                asset.body.starts_with(starts.as_bytes()),
                "{kind} asset starts with {starts:?}"
            );
            assert!(asset.content_type.starts_with(kind));
        }
    }

    #[test]
    fn the_page_loads_only_what_the_router_serves() {
        let page = std::str::from_utf8(INDEX.body).unwrap();
        for path in [
            "/console/console.js",
            "/console/console.css",
            "/console/vendor/uplot/uPlot.iife.min.js",
            "/console/vendor/uplot/uPlot.min.css",
        ] {
            assert!(
                page.contains(&format!("\"{path}\"")),
                "index.html references {path}"
            );
        }
        // No inline script: the content security policy would block it.
        assert!(!page.contains("<script>"), "no inline script");
    }
}
