//! Cartridge tags: the binary format stored in a cartridge's EEPROM and its authentication.
//!
//! A sterile single-use needle cartridge carries a small tag (a 128-byte I2C EEPROM on the
//! rig, simulated in sim) naming the cartridge, its lot, its needle configuration and its
//! expiry date, authenticated with HMAC-SHA256 under the device key ([`DeviceKey`]).
//!
//! # Binary format, version 1
//!
//! | bytes | content |
//! | --- | --- |
//! | 4 | magic `b"NDLT"` |
//! | 1 | format version, `1` |
//! | 1 + n | id: length `n` (1..=16), then `n` bytes of `[A-Za-z0-9-]` |
//! | 1 + n | lot: length `n` (1..=16), then `n` bytes of `[A-Za-z0-9-]` |
//! | 4 | expiry: year (u16, big endian), month (1..=12), day (1..=31) |
//! | 1 | needle code (see [`Needles::code`]) |
//! | 32 | HMAC-SHA256 under the device key over every byte before it |
//!
//! At most 76 bytes; an EEPROM image ([`encode_image`]) is zero-padded to [`TAG_CAPACITY`].
//! [`parse`] accepts the exact encoding or the padded image, and refuses any byte after the
//! MAC that is not zero padding, so that every bit of a 128-byte image is covered.
//!
//! [`parse`] never panics: it checks the structure first (magic, version, lengths), then the
//! MAC (in constant time), and only then interprets the authenticated contents.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The four bytes every tag starts with.
pub const TAG_MAGIC: [u8; 4] = *b"NDLT";
/// The only tag format version this code reads and writes.
pub const TAG_VERSION: u8 = 1;
/// Size of the cartridge EEPROM, the largest tag image [`parse`] accepts.
pub const TAG_CAPACITY: usize = 128;
/// Length of the HMAC-SHA256 at the end of a tag.
pub const MAC_LEN: usize = 32;
/// Longest id or lot, in bytes.
pub const MAX_FIELD_LEN: usize = 16;
/// Length of a device key, in bytes.
pub const KEY_LEN: usize = 32;

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
    /// The MAC does not match the contents under this device's key: forged, corrupted, or
    /// signed for another device.
    #[error("tag authentication failed")]
    BadMac,
}

impl TagError {
    /// The stable machine code of this error, for APIs and logs.
    pub fn code(&self) -> &'static str {
        match self {
            TagError::UnknownFormat { .. } => "tag_unknown_format",
            TagError::Truncated { .. } => "tag_truncated",
            TagError::InvalidField { .. } => "tag_invalid_field",
            TagError::BadMac => "tag_bad_mac",
        }
    }
}

/// Why a [`Date`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    /// The text is not of the form `YYYY-MM-DD`.
    #[error("date must be written YYYY-MM-DD")]
    Format,
    /// Year, month or day out of range.
    #[error("no such date: {year:04}-{month:02}-{day:02} (years {min}..={max})", min = Date::MIN_YEAR, max = Date::MAX_YEAR)]
    OutOfRange {
        /// The year given.
        year: u16,
        /// The month given.
        month: u8,
        /// The day given.
        day: u8,
    },
}

// ---------------------------------------------------------------------------------------------
// Date
// ---------------------------------------------------------------------------------------------

/// A calendar date (proleptic Gregorian), always valid, between [`Date::MIN_YEAR`] and
/// [`Date::MAX_YEAR`]. Ordering is chronological. Text and serde form: `YYYY-MM-DD`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    // Field order matters: the derived ordering compares year, then month, then day.
    year: u16,
    month: u8,
    day: u8,
}

impl Date {
    /// Earliest year accepted.
    pub const MIN_YEAR: u16 = 1970;
    /// Latest year accepted.
    pub const MAX_YEAR: u16 = 9999;

    /// A date, if it exists in the calendar and its year is in range.
    pub fn new(year: u16, month: u8, day: u8) -> Result<Date, DateError> {
        let valid = (Self::MIN_YEAR..=Self::MAX_YEAR).contains(&year)
            && (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month);
        if valid {
            Ok(Date { year, month, day })
        } else {
            Err(DateError::OutOfRange { year, month, day })
        }
    }

    /// The year.
    pub fn year(self) -> u16 {
        self.year
    }

    /// The month, 1..=12.
    pub fn month(self) -> u8 {
        self.month
    }

    /// The day of the month, 1..=31.
    pub fn day(self) -> u8 {
        self.day
    }

