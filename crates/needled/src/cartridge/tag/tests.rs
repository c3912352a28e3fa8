//! Unit and property tests of the tag format (`cartridge/tag.rs`) and its signature.

use super::*;
use crate::cartridge::{test_factory_key, FactoryKey, TrustStore};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use proptest::prelude::*;

fn trust() -> TrustStore {
    let f = test_factory_key();
    let mut t = TrustStore::new();
    t.trust(f.id(), &f.public_key()).expect("valid key");
    t
}

fn chip_key() -> [u8; CHIP_KEY_LEN] {
    FactoryKey::from_secret("chip", &[9; 32])
        .expect("valid scalar")
        .public_key()
}

/// The test factory's signed tag of `data`.
fn encode(data: &TagData) -> Vec<u8> {
    test_factory_key()
        .sign_tag(data, &chip_key())
        .expect("signs")
}

fn encode_image(data: &TagData) -> [u8; TAG_CAPACITY] {
    image_of(&encode(data))
}

fn date(y: u16, m: u8, d: u8) -> Date {
    Date::new(y, m, d).expect("valid date")
}

fn sample() -> TagData {
    TagData::new("CART-0001", "LOT-A7", Needles::Pins36, date(2027, 6, 30)).expect("valid")
}

/// A tag with a correct factory signature over arbitrary body bytes (to test content
/// checks that only run after authentication).
fn signed(body: &[u8]) -> Vec<u8> {
    let key = SigningKey::from_slice(&test_factory_key().secret()).expect("valid");
    let signature: Signature = key.sign(body);
    let mut out = body.to_vec();
    out.extend_from_slice(&signature.to_bytes());
    out
}

fn body(id: &[u8], lot: &[u8], expiry: [u8; 4], needle_code: u8) -> Vec<u8> {
    let mut out = TAG_MAGIC.to_vec();
    out.push(TAG_VERSION);
    out.push(id.len() as u8);
    out.extend_from_slice(id);
    out.push(lot.len() as u8);
    out.extend_from_slice(lot);
    out.extend_from_slice(&expiry);
    out.push(needle_code);
    let key_id = crate::cartridge::TEST_FACTORY_KEY_ID.as_bytes();
    out.push(key_id.len() as u8);
    out.extend_from_slice(key_id);
    out.extend_from_slice(&chip_key());
    out
}

#[test]
fn encode_then_parse_round_trips_exact_and_padded_forms() {
    let data = sample();
    let exact = encode(&data);
    assert_eq!(
        exact.len(),
        4 + 1 + 1 + 9 + 1 + 6 + 4 + 1 + 15 + CHIP_KEY_LEN + SIGNATURE_LEN
    );
    let tag = parse(&exact, &trust()).expect("exact form parses");
    assert_eq!(tag.key_id(), "test-factory-1");
    assert_eq!(tag.chip_key(), &chip_key());
    assert_eq!(tag.data(), &data);
    assert_eq!(tag.as_bytes(), exact.as_slice());

    let image = encode_image(&data);
    let padded = parse(&image, &trust()).expect("padded image parses");
    assert_eq!(padded, tag);
}

#[test]
fn longest_tag_fits_the_chip_memory_and_the_link() {
    let data = TagData::new(
        "A".repeat(16),
        "B".repeat(16),
        Needles::Nano,
        date(9999, 12, 31),
    )
    .expect("valid");
    let key = FactoryKey::from_secret(&"K".repeat(16), &[3; 32]).expect("valid");
    let bytes = key.sign_tag(&data, &chip_key()).expect("signs");
    assert_eq!(bytes.len(), 158);
    assert!(bytes.len() <= TAG_CAPACITY);
    assert!(bytes.len() <= needle_link::TAG_BYTES);
    let mut trust = trust();
    trust.trust(key.id(), &key.public_key()).expect("valid");
    assert_eq!(parse(&bytes, &trust).expect("parses").data(), &data);
}

