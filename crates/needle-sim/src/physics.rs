//! The physics of the rig: a DC stroke motor turning a cam, a depth stepper on a lead screw
//! with lash, switches, heat and supply. Floats are fine here: this is the world, not the
//! controller.

use std::f64::consts::TAU;

use needle_core::units::{Micrometers, Micros, MilliHertz};

/// Integration step of the physics.
pub const PHYSICS_STEP: Micros = Micros(20);

/// The rig's physical parameters. `Default` is the prototype rig.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimParams {
    /// Nominal supply voltage, V.
    pub supply_v: f64,
    /// Supply voltage during a brown-out, V.
    pub brownout_v: f64,
    /// Armature resistance, ohm.
    pub resistance_ohm: f64,
    /// Motor constant (V·s/rad = N·m/A).
    pub motor_k: f64,
    /// Inertia of rotor and cam, kg·m².
    pub inertia: f64,
    /// Viscous friction, N·m·s/rad.
    pub viscous: f64,
    /// Coulomb friction, N·m.
    pub friction_nm: f64,
    /// Load torque of the needles in skin, N·m.
    pub load_nm: f64,
    /// Load torque of a jammed needle, N·m.
    pub jam_nm: f64,
    /// Stroke sensor edges per cam revolution.
    pub edges_per_rev: u32,
    /// Ambient temperature, °C.
    pub ambient_c: f64,
    /// Thermal resistance to ambient, K/W.
    pub thermal_resistance: f64,
    /// Thermal capacity, J/K.
    pub thermal_capacity: f64,
    /// Depth stepper steps per millimetre.
    pub steps_per_mm: u32,
    /// Real lash of the lead screw, µm.
    pub backlash_um: f64,
    /// Depth stop position at power-up, µm above the home switch.
    pub start_depth_um: f64,
    /// Mechanical end stops of the depth stop, µm: steps beyond are lost.
    pub hard_stop_min_um: f64,
    /// Upper mechanical end stop, µm.
    pub hard_stop_max_um: f64,
    /// Time of the retriggerable monostable (a 74HC123 half) that the charge pump output
    /// feeds: each rising edge of the charge pump retriggers it, and the motor driver's power
    /// stage is enabled only while the enable input is high and the monostable has not timed
    /// out. `None`: no charge-pump circuit fitted, the driver follows the enable input alone.
    /// Default 10 ms: the controller makes a rising edge every second tick (2 ms at 1 kHz).
    pub charge_pump_hold: Option<Micros>,
}

impl Default for SimParams {
    fn default() -> Self {
        // No-load speed about 250 strokes/s at 12 V; mechanical time constant about 15 ms.
        let motor_k = 12.0 / (250.0 * TAU);
        let resistance_ohm = 2.0;
        Self {
            supply_v: 12.0,
            brownout_v: 9.0,
            resistance_ohm,
            motor_k,
            inertia: 0.015 * motor_k * motor_k / resistance_ohm,
            viscous: 1.0e-6,
            friction_nm: 0.002,
            load_nm: 0.004,
            jam_nm: 0.5,
            edges_per_rev: 1,
            ambient_c: 25.0,
            thermal_resistance: 10.0,
            thermal_capacity: 30.0,
            steps_per_mm: 400,
            backlash_um: 20.0,
            start_depth_um: 1_200.0,
            hard_stop_min_um: -300.0,
            hard_stop_max_um: 3_200.0,
            charge_pump_hold: Some(Micros::from_millis(10)),
        }
    }
}

/// Faults and actions the jig can inject into the rig.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Injection {
    /// Press (`true`) or release the E-stop.
    EStop(bool),
    /// Seat (`true`) or pull the cartridge.
    Cartridge(bool),
    /// Press or release the foot pedal.
    Pedal(bool),
    /// Jam the needle (`true`) or free it.
    Jam(bool),
    /// Stick the home switch closed (`Some(true)`), open (`Some(false)`), or free it.
    StuckHomeSwitch(Option<bool>),
    /// The stroke sensor stops seeing edges (`true`) or recovers.
    SensorDropout(bool),
    /// A part starts (`true`) or stops failing its reads or writes.
    SensorError(Part, bool),
    /// The motor heats to this temperature, °C, then cools naturally.
    Overheat(f64),
    /// The supply browns out (`true`) or recovers.
    BrownOut(bool),
    /// The depth stepper misses every other step (overload) or recovers.
    DepthOverload(bool),
    /// Set the load torque of the needles in skin, N·m.
    Load(f64),
    /// The host link is cut (`true`) or restored; the host side of a test reads this.
    HostSilence(bool),
    /// The stroke sensor's timestamps run this far ahead of the controller's clock (a
    /// timer capture on another clock, a kernel clock mix-up); `Micros::ZERO` to agree again.
    SensorClockAhead(Micros),
}

