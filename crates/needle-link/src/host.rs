//! [`HostLink`]: the host's end of the link.
//!
//! Numbered messages go out with consecutive sequence numbers, at most [`WINDOW`] unanswered
//! at a time; every one stays in flight until its verdict comes back, and all in flight are
//! sent again in order (go-back-N) when the oldest has waited `retransmit_after`. The pen
//! applies each number once and answers a repeat with the verdict it kept, so the host hands
//! each verdict to its caller exactly once. Telemetry is not acknowledged: a frame older than
//! one already received is dropped (newest wins).

use needle_core::units::Micros;
use needle_core::Telemetry;

use crate::clock::ClockSync;
use crate::counters::Counters;
use crate::frame::{self, Decoder, Header, Rejection};
use crate::message::{
    ChipAnswer, ChipCommand, HostMessage, Outcome, PenId, PenMessage, Reliable, TagImage,
    PROTOCOL_VERSION, TELEMETRY_TAG,
};
pub use crate::pen::WINDOW;
use crate::telemetry::{self, Key, Unusable, ANCHOR_FOR};

/// Bytes the transmit queue holds.
pub const TX_QUEUE: usize = 4096;

/// What the pen said, for the host's caller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FromPen {
    /// The pen's answer to [`HostLink::identify`].
    Identity {
        /// Its protocol version.
        version: u16,
        /// Its serial number.
        pen: PenId,
        /// The hash of the configuration it runs, if configured.
        config_hash: Option<u32>,
        /// The next sequence number it expects.
        next_seq: u8,
        /// The pen's clock when it answered.
        pen_time: Micros,
    },
    /// The verdict on a numbered message, once per message.
    Verdict {
        /// The message's number.
        seq: u8,
        /// What became of it.
        outcome: Outcome,
        /// The pen's tick count when it applied it.
        tick: u64,
        /// The pen's clock when it applied it.
        at: Micros,
        /// The host time the message was first sent at.
        sent: Micros,
    },
    /// Newer telemetry than any before.
    Telemetry(Telemetry),
    /// A delta telemetry frame from a key frame this end does not have (it was lost):
    /// unusable, but the pen is configured and sending.
    Unanchored,
    /// A clock probe's answer (already added to [`HostLink::clock`]).
    Clock {
        /// The pen's clock.
        pen_time: Micros,
    },
    /// The pen's link counters.
    Counters(Counters),
    /// The answer to [`HostLink::read_tag`].
    Tag {
        /// The request's number.
        request: u8,
        /// The tag's image, or `None` when no tag answers.
        image: Option<TagImage>,
    },
    /// The answer to [`HostLink::chip`] (a repeat's too: match it by `request`).
    Chip {
        /// The request's number.
        request: u32,
        /// The chip's answer.
        answer: ChipAnswer,
    },
}

/// Why a numbered message was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// [`WINDOW`] messages are already waiting for their verdicts.
    WindowFull,
    /// The handshake has not given the pen's next sequence number yet.
    NotStarted,
    /// The transmit queue is full (the serial port is not draining).
    QueueFull,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    seq: u8,
    message: Reliable,
    first_sent: Micros,
    last_sent: Micros,
}

/// The host's end of the link.
pub struct HostLink {
    decoder: Decoder,
    started: bool,
    next_seq: u8,
    in_flight: [Option<InFlight>; WINDOW as usize],
    retransmit_after: Micros,
    retransmissions: u32,
    /// The pen clock of the newest telemetry passed on: older telemetry is stale.
    newest: Option<Micros>,
    /// The last key telemetry frame and the host time it came: what delta frames are from.
    anchor: Option<(Key, Micros)>,
    counters: Counters,
    clock: ClockSync,
    tx: crate::queue::TxQueue<TX_QUEUE>,
}

impl HostLink {
    /// A link that resends unanswered messages after `retransmit_after`.
    pub fn new(retransmit_after: Micros) -> Self {
        Self {
            decoder: Decoder::new(),
            started: false,
            next_seq: 0,
            in_flight: [None; WINDOW as usize],
            retransmit_after,
            retransmissions: 0,
            newest: None,
            anchor: None,
            counters: Counters::default(),
            clock: ClockSync::new(),
            tx: crate::queue::TxQueue::new(),
        }
    }