#[test]
fn hex_form_round_trips_and_ignores_case_and_whitespace() {
    let tag = parse(&encode(&sample()), &trust()).expect("parses");
    let text = tag.to_hex();
    assert!(text
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    let again = parse_hex(&format!("  {}\n", text.to_uppercase()), &trust()).expect("parses");
    assert_eq!(again, tag);
}

#[test]
fn non_hex_text_is_unknown_format() {
    let err = parse_hex("NDLT-not-hex", &trust()).expect_err("refused");
    assert_eq!(err.code(), "tag_unknown_format");
    let too_long = "00".repeat(TAG_CAPACITY + 1);
    assert_eq!(
        from_hex(&too_long).expect_err("refused").code(),
        "tag_unknown_format"
    );
}

#[test]
fn bad_magic_is_unknown_format() {
    let mut bytes = encode(&sample());
    bytes[0] = b'X';
    assert_eq!(
        parse(&bytes, &trust()).expect_err("refused").code(),
        "tag_unknown_format"
    );
    // A blank EEPROM reads as all 0xFF.
    assert_eq!(
        parse(&[0xFF; TAG_CAPACITY], &trust())
            .expect_err("refused")
            .code(),
        "tag_unknown_format"
    );
}

#[test]
fn version_1_hmac_tags_are_refused_with_their_own_code() {
    let mut bytes = encode(&sample());
    bytes[4] = 1;
    let err = parse(&bytes, &trust()).expect_err("refused");
    assert_eq!(err, TagError::V1Unsupported);
    assert_eq!(err.code(), "tag_v1_unsupported");
}

#[test]
fn unknown_version_is_unknown_format() {
    let mut bytes = encode(&sample());
    bytes[4] = 3;
    let err = parse(&bytes, &trust()).expect_err("refused");
    assert_eq!(
        err,
        TagError::UnknownFormat {
            reason: "unsupported format version"
        }
    );
}

#[test]
fn oversized_image_is_unknown_format() {
    let mut bytes = encode_image(&sample()).to_vec();
    bytes.push(0);
    assert_eq!(
        parse(&bytes, &trust()).expect_err("refused").code(),
        "tag_unknown_format"
    );
}

#[test]
fn every_proper_prefix_is_truncated() {
    let bytes = encode(&sample());
    for len in 0..bytes.len() {
        let err = parse(&bytes[..len], &trust()).expect_err("prefix refused");
        assert_eq!(err.code(), "tag_truncated", "prefix of {len} bytes");
    }
}

#[test]
fn zero_or_overlong_field_length_is_invalid_field() {
    let mut zero = encode(&sample());
    zero[5] = 0;
    assert_eq!(
        parse(&zero, &trust()).expect_err("refused"),
        TagError::InvalidField {
            field: "id",
            reason: "length must be 1..=16"
        }
    );
    let mut long = encode(&sample());
    long[5] = 17;
    assert_eq!(
        parse(&long, &trust()).expect_err("refused").code(),
        "tag_invalid_field"
    );
}

#[test]
fn authenticated_but_invalid_contents_are_invalid_field() {
    let cases: [(&str, Vec<u8>); 5] = [
        ("id", body(b"bad id", b"LOT", [0x07, 0xEA, 1, 1], 12)),
        ("lot", body(b"ID", &[0xC3, 0xA9], [0x07, 0xEA, 1, 1], 12)),
        ("expiry", body(b"ID", b"LOT", [0x07, 0xEA, 2, 30], 12)),
        ("expiry", body(b"ID", b"LOT", [0x07, 0xEA, 13, 1], 12)),
        ("needles", body(b"ID", b"LOT", [0x07, 0xEA, 1, 1], 13)),
    ];
    for (field, body) in cases {
        match parse(&signed(&body), &trust()) {
            Err(TagError::InvalidField { field: got, .. }) => assert_eq!(got, field),
            other => panic!("expected invalid {field}, got {other:?}"),
        }
    }
}

#[test]
fn nonzero_padding_is_invalid_field() {
    let mut image = encode_image(&sample());
    image[TAG_CAPACITY - 1] = 1;
    assert_eq!(
        parse(&image, &trust()).expect_err("refused"),
        TagError::InvalidField {
            field: "padding",
            reason: "bytes after the signature must be zero"
        }
    );
}

#[test]
fn forged_tag_signed_by_a_key_the_pen_does_not_trust_is_refused() {
    // A forger's key under the trusted key id: the signature does not verify.
    let forger = FactoryKey::from_secret("test-factory-1", &[0x42; 32]).expect("valid");
    let bytes = forger.sign_tag(&sample(), &chip_key()).expect("signs");
    assert_eq!(parse(&bytes, &trust()), Err(TagError::BadSignature));
    assert_eq!(TagError::BadSignature.code(), "tag_bad_signature");
    // The same under its own key id: unknown signer.
    let forger = FactoryKey::from_secret("forger-1", &[0x42; 32]).expect("valid");
    let bytes = forger.sign_tag(&sample(), &chip_key()).expect("signs");
    let err = parse(&bytes, &trust()).expect_err("refused");
    assert_eq!(err.code(), "tag_signer_unknown");
}

#[test]
fn tag_signed_by_a_revoked_key_id_is_refused() {
    let mut trust = trust();
    trust.revoke("test-factory-1");
    let err = parse(&encode(&sample()), &trust).expect_err("refused");
    assert_eq!(
        err,
        TagError::RevokedSigner {
            key_id: "test-factory-1".into()
        }
    );
    assert_eq!(err.code(), "tag_signer_revoked");
}

#[test]
fn changed_content_with_old_signature_is_bad_signature() {
    let mut bytes = encode(&sample());
    // Change the lot's first byte to another valid character: structure stays intact.
    let lot_start = 5 + 1 + sample().id().len() + 1;
    bytes[lot_start] = b'Z';
    assert_eq!(parse(&bytes, &trust()), Err(TagError::BadSignature));
    // A swapped chip key (a clone maker's own chip): the signature covers it.
    let mut bytes = encode(&sample());
    let chip_at = bytes.len() - SIGNATURE_LEN - CHIP_KEY_LEN;
    let other = FactoryKey::from_secret("chip", &[5; 32])
        .expect("valid")
        .public_key();
    bytes[chip_at..chip_at + CHIP_KEY_LEN].copy_from_slice(&other);
    assert_eq!(parse(&bytes, &trust()), Err(TagError::BadSignature));
}

#[test]
fn tag_data_refuses_invalid_identifiers() {
    let expiry = date(2030, 1, 1);
    for (id, lot) in [
        ("", "LOT"),
        ("ID", ""),
        (&*"X".repeat(17), "LOT"),
        ("ID", "lot 1"),
        ("ID_1", "LOT"),
        ("ÄB", "LOT"),
    ] {
        let err = TagData::new(id, lot, Needles::Pins12, expiry).expect_err("refused");
        assert_eq!(err.code(), "tag_invalid_field", "id={id:?} lot={lot:?}");
    }
}

#[test]
fn tag_data_deserialization_validates_fields() {
    let ok: TagData =
        serde_json::from_str(r#"{"id":"C-1","lot":"L-1","needles":"nano","expiry":"2028-02-29"}"#)
            .expect("valid");
    assert_eq!(ok.needles(), Needles::Nano);
    assert_eq!(ok.expiry(), date(2028, 2, 29));
    let bad = serde_json::from_str::<TagData>(
        r#"{"id":"C 1","lot":"L-1","needles":"nano","expiry":"2028-02-29"}"#,
    );
    assert!(bad.is_err());
    let round: TagData =
        serde_json::from_str(&serde_json::to_string(&ok).expect("serializes")).expect("back");
    assert_eq!(round, ok);
}

#[test]
fn needle_names_and_codes_are_stable() {
    let names: Vec<&str> = Needles::ALL.iter().map(|n| n.as_str()).collect();
    assert_eq!(names, ["pins12", "pins24", "pins36", "pins42", "nano"]);
    let codes: Vec<u8> = Needles::ALL.iter().map(|n| n.code()).collect();
    assert_eq!(codes, [12, 24, 36, 42, 0x80]);
    for n in Needles::ALL {
        assert_eq!(Needles::from_code(n.code()), Some(n));
        assert_eq!(n.as_str().parse::<Needles>(), Ok(n));
        assert_eq!(
            serde_json::to_string(&n).expect("serializes"),
            format!("\"{}\"", n.as_str())
        );
    }
    assert_eq!(Needles::from_code(0), None);
}

fn arb_date() -> impl Strategy<Value = Date> {
    (0i64..=2_932_896).prop_map(|d| Date::from_days_since_epoch(d).expect("in range"))
}

fn arb_tag_data() -> impl Strategy<Value = TagData> {
    (
        "[A-Za-z0-9-]{1,16}",
        "[A-Za-z0-9-]{1,16}",
        prop::sample::select(Needles::ALL.to_vec()),
        arb_date(),
    )
        .prop_map(|(id, lot, needles, expiry)| {
            TagData::new(id, lot, needles, expiry).expect("strategy yields valid data")
        })
}

proptest! {
    #[test]
    fn any_valid_tag_round_trips(data in arb_tag_data()) {
        let tag = parse(&encode_image(&data), &trust()).expect("parses");
        prop_assert_eq!(tag.data(), &data);
    }

    #[test]
    fn any_single_bit_flip_of_a_tag_image_is_rejected(
        data in arb_tag_data(),
        bit in 0usize..TAG_CAPACITY * 8,
    ) {
        let mut image = encode_image(&data);
        image[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(parse(&image, &trust()).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse(&bytes, &trust());
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_header_never_panic_nor_authenticate(
        tail in prop::collection::vec(any::<u8>(), 0..260),
    ) {
        let mut bytes = TAG_MAGIC.to_vec();
        bytes.push(TAG_VERSION);
        bytes.extend_from_slice(&tail);
        prop_assert!(parse(&bytes, &trust()).is_err());
    }

    #[test]
    fn arbitrary_text_never_panics_the_hex_parser(text in ".{0,600}") {
        let _ = parse_hex(&text, &trust());
    }
}
