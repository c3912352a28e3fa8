//! The cartridge's authenticator chip on real hardware: a blocking Microchip ATECC608(A/B)
//! driver on the embedded-hal 1.0 [`I2c`] and [`DelayNs`] traits, as the service's
//! [`CartridgeChip`].
//!
//! Written from the datasheet's command set, only the commands the pen needs:
//!
//! - **Wake**: SDA held low for at least 60 µs (tWLO) by a zero-length write to address 0x00
//!   (the address byte's eight low bit times are 80 µs at the 100 kHz the pen's bus must run
//!   at; the bus adapter must allow zero-length messages, as i2c-bcm2835 does), then tWHI
//!   (1.5 ms) until the chip listens; its wake response is `04 11 33 43` (count, status 0x11
//!   "awake", CRC). After each operation the chip is put to sleep (word address 0x01), which
//!   also clears TempKey, so a nonce never outlives the challenge it was loaded for.
//! - **Packets**: word address 0x03, count, opcode, param1, param2 (u16 little-endian), data,
//!   CRC-16 over count..data ([`crc16`]: polynomial 0x8005, bits taken LSB first, register
//!   MSB first, as the datasheet and cryptoauthlib's `atCRC`). Responses are count, data, CRC;
//!   a 4-byte response carries a status byte ([`status_name`]).
//! - While a command executes the chip does not acknowledge its address: the driver polls
//!   every millisecond up to the command's maximum execution time ([`Opcode::max_exec_ms`]),
//!   then gives up with [`ChipFault::Timeout`].
//! - **Read** (0x02) of the data slot holding the signed tag image in 32-byte blocks,
//!   **Nonce** (0x16) pass-through of the 32-byte challenge digest into TempKey, **Sign**
//!   (0x41) of the external message in TempKey with the configured key slot (64 bytes,
//!   `r ‖ s`), **Counter** (0x24) read (mode 0) and increment (mode 1).
//!
//! The chip signs [`crate::cartridge::challenge_digest`] itself, as the ECDSA message hash:
//! exactly what the sim chip signs with `sign_prehash`, so a real chip's answer verifies with
//! [`crate::cartridge::verify_answer`] like the sim's.
//!
//! Every error is a [`ChipFault`]; no byte from the bus can make this module panic (every
//! response is length- and CRC-checked before one of its bytes is believed).

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::{self, I2c};

use super::{CartridgeChip, ChipFault, HalError};
use crate::cartridge::{challenge_digest, NONCE_LEN, TAG_CAPACITY};

/// Word address of a command packet.
const WORD_COMMAND: u8 = 0x03;
/// Word address that puts the chip to sleep (clears TempKey).
const WORD_SLEEP: u8 = 0x01;
/// The wake response: count 4, status 0x11, CRC.
pub const WAKE_RESPONSE: [u8; 4] = [0x04, 0x11, 0x33, 0x43];
/// tWHI: from the wake token to the first transfer, in microseconds.
const WAKE_HIGH_US: u32 = 1_500;
/// Interval between response polls, in microseconds.
const POLL_US: u32 = 1_000;
/// A block of a data slot.
pub const BLOCK_LEN: usize = 32;
/// Length of a Sign answer (`r ‖ s`).
pub const SIGNATURE_LEN: usize = 64;
/// The ATECC608's monotonic counters count up to 2 097 151, then refuse to increment.
pub const COUNTER_MAX: u32 = 2_097_151;

/// Read param1: the data zone, 32 bytes per read.
const READ_DATA_32: u8 = 0x82;
/// Nonce mode 3: pass-through of a 32-byte input into TempKey.
const NONCE_PASS_THROUGH: u8 = 0x03;
/// Sign mode bit 7: sign the external message held in TempKey.
const SIGN_EXTERNAL: u8 = 0x80;
/// Counter mode 0: read.
const COUNTER_READ: u8 = 0x00;
/// Counter mode 1: increment and return the new value.
const COUNTER_INCREMENT: u8 = 0x01;

/// The commands this driver sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// Read (0x02).
    Read,
    /// Nonce (0x16).
    Nonce,
    /// Sign (0x41).
    Sign,
    /// Counter (0x24).
    Counter,
}

impl Opcode {
    /// The opcode byte.
    pub fn byte(self) -> u8 {
        match self {
            Opcode::Read => 0x02,
            Opcode::Nonce => 0x16,
            Opcode::Sign => 0x41,
            Opcode::Counter => 0x24,
        }
    }

    /// Maximum execution time in milliseconds (the ATECC608's table at the default clock
    /// divider, the figures cryptoauthlib uses for it; the 608A datasheet's are lower).
    pub fn max_exec_ms(self) -> u32 {
        match self {
            Opcode::Read => 5,
            Opcode::Nonce => 20,
            Opcode::Sign => 115,
            Opcode::Counter => 25,
        }
    }
}