    /// Queues an identify request (the first step of the handshake).
    pub fn identify(&mut self) {
        let _ = self.send(
            0,
            &HostMessage::Identify {
                version: PROTOCOL_VERSION,
            },
        );
    }

    /// Starts numbering at the pen's `next_seq` (from its [`FromPen::Identity`]); forgets
    /// anything in flight.
    pub fn start(&mut self, next_seq: u8) {
        self.started = true;
        self.next_seq = next_seq;
        self.in_flight = [None; WINDOW as usize];
    }

    /// Queues a heartbeat ([`HostMessage::Heartbeat`]): it refreshes the pen's dead-man once
    /// the pen has applied every numbered message sent before it. Not numbered and not
    /// answered: send the next one on time rather than this one again.
    pub fn heartbeat(&mut self) -> Result<(), SendError> {
        if !self.started {
            return Err(SendError::NotStarted);
        }
        if self.send(self.next_seq, &HostMessage::Heartbeat) {
            Ok(())
        } else {
            Err(SendError::QueueFull)
        }
    }

    /// Queues a clock probe (not a keep-alive: the pen's dead-man is fed by heartbeats and
    /// accepted commands).
    pub fn sync(&mut self, now: Micros) {
        let _ = self.send(self.next_seq, &HostMessage::Sync { host_time: now });
    }

    /// Asks for the cartridge's tag image; the answer is a [`FromPen::Tag`] with `request`.
    /// Not numbered: ask again when no answer comes.
    pub fn read_tag(&mut self, request: u8) {
        let _ = self.send(self.next_seq, &HostMessage::ReadTag { request });
    }

    /// Asks the cartridge's chip to run `command` as request `request`; the answer is a
    /// [`FromPen::Chip`] with `request`. Not numbered: ask again with the same `request` when
    /// no answer comes (the pen runs a request once and answers a repeat from memory), and
    /// with a new one for a new command.
    pub fn chip(&mut self, request: u32, command: ChipCommand) {
        let _ = self.send(self.next_seq, &HostMessage::Chip { request, command });
    }

    /// Sends a numbered message; returns its number.
    pub fn send_reliable(&mut self, message: Reliable, now: Micros) -> Result<u8, SendError> {
        if !self.started {
            return Err(SendError::NotStarted);
        }
        let seq = self.next_seq;
        let slot = usize::from(seq % WINDOW);
        if self.in_flight.get(slot).is_some_and(Option::is_some) {
            return Err(SendError::WindowFull);
        }
        if !self.send(seq, &HostMessage::Reliable(message)) {
            return Err(SendError::QueueFull);
        }
        if let Some(s) = self.in_flight.get_mut(slot) {
            *s = Some(InFlight {
                seq,
                message,
                first_sent: now,
                last_sent: now,
            });
        }
        self.next_seq = seq.wrapping_add(1);
        Ok(seq)
    }

    /// Numbered messages waiting for their verdicts.
    pub fn in_flight(&self) -> usize {
        self.in_flight.iter().flatten().count()
    }

    /// Resends everything in flight, oldest first, when the oldest has waited too long.
    pub fn poll(&mut self, now: Micros) {
        let overdue = self
            .in_flight
            .iter()
            .flatten()
            .any(|f| now.since(f.last_sent) >= self.retransmit_after);
        if !overdue {
            return;
        }
        for back in (1..=WINDOW).rev() {
            let seq = self.next_seq.wrapping_sub(back);
            let slot = usize::from(seq % WINDOW);
            let Some(mut f) = self.in_flight.get(slot).copied().flatten() else {
                continue;
            };
            if f.seq != seq || !self.send(seq, &HostMessage::Reliable(f.message)) {
                continue;
            }
            f.last_sent = now;
            self.retransmissions = self.retransmissions.saturating_add(1);
            if let Some(s) = self.in_flight.get_mut(slot) {
                *s = Some(f);
            }
        }
    }

    /// Messages sent again.
    pub fn retransmissions(&self) -> u32 {
        self.retransmissions
    }

