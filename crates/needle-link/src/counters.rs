//! [`Counters`]: every frame one end received, and every one it rejected, by reason.

use serde::{Deserialize, Serialize};

use crate::frame::Rejection;

/// Counts of what one end of the link received. Nothing is rejected without being counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counters {
    /// Frames accepted (sound and decoded).
    pub frames: u32,
    /// Runs of more bytes than a frame holds discarded while looking for a sync byte.
    pub overlong: u32,
    /// Frames without a sync byte where their length said they end.
    pub framing: u32,
    /// Frames whose length field was over the largest payload.
    pub length: u32,
    /// Frames whose CRC did not match.
    pub crc: u32,
    /// Sound frames whose payload was not a known message.
    pub decode: u32,
    /// Numbered messages received again (dropped; their verdict is resent).
    pub duplicates: u32,
    /// Numbered messages ahead of the next expected one (dropped; the sender resends), and
    /// heartbeats sent after numbered messages the pen had not applied (dropped; the next
    /// heartbeat stands for it).
    pub out_of_order: u32,
    /// Frames refused because the other end speaks another protocol version.
    pub version: u32,
    /// Telemetry frames older than one already received (dropped: newest wins).
    pub stale: u32,
    /// Compact telemetry frames with no recent key frame to complete them (dropped; the pen
    /// sends a key frame after each handshake and every `telemetry::KEY_EVERY` frames).
    pub unanchored: u32,
}

impl Counters {
    /// Counts a rejected frame.
    pub fn reject(&mut self, why: Rejection) {
        let counter = match why {
            Rejection::Overlong => &mut self.overlong,
            Rejection::Framing => &mut self.framing,
            Rejection::Length => &mut self.length,
            Rejection::Crc => &mut self.crc,
            Rejection::Decode => &mut self.decode,
        };
        *counter = counter.saturating_add(1);
    }

    /// Frames rejected as damaged (framing, length, CRC, decode, overlong).
    pub fn damaged(&self) -> u32 {
        [
            self.overlong,
            self.framing,
            self.length,
            self.crc,
            self.decode,
        ]
        .iter()
        .fold(0u32, |a, b| a.saturating_add(*b))
    }
}
