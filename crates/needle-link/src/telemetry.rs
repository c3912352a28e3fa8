//! The compact telemetry layout: the one message sent every pen tick, so it is small on the
//! wire and cheap to build on the pen (hand-written, no serde). Protocol version 4; unchanged
//! in 5.
//!
//! ```text
//! flags: u8      bit 0 key frame, bits 1-3 state, bit 4 homed, bit 5 depth_moving,
//!                bit 6 motor_enabled, bit 7 pedal
//! key: u8        a key frame's number, or the number of the key frame a delta frame is from
//! key frame:     step: varint (u32, µs), step_ticks: varint (u16): what the clock and the
//!                tick count advance by from one telemetry frame to the next
//! delta frame:   since: u8, the telemetry frames sent since its key (1 the first after it)
//! m1: u8         bits 0-6: which of numbers 0-6 follow; bit 7: m2 follows them
//! numbers 0-6:   stroke_count, rate_measured, duty, depth_position, current, temperature,
//!                supply (those m1 names, in this order)
//! m2: u16        (only when m1 bit 7) little endian, bits 0-10: which of numbers 7-17
//!                follow; bits 11-15 zero, and m2 not 0
//! numbers 7-17:  now, ticks, arming_run, arming_strokes, status (last_fault | arming_ended_by
//!                << 4 | faults << 8 | interlocks << 24), depth_setpoint, depth_ceiling,
//!                depth_lash, rate_setpoint, cartridge_openings, late_ticks
//! ```
//!
//! Each number travels as a zigzag LEB128 varint of its difference (wrapping, 64 bits) from
//! its *expected* value, and only when that difference is not 0. In a key frame every
//! expected value is 0 (whole values). In a delta frame it is the key frame's value, except
//! for the numbers that move by a known amount every frame: `now` is expected at the key's
//! plus `since` times `step`, `ticks` at the key's plus `since` times `step_ticks`,
//! `arming_run` (in `Running`, the frame's state) at the key's plus `since` times `step`, and
//! `arming_strokes` at the key's plus the strokes counted since the key (number 0's
//! difference). A running pen's delta frame therefore carries, most ticks, only the few
//! sensor readings that changed since its key: 6 to 8 bytes of payload.
//!
//! The pen sends a key frame first after every handshake and then every [`KEY_EVERY`] frames
//! or [`KEY_PERIOD`] of its clock, whichever comes first; the host keeps the last key frame
//! it received and uses a delta frame only when it names that key and the key came at most
//! [`ANCHOR_FOR`] ago (host clock). Key numbers wrap after 256 keys, which take at least
//! 1.28 s (50 frames at the fastest tick, 100 µs, per key), so a delta frame within
//! [`ANCHOR_FOR`] of its key cannot name an older key of the same number. A lost key frame
//! costs the delta frames up to the next one (counted as `unanchored`, and still proof that
//! the pen is configured and sending), never a wrong value. A misprediction (a late tick, a
//! frame the pen's queue had no room for) costs a varint's bytes, never a wrong value: the
//! decoder makes the same prediction from the same bytes.
//!
//! The status and the six rare numbers (11-17) move only on rare events, so the pen reads them
//! only when they may have: [`Fields::revision`] is the controller's
//! [`Controller::revision`], which moves whenever any of them may have changed, and a delta
//! frame at the revision at which the pen last saw them equal to its key's skips them (in debug
//! builds it checks that they still are). A snapshot has no revision and is compared every
//! frame. Either way the bytes are the same.

use needle_core::hal::Hardware;
use needle_core::units::{
    Micrometers, Micros, MilliAmps, MilliCelsius, MilliHertz, MilliVolts, Permyriad,
};
use needle_core::{
    ArmingLimit, Controller, Fault, Faults, Interlock, Interlocks, State, Telemetry,
};

/// The pen sends a key frame at least every this many telemetry frames...
pub const KEY_EVERY: u16 = 50;
/// ...and at least this often (pen clock).
pub const KEY_PERIOD: Micros = Micros(100_000);
/// The host uses a delta frame only within this long (host clock) of its key frame.
pub const ANCHOR_FOR: Micros = Micros(500_000);
/// The numbers a frame carries.
const NUMBERS: usize = 18;
/// The numbers `m1` names (the sensor readings and the stroke counter, which move most).
const FREQUENT: usize = 7;
/// The room [`encode`] needs. The longest encoding is 118 bytes: flags, key, a key frame's
/// steps (5 + 3), `m1`, `m2` (2), three 64-bit numbers (`now`, `ticks`, `arming_run`) of 10
/// bytes and fifteen of at most 5 (32-bit values and their differences).
pub const MAX_LEN: usize = 128;

const STATES: [State; 8] = [
    State::Boot,
    State::Homing,
    State::Idle,
    State::Armed,
    State::Running,
    State::Paused,
    State::Fault,
    State::EStop,
];

fn state_code(state: State) -> u8 {
    match state {
        State::Boot => 0,
        State::Homing => 1,
        State::Idle => 2,
        State::Armed => 3,
        State::Running => 4,
        State::Paused => 5,
        State::Fault => 6,
        State::EStop => 7,
    }
}

