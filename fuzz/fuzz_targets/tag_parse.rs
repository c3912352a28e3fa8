//! The cartridge tag parser and its MAC check (`needled::cartridge`).
//!
//! The first byte picks a mode:
//! - 0: the bytes as an EEPROM image, as read from the tag;
//! - 1: the bytes after the magic as a tag body, signed here with the device key and followed
//!   by its MAC, so the fuzzer gets past authentication into the content checks;
//! - 2: the bytes as the hex text the API and CLI take.
//!
//! Properties: never panics; whatever parses is authentic and exact: it re-encodes to the
//! same bytes, the rest of the image is zero padding, it does not verify under another key,
//! and a flipped bit anywhere in it makes it fail.
#![no_main]

use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use needled::cartridge::{self, DeviceKey, TagError, TAG_MAGIC};
use sha2::Sha256;

const KEY: [u8; 32] = [0x5a; 32];

fn check(image: &[u8]) {
    let key = DeviceKey::from_bytes(KEY);
    let Ok(t) = cartridge::parse(image, &key) else {
        return;
    };
    let bytes = t.as_bytes();
    assert!(
        image.starts_with(bytes),
        "the tag is not a prefix of its image"
    );
    assert!(
        image[bytes.len()..].iter().all(|b| *b == 0),
        "accepted non-zero padding"
    );
    assert_eq!(
        cartridge::encode(t.data(), &key),
        bytes,
        "parse and encode disagree"
    );
    assert_eq!(
        cartridge::parse(&cartridge::encode_image(t.data(), &key), &key).as_ref(),
        Ok(&t)
    );
    assert_eq!(cartridge::parse_hex(&t.to_hex(), &key).as_ref(), Ok(&t));
    let other = DeviceKey::from_bytes([0xa5; 32]);
    assert_eq!(
        cartridge::parse(bytes, &other),
        Err(TagError::BadMac),
        "verified under another key"
    );
    // One flipped bit, at a place the input chooses: never accepted.
    let i = image.iter().fold(7usize, |h, b| {
        h.wrapping_mul(31).wrapping_add(usize::from(*b))
    }) % (bytes.len() * 8);
    let mut flipped = bytes.to_vec();
    flipped[i / 8] ^= 1 << (i % 8);
    assert!(
        cartridge::parse(&flipped, &key).is_err(),
        "a tag with bit {i} flipped was accepted"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => check(rest),
        1 => {
            let mut image = TAG_MAGIC.to_vec();
            image.extend_from_slice(rest);
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&KEY).expect("any key length");
            mac.update(&image);
            image.extend_from_slice(&mac.finalize().into_bytes());
            check(&image);
        }
        _ => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let key = DeviceKey::from_bytes(KEY);
            if let Ok(t) = cartridge::parse_hex(text, &key) {
                check(t.as_bytes());
            }
        }
    }
});
