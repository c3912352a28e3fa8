//! The safety supervisor's rules: which conditions are faults in which state, which causes
//! are still present, and which interlocks block arming.
//!
//! Pure functions of the readings of one tick and a few timers, so each rule is tested
//! without hardware; [`crate::controller::Controller`] applies them.

use crate::config::SafetyConfig;
use crate::protocol::{Fault, Faults, Interlock, Interlocks, State};
use crate::units::{Micros, MilliAmps, MilliCelsius, MilliVolts};

/// Everything the controller read from the rig in one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Inputs {
    /// E-stop pressed.
    pub estop: bool,
    /// Cartridge seated.
    pub cartridge: bool,
    /// Home switch active.
    pub home_switch: bool,
    /// Foot pedal pressed.
    pub pedal: bool,
    /// Motor current.
    pub current: MilliAmps,
    /// Temperature.
    pub temperature: MilliCelsius,
    /// Supply voltage.
    pub supply: MilliVolts,
    /// A sensor or output reported an error in this tick.
    pub hal_error: bool,
    /// Time since the previous tick.
    pub tick_gap: Micros,
}

/// A condition that must hold for a while before it counts (over-current, brown-out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Persistence {
    since: Option<Micros>,
}

impl Persistence {
    /// Feeds this tick's condition; true once it has held for `window`.
    pub fn holds_for(&mut self, condition: bool, now: Micros, window: Micros) -> bool {
        if condition {
            let since = *self.since.get_or_insert(now);
            now.since(since) >= window
        } else {
            self.since = None;
            false
        }
    }
}

/// The supervisor's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timers {
    /// Over-current persistence.
    pub over_current: Persistence,
    /// Under-voltage persistence.
    pub under_voltage: Persistence,
    /// When the host last sent a command.
    pub last_host: Micros,
}

/// Whether the motor or the depth axis may move in `state`, so the host and the loop timing
/// are watched.
pub const fn is_active(state: State) -> bool {
    matches!(
        state,
        State::Homing | State::Armed | State::Running | State::Paused
    )
}

/// Whether a session holds the cartridge in `state`.
pub const fn is_armed(state: State) -> bool {
    matches!(state, State::Armed | State::Running | State::Paused)
}

/// What the stroke loop and the depth axis report in a tick, for [`detect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Loops {
    /// The stroke loop saw stalling for its whole window.
    pub stalled: bool,
    /// The depth axis failed homing or disagrees with its home switch.
    pub axis_fault: bool,
    /// The depth axis is moving (in any state: a disarmed move still brakes to rest).
    pub axis_moving: bool,
}

/// The faults the readings of this tick show, in `state`. The dead-man and the loop timing
/// are watched while the state [`is_active`] or the depth axis moves, whatever the state.
pub fn detect(
    config: &SafetyConfig,
    state: State,
    inputs: &Inputs,
    timers: &mut Timers,
    now: Micros,
    loops: Loops,
) -> Faults {
    let Loops {
        stalled,
        axis_fault,
        axis_moving,
    } = loops;
    let watched = is_active(state) || axis_moving;
    let mut found = Faults::EMPTY;
    let mut flag = |fault: Fault, condition: bool| {
        if condition {
            found.insert(fault);
        }
    };
    flag(Fault::EStop, inputs.estop);
    flag(
        Fault::CartridgeRemoved,
        is_armed(state) && !inputs.cartridge,
    );
    flag(Fault::StrokeStall, state == State::Running && stalled);
    let over_current = inputs.current > config.max_current;
    flag(
        Fault::OverCurrent,
        timers
            .over_current
            .holds_for(over_current, now, config.over_current_time),
    );
    flag(
        Fault::OverTemperature,
        inputs.temperature > config.max_temperature,
    );
    let low = inputs.supply < config.min_supply;
    flag(
        Fault::UnderVoltage,
        timers
            .under_voltage
            .holds_for(low, now, config.under_voltage_time),
    );
    flag(Fault::DepthAxisFault, axis_fault);
    flag(
        Fault::HostTimeout,
        watched && now.since(timers.last_host) > config.host_timeout,
    );
    flag(Fault::SensorFault, inputs.hal_error);
    flag(
        Fault::ControlOverrun,
        watched && inputs.tick_gap > config.max_tick_gap,
    );
    found
}

/// Whether the cause of `fault` is still present, so it cannot be cleared yet. Event-like
/// faults (a stall, a removed cartridge, a lost host) are gone once the motor is off.
pub fn cause_present(config: &SafetyConfig, fault: Fault, inputs: &Inputs) -> bool {
    match fault {
        Fault::EStop => inputs.estop,
        Fault::OverCurrent => inputs.current > config.max_current,
        Fault::OverTemperature => {
            let clear_below = config
                .max_temperature
                .saturating_sub(config.temperature_hysteresis);
            inputs.temperature > clear_below
        }
        Fault::UnderVoltage => inputs.supply < config.min_supply,
        Fault::SensorFault => inputs.hal_error,
        Fault::CartridgeRemoved
        | Fault::StrokeStall
        | Fault::DepthAxisFault
        | Fault::HostTimeout
        | Fault::ControlOverrun => false,
    }
}

