//! `[cartridge]`: a cartridge's run time and stroke budgets, the factory keys whose tags this
//! pen accepts (`[cartridge.trusted_keys]`, `revoked_keys`), and whether the cartridge's
//! authenticator chip is required.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::cartridge::{self, TrustStore};

/// `[cartridge]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CartridgeConfig {
    /// `max_run_min`: run time budget of one cartridge. Default 30.
    pub max_run_min: u32,
    /// `max_strokes`: stroke budget of one cartridge. Default 300000.
    pub max_strokes: u64,
    /// `[cartridge.trusted_keys]`: factory public keys (SEC1 hex, as `needle-factory keygen`
    /// prints them) by key id. Default: the published test factory key under
    /// `test-factory-1`, which only the sim backend may trust.
    pub trusted_keys: BTreeMap<String, String>,
    /// `revoked_keys`: key ids whose tags are refused even if trusted. Default none.
    pub revoked_keys: Vec<String>,
    /// `chip_required`: refuse a cartridge unless its authenticator chip answers a fresh
    /// challenge and its use counter shows it unused. Default true. `false` is only for
    /// backends that cannot reach a chip yet (the pen link, the EEPROM-only rigs): the tag's
    /// signature is still checked, but copies and reuse on another pen are not detected.
    pub chip_required: bool,
}

impl Default for CartridgeConfig {
    fn default() -> Self {
        let test = cartridge::test_factory_key();
        Self {
            max_run_min: 30,
            max_strokes: 300_000,
            trusted_keys: BTreeMap::from([(test.id().to_owned(), hex::encode(test.public_key()))]),
            revoked_keys: Vec::new(),
            chip_required: true,
        }
    }
}

impl CartridgeConfig {
    /// The trust store these keys make, or the key (dotted) and reason of the first bad one.
    pub fn trust_store(&self) -> Result<TrustStore, (String, String)> {
        let mut trust = TrustStore::new();
        for (id, key) in &self.trusted_keys {
            let bad = |reason: String| (format!("cartridge.trusted_keys.{id}"), reason);
            let bytes = hex::decode(key.trim())
                .map_err(|_| bad("expected the public key as hex text".into()))?;
            trust.trust(id, &bytes).map_err(|e| bad(e.to_string()))?;
        }
        for id in &self.revoked_keys {
            trust.revoke(id);
        }
        Ok(trust)
    }

    /// Whether the published test factory key is trusted, under any key id.
    pub fn trusts_test_key(&self) -> bool {
        self.trust_store()
            .is_ok_and(|t| t.contains_key(&cartridge::test_factory_key().public_key()))
    }
}
