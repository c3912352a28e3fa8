//! Cartridge tags: the signed identity stored in a cartridge's authenticator chip.
//!
//! A sterile single-use needle cartridge carries an authenticator chip (an ATECC608-class
//! part on the rig, simulated in sim). Its readable memory holds this tag: the cartridge's
//! id, lot, needle configuration and expiry, the chip's own P-256 public key, and the
//! factory's ECDSA P-256 signature over all of it under the factory key named by `key_id`.
//! Pens hold only factory *public* keys ([`TrustStore`]); the chip's private key never leaves
//! the chip and answers a fresh challenge at seat and at arm (`chip.rs`), so a copy of this
//! memory is worth nothing. Threat model: `docs/cartridge-security.md`.
//!
//! # Binary format, version 2
//!
//! | bytes | content |
//! | --- | --- |
//! | 4 | magic `b"NDLT"` |
//! | 1 | format version, `2` |
//! | 1 + n | id: length `n` (1..=16), then `n` bytes of `[A-Za-z0-9-]` |
//! | 1 + n | lot: length `n` (1..=16), then `n` bytes of `[A-Za-z0-9-]` |
//! | 4 | expiry: year (u16, big endian), month (1..=12), day (1..=31) |
//! | 1 | needle code (see [`Needles::code`]) |
//! | 1 + n | signer key id: length `n` (1..=16), then `n` bytes of `[A-Za-z0-9-]` |
//! | 33 | the chip's public key, SEC1 compressed |
//! | 64 | ECDSA P-256 / SHA-256 signature (`r ‖ s`) by the factory key over every byte before it |
//!
//! At most 158 bytes; a memory image ([`image_of`]) is zero-padded to [`TAG_CAPACITY`].
//! [`parse`] accepts the exact encoding or the padded image, and refuses any byte after the
//! signature that is not zero padding, so that every bit of the image is covered.
//!
//! Version 1 (HMAC-SHA256 under a per-pen `device.key`) is refused with
//! [`TagError::V1Unsupported`] (`tag_v1_unsupported`): any holder of one pen's key could
//! make valid tags for it. Migration: `docs/cartridge-security.md`.
//!
//! [`parse`] never panics: it checks the structure first (magic, version, lengths), then the
//! signer (known, not revoked) and the signature, and only then interprets the signed contents.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::trust::{TrustStore, SIGNATURE_LEN};
use super::Date;

/// Length of the chip's SEC1-compressed P-256 public key.
pub const CHIP_KEY_LEN: usize = 33;