/// Declares [`Fields`] and implements it for [`Telemetry`] (its fields) and [`Controller`]
/// (its accessors of the same names), from one list of the fields.
macro_rules! fields {
    ($($(#[$doc:meta])* $name:ident: $ty:ty,)*) => {
        /// What a telemetry frame is written from: the fields of [`Telemetry`], one accessor each.
        /// Implemented for a [`Telemetry`] snapshot (the host's tests, [`crate::PenLink::send`]) and
        /// for the [`Controller`] itself, whose accessors read its state where it is: the pen
        /// encodes each tick's frame straight from the controller, with no snapshot of it built
        /// (the snapshot and its copy were about 180 instructions of a 1 kHz tick).
        pub trait Fields {
            $($(#[$doc])* fn $name(&self) -> $ty;)*

            /// [`Controller::revision`]: a number that changes whenever the status and the
            /// rare numbers (11-17) may have changed, or `None` when there is none (a
            /// snapshot), so they are compared every frame.
            #[inline]
            fn revision(&self) -> Option<u32> {
                None
            }
        }

        impl Fields for Telemetry {
            $(#[inline]
            fn $name(&self) -> $ty {
                self.$name
            })*
        }

        impl<H: Hardware> Fields for Controller<H> {
            $(#[inline]
            fn $name(&self) -> $ty {
                Controller::$name(self)
            })*

            #[inline]
            fn revision(&self) -> Option<u32> {
                Some(Controller::revision(self))
            }
        }
    };
}

fields! {
    /// The time of the latest tick ([`Telemetry::now`]).
    now: Micros,
    /// The supervisor's state ([`Telemetry::state`]).
    state: State,
    /// Latched faults ([`Telemetry::faults`]).
    faults: Faults,
    /// The most recent fault latched ([`Telemetry::last_fault`]).
    last_fault: Option<Fault>,
    /// Active interlocks ([`Telemetry::interlocks`]).
    interlocks: Interlocks,
    /// Whether the depth axis is referenced ([`Telemetry::homed`]).
    homed: bool,
    /// The depth setpoint ([`Telemetry::depth_setpoint`]).
    depth_setpoint: Micrometers,
    /// The depth position ([`Telemetry::depth_position`]).
    depth_position: Micrometers,
    /// The depth ceiling ([`Telemetry::depth_ceiling`]).
    depth_ceiling: Micrometers,
    /// Whether the depth axis moves ([`Telemetry::depth_moving`]).
    depth_moving: bool,
    /// The lead screw's lash ([`Telemetry::depth_lash`]).
    depth_lash: Micrometers,
    /// The stroke rate setpoint ([`Telemetry::rate_setpoint`]).
    rate_setpoint: MilliHertz,
    /// The stroke rate measured ([`Telemetry::rate_measured`]).
    rate_measured: MilliHertz,
    /// The motor's PWM duty ([`Telemetry::duty`]).
    duty: Permyriad,
    /// Whether the motor driver is enabled ([`Telemetry::motor_enabled`]).
    motor_enabled: bool,
    /// Strokes since start-up ([`Telemetry::stroke_count`]).
    stroke_count: u32,
    /// Motor current ([`Telemetry::current`]).
    current: MilliAmps,
    /// Temperature ([`Telemetry::temperature`]).
    temperature: MilliCelsius,
    /// Supply voltage ([`Telemetry::supply`]).
    supply: MilliVolts,
    /// Whether the pedal is pressed ([`Telemetry::pedal`]).
    pedal: bool,
    /// Times the cartridge switch opened ([`Telemetry::cartridge_openings`]).
    cartridge_openings: u32,
    /// The arming's run time ([`Telemetry::arming_run`]).
    arming_run: Micros,
    /// The arming's strokes ([`Telemetry::arming_strokes`]).
    arming_strokes: u32,
    /// The limit that ended the arming ([`Telemetry::arming_ended_by`]).
    arming_ended_by: Option<ArmingLimit>,
    /// Ticks since start-up ([`Telemetry::ticks`]).
    ticks: u64,
    /// Late ticks ([`Telemetry::late_ticks`]).
    late_ticks: u32,
}

/// What the clock and the tick count advance by from one telemetry frame to the next: the
/// pen's tick period times its telemetry decimation, and the decimation. Carried in key
/// frames; delta frames' `now`, `ticks` and `arming_run` are sent as differences from the
/// advance it predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Microseconds of the pen's clock between telemetry frames.
    pub micros: u32,
    /// Ticks between telemetry frames.
    pub ticks: u16,
}

impl Step {
    /// One frame a tick at 1 kHz, the controller's default.
    pub const DEFAULT: Step = Step {
        micros: 1_000,
        ticks: 1,
    };

    /// The step of telemetry every `every` ticks of `period`; a period too long for `u32`
    /// saturates (a misprediction costs bytes, never a value).
    pub fn of(period: Micros, every: u16) -> Self {
        let micros = period.0.saturating_mul(u64::from(every));
        Step {
            micros: u32::try_from(micros).unwrap_or(u32::MAX),
            ticks: every,
        }
    }
}

impl Default for Step {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A key frame's numbers, which delta frames are differences from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The key frame's number.
    pub number: u8,
    /// The advance a frame the key carried.
    pub step: Step,
    values: [u64; NUMBERS],
}

/// Sign-extends an `i32` to the 64 bits of the wire's arithmetic.
#[inline(always)]
fn wide(v: i32) -> u64 {
    i64::from(v) as u64
}

/// The status number: `last_fault | arming_ended_by << 4 | faults << 8 | interlocks << 24`.
#[inline(always)]
fn status<F: Fields + ?Sized>(t: &F) -> u64 {
    let last_fault = t.last_fault().map_or(0, |f| f as u32 + 1);
    // 0 none, 1 run time, 2 strokes (the variants' order).
    let ended = t.arming_ended_by().map_or(0, |l| l as u32 + 1);
    let active = t.interlocks();
    let mut interlocks = 0u32;
    for i in Interlock::ALL {
        interlocks |= u32::from(active.contains(i)) << (i as u32);
    }
    u64::from(last_fault | ended << 4 | u32::from(t.faults().bits()) << 8 | interlocks << 24)
}

/// The flags byte of `t` (bit 0, the key bit, clear).
#[inline(always)]
fn flags<F: Fields + ?Sized>(t: &F) -> u8 {
    state_code(t.state()) << 1
        | u8::from(t.homed()) << 4
        | u8::from(t.depth_moving()) << 5
        | u8::from(t.motor_enabled()) << 6
        | u8::from(t.pedal()) << 7
}

/// The six rare numbers, the last of the 18: setpoints, limits and counters of rare events.
#[inline(always)]
fn rare<F: Fields + ?Sized>(t: &F) -> [u64; 6] {
    [
        wide(t.depth_setpoint().0),
        wide(t.depth_ceiling().0),
        wide(t.depth_lash().0),
        u64::from(t.rate_setpoint().0),
        u64::from(t.cartridge_openings()),
        u64::from(t.late_ticks()),
    ]
}

impl Key {
    /// The key of telemetry `t`, numbered `number`, sent with `step`.
    pub fn of<F: Fields + ?Sized>(t: &F, number: u8, step: Step) -> Self {
        let [r0, r1, r2, r3, r4, r5] = rare(t);
        Self {
            number,
            step,
            values: [
                u64::from(t.stroke_count()),
                u64::from(t.rate_measured().0),
                u64::from(t.duty().0),
                wide(t.depth_position().0),
                wide(t.current().0),
                wide(t.temperature().0),
                wide(t.supply().0),
                t.now().0,
                t.ticks(),
                t.arming_run().0,
                u64::from(t.arming_strokes()),
                status(t),
                r0,
                r1,
                r2,
                r3,
                r4,
                r5,
            ],
        }
    }
}

/// What a telemetry frame is.
#[derive(Debug, Clone, Copy)]
pub enum Kind<'a> {
    /// A key frame with this number and step: whole values.
    Key(u8, Step),
    /// A delta frame from this key, the `since`-th telemetry frame after it.
    Delta(&'a Key, u8),
}

/// Writes bytes and LEB128 varints into a buffer, refusing to run past its end.
pub(crate) struct Writer<'a> {
    pub(crate) out: &'a mut [u8],
    pub(crate) at: usize,
}

impl Writer<'_> {
    #[inline]
    pub(crate) fn byte(&mut self, b: u8) -> Option<()> {
        *self.out.get_mut(self.at)? = b;
        self.at += 1;
        Some(())
    }

    #[inline]
    pub(crate) fn varint(&mut self, mut v: u64) -> Option<()> {
        while v >= 0x80 {
            self.byte((v as u8) | 0x80)?;
            v >>= 7;
        }
        self.byte(v as u8)
    }
}

/// The telemetry encoder's writer: a buffer of exactly [`MAX_LEN`] bytes written at
/// `at % MAX_LEN`, so no byte needs a bounds check (the mask is one instruction); the
/// longest encoding is shorter than the buffer, and [`encode`] checks `at` once at the end.
struct Fixed<'a> {
    out: &'a mut [u8; MAX_LEN],
    at: usize,
}

