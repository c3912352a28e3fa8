//! The ATECC608 driver's response handling (`needled::hal::atecc608`): what a cartridge
//! chip, a fake part or a glitched bus sends back.
//!
//! Input: one byte choosing the operation, then the bytes of each read the chip answers, each
//! prefixed with its length byte. The first read answers the wake token. Properties: never
//! panics; `parse_response` gives data only for a packet whose count and CRC are right; a
//! Sign answer is accepted only if the bus sent a CRC-valid 67-byte packet; a counter value
//! is never above the chip's limit.
#![no_main]

use std::collections::VecDeque;

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::{self, ErrorKind, I2c, NoAcknowledgeSource, Operation};
use libfuzzer_sys::fuzz_target;
use needled::hal::atecc608::{crc16, parse_response, Atecc608, AteccSlots, Expect, COUNTER_MAX};
use needled::hal::CartridgeChip;

#[derive(Debug)]
struct Nack;

impl i2c::Error for Nack {
    fn kind(&self) -> ErrorKind {
        ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address)
    }
}

/// Answers each read with the next scripted bytes; no more script is a NACK.
struct Script(VecDeque<Vec<u8>>);

impl i2c::ErrorType for Script {
    type Error = Nack;
}

impl I2c for Script {
    fn transaction(&mut self, address: u8, ops: &mut [Operation<'_>]) -> Result<(), Nack> {
        if address == 0 {
            return Err(Nack);
        }
        for op in ops {
            if let Operation::Read(buf) = op {
                let next = self.0.pop_front().ok_or(Nack)?;
                buf.fill(0);
                for (d, s) in buf.iter_mut().zip(&next) {
                    *d = *s;
                }
            }
        }
        Ok(())
    }
}

struct NoDelay;

impl DelayNs for NoDelay {
    fn delay_ns(&mut self, _: u32) {}
}

fn crc_ok(packet: &[u8], len: usize) -> bool {
    packet.len() >= len
        && usize::from(packet[0]) == len
        && crc16(&packet[..len - 2]).to_le_bytes() == [packet[len - 2], packet[len - 1]]
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, mut rest)) = data.split_first() else {
        return;
    };
    for expect in [
        Expect::Success,
        Expect::Data(4),
        Expect::Data(32),
        Expect::Data(64),
    ] {
        if let Ok(bytes) = parse_response(rest, expect) {
            assert!(
                crc_ok(rest, expect.packet_len()),
                "accepted without a right count and CRC"
            );
            let n = match expect {
                Expect::Success => 0,
                Expect::Data(n) => n,
            };
            assert_eq!(bytes.len(), n);
        }
    }
    let mut reads = VecDeque::new();
    while let Some((&n, tail)) = rest.split_first() {
        let n = usize::from(n).min(tail.len());
        let (read, after) = tail.split_at(n);
        reads.push_back(read.to_vec());
        rest = after;
    }
    let script: Vec<Vec<u8>> = reads.iter().cloned().collect();
    let slots = AteccSlots {
        address: 0x60,
        tag_slot: 8,
        key_slot: 0,
        counter: 0,
    };
    let mut chip = Atecc608::new(Script(reads), NoDelay, slots, "fuzz", "fuzz");
    match which % 4 {
        0 => {
            if let Ok(answer) = chip.sign_challenge(&[0x5A; 32]) {
                assert_eq!(answer.len(), 64);
                // As the bus delivered it: a read shorter than the 67-byte buffer leaves
                // zeros after it (the script's `fill(0)`), and those zeros can be a right CRC.
                let delivered = |r: &Vec<u8>| {
                    let mut p = r.clone();
                    p.resize(p.len().max(67), 0);
                    p
                };
                assert!(
                    script.iter().any(|r| crc_ok(&delivered(r), 67)),
                    "a Sign answer without its CRC"
                );
            }
        }
        1 => {
            if let Ok(value) = chip.read_counter() {
                assert!(value <= COUNTER_MAX);
            }
        }
        2 => {
            if let Ok(value) = chip.advance_counter() {
                assert!(value <= COUNTER_MAX);
            }
        }
        _ => {
            if let Ok(Some(image)) = chip.read_tag() {
                assert_eq!(image.len(), needled::cartridge::TAG_CAPACITY);
            }
        }
    }
});
