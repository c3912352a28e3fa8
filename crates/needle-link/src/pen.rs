//! [`PenLink`]: the pen's end of the link.
//!
//! It checks frames, keeps numbered messages in order and exactly once, remembers the verdicts
//! of the last [`WINDOW`] messages so a retransmitted one gets its verdict again without being
//! applied twice, and queues the pen's frames for the serial port. What a message *does* is
//! the dispatcher's business (needle-pen): the link hands it [`Received`] events and the
//! dispatcher answers through [`PenLink::verdict`], [`PenLink::identity`] and the rest.
//!
//! Every [`Received`] is a valid frame from an identified host of our protocol version. Only
//! two refresh the controller's dead-man, through the commands the controller accepts: a
//! [`Received::Heartbeat`] (the link passes one on only when the pen has applied every
//! numbered message the host sent before it) and a [`Received::Command`].

use needle_core::units::Micros;
use needle_core::{Command, ControllerConfig};

use crate::counters::Counters;
use crate::frame::{self, Decoder, Frame, Header, Rejection};
use crate::message::{
    self, ChipAnswer, ChipCommand, HostMessage, Outcome, PenId, PenMessage, Reliable, TagImage,
    PROTOCOL_VERSION, TELEMETRY_TAG,
};
use crate::telemetry::{self, Fields, Key, Step, KEY_EVERY, KEY_PERIOD};

/// Most numbered messages in flight (the host's window); verdicts of this many are kept.
pub const WINDOW: u8 = 8;
/// Bytes the transmit queue holds.
pub const TX_QUEUE: usize = 4096;

/// A valid frame from the host, for the dispatcher.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Received {
    /// The host asks who the pen is: answer with [`PenLink::identity`].
    Identify,
    /// The next numbered message, a command, to apply now and answer with
    /// [`PenLink::verdict`].
    Command {
        /// Its number.
        seq: u8,
        /// The command.
        command: Command,
    },
    /// The next numbered message, a configuration: take it with
    /// [`PenLink::take_configuration`] (kept there, so this event stays small enough to
    /// pass by value each frame), apply it now and answer with [`PenLink::verdict`].
    Configure {
        /// Its number.
        seq: u8,
        /// The pen sends telemetry every this many ticks.
        telemetry_every: u16,
    },
    /// A heartbeat sent after exactly the numbered messages the pen has applied: apply the
    /// controller's heartbeat command now. It gets no answer. A heartbeat sent after
    /// numbered messages the pen has not seen (one was lost) comes as [`Received::Ahead`].
    Heartbeat,
    /// A clock probe: answer with [`PenLink::clock`].
    Sync {
        /// The host's time in the probe.
        host_time: Micros,
    },
    /// The host asks for the cartridge's tag: answer with [`PenLink::tag`].
    ReadTag {
        /// The request's number.
        request: u8,
    },
    /// A new chip request: run it once and answer with [`PenLink::chip_answer`] (now or
    /// when the chip is done). Its repeats never come here: the link answers them from the
    /// kept answer, or drops them while the answer is not in.
    Chip {
        /// The request's number.
        request: u32,
        /// What to run.
        command: ChipCommand,
    },
    /// A numbered message seen before: dropped, its verdict already resent.
    Duplicate,
    /// A numbered message ahead of the next expected: dropped; the host will resend.
    Ahead,
}

#[derive(Debug, Clone, Copy)]
struct Kept {
    seq: u8,
    outcome: Outcome,
    tick: u64,
    at: Micros,
}