/// What a response must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A 4-byte status packet with status 0x00 (Nonce).
    Success,
    /// `n` data bytes (Read 32, Sign 64, Counter 4).
    Data(usize),
}

impl Expect {
    /// The whole response length: count, data or status, CRC.
    pub fn packet_len(self) -> usize {
        match self {
            Expect::Success => 4,
            Expect::Data(n) => n.saturating_add(3),
        }
    }
}

/// The ATECC CRC-16 (cryptoauthlib's `atCRC`): polynomial 0x8005, initial value 0, each byte's
/// bits taken least significant first, no final xor. Sent little-endian.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        for bit in 0..8 {
            let data_bit = (byte >> bit) & 1;
            let crc_bit = u8::from(crc & 0x8000 != 0);
            crc <<= 1;
            if data_bit != crc_bit {
                crc ^= 0x8005;
            }
        }
    }
    crc
}

/// A command packet: word address 0x03, count, opcode, param1, param2 (LE), `data`, CRC (LE).
pub fn command_packet(opcode: Opcode, param1: u8, param2: u16, data: &[u8]) -> Vec<u8> {
    // count covers itself, opcode, param1, param2 (2), data and the CRC (2).
    let count = u8::try_from(data.len().saturating_add(7)).unwrap_or(u8::MAX);
    let [p2_lo, p2_hi] = param2.to_le_bytes();
    let mut packet = Vec::with_capacity(data.len().saturating_add(8));
    packet.extend_from_slice(&[WORD_COMMAND, count, opcode.byte(), param1, p2_lo, p2_hi]);
    packet.extend_from_slice(data);
    let crc = crc16(packet.get(1..).unwrap_or_default());
    packet.extend_from_slice(&crc.to_le_bytes());
    packet
}

/// The datasheet's name of a status byte.
pub fn status_name(status: u8) -> &'static str {
    match status {
        0x00 => "success",
        0x01 => "checkmac or verify miscompare",
        0x03 => "parse error",
        0x05 => "ECC fault",
        0x07 => "self-test error",
        0x08 => "health test error",
        0x0F => "execution error",
        0x11 => "after wake, before the first command",
        0xEE => "watchdog about to expire",
        0xFF => "CRC or communication error",
        _ => "unknown status",
    }
}

/// Checks a packet's length byte and CRC: the packet (count..CRC) is the first `buf[0]` bytes.
fn checked_packet(buf: &[u8]) -> Result<&[u8], ChipFault> {
    let count = usize::from(*buf.first().ok_or(ChipFault::Corrupt("empty response"))?);
    if count < 4 {
        return Err(ChipFault::Corrupt("response count below 4"));
    }
    let packet = buf
        .get(..count)
        .ok_or(ChipFault::Corrupt("response shorter than its count"))?;
    let (body, crc) = packet.split_at(count - 2);
    let sent = u16::from_le_bytes([
        *crc.first().ok_or(ChipFault::Corrupt("no CRC"))?,
        *crc.get(1).ok_or(ChipFault::Corrupt("no CRC"))?,
    ]);
    if crc16(body) != sent {
        return Err(ChipFault::Corrupt("response CRC mismatch"));
    }
    Ok(packet)
}

/// Parses a response read into `buf` (at least `expect.packet_len()` bytes were read): the
/// data bytes of a [`Expect::Data`] response, or nothing for a successful [`Expect::Success`].
/// A status packet is [`ChipFault::Status`]; a wrong length or CRC is [`ChipFault::Corrupt`].
/// Never panics, whatever `buf` holds; a `Data` answer is returned only with a matching CRC.
pub fn parse_response(buf: &[u8], expect: Expect) -> Result<&[u8], ChipFault> {
    let packet = checked_packet(buf)?;
    if packet.len() == 4 {
        let status = *packet.get(1).ok_or(ChipFault::Corrupt("no status byte"))?;
        return match (status, expect) {
            (0x00, Expect::Success) => Ok(&[]),
            (0x00, Expect::Data(_)) => Err(ChipFault::Corrupt("success status where data was due")),
            (other, _) => Err(ChipFault::Status(other)),
        };
    }
    if packet.len() != expect.packet_len() {
        return Err(ChipFault::Corrupt("response length is not the command's"));
    }
    packet
        .get(1..packet.len() - 2)
        .ok_or(ChipFault::Corrupt("response shorter than its count"))
}

