//! The messages inside frames: what the host says to the pen and what the pen says back.
//!
//! The core's own `protocol` types travel inside them, encoded by serde, so a field the core
//! gains changes the encoding on both ends at once; [`PROTOCOL_VERSION`] and the
//! configuration hash ([`crate::config_hash`]) catch ends built from different sources.

use needle_core::units::Micros;
use needle_core::{Command, ControllerConfig, Rejected, Telemetry};
use serde::{Deserialize, Serialize};

use crate::counters::Counters;

/// The link protocol's version. Raise it with any change to a message's encoding.
pub const PROTOCOL_VERSION: u16 = 6;

/// A pen's identity: a serial number burned in at manufacture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PenId(pub [u8; 8]);

/// Bytes a cartridge tag image holds at most: the longest version-2 tag (158 bytes, a
/// factory-signed identity with the chip's public key), rounded up.
pub const TAG_BYTES: usize = 160;

/// The image of the seated cartridge's tag, as the pen read it. The host authenticates it;
/// the pen only carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagImage {
    len: u8,
    bytes: [u8; TAG_BYTES],
}

impl TagImage {
    /// An image of `bytes`, or `None` when longer than [`TAG_BYTES`].
    pub fn new(bytes: &[u8]) -> Option<Self> {
        let mut image = Self {
            len: u8::try_from(bytes.len()).ok()?,
            bytes: [0; TAG_BYTES],
        };
        image.bytes.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(image)
    }

    /// The image's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

impl Serialize for TagImage {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.as_bytes())
    }
}

impl<'de> Deserialize<'de> for TagImage {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl serde::de::Visitor<'_> for Bytes {
            type Value = TagImage;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, "at most {TAG_BYTES} bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<TagImage, E> {
                TagImage::new(v).ok_or_else(|| E::invalid_length(v.len(), &self))
            }
        }
        deserializer.deserialize_bytes(Bytes)
    }
}

/// A message from the host that must arrive exactly once, in order: it is numbered,
/// retransmitted until acknowledged, and its duplicates are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Reliable {
    /// Configures the pen's controller (once per pen power-up, as Klipper's
    /// `finalize_config`): the pen refuses a different configuration later.
    Configure {
        /// The controller's configuration.
        config: ControllerConfig,
        /// The pen sends telemetry every this many ticks (at least 1).
        telemetry_every: u16,
    },
    /// A command for the controller.
    Command(Command),
}

/// What the host sends.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum HostMessage {
    /// Asks the pen who it is. First of the handshake; keep it variant 0 so every version
    /// can read it.
    Identify {
        /// The host's [`PROTOCOL_VERSION`].
        version: u16,
    },
    /// A numbered message (the frame's `seq` is its number).
    Reliable(Reliable),
    /// A clock sync probe. It does not refresh the pen's dead-man: only a command the
    /// controller accepts does.
    Sync {
        /// The host's clock when it sent this.
        host_time: Micros,
    },
    /// Asks for the seated cartridge's tag image. Reading is idempotent, so this is not
    /// numbered: the host asks again if no answer comes.
    ReadTag {
        /// The host's number for this request, echoed.
        request: u8,
    },
    /// A command for the seated cartridge's authenticator chip (on the pen's bus), relayed
    /// by the pen. Not numbered with the reliable messages, but the pen runs each `request`
    /// number once: a repeat (the host asks again when no answer came) gets the kept answer,
    /// so a use counter advances once however often its request is sent.
    Chip {
        /// The host's number for this request, echoed; a new command takes a new number.
        request: u32,
        /// What to do.
        command: ChipCommand,
    },
    /// The host is alive, and has sent every numbered message below the frame's `seq`. The
    /// pen refreshes its controller's dead-man with it only when it has applied exactly
    /// those (the frame's `seq` is the next it expects): a heartbeat behind a lost command
    /// feeds nothing until the command is through, as when heartbeats were numbered
    /// commands. Not numbered, not answered and never resent: the next heartbeat, a few
    /// tens of milliseconds later, stands for a lost one. It takes no place in the window,
    /// and costs the pen no verdict frame.
    Heartbeat,
}