/// The pen's end of the link.
pub struct PenLink {
    pen: PenId,
    decoder: Decoder,
    /// The next sequence number expected from the host.
    expected: u8,
    /// Whether the host identified itself with our protocol version.
    host_identified: bool,
    kept: [Option<Kept>; WINDOW as usize],
    tx: Tx,
    /// The last key telemetry frame sent, and until when (pen clock, exclusive) delta
    /// frames may follow it: [`KEY_PERIOD`] after it. `None` sends one next.
    key: Option<(Key, Micros)>,
    /// Telemetry frames since that key.
    since_key: u16,
    /// The next key frame's number.
    next_key: u8,
    /// The [`Fields::revision`] at which the status and rare numbers were last seen equal to
    /// the key's: while it holds, delta frames skip them.
    same_since: Option<u32>,
    /// What the clock and tick count advance by between telemetry frames.
    step: Step,
    /// The configuration of the latest [`Received::Configure`], until taken.
    configuration: Option<ControllerConfig>,
    /// The latest chip request and its answer once in (the host runs one at a time).
    chip: Option<(u32, Option<ChipAnswer>)>,
    counters: Counters,
}

impl PenLink {
    /// The link of the pen with serial number `pen`, waiting for a host.
    pub fn new(pen: PenId) -> Self {
        Self {
            pen,
            decoder: Decoder::new(),
            expected: 0,
            host_identified: false,
            kept: [None; WINDOW as usize],
            tx: Tx {
                queue: crate::queue::TxQueue::new(),
                seq: 0,
                dropped: 0,
            },
            key: None,
            since_key: 0,
            next_key: 0,
            same_since: None,
            step: Step::DEFAULT,
            configuration: None,
            chip: None,
            counters: Counters::default(),
        }
    }

    /// What was received and rejected so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Frames dropped because the transmit queue was full.
    pub fn tx_dropped(&self) -> u32 {
        self.tx.dropped
    }

    /// Whether a host of our version has identified itself since power-up.
    pub fn host_identified(&self) -> bool {
        self.host_identified
    }

    /// Takes received bytes up to the first that completes a valid host frame; returns how
    /// many it took and that frame's event, or all of them and `None`. One call per batch
    /// of bytes, not per byte: most bytes complete nothing, and the decoder takes a frame's
    /// bytes in one copy ([`Decoder::push_slice`]).
    #[inline]
    pub fn receive_some(&mut self, bytes: &[u8]) -> (usize, Option<Received>) {
        let mut at = 0;
        while let Some(rest) = bytes.get(at..).filter(|r| !r.is_empty()) {
            let (took, got) = self.decoder.push_slice(rest);
            at += took;
            let event = match got {
                None => continue,
                // The most frequent message, without the general parse.
                Some(Ok(Frame { header, payload })) if message::is_heartbeat(payload) => {
                    self.heartbeat(header.seq)
                }
                Some(got) => {
                    let parsed = parse(got);
                    self.accept(parsed)
                }
            };
            if let Some(event) = event {
                return (at, Some(event));
            }
        }
        (bytes.len(), None)
    }

    /// Takes one received byte; returns an event when it completes a valid host frame.
    #[inline]
    pub fn receive(&mut self, byte: u8) -> Option<Received> {
        let parsed = parse(self.decoder.push(byte)?);
        self.accept(parsed)
    }

    /// Counts a frame or its rejection; returns the event of a valid host frame.
    fn accept(&mut self, parsed: Result<(Header, HostMessage), Rejection>) -> Option<Received> {
        let (header, message) = match parsed {
            Ok(parsed) => parsed,
            Err(why) => {
                self.counters.reject(why);
                return None;
            }
        };
        self.counters.frames = self.counters.frames.saturating_add(1);
        match message {
            HostMessage::Identify { version } => {
                self.host_identified = version == PROTOCOL_VERSION;
                if !self.host_identified {
                    self.counters.version = self.counters.version.saturating_add(1);
                }
                // Answered either way, so the host learns the pen's version.
                Some(Received::Identify)
            }
            _ if self.unidentified() => None,
            HostMessage::Sync { host_time } => Some(Received::Sync { host_time }),
            HostMessage::ReadTag { request } => Some(Received::ReadTag { request }),
            HostMessage::Chip { request, command } => self.chip_request(request, command),
            HostMessage::Reliable(message) => Some(self.sequence(header.seq, message)),
            HostMessage::Heartbeat => Some(self.heartbeat_after(header.seq)),
        }
    }