/// A part of the rig whose reads or writes can be made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Part {
    MotorPwm,
    MotorEnable,
    DepthStep,
    DepthDir,
    HomeSwitch,
    CartridgeSwitch,
    EStop,
    Pedal,
    StrokeSensor,
    Current,
    Temperature,
    Supply,
    ChargePump,
}

impl Part {
    /// Every part.
    pub const ALL: [Part; 13] = [
        Part::MotorPwm,
        Part::MotorEnable,
        Part::DepthStep,
        Part::DepthDir,
        Part::HomeSwitch,
        Part::CartridgeSwitch,
        Part::EStop,
        Part::Pedal,
        Part::StrokeSensor,
        Part::Current,
        Part::Temperature,
        Part::Supply,
        Part::ChargePump,
    ];

    const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// The physical truth of the rig, for a jig to judge the controller by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Truth {
    /// Simulation time.
    pub now: Micros,
    /// Where the depth stop really is, µm above the home switch trigger point.
    pub depth_um: f64,
    /// The cam's real rate, strokes per second.
    pub rate_hz: f64,
    /// Strokes really made since power-up.
    pub strokes: u64,
    /// Whether the motor driver's power stage is on (enable input high and, with a
    /// charge-pump circuit fitted, its monostable retriggered within its time) with a non-zero
    /// duty.
    pub motor_powered: bool,
    /// Whether the motor driver's power stage is on: the enable input high and, with a
    /// charge-pump circuit fitted, the charge pump toggled within the monostable's time.
    pub driver_enabled: bool,
    /// Duty applied, 0..=1.
    pub duty: f64,
    /// Real motor current, A.
    pub current_a: f64,
    /// Real temperature, °C.
    pub temperature_c: f64,
    /// Real supply voltage, V.
    pub supply_v: f64,
    /// Steps the depth stepper really made (missed ones excluded).
    pub depth_steps: i64,
    /// When the motor last went from powered to unpowered (enable low, duty 0, or the
    /// charge pump's monostable timing out), if ever.
    pub motor_off_at: Option<Micros>,
    /// STEP pulses the controller sent.
    pub step_pulses: u64,
    /// Times the motor driver's enable input went from low to high since power-up. The
    /// enable's own edges, as a logic analyser on the driver would see them, so a tick that
    /// raises and drops it again is still caught.
    pub enable_rises: u64,
}

/// The state of the simulated world.
#[derive(Debug, Clone)]
pub struct World {
    pub(crate) params: SimParams,
    pub(crate) now: Micros,
    // Stroke motor.
    omega: f64,
    angle: f64,
    duty: f64,
    enabled: bool,
    enable_rises: u64,
    motor_off_at: Option<Micros>,
    pump_high: bool,
    pump_rise: Option<Micros>,
    current: f64,
    temperature: f64,
    // Stroke sensor as seen by the controller.
    pub(crate) edges: u32,
    pub(crate) last_edge: Option<Micros>,
    pub(crate) last_period: Option<Micros>,
    pub(crate) sensor_clock_ahead: Micros,
    true_edges: u64,
    // Depth axis.
    motor_um: f64,
    load_um: f64,
    depth_steps: i64,
    step_pulses: u64,
    skip_next: bool,
    pub(crate) dir_deeper: bool,
    pub(crate) step_high: bool,
    // Switches and injected conditions.
    pub(crate) estop: bool,
    pub(crate) cartridge: bool,
    pub(crate) pedal: bool,
    jam: bool,
    stuck_home: Option<bool>,
    dropout: bool,
    failing: u16,
    brownout: bool,
    overload: bool,
    pub(crate) host_silent: bool,
    schedule: Vec<(Micros, Injection)>,
}

impl World {
    /// A rig at rest at time zero: motor off, depth stop at `start_depth_um`, no cartridge.
    pub fn new(params: SimParams) -> Self {
        Self {
            params,
            now: Micros::ZERO,
            omega: 0.0,
            angle: 0.0,
            duty: 0.0,
            enabled: false,
            enable_rises: 0,
            motor_off_at: None,
            pump_high: false,
            pump_rise: None,
            current: 0.0,
            temperature: params.ambient_c,
            edges: 0,
            last_edge: None,
            last_period: None,
            sensor_clock_ahead: Micros::ZERO,
            true_edges: 0,
            motor_um: params.start_depth_um,
            load_um: params.start_depth_um,
            depth_steps: 0,
            step_pulses: 0,
            skip_next: false,
            dir_deeper: false,
            step_high: false,
            estop: false,
            cartridge: false,
            pedal: false,
            jam: false,
            stuck_home: None,
            dropout: false,
            failing: 0,
            brownout: false,
            overload: false,
            host_silent: false,
            schedule: Vec::new(),
        }
    }

