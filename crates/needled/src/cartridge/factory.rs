//! Signing, for the factory tool and the simulator: factory keys, and provisioning a chip
//! with its own key and a signed tag.
//!
//! On a pen nothing here runs with a real factory key: pens trust public keys only
//! ([`super::TrustStore`]). The one private key compiled in is the published **test**
//! factory key ([`test_factory_key`]), which only the sim configuration trusts; the
//! configuration refuses it on every other backend (`config/validate.rs`).

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::tag::{signed_body, CHIP_KEY_LEN};
use super::{TagData, TagError};

/// The key id of the test factory key.
pub const TEST_FACTORY_KEY_ID: &str = "test-factory-1";

/// A factory signing key and its key id.
#[derive(Clone)]
pub struct FactoryKey {
    id: String,
    key: SigningKey,
}

impl std::fmt::Debug for FactoryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FactoryKey({:?}, <redacted>)", self.id)
    }
}

impl FactoryKey {
    /// A fresh random key under `id`.
    pub fn generate(id: &str) -> Result<FactoryKey, TagError> {
        super::validate_identifier("key_id", id)?;
        Ok(FactoryKey {
            id: id.to_owned(),
            key: SigningKey::random(&mut rand::rngs::OsRng),
        })
    }

    /// The key under `id` from its 32-byte secret scalar.
    pub fn from_secret(id: &str, secret: &[u8]) -> Result<FactoryKey, TagError> {
        super::validate_identifier("key_id", id)?;
        let key = SigningKey::from_slice(secret).map_err(|_| TagError::InvalidField {
            field: "key",
            reason: "not a P-256 secret scalar",
        })?;
        Ok(FactoryKey {
            id: id.to_owned(),
            key,
        })
    }

    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The 32-byte secret scalar (for the factory's key file only).
    pub fn secret(&self) -> [u8; 32] {
        self.key.to_bytes().into()
    }

    /// The public key, SEC1 compressed: what a pen's `[cartridge.trusted_keys]` holds.
    pub fn public_key(&self) -> [u8; CHIP_KEY_LEN] {
        compressed(self.key.verifying_key())
    }

    /// The signed tag (exact encoding) of `data` on a chip whose public key is `chip_key`.
    pub fn sign_tag(
        &self,
        data: &TagData,
        chip_key: &[u8; CHIP_KEY_LEN],
    ) -> Result<Vec<u8>, TagError> {
        let mut body = signed_body(data, &self.id, chip_key)?;
        let signature: Signature = self.key.sign(&body);
        body.extend_from_slice(&signature.to_bytes());
        Ok(body)
    }
}

/// The SEC1 compressed form of `key`.
pub fn compressed(key: &VerifyingKey) -> [u8; CHIP_KEY_LEN] {
    let point = key.to_encoded_point(true);
    let mut out = [0u8; CHIP_KEY_LEN];
    for (dst, src) in out.iter_mut().zip(point.as_bytes()) {
        *dst = *src;
    }
    out
}

/// A chip's public key as a real chip gives it, in the SEC1 compressed form a tag holds: 64
/// bytes `X ‖ Y` (what an ATECC608's GenKey returns), 65 bytes `04 ‖ X ‖ Y`, or 33 bytes
/// compressed. `None` unless it is a point on P-256.
pub fn chip_key_from_public(bytes: &[u8]) -> Option<[u8; CHIP_KEY_LEN]> {
    let key = if bytes.len() == 64 {
        let mut sec1 = Vec::with_capacity(65);
        sec1.push(0x04);
        sec1.extend_from_slice(bytes);
        VerifyingKey::from_sec1_bytes(&sec1).ok()?
    } else {
        VerifyingKey::from_sec1_bytes(bytes).ok()?
    };
    Some(compressed(&key))
}

/// The published test factory key: derived from a fixed phrase, so every build and test has
/// the same one. Trusted by the sim configuration only.
pub fn test_factory_key() -> FactoryKey {
    let secret = Sha256::digest(b"needle test factory key: never trust on a rig");
    FactoryKey {
        id: TEST_FACTORY_KEY_ID.to_owned(),
        // A SHA-256 output is a valid P-256 scalar except with negligible probability; this
        // fixed one is (checked by a test), and a failure would fall back to no key at all.
        key: SigningKey::from_slice(&secret)
            .unwrap_or_else(|_| SigningKey::random(&mut rand::rngs::OsRng)),
    }
}

/// What the factory writes into one cartridge's chip: the chip's private key (generated in
/// the chip on a real part; here by the provisioning tool or the sim) and the signed tag.
#[derive(Clone, PartialEq, Eq)]
pub struct Provisioned {
    /// The chip's 32-byte private key. On an ATECC608 it never leaves the chip.
    pub chip_secret: [u8; 32],
    /// The signed tag, exact encoding.
    pub tag: Vec<u8>,
}

impl std::fmt::Debug for Provisioned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Provisioned(tag {} bytes, <secret redacted>)",
            self.tag.len()
        )
    }
}

