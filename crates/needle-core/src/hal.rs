//! What the core needs from the hardware.
//!
//! Pins and PWM come from embedded-hal 1.0. embedded-hal has no counter or ADC trait, so the
//! core defines two small ones, [`StrokeSensor`] and [`Analog`], in embedded-hal's
//! `ErrorType`/`Error::kind()` shape. [`Hardware`] bundles every part the controller drives.
//!
//! Logical levels: an input reads *high when active* (E-stop pressed, home switch triggered,
//! cartridge seated, pedal pressed). Inversion for active-low wiring, such as a normally closed
//! E-stop, belongs to the backend that builds the pins.

pub use embedded_hal::digital::{InputPin, OutputPin};
pub use embedded_hal::pwm::SetDutyCycle;

use crate::units::Micros;

/// Kinds of errors of the core's own traits, so the controller can react to kinds while each
/// backend keeps its own rich error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The device is gone (unplugged, bus not answering).
    Disconnected,
    /// The device did not answer in time.
    Timeout,
    /// The device answered with a value it cannot have.
    OutOfRange,
    /// Anything else.
    Other,
}

/// An error of a [`StrokeSensor`] or [`Analog`] channel.
pub trait Error: core::fmt::Debug {
    /// The kind of this error.
    fn kind(&self) -> ErrorKind;
}

impl Error for core::convert::Infallible {
    fn kind(&self) -> ErrorKind {
        match *self {}
    }
}

impl Error for ErrorKind {
    fn kind(&self) -> ErrorKind {
        *self
    }
}

/// The error type of a peripheral.
pub trait ErrorType {
    /// Error returned by the peripheral's methods.
    type Error: Error;
}

impl<T: ErrorType + ?Sized> ErrorType for &mut T {
    type Error = T::Error;
}

/// What the stroke sensor has seen so far.
///
/// Edges are timestamped by the hardware (timer capture on a microcontroller, kernel event
/// timestamps from gpio-cdev on Linux) on the same clock as the controller's `now`. Polling
/// the pin at the tick rate would quantise a 6 ms stroke period to 1 ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StrokeSample {
    /// Edges counted since start-up; wraps at `u32::MAX`.
    pub edges: u32,
    /// When the latest edge happened, if any edge has been seen. Never later than the
    /// controller's `now` plus one tick period: an edge from further ahead is a
    /// `SensorFault` (the sensor's clock is not the controller's).
    pub last_edge: Option<Micros>,
    /// Time between the latest two edges, if two have been seen.
    pub last_period: Option<Micros>,
}

/// Counts stroke sensor edges (a hall sensor or an optical fork on the cam).
pub trait StrokeSensor: ErrorType {
    /// Reads the edge count and timing seen so far. Must not block.
    fn sample(&mut self) -> Result<StrokeSample, Self::Error>;
}

impl<T: StrokeSensor + ?Sized> StrokeSensor for &mut T {
    fn sample(&mut self) -> Result<StrokeSample, Self::Error> {
        T::sample(self)
    }
}

/// A scaled analog reading: motor current, temperature or supply voltage, in thousandths of
/// the channel's unit (mA, m°C, mV). Scaling and calibration belong to the backend.
pub trait Analog: ErrorType {
    /// The latest reading, in thousandths of the channel's unit. Must not block.
    fn read_milli(&mut self) -> Result<i32, Self::Error>;
}

impl<T: Analog + ?Sized> Analog for &mut T {
    fn read_milli(&mut self) -> Result<i32, Self::Error> {
        T::read_milli(self)
    }
}

/// Every part of the rig the controller reads or drives.
///
/// A backend (the simulated rig, the Pi's GPIO, a microcontroller's peripherals) implements
/// this by lending out its parts; see [`Parts`].
pub trait Hardware {
    /// PWM of the stroke motor driver.
    type MotorPwm: SetDutyCycle;
    /// Enable of the stroke motor driver: low is the safe state.
    type MotorEnable: OutputPin;
    /// STEP input of the depth stepper driver: one step per rising edge.
    type DepthStep: OutputPin;
    /// DIR input of the depth stepper driver: high moves deeper.
    type DepthDir: OutputPin;
    /// Charge pump: toggled by the controller every tick while no fault is latched, held
    /// low in a tick with a fault latched. The rig's driver enable requires it through a
    /// retriggerable monostable, so the driver loses power when the ticks stop (a dead or
    /// hung process), whatever level the enable line was left at.
    type ChargePump: OutputPin;
    /// Home switch of the depth axis (at depth 0).
    type HomeSwitch: InputPin;
    /// Switch that reads a seated cartridge.
    type CartridgeSwitch: InputPin;
    /// Emergency stop.
    type EStop: InputPin;
    /// Foot pedal.
    type Pedal: InputPin;
    /// Stroke sensor on the cam.
    type Stroke: StrokeSensor;
    /// Motor current, mA.
    type Current: Analog;
    /// Motor or driver temperature, m°C.
    type Temperature: Analog;
    /// Supply voltage, mV.
    type Supply: Analog;

    /// Lends out all parts at once.
    fn parts(&mut self) -> Parts<'_, Self>;
}

/// Mutable borrows of every part of a [`Hardware`], taken together so the controller can use
/// them side by side.
#[allow(missing_docs)]
pub struct Parts<'a, H: Hardware + ?Sized> {
    pub motor_pwm: &'a mut H::MotorPwm,
    pub motor_enable: &'a mut H::MotorEnable,
    pub depth_step: &'a mut H::DepthStep,
    pub depth_dir: &'a mut H::DepthDir,
    pub charge_pump: &'a mut H::ChargePump,
    pub home_switch: &'a mut H::HomeSwitch,
    pub cartridge_switch: &'a mut H::CartridgeSwitch,
    pub estop: &'a mut H::EStop,
    pub pedal: &'a mut H::Pedal,
    pub stroke: &'a mut H::Stroke,
    pub current: &'a mut H::Current,
    pub temperature: &'a mut H::Temperature,
    pub supply: &'a mut H::Supply,
}
