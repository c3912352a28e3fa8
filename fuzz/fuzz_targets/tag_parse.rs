//! The cartridge tag parser and its signature check (`needled::cartridge`).
//!
//! The first byte picks a mode:
//! - 0: the bytes as a chip memory image, as read from the tag;
//! - 1: the bytes after the magic as a tag body, signed here with the test factory key and
//!   followed by its signature, so the fuzzer gets past authentication into the content checks;
//! - 2: the bytes as the hex text the API and CLI take.
//!
//! Properties: never panics; whatever parses is authentic and exact: the factory re-signs it
//! to a tag that parses to the same contents, the rest of the image is zero padding, it does
//! not verify under another key or once its signer is revoked, and a flipped bit anywhere in
//! it makes it fail.
#![no_main]

use libfuzzer_sys::fuzz_target;
use needled::cartridge::{self, TagError, TrustStore, TAG_MAGIC};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};

fn trust() -> TrustStore {
    let f = cartridge::test_factory_key();
    let mut t = TrustStore::new();
    t.trust(f.id(), &f.public_key()).expect("valid key");
    t
}

fn check(image: &[u8]) {
    let trust = trust();
    let Ok(t) = cartridge::parse(image, &trust) else {
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
    let resigned = cartridge::test_factory_key()
        .sign_tag(t.data(), t.chip_key())
        .expect("a parsed tag re-signs");
    let again =
        cartridge::parse(&cartridge::image_of(&resigned), &trust).expect("re-signed parses");
    assert_eq!((again.data(), again.chip_key()), (t.data(), t.chip_key()));
    assert_eq!(cartridge::parse_hex(&t.to_hex(), &trust).as_ref(), Ok(&t));
    let mut other = TrustStore::new();
    let forger = cartridge::FactoryKey::from_secret(t.key_id(), &[0xa5; 32]).expect("valid");
    other
        .trust(forger.id(), &forger.public_key())
        .expect("valid");
    assert_eq!(
        cartridge::parse(bytes, &other),
        Err(TagError::BadSignature),
        "verified under another key"
    );
    let mut revoked = trust.clone();
    revoked.revoke(t.key_id());
    assert_eq!(
        cartridge::parse(bytes, &revoked).map_err(|e| e.code()),
        Err("tag_signer_revoked")
    );
    // One flipped bit, at a place the input chooses: never accepted.
    let i = image.iter().fold(7usize, |h, b| {
        h.wrapping_mul(31).wrapping_add(usize::from(*b))
    }) % (bytes.len() * 8);
    let mut flipped = bytes.to_vec();
    flipped[i / 8] ^= 1 << (i % 8);
    assert!(
        cartridge::parse(&flipped, &trust).is_err(),
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
            let key =
                SigningKey::from_slice(&cartridge::test_factory_key().secret()).expect("valid");
            let signature: Signature = key.sign(&image);
            image.extend_from_slice(&signature.to_bytes());
            check(&image);
        }
        _ => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(t) = cartridge::parse_hex(text, &trust()) {
                check(t.as_bytes());
            }
        }
    }
});