/// What the host asks of the cartridge's authenticator chip (an ATECC608 on the pen's I2C
/// bus on hardware): the pen relays it and the host judges the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChipCommand {
    /// Sign the challenge digest of this nonce with the chip's private key.
    Sign([u8; 32]),
    /// Read the monotonic use counter.
    ReadCounter,
    /// Advance the use counter by one; the answer is the new value.
    AdvanceCounter,
}

/// The chip's answer to a [`ChipCommand`], as the pen got it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChipAnswer {
    /// The signature `r ‖ s` of a [`ChipCommand::Sign`], in two halves.
    Signed {
        /// `r`.
        r: [u8; 32],
        /// `s`.
        s: [u8; 32],
    },
    /// The use counter (after the advance, for [`ChipCommand::AdvanceCounter`]).
    Counter(u32),
    /// The seated part did not answer as a chip (a memory-only copy, or no cartridge).
    NoAnswer,
    /// The chip answered this error status.
    Status(u8),
    /// The chip is still running another request: ask again with a new number later.
    Busy,
    /// This pen has no chip bus.
    Unsupported,
}

/// Why the pen refused a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigRefusal {
    /// The pen already runs another configuration, with this hash: restart the pen to
    /// change it.
    AlreadyConfigured(u32),
    /// The controller refused it as unsafe to run with (`ControllerConfig::validate`).
    Invalid,
}

/// What became of a numbered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The controller's verdict on a command.
    Command(Result<(), Rejected>),
    /// The configuration is in force; its hash.
    Configured(u32),
    /// The configuration was refused.
    ConfigRefused(ConfigRefusal),
    /// A command came before any configuration.
    NotConfigured,
}

/// What the pen sends.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum PenMessage {
    /// The answer to [`HostMessage::Identify`]. Keep it variant 0.
    Identity {
        /// The pen's [`PROTOCOL_VERSION`].
        version: u16,
        /// Its serial number.
        pen: PenId,
        /// The hash of the configuration it runs, if configured.
        config_hash: Option<u32>,
        /// The next sequence number it expects.
        next_seq: u8,
        /// The pen's clock when it answered: earlier than a pen time the host saw before
        /// means the pen restarted in between.
        pen_time: Micros,
    },
    /// What became of the numbered message `seq`; resent for a duplicate.
    Verdict {
        /// The message's number.
        seq: u8,
        /// What became of it.
        outcome: Outcome,
        /// The pen tick count when it was applied; the tick after it is the first to act on it.
        tick: u64,
        /// The pen's clock when it was applied.
        at: Micros,
    },
    /// The controller after a tick. Not acknowledged: the host keeps the newest. On the wire
    /// this variant's tag ([`TELEMETRY_TAG`]) is followed by the compact layout of
    /// [`crate::telemetry`], not by postcard.
    Telemetry(Telemetry),
    /// The answer to a [`HostMessage::Sync`].
    Clock {
        /// The probe's host time, echoed.
        host_time: Micros,
        /// The pen's clock when it answered.
        pen_time: Micros,
    },
    /// The pen's link counters, sent now and then.
    Counters(Counters),
    /// The answer to [`HostMessage::ReadTag`].
    Tag {
        /// The request's number.
        request: u8,
        /// The tag's image, or `None` when no tag answers (no cartridge).
        image: Option<TagImage>,
    },
    /// The answer to [`HostMessage::Chip`] `request`; resent for a repeat of it.
    Chip {
        /// The request's number.
        request: u32,
        /// The chip's answer.
        answer: ChipAnswer,
    },
}

/// The first payload byte of a telemetry frame: postcard's tag of [`PenMessage::Telemetry`].
pub const TELEMETRY_TAG: u8 = 2;

