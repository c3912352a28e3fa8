//! [`config_hash`]: the hash both ends compare before the host may drive the pen (Klipper's
//! `finalize_config crc`).

use crc::{Crc, Digest, CRC_32_ISO_HDLC};
use needle_core::ControllerConfig;
use postcard::ser_flavors::Flavor;

const CRC: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);

/// A postcard output that feeds a CRC instead of a buffer, so any configuration size hashes.
struct Hasher<'a>(Digest<'a, u32>);

impl Flavor for Hasher<'_> {
    type Output = u32;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.update(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.update(&[data]);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<u32> {
        Ok(self.0.finalize())
    }
}

/// CRC-32 of the configuration's postcard encoding: equal on both ends only when every value
/// and the layout of every field are equal.
///
/// ```
/// use needle_core::ControllerConfig;
/// let a = ControllerConfig::default();
/// let mut b = a;
/// b.safety.host_timeout.0 += 1;
/// assert_ne!(needle_link::config_hash(&a), needle_link::config_hash(&b));
/// ```
pub fn config_hash(config: &ControllerConfig) -> u32 {
    // The hasher never fails and the config's types all serialize.
    postcard::serialize_with_flavor(config, Hasher(CRC.digest())).unwrap_or(0)
}
