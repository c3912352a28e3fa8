//! The frame format on the byte stream, and a decoder that resynchronises after noise.
//!
//! Klipper's block framing (klippy docs/Protocol.md), with our CRC: the length comes first
//! and a sync byte ends every frame, and nothing is stuffed, so the sender writes a frame
//! straight into its transmit queue in one pass.
//!
//! ```text
//! frame = len: u8 | seq: u8 | payload: [u8; len] | crc: u32 (little endian) | sync: 0x7E
//! ```
//!
//! - `len`: the payload's length, at most [`MAX_PAYLOAD`]; the receiver takes exactly
//!   `len + 7` bytes as the frame and checks that the last is the sync byte.
//! - `seq`: the sender's sequence number ([`crate::host`] numbers its reliable messages, and
//!   its other frames carry the next number, which a heartbeat's meaning rests on; the
//!   pen numbers every frame, for whoever reads the wire; the host orders telemetry by the
//!   pen's clock inside it, which no gap in reception makes ambiguous). There is no
//!   `ack` field: the pen's verdicts acknowledge the host's numbered messages one by one, and
//!   nothing the pen sends is acknowledged.
//! - `payload`: one message ([`crate::message`]), postcard-encoded, except telemetry, which
//!   has its own compact layout ([`crate::telemetry`]).
//! - `crc`: CRC-32C (Castagnoli) of `len | seq | payload`, table-driven 8 bytes at a time
//!   ([`crate::crc32c`]).
//!   We chose CRC-32C over Klipper's CRC-16: four bytes a frame buy a 2^-32 chance that a
//!   corrupted frame passes instead of 2^-16, and CRC-32C keeps Hamming distance 6 at our
//!   frame lengths.
//!
//! The sync byte may also occur inside a frame (no stuffing), so it marks where a frame ends
//! only for a receiver that knows where the frame began. A receiver in step reads the length
//! and takes that many bytes; when a frame fails (a length over [`MAX_PAYLOAD`], no sync byte
//! where the length says the frame ends) it has lost its place and discards bytes up to the
//! next sync byte, then starts afresh. A sync byte inside a payload can make it start at the
//! wrong place: that frame fails its checks too and it discards again, so it is back in step
//! at most a few frames after the noise stops (Klipper's receiver works the same way). A
//! frame whose sync byte is where it should be but whose CRC fails leaves it in step.
//!
//! ```
//! use needle_link::frame::{encode, Decoder, Header};
//! let mut wire = [0u8; needle_link::frame::MAX_ENCODED];
//! let n = encode(Header { seq: 7 }, b"hello", &mut wire).unwrap();
//! let mut decoder = Decoder::new();
//! let mut got = None;
//! for b in &wire[..n] {
//!     if let Some(Ok(frame)) = decoder.push(*b) {
//!         got = Some((frame.header, frame.payload.len()));
//!     }
//! }
//! assert_eq!(got, Some((Header { seq: 7 }, 5)));
//! ```

use crate::crc32c;

/// The sync byte that ends every frame (Klipper's).
pub const SYNC: u8 = 0x7E;
/// Largest payload a frame carries.
pub const MAX_PAYLOAD: usize = 240;
/// Bytes of the frame before the payload: `len` and `seq`.
pub const HEAD: usize = 2;
/// Bytes of the frame after the payload: the CRC and the sync byte.
pub(crate) const TAIL: usize = 4 + 1;
/// Bytes of the frame around the payload: `len`, `seq`, the CRC and the sync byte.
pub const OVERHEAD: usize = HEAD + TAIL;
/// Largest frame on the wire.
pub const MAX_ENCODED: usize = MAX_PAYLOAD + OVERHEAD;

/// The frame's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The sender's sequence number.
    pub seq: u8,
}

/// A frame that passed every check.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Its header.
    pub header: Header,
    /// Its payload, still postcard-encoded.
    pub payload: &'a [u8],
}