    /// Applies an injection now.
    pub fn inject(&mut self, injection: Injection) {
        match injection {
            Injection::EStop(on) => self.estop = on,
            Injection::Cartridge(on) => self.cartridge = on,
            Injection::Pedal(on) => self.pedal = on,
            Injection::Jam(on) => self.jam = on,
            Injection::StuckHomeSwitch(state) => self.stuck_home = state,
            Injection::SensorDropout(on) => self.dropout = on,
            Injection::SensorError(part, on) => {
                if on {
                    self.failing |= part.bit();
                } else {
                    self.failing &= !part.bit();
                }
            }
            Injection::Overheat(c) => self.temperature = c,
            Injection::BrownOut(on) => self.brownout = on,
            Injection::DepthOverload(on) => self.overload = on,
            Injection::Load(nm) => self.params.load_nm = nm,
            Injection::HostSilence(on) => self.host_silent = on,
            Injection::SensorClockAhead(ahead) => self.sensor_clock_ahead = ahead,
        }
    }

    /// Applies an injection when the simulation reaches `at`.
    pub fn schedule(&mut self, at: Micros, injection: Injection) {
        self.schedule.push((at, injection));
        self.schedule.sort_by_key(|(t, _)| *t);
    }

    fn powered(&self) -> bool {
        self.driver_on() && self.duty > 0.0
    }

    /// Whether the driver's power stage is on: enable high and the charge pump alive.
    fn driver_on(&self) -> bool {
        self.enabled && self.pump_expiry().is_none_or(|at| self.now < at)
    }

    /// When the charge pump's monostable times out (in the past once it has), or `None`
    /// without a charge-pump circuit. Never triggered: timed out since time zero.
    fn pump_expiry(&self) -> Option<Micros> {
        let hold = self.params.charge_pump_hold?;
        Some(
            self.pump_rise
                .map_or(Micros::ZERO, |at| at.saturating_add(hold)),
        )
    }

    /// The charge pump output: a rising edge retriggers the monostable.
    pub(crate) fn set_charge_pump(&mut self, high: bool) {
        let was = self.powered();
        if high && !self.pump_high {
            self.pump_rise = Some(self.now);
        }
        self.pump_high = high;
        self.note_motor_off(was);
    }

    /// The level of the charge pump output.
    pub(crate) fn charge_pump(&self) -> bool {
        self.pump_high
    }

    /// The motor driver's enable input.
    pub(crate) fn set_enabled(&mut self, on: bool) {
        let was = self.powered();
        if on && !self.enabled {
            self.enable_rises += 1;
        }
        self.enabled = on;
        self.note_motor_off(was);
    }

    /// Whether the motor driver is enabled.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// The motor's PWM duty, 0..=1.
    pub(crate) fn set_duty(&mut self, duty: f64) {
        let was = self.powered();
        self.duty = duty;
        self.note_motor_off(was);
    }

    fn note_motor_off(&mut self, was_powered: bool) {
        if was_powered && !self.powered() {
            self.motor_off_at = Some(self.now);
        }
    }

    /// Whether reads or writes of `part` fail.
    pub fn is_failing(&self, part: Part) -> bool {
        self.failing & part.bit() != 0
    }

    /// The supply voltage now.
    pub fn supply_v(&self) -> f64 {
        if self.brownout {
            self.params.brownout_v
        } else {
            self.params.supply_v
        }
    }

    /// The current the motor draws, A.
    pub fn current_a(&self) -> f64 {
        self.current
    }

    /// The temperature, °C.
    pub fn temperature_c(&self) -> f64 {
        self.temperature
    }

    /// What the home switch reads: closed at or below the trigger point, unless stuck.
    pub fn home_switch(&self) -> bool {
        self.stuck_home.unwrap_or(self.load_um <= 0.0)
    }

    /// Integrates the world up to `t`, applying scheduled injections on the way.
    pub fn advance_to(&mut self, t: Micros) {
        while self.now < t {
            if let Some(&(at, injection)) = self.schedule.first() {
                if at <= self.now {
                    self.schedule.remove(0);
                    self.inject(injection);
                    continue;
                }
            }
            let mut next_event = self.schedule.first().map_or(t, |(at, _)| (*at).min(t));
            // Stop at the charge pump's time-out, so the motor goes off at that instant.
            if let Some(expiry) = self.pump_expiry().filter(|at| *at > self.now) {
                next_event = next_event.min(expiry);
            }
            let step = PHYSICS_STEP.0.min(next_event.0 - self.now.0).max(1);
            self.integrate(step);
        }
        while let Some(&(at, injection)) = self.schedule.first() {
            if at > self.now {
                break;
            }
            self.schedule.remove(0);
            self.inject(injection);
        }
    }

