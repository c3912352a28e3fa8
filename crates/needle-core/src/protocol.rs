//! The types that cross between the host and the core: commands in, telemetry out.
//!
//! All are plain `Copy` types with serde derives, so the same values can travel over a serial
//! link encoded with postcard when the core moves onto a microcontroller.

use serde::{Deserialize, Serialize};

use crate::units::{
    Micrometers, Micros, MilliAmps, MilliCelsius, MilliHertz, MilliVolts, Permyriad,
};

/// The supervisor's state (after grbl's alarm model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum State {
    /// Powered up, depth axis not referenced: homing is required.
    Boot,
    /// The depth axis is seeking its home switch.
    Homing,
    /// Homed, motor off, waiting to be armed.
    Idle,
    /// Setpoints accepted and the depth axis positioned; motor off, waiting for start.
    Armed,
    /// The stroke motor runs. The only state with the motor enabled.
    Running,
    /// Armed, motor stopped by a pause.
    Paused,
    /// A fault is latched: motor off until the cause is gone and faults are cleared.
    Fault,
    /// The E-stop is pressed; motor off. Releasing it leaves the `EStop` fault latched.
    EStop,
}

/// A reason the supervisor stopped the motor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Fault {
    /// The E-stop was pressed.
    EStop = 0,
    /// The cartridge left its seat while armed, running or paused.
    CartridgeRemoved = 1,
    /// The stroke rate stayed far under its setpoint (or no edges came) after the ramp.
    StrokeStall = 2,
    /// The motor current stayed above its limit.
    OverCurrent = 3,
    /// The temperature rose above its limit.
    OverTemperature = 4,
    /// The supply voltage stayed below its minimum (brown-out).
    UnderVoltage = 5,
    /// The depth axis disagrees with its home switch, or homing failed.
    DepthAxisFault = 6,
    /// The host stopped refreshing the dead-man timer while armed or running.
    HostTimeout = 7,
    /// A sensor or output reported an error.
    SensorFault = 8,
    /// The control loop was not called in time.
    ControlOverrun = 9,
}

impl Fault {
    /// Every fault, in bit order.
    pub const ALL: [Fault; 10] = [
        Fault::EStop,
        Fault::CartridgeRemoved,
        Fault::StrokeStall,
        Fault::OverCurrent,
        Fault::OverTemperature,
        Fault::UnderVoltage,
        Fault::DepthAxisFault,
        Fault::HostTimeout,
        Fault::SensorFault,
        Fault::ControlOverrun,
    ];

    /// A stable snake_case name, for logs and APIs.
    pub const fn code(self) -> &'static str {
        match self {
            Fault::EStop => "estop",
            Fault::CartridgeRemoved => "cartridge_removed",
            Fault::StrokeStall => "stroke_stall",
            Fault::OverCurrent => "over_current",
            Fault::OverTemperature => "over_temperature",
            Fault::UnderVoltage => "under_voltage",
            Fault::DepthAxisFault => "depth_axis_fault",
            Fault::HostTimeout => "host_timeout",
            Fault::SensorFault => "sensor_fault",
            Fault::ControlOverrun => "control_overrun",
        }
    }

    const fn bit(self) -> u16 {
        1 << (self as u8)
    }
}

/// A set of faults, as a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Faults(u16);

impl Faults {
    /// No fault.
    pub const EMPTY: Self = Self(0);

    /// Adds a fault.
    pub fn insert(&mut self, fault: Fault) {
        self.0 |= fault.bit();
    }

    /// Whether `fault` is in the set.
    pub const fn contains(self, fault: Fault) -> bool {
        self.0 & fault.bit() != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The faults of `self` that are not in `other`.
    pub const fn without(self, other: Faults) -> Faults {
        Faults(self.0 & !other.0)
    }

    /// The raw bits (bit n is the fault with discriminant n).
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// The faults in the set, in bit order.
    pub fn iter(self) -> impl Iterator<Item = Fault> {
        Fault::ALL.into_iter().filter(move |f| self.contains(*f))
    }

    /// The first fault in bit order, if any.
    pub fn first(self) -> Option<Fault> {
        self.iter().next()
    }
}

/// Conditions that prevent arming or starting right now, each with its own reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Interlocks(u8);

/// One interlock condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Interlock {
    /// The E-stop is pressed.
    EStopPressed = 0,
    /// No cartridge is seated.
    CartridgeMissing = 1,
    /// The depth axis is not homed.
    NotHomed = 2,
    /// A fault is latched.
    FaultLatched = 3,
    /// The temperature is above its limit.
    OverTemperature = 4,
    /// The supply voltage is below its minimum.
    UnderVoltage = 5,
}

