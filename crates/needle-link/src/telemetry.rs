//! The compact telemetry layout: the one message sent every pen tick, so it is small on the
//! wire and cheap to build on the pen (hand-written, no serde).
//!
//! ```text
//! flags: u8      bit 0 key frame, bits 1-3 state, bit 4 homed, bit 5 depth_moving,
//!                bit 6 motor_enabled, bit 7 pedal
//! key: u8        a key frame's number, or the number of the key frame a delta frame is from
//! limits: u8     bits 0-3 last_fault (0 none, n + 1 the fault with discriminant n),
//!                bits 4-5 arming_ended_by (0 none, 1 run time, 2 strokes), bits 6-7 zero
//! faults: varint, interlocks: u8 (bit n the interlock with discriminant n)
//! present: u24   little endian, bit n set when number n follows (bits 17-23 zero)
//! 17 numbers:    now, ticks, stroke_count, arming_run, arming_strokes, rate_measured,
//!                depth_position, duty, current, temperature, supply, depth_setpoint,
//!                depth_ceiling, depth_lash, rate_setpoint, cartridge_openings, late_ticks;
//!                each its difference (wrapping, 64 bits) from the key frame's, or from 0 in
//!                a key frame itself; only those present, each a zigzag LEB128 varint; a
//!                number not present did not change (its difference is 0)
//! ```
//!
//! Most fields do not move between ticks (setpoints, limits, counters of rare events) and
//! the clock and counters that grow large move by little, so a delta frame carries a handful
//! of short differences: about 20 bytes where postcard's varints of the whole values took 46. The pen sends a key frame first after every handshake and then every
//! [`KEY_EVERY`] frames or [`KEY_PERIOD`] of its clock, whichever comes first; the host keeps
//! the last key frame it received and uses a delta frame only when it names that key and the
//! key came at most [`ANCHOR_FOR`] ago (host clock). Key numbers wrap after 256 keys, which
//! take at least 1.28 s (50 frames at the fastest tick, 100 µs, per key), so a delta frame
//! within [`ANCHOR_FOR`] of its key cannot name an older key of the same number. A lost key
//! frame costs the delta frames up to the next one (counted as `unanchored`, and still
//! proof that the pen is configured and sending), never a wrong value.

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
const NUMBERS: usize = 17;
/// Bytes of the `present` mask.
const PRESENT: usize = 3;
/// Longest encoding: flags, key, limits, faults (3), interlocks, the mask, 17 varints of 10
/// bytes.
pub const MAX_LEN: usize = 1 + 1 + 1 + 3 + 1 + PRESENT + NUMBERS * 10;

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

/// A key frame's numbers, which delta frames are differences from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The key frame's number.
    pub number: u8,
    values: [u64; NUMBERS],
}

