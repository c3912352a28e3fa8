//! The rig's parts as embedded-hal pins and needle-core sensors.
//!
//! Every part holds the shared [`World`]; reads and writes go straight to the physics, and a
//! part made to fail by [`Injection::SensorError`](crate::Injection::SensorError) returns a
//! [`SimError`].

use std::sync::{Arc, Mutex, MutexGuard};

use embedded_hal::digital::{self, InputPin, OutputPin};
use embedded_hal::pwm::{self, SetDutyCycle};
use needle_core::hal::{self, Analog, ErrorKind, Hardware, Parts, StrokeSample, StrokeSensor};

use crate::physics::{Part, World};

/// The error of a failing simulated part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimError {
    /// The part that failed.
    pub part: Part,
}

impl hal::Error for SimError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Disconnected
    }
}

impl digital::Error for SimError {
    fn kind(&self) -> digital::ErrorKind {
        digital::ErrorKind::Other
    }
}

impl pwm::Error for SimError {
    fn kind(&self) -> pwm::ErrorKind {
        pwm::ErrorKind::Other
    }
}

/// Locks the world; a poisoned lock (a panicking test thread) still yields the world.
pub(crate) fn lock(world: &Mutex<World>) -> MutexGuard<'_, World> {
    world
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One part of the rig, bound to the shared world.
#[derive(Debug, Clone)]
pub struct SimPart {
    world: Arc<Mutex<World>>,
    part: Part,
}

impl SimPart {
    fn with<T>(&self, f: impl FnOnce(&mut World) -> T) -> Result<T, SimError> {
        let mut w = lock(&self.world);
        if w.is_failing(self.part) {
            return Err(SimError { part: self.part });
        }
        Ok(f(&mut w))
    }
}

impl digital::ErrorType for SimPart {
    type Error = SimError;
}

impl pwm::ErrorType for SimPart {
    type Error = SimError;
}

impl hal::ErrorType for SimPart {
    type Error = SimError;
}

impl InputPin for SimPart {
    fn is_high(&mut self) -> Result<bool, SimError> {
        let part = self.part;
        self.with(|w| match part {
            Part::HomeSwitch => w.home_switch(),
            Part::CartridgeSwitch => w.cartridge,
            Part::EStop => w.estop,
            Part::Pedal => w.pedal,
            // Outputs read back their level.
            Part::MotorEnable => w.enabled(),
            Part::DepthStep => w.step_high,
            Part::DepthDir => w.dir_deeper,
            Part::ChargePump => w.charge_pump(),
            _ => false,
        })
    }

    fn is_low(&mut self) -> Result<bool, SimError> {
        self.is_high().map(|high| !high)
    }
}

impl OutputPin for SimPart {
    fn set_low(&mut self) -> Result<(), SimError> {
        let part = self.part;
        self.with(|w| match part {
            Part::MotorEnable => w.set_enabled(false),
            Part::DepthStep => w.step_high = false,
            Part::DepthDir => w.dir_deeper = false,
            Part::ChargePump => w.set_charge_pump(false),
            _ => {}
        })
    }

    fn set_high(&mut self) -> Result<(), SimError> {
        let part = self.part;
        self.with(|w| match part {
            Part::MotorEnable => w.set_enabled(true),
            Part::DepthStep => {
                if !w.step_high {
                    w.step_pulse();
                }
                w.step_high = true;
            }
            Part::DepthDir => w.dir_deeper = true,
            Part::ChargePump => w.set_charge_pump(true),
            _ => {}
        })
    }
}

/// Resolution of the simulated PWM: 0.01 %.
const PWM_MAX: u16 = 10_000;

impl SetDutyCycle for SimPart {
    fn max_duty_cycle(&self) -> u16 {
        PWM_MAX
    }

    fn set_duty_cycle(&mut self, duty: u16) -> Result<(), SimError> {
        self.with(|w| w.set_duty(f64::from(duty.min(PWM_MAX)) / f64::from(PWM_MAX)))
    }
}

impl StrokeSensor for SimPart {
    fn sample(&mut self) -> Result<StrokeSample, SimError> {
        self.with(|w| StrokeSample {
            edges: w.edges,
            last_edge: w
                .last_edge
                .map(|at| at.saturating_add(w.sensor_clock_ahead)),
            last_period: w.last_period,
        })
    }
}

impl Analog for SimPart {
    fn read_milli(&mut self) -> Result<i32, SimError> {
        let part = self.part;
        self.with(|w| {
            let value = match part {
                Part::Current => w.current_a(),
                Part::Temperature => w.temperature_c(),
                Part::Supply => w.supply_v(),
                _ => 0.0,
            };
            (value * 1000.0).round() as i32
        })
    }
}

/// The simulated rig as the controller's [`Hardware`].
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct SimHardware {
    pub motor_pwm: SimPart,
    pub motor_enable: SimPart,
    pub depth_step: SimPart,
    pub depth_dir: SimPart,
    pub charge_pump: SimPart,
    pub home_switch: SimPart,
    pub cartridge_switch: SimPart,
    pub estop: SimPart,
    pub pedal: SimPart,
    pub stroke: SimPart,
    pub current: SimPart,
    pub temperature: SimPart,
    pub supply: SimPart,
}

impl SimHardware {
    pub(crate) fn new(world: &Arc<Mutex<World>>) -> Self {
        let part = |part| SimPart {
            world: Arc::clone(world),
            part,
        };
        Self {
            motor_pwm: part(Part::MotorPwm),
            motor_enable: part(Part::MotorEnable),
            depth_step: part(Part::DepthStep),
            depth_dir: part(Part::DepthDir),
            charge_pump: part(Part::ChargePump),
            home_switch: part(Part::HomeSwitch),
            cartridge_switch: part(Part::CartridgeSwitch),
            estop: part(Part::EStop),
            pedal: part(Part::Pedal),
            stroke: part(Part::StrokeSensor),
            current: part(Part::Current),
            temperature: part(Part::Temperature),
            supply: part(Part::Supply),
        }
    }
}

impl Hardware for SimHardware {
    type MotorPwm = SimPart;
    type MotorEnable = SimPart;
    type DepthStep = SimPart;
    type DepthDir = SimPart;
    type ChargePump = SimPart;
    type HomeSwitch = SimPart;
    type CartridgeSwitch = SimPart;
    type EStop = SimPart;
    type Pedal = SimPart;
    type Stroke = SimPart;
    type Current = SimPart;
    type Temperature = SimPart;
    type Supply = SimPart;

    fn parts(&mut self) -> Parts<'_, Self> {
        Parts {
            motor_pwm: &mut self.motor_pwm,
            motor_enable: &mut self.motor_enable,
            depth_step: &mut self.depth_step,
            depth_dir: &mut self.depth_dir,
            charge_pump: &mut self.charge_pump,
            home_switch: &mut self.home_switch,
            cartridge_switch: &mut self.cartridge_switch,
            estop: &mut self.estop,
            pedal: &mut self.pedal,
            stroke: &mut self.stroke,
            current: &mut self.current,
            temperature: &mut self.temperature,
            supply: &mut self.supply,
        }
    }
}