impl Provisioned {
    /// The tag as hex text.
    pub fn tag_hex(&self) -> String {
        super::to_hex(&self.tag)
    }

    /// The chip's private key as hex text (sim chips and test fixtures only).
    pub fn chip_secret_hex(&self) -> String {
        hex::encode(self.chip_secret)
    }

    /// The genuine sim chip of this cartridge, its use counter at `counter`.
    pub fn sim_chip(&self, counter: u32) -> Option<super::SimChip> {
        Some(super::SimChip {
            memory: self.tag.clone(),
            answers: super::sim_key(&self.chip_secret)?,
            counter,
        })
    }

    /// The body of `POST /v1/sim/inject` that seats this cartridge, chip and all, with its
    /// use counter at `counter`.
    pub fn seat_json(&self, counter: u32) -> serde_json::Value {
        serde_json::json!({
            "action": "seat_cartridge",
            "tag_hex": self.tag_hex(),
            "chip_secret_hex": self.chip_secret_hex(),
            "counter": counter,
        })
    }
}

/// Provisions one cartridge: a fresh chip key, and `data` signed with `factory` together with
/// the chip's public key.
pub fn provision(data: &TagData, factory: &FactoryKey) -> Result<Provisioned, TagError> {
    let chip = SigningKey::random(&mut rand::rngs::OsRng);
    let tag = factory.sign_tag(data, &compressed(chip.verifying_key()))?;
    Ok(Provisioned {
        chip_secret: chip.to_bytes().into(),
        tag,
    })
}

/// Provisions a sim cartridge signed with the test factory key: the one helper tests use.
pub fn provision_test(data: &TagData) -> Result<Provisioned, TagError> {
    provision(data, &test_factory_key())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_chips_public_key_is_taken_in_each_form_and_junk_is_refused() {
        let chip = SigningKey::from_slice(&[0x33; 32]).expect("valid");
        let want = compressed(chip.verifying_key());
        let uncompressed = chip.verifying_key().to_encoded_point(false);
        let sec1 = uncompressed.as_bytes();
        assert_eq!(chip_key_from_public(sec1), Some(want));
        assert_eq!(chip_key_from_public(&sec1[1..]), Some(want));
        assert_eq!(chip_key_from_public(&want), Some(want));
        assert_eq!(chip_key_from_public(&[0u8; 64]), None);
        assert_eq!(chip_key_from_public(&[]), None);
        assert_eq!(chip_key_from_public(&sec1[..40]), None);
    }
    use crate::cartridge::{parse, Date, Needles, TrustStore};

    #[test]
    fn the_test_factory_key_is_fixed_and_valid() {
        let secret = Sha256::digest(b"needle test factory key: never trust on a rig");
        assert!(SigningKey::from_slice(&secret).is_ok());
        assert_eq!(test_factory_key().secret(), test_factory_key().secret());
        assert_eq!(test_factory_key().id(), TEST_FACTORY_KEY_ID);
    }

    #[test]
    fn provisioned_tags_verify_and_name_the_chip_key() {
        let data = TagData::new(
            "C-1",
            "L-1",
            Needles::Pins24,
            Date::new(2030, 1, 1).expect("date"),
        )
        .expect("valid");
        let made = provision_test(&data).expect("provisions");
        let f = test_factory_key();
        let mut trust = TrustStore::new();
        trust.trust(f.id(), &f.public_key()).expect("valid");
        let tag = parse(&made.tag, &trust).expect("verifies");
        let chip = SigningKey::from_slice(&made.chip_secret).expect("valid");
        assert_eq!(tag.chip_key(), &compressed(chip.verifying_key()));
        assert!(!format!("{made:?}").contains(&made.chip_secret_hex()));
        assert!(!format!("{f:?}").contains(&hex::encode(f.secret())));
    }
}