/// Why a frame could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The payload is longer than [`MAX_PAYLOAD`].
    PayloadTooLong,
    /// The output buffer is too small.
    BufferTooSmall,
}

/// Why received bytes were rejected. Every rejection is counted by the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// More bytes than a frame can hold were discarded, looking for a sync byte.
    Overlong,
    /// No sync byte where the frame's length says it ends.
    Framing,
    /// The frame's `len` is over [`MAX_PAYLOAD`].
    Length,
    /// The CRC does not match.
    Crc,
    /// The frame was sound but its payload is not a message this side knows.
    Decode,
}

/// Encodes a frame into `out`; returns the number of bytes written, sync byte included.
pub fn encode(header: Header, payload: &[u8], out: &mut [u8]) -> Result<usize, EncodeError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(EncodeError::PayloadTooLong);
    }
    encode_with(
        header,
        |room| {
            room.get_mut(..payload.len())?.copy_from_slice(payload);
            Some(payload.len())
        },
        out,
    )
}

/// Encodes a frame whose payload `fill` writes in place (into at most [`MAX_PAYLOAD`] bytes
/// of `out` it is given, returning how many it wrote, or `None` when it cannot) into `out`;
/// returns the bytes written to `out`, sync byte included. No copy and no stuffing: the
/// payload is written where it goes on the wire (the transmit queue's free space) and the
/// length, CRC and sync byte around it.
pub fn encode_with(
    header: Header,
    fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let room = out.len().saturating_sub(OVERHEAD).min(MAX_PAYLOAD);
    let n = {
        let space = out
            .get_mut(HEAD..HEAD + room)
            .ok_or(EncodeError::BufferTooSmall)?;
        match fill(space) {
            Some(n) if n <= room => n,
            _ if room < MAX_PAYLOAD => return Err(EncodeError::BufferTooSmall),
            _ => return Err(EncodeError::PayloadTooLong),
        }
    };
    let len = u8::try_from(n).map_err(|_| EncodeError::PayloadTooLong)?;
    let end = HEAD + n;
    let content = out.get_mut(..end).ok_or(EncodeError::BufferTooSmall)?;
    if let Some(head) = content.first_chunk_mut::<HEAD>() {
        *head = [len, header.seq];
    }
    let [a, b, c, d] = crc32c::checksum(content).to_le_bytes();
    *out.get_mut(end..end + TAIL)
        .and_then(|t| t.first_chunk_mut::<TAIL>())
        .ok_or(EncodeError::BufferTooSmall)? = [a, b, c, d, SYNC];
    Ok(end + TAIL)
}

/// [`encode_with`] into a buffer of exactly [`MAX_ENCODED`] bytes (the transmit queue's
/// free space when it has a whole frame's room, as it nearly always has): every offset is
/// then within the buffer by its type, so the frame is written with two checks of the
/// payload's length instead of one per part. Returns the bytes written, sync byte included,
/// or `None` when `fill` returned `None` or more than [`MAX_PAYLOAD`].
#[inline]
pub fn encode_into(
    header: Header,
    fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    out: &mut [u8; MAX_ENCODED],
) -> Option<usize> {
    let (head, rest) = out.split_first_chunk_mut::<HEAD>()?;
    let (space, _) = rest.split_first_chunk_mut::<MAX_PAYLOAD>()?;
    let n = fill(space).filter(|n| *n <= MAX_PAYLOAD)?;
    *head = [u8::try_from(n).ok()?, header.seq];
    let end = HEAD + n;
    let crc = crc32c::checksum(out.get(..end)?);
    let [a, b, c, d] = crc.to_le_bytes();
    *out.get_mut(end..)?.first_chunk_mut::<TAIL>()? = [a, b, c, d, SYNC];
    Some(end + TAIL)
}