    /// [`PenLink::accept`] of a heartbeat frame numbered `seq`, by the shortest path: a
    /// heartbeat is most of what the host sends.
    #[inline(always)]
    fn heartbeat(&mut self, seq: u8) -> Option<Received> {
        self.counters.frames = self.counters.frames.saturating_add(1);
        if self.unidentified() {
            return None;
        }
        Some(self.heartbeat_after(seq))
    }

    /// Whether no host of our version has identified itself; a frame of any message but
    /// `Identify` is then counted against the version (here) and dropped (by the caller).
    #[inline(always)]
    fn unidentified(&mut self) -> bool {
        if self.host_identified {
            return false;
        }
        self.counters.version = self.counters.version.saturating_add(1);
        true
    }

    /// A heartbeat numbered `seq`, the host's next number (it has sent every one below it):
    /// passed on when the pen has applied exactly those, dropped and counted otherwise.
    #[inline(always)]
    fn heartbeat_after(&mut self, seq: u8) -> Received {
        if seq == self.expected {
            return Received::Heartbeat;
        }
        self.counters.out_of_order = self.counters.out_of_order.saturating_add(1);
        Received::Ahead
    }

    /// A chip request: new ones go to the dispatcher, repeats get the kept answer, and
    /// another while one is still running is answered [`ChipAnswer::Busy`] here (the running
    /// one stays the one whose answer is kept).
    fn chip_request(&mut self, request: u32, command: ChipCommand) -> Option<Received> {
        match self.chip {
            Some((latest, answer)) if latest == request => {
                self.counters.duplicates = self.counters.duplicates.saturating_add(1);
                if let Some(answer) = answer {
                    self.send(&PenMessage::Chip { request, answer });
                }
                None
            }
            Some((_, None)) => {
                let answer = ChipAnswer::Busy;
                self.send(&PenMessage::Chip { request, answer });
                None
            }
            _ => {
                self.chip = Some((request, None));
                Some(Received::Chip { request, command })
            }
        }
    }

    /// Answers chip request `request` (from [`Received::Chip`]) and keeps the answer for its
    /// repeats. An answer to a request a new handshake has since forgotten is dropped.
    pub fn chip_answer(&mut self, request: u32, answer: ChipAnswer) {
        match &mut self.chip {
            Some((latest, kept)) if *latest == request => *kept = Some(answer),
            _ => return,
        }
        self.send(&PenMessage::Chip { request, answer });
    }

    fn sequence(&mut self, seq: u8, message: Reliable) -> Received {
        if seq == self.expected {
            self.expected = self.expected.wrapping_add(1);
            return match message {
                Reliable::Command(command) => Received::Command { seq, command },
                Reliable::Configure {
                    config,
                    telemetry_every,
                } => {
                    self.configuration = Some(config);
                    Received::Configure {
                        seq,
                        telemetry_every,
                    }
                }
            };
        }
        let behind = self.expected.wrapping_sub(seq);
        if (1..=WINDOW).contains(&behind) {
            self.counters.duplicates = self.counters.duplicates.saturating_add(1);
            let kept = self
                .kept
                .get(usize::from(seq % WINDOW))
                .copied()
                .flatten()
                .filter(|k| k.seq == seq);
            if let Some(k) = kept {
                self.send_verdict(k);
            }
            Received::Duplicate
        } else {
            self.counters.out_of_order = self.counters.out_of_order.saturating_add(1);
            Received::Ahead
        }
    }

    /// The configuration of the latest [`Received::Configure`], once.
    pub fn take_configuration(&mut self) -> Option<ControllerConfig> {
        self.configuration.take()
    }

    /// Answers the numbered message `seq` (from [`Received::Command`] or
    /// [`Received::Configure`]) and keeps the answer
    /// for its retransmissions. `tick` and `at` are the pen's tick count and clock.
    pub fn verdict(&mut self, seq: u8, outcome: Outcome, tick: u64, at: Micros) {
        let kept = Kept {
            seq,
            outcome,
            tick,
            at,
        };
        if let Some(slot) = self.kept.get_mut(usize::from(seq % WINDOW)) {
            *slot = Some(kept);
        }
        self.send_verdict(kept);
    }