/// Whether a fault means the depth axis may have lost its position.
pub const fn loses_position(fault: Fault) -> bool {
    matches!(fault, Fault::DepthAxisFault)
}

/// The interlocks the readings show.
#[inline]
pub fn interlocks(
    config: &SafetyConfig,
    inputs: &Inputs,
    homed: bool,
    faults: Faults,
) -> Interlocks {
    let mut set = Interlocks::NONE;
    set.set(Interlock::EStopPressed, inputs.estop);
    set.set(Interlock::CartridgeMissing, !inputs.cartridge);
    set.set(Interlock::NotHomed, !homed);
    set.set(Interlock::FaultLatched, !faults.is_empty());
    set.set(
        Interlock::OverTemperature,
        inputs.temperature > config.max_temperature,
    );
    set.set(Interlock::UnderVoltage, inputs.supply < config.min_supply);
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Inputs {
        Inputs {
            cartridge: true,
            current: MilliAmps(500),
            temperature: MilliCelsius(30_000),
            supply: MilliVolts(12_000),
            tick_gap: Micros(1_000),
            ..Inputs::default()
        }
    }

    fn faults_in(state: State, inputs: Inputs) -> Faults {
        let mut timers = Timers {
            last_host: Micros(0),
            ..Timers::default()
        };
        detect(
            &SafetyConfig::default(),
            state,
            &inputs,
            &mut timers,
            Micros(1_000),
            Loops::default(),
        )
    }

    #[test]
    fn healthy_readings_raise_nothing_in_any_state() {
        for state in [
            State::Boot,
            State::Idle,
            State::Armed,
            State::Running,
            State::Paused,
        ] {
            assert!(faults_in(state, healthy()).is_empty(), "{state:?}");
        }
    }

    #[test]
    fn cartridge_removal_is_a_fault_only_while_armed() {
        let inputs = Inputs {
            cartridge: false,
            ..healthy()
        };
        assert!(faults_in(State::Idle, inputs).is_empty());
        assert!(faults_in(State::Running, inputs).contains(Fault::CartridgeRemoved));
        assert!(faults_in(State::Paused, inputs).contains(Fault::CartridgeRemoved));
    }

    #[test]
    fn over_current_needs_to_persist() {
        let config = SafetyConfig::default();
        let inputs = Inputs {
            current: MilliAmps(config.max_current.0 + 1),
            ..healthy()
        };
        let mut timers = Timers::default();
        let at = |t: u64, timers: &mut Timers| {
            detect(
                &config,
                State::Running,
                &inputs,
                timers,
                Micros(t),
                Loops::default(),
            )
            .contains(Fault::OverCurrent)
        };
        assert!(!at(0, &mut timers));
        assert!(!at(config.over_current_time.0 - 1, &mut timers));
        assert!(at(config.over_current_time.0, &mut timers));
    }

    #[test]
    fn host_silence_faults_only_while_active() {
        let config = SafetyConfig::default();
        let late = Micros(config.host_timeout.0 + 1);
        let mut timers = Timers::default();
        let run = detect(
            &config,
            State::Running,
            &healthy(),
            &mut timers,
            late,
            Loops::default(),
        );
        assert!(run.contains(Fault::HostTimeout));
        let idle = detect(
            &config,
            State::Idle,
            &healthy(),
            &mut timers,
            late,
            Loops::default(),
        );
        assert!(!idle.contains(Fault::HostTimeout));
        let moving = Loops {
            axis_moving: true,
            ..Loops::default()
        };
        let idle_moving = detect(&config, State::Idle, &healthy(), &mut timers, late, moving);
        assert!(
            idle_moving.contains(Fault::HostTimeout),
            "a moving axis is watched in any state"
        );
    }

    #[test]
    fn temperature_fault_clears_only_below_hysteresis() {
        let config = SafetyConfig::default();
        let warm = Inputs {
            temperature: config.max_temperature.saturating_sub(MilliCelsius(1)),
            ..healthy()
        };
        assert!(cause_present(&config, Fault::OverTemperature, &warm));
        let cool = Inputs {
            temperature: config
                .max_temperature
                .saturating_sub(config.temperature_hysteresis),
            ..healthy()
        };
        assert!(!cause_present(&config, Fault::OverTemperature, &cool));
    }

    #[test]
    fn interlocks_name_each_reason() {
        let inputs = Inputs {
            estop: true,
            cartridge: false,
            ..healthy()
        };
        let set = interlocks(&SafetyConfig::default(), &inputs, false, Faults::EMPTY);
        assert!(set.contains(Interlock::EStopPressed));
        assert!(set.contains(Interlock::CartridgeMissing));
        assert!(set.contains(Interlock::NotHomed));
        assert!(!set.contains(Interlock::FaultLatched));
    }
}
