//! [`Controller`]: reads the rig, runs the supervisor, the rate loop and the depth axis, and
//! writes the outputs, once per [`Controller::tick`].
//!
//! Every fault found in a tick drives the motor off (enable low, PWM 0) and stops the depth
//! axis in that same tick. The motor is enabled only in [`State::Running`].
//!
//! The charge pump output toggles every tick while no fault is latched (in every state but
//! `Fault` and `EStop`, as LinuxCNC's charge pump runs while the machine is on) and is held low
//! in a tick with a fault latched. It tells the rig's driver enable circuit that the control
//! loop is alive; the enable pin alone decides whether the motor runs.

use crate::config::{ConfigError, ControllerConfig};
use crate::depth::{AxisEvent, AxisOutput, DepthAxis, MoveError, MoveSpeed};
use crate::hal::{Analog, Hardware, InputPin, OutputPin, SetDutyCycle, StrokeSample, StrokeSensor};
use crate::protocol::{
    ArmingLimit, Command, Fault, Faults, Interlock, Interlocks, Rejected, State, Telemetry,
};
use crate::safety::{self, Inputs, Loops, Timers};
use crate::stroke::StrokeLoop;
use crate::units::{
    Micrometers, Micros, MilliAmps, MilliCelsius, MilliHertz, MilliVolts, Permyriad,
};

/// The needle pen controller over a [`Hardware`].
pub struct Controller<H: Hardware> {
    hw: H,
    config: ControllerConfig,
    state: State,
    faults: Faults,
    last_fault: Option<Fault>,
    timers: Timers,
    stroke: StrokeLoop,
    axis: DepthAxis,
    inputs: Inputs,
    sample: StrokeSample,
    /// `sample.edges` in whole strokes, kept as the edges come, so a read never divides.
    strokes: u32,
    ceiling: Micrometers,
    now: Micros,
    ticks: u64,
    late_ticks: u32,
    motor_enabled: bool,
    duty: Permyriad,
    pedal_before: bool,
    cartridge_openings: u32,
    arming: Arming,
    pump_high: bool,
    /// Bumped whenever a field of [`Controller::revision`]'s list may have changed.
    revision: u32,
    /// The interlocks the inputs of the latest tick make active ([`interlocking`]).
    interlocking: Interlocks,
}

/// The run-time and stroke budget of the current arming, and what it has used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Arming {
    max_run: Micros,
    /// `max_strokes` in sensor edges, so a tick compares without dividing.
    max_edges: u64,
    run: Micros,
    edges: u64,
    /// `edges` in whole strokes, kept as the edges come, so a read never divides.
    strokes: u32,
    ended_by: Option<ArmingLimit>,
}

/// The interlocks the inputs alone make active ([`safety::interlocks`] with the axis
/// referenced and no fault: those two move the revision where they change).
#[inline]
fn interlocking(limits: &crate::config::SafetyConfig, inputs: &Inputs) -> Interlocks {
    safety::interlocks(limits, inputs, true, Faults::EMPTY)
}

/// Reads a value, keeping `previous` and noting the error if the read fails.
fn read<T, E>(result: Result<T, E>, previous: T, error: &mut bool) -> T {
    result.unwrap_or_else(|_| {
        *error = true;
        previous
    })
}

impl<H: Hardware> Controller<H> {
    /// A controller in [`State::Boot`]: motor off, depth axis not homed. Refuses an invalid
    /// configuration.
    pub fn new(hw: H, config: ControllerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let initial = Inputs {
            cartridge: false,
            ..Inputs::default()
        };
        Ok(Self {
            hw,
            config,
            state: State::Boot,
            faults: Faults::EMPTY,
            last_fault: None,
            timers: Timers::default(),
            stroke: StrokeLoop::new(config.stroke),
            axis: DepthAxis::new(&config.depth),
            inputs: initial,
            sample: StrokeSample::default(),
            strokes: 0,
            ceiling: config.depth.max_depth,
            now: Micros::ZERO,
            ticks: 0,
            late_ticks: 0,
            motor_enabled: false,
            duty: Permyriad(0),
            pedal_before: false,
            cartridge_openings: 0,
            arming: Arming {
                max_run: Micros::ZERO,
                max_edges: 0,
                run: Micros::ZERO,
                edges: 0,
                strokes: 0,
                ended_by: None,
            },
            pump_high: false,
            revision: 0,
            interlocking: interlocking(&config.safety, &initial),
        })
    }