impl Fixed<'_> {
    #[inline(always)]
    fn byte(&mut self, b: u8) {
        if let Some(slot) = self.out.get_mut(self.at % MAX_LEN) {
            *slot = b;
        }
        self.at += 1;
    }

    /// A LEB128 varint; one byte (the common case, a small difference) takes one test.
    #[inline(always)]
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.byte((v as u8) | 0x80);
            v >>= 7;
        }
        self.byte(v as u8);
    }

    /// Writes the masks of the numbers written since `m1_at` (`mask`: bits 0-6 are m1's,
    /// bits 8-18 m2's) into the room kept for them at `m1_at` and `m2_at`, giving m2's two
    /// bytes back when it is 0 (nothing was written after them then); returns the frame's
    /// length, or `None` when it ran past [`MAX_LEN`].
    #[inline(always)]
    fn finish(&mut self, m1_at: usize, m2_at: usize, mask: u32) -> Option<usize> {
        let end = self.at;
        let m2 = (mask >> 8) as u16;
        let mut m1 = (mask & 0x7f) as u8;
        if m2 != 0 {
            m1 |= 0x80;
            let [lo, hi] = m2.to_le_bytes();
            self.at = m2_at;
            self.byte(lo);
            self.byte(hi);
        }
        let len = if m2 == 0 { m2_at } else { end };
        self.at = m1_at;
        self.byte(m1);
        (len <= MAX_LEN).then_some(len)
    }

    /// Number `value` where `expected` was: its zigzag difference written, and `bit` set in
    /// `mask`, when not 0.
    #[inline(always)]
    fn put(&mut self, value: u64, expected: u64, mask: &mut u32, bit: u32) {
        let d = value.wrapping_sub(expected) as i64;
        if d != 0 {
            *mask |= bit;
            self.varint(((d << 1) ^ (d >> 63)) as u64);
        }
    }
}

/// Writes `t` into `out` as `kind`; returns the bytes written, or `None` when `out` is
/// shorter than [`MAX_LEN`].
///
/// A delta frame ([`encode_delta`], once a pen tick) is written out field by field: each
/// number is read from `t` where it is compared, with no array of the numbers built first,
/// and the status and rare numbers (faults, interlocks, setpoints, limits, counters of rare
/// events) are tested as one block, since during a treatment they do not move for thousands
/// of ticks. A key frame ([`encode_key`]) is written from the [`Key`] it keeps.
#[inline]
pub fn encode<F: Fields + ?Sized>(t: &F, kind: Kind<'_>, out: &mut [u8]) -> Option<usize> {
    let out = out.first_chunk_mut::<MAX_LEN>()?;
    match kind {
        Kind::Key(number, step) => encode_key(t, &Key::of(t, number, step), out),
        Kind::Delta(key, since) => encode_delta(t, key, since, false, out).map(|(n, _)| n),
    }
}

