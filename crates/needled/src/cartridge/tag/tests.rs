//! Unit and property tests of the tag format (`cartridge/tag.rs`).

use super::*;
use crate::cartridge::KEY_LEN;
use proptest::prelude::*;

fn key() -> DeviceKey {
    DeviceKey::from_bytes([7u8; KEY_LEN])
}

fn date(y: u16, m: u8, d: u8) -> Date {
    Date::new(y, m, d).expect("valid date")
}

fn sample() -> TagData {
    TagData::new("CART-0001", "LOT-A7", Needles::Pins36, date(2027, 6, 30)).expect("valid")
}

/// A tag image with a correct MAC over arbitrary body bytes (to test content checks
/// that only run after authentication).
fn signed(body: &[u8], key: &DeviceKey) -> Vec<u8> {
    let mut out = body.to_vec();
    out.extend_from_slice(&key.sign(body));
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
    out
}

#[test]
fn encode_then_parse_round_trips_exact_and_padded_forms() {
    let data = sample();
    let exact = encode(&data, &key());
    assert_eq!(exact.len(), 4 + 1 + 1 + 9 + 1 + 6 + 4 + 1 + MAC_LEN);
    let tag = parse(&exact, &key()).expect("exact form parses");
    assert_eq!(tag.data(), &data);
    assert_eq!(tag.as_bytes(), exact.as_slice());

    let image = encode_image(&data, &key());
    let padded = parse(&image, &key()).expect("padded image parses");
    assert_eq!(padded, tag);
}

#[test]
fn longest_tag_fits_the_eeprom() {
    let data = TagData::new(
        "A".repeat(16),
        "B".repeat(16),
        Needles::Nano,
        date(9999, 12, 31),
    )
    .expect("valid");
    let bytes = encode(&data, &key());
    assert_eq!(bytes.len(), 76);
    assert!(bytes.len() <= TAG_CAPACITY);
    assert_eq!(parse(&bytes, &key()).expect("parses").data(), &data);
}

#[test]
fn hex_form_round_trips_and_ignores_case_and_whitespace() {
    let tag = parse(&encode(&sample(), &key()), &key()).expect("parses");
    let text = tag.to_hex();
    assert!(text
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    let again = parse_hex(&format!("  {}\n", text.to_uppercase()), &key()).expect("parses");
    assert_eq!(again, tag);
}

#[test]
fn non_hex_text_is_unknown_format() {
    let err = parse_hex("NDLT-not-hex", &key()).expect_err("refused");
    assert_eq!(err.code(), "tag_unknown_format");
    let too_long = "00".repeat(TAG_CAPACITY + 1);
    assert_eq!(
        from_hex(&too_long).expect_err("refused").code(),
        "tag_unknown_format"
    );
}

#[test]
fn bad_magic_is_unknown_format() {
    let mut bytes = encode(&sample(), &key());
    bytes[0] = b'X';
    assert_eq!(
        parse(&bytes, &key()).expect_err("refused").code(),
        "tag_unknown_format"
    );
    // A blank EEPROM reads as all 0xFF.
    assert_eq!(
        parse(&[0xFF; TAG_CAPACITY], &key())
            .expect_err("refused")
            .code(),
        "tag_unknown_format"
    );
}

#[test]
fn unknown_version_is_unknown_format() {
    let mut bytes = encode(&sample(), &key());
    bytes[4] = 2;
    let err = parse(&bytes, &key()).expect_err("refused");
    assert_eq!(
        err,
        TagError::UnknownFormat {
            reason: "unsupported format version"
        }
    );
}

#[test]
fn oversized_image_is_unknown_format() {
    let mut bytes = encode_image(&sample(), &key()).to_vec();
    bytes.push(0);
    assert_eq!(
        parse(&bytes, &key()).expect_err("refused").code(),
        "tag_unknown_format"
    );
}

#[test]
fn every_proper_prefix_is_truncated() {
    let bytes = encode(&sample(), &key());
    for len in 0..bytes.len() {
        let err = parse(&bytes[..len], &key()).expect_err("prefix refused");
        assert_eq!(err.code(), "tag_truncated", "prefix of {len} bytes");
    }
}

#[test]
fn zero_or_overlong_field_length_is_invalid_field() {
    let mut zero = encode(&sample(), &key());
    zero[5] = 0;
    assert_eq!(
        parse(&zero, &key()).expect_err("refused"),
        TagError::InvalidField {
            field: "id",
            reason: "length must be 1..=16"
        }
    );
    let mut long = encode(&sample(), &key());
    long[5] = 17;
    assert_eq!(
        parse(&long, &key()).expect_err("refused").code(),
        "tag_invalid_field"
    );
}

#[test]
fn authenticated_but_invalid_contents_are_invalid_field() {
    let k = key();
    let cases: [(&str, Vec<u8>); 5] = [
        ("id", body(b"bad id", b"LOT", [0x07, 0xEA, 1, 1], 12)),
        ("lot", body(b"ID", &[0xC3, 0xA9], [0x07, 0xEA, 1, 1], 12)),
        ("expiry", body(b"ID", b"LOT", [0x07, 0xEA, 2, 30], 12)),
        ("expiry", body(b"ID", b"LOT", [0x07, 0xEA, 13, 1], 12)),
        ("needles", body(b"ID", b"LOT", [0x07, 0xEA, 1, 1], 13)),
    ];
    for (field, body) in cases {
        match parse(&signed(&body, &k), &k) {
            Err(TagError::InvalidField { field: got, .. }) => assert_eq!(got, field),
            other => panic!("expected invalid {field}, got {other:?}"),
        }
    }
}

#[test]
fn nonzero_padding_is_invalid_field() {
    let mut image = encode_image(&sample(), &key());
    image[TAG_CAPACITY - 1] = 1;
    assert_eq!(
        parse(&image, &key()).expect_err("refused"),
        TagError::InvalidField {
            field: "padding",
            reason: "bytes after the MAC must be zero"
        }
    );
}

#[test]
fn tag_signed_under_another_key_is_bad_mac() {
    let other = DeviceKey::from_bytes([8u8; KEY_LEN]);
    let bytes = encode(&sample(), &other);
    assert_eq!(parse(&bytes, &key()), Err(TagError::BadMac));
}

#[test]
fn changed_content_with_old_mac_is_bad_mac() {
    let mut bytes = encode(&sample(), &key());
    // Change the lot's first byte to another valid character: structure stays intact.
    let lot_start = 5 + 1 + sample().id().len() + 1;
    bytes[lot_start] = b'Z';
    assert_eq!(parse(&bytes, &key()), Err(TagError::BadMac));
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
        let tag = parse(&encode_image(&data, &key()), &key()).expect("parses");
        prop_assert_eq!(tag.data(), &data);
    }

    #[test]
    fn any_single_bit_flip_of_a_tag_image_is_rejected(
        data in arb_tag_data(),
        bit in 0usize..TAG_CAPACITY * 8,
    ) {
        let mut image = encode_image(&data, &key());
        image[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(parse(&image, &key()).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse(&bytes, &key());
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_header_never_panic_nor_authenticate(
        tail in prop::collection::vec(any::<u8>(), 0..140),
    ) {
        let mut bytes = TAG_MAGIC.to_vec();
        bytes.push(TAG_VERSION);
        bytes.extend_from_slice(&tail);
        prop_assert!(parse(&bytes, &key()).is_err());
    }

    #[test]
    fn arbitrary_text_never_panics_the_hex_parser(text in ".{0,300}") {
        let _ = parse_hex(&text, &key());
    }
}