    /// The supervisor's state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The configuration.
    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// The hardware, for a test or simulation to look at.
    pub fn hardware(&self) -> &H {
        &self.hw
    }

    /// The hardware, for a test or simulation to act on.
    pub fn hardware_mut(&mut self) -> &mut H {
        &mut self.hw
    }

    /// Gives the hardware back, as a HAL driver's `free()` does.
    pub fn into_hardware(self) -> H {
        self.hw
    }

    // Telemetry's fields one at a time, for a reader that wants a few of them each tick
    // without the snapshot of all of them (the pen's link encodes a frame from these).
    // `telemetry()` is built from the same accessors, so the two cannot disagree.

    /// [`Telemetry::now`]: the time of the latest tick.
    #[inline]
    pub fn now(&self) -> Micros {
        self.now
    }

    /// [`Telemetry::faults`]: latched faults.
    #[inline]
    pub fn faults(&self) -> Faults {
        self.faults
    }

    /// [`Telemetry::last_fault`]: the most recent fault latched.
    #[inline]
    pub fn last_fault(&self) -> Option<Fault> {
        self.last_fault
    }

    /// [`Telemetry::interlocks`]: active interlocks (computed from the latest inputs).
    #[inline]
    pub fn interlocks(&self) -> Interlocks {
        safety::interlocks(
            &self.config.safety,
            &self.inputs,
            self.axis.is_referenced(),
            self.faults,
        )
    }

    /// [`Telemetry::homed`]: whether the depth axis is referenced.
    #[inline]
    pub fn homed(&self) -> bool {
        self.axis.is_referenced()
    }

    /// [`Telemetry::depth_setpoint`].
    #[inline]
    pub fn depth_setpoint(&self) -> Micrometers {
        self.axis.setpoint()
    }

    /// [`Telemetry::depth_position`]: from counted steps (open loop).
    #[inline]
    pub fn depth_position(&self) -> Micrometers {
        self.axis.position()
    }

    /// [`Telemetry::depth_ceiling`]: of the current arming.
    #[inline]
    pub fn depth_ceiling(&self) -> Micrometers {
        self.ceiling
    }

    /// [`Telemetry::depth_moving`].
    #[inline]
    pub fn depth_moving(&self) -> bool {
        self.axis.is_moving()
    }

    /// [`Telemetry::depth_lash`]: measured at the latest homing.
    #[inline]
    pub fn depth_lash(&self) -> Micrometers {
        self.axis.lash()
    }

    /// [`Telemetry::rate_setpoint`].
    #[inline]
    pub fn rate_setpoint(&self) -> MilliHertz {
        self.stroke.target()
    }

    /// [`Telemetry::rate_measured`].
    #[inline]
    pub fn rate_measured(&self) -> MilliHertz {
        self.stroke.measured()
    }

    /// [`Telemetry::duty`]: applied to the motor.
    #[inline]
    pub fn duty(&self) -> Permyriad {
        self.duty
    }

    /// [`Telemetry::motor_enabled`].
    #[inline]
    pub fn motor_enabled(&self) -> bool {
        self.motor_enabled
    }

    /// [`Telemetry::stroke_count`]: strokes since start-up.
    #[inline]
    pub fn stroke_count(&self) -> u32 {
        self.strokes
    }

    /// [`Telemetry::current`]: motor current at the latest tick.
    #[inline]
    pub fn current(&self) -> MilliAmps {
        self.inputs.current
    }

    /// [`Telemetry::temperature`] at the latest tick.
    #[inline]
    pub fn temperature(&self) -> MilliCelsius {
        self.inputs.temperature
    }

    /// [`Telemetry::supply`]: supply voltage at the latest tick.
    #[inline]
    pub fn supply(&self) -> MilliVolts {
        self.inputs.supply
    }

    /// [`Telemetry::pedal`]: whether the foot pedal was pressed at the latest tick.
    #[inline]
    pub fn pedal(&self) -> bool {
        self.inputs.pedal
    }

    /// [`Telemetry::cartridge_openings`].
    #[inline]
    pub fn cartridge_openings(&self) -> u32 {
        self.cartridge_openings
    }

    /// [`Telemetry::arming_run`].
    #[inline]
    pub fn arming_run(&self) -> Micros {
        self.arming.run
    }

