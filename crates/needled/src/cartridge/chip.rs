//! The cartridge's authenticator chip, seen from the pen: the challenge a pen sends, the
//! answer it accepts, and the simulated chip.
//!
//! The pattern of ATECC608/ECC204 consumables: the chip holds a P-256 private key that never
//! leaves it; the factory signed the matching public key into the tag (`tag.rs`). The pen
//! sends a fresh random 32-byte nonce; the chip signs the digest
//! `SHA-256("NDLC-challenge-v1" ‖ nonce)` (on an ATECC608: Nonce pass-through into TempKey,
//! then Sign external); the pen verifies it under the tag's chip key. A copy of the readable
//! memory has no private key, and a recorded answer is for another nonce.
//!
//! The chip also keeps a monotonic use counter, advanced before a cartridge's first arming
//! (`session/ops.rs`), so every pen refuses a used cartridge whatever its own ledger says.

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};

use super::trust::SIGNATURE_LEN;

/// The digest a chip signs for a nonce, and a nonce's length: one definition, with the
/// simulated parts' signing (`needle_sim::chip`).
pub use needle_sim::chip::{challenge_digest, NONCE_LEN};

/// Why a chip's answer was refused. Every variant has a stable code ([`ChipError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChipError {
    /// The answer is not a 64-byte `r ‖ s` signature with both halves in range.
    #[error("the chip's answer is malformed: {reason}")]
    Malformed {
        /// What was wrong.
        reason: &'static str,
    },
    /// The answer does not verify under the chip key the factory signed: a copied tag on a
    /// chip without its key, or an answer recorded for another challenge.
    #[error("the cartridge chip failed the challenge: not the chip its tag was signed for")]
    Failed,
    /// The chip key in the tag is not a P-256 public key (parse refuses such tags first).
    #[error("the tag's chip key is not a P-256 public key")]
    BadChipKey,
}

impl ChipError {
    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            ChipError::Malformed { .. } | ChipError::Failed | ChipError::BadChipKey => {
                "chip_challenge_failed"
            }
        }
    }
}

/// A fresh random challenge from the operating system's random source.
pub fn fresh_nonce() -> [u8; NONCE_LEN] {
    rand::random()
}

/// Parses a chip's answer: exactly 64 bytes, `r ‖ s`, each a scalar in range. Never panics.
pub fn parse_answer(answer: &[u8]) -> Result<Signature, ChipError> {
    if answer.len() != SIGNATURE_LEN {
        return Err(ChipError::Malformed {
            reason: "expected 64 bytes",
        });
    }
    Signature::from_slice(answer).map_err(|_| ChipError::Malformed {
        reason: "r or s out of range",
    })
}

/// Checks that `answer` is the signature of `nonce`'s challenge digest under `chip_key` (SEC1).
pub fn verify_answer(
    chip_key: &[u8],
    nonce: &[u8; NONCE_LEN],
    answer: &[u8],
) -> Result<(), ChipError> {
    let key = VerifyingKey::from_sec1_bytes(chip_key).map_err(|_| ChipError::BadChipKey)?;
    let signature = parse_answer(answer)?;
    key.verify_prehash(&challenge_digest(nonce), &signature)
        .map_err(|_| ChipError::Failed)
}

/// A simulated authenticator chip: the readable tag, the private key, the use counter, and
/// what a forger's part would do instead of signing.
#[derive(Clone)]
pub struct SimChip {
    /// The readable memory: the tag image.
    pub memory: Vec<u8>,
    /// How this part answers a challenge.
    pub answers: SimAnswers,
    /// The monotonic use counter.
    pub counter: u32,
}

/// How a simulated part answers challenges.
#[derive(Clone)]
pub enum SimAnswers {
    /// A genuine chip: signs with its private key.
    Key(SigningKey),
    /// A memory-only copy: no key, no answer (an EEPROM clone).
    Nothing,
    /// A forger's part that replays one recorded answer to every challenge.
    Replay(Vec<u8>),
}

impl std::fmt::Debug for SimChip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let answers = match &self.answers {
            SimAnswers::Key(_) => "key <redacted>",
            SimAnswers::Nothing => "nothing",
            SimAnswers::Replay(_) => "replay",
        };
        f.debug_struct("SimChip")
            .field("memory_len", &self.memory.len())
            .field("answers", &answers)
            .field("counter", &self.counter)
            .finish()
    }
}

impl SimChip {
    /// The part's answer to `nonce`, if it gives one.
    pub fn answer(&self, nonce: &[u8; NONCE_LEN]) -> Option<Vec<u8>> {
        match &self.answers {
            SimAnswers::Key(key) => {
                needle_sim::chip::sign(&key.to_bytes().into(), nonce).map(|s| s.to_vec())
            }
            SimAnswers::Nothing => None,
            SimAnswers::Replay(answer) => Some(answer.clone()),
        }
    }

