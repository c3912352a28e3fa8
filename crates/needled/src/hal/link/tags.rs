//! Cartridge tag reads through the pen (its EEPROM is on the pen's I2C bus).

use std::path::PathBuf;
use std::sync::mpsc::{self, Sender, SyncSender};
use std::time::Duration;

use needle_core::units::Micros;

use super::{Driver, Phase};

/// How long a tag read waits for the pen.
pub(super) const TAG_PATIENCE: Duration = Duration::from_millis(1_000);
/// A tag read is asked again this often until answered.
const TAG_RETRY: Micros = Micros(50_000);

pub(super) type TagAnswer = Option<Vec<u8>>;

/// Reads the seated cartridge's tag through the pen (its EEPROM is on the pen's I2C bus).
pub struct LinkTags {
    pub(super) requests: SyncSender<Sender<TagAnswer>>,
    pub(super) device: PathBuf,
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
}