    /// [`Telemetry::arming_strokes`].
    #[inline]
    pub fn arming_strokes(&self) -> u32 {
        self.arming.strokes
    }

    /// [`Telemetry::arming_ended_by`].
    #[inline]
    pub fn arming_ended_by(&self) -> Option<ArmingLimit> {
        self.arming.ended_by
    }

    /// A number that changes whenever any of the telemetry fields that stay put for
    /// thousands of ticks during a treatment may have changed: [`Telemetry::faults`],
    /// [`Telemetry::last_fault`], [`Telemetry::interlocks`], [`Telemetry::arming_ended_by`],
    /// [`Telemetry::depth_setpoint`], [`Telemetry::depth_ceiling`], [`Telemetry::depth_lash`],
    /// [`Telemetry::rate_setpoint`], [`Telemetry::cartridge_openings`],
    /// [`Telemetry::late_ticks`] and [`Telemetry::homed`]. It may also change when none of
    /// them did (any accepted command but a heartbeat moves it). A telemetry encoder that saw
    /// them at one revision needs to read them again only once the revision moved: the pen
    /// link encodes them a tick only then. Wraps; two revisions are equal only if nothing
    /// moved it in between (or it moved it 2^32 times).
    #[inline]
    pub fn revision(&self) -> u32 {
        self.revision.wrapping_add(self.axis.revision())
    }

    #[inline]
    fn touched(&mut self) {
        self.revision = self.revision.wrapping_add(1);
    }

    /// [`Telemetry::ticks`]: ticks since start-up.
    #[inline]
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// [`Telemetry::late_ticks`].
    #[inline]
    pub fn late_ticks(&self) -> u32 {
        self.late_ticks
    }

    /// One control period: read the rig, decide, write the outputs. `now` is the controller's
    /// monotonic clock, the same clock the stroke sensor timestamps edges with.
    pub fn tick(&mut self, now: Micros) {
        let gap = if self.ticks == 0 {
            Micros::ZERO
        } else {
            now.since(self.now)
        };
        if gap.0 > self.config.safety.tick_period.0 + self.config.safety.tick_period.0 / 2 {
            self.late_ticks = self.late_ticks.saturating_add(1);
            self.touched();
        }
        if self.motor_enabled {
            // The motor was powered from the previous tick's outputs until now.
            self.arming.run = self.arming.run.saturating_add(gap);
        }
        self.now = now;
        self.ticks = self.ticks.saturating_add(1);
        self.read_inputs(gap);

        let stroke = self.stroke.update(now, &self.sample);
        let mut axis = self.axis.update(now, self.inputs.home_switch);
        let found = safety::detect(
            &self.config.safety,
            self.state,
            &self.inputs,
            &mut self.timers,
            now,
            Loops {
                stalled: stroke.stalled,
                axis_fault: axis.event == AxisEvent::Fault,
                axis_moving: self.axis.is_moving(),
            },
        );
        let fault_now = self.latch(found);
        if fault_now {
            axis.steps = 0;
        } else {
            if axis.event == AxisEvent::Homed && self.state == State::Homing {
                self.state = State::Idle;
            }
            self.end_arming_at_its_limits();
            self.follow_pedal();
        }
        self.write_outputs(&axis);
    }

