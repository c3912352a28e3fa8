//! The frame format on the byte stream, and a decoder that resynchronises after noise.
//!
//! A frame is a body, COBS-encoded, followed by one `0x00` sync byte. COBS leaves no zero
//! inside a frame, so after any noise the receiver starts afresh at the next `0x00`.
//!
//! ```text
//! body = len: u8 | seq: u8 | payload: [u8; len] | crc: u32 (little endian)
//! ```
//!
//! - `len`: the payload's length, checked against what arrived (a dropped or doubled byte
//!   inside a frame changes the length).
//! - `seq`: the sender's sequence number ([`crate::host`] numbers its reliable messages; the
//!   pen numbers every frame, for whoever reads the wire; the host orders telemetry by the
//!   pen's clock inside it, which no gap in reception makes ambiguous). There is no
//!   `ack` field: the pen's verdicts acknowledge the host's numbered messages one by one, and
//!   nothing the pen sends is acknowledged.
//! - `payload`: one message ([`crate::message`]), postcard-encoded, except telemetry, which
//!   has its own compact layout ([`crate::telemetry`]).
//! - `crc`: CRC-32C (Castagnoli) of `len | seq | payload`, table-driven 16 bytes at a time.
//!   We chose CRC-32C over Klipper's CRC-16: four bytes a frame buy a 2^-32 chance that a
//!   corrupted frame passes instead of 2^-16, and CRC-32C keeps Hamming distance 6 at our
//!   frame lengths.
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

use crc::{Crc, Table, CRC_32_ISCSI};

/// The sync byte that ends every frame.
pub const SYNC: u8 = 0x00;
/// Largest payload a frame carries.
pub const MAX_PAYLOAD: usize = 240;
/// Bytes of the body before the payload: `len` and `seq`.
pub const HEAD: usize = 2;
/// Bytes of the body around the payload: `len`, `seq` and the CRC.
pub const OVERHEAD: usize = HEAD + 4;
/// Largest body.
pub const MAX_BODY: usize = MAX_PAYLOAD + OVERHEAD;
/// Largest frame on the wire: the body with COBS's worst-case overhead, and the sync byte.
pub const MAX_ENCODED: usize = MAX_BODY + MAX_BODY / 254 + 1 + 1;

// Slice-by-16: 16 KiB of tables (in flash on an MCU), about 4x fewer instructions a byte
// than the 256-entry table.
const CRC: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&CRC_32_ISCSI);

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
    /// More bytes than a frame can hold came without a sync byte.
    Overlong,
    /// The bytes are not valid COBS.
    Framing,
    /// The body is shorter than a header and CRC, or its `len` disagrees with its size.
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

/// Encodes a frame whose payload `fill` writes in place (into the [`MAX_PAYLOAD`] bytes it is
/// given, returning how many it wrote, or `None` when it cannot) into `out`, COBS and sync
/// byte included; returns the bytes written to `out`. One copy: the body is built once and
/// COBS-encoded straight into `out` (the transmit queue's free space).
pub fn encode_with(
    header: Header,
    fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let mut body = [0u8; MAX_BODY];
    let (head, rest) = body.split_at_mut(HEAD);
    let room = rest
        .get_mut(..MAX_PAYLOAD)
        .ok_or(EncodeError::BufferTooSmall)?;
    let n = fill(room).ok_or(EncodeError::PayloadTooLong)?;
    let len = u8::try_from(n)
        .ok()
        .filter(|_| n <= MAX_PAYLOAD)
        .ok_or(EncodeError::PayloadTooLong)?;
    head.copy_from_slice(&[len, header.seq]);
    let end = HEAD + n;
    let content = body.get(..end).ok_or(EncodeError::PayloadTooLong)?;
    let crc = CRC.checksum(content).to_le_bytes();
    body.get_mut(end..end + 4)
        .ok_or(EncodeError::PayloadTooLong)?
        .copy_from_slice(&crc);
    let body = body.get(..end + 4).ok_or(EncodeError::BufferTooSmall)?;
    let n = cobs::try_encode(body, out).map_err(|_| EncodeError::BufferTooSmall)?;
    let sync = out.get_mut(n).ok_or(EncodeError::BufferTooSmall)?;
    *sync = SYNC;
    Ok(n + 1)
}

/// Collects bytes up to each sync byte and checks the frame they make.
pub struct Decoder {
    buf: [u8; MAX_ENCODED],
    len: usize,
    overlong: bool,
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
            overlong: false,
        }
    }

    /// Takes one byte. At a sync byte, returns the frame it ended, or why that was rejected;
    /// an empty frame (two sync bytes in a row, as a sender may send to flush noise) is
    /// skipped silently. Returns `None` within a frame.
    pub fn push(&mut self, byte: u8) -> Option<Result<Frame<'_>, Rejection>> {
        if byte != SYNC {
            match self.buf.get_mut(self.len) {
                Some(slot) if !self.overlong => {
                    *slot = byte;
                    self.len += 1;
                }
                _ => self.overlong = true,
            }
            return None;
        }
        let len = core::mem::take(&mut self.len);
        if core::mem::take(&mut self.overlong) {
            return Some(Err(Rejection::Overlong));
        }
        if len == 0 {
            return None;
        }
        let encoded = self.buf.get_mut(..len)?;
        Some(check(encoded))
    }
}

/// Decodes a COBS frame in place and checks its length and CRC.
fn check(encoded: &mut [u8]) -> Result<Frame<'_>, Rejection> {
    let n = cobs::decode_in_place(encoded).map_err(|_| Rejection::Framing)?;
    let body = encoded.get(..n).ok_or(Rejection::Framing)?;
    if body.len() < OVERHEAD {
        return Err(Rejection::Length);
    }
    let (content, crc) = body.split_at(body.len() - 4);
    let [len, seq] = *content.first_chunk::<HEAD>().ok_or(Rejection::Length)?;
    let payload = content.get(HEAD..).ok_or(Rejection::Length)?;
    if usize::from(len) != payload.len() {
        return Err(Rejection::Length);
    }
    let crc = u32::from_le_bytes(crc.try_into().map_err(|_| Rejection::Length)?);
    if CRC.checksum(content) != crc {
        return Err(Rejection::Crc);
    }
    Ok(Frame {
        header: Header { seq },
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(decode_all(&bytes)[0].is_err());
    }

    #[test]
    fn garbage_without_sync_is_counted_once_as_overlong() {
        let mut bytes = std::vec![0x55u8; MAX_ENCODED * 3];
        bytes.push(SYNC);
        bytes.extend(wire(4, b"ok"));
        assert_eq!(
            decode_all(&bytes),
            [Err(Rejection::Overlong), Ok((4, b"ok".to_vec()))]
        );
    }
}
