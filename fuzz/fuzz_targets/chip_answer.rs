//! The cartridge chip's answer parser and check (`needled::cartridge::verify_answer`).
//!
//! Input: 32 bytes of nonce, then the answer. Properties: never panics; an answer that
//! verifies is a genuine signature of that nonce's challenge by the chip, so it fails for any
//! other nonce (a replay) and under any other chip key (a clone).
#![no_main]

use libfuzzer_sys::fuzz_target;
use needled::cartridge::{self, SimAnswers, SimChip, NONCE_LEN};

const CHIP_SECRET: [u8; 32] = [0x11; 32];

fuzz_target!(|data: &[u8]| {
    let Some((nonce, answer)) = data.split_first_chunk::<NONCE_LEN>() else {
        return;
    };
    let chip = cartridge::FactoryKey::from_secret("chip", &CHIP_SECRET).expect("valid");
    let key = chip.public_key();
    let _ = cartridge::parse_answer(answer);
    if cartridge::verify_answer(&key, nonce, answer).is_ok() {
        let mut other_nonce = *nonce;
        other_nonce[0] ^= 1;
        assert!(
            cartridge::verify_answer(&key, &other_nonce, answer).is_err(),
            "a replay verified"
        );
        let clone = cartridge::FactoryKey::from_secret("chip", &[0x22; 32]).expect("valid");
        assert!(
            cartridge::verify_answer(&clone.public_key(), nonce, answer).is_err(),
            "a clone verified"
        );
    }
    // The genuine chip's own answer to this nonce always verifies.
    let genuine = SimChip {
        memory: Vec::new(),
        answers: cartridge::sim_key(&CHIP_SECRET).map_or(SimAnswers::Nothing, |k| k),
        counter: 0,
    };
    let own = genuine.answer(nonce).expect("a keyed chip answers");
    assert_eq!(cartridge::verify_answer(&key, nonce, &own), Ok(()));
});
