//! `needlectl tag`: cartridge tags made and verified offline with the device key, and tag
//! files read as hex.

use std::path::Path;

use needled::cartridge::{self, Date, DeviceKey, TagData};
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

/// Loads the device key; creates it only when asked to.
pub(crate) fn device_key(path: &Path, create: bool) -> Result<DeviceKey, Failure> {
    if !create && !path.exists() {
        return Err(Failure::usage("no_device_key", format!("device key file {} does not exist", path.display())).hint(
            "needled creates it in its data directory on first start: pass --key-file <data-dir>/device.key",
        ));
    }
    DeviceKey::load_or_create(path).map_err(|e| {
        Failure::usage(
            "bad_device_key",
            format!("device key {}: {e}", path.display()),
        )
    })
}

pub(crate) fn tag_cmd(ctx: &Ctx, cmd: TagCmd) -> Result<(), Failure> {
    match cmd {
        TagCmd::Make {
            id,
            lot,
            needles,
            expiry,
            key_file,
            create_key,
            output,
        } => {
            let data = TagData::new(id, lot, needles.into(), expiry)
                .map_err(|e| Failure::usage(e.code(), e.to_string()))?;
            let key = device_key(&key_file, create_key)?;
            let hex = cartridge::to_hex(&cartridge::encode(&data, &key));
            let described = json!({
                "hex": hex, "id": data.id(), "lot": data.lot(),
                "needles": data.needles().as_str(), "expiry": data.expiry().to_string(),
            });
            if let Some(file) = &output {
                std::fs::write(file, format!("{hex}\n")).map_err(|e| {
                    Failure::local(
                        "output_failed",
                        format!("cannot write the tag to {}: {e}", file.display()),
                    )
                })?;
            }
            match (ctx.json, &output) {
                (true, _) => emit(&described.to_string()),
                (false, None) => emit(&hex),
                (false, Some(file)) => emit(&format!(
                    "tag {} (lot {}, {}, expires {}) written to {}",
                    data.id(),
                    data.lot(),
                    data.needles(),
                    data.expiry(),
                    file.display()
                )),
            }
        }
        TagCmd::Verify {
            hex,
            file,
            key_file,
        } => {
            let hex = match (hex, file) {
                (Some(h), _) => h,
                (None, Some(f)) => tag_hex_of_file(&f)?,
                (None, None) => return Err(Failure::usage("no_tag", "give --hex or --file")),
            };
            let key = device_key(&key_file, false)?;
            let tag = cartridge::parse_hex(&hex, &key)
                .map_err(|e| Failure::new(Exit::Refused, e.code(), e.to_string()))?;
            let today = Date::from_unix_ms(needled::session::unix_ms());
            let expired = today.is_some_and(|t| tag.expiry() < t);
            let v = json!({
                "authentic": true, "id": tag.id(), "lot": tag.lot(), "needles": tag.needles().as_str(),
                "expiry": tag.expiry().to_string(), "expired": expired,
            });
            if ctx.json {
                return emit(&v.to_string());
            }
            let mut kv = render::Kv::new();
            kv.add(
                "tag",
                format!("authentic (signed with {})", key_file.display()),
            )
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