/// Postcard's tag of [`HostMessage::Sync`].
const SYNC_TAG: u8 = 2;
/// Postcard's tag of [`PenMessage::Clock`].
const CLOCK_TAG: u8 = 3;

/// Postcard's tag of [`PenMessage::Verdict`].
const VERDICT_TAG: u8 = 1;
/// Postcard's bytes of [`HostMessage::Heartbeat`].
const HEARTBEAT: [u8; 1] = [5];

/// Writes postcard's encoding of a [`PenMessage::Verdict`] of `Outcome::Command(Ok(()))`
/// into `out`, by hand: the verdict of nearly every command, and serde's path costs about
/// 300 instructions one. Returns the bytes written, or `None`
/// when `out` is too short.
pub(crate) fn encode_accepted(seq: u8, tick: u64, at: Micros, out: &mut [u8]) -> Option<usize> {
    let mut w = crate::telemetry::Writer { out, at: 0 };
    // Outcome::Command is variant 0, Ok variant 0, and `()` has no bytes.
    for b in [VERDICT_TAG, seq, 0, 0] {
        w.byte(b)?;
    }
    w.varint(tick)?;
    w.varint(at.0)?;
    Some(w.at)
}

/// Whether `payload` is exactly postcard's encoding of [`HostMessage::Heartbeat`], read by
/// hand (the most frequent host message).
pub(crate) fn is_heartbeat(payload: &[u8]) -> bool {
    payload == HEARTBEAT
}

/// Postcard's tag of [`PenMessage::Counters`].
const COUNTERS_TAG: u8 = 4;

/// Writes postcard's encoding of [`PenMessage::Counters`] into `out`, by hand: the pen sends
/// them every quarter second, and serde's path costs about 600 instructions a frame.
/// Returns the bytes written, or `None` when `out` is too short.
pub(crate) fn encode_counters(c: &Counters, out: &mut [u8]) -> Option<usize> {
    let mut w = crate::telemetry::Writer { out, at: 0 };
    w.byte(COUNTERS_TAG)?;
    // The fields in their declared order, as serde writes them. Named twice: taking the
    // struct apart names every field, so one added to `Counters` fails to compile here.
    let Counters {
        frames,
        overlong,
        framing,
        length,
        crc,
        decode,
        duplicates,
        out_of_order,
        version,
        stale,
        unanchored,
    } = *c;
    for v in [
        frames,
        overlong,
        framing,
        length,
        crc,
        decode,
        duplicates,
        out_of_order,
        version,
        stale,
        unanchored,
    ] {
        w.varint(u64::from(v))?;
    }
    Some(w.at)
}

/// Writes postcard's encoding of [`PenMessage::Clock`] into `out`, by hand: the pen answers
/// a probe every `link.sync_ms` (down to 1 ms), and serde's path costs it about 300
/// instructions a reply.
/// Returns the bytes written, or `None` when `out` is too short.
pub(crate) fn encode_clock(host_time: Micros, pen_time: Micros, out: &mut [u8]) -> Option<usize> {
    let mut w = crate::telemetry::Writer { out, at: 0 };
    w.byte(CLOCK_TAG)?;
    w.varint(host_time.0)?;
    w.varint(pen_time.0)?;
    Some(w.at)
}