/// The four bytes every tag starts with.
pub const TAG_MAGIC: [u8; 4] = *b"NDLT";
/// The only tag format version this code reads and writes.
pub const TAG_VERSION: u8 = 2;
/// The retired HMAC format, refused with [`TagError::V1Unsupported`].
pub const TAG_VERSION_V1: u8 = 1;
/// Size of the chip's readable identity memory, the largest tag image [`parse`] accepts.
pub const TAG_CAPACITY: usize = 256;
/// Longest id or lot, in bytes.
pub const MAX_FIELD_LEN: usize = 16;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why a tag was refused. Every variant has a stable machine code ([`TagError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// Not a tag this code understands: bad magic, unknown version, too long, not hex.
    #[error("unknown tag format: {reason}")]
    UnknownFormat {
        /// What was wrong.
        reason: &'static str,
    },
    /// The tag ends before its last field.
    #[error("tag truncated: {needed} bytes needed, {got} present")]
    Truncated {
        /// Bytes the structure read so far requires.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// A field has a value outside its allowed range or charset.
    #[error("invalid tag field {field}: {reason}")]
    InvalidField {
        /// The field's name: "id", "lot", "expiry", "needles" or "padding".
        field: &'static str,
        /// What was wrong.
        reason: &'static str,
    },
    /// A version-1 tag (HMAC under a per-pen device key): no longer accepted.
    #[error("version-1 (HMAC) tags are no longer accepted: the cartridge needs a factory-signed version-2 tag")]
    V1Unsupported,
    /// The tag names a signer key id this pen does not trust.
    #[error("tag signed by unknown factory key id {key_id:?}")]
    UnknownSigner {
        /// The key id the tag names.
        key_id: String,
    },
    /// The tag names a signer key id that is revoked in this pen's configuration.
    #[error("tag signed by revoked factory key id {key_id:?}")]
    RevokedSigner {
        /// The key id the tag names.
        key_id: String,
    },
    /// The signature does not verify under the named factory key: forged or corrupted.
    #[error("tag signature does not verify")]
    BadSignature,
}

impl TagError {
    /// The stable machine code of this error, for APIs and logs.
    pub fn code(&self) -> &'static str {
        match self {
            TagError::UnknownFormat { .. } => "tag_unknown_format",
            TagError::Truncated { .. } => "tag_truncated",
            TagError::InvalidField { .. } => "tag_invalid_field",
            TagError::V1Unsupported => "tag_v1_unsupported",
            TagError::UnknownSigner { .. } => "tag_signer_unknown",
            TagError::RevokedSigner { .. } => "tag_signer_revoked",
            TagError::BadSignature => "tag_bad_signature",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Needle configuration
// ---------------------------------------------------------------------------------------------

/// The needle configuration of a cartridge. Serde and text names: `pins12`, `pins24`,
/// `pins36`, `pins42`, `nano`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Needles {
    /// 12 pins.
    Pins12,
    /// 24 pins.
    Pins24,
    /// 36 pins.
    Pins36,
    /// 42 pins.
    Pins42,
    /// A nano (needle-free, textured) tip.
    Nano,
}

impl Needles {
    /// Every configuration, in code order.
    pub const ALL: [Needles; 5] = [
        Needles::Pins12,
        Needles::Pins24,
        Needles::Pins36,
        Needles::Pins42,
        Needles::Nano,
    ];

    /// The byte stored in a tag: the pin count, or `0x80` for nano. Stable.
    pub fn code(self) -> u8 {
        match self {
            Needles::Pins12 => 12,
            Needles::Pins24 => 24,
            Needles::Pins36 => 36,
            Needles::Pins42 => 42,
            Needles::Nano => 0x80,
        }
    }

    /// The configuration stored as `code` in a tag, if any.
    pub fn from_code(code: u8) -> Option<Needles> {
        Needles::ALL.into_iter().find(|n| n.code() == code)
    }

    /// The stable text name (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            Needles::Pins12 => "pins12",
            Needles::Pins24 => "pins24",
            Needles::Pins36 => "pins36",
            Needles::Pins42 => "pins42",
            Needles::Nano => "nano",
        }
    }
}

impl fmt::Display for Needles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Needles {
    type Err = TagError;

    fn from_str(text: &str) -> Result<Needles, TagError> {
        Needles::ALL
            .into_iter()
            .find(|n| n.as_str() == text)
            .ok_or(TagError::InvalidField {
                field: "needles",
                reason: "unknown needle configuration",
            })
    }
}

// ---------------------------------------------------------------------------------------------
// Tag contents
// ---------------------------------------------------------------------------------------------

/// The contents of a tag, validated: id and lot are 1..=16 bytes of `[A-Za-z0-9-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "TagDataWire")]
pub struct TagData {
    id: String,
    lot: String,
    needles: Needles,
    expiry: Date,
}

/// The unvalidated serde form of [`TagData`].
#[derive(Deserialize)]
struct TagDataWire {
    id: String,
    lot: String,
    needles: Needles,
    expiry: Date,
}

impl TryFrom<TagDataWire> for TagData {
    type Error = TagError;

    fn try_from(wire: TagDataWire) -> Result<TagData, TagError> {
        TagData::new(wire.id, wire.lot, wire.needles, wire.expiry)
    }
}

impl TagData {
    /// Tag contents, if `id` and `lot` are valid identifiers ([`validate_identifier`]).
    pub fn new(
        id: impl Into<String>,
        lot: impl Into<String>,
        needles: Needles,
        expiry: Date,
    ) -> Result<TagData, TagError> {
        let id = id.into();
        let lot = lot.into();
        validate_identifier("id", &id)?;
        validate_identifier("lot", &lot)?;
        Ok(TagData {
            id,
            lot,
            needles,
            expiry,
        })
    }

    /// The cartridge id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The production lot.
    pub fn lot(&self) -> &str {
        &self.lot
    }

    /// The needle configuration.
    pub fn needles(&self) -> Needles {
        self.needles
    }

    /// The last day the cartridge may be used.
    pub fn expiry(&self) -> Date {
        self.expiry
    }
}

/// Checks a cartridge id or lot: 1..=16 bytes, each ASCII alphanumeric or `-`.
/// `field` names the field in the error.
pub fn validate_identifier(field: &'static str, value: &str) -> Result<(), TagError> {
    if value.is_empty() || value.len() > MAX_FIELD_LEN {
        return Err(TagError::InvalidField {
            field,
            reason: "length must be 1..=16",
        });
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(TagError::InvalidField {
            field,
            reason: "only ASCII letters, digits and '-' are allowed",
        });
    }
    Ok(())
}

/// A tag that was parsed and whose factory signature verified under a trusted, unrevoked key.
/// Only [`parse`] (and [`parse_hex`]) make one. It does not prove the chip is genuine: that
/// is the challenge-response of `chip.rs` against [`Tag::chip_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    data: TagData,
    key_id: String,
    chip_key: [u8; CHIP_KEY_LEN],
    /// The exact encoding (without padding), signature included.
    bytes: Vec<u8>,
}