    fn send_verdict(&mut self, k: Kept) {
        if k.outcome == Outcome::Command(Ok(())) {
            // The common verdict, an accepted command, written by hand.
            self.tx
                .queue(|room| message::encode_accepted(k.seq, k.tick, k.at, room));
            return;
        }
        self.send(&PenMessage::Verdict {
            seq: k.seq,
            outcome: k.outcome,
            tick: k.tick,
            at: k.at,
        });
    }

    /// Answers [`Received::Identify`] at pen time `now`; `config_hash` is the hash of the
    /// configuration in force. The next telemetry frame is a full one, for the new host.
    pub fn identity(&mut self, config_hash: Option<u32>, now: Micros) {
        self.key = None;
        // A new host numbers its chip requests afresh: nothing kept answers them.
        self.chip = None;
        self.send(&PenMessage::Identity {
            version: PROTOCOL_VERSION,
            pen: self.pen,
            config_hash,
            next_seq: self.expected,
            pen_time: now,
        });
    }

    /// Answers [`Received::Sync`] with the pen's clock now.
    pub fn clock(&mut self, host_time: Micros, pen_time: Micros) {
        self.tx
            .queue(|room| message::encode_clock(host_time, pen_time, room));
    }

    /// Answers [`Received::ReadTag`] with the seated cartridge's tag image, if any.
    pub fn tag(&mut self, request: u8, image: Option<TagImage>) {
        self.send(&PenMessage::Tag { request, image });
    }

    /// Sets what the clock and tick count advance by between telemetry frames (the tick
    /// period times the decimation, and the decimation), which delta frames' predictions use;
    /// the next frame is a key frame carrying it. [`Step::DEFAULT`] until set.
    pub fn set_step(&mut self, step: Step) {
        if step != self.step {
            self.step = step;
            self.key = None;
        }
    }

    /// Queues a telemetry frame in the compact layout ([`crate::telemetry`]): a key frame
    /// first after a handshake and then every [`KEY_EVERY`] frames or [`KEY_PERIOD`] of the
    /// telemetry's clock, delta frames from the last key between.
    ///
    /// `t` is a [`Telemetry`](needle_core::Telemetry) snapshot or, on the pen, the controller itself
    /// ([`telemetry::Fields`]), read where its state is.
    pub fn telemetry<F: Fields + ?Sized>(&mut self, t: &F) {
        let fresh = matches!(
            &self.key,
            Some((_, until)) if self.since_key < KEY_EVERY && t.now() < *until
        );
        if fresh {
            self.delta_frame(t);
        } else {
            self.key_frame(t);
        }
    }

    /// A delta frame from the key (fresh: [`PenLink::telemetry`] checked): the frame of
    /// nearly every tick, encoded with the key's numbers known to be there, straight into
    /// the transmit queue.
    #[inline(always)]
    fn delta_frame<F: Fields + ?Sized>(&mut self, t: &F) {
        // By reference: a key is 144 bytes, not worth a copy a tick.
        let Some((key, _)) = &self.key else {
            return;
        };
        // `since_key` is below `KEY_EVERY`, under 256.
        let since = self.since_key as u8;
        let revision = t.revision();
        let known_same = revision.is_some() && revision == self.same_since;
        let in_place = self.tx.telemetry_in_place(|payload| {
            telemetry::encode_delta(t, key, since, known_same, payload)
        });
        let same = match in_place {
            Some((_, same)) => same,
            // No whole frame's room at the queue's end: the general path compacts it.
            None => self.delta_frame_compacting(t, known_same),
        };
        if let Some(same) = same {
            // Read at `revision`, against the key (a frame encoded but not queued saw them
            // just the same).
            self.same_since = if same { revision } else { None };
        }
        // Counted sent or not: the next frame's predictions are from the tick it is of.
        self.since_key += 1;
    }

