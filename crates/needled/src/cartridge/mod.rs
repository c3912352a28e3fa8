//! Cartridges: the sterile single-use needle cartridges, their signed tags, their
//! authenticator chips and the rules for their use. Threat model:
//! `docs/cartridge-security.md`.
//!
//! - `tag.rs`: the tag's binary format, version 2 ([`signed_body`], [`parse`], the hex form),
//!   its contents ([`TagData`], [`Needles`]) and the identifier rules ([`validate_identifier`]).
//! - `trust.rs`: the factory public keys a pen trusts and the revoked key ids ([`TrustStore`]).
//! - `chip.rs`: the challenge-response with the cartridge's chip ([`verify_answer`]) and the
//!   simulated chip ([`SimChip`]).
//! - `factory.rs`: signing, for the factory tool and the sim ([`FactoryKey`], [`provision`],
//!   the published test key [`test_factory_key`]).
//! - `date.rs`: the expiry [`Date`], on `jiff`'s civil calendar.
//! - `rules.rs`: the ledger's cartridge rules as plain functions: the life cycle
//!   ([`CartridgeState`]), budgets ([`CartridgeLimits`]), and what may be used or bound
//!   ([`check_usable`]). The SQL that applies them is in `store/cartridges.rs`.
//!
//! ```
//! use needled::cartridge::{self, Date, Needles, TagData, TrustStore};
//!
//! let factory = cartridge::test_factory_key();
//! let mut trust = TrustStore::new();
//! trust.trust(factory.id(), &factory.public_key())?;
//! let data = TagData::new("CART-1", "LOT-1", Needles::Pins12, Date::new(2027, 6, 30)?)?;
//! let made = cartridge::provision(&data, &factory)?;
//! let tag = cartridge::parse(&cartridge::image_of(&made.tag), &trust)?;
//! assert_eq!(tag.data(), &data);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod chip;
mod date;
mod factory;
mod rules;
mod tag;
mod trust;

pub use chip::{
    challenge_digest, fresh_nonce, parse_answer, sim_key, verify_answer, ChipError, SimAnswers,
    SimChip, NONCE_LEN,
};
pub use date::{Date, DateError};
pub use factory::{
    chip_key_from_public, compressed, provision, provision_test, test_factory_key, FactoryKey,
    Provisioned, TEST_FACTORY_KEY_ID,
};
pub use rules::{
    check_usable, is_expired, seated_is_bound, CartridgeLimits, CartridgeState, Refusal,
    Registered, Usage,
};
pub use tag::{
    from_hex, image_of, parse, parse_hex, signed_body, to_hex, validate_identifier, Needles, Tag,
    TagData, TagError, CHIP_KEY_LEN, MAX_FIELD_LEN, TAG_CAPACITY, TAG_MAGIC, TAG_VERSION,
    TAG_VERSION_V1,
};
pub use trust::{TrustStore, SIGNATURE_LEN};
