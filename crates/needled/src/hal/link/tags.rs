//! Cartridge tag reads and chip commands through the pen (the tag and the authenticator chip
//! are on the pen's I2C bus).

use std::path::PathBuf;
use std::sync::mpsc::{self, Sender, SyncSender};
use std::time::Duration;

use needle_core::units::Micros;
use needle_link::{ChipAnswer, ChipCommand};

use crate::hal::ChipFault;

use super::{Driver, Phase};

/// How long a tag read waits for the pen.
pub(super) const TAG_PATIENCE: Duration = Duration::from_millis(1_000);
/// A tag read is asked again this often until answered.
const TAG_RETRY: Micros = Micros(50_000);

/// How long a chip command waits for the pen: an ATECC608's Sign takes up to about 50 ms,
/// and a request the pen answers busy is asked again.
pub(super) const CHIP_PATIENCE: Duration = Duration::from_millis(2_000);

pub(super) type TagAnswer = Option<Vec<u8>>;
/// A chip command and where its answer goes.
pub(super) type ChipJob = (ChipCommand, Sender<ChipAnswer>);

/// Reads the seated cartridge's tag and runs its chip's commands through the pen (both are on
/// the pen's I2C bus).
pub struct LinkTags {
    pub(super) requests: SyncSender<Sender<TagAnswer>>,
    pub(super) chip_requests: SyncSender<ChipJob>,
    pub(super) device: PathBuf,
}

impl LinkTags {
    /// Runs `command` on the chip through the pen and waits for its answer.
    fn chip(&self, command: ChipCommand) -> Result<ChipAnswer, ChipFault> {
        let unanswered = || {
            ChipFault::Hal(crate::hal::HalError::device(
                self.device.display().to_string(),
                "link.device",
                "the pen did not answer a cartridge chip command (link down?)",
            ))
        };
        let (reply, answer) = mpsc::channel();
        self.chip_requests
            .try_send((command, reply))
            .map_err(|_| unanswered())?;
        match answer.recv_timeout(CHIP_PATIENCE) {
            Ok(ChipAnswer::NoAnswer) => Err(ChipFault::NoAnswer),
            Ok(ChipAnswer::Status(status)) => Err(ChipFault::Status(status)),
            Ok(ChipAnswer::Unsupported) => Err(ChipFault::Unsupported),
            Ok(ChipAnswer::Busy) | Err(_) => Err(unanswered()),
            Ok(answer) => Ok(answer),
        }
    }

    fn counter(&self, command: ChipCommand) -> Result<u32, ChipFault> {
        match self.chip(command)? {
            ChipAnswer::Counter(n) => Ok(n),
            _ => Err(ChipFault::Corrupt(
                "the pen answered a counter command with no counter",
            )),
        }
    }
}

impl crate::hal::CartridgeChip for LinkTags {
    fn read_tag(&mut self) -> Result<Option<Vec<u8>>, crate::hal::HalError> {
        let unanswered = || {
            crate::hal::HalError::device(
                self.device.display().to_string(),
                "link.device",
                "the pen did not answer a tag read (link down?)",
            )
        };
        let (reply, answer) = mpsc::channel();
        self.requests.try_send(reply).map_err(|_| unanswered())?;
        answer.recv_timeout(TAG_PATIENCE).map_err(|_| unanswered())
    }

    fn sign_challenge(&mut self, nonce: &[u8; 32]) -> Result<Vec<u8>, ChipFault> {
        match self.chip(ChipCommand::Sign(*nonce))? {
            ChipAnswer::Signed { r, s } => Ok([r, s].concat()),
            _ => Err(ChipFault::Corrupt(
                "the pen answered a challenge with no signature",
            )),
        }
    }

    fn read_counter(&mut self) -> Result<u32, ChipFault> {
        self.counter(ChipCommand::ReadCounter)
    }

    fn advance_counter(&mut self) -> Result<u32, ChipFault> {
        self.counter(ChipCommand::AdvanceCounter)
    }
}

/// A chip command sent to the pen, waiting for its answer.
pub(super) struct ChipWait {
    request: u32,
    command: ChipCommand,
    reply: Sender<ChipAnswer>,
    asked_at: Micros,
    first_asked: Micros,
}

pub(super) struct TagWait {
    pub(super) request: u8,
    pub(super) reply: Sender<TagAnswer>,
    asked_at: Micros,
}

impl Driver {
    /// Tag reads: new ones asked now, unanswered ones asked again; given up on by the
    /// reader's own timeout (its reply channel closes).
    pub(super) fn ask_tags(&mut self, now: Micros) {
        if self.phase != Phase::Up {
            // Dropping the replies tells the readers the pen is out of reach.
            self.tags_waiting.clear();
            while self.tag_queue.try_recv().is_ok() {}
            return;
        }
        while let Ok(reply) = self.tag_queue.try_recv() {
            let request = self.next_tag_request;
            self.next_tag_request = request.wrapping_add(1);
            self.link.read_tag(request);
            self.tags_waiting.push(TagWait {
                request,
                reply,
                asked_at: now,
            });
        }
        self.tags_waiting
            .retain(|w| now.since(w.asked_at) < Micros(TAG_PATIENCE.as_micros() as u64));
        for w in &mut self.tags_waiting {
            if now.since(w.asked_at) >= TAG_RETRY {
                self.link.read_tag(w.request);
                w.asked_at = now;
            }
        }
    }

    /// Chip commands, one at a time: a new one asked now under a new request number, an
    /// unanswered one asked again under the same number (the pen runs a number once), one the
    /// pen answered busy asked again under a new number; given up on after the caller's
    /// patience.
    pub(super) fn ask_chip(&mut self, now: Micros) {
        let patience = Micros(CHIP_PATIENCE.as_micros() as u64);
        if self
            .chip_waiting
            .as_ref()
            .is_some_and(|w| now.since(w.first_asked) >= patience || self.phase != Phase::Up)
        {
            // Dropping the reply tells the caller the chip is out of reach.
            self.chip_waiting = None;
        }
        if self.phase != Phase::Up {
            while self.chip_queue.try_recv().is_ok() {}
            return;
        }
        if self.chip_waiting.is_none() {
            if let Ok((command, reply)) = self.chip_queue.try_recv() {
                let request = self.next_chip_request;
                self.next_chip_request = request.wrapping_add(1);
                self.link.chip(request, command);
                self.chip_waiting = Some(ChipWait {
                    request,
                    command,
                    reply,
                    asked_at: now,
                    first_asked: now,
                });
            }
        }
        if let Some(w) = &mut self.chip_waiting {
            if now.since(w.asked_at) >= TAG_RETRY {
                self.link.chip(w.request, w.command);
                w.asked_at = now;
            }
        }
    }

    /// The pen's answer to chip request `request`.
    pub(super) fn chip_answered(&mut self, request: u32, answer: ChipAnswer, now: Micros) {
        let Some(w) = self.chip_waiting.as_mut().filter(|w| w.request == request) else {
            return;
        };
        if answer == ChipAnswer::Busy {
            // Still running an earlier request (of a host before this one): a new number,
            // asked at the next retry.
            w.request = self.next_chip_request;
            self.next_chip_request = self.next_chip_request.wrapping_add(1);
            w.asked_at = now;
            return;
        }
        if let Some(w) = self.chip_waiting.take() {
            let _ = w.reply.send(answer);
        }
    }
}
