//! Cartridges: the sterile single-use needle cartridges, their tags and the rules for their
//! use.
//!
//! - `tag.rs`: the tag's binary format ([`encode`], [`parse`], the hex form), its contents
//!   ([`TagData`], [`Needles`]) and the identifier rules ([`validate_identifier`]).
//! - `auth.rs`: the device key ([`DeviceKey`]) and the HMAC-SHA256 that authenticates tags.
//! - `date.rs`: the expiry [`Date`], on `jiff`'s civil calendar.
//! - `rules.rs`: the ledger's cartridge rules as plain functions: the life cycle
//!   ([`CartridgeState`]), budgets ([`CartridgeLimits`]), and what may be used or bound
//!   ([`check_usable`]). The SQL that applies them is in `store/cartridges.rs`.
//!
//! ```
//! use needled::cartridge::{self, Date, DeviceKey, Needles, TagData};
//!
//! let key = DeviceKey::from_bytes([7; 32]);
//! let data = TagData::new("CART-1", "LOT-1", Needles::Pins12, Date::new(2027, 6, 30)?)?;
//! let tag = cartridge::parse(&cartridge::encode_image(&data, &key), &key)?;
//! assert_eq!(tag.data(), &data);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod auth;
mod date;
mod rules;
mod tag;

pub use auth::{DeviceKey, KEY_LEN, MAC_LEN};
pub use date::{Date, DateError};
pub use rules::{
    check_usable, is_expired, seated_is_bound, CartridgeLimits, CartridgeState, Refusal,
    Registered, Usage,
};
pub use tag::{
    encode, encode_image, from_hex, parse, parse_hex, to_hex, validate_identifier, Needles, Tag,
    TagData, TagError, MAX_FIELD_LEN, TAG_CAPACITY, TAG_MAGIC, TAG_VERSION,
};
