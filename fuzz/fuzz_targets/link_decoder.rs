//! The link's decoders: needle-link's frame `Decoder`, and both ends (`PenLink`, `HostLink`)
//! fed the same arbitrary bytes, as a pen or a host would get them from a noisy serial line.
//!
//! Properties: nothing panics; a frame the decoder accepts carries at most `MAX_PAYLOAD`
//! bytes, and encodes back to exactly the bytes it came from (so it is a frame some sender
//! could have sent, not a misreading of noise); the decoder receives a run of good frames
//! whatever came before (it resynchronises); and `push_slice`, given the bytes in chunks
//! (their lengths taken from the input), returns exactly what `push` returns byte by byte,
//! and the pen's `receive_some`, given the same chunks, the events and counts of its
//! `receive` byte by byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use needle_core::units::Micros;
use needle_link::frame::{self, Decoder, Header};
use needle_link::{HostLink, PenId, PenLink};

/// Hands `data` to `take` as a serial port's reads would come (their lengths from the data
/// itself), each read until `take` has taken all of it; `take` gets where the bytes it is
/// given start and returns how many it took.
fn in_reads(data: &[u8], mut take: impl FnMut(usize, &[u8]) -> usize) {
    let mut at = 0;
    while at < data.len() {
        let end = (at + usize::from(data[at] % 64) + 1).min(data.len());
        while at < end {
            let took = take(at, &data[at..end]);
            assert!(took > 0, "a receive took nothing");
            at += took;
        }
    }
}

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
    in_reads(data, |at, read| {
        let (took, r) = by_slice.push_slice(read);
        if let Some(r) = r {
            sliced.push((at + took - 1, r.map(|f| (f.header.seq, f.payload.to_vec()))));
        }
        took
    });
    assert_eq!(sliced, one_by_one, "push_slice differs from push");
    let mut batch_pen = PenLink::new(PenId(*b"FUZZPEN0"));
    let mut batched = Vec::new();
    in_reads(data, |_, read| {
        let (took, event) = batch_pen.receive_some(read);
        batched.extend(event);
        took
    });
    let mut events = Vec::new();
    for (i, b) in data.iter().enumerate() {
        events.extend(pen.receive(*b));
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
    assert_eq!(batched, events, "receive_some differs from receive");
    assert_eq!(
        batch_pen.counters(),
        pen.counters(),
        "receive_some counts differently"
    );
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
