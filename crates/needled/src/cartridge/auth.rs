//! The device key and the MAC that authenticates cartridge tags under it.
//!
//! Every tag ends with HMAC-SHA256 under this device's 32-byte key over every byte before
//! the MAC; the key lives in a private file in the data directory ([`DeviceKey::load_or_create`]).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use super::TagError;

type HmacSha256 = Hmac<Sha256>;

/// Length of the HMAC-SHA256 at the end of a tag.
pub const MAC_LEN: usize = 32;
/// Length of a device key, in bytes.
pub const KEY_LEN: usize = 32;

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

    /// The MAC of `body` under this key.
    pub(super) fn sign(&self, body: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = self.mac();
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    /// Checks, in constant time, that `mac` is the MAC of `body` under this key.
    pub(super) fn verify(&self, body: &[u8], mac: &[u8]) -> Result<(), TagError> {
        let mut expected = self.mac();
        expected.update(body);
        expected.verify_slice(mac).map_err(|_| TagError::BadMac)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cartridge::{encode, parse, Date, Needles, TagData};

    fn sample() -> TagData {
        let expiry = Date::new(2027, 6, 30).expect("valid date");
        TagData::new("CART-0001", "LOT-A7", Needles::Pins36, expiry).expect("valid")
    }

    #[test]
    fn hmac_from_padded_block_equals_hmac_from_key_slice() {
        let k = DeviceKey::from_bytes([7u8; KEY_LEN]);
        let mut ours = k.mac();
        ours.update(b"message");
        let mut reference = <HmacSha256 as Mac>::new_from_slice(&k.bytes).expect("any key length");
        reference.update(b"message");
        let reference = reference.finalize().into_bytes();
        assert_eq!(ours.finalize().into_bytes(), reference);
        assert_eq!(k.sign(b"message").as_slice(), reference.as_slice());
    }

    #[test]
    fn verify_accepts_only_the_mac_of_the_same_body_under_the_same_key() {
        let k = DeviceKey::from_bytes([7u8; KEY_LEN]);
        let mac = k.sign(b"body");
        assert_eq!(k.verify(b"body", &mac), Ok(()));
        assert_eq!(k.verify(b"bodY", &mac), Err(TagError::BadMac));
        assert_eq!(
            k.verify(b"body", &mac[..MAC_LEN - 1]),
            Err(TagError::BadMac)
        );
        let other = DeviceKey::from_bytes([8u8; KEY_LEN]);
        assert_eq!(other.verify(b"body", &mac), Err(TagError::BadMac));
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
}