/// Checks `whole`, the bytes of a frame of payload length `len` (`len` + [`OVERHEAD`] of
/// them, the first being `len`): its sync byte, then its CRC. A frame without its sync
/// byte ([`Rejection::Framing`]) means the receiver lost its place: `hunting` is set, as
/// [`Decoder::lost`] does (the decoder's length is 0 by then). [`Rejection::Crc`] leaves it
/// in step. ([`Rejection::Length`], for bytes of another length, is not reached; it sets
/// `hunting` too.)
#[inline]
fn check<'a>(whole: &'a [u8], len: usize, hunting: &mut bool) -> Result<Frame<'a>, Rejection> {
    let end = HEAD + len;
    let mut lost = |why| {
        *hunting = true;
        why
    };
    let Some((content, &[c0, c1, c2, c3, sync])) = whole.split_at_checked(end) else {
        return Err(lost(Rejection::Length));
    };
    if sync != SYNC {
        return Err(lost(Rejection::Framing));
    }
    if crc32c::checksum(content).to_le_bytes() != [c0, c1, c2, c3] {
        // The sync byte was where it belongs: still in step.
        return Err(Rejection::Crc);
    }
    let (seq, payload) = match content {
        [_, seq, payload @ ..] => (*seq, payload),
        _ => (0, &[][..]),
    };
    Ok(Frame {
        header: Header { seq },
        payload,
    })
}

/// Collects each frame's bytes as its length says and checks the frame they make; after a
/// failed frame, discards bytes up to the next sync byte.
pub struct Decoder {
    buf: [u8; MAX_ENCODED],
    len: usize,
    /// Whether it lost its place and is discarding up to a sync byte.
    hunting: bool,
    /// Bytes discarded while hunting.
    discarded: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder waiting for a frame.
    pub const fn new() -> Self {
        Self {
            buf: [0; MAX_ENCODED],
            len: 0,
            hunting: false,
            discarded: 0,
        }
    }