/// Checks the chip's answer to a wake token.
pub fn check_wake(buf: &[u8; 4]) -> Result<(), ChipFault> {
    if *buf == WAKE_RESPONSE {
        return Ok(());
    }
    // A checked status packet with another status (a failed self-test, say) says so.
    let packet = checked_packet(buf)?;
    match packet.get(1) {
        Some(&status) if packet.len() == 4 => Err(ChipFault::Status(status)),
        _ => Err(ChipFault::Corrupt("not a wake response")),
    }
}

/// Bytes a data slot holds (slots 0–7: 36, slot 8: 416, slots 9–15: 72), or `None` for no
/// such slot.
pub fn slot_capacity(slot: u8) -> Option<usize> {
    match slot {
        0..=7 => Some(36),
        8 => Some(416),
        9..=15 => Some(72),
        _ => None,
    }
}

/// The Read address of block `block` of data slot `slot`.
pub fn data_address(slot: u8, block: u8) -> u16 {
    (u16::from(block) << 8) | (u16::from(slot & 0x0F) << 3)
}

/// Where the chip is and which slots and counter the pen uses
/// (`[hardware.<backend>.atecc608]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AteccSlots {
    /// 7-bit I2C address (0x60 from the factory).
    pub address: u8,
    /// The data slot holding the signed tag image (readable in the clear).
    pub tag_slot: u8,
    /// The slot of the chip's P-256 private key.
    pub key_slot: u8,
    /// The monotonic counter used as the use counter: 0 or 1.
    pub counter: u8,
}

/// A std [`DelayNs`]: sleeps the thread (never less than asked).
#[derive(Debug, Clone, Copy, Default)]
pub struct StdDelay;

impl DelayNs for StdDelay {
    fn delay_ns(&mut self, ns: u32) {
        std::thread::sleep(std::time::Duration::from_nanos(u64::from(ns)));
    }
}

/// An ATECC608 on an I2C bus, as the cartridge's [`CartridgeChip`].
#[derive(Debug)]
pub struct Atecc608<I2C, D> {
    i2c: I2C,
    delay: D,
    slots: AteccSlots,
    device: String,
    key: String,
}

/// Whether a bus error is a missing acknowledge.
fn is_nack<E: i2c::Error>(e: &E) -> bool {
    matches!(e.kind(), i2c::ErrorKind::NoAcknowledge(_))
}

fn bus<E: i2c::Error>(what: &str, e: &E) -> ChipFault {
    ChipFault::Bus(format!("{what}: {} ({e:?})", e.kind()))
}

impl<I2C: I2c, D: DelayNs> Atecc608<I2C, D> {
    /// A chip at `slots.address` on `i2c`; `device` and `key` name it in errors (such as
    /// `ATECC608 at 0x60 on /dev/i2c-1` and `hardware.linux.atecc608`).
    pub fn new(
        i2c: I2C,
        delay: D,
        slots: AteccSlots,
        device: impl Into<String>,
        key: impl Into<String>,
    ) -> Self {
        Self {
            i2c,
            delay,
            slots,
            device: device.into(),
            key: key.into(),
        }
    }

    /// The bus and delay, back.
    pub fn release(self) -> (I2C, D) {
        (self.i2c, self.delay)
    }

    /// Wakes the chip. A missing acknowledge of the wake response is [`ChipFault::NoAnswer`]
    /// (no chip seated).
    fn wake(&mut self) -> Result<(), ChipFault> {
        let mut last = ChipFault::NoAnswer;
        // A chip already awake ignores the token and answers with something else: put it to
        // sleep and wake it once more.
        for _ in 0..2 {
            // The wake token: addressing 0x00 holds SDA low for its eight bit times. A
            // zero-length write: 0x00 is the general call, which other parts on the bus (the
            // ADS1115) acknowledge, and the I2C specification forbids 0x00 as its second byte.
            // Whether anyone acknowledges is of no interest.
            let _ = self.i2c.write(0x00, &[]);
            self.delay.delay_us(WAKE_HIGH_US);
            let mut buf = [0u8; 4];
            match self.i2c.read(self.slots.address, &mut buf) {
                Err(e) if is_nack(&e) => return Err(ChipFault::NoAnswer),
                Err(e) => return Err(bus("wake response", &e)),
                Ok(()) => match check_wake(&buf) {
                    Ok(()) => return Ok(()),
                    Err(fault) => last = fault,
                },
            }
            self.sleep();
        }
        Err(last)
    }

    /// Puts the chip to sleep (clearing TempKey). A failure is left to the next wake.
    fn sleep(&mut self) {
        let _ = self.i2c.write(self.slots.address, &[WORD_SLEEP]);
    }

