//! What the pen learns from a seated cartridge before it binds or arms it: the tag, its
//! factory signature, the chip's answer to a fresh challenge, and the chip's use counter.
//! All of it runs on the tag thread (an I2C transfer and two signature checks), never on a
//! tokio worker or in the session owner. Threat model: `docs/cartridge-security.md`.

use std::sync::Arc;

use crate::cartridge::{self, Tag, TrustStore};
use crate::error::{ApiError, ErrorCode};
use crate::hal::{CartridgeChip, ChipFault};
use crate::worker::Worker;

/// The tag thread's handle.
pub(crate) type ChipWorker = Worker<Box<dyn CartridgeChip>>;

/// A seated cartridge whose tag verified and, when the chip is required, whose chip answered
/// this read's challenge.
pub(crate) struct Seated {
    /// The verified tag.
    pub(crate) tag: Tag,
    /// The chip's state, when `cartridge.chip_required`.
    pub(crate) chip: Option<SeatedChip>,
}

/// The chip of a [`Seated`] cartridge.
pub(crate) struct SeatedChip {
    /// Its use counter when read.
    pub(crate) counter: u32,
    /// The tag thread, to advance the counter at the first arming.
    pub(crate) worker: ChipWorker,
}

/// Reads and checks the seated cartridge on the tag thread: the tag (`cartridge_missing`,
/// `tag_read_failed`), its signature under `trust` (the `tag_*` codes), and with
/// `chip_required` a challenge with a fresh nonce (`chip_challenge_failed`,
/// `cartridge_chip_unavailable`) and the use counter.
pub(crate) async fn read_seated(
    worker: &ChipWorker,
    trust: Arc<TrustStore>,
    chip_required: bool,
) -> Result<Seated, ApiError> {
    let (tag, counter) = worker
        .call(move |chip| check_seated(chip, &trust, chip_required))
        .await
        .map_err(|e| ApiError::new(500, ErrorCode::TagReadFailed, format!("tag reader: {e}")))??;
    Ok(Seated {
        tag,
        chip: counter.map(|counter| SeatedChip {
            counter,
            worker: worker.clone(),
        }),
    })
}

/// [`read_seated`]'s work on the tag thread.
pub(crate) fn check_seated(
    chip: &mut dyn CartridgeChip,
    trust: &TrustStore,
    chip_required: bool,
) -> Result<(Tag, Option<u32>), ApiError> {
    let image = chip
        .read_tag()
        .map_err(|e| {
            ApiError::new(
                503,
                ErrorCode::TagReadFailed,
                format!("cannot read the cartridge tag: {e}"),
            )
        })?
        .ok_or_else(|| {
            ApiError::conflict(
                ErrorCode::CartridgeMissing,
                "no cartridge tag answers: seat a cartridge",
            )
        })?;
    let tag = cartridge::parse(&image, trust)?;
    if !chip_required {
        return Ok((tag, None));
    }
    // A fresh challenge each time: an answer recorded at another seat or arm is for another
    // nonce.
    let nonce = cartridge::fresh_nonce();
    let answer = chip.sign_challenge(&nonce).map_err(chip_fault)?;
    cartridge::verify_answer(tag.chip_key(), &nonce, &answer)?;
    let counter = chip.read_counter().map_err(chip_fault)?;
    Ok((tag, Some(counter)))
}

/// The refusal for a chip that did not answer.
pub(crate) fn chip_fault(fault: ChipFault) -> ApiError {
    match fault {
        ChipFault::Unsupported => ApiError::conflict(
            ErrorCode::CartridgeChipUnavailable,
            "this backend cannot reach the cartridge's authenticator chip, and \
             cartridge.chip_required is true",
        ),
        ChipFault::NoAnswer => ApiError::conflict(
            ErrorCode::ChipChallengeFailed,
            "the cartridge's chip did not answer the challenge: not the chip its tag was \
             signed for",
        ),
        ChipFault::Status(_) => ApiError::conflict(
            ErrorCode::ChipChallengeFailed,
            format!("the cartridge's chip refused the command: {fault}"),
        ),
        ChipFault::Corrupt(_) | ChipFault::Timeout | ChipFault::Bus(_) => ApiError::new(
            503,
            ErrorCode::TagReadFailed,
            format!("cannot reach the cartridge chip: {fault}"),
        ),
        ChipFault::Hal(e) => ApiError::new(
            503,
            ErrorCode::TagReadFailed,
            format!("cannot reach the cartridge chip: {e}"),
        ),
    }
}

/// The refusal for a cartridge whose chip counts a use this pen's session did not make.
pub(crate) fn used_on_chip(id: &str, counter: u32) -> ApiError {
    ApiError::conflict(
        ErrorCode::CartridgeUsedOnChip,
        format!(
            "cartridge {id} was already armed (its chip's use counter is {counter}): a \
             single-use cartridge is refused on every pen, whatever this pen's ledger says"
        ),
    )
}
