//! The cartridge authenticator chip's side of a challenge (feature `chip`): the digest a chip
//! signs for a nonce, and a genuine simulated chip's answer from its private key. needled
//! verifies answers against this digest; the simulated rigs (needled's sim backend, the pen's
//! host build) answer with [`sign`].
//!
//! The pattern of ATECC608/ECC204 consumables: the chip holds a P-256 private key that never
//! leaves it and signs `SHA-256("NDLC-challenge-v1" ‖ nonce)` (on an ATECC608: Nonce
//! pass-through into TempKey, then Sign external).

use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::ecdsa::{Signature, SigningKey};
use sha2::{Digest, Sha256};

/// Length of a challenge nonce.
pub const NONCE_LEN: usize = 32;

/// Domain separation: a chip's answer to a challenge can't be mistaken for another signature.
const CHALLENGE_DOMAIN: &[u8] = b"NDLC-challenge-v1";

/// The 32-byte digest a chip signs for `nonce`.
pub fn challenge_digest(nonce: &[u8; NONCE_LEN]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(CHALLENGE_DOMAIN);
    h.update(nonce);
    h.finalize().into()
}

/// A genuine chip's answer to `nonce` (`r ‖ s`) with the private key `secret`, or `None`
/// when `secret` is not a valid P-256 scalar.
pub fn sign(secret: &[u8; 32], nonce: &[u8; NONCE_LEN]) -> Option<[u8; 64]> {
    let key = SigningKey::from_slice(secret).ok()?;
    let signature: Signature = key.sign_prehash(&challenge_digest(nonce)).ok()?;
    Some(signature.to_bytes().into())
}
