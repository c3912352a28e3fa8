//! The link's decoders: needle-link's frame `Decoder`, and both ends (`PenLink`, `HostLink`)
//! fed the same arbitrary bytes, as a pen or a host would get them from a noisy serial line.
//!
//! Properties: nothing panics; a frame the decoder accepts carries at most `MAX_PAYLOAD`
//! bytes, and encodes back to exactly the bytes it came from (so it is a frame some sender
//! could have sent, not a misreading of noise); the decoder receives a run of good frames
//! whatever came before (it resynchronises); and `push_slice`, given the bytes in chunks
//! (their lengths taken from the input), returns exactly what `push` returns byte by byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use needle_core::units::Micros;
use needle_link::frame::{self, Decoder, Header};
use needle_link::{HostLink, PenId, PenLink};

fuzz_target!(|data: &[u8]| {
    let mut pen = PenLink::new(PenId(*b"FUZZPEN0"));
    let mut host = HostLink::new(Micros(1_000));
    let mut decoder = Decoder::new();
    let mut wire = [0u8; frame::MAX_ENCODED];
    let mut one_by_one = Vec::new();
    let mut by_push = Decoder::new();
    for (i, b) in data.iter().enumerate() {
        if let Some(r) = by_push.push(*b) {
            one_by_one.push((i, r.map(|f| (f.header.seq, f.payload.to_vec()))));
        }
    }
    let mut sliced = Vec::new();
    let mut by_slice = Decoder::new();
    let mut at = 0;
    while at < data.len() {
        let chunk = usize::from(data[at] % 64) + 1;
        let end = (at + chunk).min(data.len());
        while at < end {
            let (took, r) = by_slice.push_slice(&data[at..end]);
            assert!(took > 0, "push_slice took nothing");
            at += took;
            if let Some(r) = r {
                sliced.push((at - 1, r.map(|f| (f.header.seq, f.payload.to_vec()))));
            }
        }
    }
    assert_eq!(sliced, one_by_one, "push_slice differs from push");
    for (i, b) in data.iter().enumerate() {
        let _ = pen.receive(*b);
        let _ = host.receive(*b, Micros(i as u64));
        if let Some(Ok(f)) = decoder.push(*b) {
            assert!(f.payload.len() <= frame::MAX_PAYLOAD);
            let n = frame::encode(f.header, f.payload, &mut wire).expect("re-encode");
            let start = (i + 1)
                .checked_sub(n)
                .expect("a frame is as long as its bytes");
            assert_eq!(&data[start..=i], &wire[..n], "accepted bytes are a frame");
        }
    }
    // Resynchronisation: a run of good frames is received after any prefix. A half-read
    // frame takes at most `MAX_ENCODED` more bytes to end and fail; a start inside a good
    // frame fails at its end too, and discarding then stops at a good frame's sync byte.
    let n = frame::encode(Header { seq: 42 }, b"resync", &mut wire).expect("encode");
    let mut got = false;
    for _ in 0..3 * frame::MAX_ENCODED / n + 3 {
        for b in &wire[..n] {
            if let Some(Ok(f)) = decoder.push(*b) {
                got |= f.header.seq == 42 && f.payload == b"resync";
            }
        }
    }
    assert!(got, "the decoder never resynchronised");
});