    fn read_inputs(&mut self, gap: Micros) {
        let before = self.inputs;
        let edges_before = self.sample.edges;
        let mut error = false;
        let p = self.hw.parts();
        let inputs = Inputs {
            estop: read(p.estop.is_high(), before.estop, &mut error),
            cartridge: read(p.cartridge_switch.is_high(), before.cartridge, &mut error),
            home_switch: read(p.home_switch.is_high(), before.home_switch, &mut error),
            pedal: read(p.pedal.is_high(), before.pedal, &mut error),
            current: MilliAmps(read(p.current.read_milli(), before.current.0, &mut error)),
            temperature: MilliCelsius(read(
                p.temperature.read_milli(),
                before.temperature.0,
                &mut error,
            )),
            supply: MilliVolts(read(p.supply.read_milli(), before.supply.0, &mut error)),
            hal_error: false,
            tick_gap: gap,
        };
        self.sample = read(p.stroke.sample(), self.sample, &mut error);
        // An edge from the future would read as "just now" (`Micros::since` saturates), so a
        // dropout would never slow the rate estimate and never be seen as a stall: the
        // sensor's clock is not ours, which is a sensor fault. Up to `max_tick_gap` ahead is
        // tolerated: an edge may land between the host reading its clock and the sample, and
        // a host without real-time scheduling can be preempted for milliseconds in between
        // (seen in the VM tests on the real kernel). A dropout behind a clock that runs ahead
        // by less than that is still a stall, seen at most `max_tick_gap` late.
        let horizon = self.now.saturating_add(self.config.safety.max_tick_gap);
        if self.sample.last_edge.is_some_and(|edge| edge > horizon) {
            error = true;
        }
        if self.sample.edges != edges_before {
            // Divided here, where the edges move (a few ticks in ten while running), not on
            // every read of the counters (the pen link reads them every tick).
            let per_stroke = self.config.stroke.edges_per_stroke.max(1);
            self.strokes = self.sample.edges / per_stroke;
            if safety::is_armed(self.state) {
                let edges = self.sample.edges.wrapping_sub(edges_before);
                self.arming.edges = self.arming.edges.saturating_add(u64::from(edges));
                self.arming.strokes =
                    u32::try_from(self.arming.edges / u64::from(per_stroke)).unwrap_or(u32::MAX);
            }
        }
        if before.cartridge && !inputs.cartridge {
            self.cartridge_openings = self.cartridge_openings.wrapping_add(1);
        }
        let interlocking = interlocking(&self.config.safety, &inputs);
        if interlocking != self.interlocking {
            self.interlocking = interlocking;
            self.touched();
        }
        self.inputs = Inputs {
            hal_error: error,
            ..inputs
        };
    }

    /// Latches newly found faults and enters the safe state. Returns whether any fault is
    /// latched after this tick's checks.
    fn latch(&mut self, found: Faults) -> bool {
        let new = found.without(self.faults);
        if !new.is_empty() {
            self.touched();
            for fault in new.iter() {
                self.faults.insert(fault);
                self.last_fault = Some(fault);
            }
            self.stroke.stop();
            let was_moving = self.axis.stop();
            if was_moving || new.iter().any(safety::loses_position) {
                self.axis.unreference();
            }
        }
        if self.faults.is_empty() {
            return false;
        }
        self.state = if self.inputs.estop {
            State::EStop
        } else {
            State::Fault
        };
        true
    }

    /// Ends the arming when its run time or strokes are used up: motor off in this tick,
    /// depth move braked, state `Idle`. A new `Arm` is needed to run again.
    fn end_arming_at_its_limits(&mut self) {
        if !safety::is_armed(self.state) {
            return;
        }
        let limit = if self.arming.run >= self.arming.max_run {
            ArmingLimit::RunTime
        } else if self.arming.edges >= self.arming.max_edges {
            ArmingLimit::Strokes
        } else {
            return;
        };
        self.stroke.stop();
        self.axis.halt();
        self.state = State::Idle;
        self.arming.ended_by = Some(limit);
        self.touched();
    }

    fn follow_pedal(&mut self) {
        let pedal = self.inputs.pedal;
        if pedal && !self.pedal_before && matches!(self.state, State::Armed | State::Paused) {
            // A refused start (interlock, depth moving) leaves the state as it is; the
            // telemetry shows why.
            let _ = self.apply(Command::Start);
        } else if !pedal && self.pedal_before && self.state == State::Running {
            let _ = self.apply(Command::Pause);
        }
        self.pedal_before = pedal;
    }