    /// Days since 1970-01-01 (which is day 0).
    pub fn days_since_epoch(self) -> i64 {
        // Howard Hinnant's days_from_civil.
        let month = i64::from(self.month);
        let year = i64::from(self.year) - i64::from(month <= 2);
        let era = year.div_euclid(400);
        let year_of_era = year - era * 400;
        let shifted_month = if month > 2 { month - 3 } else { month + 9 };
        let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(self.day) - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        era * 146_097 + day_of_era - 719_468
    }

    /// The date `days` days after 1970-01-01, if its year is in range.
    pub fn from_days_since_epoch(days: i64) -> Option<Date> {
        // Howard Hinnant's civil_from_days. The range check first keeps the arithmetic small.
        let max = Date {
            year: Self::MAX_YEAR,
            month: 12,
            day: 31,
        }
        .days_since_epoch();
        if !(0..=max).contains(&days) {
            return None;
        }
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z - era * 146_097;
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let mp = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        Date::new(
            u16::try_from(year).ok()?,
            u8::try_from(month).ok()?,
            u8::try_from(day).ok()?,
        )
        .ok()
    }

    /// The UTC calendar date of a unix time in milliseconds, if its year is in range.
    pub fn from_unix_ms(unix_ms: i64) -> Option<Date> {
        Date::from_days_since_epoch(unix_ms.div_euclid(86_400_000))
    }
}

// `u16::is_multiple_of` needs Rust 1.87; the workspace's declared rust-version is 1.85.
#[allow(clippy::manual_is_multiple_of)]
fn is_leap_year(year: u16) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl fmt::Debug for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Date({self})")
    }
}

impl FromStr for Date {
    type Err = DateError;

    /// Parses exactly `YYYY-MM-DD` (ASCII digits, four-two-two).
    fn from_str(text: &str) -> Result<Date, DateError> {
        let bytes = text.as_bytes();
        let shape_ok = bytes.len() == 10
            && bytes.get(4) == Some(&b'-')
            && bytes.get(7) == Some(&b'-')
            && bytes
                .iter()
                .enumerate()
                .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
        if !shape_ok {
            return Err(DateError::Format);
        }
        let number = |range: std::ops::Range<usize>| -> Result<u16, DateError> {
            text.get(range)
                .and_then(|part| part.parse::<u16>().ok())
                .ok_or(DateError::Format)
        };
        let year = number(0..4)?;
        let month = u8::try_from(number(5..7)?).map_err(|_| DateError::Format)?;
        let day = u8::try_from(number(8..10)?).map_err(|_| DateError::Format)?;
        Date::new(year, month, day)
    }
}

impl Serialize for Date {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Date, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
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

/// A tag that was parsed and authenticated under the device key. Only [`parse`] (and
/// [`parse_hex`]) make one, so holding a `Tag` means its MAC was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    data: TagData,
    /// The exact encoding (without padding), MAC included.
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

    /// The exact encoding of this tag (without EEPROM padding).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The hex text form of this tag's encoding (see [`to_hex`]).
    pub fn to_hex(&self) -> String {
        to_hex(&self.bytes)
    }
}

// ---------------------------------------------------------------------------------------------
// Device key
// ---------------------------------------------------------------------------------------------

/// The 32-byte secret under which this device authenticates cartridge tags.
/// Its `Debug` form never shows the key.
#[derive(Clone)]
pub struct DeviceKey {
    bytes: [u8; KEY_LEN],
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceKey(<redacted>)")
    }
}

impl DeviceKey {
    /// A key from raw bytes (tests, the simulator, provisioning tools).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> DeviceKey {
        DeviceKey { bytes }
    }

    /// A fresh random key from the operating system's random source.
    pub fn generate() -> io::Result<DeviceKey> {
        let mut bytes = [0u8; KEY_LEN];
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(io::Error::other)?;
        Ok(DeviceKey { bytes })
    }

    /// Reads the key file at `path` (64 hex digits, surrounding whitespace allowed), or, if
    /// there is no file, creates one with a fresh random key, readable by its owner only
    /// (mode 0600). The new file appears atomically: a crash leaves either no key file or a
    /// complete one, and a key file created concurrently by another process is never
    /// overwritten. A malformed file (or an all-zero key) is refused with
    /// [`io::ErrorKind::InvalidData`]; the error never quotes the file's contents.
    pub fn load_or_create(path: &Path) -> io::Result<DeviceKey> {
        match fs::read(path) {
            Ok(contents) => parse_key_file(path, &contents),
            Err(e) if e.kind() == io::ErrorKind::NotFound => create_key_file(path),
            Err(e) => Err(e),
        }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC pads keys shorter than the hash's block size with zeros, so this is HMAC under
        // the 32-byte key, built without a fallible constructor.
        let mut block = hmac::digest::Key::<HmacSha256>::default();
        for (dst, src) in block.iter_mut().zip(self.bytes.iter()) {
            *dst = *src;
        }
        <HmacSha256 as KeyInit>::new(&block)
    }
}