impl Tag {
    /// The authenticated contents.
    pub fn data(&self) -> &TagData {
        &self.data
    }

    /// The cartridge id.
    pub fn id(&self) -> &str {
        self.data.id()
    }

    /// The production lot.
    pub fn lot(&self) -> &str {
        self.data.lot()
    }

    /// The needle configuration.
    pub fn needles(&self) -> Needles {
        self.data.needles()
    }

    /// The last day the cartridge may be used.
    pub fn expiry(&self) -> Date {
        self.data.expiry()
    }

    /// The id of the factory key that signed this tag.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The chip's public key (SEC1 compressed), as signed by the factory.
    pub fn chip_key(&self) -> &[u8; CHIP_KEY_LEN] {
        &self.chip_key
    }

    /// The exact encoding of this tag (without padding).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The hex text form of this tag's encoding (see [`to_hex`]).
    pub fn to_hex(&self) -> String {
        to_hex(&self.bytes)
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding and parsing
// ---------------------------------------------------------------------------------------------

/// The bytes a factory signs for `data`, signed by `key_id`, on a chip whose public key is
/// `chip_key`: every byte of the tag before the signature. `key_id` must be a valid
/// identifier ([`validate_identifier`]).
pub fn signed_body(
    data: &TagData,
    key_id: &str,
    chip_key: &[u8; CHIP_KEY_LEN],
) -> Result<Vec<u8>, TagError> {
    validate_identifier("key_id", key_id)?;
    let mut out = Vec::with_capacity(TAG_CAPACITY);
    out.extend_from_slice(&TAG_MAGIC);
    out.push(TAG_VERSION);
    for field in [data.id.as_bytes(), data.lot.as_bytes()] {
        // TagData guarantees 1..=16 bytes, so the length fits a byte.
        out.push(field.len() as u8);
        out.extend_from_slice(field);
    }
    out.extend_from_slice(&data.expiry.year().to_be_bytes());
    out.push(data.expiry.month());
    out.push(data.expiry.day());
    out.push(data.needles.code());
    out.push(key_id.len() as u8);
    out.extend_from_slice(key_id.as_bytes());
    out.extend_from_slice(chip_key);
    Ok(out)
}

/// The chip's memory image of a tag's exact encoding: the bytes followed by zero padding to
/// [`TAG_CAPACITY`] (bytes beyond it are dropped; an encoding is at most 158 bytes).
pub fn image_of(encoding: &[u8]) -> [u8; TAG_CAPACITY] {
    let mut image = [0u8; TAG_CAPACITY];
    for (dst, src) in image.iter_mut().zip(encoding) {
        *dst = *src;
    }
    image
}

/// Reads bytes front to back; running out is [`TagError::Truncated`].
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TagError> {
        let needed = self.pos.saturating_add(n);
        let slice = self
            .bytes
            .get(self.pos..needed)
            .ok_or(TagError::Truncated {
                needed,
                got: self.bytes.len(),
            })?;
        self.pos = needed;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, TagError> {
        self.take(1).map(|b| b.first().copied().unwrap_or_default())
    }

    fn field(&mut self, field: &'static str) -> Result<&'a [u8], TagError> {
        let len = usize::from(self.byte()?);
        if len == 0 || len > MAX_FIELD_LEN {
            return Err(TagError::InvalidField {
                field,
                reason: "length must be 1..=16",
            });
        }
        self.take(len)
    }
}

/// Parses a tag and verifies its factory signature under `trust`: the exact encoding or a
/// zero-padded image of at most [`TAG_CAPACITY`] bytes. Never panics, whatever the input.
pub fn parse(bytes: &[u8], trust: &TrustStore) -> Result<Tag, TagError> {
    // A prefix that disagrees with the magic is another format; one that agrees but is short
    // is a truncated tag.
    let magic_prefix_ok = bytes
        .iter()
        .zip(TAG_MAGIC.iter())
        .all(|(got, want)| got == want);
    if !magic_prefix_ok {
        return Err(TagError::UnknownFormat {
            reason: "bad magic",
        });
    }
    if bytes.len() > TAG_CAPACITY {
        return Err(TagError::UnknownFormat {
            reason: "longer than the 256-byte tag capacity",
        });
    }

    // 1. Structure.
    let mut reader = Reader { bytes, pos: 0 };
    reader.take(TAG_MAGIC.len())?;
    match reader.byte()? {
        TAG_VERSION => {}
        TAG_VERSION_V1 => return Err(TagError::V1Unsupported),
        _ => {
            return Err(TagError::UnknownFormat {
                reason: "unsupported format version",
            })
        }
    }
    let id = reader.field("id")?;
    let lot = reader.field("lot")?;
    let expiry = reader.take(4)?;
    let needle_code = reader.byte()?;
    let key_id = reader.field("key_id")?;
    let chip_key = reader.take(CHIP_KEY_LEN)?;
    let body_len = reader.pos;
    let signature = reader.take(SIGNATURE_LEN)?;
    let padding = bytes.get(reader.pos..).unwrap_or_default();

    // 2. Authentication before any content is interpreted: a trusted, unrevoked signer, and
    //    its signature over every byte before it.
    let key_id = text("key_id", key_id)?;
    trust.verify(
        &key_id,
        bytes.get(..body_len).unwrap_or_default(),
        signature,
    )?;
    if padding.iter().any(|b| *b != 0) {
        return Err(TagError::InvalidField {
            field: "padding",
            reason: "bytes after the signature must be zero",
        });
    }

    // 3. Contents.
    let id = text("id", id)?;
    let lot = text("lot", lot)?;
    let invalid_expiry = TagError::InvalidField {
        field: "expiry",
        reason: "not a calendar date in range",
    };
    let expiry = match *expiry {
        [y0, y1, month, day] => {
            Date::new(u16::from_be_bytes([y0, y1]), month, day).map_err(|_| invalid_expiry)?
        }
        _ => return Err(invalid_expiry),
    };
    let needles = Needles::from_code(needle_code).ok_or(TagError::InvalidField {
        field: "needles",
        reason: "unknown needle code",
    })?;
    let chip_key: [u8; CHIP_KEY_LEN] = chip_key.try_into().map_err(|_| TagError::Truncated {
        needed: body_len,
        got: bytes.len(),
    })?;
    if p256::PublicKey::from_sec1_bytes(&chip_key).is_err() {
        return Err(TagError::InvalidField {
            field: "chip_key",
            reason: "not a P-256 public key",
        });
    }
    Ok(Tag {
        data: TagData {
            id,
            lot,
            needles,
            expiry,
        },
        key_id,
        chip_key,
        bytes: bytes.get(..reader.pos).unwrap_or_default().to_vec(),
    })
}

/// A length-prefixed identifier field as text, checked by [`validate_identifier`].
fn text(field: &'static str, raw: &[u8]) -> Result<String, TagError> {
    let value = std::str::from_utf8(raw).map_err(|_| TagError::InvalidField {
        field,
        reason: "not ASCII",
    })?;
    validate_identifier(field, value)?;
    Ok(value.to_owned())
}

/// Lower-case hex text of tag bytes, the tag's form in the HTTP API and the CLI.
pub fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// The bytes of a tag's hex text (either case; surrounding whitespace ignored). Text that is
/// not hex, or longer than a 256-byte image, is [`TagError::UnknownFormat`].
pub fn from_hex(text: &str) -> Result<Vec<u8>, TagError> {
    let text = text.trim();
    if text.len() > TAG_CAPACITY * 2 {
        return Err(TagError::UnknownFormat {
            reason: "longer than the 256-byte tag capacity",
        });
    }
    hex::decode(text).map_err(|_| TagError::UnknownFormat {
        reason: "not hex text",
    })
}

/// [`from_hex`] then [`parse`].
pub fn parse_hex(text: &str, trust: &TrustStore) -> Result<Tag, TagError> {
    parse(&from_hex(text)?, trust)
}

#[cfg(test)]
mod tests;
