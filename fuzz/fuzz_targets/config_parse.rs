//! The configuration parser (`needled::config::parse`) on arbitrary text.
//!
//! Properties: it never panics, and anything it accepts the core accepts too (otherwise
//! `needled --check-config` would say "ok" about a file the service then fails to start with).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = needled::config::parse(text, "fuzz.toml") else {
        return;
    };
    let core = config.controller_config();
    if let Err(e) = core.validate() {
        panic!("needled accepted a configuration the core refuses ({e}):\n{text}");
    }
    // What main() derives from an accepted configuration must not panic either.
    let _ = config.warnings();
    let _ = config.cartridge.trust_store();
    assert!(
        config.validate().is_ok(),
        "parse accepted what validate refuses:\n{text}"
    );
});
