//! `needlectl tag`: cartridge tags verified offline against the factory keys a configuration
//! trusts, and tag files read as hex. Making tags is the factory tool's job.

use std::path::Path;

use needled::cartridge::{self, Date};
use serde_json::json;

use crate::cli::TagCmd;
use crate::client;
use crate::failure::{emit, Exit, Failure};
use crate::render;
use crate::Ctx;

/// A tag file's content as hex: hex text is passed on (trimmed), raw bytes (starting with the
/// tag magic `NDLT`) are hex-encoded.
pub(crate) fn tag_hex_of_file(path: &Path) -> Result<String, Failure> {
    let bytes = client::read_input(path, "tag file")?;
    if bytes.starts_with(&cartridge::TAG_MAGIC) {
        return Ok(cartridge::to_hex(&bytes));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        Failure::usage(
            "bad_tag_file",
            format!("{}: neither hex text nor a raw tag", path.display()),
        )
    })?;
    Ok(text.trim().to_string())
}

pub(crate) fn tag_cmd(ctx: &Ctx, cmd: TagCmd) -> Result<(), Failure> {
    match cmd {
        TagCmd::Verify { hex, file, config } => {
            let hex = match (hex, file) {
                (Some(h), _) => h,
                (None, Some(f)) => tag_hex_of_file(&f)?,
                (None, None) => return Err(Failure::usage("no_tag", "give --hex or --file")),
            };
            let cartridge_config = match &config {
                Some(path) => {
                    needled::config::load(path)
                        .map_err(|e| Failure::usage("config_invalid", e.to_string()))?
                        .cartridge
                }
                None => needled::config::CartridgeConfig::default(),
            };
            let trust = cartridge_config.trust_store().map_err(|(key, reason)| {
                Failure::usage("config_invalid", format!("{key}: {reason}"))
            })?;
            let tag = cartridge::parse_hex(&hex, &trust)
                .map_err(|e| Failure::new(Exit::Refused, e.code(), e.to_string()))?;
            let today = Date::from_unix_ms(needled::session::unix_ms());
            let expired = today.is_some_and(|t| tag.expiry() < t);
            let v = json!({
                "authentic": true, "signer_key_id": tag.key_id(),
                "chip_public_key": hex::encode(tag.chip_key()), "id": tag.id(), "lot": tag.lot(), "needles": tag.needles().as_str(),
                "expiry": tag.expiry().to_string(), "expired": expired,
            });
            if ctx.json {
                return emit(&v.to_string());
            }
            let mut kv = render::Kv::new();
            kv.add(
                "tag",
                format!("signature verified (factory key {})", tag.key_id()),
            )
            .add("chip key", hex::encode(tag.chip_key()))
            .add("cartridge", tag.id())
            .add("lot", tag.lot())
            .add("needles", tag.needles().as_str())
            .add(
                "expiry",
                format!(
                    "{}{}",
                    tag.expiry(),
                    if expired { " (EXPIRED)" } else { "" }
                ),
            );
            emit(&kv.render())
        }
    }
}