impl Interlock {
    /// Every interlock, in bit order.
    pub const ALL: [Interlock; 6] = [
        Interlock::EStopPressed,
        Interlock::CartridgeMissing,
        Interlock::NotHomed,
        Interlock::FaultLatched,
        Interlock::OverTemperature,
        Interlock::UnderVoltage,
    ];

    /// A stable snake_case name.
    pub const fn code(self) -> &'static str {
        match self {
            Interlock::EStopPressed => "estop_pressed",
            Interlock::CartridgeMissing => "cartridge_missing",
            Interlock::NotHomed => "not_homed",
            Interlock::FaultLatched => "fault_latched",
            Interlock::OverTemperature => "over_temperature",
            Interlock::UnderVoltage => "under_voltage",
        }
    }

    /// Why this interlock blocks the motor, for operators.
    pub const fn reason(self) -> &'static str {
        match self {
            Interlock::EStopPressed => "the E-stop is pressed",
            Interlock::CartridgeMissing => "no cartridge is seated",
            Interlock::NotHomed => "the depth axis must be homed",
            Interlock::FaultLatched => "a fault is latched; clear it with a reason",
            Interlock::OverTemperature => "the motor is too hot",
            Interlock::UnderVoltage => "the supply voltage is too low",
        }
    }
}

impl Interlocks {
    /// No interlock active.
    pub const NONE: Self = Self(0);

    /// Sets or clears one interlock.
    pub fn set(&mut self, interlock: Interlock, active: bool) {
        let bit = 1u8 << (interlock as u8);
        if active {
            self.0 |= bit;
        } else {
            self.0 &= !bit;
        }
    }

    /// Whether `interlock` is active.
    pub const fn contains(self, interlock: Interlock) -> bool {
        self.0 & (1u8 << (interlock as u8)) != 0
    }

    /// Whether none is active.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The active interlocks, in bit order.
    pub fn iter(self) -> impl Iterator<Item = Interlock> {
        Interlock::ALL
            .into_iter()
            .filter(move |i| self.contains(*i))
    }
}

/// A limit of an arming, given in [`Command::Arm`], that ran out and ended the arming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ArmingLimit {
    /// The motor ran for `max_run`.
    RunTime,
    /// The stroke sensor counted `max_strokes`.
    Strokes,
}

impl ArmingLimit {
    /// A stable snake_case name.
    pub const fn code(self) -> &'static str {
        match self {
            ArmingLimit::RunTime => "run_time",
            ArmingLimit::Strokes => "strokes",
        }
    }
}

/// A command from the host. Any accepted command also refreshes the dead-man timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Refreshes the dead-man timer and does nothing else.
    Heartbeat,
    /// Homes the depth axis (from `Boot` or `Idle`).
    Home,
    /// Accepts setpoints and moves the depth axis to `depth`; the motor stays off.
    /// `ceiling` is the session's depth limit (the treatment area's), at most the configured
    /// maximum depth; no later depth command may exceed it until the next `Arm`, and the depth
    /// motor is never driven past it, so the needle cannot be either, whatever the lash. A
    /// depth at the ceiling may end short of it by up to the lash (moves finish going
    /// shallower after passing the target, and there is no room to pass the ceiling).
    Arm {
        /// Needle depth setpoint.
        depth: Micrometers,
        /// Stroke rate setpoint.
        rate: MilliHertz,
        /// Depth ceiling for this arming.
        ceiling: Micrometers,
        /// Most time the motor may run in this arming, on the controller's clock, counted
        /// only while the motor is powered. When it is used up the core stops the motor in
        /// that tick and ends the arming ([`Telemetry::arming_ended_by`]), whatever the host
        /// does. There is no "no limit" value: a host without one passes `Micros(u64::MAX)`.
        /// Zero ends the arming in the next tick, before the motor can be powered.
        max_run: Micros,
        /// Most strokes the stroke sensor may count in this arming (coasting included), with
        /// the same effect as `max_run` when they are used up; `u32::MAX` for no practical
        /// limit.
        max_strokes: u32,
    },
    /// Starts the motor (from `Armed` or `Paused`) once the depth axis is in position.
    Start,
    /// Stops the motor and holds (from `Running`).
    Pause,
    /// Stops the motor and returns to `Idle` (from `Armed`, `Running` or `Paused`). A depth
    /// move under way brakes to rest short of its target, watched by the dead-man until it
    /// rests; from `Homing`, stops the axis and returns to `Boot`.
    Disarm,
    /// Changes the depth setpoint (armed, running or paused), rate-limited while running.
    SetDepth(Micrometers),
    /// Changes the stroke rate setpoint (armed, running or paused).
    SetRate(MilliHertz),
    /// Clears latched faults whose causes are gone.
    ClearFaults,
}