/// The host time in `payload` when it is exactly postcard's encoding of a
/// [`HostMessage::Sync`], read by hand for the same reason; `None` for any other payload
/// (which then goes to postcard).
pub(crate) fn sync_time(payload: &[u8]) -> Option<Micros> {
    let (&SYNC_TAG, rest) = payload.split_first()? else {
        return None;
    };
    let mut r = crate::telemetry::Reader { bytes: rest };
    let t = r.varint(64).ok()?;
    r.bytes.is_empty().then_some(Micros(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hand_written_verdict_and_heartbeat_are_postcards_own() {
        for (seq, tick, at) in [(0, 0, 0), (255, 127, 128), (7, 36_000_123, u64::MAX)] {
            let mut ours = [0u8; 32];
            let n = encode_accepted(seq, tick, Micros(at), &mut ours).unwrap();
            let verdict = PenMessage::Verdict {
                seq,
                outcome: Outcome::Command(Ok(())),
                tick,
                at: Micros(at),
            };
            let theirs = postcard::to_slice(&verdict, &mut [0u8; 32])
                .unwrap()
                .to_vec();
            assert_eq!(&ours[..n], theirs.as_slice());
            assert_eq!(
                encode_accepted(seq, tick, Micros(at), &mut ours[..n - 1]),
                None
            );
        }
        let bytes = postcard::to_slice(&HostMessage::Heartbeat, &mut [0u8; 8])
            .unwrap()
            .to_vec();
        assert!(is_heartbeat(&bytes));
        // The numbered heartbeat command is an ordinary numbered message, not this.
        let numbered = HostMessage::Reliable(Reliable::Command(Command::Heartbeat));
        let bytes = postcard::to_slice(&numbered, &mut [0u8; 8])
            .unwrap()
            .to_vec();
        assert!(!is_heartbeat(&bytes));
        assert!(!is_heartbeat(&[5, 0]));
        assert!(!is_heartbeat(&[]));
    }

    #[test]
    fn the_hand_written_counters_are_postcards_own() {
        let mut c = Counters::default();
        for (i, v) in [0u32, 1, 127, 128, 16_384, u32::MAX]
            .into_iter()
            .cycle()
            .take(66)
            .enumerate()
        {
            // Each field through every size of varint, one field at a time.
            match i % 11 {
                0 => c.frames = v,
                1 => c.overlong = v,
                2 => c.framing = v,
                3 => c.length = v,
                4 => c.crc = v,
                5 => c.decode = v,
                6 => c.duplicates = v,
                7 => c.out_of_order = v,
                8 => c.version = v,
                9 => c.stale = v,
                _ => c.unanchored = v,
            }
            let mut ours = [0u8; 64];
            let n = encode_counters(&c, &mut ours).unwrap();
            let theirs = postcard::to_slice(&PenMessage::Counters(c), &mut [0u8; 64])
                .unwrap()
                .to_vec();
            assert_eq!(&ours[..n], theirs.as_slice(), "{c:?}");
            assert_eq!(encode_counters(&c, &mut ours[..n - 1]), None);
        }
    }

    #[test]
    fn the_hand_written_clock_and_sync_are_postcards_own() {
        for (a, b) in [(0, 0), (1, 127), (128, 16_383), (36_000_123_456, u64::MAX)] {
            let mut ours = [0u8; 32];
            let n = encode_clock(Micros(a), Micros(b), &mut ours).unwrap();
            let clock = PenMessage::Clock {
                host_time: Micros(a),
                pen_time: Micros(b),
            };
            let theirs = postcard::to_slice(&clock, &mut [0u8; 32]).unwrap().to_vec();
            assert_eq!(&ours[..n], theirs.as_slice());
            assert_eq!(encode_clock(Micros(a), Micros(b), &mut ours[..n - 1]), None);
            let sync = HostMessage::Sync {
                host_time: Micros(b),
            };
            let bytes = postcard::to_slice(&sync, &mut [0u8; 32]).unwrap().to_vec();
            assert_eq!(sync_time(&bytes), Some(Micros(b)));
            assert_eq!(sync_time(&bytes[..bytes.len() - 1]), None, "cut short");
            let mut long = bytes.clone();
            long.push(0);
            assert_eq!(sync_time(&long), None, "trailing bytes");
        }
        let identify = postcard::to_slice(&HostMessage::Identify { version: 2 }, &mut [0u8; 8])
            .unwrap()
            .to_vec();
        assert_eq!(sync_time(&identify), None);
        // Eleven bytes of varint: more than a u64.
        assert_eq!(
            sync_time(&[SYNC_TAG, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
            None
        );
    }
}