    fn write_outputs(&mut self, axis: &AxisOutput) {
        let mut error = false;
        let running = self.state == State::Running;
        let duty = if running {
            self.stroke.duty()
        } else {
            Permyriad(0)
        };
        {
            let p = self.hw.parts();
            if running {
                let register = duty.scale(p.motor_pwm.max_duty_cycle());
                // The enable rises only over a PWM known to hold this tick's duty: after a
                // failed write the PWM may hold anything, so the driver stays off.
                if p.motor_pwm.set_duty_cycle(register).is_ok() {
                    error |= p.motor_enable.set_high().is_err();
                } else {
                    error = true;
                }
            } else {
                // Enable first: it is the safe-state output.
                error |= p.motor_enable.set_low().is_err();
                error |= p.motor_pwm.set_duty_cycle_fully_off().is_err();
            }
            if self.axis.is_moving() || axis.steps > 0 {
                error |= p.depth_dir.set_state(axis.dir_deeper.into()).is_err();
                for _ in 0..axis.steps {
                    error |= p.depth_step.set_high().is_err();
                    error |= p.depth_step.set_low().is_err();
                }
            }
            // Toggled while healthy, held low once a fault is latched.
            let pump = self.faults.is_empty() && !self.pump_high;
            error |= p.charge_pump.set_state(pump.into()).is_err();
            self.pump_high = pump;
        }
        self.motor_enabled = running;
        self.duty = duty;
        if error {
            let mut sensor = Faults::EMPTY;
            sensor.insert(Fault::SensorFault);
            self.inputs.hal_error = true;
            self.latch(sensor);
            // Best effort: the outputs that failed may still obey the safe state.
            let p = self.hw.parts();
            let _ = p.motor_enable.set_low();
            let _ = p.motor_pwm.set_duty_cycle_fully_off();
            let _ = p.charge_pump.set_low();
            self.pump_high = false;
            self.motor_enabled = false;
            self.duty = Permyriad(0);
        }
    }

    /// Handles a host command. A refused command changes nothing; an accepted one also
    /// refreshes the dead-man timer.
    pub fn handle(&mut self, command: Command) -> Result<(), Rejected> {
        self.apply(command)?;
        self.timers.last_host = self.now;
        Ok(())
    }

    fn refuse_state(&self) -> Rejected {
        match self.state {
            State::Fault => {
                Rejected::FaultLatched(self.faults.first().unwrap_or(Fault::SensorFault))
            }
            State::EStop => Rejected::Interlocked(Interlock::EStopPressed),
            State::Boot => Rejected::NotHomed,
            other => Rejected::WrongState(other),
        }
    }

    /// The interlocks that block moving the needles, in order of importance.
    fn check_run_interlocks(&self) -> Result<(), Rejected> {
        let c = &self.config.safety;
        let i = &self.inputs;
        let blocked = [
            (i.estop, Interlock::EStopPressed),
            (!i.cartridge, Interlock::CartridgeMissing),
            (
                i.temperature > c.max_temperature,
                Interlock::OverTemperature,
            ),
            (i.supply < c.min_supply, Interlock::UnderVoltage),
        ];
        match blocked.into_iter().find(|(active, _)| *active) {
            Some((_, interlock)) => Err(Rejected::Interlocked(interlock)),
            None => Ok(()),
        }
    }

    fn check_rate(&self, rate: crate::units::MilliHertz) -> Result<(), Rejected> {
        let s = &self.config.stroke;
        if rate < s.rate_min || rate > s.rate_max {
            return Err(Rejected::RateOutOfRange);
        }
        Ok(())
    }

    /// Applies `command`; an accepted one but a heartbeat moves [`Controller::revision`].
    fn apply(&mut self, command: Command) -> Result<(), Rejected> {
        self.apply_command(command)?;
        if !matches!(command, Command::Heartbeat) {
            self.touched();
        }
        Ok(())
    }

