//! [`Chip`]: the seated cartridge's authenticator chip as the pen's `main` drives it (an
//! ATECC608 on the pen's I2C bus on hardware). The pen only relays: the host sends the
//! challenge and judges the answer.

use needle_link::{ChipAnswer, ChipCommand};

/// The cartridge chip's driver. A chip command takes milliseconds (an ATECC608's Sign about
/// 50 ms), far longer than a tick, so it is started once and polled each tick until done: a
/// driver never blocks the tick.
pub trait Chip {
    /// Starts `command`. `Err` is the answer at once (no chip bus, no part answering).
    fn start(&mut self, command: ChipCommand) -> Result<(), ChipAnswer>;

    /// The started command's answer once it is done; `None` while it runs. A driver answers
    /// within the command's maximum execution time (a chip that does not is
    /// [`ChipAnswer::NoAnswer`] or its error [`ChipAnswer::Status`]): until it does, the link
    /// answers every other request [`ChipAnswer::Busy`].
    fn poll(&mut self) -> Option<ChipAnswer>;
}

/// A pen without a chip bus: every command is answered [`ChipAnswer::Unsupported`].
#[derive(Debug, Default, Clone, Copy)]
pub struct NoChip;

impl Chip for NoChip {
    fn start(&mut self, _: ChipCommand) -> Result<(), ChipAnswer> {
        Err(ChipAnswer::Unsupported)
    }

    fn poll(&mut self) -> Option<ChipAnswer> {
        None
    }
}