    /// [`PenLink::delta_frame`]'s frame by the general path, which compacts the queue: out
    /// of line, so the common path keeps nothing of it in its registers.
    #[cold]
    #[inline(never)]
    fn delta_frame_compacting<F: Fields + ?Sized>(
        &mut self,
        t: &F,
        known_same: bool,
    ) -> Option<bool> {
        let (key, _) = self.key.as_ref()?;
        let since = self.since_key as u8;
        self.tx
            .queue_telemetry(|payload| telemetry::encode_delta(t, key, since, known_same, payload))
            .1
    }

    /// A key frame: after a handshake, and every [`KEY_EVERY`] frames or [`KEY_PERIOD`].
    #[inline(never)]
    fn key_frame<F: Fields + ?Sized>(&mut self, t: &F) {
        let number = self.next_key;
        // Read once, for the frame and for the key kept.
        let key = Key::of(t, number, self.step);
        let encode = |payload: &mut [u8; telemetry::MAX_LEN]| {
            Some((telemetry::encode_key(t, &key, payload)?, true))
        };
        let sent = match self.tx.telemetry_in_place(encode) {
            Some((sent, _)) => sent,
            // No whole frame's room at the queue's end: the general path compacts it.
            None => self.tx.queue_telemetry(encode).0,
        };
        if sent {
            // `now - at < KEY_PERIOD` as `now < at + KEY_PERIOD`: one compare a tick.
            self.key = Some((key, t.now().saturating_add(KEY_PERIOD)));
            self.since_key = 1;
            self.next_key = number.wrapping_add(1);
            // The new key's numbers are the ones just read.
            self.same_since = t.revision();
        } else {
            // No key frame went out: the old key (if any) is still the host's, and nothing
            // was compared against it.
            self.same_since = None;
        }
    }

    /// Queues a frame with the link's counters.
    pub fn send_counters(&mut self) {
        let counters = self.counters;
        self.tx
            .queue(|room| message::encode_counters(&counters, room));
    }

    /// Queues `message` as one frame; a frame that does not fit the queue is dropped whole
    /// and counted ([`PenLink::tx_dropped`]), never sent in part.
    pub fn send(&mut self, message: &PenMessage) {
        if let PenMessage::Telemetry(t) = message {
            return self.telemetry(t);
        }
        self.tx
            .queue(|room| postcard::to_slice(message, room).ok().map(|p| p.len()));
    }

    /// The queued bytes, oldest first.
    #[inline]
    pub fn pending(&self) -> &[u8] {
        self.tx.queue.pending()
    }

    /// Drops the first `n` queued bytes, once the serial port took them.
    #[inline]
    pub fn consume(&mut self, n: usize) {
        self.tx.queue.consume(n);
    }
}

/// The host message in a frame the decoder passed (or why there is none).
fn parse(got: Result<Frame<'_>, Rejection>) -> Result<(Header, HostMessage), Rejection> {
    let frame = got?;
    // A clock probe by hand (a heartbeat, the most frequent, never gets here from
    // `receive_some`: it takes its short path before this).
    if let Some(host_time) = message::sync_time(frame.payload) {
        return Ok((frame.header, HostMessage::Sync { host_time }));
    }
    match postcard::take_from_bytes::<HostMessage>(frame.payload) {
        Ok((message, [])) => Ok((frame.header, message)),
        _ => Err(Rejection::Decode),
    }
}

/// The pen's transmit side: the queue, the next frame's number and the frames dropped.
struct Tx {
    queue: crate::queue::TxQueue<TX_QUEUE>,
    seq: u8,
    dropped: u32,
}

/// Writes a telemetry frame's head and tail around the `n` payload bytes in `room`;
/// returns the frame's length.
#[inline(always)]
fn seal(room: &mut [u8; TELEMETRY_FRAME], seq: u8, n: usize) -> Option<usize> {
    if n > telemetry::MAX_LEN {
        return None;
    }
    let (head, _) = room.split_first_chunk_mut::<{ frame::HEAD + 1 }>()?;
    // n + 1 <= MAX_LEN + 1, under 256.
    *head = [(n + 1) as u8, seq, TELEMETRY_TAG];
    let end = frame::HEAD + 1 + n;
    let crc = crate::crc32c::checksum(room.get(..end)?);
    let [a, b, c, d] = crc.to_le_bytes();
    *room.get_mut(end..)?.first_chunk_mut::<{ frame::TAIL }>()? = [a, b, c, d, frame::SYNC];
    Some(end + frame::TAIL)
}