    fn apply_command(&mut self, command: Command) -> Result<(), Rejected> {
        let now = self.now;
        match command {
            Command::Heartbeat => Ok(()),
            Command::Home => {
                if !matches!(self.state, State::Boot | State::Idle) {
                    return Err(self.refuse_state());
                }
                if self.axis.is_moving() {
                    return Err(Rejected::DepthNotSettled);
                }
                if self.inputs.estop {
                    return Err(Rejected::Interlocked(Interlock::EStopPressed));
                }
                self.axis.start_homing(now);
                self.state = State::Homing;
                Ok(())
            }
            Command::Arm {
                depth,
                rate,
                ceiling,
                max_run,
                max_strokes,
            } => {
                if self.state != State::Idle {
                    return Err(self.refuse_state());
                }
                self.check_run_interlocks()?;
                if ceiling.0 < 0 || ceiling > self.config.depth.max_depth {
                    return Err(Rejected::CeilingOutOfRange);
                }
                if depth.0 < 0 || depth > ceiling {
                    return Err(Rejected::DepthOutOfRange);
                }
                self.check_rate(rate)?;
                self.axis
                    .move_to(depth, ceiling, MoveSpeed::Normal, now)
                    .map_err(move_error)?;
                self.ceiling = ceiling;
                let per_stroke = u64::from(self.config.stroke.edges_per_stroke.max(1));
                self.arming = Arming {
                    max_run,
                    max_edges: u64::from(max_strokes).saturating_mul(per_stroke),
                    run: Micros::ZERO,
                    edges: 0,
                    strokes: 0,
                    ended_by: None,
                };
                self.stroke.set_target(rate);
                self.state = State::Armed;
                Ok(())
            }
            Command::Start => {
                if !matches!(self.state, State::Armed | State::Paused) {
                    return Err(self.refuse_state());
                }
                self.check_run_interlocks()?;
                if self.axis.is_moving() {
                    return Err(Rejected::DepthNotSettled);
                }
                self.stroke.start(now);
                self.state = State::Running;
                Ok(())
            }
            Command::Pause => {
                if self.state != State::Running {
                    return Err(self.refuse_state());
                }
                self.stroke.stop();
                self.state = State::Paused;
                Ok(())
            }
            Command::Disarm => match self.state {
                State::Armed | State::Running | State::Paused => {
                    self.stroke.stop();
                    // A move under way brakes to rest instead of carrying the needles on to a
                    // target nobody holds any more; until it rests the dead-man still watches.
                    self.axis.halt();
                    self.state = State::Idle;
                    Ok(())
                }
                State::Homing => {
                    self.axis.stop();
                    self.axis.unreference();
                    self.state = State::Boot;
                    Ok(())
                }
                _ => Err(self.refuse_state()),
            },
            Command::SetDepth(depth) => {
                if !matches!(self.state, State::Armed | State::Running | State::Paused) {
                    return Err(self.refuse_state());
                }
                if depth.0 < 0 || depth > self.ceiling {
                    return Err(Rejected::DepthOutOfRange);
                }
                let speed = if self.state == State::Running {
                    MoveSpeed::Running
                } else {
                    MoveSpeed::Normal
                };
                self.axis
                    .move_to(depth, self.ceiling, speed, now)
                    .map_err(move_error)
            }
            Command::SetRate(rate) => {
                if !matches!(self.state, State::Armed | State::Running | State::Paused) {
                    return Err(self.refuse_state());
                }
                self.check_rate(rate)?;
                self.stroke.set_target(rate);
                Ok(())
            }
            Command::ClearFaults => {
                match self.state {
                    State::Fault => {}
                    State::EStop => return Err(Rejected::CauseStillPresent(Fault::EStop)),
                    other => return Err(Rejected::WrongState(other)),
                }
                let safety = &self.config.safety;
                if let Some(fault) = self
                    .faults
                    .iter()
                    .find(|f| safety::cause_present(safety, *f, &self.inputs))
                {
                    return Err(Rejected::CauseStillPresent(fault));
                }
                self.faults = Faults::EMPTY;
                self.state = if self.axis.is_referenced() {
                    State::Idle
                } else {
                    State::Boot
                };
                Ok(())
            }
        }
    }

    /// A snapshot of the controller after the latest tick.
    pub fn telemetry(&self) -> Telemetry {
        Telemetry {
            now: self.now(),
            state: self.state(),
            faults: self.faults(),
            last_fault: self.last_fault(),
            interlocks: self.interlocks(),
            homed: self.homed(),
            depth_setpoint: self.depth_setpoint(),
            depth_position: self.depth_position(),
            depth_ceiling: self.depth_ceiling(),
            depth_moving: self.depth_moving(),
            depth_lash: self.depth_lash(),
            rate_setpoint: self.rate_setpoint(),
            rate_measured: self.rate_measured(),
            duty: self.duty(),
            motor_enabled: self.motor_enabled(),
            stroke_count: self.stroke_count(),
            current: self.current(),
            temperature: self.temperature(),
            supply: self.supply(),
            pedal: self.pedal(),
            cartridge_openings: self.cartridge_openings(),
            arming_run: self.arming_run(),
            arming_strokes: self.arming_strokes(),
            arming_ended_by: self.arming_ended_by(),
            ticks: self.ticks(),
            late_ticks: self.late_ticks(),
        }
    }
}

fn move_error(e: MoveError) -> Rejected {
    match e {
        MoveError::NotHomed => Rejected::NotHomed,
        MoveError::Busy => Rejected::DepthNotSettled,
    }
}