/// [`encode`] of a delta frame from `key`, the `since`-th telemetry frame after it, told
/// whether the caller knows the status and rare numbers (11-17) to equal the key's
/// (`known_same`, from an unchanged [`Fields::revision`]: the frame then skips reading and
/// comparing them). Returns the bytes written and whether those numbers equal the key's.
#[inline(always)]
pub fn encode_delta<F: Fields + ?Sized>(
    t: &F,
    key: &Key,
    since: u8,
    known_same: bool,
    out: &mut [u8; MAX_LEN],
) -> Option<(usize, bool)> {
    let flags = flags(t);
    let running = flags >> 1 & 7 == state_code(State::Running);
    let mut w = Fixed { out, at: 0 };
    w.byte(flags);
    w.byte(key.number);
    w.byte(since);
    // The expected values: the key's, and its predictions for the numbers that advance.
    let (base, since, step) = (&key.values, u64::from(since), key.step);
    // By reference: each is loaded where it is compared, not all 18 first (and spilled).
    let [b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15, b16, b17] = base;
    let m1_at = w.at;
    w.at += 1;
    let strokes = u64::from(t.stroke_count());
    // One mask: bits 0-6 are m1's, bits 8-18 m2's (numbers 7-17).
    let mut mask = 0u32;
    w.put(strokes, *b0, &mut mask, 1);
    w.put(u64::from(t.rate_measured().0), *b1, &mut mask, 1 << 1);
    w.put(u64::from(t.duty().0), *b2, &mut mask, 1 << 2);
    w.put(wide(t.depth_position().0), *b3, &mut mask, 1 << 3);
    w.put(wide(t.current().0), *b4, &mut mask, 1 << 4);
    w.put(wide(t.temperature().0), *b5, &mut mask, 1 << 5);
    w.put(wide(t.supply().0), *b6, &mut mask, 1 << 6);
    let m2_at = w.at;
    w.at += 2;
    let advance = since.wrapping_mul(u64::from(step.micros));
    w.put(t.now().0, b7.wrapping_add(advance), &mut mask, 1 << 8);
    let ticks = b8.wrapping_add(since.wrapping_mul(u64::from(step.ticks)));
    w.put(t.ticks(), ticks, &mut mask, 1 << 9);
    let run = b9.wrapping_add(if running { advance } else { 0 });
    w.put(t.arming_run().0, run, &mut mask, 1 << 10);
    // The strokes of this arming grow with the stroke counter.
    let counted = strokes.wrapping_sub(*b0);
    w.put(
        u64::from(t.arming_strokes()),
        b10.wrapping_add(counted),
        &mut mask,
        1 << 11,
    );
    let same = if known_same {
        debug_assert!(
            status(t) == *b11 && rare(t) == [*b12, *b13, *b14, *b15, *b16, *b17],
            "status or rare numbers changed under an unchanged revision"
        );
        true
    } else {
        let s = status(t);
        let [r0, r1, r2, r3, r4, r5] = rare(t);
        (s ^ *b11)
            | (r0 ^ *b12)
            | (r1 ^ *b13)
            | (r2 ^ *b14)
            | (r3 ^ *b15)
            | (r4 ^ *b16)
            | (r5 ^ *b17)
            == 0
    };
    if !same {
        // Read again, only in a frame where they moved: writing them inside the compare's
        // branch above measured 25 instructions a tick more at 1 kHz (bench-pen-tick), the
        // compiler keeping the values live across the common path.
        let s = status(t);
        let [r0, r1, r2, r3, r4, r5] = rare(t);
        w.put(s, *b11, &mut mask, 1 << 12);
        w.put(r0, *b12, &mut mask, 1 << 13);
        w.put(r1, *b13, &mut mask, 1 << 14);
        w.put(r2, *b14, &mut mask, 1 << 15);
        w.put(r3, *b15, &mut mask, 1 << 16);
        w.put(r4, *b16, &mut mask, 1 << 17);
        w.put(r5, *b17, &mut mask, 1 << 18);
    }
    w.finish(m1_at, m2_at, mask).map(|len| (len, same))
}

/// Writes the key frame of `t` into `out`: its flags, and every number whole from `key`,
/// which must be [`Key::of`] `t` (the numbers read once, for the frame and for the key the
/// sender keeps). Returns the bytes written.
#[inline]
pub fn encode_key<F: Fields + ?Sized>(t: &F, key: &Key, out: &mut [u8; MAX_LEN]) -> Option<usize> {
    let Key {
        number,
        step,
        ref values,
    } = *key;
    let mut w = Fixed { out, at: 0 };
    w.byte(flags(t) | 1);
    w.byte(number);
    w.varint(u64::from(step.micros));
    w.varint(u64::from(step.ticks));
    let m1_at = w.at;
    w.at += 1;
    let mut mask = 0u32;
    let (frequent, others) = values.split_at(FREQUENT);
    for (i, v) in frequent.iter().enumerate() {
        w.put(*v, 0, &mut mask, 1 << i);
    }
    let m2_at = w.at;
    w.at += 2;
    for (i, v) in others.iter().enumerate() {
        w.put(*v, 0, &mut mask, 1 << (8 + i));
    }
    w.finish(m1_at, m2_at, mask)
}

