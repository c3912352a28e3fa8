//! The factory public keys a pen trusts, by key id, and the revoked key ids.
//!
//! ECDSA P-256 (RustCrypto `p256`): the same curve as the per-chip keys of ATECC608-class
//! authenticators, so one verifier serves both the factory's signature on a tag and the
//! chip's answer to a challenge. A pen holds public keys only; the private keys stay in the
//! factory (`needle-factory`).

use std::collections::{BTreeMap, BTreeSet};

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};

use super::TagError;

/// Length of an ECDSA P-256 signature, `r ‖ s`.
pub const SIGNATURE_LEN: usize = 64;

/// The factory keys this pen accepts tags from, and the key ids it refuses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustStore {
    keys: BTreeMap<String, VerifyingKey>,
    revoked: BTreeSet<String>,
}

impl TrustStore {
    /// A store that trusts nothing.
    pub fn new() -> TrustStore {
        TrustStore::default()
    }

    /// Trusts `key` (SEC1 bytes, compressed or not) under `key_id`. Refuses bytes that are not
    /// a P-256 public key.
    pub fn trust(&mut self, key_id: &str, key: &[u8]) -> Result<(), TagError> {
        super::validate_identifier("key_id", key_id)?;
        let key = VerifyingKey::from_sec1_bytes(key).map_err(|_| TagError::InvalidField {
            field: "key",
            reason: "not a P-256 public key",
        })?;
        self.keys.insert(key_id.to_owned(), key);
        Ok(())
    }

    /// Refuses every tag signed under `key_id`, trusted or not.
    pub fn revoke(&mut self, key_id: &str) {
        self.revoked.insert(key_id.to_owned());
    }

    /// Whether `key_id` names a trusted key that is not revoked.
    pub fn accepts(&self, key_id: &str) -> bool {
        self.keys.contains_key(key_id) && !self.revoked.contains(key_id)
    }

    /// Whether any trusted key (revoked or not) has the public key `key` (SEC1 bytes).
    pub fn contains_key(&self, key: &[u8]) -> bool {
        VerifyingKey::from_sec1_bytes(key).is_ok_and(|k| self.keys.values().any(|v| *v == k))
    }

    /// Checks that `signature` is the factory `key_id`'s signature of `body`: the key id is
    /// refused first if revoked, then if unknown, then the signature is verified.
    pub(super) fn verify(
        &self,
        key_id: &str,
        body: &[u8],
        signature: &[u8],
    ) -> Result<(), TagError> {
        if self.revoked.contains(key_id) {
            return Err(TagError::RevokedSigner {
                key_id: key_id.to_owned(),
            });
        }
        let key = self
            .keys
            .get(key_id)
            .ok_or_else(|| TagError::UnknownSigner {
                key_id: key_id.to_owned(),
            })?;
        let signature = Signature::from_slice(signature).map_err(|_| TagError::BadSignature)?;
        key.verify(body, &signature)
            .map_err(|_| TagError::BadSignature)
    }
}
