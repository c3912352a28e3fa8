//! The messages inside frames: what the host says to the pen and what the pen says back.
//!
//! The core's own `protocol` types travel inside them, encoded by serde, so a field the core
//! gains changes the encoding on both ends at once; [`PROTOCOL_VERSION`] and the
//! configuration hash ([`crate::config_hash`]) catch ends built from different sources.

use needle_core::units::Micros;
use needle_core::{Command, ControllerConfig, Rejected, Telemetry};
use serde::{Deserialize, Serialize};

/// The link protocol's version. Raise it with any change to a message's encoding.
pub const PROTOCOL_VERSION: u16 = 1;

/// A pen's identity: a serial number burned in at manufacture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PenId(pub [u8; 8]);

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
    /// A clock sync probe; also the host's keep-alive, so the pen's dead-man sees a quiet but
    /// healthy host.
    Sync {
        /// The host's clock when it sent this.
        host_time: Micros,
    },
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
    /// The controller after a tick. Not acknowledged: the host keeps the newest.
    Telemetry(Telemetry),
    /// The answer to a [`HostMessage::Sync`].
    Clock {
        /// The probe's host time, echoed.
        host_time: Micros,
        /// The pen's clock when it answered.
        pen_time: Micros,
    },
    /// The pen's link counters, sent now and then.
    Counters(crate::counters::Counters),
}
