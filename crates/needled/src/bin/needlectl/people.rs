//! `needlectl person add|list|revoke`: the people who hold API tokens (technician token).

use clap::Subcommand;
use serde_json::{json, Value};

use crate::client::{self, Api};
use crate::client::{segment, TokenRole};
use crate::failure::Failure;
use crate::render::{self, Table};
use crate::Ctx;

/// `person ...`
#[derive(Debug, Subcommand)]
pub enum PersonCmd {
    /// Add a person with `--role operator|technician`; prints their new token ONCE (only
    /// its SHA-256 is kept): hand it over. Person commands always call with the technician
    /// token, so here `--role` is the new person's role
    Add {
        /// Their name, recorded as the actor of everything they do (never reused)
        name: String,
    },
    /// Everyone, with who added them and whether they are revoked
    List,
    /// Revoke a person's token; everyone else's keeps working
    Revoke {
        /// Their name
        name: String,
    },
}

/// Runs a `person` command with the technician token.
pub fn person(ctx: &Ctx, cmd: PersonCmd) -> Result<(), Failure> {
    let token =
        client::resolve_token(ctx.token.as_deref(), &ctx.token_file, TokenRole::Technician)?;
    let api = Api::new(
        client::base_url(ctx.url.as_deref())?,
        ctx.timeout,
        Some(token),
    );
    match cmd {
        PersonCmd::Add { name } => {
            let role = match ctx.role {
                Some(TokenRole::Operator) => "operator",
                Some(TokenRole::Technician) => "technician",
                None => {
                    return Err(Failure::usage(
                        "missing_role",
                        "person add needs --role operator or --role technician",
                    ))
                }
            };
            let reply = api.post("/v1/people", Some(&json!({ "name": name, "role": role })))?;
            ctx.show(&reply, |v| {
                format!(
                    "added {} ({}). Their token, shown this once:\n{}",
                    render::text(&v["name"]),
                    render::text(&v["role"]),
                    render::text(&v["token"])
                )
            })
        }
        PersonCmd::List => ctx.show(&api.get("/v1/people")?, list),
        PersonCmd::Revoke { name } => {
            let reply = api.post(&format!("/v1/people/{}/revoke", segment(&name)), None)?;
            ctx.show(&reply, |_| format!("revoked {name}"))
        }
    }
}

/// `needlectl tls-fingerprint`: the SHA-256 of the first certificate of a PEM file.
pub fn tls_fingerprint(ctx: &Ctx, cert: &std::path::Path) -> Result<(), Failure> {
    let fp =
        needled::tls::file_fingerprint(cert).map_err(|e| Failure::usage("bad_cert_file", e))?;
    if ctx.json {
        crate::failure::emit(
            &json!({ "cert": cert.display().to_string(), "sha256": fp }).to_string(),
        )
    } else {
        crate::failure::emit(&fp)
    }
}

fn list(v: &Value) -> String {
    let mut table = Table::new(&["NAME", "ROLE", "ADDED", "BY", "REVOKED", "BY"]);
    for p in v["people"].as_array().into_iter().flatten() {
        table.row(vec![
            render::text(&p["name"]),
            render::text(&p["role"]),
            render::time(&p["created_at_ms"]),
            render::text(&p["created_by"]),
            render::time(&p["revoked_at_ms"]),
            render::text(&p["revoked_by"]),
        ]);
    }
    table.render(true)
}