/// Bytes of a telemetry frame's room: the head, the tag, the longest compact payload and
/// the tail.
const TELEMETRY_FRAME: usize = frame::HEAD + 1 + telemetry::MAX_LEN + frame::TAIL;

impl Tx {
    /// Queues a telemetry frame written in place at the queue's end, when the end has a
    /// whole frame's room (`None` otherwise, and `encode` is not called): `encode` writes the
    /// compact payload into exactly [`telemetry::MAX_LEN`] bytes, where it goes in the frame,
    /// and returns its length and whether the status and rare numbers equal the key's; the
    /// frame's head (length, sequence number, tag) and tail (CRC, sync byte) are written
    /// around it, at offsets the room's type bounds. Returns whether the frame was queued,
    /// and `encode`'s answer if it gave one (a payload it refused is counted dropped).
    #[inline(always)]
    fn telemetry_in_place(
        &mut self,
        encode: impl FnOnce(&mut [u8; telemetry::MAX_LEN]) -> Option<(usize, bool)>,
    ) -> Option<(bool, Option<bool>)> {
        let room = self.queue.tail_chunk::<TELEMETRY_FRAME>()?;
        let encoded = {
            let (_, rest) = room.split_first_chunk_mut::<{ frame::HEAD + 1 }>()?;
            encode(rest.first_chunk_mut::<{ telemetry::MAX_LEN }>()?)
        };
        let Some((n, same)) = encoded else {
            self.dropped = self.dropped.saturating_add(1);
            return Some((false, None));
        };
        let seq = self.seq;
        let queued = match seal(room, seq, n) {
            Some(len) => {
                self.queue.commit(len);
                self.seq = seq.wrapping_add(1);
                true
            }
            None => {
                self.dropped = self.dropped.saturating_add(1);
                false
            }
        };
        // Encoded, queued or not: the payload saw the status and rare numbers just the same.
        Some((queued, Some(same)))
    }

    /// Queues a telemetry frame by the general path (which compacts the queue): `encode`
    /// writes the compact payload into exactly [`telemetry::MAX_LEN`] bytes and returns its
    /// length and whether the status and rare numbers equal the key's. Returns whether the
    /// frame was queued, and that answer if `encode` ran.
    fn queue_telemetry(
        &mut self,
        encode: impl FnOnce(&mut [u8; telemetry::MAX_LEN]) -> Option<(usize, bool)>,
    ) -> (bool, Option<bool>) {
        let mut same = None;
        let queued = self.queue(|room| {
            let (tag, rest) = room.split_first_mut()?;
            *tag = TELEMETRY_TAG;
            let (n, equal) = encode(rest.first_chunk_mut::<{ telemetry::MAX_LEN }>()?)?;
            same = Some(equal);
            Some(1 + n)
        });
        (queued, same)
    }

    /// Queues the frame whose payload `fill` writes, framed straight into the transmit
    /// queue; returns whether it was queued (a frame that does not fit is counted).
    fn queue(&mut self, fill: impl FnOnce(&mut [u8]) -> Option<usize>) -> bool {
        let header = Header { seq: self.seq };
        let queued = if self.queue.room() >= frame::MAX_ENCODED {
            self.queue
                .push_chunk::<{ frame::MAX_ENCODED }>(|room| frame::encode_into(header, fill, room))
                == Some(true)
        } else {
            // Nearly full: a short frame may still fit the room left.
            self.queue.push_with(frame::MAX_ENCODED, |room| {
                frame::encode_with(header, fill, room).ok()
            })
        };
        if queued {
            self.seq = self.seq.wrapping_add(1);
        } else {
            self.dropped = self.dropped.saturating_add(1);
        }
        queued
    }
}