    /// The chip's private key, if it is a genuine one (sim only: a real chip never tells).
    pub fn secret(&self) -> Option<[u8; 32]> {
        match &self.answers {
            SimAnswers::Key(key) => Some(key.to_bytes().into()),
            _ => None,
        }
    }
}

/// A sim chip answering with the private key `secret` (32 bytes), if it is a valid scalar.
pub fn sim_key(secret: &[u8]) -> Option<SimAnswers> {
    SigningKey::from_slice(secret).ok().map(SimAnswers::Key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cartridge::{compressed, test_factory_key};

    fn genuine() -> (SimChip, Vec<u8>) {
        let key = SigningKey::from_slice(&[0x11; 32]).expect("valid scalar");
        let public = compressed(key.verifying_key()).to_vec();
        let chip = SimChip {
            memory: vec![],
            answers: SimAnswers::Key(key),
            counter: 0,
        };
        (chip, public)
    }

    #[test]
    fn a_genuine_chip_answers_a_fresh_challenge() {
        let (chip, public) = genuine();
        let nonce = fresh_nonce();
        let answer = chip.answer(&nonce).expect("answers");
        assert_eq!(verify_answer(&public, &nonce, &answer), Ok(()));
    }

    /// The pen's simulated chip signs with `needle_sim::chip::sign`: its answers verify here,
    /// and only for their nonce.
    #[test]
    fn the_sim_crates_chip_answers_as_a_genuine_chip() {
        let (chip, public) = genuine();
        let secret = chip.secret().expect("genuine");
        let nonce = fresh_nonce();
        let answer = needle_sim::chip::sign(&secret, &nonce).expect("valid scalar");
        assert_eq!(verify_answer(&public, &nonce, &answer), Ok(()));
        assert_eq!(
            verify_answer(&public, &fresh_nonce(), &answer),
            Err(ChipError::Failed)
        );
        assert_eq!(needle_sim::chip::sign(&[0; 32], &nonce), None);
    }

    #[test]
    fn cloned_chip_memory_without_the_private_key_fails_the_challenge() {
        let (_, public) = genuine();
        let nonce = fresh_nonce();
        // A memory-only copy gives no answer; a part with its own key gives a wrong one.
        let copy = SimChip {
            memory: vec![],
            answers: SimAnswers::Nothing,
            counter: 0,
        };
        assert_eq!(copy.answer(&nonce), None);
        let other = SimChip {
            memory: vec![],
            answers: SimAnswers::Key(SigningKey::from_slice(&[0x22; 32]).expect("valid")),
            counter: 0,
        };
        let answer = other.answer(&nonce).expect("answers");
        assert_eq!(
            verify_answer(&public, &nonce, &answer),
            Err(ChipError::Failed)
        );
    }

    #[test]
    fn replayed_challenge_answer_fails_against_a_fresh_nonce() {
        let (chip, public) = genuine();
        let recorded_nonce = fresh_nonce();
        let recorded = chip.answer(&recorded_nonce).expect("answers");
        assert_eq!(verify_answer(&public, &recorded_nonce, &recorded), Ok(()));
        let replayer = SimChip {
            memory: vec![],
            answers: SimAnswers::Replay(recorded.clone()),
            counter: 0,
        };
        let fresh = fresh_nonce();
        assert_ne!(fresh, recorded_nonce);
        let replayed = replayer.answer(&fresh).expect("replays");
        let err = verify_answer(&public, &fresh, &replayed).expect_err("refused");
        assert_eq!(err.code(), "chip_challenge_failed");
    }

    #[test]
    fn the_factory_key_cannot_answer_for_a_chip() {
        // Domain separation: a factory signature is not a chip answer and vice versa.
        let factory = test_factory_key();
        let nonce = [0u8; NONCE_LEN];
        let by_factory = needle_sim::chip::sign(&factory.secret(), &nonce).expect("signs");
        let (_, public) = genuine();
        assert!(verify_answer(&public, &nonce, &by_factory).is_err());
    }

    #[test]
    fn malformed_answers_are_refused_without_panicking() {
        let (_, public) = genuine();
        let nonce = fresh_nonce();
        for answer in [
            vec![],
            vec![0u8; 63],
            vec![0u8; 64],
            vec![0xFF; 64],
            vec![1u8; 65],
        ] {
            let err = verify_answer(&public, &nonce, &answer).expect_err("refused");
            assert_eq!(err.code(), "chip_challenge_failed");
        }
    }
}