    fn integrate(&mut self, step_us: u64) {
        let p = self.params;
        let dt = step_us as f64 * 1e-6;
        let was_powered = self.powered();
        let on = self.driver_on();
        let volts = if on {
            self.supply_v() * self.duty.clamp(0.0, 1.0)
        } else {
            0.0
        };
        // A driver with freewheel diodes: the current cannot reverse.
        self.current = if on {
            ((volts - p.motor_k * self.omega) / p.resistance_ohm).max(0.0)
        } else {
            0.0
        };
        let load = if self.jam { p.jam_nm } else { p.load_nm };
        let drive = p.motor_k * self.current - p.viscous * self.omega;
        let resist = p.friction_nm + load;
        // Static friction holds a stopped cam until the drive overcomes it.
        let net = if self.omega > 0.0 || drive > resist {
            drive - resist
        } else {
            0.0
        };
        self.omega = (self.omega + net / p.inertia * dt).max(0.0);
        if self.jam {
            // A jammed cam stops within a stroke.
            self.omega = self.omega.min(1.0);
        }
        let before = self.angle;
        self.angle += self.omega * dt;
        self.count_edges(before, step_us);

        let heat = self.current * self.current * p.resistance_ohm;
        let loss = (self.temperature - p.ambient_c) / p.thermal_resistance;
        self.temperature += (heat - loss) / p.thermal_capacity * dt;
        self.now = Micros(self.now.0 + step_us);
        // The charge pump's monostable may have timed out at the end of this step.
        self.note_motor_off(was_powered);
    }

    /// Edges at each 1/edges_per_rev of a revolution, timestamped by linear interpolation
    /// inside the physics step, as a timer capture would.
    fn count_edges(&mut self, before: f64, step_us: u64) {
        let per_edge = TAU / f64::from(self.params.edges_per_rev.max(1));
        let first = (before / per_edge).floor() as u64 + 1;
        let last = (self.angle / per_edge).floor() as u64;
        for n in first..=last {
            self.true_edges += 1;
            if self.dropout {
                continue;
            }
            let crossing = n as f64 * per_edge;
            let frac = ((crossing - before) / (self.angle - before)).clamp(0.0, 1.0);
            let at = Micros(self.now.0 + (frac * step_us as f64).round() as u64);
            if let Some(prev) = self.last_edge {
                self.last_period = Some(at.since(prev));
            }
            self.last_edge = Some(at);
            self.edges = self.edges.wrapping_add(1);
        }
    }

    /// A rising edge on STEP: the stepper moves one step in the DIR direction, unless
    /// overloaded, or pushing against an end stop.
    pub(crate) fn step_pulse(&mut self) {
        self.step_pulses += 1;
        if self.overload {
            self.skip_next = !self.skip_next;
            if self.skip_next {
                return;
            }
        }
        let p = self.params;
        let um = 1000.0 / f64::from(p.steps_per_mm.max(1));
        let (motor, load) = if self.dir_deeper {
            let m = self.motor_um + um;
            (m, self.load_um.max(m - p.backlash_um))
        } else {
            let m = self.motor_um - um;
            (m, self.load_um.min(m))
        };
        if load < p.hard_stop_min_um || load > p.hard_stop_max_um {
            return;
        }
        self.motor_um = motor;
        self.load_um = load;
        self.depth_steps += if self.dir_deeper { 1 } else { -1 };
    }

    /// The physical truth now.
    pub fn truth(&self) -> Truth {
        Truth {
            now: self.now,
            depth_um: self.load_um,
            rate_hz: self.omega / TAU,
            strokes: self.true_edges / u64::from(self.params.edges_per_rev.max(1)),
            motor_powered: self.powered(),
            driver_enabled: self.driver_on(),
            duty: if self.driver_on() { self.duty } else { 0.0 },
            current_a: self.current,
            temperature_c: self.temperature,
            supply_v: self.supply_v(),
            depth_steps: self.depth_steps,
            step_pulses: self.step_pulses,
            enable_rises: self.enable_rises,
            motor_off_at: self.motor_off_at,
        }
    }
}

impl Truth {
    /// The true depth, rounded to a micrometre.
    pub fn depth(&self) -> Micrometers {
        Micrometers(self.depth_um.round() as i32)
    }

    /// The true stroke rate, rounded to a millihertz.
    pub fn rate(&self) -> MilliHertz {
        MilliHertz((self.rate_hz * 1000.0).round().max(0.0) as u32)
    }
}
