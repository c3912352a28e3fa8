//! The cartridge tag: [`TagEeprom`] reads the tag image from a 24Cxx I2C EEPROM, as the
//! service's [`CartridgeChip`].

use std::fmt;

use embedded_hal::i2c::{self, Error as _, I2c};

use super::{CartridgeChip, HalError};

/// Size of a cartridge tag image (see `crate::cartridge`).
pub const TAG_IMAGE_LEN: usize = crate::cartridge::TAG_CAPACITY;

/// Bytes read per bus transaction.
const TAG_CHUNK: usize = 16;

/// The cartridge tag: a 24Cxx I2C EEPROM holding a [`TAG_IMAGE_LEN`]-byte image at address 0.
///
/// The image is read twice and compared, so a cartridge moving during the read gives an error
/// rather than a torn image that would fail authentication for the wrong reason.
#[derive(Debug)]
pub struct TagEeprom<I2C> {
    i2c: I2C,
    address: u8,
    address_bytes: u8,
    device: String,
    key: String,
}

/// A failed tag read: where, and what the bus said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagReadError {
    /// Byte offset of the failed read, if a read failed.
    pub offset: Option<usize>,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for TagReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(offset) => write!(f, "read at byte {offset} failed: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for TagReadError {}

impl<I2C: I2c> TagEeprom<I2C> {
    /// An EEPROM at 7-bit `address` with 1-byte (24C01/02) or 2-byte (24C32 and up) word
    /// addresses; `device` and `key` name it in errors (such as `/dev/i2c-1 address 0x50` and
    /// `hardware.linux.tag_eeprom_address`).
    pub fn new(
        i2c: I2C,
        address: u8,
        address_bytes: u8,
        device: impl Into<String>,
        key: impl Into<String>,
    ) -> Self {
        Self {
            i2c,
            address,
            address_bytes,
            device: device.into(),
            key: key.into(),
        }
    }

    /// Reads the image once: `None` if the EEPROM does not acknowledge its address (no
    /// cartridge).
    pub fn read_image(&mut self) -> Result<Option<Vec<u8>>, TagReadError> {
        let mut image = vec![0u8; TAG_IMAGE_LEN];
        for (i, chunk) in image.chunks_mut(TAG_CHUNK).enumerate() {
            let offset = i * TAG_CHUNK;
            let [.., hi, lo] = (offset as u32).to_be_bytes();
            let word: &[u8] = if self.address_bytes >= 2 {
                &[hi, lo]
            } else {
                &[lo]
            };
            if let Err(e) = self.i2c.write_read(self.address, word, chunk) {
                let absent = matches!(e.kind(), i2c::ErrorKind::NoAcknowledge(_));
                if absent && offset == 0 {
                    return Ok(None);
                }
                return Err(TagReadError {
                    offset: Some(offset),
                    message: format!("{} ({e:?})", e.kind()),
                });
            }
        }
        Ok(Some(image))
    }

    /// Reads the image twice; `None` if no tag answers, an error if the two reads differ.
    pub fn read_stable(&mut self) -> Result<Option<Vec<u8>>, TagReadError> {
        let first = self.read_image()?;
        let second = self.read_image()?;
        if first == second {
            Ok(first)
        } else {
            Err(TagReadError {
                offset: None,
                message: "the tag changed between two reads (cartridge moving?)".into(),
            })
        }
    }

    /// The bus, back.
    pub fn release(self) -> I2C {
        self.i2c
    }
}

impl<I2C: I2c + Send> CartridgeChip for TagEeprom<I2C> {
    fn read_tag(&mut self) -> Result<Option<Vec<u8>>, HalError> {
        self.read_stable()
            .map_err(|e| HalError::device(self.device.clone(), self.key.clone(), e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::fakes::{FakeI2cError, NACK};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[derive(Debug)]
    struct FakeEeprom {
        memory: Vec<u8>,
        present: bool,
        address_bytes: usize,
        reads: Arc<AtomicU32>,
        /// Fail the read of this chunk index with a bus error.
        fail_at: Option<u32>,
        /// Flip a byte on every second full read.
        flaky: bool,
    }

    impl i2c::ErrorType for FakeEeprom {
        type Error = FakeI2cError;
    }

    impl I2c for FakeEeprom {
        fn transaction(
            &mut self,
            address: u8,
            operations: &mut [i2c::Operation<'_>],
        ) -> Result<(), FakeI2cError> {
            if !self.present || address != 0x50 {
                return Err(NACK);
            }
            let n = self.reads.fetch_add(1, Ordering::Relaxed);
            if self.fail_at == Some(n) {
                return Err(FakeI2cError(i2c::ErrorKind::Bus));
            }
            let [i2c::Operation::Write(word), i2c::Operation::Read(buf)] = operations else {
                return Err(FakeI2cError(i2c::ErrorKind::Other));
            };
            assert_eq!(word.len(), self.address_bytes);
            let offset = word.iter().fold(0usize, |a, b| a * 256 + usize::from(*b));
            buf.copy_from_slice(&self.memory[offset..offset + buf.len()]);
            if self.flaky && n >= 8 {
                buf[0] ^= 0xFF;
            }
            Ok(())
        }
    }

    fn eeprom(address_bytes: usize) -> FakeEeprom {
        FakeEeprom {
            memory: (0..=255).collect(),
            present: true,
            address_bytes,
            reads: Arc::new(AtomicU32::new(0)),
            fail_at: None,
            flaky: false,
        }
    }

    #[test]
    fn tag_image_is_read_in_chunks_with_one_or_two_address_bytes() {
        for width in [1u8, 2] {
            let fake = eeprom(usize::from(width));
            let reads = Arc::clone(&fake.reads);
            let mut tag = TagEeprom::new(fake, 0x50, width, "/dev/i2c-1 0x50", "k");
            let image = tag.read_tag().unwrap().unwrap();
            assert_eq!(image, (0..=255).collect::<Vec<u8>>());
            assert_eq!(reads.load(Ordering::Relaxed), 32); // 2 x 256 / 16
        }
    }

    #[test]
    fn no_tag_is_none_and_bus_errors_name_the_device_and_key() {
        let mut fake = eeprom(1);
        fake.present = false;
        let mut tag = TagEeprom::new(
            fake,
            0x50,
            1,
            "/dev/i2c-1 0x50",
            "hardware.linux.tag_eeprom_address",
        );
        assert!(tag.read_tag().unwrap().is_none());

        let mut fake = eeprom(1);
        fake.fail_at = Some(3);
        let mut tag = TagEeprom::new(
            fake,
            0x50,
            1,
            "/dev/i2c-1 0x50",
            "hardware.linux.tag_eeprom_address",
        );
        let err = tag.read_tag().unwrap_err().to_string();
        assert!(
            err.starts_with("/dev/i2c-1 0x50 (hardware.linux.tag_eeprom_address): read at byte 48"),
            "{err}"
        );

        let mut fake = eeprom(1);
        fake.flaky = true;
        let mut tag = TagEeprom::new(fake, 0x50, 1, "d", "k");
        assert!(tag.read_tag().unwrap_err().to_string().contains("changed"));
    }
}
