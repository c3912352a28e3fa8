//! `needle-factory`: the factory's cartridge tool. It runs in the factory, never on a pen:
//! pens hold factory public keys only (`[cartridge.trusted_keys]`).
//!
//! - `keygen --id ID --out FILE`: a new P-256 factory signing key, written to FILE (mode
//!   0600, never overwritten); prints the public key line for a pen's configuration.
//! - `provision --key FILE --id .. --lot .. --needles .. --expiry ..`: one cartridge: a fresh
//!   chip key and the tag signed with the factory key. Prints the tag hex and the chip's
//!   private key hex: on a real ATECC608 the chip generates its key itself (GenKey) and only
//!   its public key leaves it; here the key is for the sim chip and test fixtures.
//!   With `--chip-public-key HEX` (a real chip's key, read at the factory after GenKey: 64
//!   bytes X‖Y, or SEC1) no key is made: it prints the tag signed for that chip and the
//!   256-byte image to write into the chip's data slot 8 (blocks 0–7) before the data zone
//!   is locked, as the pen's ATECC608 driver reads it.
//! - `inspect --hex .. [--trust ID=PUBHEX ..]`: parses a tag, verifies it if the signer is
//!   given, and prints its fields.
//!
//! Tag format and signing are `needled::cartridge` (`tag.rs`, `factory.rs`): one format,
//! shared with the pens.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use needled::cartridge::{self, Date, FactoryKey, Needles, TagData, TrustStore};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(
    name = "needle-factory",
    about = "Factory keys and cartridge provisioning (never on a pen)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create a factory signing key; print its public key for pens' configurations
    Keygen {
        /// Key id, 1 to 16 of A-Z a-z 0-9 - (named in every tag it signs)
        #[arg(long)]
        id: String,
        /// Where to write the private key (created 0600; an existing file is never replaced)
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Provision one cartridge: a chip key and its tag signed with the factory key
    Provision {
        /// The factory key file (from keygen)
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Cartridge id
        #[arg(long)]
        id: String,
        /// Production lot
        #[arg(long)]
        lot: String,
        /// Needle configuration: pins12, pins24, pins36, pins42 or nano
        #[arg(long)]
        needles: String,
        /// Last day of use, YYYY-MM-DD
        #[arg(long, value_name = "YYYY-MM-DD")]
        expiry: String,
        /// A real chip's public key (hex: 64 bytes X‖Y from GenKey, or SEC1): sign the tag
        /// for it and print the slot image instead of making a chip key
        #[arg(long, value_name = "HEX")]
        chip_public_key: Option<String>,
    },
    /// Parse a tag and show it; with --trust, verify its signature
    Inspect {
        /// The tag as hex
        #[arg(long, value_name = "HEX")]
        hex: String,
        /// A trusted key as ID=PUBLIC-KEY-HEX (repeatable)
        #[arg(long, value_name = "ID=HEX")]
        trust: Vec<String>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().cmd) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("needle-factory: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd) -> Result<String, String> {
    match cmd {
        Cmd::Keygen { id, out } => {
            let key = FactoryKey::generate(&id).map_err(|e| e.to_string())?;
            write_new_private(&out, &format!("{id} {}\n", hex::encode(key.secret())))?;
            Ok(format!(
                "# add to every pen's needled.toml under [cartridge.trusted_keys]:\n\"{id}\" = \"{}\"",
                hex::encode(key.public_key())
            ))
        }
        Cmd::Provision {
            key,
            id,
            lot,
            needles,
            expiry,
            chip_public_key,
        } => {
            let factory = read_key(&key)?;
            let needles: Needles = needles
                .parse()
                .map_err(|e: cartridge::TagError| e.to_string())?;
            let expiry: Date = expiry
                .parse()
                .map_err(|e: cartridge::DateError| e.to_string())?;
            let data = TagData::new(id, lot, needles, expiry).map_err(|e| e.to_string())?;
            if let Some(public) = chip_public_key {
                return for_real_chip(&data, &factory, &public);
            }
            let made = cartridge::provision(&data, &factory).map_err(|e| e.to_string())?;
            Ok(json!({
                "tag_hex": made.tag_hex(),
                "chip_secret_hex": made.chip_secret_hex(),
                "signer_key_id": factory.id(),
            })
            .to_string())
        }
        Cmd::Inspect { hex: text, trust } => inspect(&text, &trust),
    }
}

/// The tag of `data` signed for the real chip whose public key is `public` (hex), and the image
/// of the chip's tag slot.
fn for_real_chip(data: &TagData, factory: &FactoryKey, public: &str) -> Result<String, String> {
    let bytes = hex::decode(public.trim()).map_err(|_| "--chip-public-key: not hex".to_owned())?;
    let chip_key = cartridge::chip_key_from_public(&bytes).ok_or_else(|| {
        "--chip-public-key: not a P-256 public key (64 bytes X||Y, or SEC1 33/65 bytes)".to_owned()
    })?;
    let tag = factory
        .sign_tag(data, &chip_key)
        .map_err(|e| e.to_string())?;
    Ok(json!({
        "tag_hex": hex::encode(&tag),
        "chip_public_key": hex::encode(chip_key),
        "signer_key_id": factory.id(),
        "slot": 8,
        "slot_image_hex": hex::encode(cartridge::image_of(&tag)),
    })
    .to_string())
}

/// A tag's fields, verified when its signer is among `trust` (`ID=HEX`).
fn inspect(text: &str, trust: &[String]) -> Result<String, String> {
    let mut store = TrustStore::new();
    for entry in trust {
        let (id, key) = entry
            .split_once('=')
            .ok_or_else(|| format!("--trust {entry:?}: expected ID=HEX"))?;
        let key = hex::decode(key.trim()).map_err(|_| format!("--trust {id}: not hex"))?;
        store
            .trust(id, &key)
            .map_err(|e| format!("--trust {id}: {e}"))?;
    }
    let tag = cartridge::parse_hex(text, &store).map_err(|e| format!("{} ({e})", e.code()))?;
    Ok(json!({
        "verified": true,
        "signer_key_id": tag.key_id(),
        "chip_public_key": hex::encode(tag.chip_key()),
        "id": tag.id(),
        "lot": tag.lot(),
        "needles": tag.needles().as_str(),
        "expiry": tag.expiry().to_string(),
    })
    .to_string())
}

/// The factory key in `path` (`ID HEX`, as keygen writes it).
fn read_key(path: &Path) -> Result<FactoryKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut words = text.split_whitespace();
    let (Some(id), Some(secret), None) = (words.next(), words.next(), words.next()) else {
        return Err(format!("{}: expected \"ID HEX\"", path.display()));
    };
    let secret =
        hex::decode(secret).map_err(|_| format!("{}: the key is not hex", path.display()))?;
    FactoryKey::from_secret(id, &secret).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes `contents` to a new file readable by its owner only; refuses an existing file.
fn write_new_private(path: &Path, contents: &str) -> Result<(), String> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_provision_inspect_round_trip_and_the_key_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("f.key");
        let printed = run(Cmd::Keygen {
            id: "fab-1".into(),
            out: key.clone(),
        })
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // keygen never replaces a key.
        assert!(run(Cmd::Keygen {
            id: "fab-1".into(),
            out: key.clone()
        })
        .is_err());
        let public = printed
            .lines()
            .last()
            .unwrap()
            .split('"')
            .nth(3)
            .unwrap()
            .to_owned();
        let made: serde_json::Value = serde_json::from_str(
            &run(Cmd::Provision {
                key,
                id: "C-9".into(),
                lot: "L-9".into(),
                needles: "pins24".into(),
                expiry: "2030-01-31".into(),
                chip_public_key: None,
            })
            .unwrap(),
        )
        .unwrap();
        let hex = made["tag_hex"].as_str().unwrap();
        let shown: serde_json::Value =
            serde_json::from_str(&inspect(hex, &[format!("fab-1={public}")]).unwrap()).unwrap();
        assert_eq!(shown["id"], "C-9");
        assert_eq!(shown["signer_key_id"], "fab-1");
        // Without the signer's key the tag is not verified.
        assert!(inspect(hex, &[])
            .unwrap_err()
            .starts_with("tag_signer_unknown"));
    }

    #[test]
    fn provision_for_a_real_chip_signs_its_public_key_and_prints_the_slot_image() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("f.key");
        let printed = run(Cmd::Keygen {
            id: "fab-2".into(),
            out: key.clone(),
        })
        .unwrap();
        let public = printed.lines().last().unwrap().split('"').nth(3).unwrap();
        // Some chip's public key (here a sim cartridge's, read from its tag; the 64-byte
        // GenKey form is covered by `chip_key_from_public`'s own test).
        let made = cartridge::provision_test(
            &TagData::new("C-R", "L-R", Needles::Pins12, "2030-01-01".parse().unwrap()).unwrap(),
        )
        .unwrap();
        let test_key = cartridge::test_factory_key();
        let mut trust = TrustStore::new();
        trust.trust(test_key.id(), &test_key.public_key()).unwrap();
        let chip_key = *cartridge::parse(&made.tag, &trust).unwrap().chip_key();
        let provision = |public: &str| {
            run(Cmd::Provision {
                key: key.clone(),
                id: "C-REAL".into(),
                lot: "L-1".into(),
                needles: "pins36".into(),
                expiry: "2031-06-30".into(),
                chip_public_key: Some(public.into()),
            })
        };
        let out: serde_json::Value =
            serde_json::from_str(&provision(&hex::encode(chip_key)).unwrap()).unwrap();
        assert!(out.get("chip_secret_hex").is_none(), "no chip key was made");
        assert_eq!(out["chip_public_key"], hex::encode(chip_key));
        assert_eq!(out["slot"], 8);
        let image = hex::decode(out["slot_image_hex"].as_str().unwrap()).unwrap();
        assert_eq!(image.len(), cartridge::TAG_CAPACITY);
        // The image verifies as a tag for that chip under the factory key.
        let mut trust = TrustStore::new();
        trust.trust("fab-2", &hex::decode(public).unwrap()).unwrap();
        let tag = cartridge::parse(&image, &trust).unwrap();
        assert_eq!(tag.id(), "C-REAL");
        assert_eq!(tag.chip_key(), &chip_key);
        // Not a key: refused.
        assert!(provision("00")
            .unwrap_err()
            .contains("not a P-256 public key"));
        assert!(provision("zz").unwrap_err().contains("not hex"));
    }
}