impl Key {
    /// The key of telemetry `t`, numbered `number`.
    pub fn of<F: Fields + ?Sized>(t: &F, number: u8) -> Self {
        let wide = |v: i32| i64::from(v) as u64;
        let [r0, r1, r2, r3, r4, r5] = rare(t);
        Self {
            number,
            values: [
                t.now().0,
                t.ticks(),
                u64::from(t.stroke_count()),
                t.arming_run().0,
                u64::from(t.arming_strokes()),
                u64::from(t.rate_measured().0),
                wide(t.depth_position().0),
                u64::from(t.duty().0),
                wide(t.current().0),
                wide(t.temperature().0),
                wide(t.supply().0),
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

/// The six rare numbers, the last of the 17: setpoints, limits and counters of rare events.
#[inline(always)]
fn rare<F: Fields + ?Sized>(t: &F) -> [u64; 6] {
    let wide = |v: i32| i64::from(v) as u64;
    [
        wide(t.depth_setpoint().0),
        wide(t.depth_ceiling().0),
        wide(t.depth_lash().0),
        u64::from(t.rate_setpoint().0),
        u64::from(t.cartridge_openings()),
        u64::from(t.late_ticks()),
    ]
}

/// What a telemetry frame is.
#[derive(Debug, Clone, Copy)]
pub enum Kind<'a> {
    /// A key frame with this number: whole values.
    Key(u8),
    /// A delta frame from this key.
    Delta(&'a Key),
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

/// The numbers' part of a frame being written: each number's difference from the key's,
/// and the mask of those present.
struct Numbers<'a, 'b> {
    w: Writer<'a>,
    base: &'b [u64; NUMBERS],
    present: u32,
}

impl Numbers<'_, '_> {
    /// Number `i` is `v`: written when it differs from the key's.
    #[inline(always)]
    fn put(&mut self, i: usize, v: u64) -> Option<()> {
        let d = v.wrapping_sub(self.base.get(i).copied().unwrap_or(0)) as i64;
        if d != 0 {
            self.present |= 1 << i;
            self.w.varint(((d << 1) ^ (d >> 63)) as u64)?;
        }
        Some(())
    }
}

/// Writes `t` into `out` as `kind`; returns the bytes written, or `None` when `out` is
/// shorter than [`MAX_LEN`] and the encoding did not fit.
///
/// Written out field by field, once a pen tick: each number is read from `t` where it is
/// compared, with no array of the numbers built first (only a key frame keeps one, its
/// [`Key`]), and the rare numbers (setpoints, limits, counters of rare events) are tested
/// as one block, since during a treatment they do not move for thousands of ticks.
#[inline]
pub fn encode<F: Fields + ?Sized>(t: &F, kind: Kind<'_>, out: &mut [u8]) -> Option<usize> {
    let (key, number, base) = match kind {
        Kind::Key(n) => (true, n, &[0; NUMBERS]),
        Kind::Delta(k) => (false, k.number, &k.values),
    };
    let flags = u8::from(key)
        | state_code(t.state()) << 1
        | u8::from(t.homed()) << 4
        | u8::from(t.depth_moving()) << 5
        | u8::from(t.motor_enabled()) << 6
        | u8::from(t.pedal()) << 7;
    let last_fault = t.last_fault().map_or(0, |f| f as u8 + 1);
    let ended = match t.arming_ended_by() {
        None => 0,
        Some(ArmingLimit::RunTime) => 1,
        Some(ArmingLimit::Strokes) => 2,
    };
    let active = t.interlocks();
    let mut interlocks = 0u8;
    for i in Interlock::ALL {
        interlocks |= u8::from(active.contains(i)) << (i as u8);
    }
    let mut w = Writer { out, at: 0 };
    w.byte(flags)?;
    w.byte(number)?;
    w.byte(last_fault | ended << 4)?;
    w.varint(u64::from(t.faults().bits()))?;
    w.byte(interlocks)?;
    // The mask goes before the numbers but is known after them: its bytes are reserved and
    // filled in at the end, so the numbers are written in one pass.
    let mask_at = w.at;
    w.at += PRESENT;
    let wide = |v: i32| i64::from(v) as u64;
    let mut n = Numbers {
        w,
        base,
        present: 0,
    };
    n.put(0, t.now().0)?;
    n.put(1, t.ticks())?;
    n.put(2, u64::from(t.stroke_count()))?;
    n.put(3, t.arming_run().0)?;
    n.put(4, u64::from(t.arming_strokes()))?;
    n.put(5, u64::from(t.rate_measured().0))?;
    n.put(6, wide(t.depth_position().0))?;
    n.put(7, u64::from(t.duty().0))?;
    n.put(8, wide(t.current().0))?;
    n.put(9, wide(t.temperature().0))?;
    n.put(10, wide(t.supply().0))?;
    let [.., c0, c1, c2, c3, c4, c5] = *base;
    let [r0, r1, r2, r3, r4, r5] = rare(t);
    if (r0 ^ c0) | (r1 ^ c1) | (r2 ^ c2) | (r3 ^ c3) | (r4 ^ c4) | (r5 ^ c5) != 0 {
        n.put(11, r0)?;
        n.put(12, r1)?;
        n.put(13, r2)?;
        n.put(14, r3)?;
        n.put(15, r4)?;
        n.put(16, r5)?;
    }
    let Numbers { w, present, .. } = n;
    let [m0, m1, m2, _] = present.to_le_bytes();
    *w.out
        .get_mut(mask_at..mask_at + PRESENT)?
        .first_chunk_mut()? = [m0, m1, m2];
    Some(w.at)
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
    let limits = r.byte()?;
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
    let fault_bits = r.varint(16)?;
    let mut faults = Faults::EMPTY;
    for f in Fault::ALL {
        if fault_bits & 1 << (f as u8) != 0 {
            faults.insert(f);
        }
    }
    if u64::from(faults.bits()) != fault_bits {
        return Err(Unusable::Malformed);
    }
    let interlock_bits = r.byte()?;
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
    let [m0, m1, m2] = [r.byte()?, r.byte()?, r.byte()?];
    let present = u32::from_le_bytes([m0, m1, m2, 0]);
    if present >> NUMBERS != 0 {
        return Err(Unusable::Malformed);
    }
    let mut values = [0u64; NUMBERS];
    for (i, v) in values.iter_mut().enumerate() {
        if present & 1 << i != 0 {
            let z = r.varint(64)?;
            *v = ((z >> 1) as i64 ^ -((z & 1) as i64)) as u64;
        }
    }
    if !r.bytes.is_empty() {
        return Err(Unusable::Malformed);
    }
    if !is_key {
        // Checked after the whole frame, so a malformed one is counted as such.
        let k = key
            .filter(|k| k.number == number)
            .ok_or(Unusable::Unanchored)?;
        for (v, b) in values.iter_mut().zip(k.values) {
            *v = v.wrapping_add(b);
        }
    }
    let [now, ticks, strokes, run, arming_strokes, rate, position, duty, current, temperature, supply, setpoint, ceiling, lash, rate_set, openings, late] =
        values;
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
    Ok((t, is_key.then(|| Key::of(&t, number))))
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
        let n = encode(&earlier, Kind::Key(7), &mut out).unwrap();
        let (got, key) = decode(&out[..n], None).unwrap();
        assert_eq!(got, earlier);
        let key = key.unwrap();
        assert_eq!(key, Key::of(&earlier, 7));
        let n = encode(&t, Kind::Delta(&key), &mut out).unwrap();
        assert!(n <= 30, "a delta frame is {n} bytes");
        assert_eq!(decode(&out[..n], Some(&key)), Ok((t, None)));
        assert_eq!(decode(&out[..n], None), Err(Unusable::Unanchored));
        let other = Key::of(&earlier, 8);
        assert_eq!(decode(&out[..n], Some(&other)), Err(Unusable::Unanchored));
    }

    #[test]
    fn a_delta_frame_carries_each_number_alone_at_its_own_mask_bit() {
        let t = running();
        let key = Key::of(&t, 9);
        let changes: [fn(&mut Telemetry); NUMBERS] = [
            |t| t.now.0 += 1,
            |t| t.ticks += 1,
            |t| t.stroke_count += 1,
            |t| t.arming_run.0 += 1,
            |t| t.arming_strokes += 1,
            |t| t.rate_measured.0 += 1,
            |t| t.depth_position.0 += 1,
            |t| t.duty.0 += 1,
            |t| t.current.0 += 1,
            |t| t.temperature.0 += 1,
            |t| t.supply.0 += 1,
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
            let mut out = [0u8; MAX_LEN];
            let n = encode(&later, Kind::Delta(&key), &mut out).unwrap();
            let mask = u32::from_le_bytes([out[5], out[6], out[7], 0]);
            assert_eq!(mask, 1 << i, "number {i}");
            assert_eq!(n, 8 + 1, "number {i}: its difference, 1, in one byte");
            assert_eq!(
                decode(&out[..n], Some(&key)),
                Ok((later, None)),
                "number {i}"
            );
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
        t.state = State::EStop;
        let mut out = [0u8; MAX_LEN];
        let n = encode(&t, Kind::Key(0), &mut out).unwrap();
        assert_eq!(decode(&out[..n], None).map(|d| d.0), Ok(t));
        assert_eq!(encode(&t, Kind::Key(0), &mut [0u8; 20]), None);
        let key = Key::of(&running(), 1);
        let n = encode(&t, Kind::Delta(&key), &mut out).unwrap();
        assert_eq!(decode(&out[..n], Some(&key)).map(|d| d.0), Ok(t));
        for cut in 0..n {
            assert_eq!(decode(&out[..cut], Some(&key)), Err(Unusable::Malformed));
        }
        let mut long = out[..n].to_vec();
        long.push(0);
        assert_eq!(decode(&long, Some(&key)), Err(Unusable::Malformed));
    }

    #[test]
    fn only_the_numbers_that_changed_travel_and_unknown_mask_bits_are_malformed() {
        let t = running();
        let key = Key::of(&t, 5);
        let mut out = [0u8; MAX_LEN];
        let n = encode(&t, Kind::Delta(&key), &mut out).unwrap();
        assert_eq!(n, 8, "header and an empty mask");
        assert_eq!(decode(&out[..n], Some(&key)), Ok((t, None)));
        let mut later = t;
        later.now = Micros(t.now.0 + 1_000);
        later.late_ticks = 3;
        let n = encode(&later, Kind::Delta(&key), &mut out).unwrap();
        assert_eq!(out[5..8], [1, 0, 1], "now (bit 0) and late_ticks (bit 16)");
        assert_eq!(n, 8 + 2 + 1);
        assert_eq!(decode(&out[..n], Some(&key)), Ok((later, None)));
        let mut unknown = out;
        unknown[7] |= 0x02; // bit 17: there are 17 numbers
        assert_eq!(decode(&unknown[..n], Some(&key)), Err(Unusable::Malformed));
    }

    #[test]
    fn out_of_range_fields_are_malformed() {
        let mut out = [0u8; MAX_LEN];
        let n = encode(&running(), Kind::Key(3), &mut out).unwrap();
        let mut bad_fault = out;
        bad_fault[2] = 0x0f; // last fault 14: there are 10
        assert_eq!(decode(&bad_fault[..n], None), Err(Unusable::Malformed));
        let mut bad_limit = out;
        bad_limit[2] = 0x30;
        assert_eq!(decode(&bad_limit[..n], None), Err(Unusable::Malformed));
        // An over-long varint: a u16 field (faults) given three bytes of value.
        assert_eq!(
            decode(&[1, 0, 0, 0xff, 0xff, 0x7f], None),
            Err(Unusable::Malformed)
        );
        // A depth out of i32's range.
        let mut t = running();
        t.depth_lash = Micrometers(i32::MAX);
        let n = encode(&t, Kind::Key(3), &mut out).unwrap();
        assert_eq!(decode(&out[..n], None).map(|d| d.0), Ok(t));
        // A delta that takes a depth past i32's range.
        let mut low = running();
        low.depth_lash = Micrometers(i32::MIN);
        let n = encode(&running(), Kind::Delta(&Key::of(&low, 3)), &mut out).unwrap();
        let mut high = running();
        high.depth_lash = Micrometers(i32::MAX);
        assert_eq!(
            decode(&out[..n], Some(&Key::of(&high, 3))),
            Err(Unusable::Malformed)
        );
    }
}
