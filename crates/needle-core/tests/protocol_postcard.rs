//! The protocol types cross a serial link encoded with postcard when the core moves onto a
//! microcontroller: every value must come back unchanged, and no byte string may panic the
//! decoder.

use needle_core::protocol::{
    ArmingLimit, Command, Fault, Faults, Interlock, Interlocks, Rejected, State, Telemetry,
};
use needle_core::units::{
    Micrometers, Micros, MilliAmps, MilliCelsius, MilliHertz, MilliVolts, Permyriad,
};
use proptest::prelude::*;

fn round_trip<T>(value: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let mut buf = [0u8; 256];
    let bytes = postcard::to_slice(value, &mut buf).expect("fits a 256-byte frame");
    postcard::from_bytes(bytes).expect("decodes")
}

fn command() -> impl Strategy<Value = Command> {
    let um = any::<i32>().prop_map(Micrometers);
    let mhz = any::<u32>().prop_map(MilliHertz);
    prop_oneof![
        Just(Command::Heartbeat),
        Just(Command::Home),
        (
            um.clone(),
            mhz.clone(),
            um.clone(),
            any::<u64>(),
            any::<u32>()
        )
            .prop_map(
                |(depth, rate, ceiling, max_run, max_strokes)| Command::Arm {
                    depth,
                    rate,
                    ceiling,
                    max_run: Micros(max_run),
                    max_strokes,
                }
            ),
        Just(Command::Start),
        Just(Command::Pause),
        Just(Command::Disarm),
        um.prop_map(Command::SetDepth),
        mhz.prop_map(Command::SetRate),
        Just(Command::ClearFaults),
    ]
}

proptest! {
    #[test]
    fn every_command_round_trips(c in command()) {
        prop_assert_eq!(round_trip(&c), c);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_command_decoder(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = postcard::from_bytes::<Command>(&bytes);
    }

    #[test]
    fn telemetry_round_trips(
        now in any::<u64>(), bits in any::<u16>(), depth in any::<i32>(), rate in any::<u32>(),
        duty in 0u16..=10_000, strokes in any::<u32>(), current in any::<i32>(), ticks in any::<u64>(),
    ) {
        let mut faults = Faults::EMPTY;
        for f in Fault::ALL {
            if bits & (1 << (f as u8)) != 0 {
                faults.insert(f);
            }
        }
        let mut interlocks = Interlocks::NONE;
        for i in Interlock::ALL {
            interlocks.set(i, bits & (1 << (i as u8)) != 0);
        }
        let t = Telemetry {
            now: Micros(now),
            state: State::Running,
            faults,
            last_fault: faults.first(),
            interlocks,
            homed: bits & 1 == 0,
            depth_setpoint: Micrometers(depth),
            depth_position: Micrometers(depth / 2),
            depth_ceiling: Micrometers(2_500),
            depth_moving: bits & 2 == 0,
            depth_lash: Micrometers(depth / 5),
            rate_setpoint: MilliHertz(rate),
            rate_measured: MilliHertz(rate / 3),
            duty: Permyriad(duty),
            motor_enabled: true,
            stroke_count: strokes,
            current: MilliAmps(current),
            temperature: MilliCelsius(-current),
            supply: MilliVolts(12_000),
            pedal: false,
            cartridge_openings: strokes / 3,
            arming_run: Micros(now / 2),
            arming_strokes: strokes / 5,
            arming_ended_by: match bits % 3 {
                0 => None,
                1 => Some(ArmingLimit::RunTime),
                _ => Some(ArmingLimit::Strokes),
            },
            ticks,
            late_ticks: strokes / 7,
        };
        prop_assert_eq!(round_trip(&t), t);
    }
}

#[test]
fn every_state_and_refusal_round_trips() {
    for s in [
        State::Boot,
        State::Homing,
        State::Idle,
        State::Armed,
        State::Running,
        State::Paused,
        State::Fault,
        State::EStop,
    ] {
        assert_eq!(round_trip(&s), s);
        assert_eq!(
            round_trip(&Rejected::WrongState(s)),
            Rejected::WrongState(s)
        );
    }
    for f in Fault::ALL {
        assert_eq!(
            round_trip(&Rejected::CauseStillPresent(f)),
            Rejected::CauseStillPresent(f)
        );
    }
    // A heartbeat, the most frequent frame on the link, is one byte.
    let mut buf = [0u8; 8];
    assert_eq!(
        postcard::to_slice(&Command::Heartbeat, &mut buf)
            .unwrap()
            .len(),
        1
    );
}