fn malformed_key(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "device key file {} is malformed: expected exactly 64 hex digits (a non-zero \
             32-byte key); fix or remove it (removing it invalidates every tag signed with it)",
            path.display()
        ),
    )
}

fn parse_key_file(path: &Path, contents: &[u8]) -> io::Result<DeviceKey> {
    let text = std::str::from_utf8(contents).map_err(|_| malformed_key(path))?;
    let mut bytes = [0u8; KEY_LEN];
    hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| malformed_key(path))?;
    if bytes.iter().all(|b| *b == 0) {
        return Err(malformed_key(path));
    }
    Ok(DeviceKey { bytes })
}

fn create_key_file(path: &Path) -> io::Result<DeviceKey> {
    let key = DeviceKey::generate()?;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "key path has no file name"))?;
    let mut suffix = [0u8; 8];
    rand::rngs::OsRng
        .try_fill_bytes(&mut suffix)
        .map_err(io::Error::other)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        file_name.to_string_lossy(),
        hex::encode(suffix)
    ));

    let written = write_private_file(&tmp, format!("{}\n", hex::encode(key.bytes)).as_bytes());
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // A hard link never replaces an existing file: if another process created the key in the
    // meantime, theirs wins and we read it.
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            File::open(&dir)?.sync_all()?;
            Ok(key)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            parse_key_file(path, &fs::read(path)?)
        }
        Err(e) => Err(e),
    }
}

fn write_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

// ---------------------------------------------------------------------------------------------
// Encoding and parsing
// ---------------------------------------------------------------------------------------------

/// The exact binary encoding of `data`, MAC included (at most 76 bytes).
pub fn encode(data: &TagData, key: &DeviceKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(TAG_CAPACITY);
    out.extend_from_slice(&TAG_MAGIC);
    out.push(TAG_VERSION);
    for field in [data.id.as_bytes(), data.lot.as_bytes()] {
        // TagData guarantees 1..=16 bytes, so the length fits a byte.
        out.push(field.len() as u8);
        out.extend_from_slice(field);
    }
    out.extend_from_slice(&data.expiry.year.to_be_bytes());
    out.push(data.expiry.month);
    out.push(data.expiry.day);
    out.push(data.needles.code());
    let mut mac = key.mac();
    mac.update(&out);
    out.extend_from_slice(&mac.finalize().into_bytes());
    out
}

/// The 128-byte EEPROM image of `data`: [`encode`] followed by zero padding.
pub fn encode_image(data: &TagData, key: &DeviceKey) -> [u8; TAG_CAPACITY] {
    let mut image = [0u8; TAG_CAPACITY];
    for (dst, src) in image.iter_mut().zip(encode(data, key)) {
        *dst = src;
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

/// Parses and authenticates a tag: the exact encoding or a zero-padded image of at most
/// [`TAG_CAPACITY`] bytes. Never panics, whatever the input.
pub fn parse(bytes: &[u8], key: &DeviceKey) -> Result<Tag, TagError> {
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
            reason: "longer than the 128-byte tag capacity",
        });
    }

    // 1. Structure.
    let mut reader = Reader { bytes, pos: 0 };
    reader.take(TAG_MAGIC.len())?;
    if reader.byte()? != TAG_VERSION {
        return Err(TagError::UnknownFormat {
            reason: "unsupported format version",
        });
    }
    let id = reader.field("id")?;
    let lot = reader.field("lot")?;
    let expiry = reader.take(4)?;
    let needle_code = reader.byte()?;
    let body_len = reader.pos;
    let mac = reader.take(MAC_LEN)?;
    let padding = bytes.get(reader.pos..).unwrap_or_default();

    // 2. Authentication, in constant time, before any content is interpreted.
    let mut expected = key.mac();
    expected.update(bytes.get(..body_len).unwrap_or_default());
    expected.verify_slice(mac).map_err(|_| TagError::BadMac)?;
    if padding.iter().any(|b| *b != 0) {
        return Err(TagError::InvalidField {
            field: "padding",
            reason: "bytes after the MAC must be zero",
        });
    }

    // 3. Contents.
    let text = |field: &'static str, raw: &[u8]| -> Result<String, TagError> {
        let value = std::str::from_utf8(raw).map_err(|_| TagError::InvalidField {
            field,
            reason: "not ASCII",
        })?;
        validate_identifier(field, value)?;
        Ok(value.to_owned())
    };
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
    Ok(Tag {
        data: TagData {
            id,
            lot,
            needles,
            expiry,
        },
        bytes: bytes.get(..reader.pos).unwrap_or_default().to_vec(),
    })
}