    /// What was received and rejected so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The relation between the pen's clock and ours.
    pub fn clock(&self) -> &ClockSync {
        &self.clock
    }

    /// Takes one received byte at host time `now`; returns what the pen said when it
    /// completes a frame worth passing on.
    pub fn receive(&mut self, byte: u8, now: Micros) -> Option<FromPen> {
        let message = match self.decoder.push(byte)? {
            Err(why) => {
                self.counters.reject(why);
                return None;
            }
            Ok(frame) => match frame.payload.split_first() {
                Some((&TELEMETRY_TAG, compact)) => {
                    let anchor = self
                        .anchor
                        .as_ref()
                        .filter(|(_, at)| now.since(*at) <= ANCHOR_FOR)
                        .map(|(k, _)| k);
                    match telemetry::decode(compact, anchor) {
                        Ok((t, key)) => {
                            if let Some(k) = key {
                                self.anchor = Some((k, now));
                            }
                            PenMessage::Telemetry(t)
                        }
                        Err(Unusable::Malformed) => {
                            self.counters.reject(Rejection::Decode);
                            return None;
                        }
                        Err(Unusable::Unanchored) => {
                            self.counters.unanchored = self.counters.unanchored.saturating_add(1);
                            return Some(FromPen::Unanchored);
                        }
                    }
                }
                _ => match postcard::take_from_bytes::<PenMessage>(frame.payload) {
                    Ok((message, [])) => message,
                    _ => {
                        self.counters.reject(Rejection::Decode);
                        return None;
                    }
                },
            },
        };
        self.counters.frames = self.counters.frames.saturating_add(1);
        match message {
            PenMessage::Identity {
                version,
                pen,
                config_hash,
                next_seq,
                pen_time,
            } => {
                // The pen may have restarted: its clock and telemetry start again.
                self.newest = None;
                self.anchor = None;
                self.clock = ClockSync::new();
                if version != PROTOCOL_VERSION {
                    self.counters.version = self.counters.version.saturating_add(1);
                }
                Some(FromPen::Identity {
                    version,
                    pen,
                    config_hash,
                    next_seq,
                    pen_time,
                })
            }
            PenMessage::Verdict {
                seq,
                outcome,
                tick,
                at,
            } => {
                let slot = self.in_flight.get_mut(usize::from(seq % WINDOW))?;
                match slot.take_if(|f| f.seq == seq) {
                    Some(f) => Some(FromPen::Verdict {
                        seq,
                        outcome,
                        tick,
                        at,
                        sent: f.first_sent,
                    }),
                    None => {
                        self.counters.duplicates = self.counters.duplicates.saturating_add(1);
                        None
                    }
                }
            }
            PenMessage::Telemetry(t) => {
                // Newest wins by the pen's clock, which (unlike the 8-bit frame numbers) no
                // gap in reception makes ambiguous.
                if self.newest.is_none_or(|n| t.now > n) {
                    self.newest = Some(t.now);
                    Some(FromPen::Telemetry(t))
                } else {
                    self.counters.stale = self.counters.stale.saturating_add(1);
                    None
                }
            }
            PenMessage::Clock {
                host_time,
                pen_time,
            } => {
                self.clock.add(host_time, pen_time, now);
                Some(FromPen::Clock { pen_time })
            }
            PenMessage::Counters(c) => Some(FromPen::Counters(c)),
            PenMessage::Tag { request, image } => Some(FromPen::Tag { request, image }),
            PenMessage::Chip { request, answer } => Some(FromPen::Chip { request, answer }),
        }
    }

    fn send(&mut self, seq: u8, message: &HostMessage) -> bool {
        self.tx.push_with(frame::MAX_ENCODED, |room| {
            frame::encode_with(
                Header { seq },
                |payload| postcard::to_slice(message, payload).ok().map(|p| p.len()),
                room,
            )
            .ok()
        })
    }

    /// The queued bytes, oldest first.
    pub fn pending(&self) -> &[u8] {
        self.tx.pending()
    }

    /// Drops the first `n` queued bytes, once the serial port took them.
    pub fn consume(&mut self, n: usize) {
        self.tx.consume(n);
    }
}