/// Why a command was refused. A refused command changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejected {
    /// The command is not allowed in this state.
    WrongState(State),
    /// The depth axis must be homed first.
    NotHomed,
    /// A fault is latched.
    FaultLatched(Fault),
    /// A fault's cause is still present, so it cannot be cleared.
    CauseStillPresent(Fault),
    /// An interlock blocks the command.
    Interlocked(Interlock),
    /// The depth is outside 0..=ceiling.
    DepthOutOfRange,
    /// The ceiling is above the configured maximum depth.
    CeilingOutOfRange,
    /// The rate is outside the configured range.
    RateOutOfRange,
    /// The depth axis has not reached its setpoint yet.
    DepthNotSettled,
}

impl Rejected {
    /// A stable snake_case code.
    pub const fn code(self) -> &'static str {
        match self {
            Rejected::WrongState(_) => "wrong_state",
            Rejected::NotHomed => "not_homed",
            Rejected::FaultLatched(_) => "fault_latched",
            Rejected::CauseStillPresent(_) => "fault_cause_present",
            Rejected::Interlocked(_) => "interlocked",
            Rejected::DepthOutOfRange => "depth_out_of_range",
            Rejected::CeilingOutOfRange => "ceiling_out_of_range",
            Rejected::RateOutOfRange => "rate_out_of_range",
            Rejected::DepthNotSettled => "depth_not_settled",
        }
    }
}

/// A snapshot of the controller, taken after a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Telemetry {
    /// The time of the latest tick.
    pub now: Micros,
    /// The supervisor's state.
    pub state: State,
    /// Latched faults.
    pub faults: Faults,
    /// The most recent fault latched, if any since start-up.
    pub last_fault: Option<Fault>,
    /// Active interlocks.
    pub interlocks: Interlocks,
    /// Whether the depth axis is referenced.
    pub homed: bool,
    /// Depth setpoint.
    pub depth_setpoint: Micrometers,
    /// Depth the controller believes the needles are at (open loop, from counted steps).
    pub depth_position: Micrometers,
    /// Depth ceiling of the current arming.
    pub depth_ceiling: Micrometers,
    /// Whether the depth axis is moving.
    pub depth_moving: bool,
    /// Lead-screw lash measured at the latest homing, which the depth axis compensates.
    pub depth_lash: Micrometers,
    /// Stroke rate setpoint.
    pub rate_setpoint: MilliHertz,
    /// Stroke rate measured from the stroke sensor.
    pub rate_measured: MilliHertz,
    /// PWM duty applied to the motor.
    pub duty: Permyriad,
    /// Whether the motor driver is enabled.
    pub motor_enabled: bool,
    /// Strokes counted since start-up.
    pub stroke_count: u32,
    /// Motor current.
    pub current: MilliAmps,
    /// Temperature.
    pub temperature: MilliCelsius,
    /// Supply voltage.
    pub supply: MilliVolts,
    /// Whether the foot pedal is pressed.
    pub pedal: bool,
    /// Times the cartridge switch has opened (seated to not seated) since start-up, as seen
    /// by the controller every tick; wraps at `u32::MAX`. A host that polls telemetry compares
    /// it for inequality, so a pull and re-seat between two polls is not missed.
    pub cartridge_openings: u32,
    /// Time the motor ran in the current (or latest) arming.
    pub arming_run: Micros,
    /// Strokes counted in the current (or latest) arming.
    pub arming_strokes: u32,
    /// The limit that ended the latest arming, if one did; cleared by the next `Arm`.
    pub arming_ended_by: Option<ArmingLimit>,
    /// Ticks run since start-up.
    pub ticks: u64,
    /// Ticks that came later than the configured overrun limit.
    pub late_ticks: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_set_keeps_each_fault_once_in_order() {
        let mut set = Faults::EMPTY;
        set.insert(Fault::HostTimeout);
        set.insert(Fault::EStop);
        set.insert(Fault::HostTimeout);
        let mut it = set.iter();
        assert_eq!(it.next(), Some(Fault::EStop));
        assert_eq!(it.next(), Some(Fault::HostTimeout));
        assert_eq!(it.next(), None);
        assert_eq!(set.first(), Some(Fault::EStop));
    }

    #[test]
    fn every_fault_has_its_own_bit() {
        let mut set = Faults::EMPTY;
        for f in Fault::ALL {
            assert!(!set.contains(f));
            set.insert(f);
        }
        assert_eq!(set.iter().count(), Fault::ALL.len());
    }

    #[test]
    fn interlocks_set_and_clear() {
        let mut i = Interlocks::NONE;
        i.set(Interlock::CartridgeMissing, true);
        i.set(Interlock::NotHomed, true);
        i.set(Interlock::CartridgeMissing, false);
        assert_eq!(
            i.iter().collect::<std::vec::Vec<_>>(),
            [Interlock::NotHomed]
        );
    }
}