/// Lower-case hex text of tag bytes, the tag's form in the HTTP API and the CLI.
pub fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// The bytes of a tag's hex text (either case; surrounding whitespace ignored). Text that is
/// not hex, or longer than a 128-byte image, is [`TagError::UnknownFormat`].
pub fn from_hex(text: &str) -> Result<Vec<u8>, TagError> {
    let text = text.trim();
    if text.len() > TAG_CAPACITY * 2 {
        return Err(TagError::UnknownFormat {
            reason: "longer than the 128-byte tag capacity",
        });
    }
    hex::decode(text).map_err(|_| TagError::UnknownFormat {
        reason: "not hex text",
    })
}

/// [`from_hex`] then [`parse`].
pub fn parse_hex(text: &str, key: &DeviceKey) -> Result<Tag, TagError> {
    parse(&from_hex(text)?, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> DeviceKey {
        DeviceKey::from_bytes([7u8; KEY_LEN])
    }

    fn date(y: u16, m: u8, d: u8) -> Date {
        Date::new(y, m, d).expect("valid date")
    }

    fn sample() -> TagData {
        TagData::new("CART-0001", "LOT-A7", Needles::Pins36, date(2027, 6, 30)).expect("valid")
    }

    /// A tag image with a correct MAC over arbitrary body bytes (to test content checks
    /// that only run after authentication).
    fn signed(body: &[u8], key: &DeviceKey) -> Vec<u8> {
        let mut mac = key.mac();
        mac.update(body);
        let mut out = body.to_vec();
        out.extend_from_slice(&mac.finalize().into_bytes());
        out
    }

    fn body(id: &[u8], lot: &[u8], expiry: [u8; 4], needle_code: u8) -> Vec<u8> {
        let mut out = TAG_MAGIC.to_vec();
        out.push(TAG_VERSION);
        out.push(id.len() as u8);
        out.extend_from_slice(id);
        out.push(lot.len() as u8);
        out.extend_from_slice(lot);
        out.extend_from_slice(&expiry);
        out.push(needle_code);
        out
    }

    #[test]
    fn encode_then_parse_round_trips_exact_and_padded_forms() {
        let data = sample();
        let exact = encode(&data, &key());
        assert_eq!(exact.len(), 4 + 1 + 1 + 9 + 1 + 6 + 4 + 1 + MAC_LEN);
        let tag = parse(&exact, &key()).expect("exact form parses");
        assert_eq!(tag.data(), &data);
        assert_eq!(tag.as_bytes(), exact.as_slice());

        let image = encode_image(&data, &key());
        let padded = parse(&image, &key()).expect("padded image parses");
        assert_eq!(padded, tag);
    }

    #[test]
    fn longest_tag_fits_the_eeprom() {
        let data = TagData::new(
            "A".repeat(16),
            "B".repeat(16),
            Needles::Nano,
            date(9999, 12, 31),
        )
        .expect("valid");
        let bytes = encode(&data, &key());
        assert_eq!(bytes.len(), 76);
        assert!(bytes.len() <= TAG_CAPACITY);
        assert_eq!(parse(&bytes, &key()).expect("parses").data(), &data);
    }

    #[test]
    fn hex_form_round_trips_and_ignores_case_and_whitespace() {
        let tag = parse(&encode(&sample(), &key()), &key()).expect("parses");
        let text = tag.to_hex();
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        let again = parse_hex(&format!("  {}\n", text.to_uppercase()), &key()).expect("parses");
        assert_eq!(again, tag);
    }

    #[test]
    fn non_hex_text_is_unknown_format() {
        let err = parse_hex("NDLT-not-hex", &key()).expect_err("refused");
        assert_eq!(err.code(), "tag_unknown_format");
        let too_long = "00".repeat(TAG_CAPACITY + 1);
        assert_eq!(
            from_hex(&too_long).expect_err("refused").code(),
            "tag_unknown_format"
        );
    }

    #[test]
    fn bad_magic_is_unknown_format() {
        let mut bytes = encode(&sample(), &key());
        bytes[0] = b'X';
        assert_eq!(
            parse(&bytes, &key()).expect_err("refused").code(),
            "tag_unknown_format"
        );
        // A blank EEPROM reads as all 0xFF.
        assert_eq!(
            parse(&[0xFF; TAG_CAPACITY], &key())
                .expect_err("refused")
                .code(),
            "tag_unknown_format"
        );
    }

    #[test]
    fn unknown_version_is_unknown_format() {
        let mut bytes = encode(&sample(), &key());
        bytes[4] = 2;
        let err = parse(&bytes, &key()).expect_err("refused");
        assert_eq!(
            err,
            TagError::UnknownFormat {
                reason: "unsupported format version"
            }
        );
    }

    #[test]
    fn oversized_image_is_unknown_format() {
        let mut bytes = encode_image(&sample(), &key()).to_vec();
        bytes.push(0);
        assert_eq!(
            parse(&bytes, &key()).expect_err("refused").code(),
            "tag_unknown_format"
        );
    }

    #[test]
    fn every_proper_prefix_is_truncated() {
        let bytes = encode(&sample(), &key());
        for len in 0..bytes.len() {
            let err = parse(&bytes[..len], &key()).expect_err("prefix refused");
            assert_eq!(err.code(), "tag_truncated", "prefix of {len} bytes");
        }
    }

    #[test]
    fn zero_or_overlong_field_length_is_invalid_field() {
        let mut zero = encode(&sample(), &key());
        zero[5] = 0;
        assert_eq!(
            parse(&zero, &key()).expect_err("refused"),
            TagError::InvalidField {
                field: "id",
                reason: "length must be 1..=16"
            }
        );
        let mut long = encode(&sample(), &key());
        long[5] = 17;
        assert_eq!(
            parse(&long, &key()).expect_err("refused").code(),
            "tag_invalid_field"
        );
    }

    #[test]
    fn authenticated_but_invalid_contents_are_invalid_field() {
        let k = key();
        let cases: [(&str, Vec<u8>); 5] = [
            ("id", body(b"bad id", b"LOT", [0x07, 0xEA, 1, 1], 12)),
            ("lot", body(b"ID", &[0xC3, 0xA9], [0x07, 0xEA, 1, 1], 12)),
            ("expiry", body(b"ID", b"LOT", [0x07, 0xEA, 2, 30], 12)),
            ("expiry", body(b"ID", b"LOT", [0x07, 0xEA, 13, 1], 12)),
            ("needles", body(b"ID", b"LOT", [0x07, 0xEA, 1, 1], 13)),
        ];
        for (field, body) in cases {
            match parse(&signed(&body, &k), &k) {
                Err(TagError::InvalidField { field: got, .. }) => assert_eq!(got, field),
                other => panic!("expected invalid {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn nonzero_padding_is_invalid_field() {
        let mut image = encode_image(&sample(), &key());
        image[TAG_CAPACITY - 1] = 1;
        assert_eq!(
            parse(&image, &key()).expect_err("refused"),
            TagError::InvalidField {
                field: "padding",
                reason: "bytes after the MAC must be zero"
            }
        );
    }

    #[test]
    fn tag_signed_under_another_key_is_bad_mac() {
        let other = DeviceKey::from_bytes([8u8; KEY_LEN]);
        let bytes = encode(&sample(), &other);
        assert_eq!(parse(&bytes, &key()), Err(TagError::BadMac));
    }

    #[test]
    fn changed_content_with_old_mac_is_bad_mac() {
        let mut bytes = encode(&sample(), &key());
        // Change the lot's first byte to another valid character: structure stays intact.
        let lot_start = 5 + 1 + sample().id().len() + 1;
        bytes[lot_start] = b'Z';
        assert_eq!(parse(&bytes, &key()), Err(TagError::BadMac));
    }

    #[test]
    fn hmac_from_padded_block_equals_hmac_from_key_slice() {
        let k = key();
        let mut ours = k.mac();
        ours.update(b"message");
        let mut reference = <HmacSha256 as Mac>::new_from_slice(&k.bytes).expect("any key length");
        reference.update(b"message");
        assert_eq!(
            ours.finalize().into_bytes(),
            reference.finalize().into_bytes()
        );
    }

    #[test]
    fn tag_data_refuses_invalid_identifiers() {
        let expiry = date(2030, 1, 1);
        for (id, lot) in [
            ("", "LOT"),
            ("ID", ""),
            (&*"X".repeat(17), "LOT"),
            ("ID", "lot 1"),
            ("ID_1", "LOT"),
            ("ÄB", "LOT"),
        ] {
            let err = TagData::new(id, lot, Needles::Pins12, expiry).expect_err("refused");
            assert_eq!(err.code(), "tag_invalid_field", "id={id:?} lot={lot:?}");
        }
    }

    #[test]
    fn tag_data_deserialization_validates_fields() {
        let ok: TagData = serde_json::from_str(
            r#"{"id":"C-1","lot":"L-1","needles":"nano","expiry":"2028-02-29"}"#,
        )
        .expect("valid");
        assert_eq!(ok.needles(), Needles::Nano);
        assert_eq!(ok.expiry(), date(2028, 2, 29));
        let bad = serde_json::from_str::<TagData>(
            r#"{"id":"C 1","lot":"L-1","needles":"nano","expiry":"2028-02-29"}"#,
        );
        assert!(bad.is_err());
        let round: TagData =
            serde_json::from_str(&serde_json::to_string(&ok).expect("serializes")).expect("back");
        assert_eq!(round, ok);
    }

    #[test]
    fn needle_names_and_codes_are_stable() {
        let names: Vec<&str> = Needles::ALL.iter().map(|n| n.as_str()).collect();
        assert_eq!(names, ["pins12", "pins24", "pins36", "pins42", "nano"]);
        let codes: Vec<u8> = Needles::ALL.iter().map(|n| n.code()).collect();
        assert_eq!(codes, [12, 24, 36, 42, 0x80]);
        for n in Needles::ALL {
            assert_eq!(Needles::from_code(n.code()), Some(n));
            assert_eq!(n.as_str().parse::<Needles>(), Ok(n));
            assert_eq!(
                serde_json::to_string(&n).expect("serializes"),
                format!("\"{}\"", n.as_str())
            );
        }
        assert_eq!(Needles::from_code(0), None);
    }

    #[test]
    fn date_validation_knows_month_lengths_and_leap_years() {
        assert!(Date::new(2024, 2, 29).is_ok());
        assert!(Date::new(2000, 2, 29).is_ok());
        assert!(Date::new(1900 + 200, 2, 29).is_err());
        assert!(Date::new(2023, 2, 29).is_err());
        assert!(Date::new(2023, 4, 31).is_err());
        assert!(Date::new(2023, 0, 1).is_err());
        assert!(Date::new(2023, 1, 0).is_err());
        assert!(Date::new(1969, 12, 31).is_err());
        assert!(Date::new(10_000, 1, 1).is_err());
    }

    #[test]
    fn date_text_form_is_strict_iso() {
        assert_eq!("2026-03-09".parse::<Date>(), Ok(date(2026, 3, 9)));
        assert_eq!(date(2026, 3, 9).to_string(), "2026-03-09");
        for bad in [
            "2026-3-09",
            "2026-03-9",
            "20260309",
            "2026/03/09",
            "+026-03-09",
            "",
        ] {
            assert_eq!(bad.parse::<Date>(), Err(DateError::Format), "{bad:?}");
        }
        assert!(matches!(
            "2026-02-30".parse::<Date>(),
            Err(DateError::OutOfRange { .. })
        ));
    }

    #[test]
    fn days_since_epoch_matches_known_dates() {
        assert_eq!(date(1970, 1, 1).days_since_epoch(), 0);
        assert_eq!(date(2000, 3, 1).days_since_epoch(), 11_017);
        assert_eq!(date(2024, 2, 29).days_since_epoch(), 19_782);
        assert_eq!(Date::from_days_since_epoch(19_782), Some(date(2024, 2, 29)));
        assert_eq!(Date::from_days_since_epoch(-1), None);
        assert_eq!(Date::from_days_since_epoch(i64::MAX), None);
        // 2024-02-29T23:59:59.999Z and the next millisecond.
        assert_eq!(
            Date::from_unix_ms(1_709_251_199_999),
            Some(date(2024, 2, 29))
        );
        assert_eq!(
            Date::from_unix_ms(1_709_251_200_000),
            Some(date(2024, 3, 1))
        );
    }

    #[test]
    fn device_key_debug_hides_the_key() {
        let shown = format!("{:?}", DeviceKey::from_bytes([0xAB; KEY_LEN]));
        assert_eq!(shown, "DeviceKey(<redacted>)");
        assert!(!shown.to_lowercase().contains("ab"));
    }

    #[test]
    fn key_file_is_created_private_and_reloaded_unchanged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("device.key");
        let created = DeviceKey::load_or_create(&path).expect("created");
        let text = fs::read_to_string(&path).expect("written");
        assert_eq!(text.trim().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("metadata").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let loaded = DeviceKey::load_or_create(&path).expect("loaded");
        assert_eq!(loaded.bytes, created.bytes);
        // Only the key file is left behind, no temporary file.
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 1);
        // A tag signed with the created key verifies with the reloaded one.
        assert!(parse(&encode(&sample(), &created), &loaded).is_ok());
    }

    #[test]
    fn malformed_key_file_is_refused_without_quoting_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("device.key");
        let secretish = "ab".repeat(31);
        for contents in [
            String::new(),
            secretish.clone(),
            format!("{secretish}zz"),
            "00".repeat(32),
            format!("{}{}", "ab".repeat(32), "00"),
        ] {
            fs::write(&path, &contents).expect("write");
            let err = DeviceKey::load_or_create(&path).expect_err("refused");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{contents:?}");
            assert!(err.to_string().contains("malformed"));
            assert!(!err.to_string().contains(&secretish));
            // The malformed file is left as it was, never replaced by a new key.
            assert_eq!(fs::read_to_string(&path).expect("read"), contents);
        }
    }

    #[test]
    fn key_file_with_surrounding_whitespace_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("device.key");
        fs::write(&path, format!("\n  {}\r\n", "0F".repeat(32))).expect("write");
        let key = DeviceKey::load_or_create(&path).expect("loads");
        assert_eq!(key.bytes, [0x0F; KEY_LEN]);
    }

    fn arb_date() -> impl Strategy<Value = Date> {
        (0i64..=2_932_896).prop_map(|d| Date::from_days_since_epoch(d).expect("in range"))
    }

    fn arb_tag_data() -> impl Strategy<Value = TagData> {
        (
            "[A-Za-z0-9-]{1,16}",
            "[A-Za-z0-9-]{1,16}",
            prop::sample::select(Needles::ALL.to_vec()),
            arb_date(),
        )
            .prop_map(|(id, lot, needles, expiry)| {
                TagData::new(id, lot, needles, expiry).expect("strategy yields valid data")
            })
    }

    proptest! {
        #[test]
        fn any_valid_tag_round_trips(data in arb_tag_data()) {
            let tag = parse(&encode_image(&data, &key()), &key()).expect("parses");
            prop_assert_eq!(tag.data(), &data);
        }

        #[test]
        fn any_single_bit_flip_of_a_tag_image_is_rejected(
            data in arb_tag_data(),
            bit in 0usize..TAG_CAPACITY * 8,
        ) {
            let mut image = encode_image(&data, &key());
            image[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(parse(&image, &key()).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&bytes, &key());
        }

        #[test]
        fn arbitrary_bytes_after_a_valid_header_never_panic_nor_authenticate(
            tail in prop::collection::vec(any::<u8>(), 0..140),
        ) {
            let mut bytes = TAG_MAGIC.to_vec();
            bytes.push(TAG_VERSION);
            bytes.extend_from_slice(&tail);
            prop_assert!(parse(&bytes, &key()).is_err());
        }

        #[test]
        fn arbitrary_text_never_panics_the_hex_parser(text in ".{0,300}") {
            let _ = parse_hex(&text, &key());
        }

        #[test]
        fn days_since_epoch_round_trips(days in 0i64..=2_932_896) {
            let d = Date::from_days_since_epoch(days).expect("in range");
            prop_assert_eq!(d.days_since_epoch(), days);
            prop_assert_eq!(d.to_string().parse::<Date>(), Ok(d));
        }

        #[test]
        fn date_order_is_chronological(a in arb_date(), b in arb_date()) {
            prop_assert_eq!(a.cmp(&b), a.days_since_epoch().cmp(&b.days_since_epoch()));
        }
    }
}