/// Why a telemetry payload was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// Not a valid encoding (a field out of range, too short, trailing bytes).
    Malformed,
    /// A delta frame from a key frame the host does not have (lost, or too old).
    Unanchored,
}

/// Reads bytes and LEB128 varints from a payload.
pub(crate) struct Reader<'a> {
    pub(crate) bytes: &'a [u8],
}

impl Reader<'_> {
    pub(crate) fn byte(&mut self) -> Result<u8, Unusable> {
        let (first, rest) = self.bytes.split_first().ok_or(Unusable::Malformed)?;
        self.bytes = rest;
        Ok(*first)
    }

    /// A varint of at most `bits` bits; longer or larger is malformed.
    pub(crate) fn varint(&mut self, bits: u32) -> Result<u64, Unusable> {
        let mut v = 0u64;
        let mut shift = 0u32;
        loop {
            let b = self.byte()?;
            let part = u64::from(b & 0x7f);
            // The part must fit in the bits still free.
            if shift >= bits || (bits - shift < 7 && part >> (bits - shift) != 0) {
                return Err(Unusable::Malformed);
            }
            v |= part << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
            shift += 7;
        }
    }

    /// The numbers `mask` names, of `values`, as differences: zigzag varints, in order.
    fn numbers(&mut self, mask: u32, values: &mut [u64]) -> Result<(), Unusable> {
        for (i, v) in values.iter_mut().enumerate() {
            if mask & 1 << i != 0 {
                let z = self.varint(64)?;
                *v = ((z >> 1) as i64 ^ -((z & 1) as i64)) as u64;
            }
        }
        Ok(())
    }
}

fn unsigned<T: TryFrom<u64>>(v: u64) -> Result<T, Unusable> {
    T::try_from(v).map_err(|_| Unusable::Malformed)
}

fn signed(v: u64) -> Result<i32, Unusable> {
    i32::try_from(v as i64).map_err(|_| Unusable::Malformed)
}