    /// Takes one byte. When it completes a frame, returns the frame, or why that was
    /// rejected; a run of more than [`MAX_ENCODED`] bytes discarded looking for a sync byte
    /// is one [`Rejection::Overlong`]. Returns `None` within a frame.
    pub fn push(&mut self, byte: u8) -> Option<Result<Frame<'_>, Rejection>> {
        if self.hunting {
            if byte != SYNC {
                self.discarded = self.discarded.saturating_add(1);
                return None;
            }
            self.hunting = false;
            let discarded = core::mem::take(&mut self.discarded);
            return (discarded > MAX_ENCODED).then_some(Err(Rejection::Overlong));
        }
        let Some(slot) = self.buf.get_mut(self.len) else {
            // Not reached: a frame is checked as soon as its last byte is in.
            return Some(Err(self.lost(Rejection::Length)));
        };
        *slot = byte;
        self.len += 1;
        let len = usize::from(self.buf.first().copied().unwrap_or(0));
        if len > MAX_PAYLOAD {
            return Some(Err(self.lost(Rejection::Length)));
        }
        if self.len < len + OVERHEAD {
            return None;
        }
        Some(self.complete(len))
    }

    /// Takes bytes up to the first that [`Decoder::push`] would return something for, all
    /// at once: the bytes of a frame in step are copied in one go, and bytes discarded while
    /// hunting are skipped in one scan. Returns how many bytes it took and what `push`
    /// would have returned for the last of them, so a caller loops until it has passed all
    /// its bytes. Exactly `push` byte by byte, in fewer instructions a byte. A whole frame at
    /// the start of `bytes`, in step (nearly every frame a pen receives, each in a read of its
    /// own), is checked where it lies and its payload borrowed from `bytes`: not copied.
    #[inline]
    pub fn push_slice<'a>(
        &'a mut self,
        bytes: &'a [u8],
    ) -> (usize, Option<Result<Frame<'a>, Rejection>>) {
        if self.len == 0 && !self.hunting {
            let len = usize::from(bytes.first().copied().unwrap_or(u8::MAX));
            if let Some(whole) = bytes.get(..len + OVERHEAD).filter(|_| len <= MAX_PAYLOAD) {
                return (whole.len(), Some(check(whole, len, &mut self.hunting)));
            }
        }
        self.push_slice_copying(bytes)
    }

    /// [`Decoder::push_slice`] of bytes that do not begin a whole frame in step: they go
    /// through the buffer.
    #[inline(never)]
    fn push_slice_copying(
        &mut self,
        bytes: &[u8],
    ) -> (usize, Option<Result<Frame<'_>, Rejection>>) {
        let mut at = 0;
        if self.hunting {
            let rest = bytes.get(at..).unwrap_or(&[]);
            let Some(sync) = rest.iter().position(|b| *b == SYNC) else {
                self.discarded = self.discarded.saturating_add(rest.len());
                return (bytes.len(), None);
            };
            self.discarded = self.discarded.saturating_add(sync);
            at += sync + 1;
            self.hunting = false;
            let discarded = core::mem::take(&mut self.discarded);
            if discarded > MAX_ENCODED {
                return (at, Some(Err(Rejection::Overlong)));
            }
        }
        let Some(&first) = bytes.get(at) else {
            return (at, None);
        };
        if self.len == 0 {
            // A frame's first byte, its length.
            self.len = 1;
            if let Some(slot) = self.buf.first_mut() {
                *slot = first;
            }
            at += 1;
            if usize::from(first) > MAX_PAYLOAD {
                return (at, Some(Err(self.lost(Rejection::Length))));
            }
        }
        let len = usize::from(self.buf.first().copied().unwrap_or(0));
        let size = len + OVERHEAD;
        let rest = bytes.get(at..).unwrap_or(&[]);
        let take = size.saturating_sub(self.len).min(rest.len());
        let (Some(into), Some(from)) = (
            self.buf.get_mut(self.len..self.len + take),
            rest.get(..take),
        ) else {
            // Not reached: `size` is at most `MAX_ENCODED`, the buffer's length.
            return (at, Some(Err(self.lost(Rejection::Length))));
        };
        into.copy_from_slice(from);
        self.len += take;
        at += take;
        if self.len < size {
            return (at, None);
        }
        (at, Some(self.complete(len)))
    }

    /// Checks the frame of payload length `len` whose bytes are all in.
    fn complete(&mut self, len: usize) -> Result<Frame<'_>, Rejection> {
        self.len = 0;
        check(
            self.buf.get(..len + OVERHEAD).unwrap_or(&[]),
            len,
            &mut self.hunting,
        )
    }

    /// The frame failed where the decoder thought it began: discard to the next sync byte.
    fn lost(&mut self, why: Rejection) -> Rejection {
        self.len = 0;
        self.hunting = true;
        why
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn wire(seq: u8, payload: &[u8]) -> std::vec::Vec<u8> {
        let mut out = [0u8; MAX_ENCODED];
        let n = encode(Header { seq }, payload, &mut out).unwrap();
        out[..n].to_vec()
    }

    fn decode_all(bytes: &[u8]) -> std::vec::Vec<Result<(u8, std::vec::Vec<u8>), Rejection>> {
        let mut d = Decoder::new();
        bytes
            .iter()
            .filter_map(|b| {
                d.push(*b)
                    .map(|r| r.map(|f| (f.header.seq, f.payload.to_vec())))
            })
            .collect()
    }

    type Owned = Result<(u8, std::vec::Vec<u8>), Rejection>;

    fn owned(r: Result<Frame<'_>, Rejection>) -> Owned {
        r.map(|f| (f.header.seq, f.payload.to_vec()))
    }

    /// What `push` returns for `bytes` one at a time, with the byte each result came at.
    fn decode_bytewise(bytes: &[u8]) -> std::vec::Vec<(usize, Owned)> {
        let mut d = Decoder::new();
        bytes
            .iter()
            .enumerate()
            .filter_map(|(i, b)| d.push(*b).map(|r| (i, owned(r))))
            .collect()
    }

    /// What `push_slice` returns for `bytes` given in chunks of the lengths `cuts` cycles
    /// through, with the byte each result came at.
    fn decode_sliced(bytes: &[u8], cuts: &[usize]) -> std::vec::Vec<(usize, Owned)> {
        let mut d = Decoder::new();
        let mut got = std::vec::Vec::new();
        let mut at = 0;
        for cut in cuts.iter().cycle() {
            if at >= bytes.len() {
                break;
            }
            let chunk = &bytes[at..(at + cut.max(&1)).min(bytes.len())];
            let mut i = 0;
            while i < chunk.len() {
                let (took, r) = d.push_slice(&chunk[i..]);
                assert!(took > 0 && i + took <= chunk.len(), "took {took}");
                i += took;
                if let Some(r) = r {
                    got.push((at + i - 1, owned(r)));
                }
            }
            at += chunk.len();
        }
        got
    }

    proptest! {
        #[test]
        fn push_slice_is_push_byte_by_byte(
            parts in proptest::collection::vec(
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..40),
                    proptest::collection::vec(any::<u8>(), 0..30)
                        .prop_map(|p| wire(p.len() as u8, &p)),
                    proptest::collection::vec(prop_oneof![Just(SYNC), any::<u8>()], 0..300),
                ],
                0..12,
            ),
            cuts in proptest::collection::vec(1usize..300, 1..8),
        ) {
            let bytes: std::vec::Vec<u8> = parts.concat();
            let one_by_one = decode_bytewise(&bytes);
            prop_assert_eq!(decode_sliced(&bytes, &cuts), one_by_one);
        }
    }

    #[test]
    fn push_slice_counts_overlong_discards_as_push_does_at_the_boundary() {
        for discarded in [
            MAX_ENCODED - 1,
            MAX_ENCODED,
            MAX_ENCODED + 1,
            3 * MAX_ENCODED,
        ] {
            // A length over the largest payload loses the place; the garbage after it is
            // discarded up to the sync byte, then a good frame.
            let mut bytes = std::vec![MAX_PAYLOAD as u8 + 1];
            bytes.extend(std::iter::repeat_n(0x55, discarded));
            bytes.push(SYNC);
            bytes.extend(wire(8, b"after"));
            let one_by_one = decode_bytewise(&bytes);
            for cuts in [&[1][..], &[7], &[1_000], &[3, 250, 1]] {
                assert_eq!(
                    decode_sliced(&bytes, cuts),
                    one_by_one,
                    "{discarded} {cuts:?}"
                );
            }
            let overlong = one_by_one
                .iter()
                .any(|(_, r)| *r == Err(Rejection::Overlong));
            assert_eq!(overlong, discarded > MAX_ENCODED, "{discarded}");
        }
    }

    #[test]
    fn push_slice_takes_a_whole_frame_at_once_and_stops_after_it() {
        let mut bytes = wire(5, b"first");
        let first = bytes.len();
        bytes.extend(wire(6, b"second"));
        let mut d = Decoder::new();
        let (took, r) = d.push_slice(&bytes);
        assert_eq!(
            (took, r.map(owned)),
            (first, Some(Ok((5, b"first".to_vec()))))
        );
        let (took, r) = d.push_slice(&bytes[first..]);
        assert_eq!(
            (took, r.map(owned)),
            (bytes.len() - first, Some(Ok((6, b"second".to_vec()))))
        );
    }

    #[test]
    fn a_frame_round_trips_with_zeros_in_its_payload() {
        let got = decode_all(&wire(9, &[0, 1, 0, 0, 255]));
        assert_eq!(got, [Ok((9, std::vec![0, 1, 0, 0, 255]))]);
    }

    #[test]
    fn the_largest_payload_fits_and_one_more_byte_is_refused() {
        let big = [0xAAu8; MAX_PAYLOAD];
        assert_eq!(decode_all(&wire(1, &big)), [Ok((1, big.to_vec()))]);
        let mut out = [0u8; MAX_ENCODED];
        assert_eq!(
            encode(Header { seq: 0 }, &[0u8; MAX_PAYLOAD + 1], &mut out),
            Err(EncodeError::PayloadTooLong)
        );
    }

    #[test]
    fn encode_into_writes_the_bytes_encode_writes_and_refuses_an_overlong_fill() {
        let payload: std::vec::Vec<u8> = (0..=MAX_PAYLOAD).map(|i| (i * 31) as u8).collect();
        for n in 0..=MAX_PAYLOAD {
            let p = &payload[..n];
            let mut fixed = [0u8; MAX_ENCODED];
            let got = encode_into(
                Header { seq: n as u8 },
                |room| {
                    room.get_mut(..n)?.copy_from_slice(p);
                    Some(n)
                },
                &mut fixed,
            )
            .unwrap();
            assert_eq!(&fixed[..got], &wire(n as u8, p)[..], "payload of {n}");
        }
        let mut fixed = [0u8; MAX_ENCODED];
        assert_eq!(
            encode_into(Header { seq: 0 }, |_| Some(MAX_PAYLOAD + 1), &mut fixed),
            None
        );
        assert_eq!(encode_into(Header { seq: 0 }, |_| None, &mut fixed), None);
    }

    #[test]
    fn a_flipped_bit_is_rejected_and_the_next_frame_is_received() {
        let mut bytes = wire(1, b"first");
        bytes[3] ^= 0x10;
        bytes.extend(wire(2, b"second"));
        let got = decode_all(&bytes);
        assert!(got[0].is_err());
        assert_eq!(got[1], Ok((2, b"second".to_vec())));
    }

    #[test]
    fn a_dropped_byte_is_rejected() {
        let mut bytes = wire(1, b"payload");
        bytes.remove(4);
        // The frame is one byte short: it is rejected when the next bytes complete it.
        bytes.extend(wire(2, b"next"));
        assert!(decode_all(&bytes)[0].is_err());
    }

    #[test]
    fn garbage_without_sync_is_counted_once_as_overlong() {
        let mut bytes = std::vec![0x55u8; MAX_ENCODED * 3];
        bytes.push(SYNC);
        bytes.extend(wire(4, b"ok"));
        // The first garbage byte reads as a length, its frame has no sync byte where it
        // should end; the rest is discarded up to the sync byte, counted once.
        assert_eq!(
            decode_all(&bytes),
            [
                Err(Rejection::Framing),
                Err(Rejection::Overlong),
                Ok((4, b"ok".to_vec()))
            ]
        );
    }

    #[test]
    fn a_sync_byte_inside_a_payload_and_a_length_of_the_sync_byte_are_plain_data() {
        let with_sync = [SYNC, 1, SYNC, SYNC];
        let long = [SYNC; SYNC as usize];
        let mut bytes = wire(1, &with_sync);
        bytes.extend(wire(2, &long));
        assert_eq!(
            decode_all(&bytes),
            [Ok((1, with_sync.to_vec())), Ok((2, long.to_vec()))]
        );
    }

    #[test]
    fn a_dropped_byte_costs_at_most_the_next_frame_and_the_decoder_is_back_in_step() {
        let mut bytes = wire(1, b"first");
        bytes.remove(4);
        for seq in 2..6 {
            bytes.extend(wire(seq, b"later"));
        }
        let got = decode_all(&bytes);
        assert_eq!(got[0], Err(Rejection::Framing));
        let ok: std::vec::Vec<u8> = got
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|f| f.0)
            .collect();
        assert_eq!(ok, [3, 4, 5]);
    }

    #[test]
    fn a_length_over_the_largest_payload_is_rejected_at_once() {
        let mut bytes = std::vec![MAX_PAYLOAD as u8 + 1, SYNC];
        bytes.extend(wire(3, b"next"));
        assert_eq!(
            decode_all(&bytes),
            [Err(Rejection::Length), Ok((3, b"next".to_vec()))]
        );
    }
}