    /// Sends one command and polls for its response.
    fn execute(
        &mut self,
        opcode: Opcode,
        param1: u8,
        param2: u16,
        data: &[u8],
        expect: Expect,
    ) -> Result<Vec<u8>, ChipFault> {
        let packet = command_packet(opcode, param1, param2, data);
        self.i2c
            .write(self.slots.address, &packet)
            .map_err(|e| bus("command", &e))?;
        let mut buf = vec![0u8; expect.packet_len()];
        // The chip does not acknowledge while it executes; poll until its maximum time.
        for _ in 0..=opcode.max_exec_ms() {
            self.delay.delay_us(POLL_US);
            match self.i2c.read(self.slots.address, &mut buf) {
                Err(e) if is_nack(&e) => continue,
                Err(e) => return Err(bus("response", &e)),
                Ok(()) => return parse_response(&buf, expect).map(<[u8]>::to_vec),
            }
        }
        Err(ChipFault::Timeout)
    }

    /// Wakes the chip, runs `op`, and puts it back to sleep whatever `op` gave.
    fn session<T>(
        &mut self,
        op: impl FnOnce(&mut Self) -> Result<T, ChipFault>,
    ) -> Result<T, ChipFault> {
        self.wake()?;
        let out = op(self);
        self.sleep();
        out
    }

    /// Reads the tag image (the first [`TAG_CAPACITY`] bytes of the tag slot); `None` if no
    /// chip answers the wake token (no cartridge).
    pub fn read_image(&mut self) -> Result<Option<Vec<u8>>, ChipFault> {
        let slot = self.slots.tag_slot;
        if slot_capacity(slot).is_none_or(|c| c < TAG_CAPACITY) {
            return Err(ChipFault::Corrupt("the tag slot cannot hold a tag image"));
        }
        let blocks = u8::try_from(TAG_CAPACITY / BLOCK_LEN).unwrap_or(u8::MAX);
        let image = self.session(|chip| {
            let mut image = Vec::with_capacity(TAG_CAPACITY);
            for block in 0..blocks {
                let data = chip.execute(
                    Opcode::Read,
                    READ_DATA_32,
                    data_address(slot, block),
                    &[],
                    Expect::Data(BLOCK_LEN),
                )?;
                image.extend_from_slice(&data);
            }
            Ok(image)
        });
        match image {
            Err(ChipFault::NoAnswer) => Ok(None),
            other => other.map(Some),
        }
    }

    /// Signs `nonce`'s challenge digest: Nonce pass-through into TempKey, then Sign external
    /// with the key slot, in one wake so TempKey holds this challenge and no other.
    pub fn sign(&mut self, nonce: &[u8; NONCE_LEN]) -> Result<Vec<u8>, ChipFault> {
        let digest = challenge_digest(nonce);
        let key_slot = u16::from(self.slots.key_slot);
        self.session(|chip| {
            chip.execute(
                Opcode::Nonce,
                NONCE_PASS_THROUGH,
                0,
                &digest,
                Expect::Success,
            )?;
            chip.execute(
                Opcode::Sign,
                SIGN_EXTERNAL,
                key_slot,
                &[],
                Expect::Data(SIGNATURE_LEN),
            )
        })
    }

    /// Runs Counter `mode` on the configured counter.
    fn counter(&mut self, mode: u8) -> Result<u32, ChipFault> {
        let id = u16::from(self.slots.counter);
        let data =
            self.session(|chip| chip.execute(Opcode::Counter, mode, id, &[], Expect::Data(4)))?;
        let value = match data.as_slice() {
            [a, b, c, d] => u32::from_le_bytes([*a, *b, *c, *d]),
            _ => return Err(ChipFault::Corrupt("counter value is not 4 bytes")),
        };
        if value > COUNTER_MAX {
            return Err(ChipFault::Corrupt("counter value above the chip's limit"));
        }
        Ok(value)
    }

    fn hal_error(&self, fault: &ChipFault) -> HalError {
        HalError::device(self.device.clone(), self.key.clone(), fault.to_string())
    }
}

impl<I2C: I2c + Send, D: DelayNs + Send> CartridgeChip for Atecc608<I2C, D> {
    fn read_tag(&mut self) -> Result<Option<Vec<u8>>, HalError> {
        self.read_image().map_err(|fault| self.hal_error(&fault))
    }

    fn sign_challenge(&mut self, nonce: &[u8; 32]) -> Result<Vec<u8>, ChipFault> {
        self.sign(nonce)
    }

    fn read_counter(&mut self) -> Result<u32, ChipFault> {
        self.counter(COUNTER_READ)
    }

    fn advance_counter(&mut self) -> Result<u32, ChipFault> {
        self.counter(COUNTER_INCREMENT)
    }
}

#[cfg(test)]
mod tests;