/// Reads a telemetry payload; `key` is the last key frame the host received, if it came at
/// most [`ANCHOR_FOR`] ago. Returns the telemetry and, for a key frame, its key.
pub fn decode(bytes: &[u8], key: Option<&Key>) -> Result<(Telemetry, Option<Key>), Unusable> {
    let mut r = Reader { bytes };
    let flags = r.byte()?;
    let is_key = flags & 1 != 0;
    let state = *STATES
        .get(usize::from(flags >> 1 & 7))
        .ok_or(Unusable::Malformed)?;
    let number = r.byte()?;
    let (since, step) = if is_key {
        let micros = unsigned(r.varint(32)?)?;
        let ticks = unsigned(r.varint(16)?)?;
        (0u64, Step { micros, ticks })
    } else {
        (
            u64::from(r.byte()?),
            Step {
                micros: 0,
                ticks: 0,
            },
        )
    };
    let m1 = r.byte()?;
    let mut diffs = [0u64; NUMBERS];
    let (frequent, others) = diffs.split_at_mut(FREQUENT);
    r.numbers(u32::from(m1 & 0x7f), frequent)?;
    if m1 & 0x80 != 0 {
        let m2 = u32::from(u16::from_le_bytes([r.byte()?, r.byte()?]));
        if m2 == 0 || m2 >> (NUMBERS - FREQUENT) != 0 {
            return Err(Unusable::Malformed);
        }
        r.numbers(m2, others)?;
    }
    if !r.bytes.is_empty() {
        return Err(Unusable::Malformed);
    }
    let values = if is_key {
        diffs
    } else {
        // Checked after the whole frame, so a malformed one is counted as such.
        let k = key
            .filter(|k| k.number == number)
            .ok_or(Unusable::Unanchored)?;
        let advance = since.wrapping_mul(u64::from(k.step.micros));
        let mut expected = k.values;
        let [_, _, _, _, _, _, _, now, ticks, run, arming_strokes, ..] = &mut expected;
        *now = now.wrapping_add(advance);
        *ticks = ticks.wrapping_add(since.wrapping_mul(u64::from(k.step.ticks)));
        if state == State::Running {
            *run = run.wrapping_add(advance);
        }
        *arming_strokes = arming_strokes.wrapping_add(diffs.first().copied().unwrap_or(0));
        let mut values = diffs;
        for (v, e) in values.iter_mut().zip(expected) {
            *v = v.wrapping_add(e);
        }
        values
    };
    let [strokes, rate, duty, position, current, temperature, supply, now, ticks, run, arming_strokes, status, setpoint, ceiling, lash, rate_set, openings, late] =
        values;
    let status = u32::try_from(status).map_err(|_| Unusable::Malformed)?;
    let [limits, fault_lo, fault_hi, interlock_bits] = status.to_le_bytes();
    let last_fault = match limits & 0x0f {
        0 => None,
        n => Some(
            *Fault::ALL
                .get(usize::from(n - 1))
                .ok_or(Unusable::Malformed)?,
        ),
    };
    let arming_ended_by = match limits >> 4 {
        0 => None,
        1 => Some(ArmingLimit::RunTime),
        2 => Some(ArmingLimit::Strokes),
        _ => return Err(Unusable::Malformed),
    };
    let fault_bits = u16::from_le_bytes([fault_lo, fault_hi]);
    let mut faults = Faults::EMPTY;
    for f in Fault::ALL {
        if fault_bits & 1 << (f as u8) != 0 {
            faults.insert(f);
        }
    }
    if faults.bits() != fault_bits {
        return Err(Unusable::Malformed);
    }
    let mut interlocks = Interlocks::NONE;
    let mut known = 0u8;
    for i in Interlock::ALL {
        let bit = 1u8 << (i as u8);
        known |= bit;
        interlocks.set(i, interlock_bits & bit != 0);
    }
    if interlock_bits & !known != 0 {
        return Err(Unusable::Malformed);
    }
    let t = Telemetry {
        now: Micros(now),
        state,
        faults,
        last_fault,
        interlocks,
        homed: flags & 1 << 4 != 0,
        depth_setpoint: Micrometers(signed(setpoint)?),
        depth_position: Micrometers(signed(position)?),
        depth_ceiling: Micrometers(signed(ceiling)?),
        depth_moving: flags & 1 << 5 != 0,
        depth_lash: Micrometers(signed(lash)?),
        rate_setpoint: MilliHertz(unsigned(rate_set)?),
        rate_measured: MilliHertz(unsigned(rate)?),
        duty: Permyriad(unsigned(duty)?),
        motor_enabled: flags & 1 << 6 != 0,
        stroke_count: unsigned(strokes)?,
        current: MilliAmps(signed(current)?),
        temperature: MilliCelsius(signed(temperature)?),
        supply: MilliVolts(signed(supply)?),
        pedal: flags & 1 << 7 != 0,
        cartridge_openings: unsigned(openings)?,
        arming_run: Micros(run),
        arming_strokes: unsigned(arming_strokes)?,
        arming_ended_by,
        ticks,
        late_ticks: unsigned(late)?,
    };
    Ok((t, is_key.then(|| Key::of(&t, number, step))))
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{PenMessage, TELEMETRY_TAG};

    /// Telemetry ten hours into a day of running, its counters past the compact frame's low
    /// bits.
    pub(crate) fn running() -> Telemetry {
        let mut faults = Faults::EMPTY;
        faults.insert(Fault::StrokeStall);
        let mut interlocks = Interlocks::NONE;
        interlocks.set(Interlock::CartridgeMissing, true);
        Telemetry {
            now: Micros(36_000_123_456),
            state: State::Running,
            faults,
            last_fault: Some(Fault::ControlOverrun),
            interlocks,
            homed: true,
            depth_setpoint: Micrometers(1_500),
            depth_position: Micrometers(-1_498),
            depth_ceiling: Micrometers(2_000),
            depth_moving: false,
            depth_lash: Micrometers(40),
            rate_setpoint: MilliHertz(120_000),
            rate_measured: MilliHertz(119_870),
            duty: Permyriad(5_230),
            motor_enabled: true,
            stroke_count: 3_456_789,
            current: MilliAmps(812),
            temperature: MilliCelsius(36_250),
            supply: MilliVolts(12_010),
            pedal: true,
            cartridge_openings: 17,
            arming_run: Micros(600_000_000),
            arming_strokes: 72_000,
            arming_ended_by: Some(ArmingLimit::Strokes),
            ticks: 36_000_123,
            late_ticks: 2,
        }
    }

    #[test]
    fn the_telemetry_tag_is_postcards_variant_index() {
        let bytes = postcard::to_slice(&PenMessage::Telemetry(running()), &mut [0u8; 256])
            .unwrap()
            .to_vec();
        assert_eq!(bytes[0], TELEMETRY_TAG);
    }

    const STEP: Step = Step::DEFAULT;

    #[test]
    fn key_and_delta_frames_round_trip() {
        let t = running();
        let mut out = [0u8; MAX_LEN];
        // The key: the same pen 0.2 s earlier, its arming restarted since (counters fall).
        let mut earlier = t;
        earlier.now = Micros(t.now.0 - 200_000);
        earlier.ticks = t.ticks - 200;
        earlier.stroke_count = t.stroke_count - 24;
        earlier.arming_run = Micros(t.arming_run.0 + 5_000_000);
        earlier.temperature = MilliCelsius(36_190);
        let n = encode(&earlier, Kind::Key(7, STEP), &mut out).unwrap();
        let (got, key) = decode(&out[..n], None).unwrap();
        assert_eq!(got, earlier);
        let key = key.unwrap();
        assert_eq!(key, Key::of(&earlier, 7, STEP));
        let n = encode(&t, Kind::Delta(&key, 200), &mut out).unwrap();
        assert!(n <= 30, "a delta frame is {n} bytes");
        assert_eq!(decode(&out[..n], Some(&key)), Ok((t, None)));
        assert_eq!(decode(&out[..n], None), Err(Unusable::Unanchored));
        let other = Key::of(&earlier, 8, STEP);
        assert_eq!(decode(&out[..n], Some(&other)), Err(Unusable::Unanchored));
    }

    #[test]
    fn the_clock_tick_count_run_time_and_arming_strokes_advance_as_predicted_for_free() {
        let t = running();
        let step = Step::of(Micros(500), 4);
        let key = Key::of(&t, 2, step);
        let mut later = t;
        later.now = Micros(t.now.0 + 9 * 2_000);
        later.ticks = t.ticks + 9 * 4;
        later.arming_run = Micros(t.arming_run.0 + 9 * 2_000);
        later.stroke_count = t.stroke_count + 3;
        later.arming_strokes = t.arming_strokes + 3;
        let mut out = [0u8; MAX_LEN];
        let n = encode(&later, Kind::Delta(&key, 9), &mut out).unwrap();
        // flags, key, since, m1 (number 0 only), its difference: 3 strokes.
        assert_eq!(out[..n], [out[0], 2, 9, 0b1, 6], "{:?}", &out[..n]);
        assert_eq!(decode(&out[..n], Some(&key)), Ok((later, None)));
        // Paused: the run time stands still, and is expected to.
        let mut paused = later;
        paused.state = State::Paused;
        paused.arming_run = t.arming_run;
        let n = encode(&paused, Kind::Delta(&key, 9), &mut out).unwrap();
        assert_eq!(n, 5);
        assert_eq!(decode(&out[..n], Some(&key)), Ok((paused, None)));
        // A late tick: a misprediction costs the clock's difference, not its value.
        let mut late = later;
        late.now = Micros(later.now.0 + 37);
        let n = encode(&late, Kind::Delta(&key, 9), &mut out).unwrap();
        assert_eq!(out[3], 0x81, "m2 follows");
        assert_eq!(out[5..8], [1, 0, 74], "now's bit, its zigzag 37");
        assert_eq!(n, 8);
        assert_eq!(decode(&out[..n], Some(&key)), Ok((late, None)));
        // The step travels in the key frame.
        let n = encode(&t, Kind::Key(2, step), &mut out).unwrap();
        assert_eq!(decode(&out[..n], None), Ok((t, Some(key))));
    }

    #[test]
    fn a_delta_frame_carries_each_number_alone_at_its_own_mask_bit() {
        let t = running();
        let key = Key::of(&t, 9, STEP);
        let changes: [fn(&mut Telemetry); NUMBERS] = [
            |t| t.stroke_count += 1,
            |t| t.rate_measured.0 += 1,
            |t| t.duty.0 += 1,
            |t| t.depth_position.0 += 1,
            |t| t.current.0 += 1,
            |t| t.temperature.0 += 1,
            |t| t.supply.0 += 1,
            |t| t.now.0 += 1,
            |t| t.ticks += 1,
            |t| t.arming_run.0 += 1,
            |t| t.arming_strokes += 1,
            |t| t.interlocks.set(Interlock::CartridgeMissing, false),
            |t| t.depth_setpoint.0 += 1,
            |t| t.depth_ceiling.0 += 1,
            |t| t.depth_lash.0 += 1,
            |t| t.rate_setpoint.0 += 1,
            |t| t.cartridge_openings += 1,
            |t| t.late_ticks += 1,
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut later = t;
            change(&mut later);
            if i == 0 {
                // The stroke counter alone moves, the arming's strokes expected to follow.
                later.arming_strokes += 1;
            }
            let mut out = [0u8; MAX_LEN];
            // `since` 0: no advance expected of the clock and tick count.
            let n = encode(&later, Kind::Delta(&key, 0), &mut out).unwrap();
            let got = decode(&out[..n], Some(&key));
            assert_eq!(got, Ok((later, None)), "number {i}");
            if i < FREQUENT {
                assert_eq!(out[3], 1 << i, "number {i}");
                assert_eq!(n, 4 + 1, "number {i}: its difference in one byte");
            } else {
                assert_eq!(out[3], 0x80, "number {i}");
                let m2 = u16::from_le_bytes([out[4], out[5]]);
                assert_eq!(m2, 1 << (i - FREQUENT), "number {i}");
                assert!(n == 6 + 1 || i == 11, "number {i}: {n} bytes");
            }
        }
    }

    #[test]
    fn every_arming_limit_and_fault_round_trips() {
        let mut out = [0u8; MAX_LEN];
        for ended in [None, Some(ArmingLimit::RunTime), Some(ArmingLimit::Strokes)] {
            for last_fault in core::iter::once(None).chain(Fault::ALL.map(Some)) {
                let mut t = running();
                t.arming_ended_by = ended;
                t.last_fault = last_fault;
                let n = encode(&t, Kind::Key(1, STEP), &mut out).unwrap();
                assert_eq!(decode(&out[..n], None).map(|d| d.0), Ok(t));
            }
        }
    }

    #[test]
    fn extremes_round_trip_and_short_buffers_are_refused() {
        let mut t = running();
        t.now = Micros(u64::MAX);
        t.ticks = u64::MAX;
        t.arming_run = Micros(u64::MAX);
        t.depth_position = Micrometers(i32::MIN);
        t.current = MilliAmps(i32::MAX);
        t.late_ticks = u32::MAX;
        t.stroke_count = u32::MAX;
        t.arming_strokes = 0;
        t.state = State::EStop;
        let step = Step {
            micros: u32::MAX,
            ticks: u16::MAX,
        };
        let mut out = [0u8; MAX_LEN];
        let n = encode(&t, Kind::Key(0, step), &mut out).unwrap();
        assert_eq!(decode(&out[..n], None).map(|d| d.0), Ok(t));
        assert_eq!(
            encode(&t, Kind::Key(0, step), &mut [0u8; MAX_LEN - 1]),
            None
        );
        let mut low = running();
        low.stroke_count = 0;
        low.arming_strokes = u32::MAX;
        low.depth_position = Micrometers(i32::MAX);
        low.current = MilliAmps(i32::MIN);
        let key = Key::of(&low, 1, step);
        for since in [1, 255] {
            let n = encode(&t, Kind::Delta(&key, since), &mut out).unwrap();
            assert!(n <= 118, "{n}");
            assert_eq!(decode(&out[..n], Some(&key)).map(|d| d.0), Ok(t));
            for cut in 0..n {
                assert_eq!(decode(&out[..cut], Some(&key)), Err(Unusable::Malformed));
            }
            let mut long = out[..n].to_vec();
            long.push(0);
            assert_eq!(decode(&long, Some(&key)), Err(Unusable::Malformed));
        }
    }

    #[test]
    fn only_the_numbers_that_changed_travel_and_unknown_mask_bits_are_malformed() {
        let t = running();
        let key = Key::of(&t, 5, STEP);
        let mut out = [0u8; MAX_LEN];
        let n = encode(&t, Kind::Delta(&key, 0), &mut out).unwrap();
        assert_eq!(n, 4, "header and an empty mask");
        assert_eq!(decode(&out[..n], Some(&key)), Ok((t, None)));
        let mut later = t;
        later.now = Micros(t.now.0 + 1_000);
        later.late_ticks = 3;
        let n = encode(&later, Kind::Delta(&key, 0), &mut out).unwrap();
        assert_eq!(
            out[3..6],
            [0x80, 1, 4],
            "now (bit 0) and late_ticks (bit 10)"
        );
        assert_eq!(n, 6 + 2 + 1);
        assert_eq!(decode(&out[..n], Some(&key)), Ok((later, None)));
        let mut unknown = out;
        unknown[5] |= 0x08; // bit 11 of m2: there are 11 numbers after m1's
        assert_eq!(decode(&unknown[..n], Some(&key)), Err(Unusable::Malformed));
        // m2 announced but empty: not the encoder's, malformed.
        assert_eq!(
            decode(&[out[0], 5, 0, 0x80, 0, 0], Some(&key)),
            Err(Unusable::Malformed)
        );
    }

    #[test]
    fn out_of_range_fields_are_malformed() {
        let mut out = [0u8; MAX_LEN];
        let mut bad_fault = running();
        bad_fault.last_fault = None;
        let key = Key::of(&bad_fault, 3, STEP);
        let n = encode(&running(), Kind::Delta(&key, 0), &mut out).unwrap();
        assert_eq!(decode(&out[..n], Some(&key)).map(|d| d.0), Ok(running()));
        // A status whose last fault is 15: there are 10.
        let mut status = key;
        status.values[11] |= 0x0f;
        assert_eq!(decode(&out[..n], Some(&status)), Err(Unusable::Malformed));
        let mut limit = key;
        limit.values[11] = limit.values[11] & !0xf0 | 0x30;
        assert_eq!(decode(&out[..n], Some(&limit)), Err(Unusable::Malformed));
        let mut wide_status = key;
        wide_status.values[11] |= 1 << 32;
        assert_eq!(
            decode(&out[..n], Some(&wide_status)),
            Err(Unusable::Malformed)
        );
        // An over-long varint: a u16 step given three bytes of value.
        assert_eq!(
            decode(&[1, 0, 0xe8, 0x07, 0xff, 0xff, 0x7f, 0], None),
            Err(Unusable::Malformed)
        );
        // A depth at the edge of i32's range.
        let mut t = running();
        t.depth_lash = Micrometers(i32::MAX);
        let n = encode(&t, Kind::Key(3, STEP), &mut out).unwrap();
        assert_eq!(decode(&out[..n], None).map(|d| d.0), Ok(t));
        // A delta that takes a depth past i32's range.
        let mut low = running();
        low.depth_lash = Micrometers(i32::MIN);
        let n = encode(
            &running(),
            Kind::Delta(&Key::of(&low, 3, STEP), 1),
            &mut out,
        )
        .unwrap();
        let mut high = running();
        high.depth_lash = Micrometers(i32::MAX);
        assert_eq!(
            decode(&out[..n], Some(&Key::of(&high, 3, STEP))),
            Err(Unusable::Malformed)
        );
    }
    proptest::proptest! {
        /// A key frame of any fields decodes to exactly those fields, and its key is
        /// [`Key::of`] them, on both ends.
        #[test]
        fn a_key_frame_of_any_fields_decodes_to_them_and_their_key(
            numbers in proptest::array::uniform8(proptest::prelude::any::<u32>()),
            wide in proptest::array::uniform3(proptest::prelude::any::<u64>()),
            state in 0usize..8,
            bits in proptest::prelude::any::<u8>(),
            number in proptest::prelude::any::<u8>(),
            micros in proptest::prelude::any::<u32>(),
            ticks in proptest::prelude::any::<u16>(),
        ) {
            let mut t = running();
            let [a, b, c, d, e, f, g, h] = numbers;
            t.stroke_count = a;
            t.rate_measured = MilliHertz(b);
            t.duty = Permyriad((c & 0xffff) as u16);
            t.depth_position = Micrometers(d as i32);
            t.current = MilliAmps(e as i32);
            t.temperature = MilliCelsius(f as i32);
            t.supply = MilliVolts(g as i32);
            t.depth_setpoint = Micrometers(h as i32);
            t.depth_lash = Micrometers(a.rotate_left(7) as i32);
            t.cartridge_openings = b.rotate_left(3);
            t.late_ticks = c.rotate_left(11);
            t.arming_strokes = d.rotate_left(5);
            let [now, tick_count, run] = wide;
            t.now = Micros(now);
            t.ticks = tick_count;
            t.arming_run = Micros(run);
            t.state = STATES[state];
            t.homed = bits & 1 != 0;
            t.depth_moving = bits & 2 != 0;
            t.motor_enabled = bits & 4 != 0;
            t.pedal = bits & 8 != 0;
            if bits & 16 != 0 {
                t.last_fault = None;
                t.arming_ended_by = None;
            }
            let step = Step { micros, ticks };
            let mut out = [0u8; MAX_LEN];
            let key = Key::of(&t, number, step);
            let m = encode_key(&t, &key, &mut out).unwrap();
            let (back, decoded) = decode(&out[..m], None).unwrap();
            proptest::prop_assert_eq!(back, t);
            proptest::prop_assert_eq!(decoded, Some(key));
        }
    }
}
