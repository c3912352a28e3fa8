//! The rig's wiring, the same for every GPIO backend (rppal, linux): which part is opened in
//! which order and at which level, behind which wrapper, and the core's [`Hardware`] the parts
//! make up.
//!
//! A backend implements [`Backend`]: how to open one line, the motor PWM, the stroke sensor's
//! edge source and the I2C bus on its kernel interface. [`open_rig`] does the rest, in an
//! order that is a safety rule, every output at its safe level before anything else:
//!
//! 1. `motor_enable`, the motor's safe state, claimed at the electrical level of logical low;
//! 2. the motor PWM, enabled at duty 0;
//! 3. `depth_step` and `depth_dir`, low, each change held for the stepper driver's STEP pulse
//!    width and DIR setup time ([`HoldOutput`]);
//! 4. `charge_pump`, low until the control thread's first tick toggles it;
//! 5. the inputs, the stroke sensor's edge source, and the ADC, scanned once before
//!    [`open_rig`] returns.
//!
//! Every output is claimed already at the electrical level of logical low
//! ([`electrical_level`]), so it never passes through its active level; active-low pins are
//! wrapped in [`Inverted`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use embedded_hal::digital::{InputPin, OutputPin};
use embedded_hal::i2c::I2c;
use embedded_hal::pwm::SetDutyCycle;
use needle_core::hal::{Hardware, Parts};

use super::ads1115::Ads1115;
use super::analog::{start_analog, AnalogChannel, AnalogScanner};
use super::atecc608::{Atecc608, StdDelay};
use super::edges::{EdgeReader, EdgeTimestamps};
use super::pins::{electrical_level, HoldOutput, Inverted};
use super::tag_eeprom::TagEeprom;
use super::CartridgeChip;
use super::HalError;
use crate::config::{AdcConfig, Atecc608Config, CartridgeChipKind, PinMap, PinSpec, StrokeSection};

/// How a GPIO backend opens each device of the rig; [`open_rig`] calls it in the safe order.
///
/// Errors name the device and its configuration key ([`HalError::open`]).
pub trait Backend {
    /// An output line.
    type Output: OutputPin;
    /// An input line.
    type Input: InputPin;
    /// The motor driver's PWM.
    type MotorPwm: SetDutyCycle;
    /// The I2C bus of the ADC.
    type Bus: I2c + Send + 'static;
    /// Keeps the stroke sensor's edge source running; dropping it stops the source.
    type EdgeSource;

    /// Claims `spec` (the pin map's `name`) as an output that drives electrical level `high`
    /// from the moment it is claimed.
    fn output(
        &mut self,
        name: &'static str,
        spec: PinSpec,
        high: bool,
    ) -> Result<Self::Output, HalError>;

    /// Claims `spec` (the pin map's `name`) as an input, read at its electrical level.
    fn input(&mut self, name: &'static str, spec: PinSpec) -> Result<Self::Input, HalError>;

    /// Opens the motor PWM, enabled at duty 0.
    fn motor_pwm(&mut self) -> Result<Self::MotorPwm, HalError>;

    /// Starts recording the stroke sensor's active edges on `spec` into `edges`: rising edges
    /// when `rising`, falling edges otherwise.
    fn stroke_edges(
        &mut self,
        spec: PinSpec,
        rising: bool,
        edges: Arc<EdgeTimestamps>,
    ) -> Result<Self::EdgeSource, HalError>;

    /// Opens the I2C bus of the ADC.
    fn adc_bus(&mut self) -> Result<Self::Bus, HalError>;
}

/// What the GPIO backends' tables (`[hardware.rppal]`, `[hardware.linux]`) share.
#[derive(Debug, Clone)]
pub struct Wiring<'a> {
    /// The table, such as `hardware.linux`: errors name `hardware.linux.motor_enable`.
    pub key: &'static str,
    /// The pins.
    pub pins: PinMap,
    /// `step_pulse_us`: minimum STEP high and low time.
    pub step_pulse_us: u32,
    /// `dir_setup_us`: minimum time from a DIR change to the next STEP edge.
    pub dir_setup_us: u32,
    /// The I2C bus of the ADC and the tag EEPROM as errors name it, such as `/dev/i2c-1`.
    pub bus: String,
    /// The ADC.
    pub adc: &'a AdcConfig,
    /// `tag_eeprom_address`: 7-bit I2C address of the cartridge tag EEPROM.
    pub tag_eeprom_address: u8,
    /// `tag_eeprom_address_bytes`: word address width of the EEPROM, 1 or 2.
    pub tag_eeprom_address_bytes: u8,
    /// `cartridge_chip`: a plain EEPROM or an ATECC608.
    pub cartridge_chip: CartridgeChipKind,
    /// `[.atecc608]`: the ATECC608's address, slots and counter.
    pub atecc608: Atecc608Config,
}

/// The rig of a GPIO backend `B`, as needle-core's [`Hardware`] (see [`open_rig`]).
pub struct Rig<B: Backend> {
    // Dropped in this order: the motor first.
    motor_enable: Inverted<B::Output>,
    motor_pwm: B::MotorPwm,
    depth_step: HoldOutput<Inverted<B::Output>>,
    depth_dir: HoldOutput<Inverted<B::Output>>,
    charge_pump: Inverted<B::Output>,
    home_switch: Inverted<B::Input>,
    cartridge_switch: Inverted<B::Input>,
    estop: Inverted<B::Input>,
    pedal: Inverted<B::Input>,
    stroke: EdgeReader,
    current: AnalogChannel,
    temperature: AnalogChannel,
    supply: AnalogChannel,
    /// Keeps the edge source that feeds `stroke` running.
    _edges: B::EdgeSource,
    /// Owns the thread that feeds the analog channels.
    _adc: AnalogScanner,
}

impl<B: Backend> fmt::Debug for Rig<B>
where
    B::MotorPwm: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rig")
            .field("motor_pwm", &self.motor_pwm)
            .field("stroke", &self.stroke)
            .finish_non_exhaustive()
    }
}

impl<B: Backend> Hardware for Rig<B> {
    type MotorPwm = B::MotorPwm;
    type MotorEnable = Inverted<B::Output>;
    type DepthStep = HoldOutput<Inverted<B::Output>>;
    type DepthDir = HoldOutput<Inverted<B::Output>>;
    type ChargePump = Inverted<B::Output>;
    type HomeSwitch = Inverted<B::Input>;
    type CartridgeSwitch = Inverted<B::Input>;
    type EStop = Inverted<B::Input>;
    type Pedal = Inverted<B::Input>;
    type Stroke = EdgeReader;
    type Current = AnalogChannel;
    type Temperature = AnalogChannel;
    type Supply = AnalogChannel;

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

/// Opens the rig through `backend` in the safe order of this module's documentation: every
/// output at its safe level first, the motor enable before the motor PWM, then the inputs,
/// the stroke sensor's edge source (its glitch filter from `stroke`) and the ADC, read once
/// before this returns.
///
/// The first device that cannot be opened ends the start with its error; the parts already
/// opened are dropped, the motor enable last.
pub fn open_rig<B: Backend>(
    mut backend: B,
    wiring: &Wiring<'_>,
    stroke: &StrokeSection,
) -> Result<Rig<B>, HalError> {
    let pins = wiring.pins;
    let step_hold = Duration::from_micros(u64::from(wiring.step_pulse_us));
    let dir_hold = Duration::from_micros(u64::from(wiring.dir_setup_us));

    // The motor's safe state first.
    let motor_enable = output(&mut backend, "motor_enable", pins.motor_enable)?;
    let motor_pwm = backend.motor_pwm()?;
    let depth_step = HoldOutput::new(
        output(&mut backend, "depth_step", pins.depth_step)?,
        step_hold,
        Some(false),
    );
    let depth_dir = HoldOutput::new(
        output(&mut backend, "depth_dir", pins.depth_dir)?,
        dir_hold,
        Some(false),
    );
    // Idle (low) until the control thread's first tick toggles it.
    let charge_pump = output(&mut backend, "charge_pump", pins.charge_pump)?;
    let home_switch = input(&mut backend, "home_switch", pins.home_switch)?;
    let cartridge_switch = input(&mut backend, "cartridge_switch", pins.cartridge_switch)?;
    let estop = input(&mut backend, "estop", pins.estop)?;
    let pedal = input(&mut backend, "pedal", pins.pedal)?;

    let edges = EdgeTimestamps::new(EdgeTimestamps::glitch_filter_for(
        stroke.rate_ceiling_hz,
        stroke.edges_per_stroke,
    ));
    let spec = pins.stroke_sensor;
    let edge_source = backend.stroke_edges(
        spec,
        electrical_level(true, spec.active_low),
        Arc::clone(&edges),
    )?;

    let (scanner, [current, temperature, supply]) = start_adc(&mut backend, wiring)?;

    Ok(Rig {
        motor_enable,
        motor_pwm,
        depth_step,
        depth_dir,
        charge_pump,
        home_switch,
        cartridge_switch,
        estop,
        pedal,
        stroke: edges.reader(),
        current,
        temperature,
        supply,
        _edges: edge_source,
        _adc: scanner,
    })
}

/// Claims an output already at the electrical level of logical low: never a glitch to active.
fn output<B: Backend>(
    backend: &mut B,
    name: &'static str,
    spec: PinSpec,
) -> Result<Inverted<B::Output>, HalError> {
    let pin = backend.output(name, spec, electrical_level(false, spec.active_low))?;
    Ok(Inverted::new(pin, spec.active_low))
}

fn input<B: Backend>(
    backend: &mut B,
    name: &'static str,
    spec: PinSpec,
) -> Result<Inverted<B::Input>, HalError> {
    Ok(Inverted::new(backend.input(name, spec)?, spec.active_low))
}

/// The ADS1115 on the backend's bus, scanned from its own thread for current, temperature and
/// supply.
fn start_adc<B: Backend>(
    backend: &mut B,
    wiring: &Wiring<'_>,
) -> Result<(AnalogScanner, [AnalogChannel; 3]), HalError> {
    let adc = wiring.adc;
    let device = format!("ADS1115 at {:#04x} on {}", adc.address, wiring.bus);
    let ads = Ads1115::new(backend.adc_bus()?, adc.address, adc.data_rate_sps).map_err(|e| {
        HalError::device(
            &device,
            format!("{}.adc.data_rate_sps", wiring.key),
            e.to_string(),
        )
    })?;
    start_analog(
        ads,
        adc.channels(),
        Duration::from_millis(u64::from(adc.max_age_ms)),
    )
    .map_err(|e| {
        HalError::device(
            &device,
            format!("{}.adc.address", wiring.key),
            e.to_string(),
        )
    })
}

/// The cartridge reader on `bus`, the backend's I2C bus opened for it alone (its own file
/// descriptor: the kernel serializes its transfers with the ADC's): the ATECC608 driver or
/// the plain tag EEPROM, as `cartridge_chip` says.
pub fn tag_reader<I2C: I2c + Send + 'static>(
    bus: I2C,
    wiring: &Wiring<'_>,
) -> Box<dyn CartridgeChip> {
    match wiring.cartridge_chip {
        CartridgeChipKind::Atecc608 => Box::new(chip_reader(bus, wiring)),
        CartridgeChipKind::Eeprom => Box::new(eeprom_reader(bus, wiring)),
    }
}

/// The ATECC608 driver on `bus` (see [`tag_reader`]).
pub fn chip_reader<I2C: I2c>(bus: I2C, wiring: &Wiring<'_>) -> Atecc608<I2C, StdDelay> {
    Atecc608::new(
        bus,
        StdDelay,
        wiring.atecc608.slots(),
        format!(
            "ATECC608 at {:#04x} on {}",
            wiring.atecc608.i2c_address, wiring.bus
        ),
        format!("{}.atecc608", wiring.key),
    )
}

/// The plain tag EEPROM on `bus` (see [`tag_reader`]).
pub fn eeprom_reader<I2C: I2c>(bus: I2C, wiring: &Wiring<'_>) -> TagEeprom<I2C> {
    TagEeprom::new(
        bus,
        wiring.tag_eeprom_address,
        wiring.tag_eeprom_address_bytes,
        format!(
            "tag EEPROM at {:#04x} on {}",
            wiring.tag_eeprom_address, wiring.bus
        ),
        format!("{}.tag_eeprom_address", wiring.key),
    )
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::convert::Infallible;
    use std::rc::Rc;

    use embedded_hal::{digital, pwm};
    use needle_core::hal::Analog;

    use super::*;
    use crate::config::{AdcChannelConfig, Config};
    use crate::hal::fakes::{fake_ads, SharedAds};

    /// Everything the fake backend was asked to do, in order.
    type Log = Rc<RefCell<Vec<String>>>;

    /// A line that logs what is written to it and reads low.
    #[derive(Debug)]
    struct Line {
        name: &'static str,
        log: Log,
    }

    impl digital::ErrorType for Line {
        type Error = Infallible;
    }

    impl OutputPin for Line {
        fn set_high(&mut self) -> Result<(), Infallible> {
            self.log
                .borrow_mut()
                .push(format!("{} set high", self.name));
            Ok(())
        }
        fn set_low(&mut self) -> Result<(), Infallible> {
            self.log.borrow_mut().push(format!("{} set low", self.name));
            Ok(())
        }
    }

    impl InputPin for Line {
        fn is_high(&mut self) -> Result<bool, Infallible> {
            Ok(false)
        }
        fn is_low(&mut self) -> Result<bool, Infallible> {
            Ok(true)
        }
    }

    #[derive(Debug)]
    struct FakePwm;

    impl pwm::ErrorType for FakePwm {
        type Error = Infallible;
    }

    impl SetDutyCycle for FakePwm {
        fn max_duty_cycle(&self) -> u16 {
            10_000
        }
        fn set_duty_cycle(&mut self, _duty: u16) -> Result<(), Infallible> {
            Ok(())
        }
    }

    /// A backend that logs each device it opens and refuses the one named `refuse`.
    struct FakeBackend {
        log: Log,
        refuse: Option<&'static str>,
        bus: SharedAds,
    }

    impl FakeBackend {
        fn open(&mut self, name: &'static str, what: &str) -> Result<(), HalError> {
            self.log.borrow_mut().push(format!("{name} {what}"));
            if self.refuse == Some(name) {
                return Err(HalError::device(
                    name,
                    format!("hardware.fake.{name}"),
                    "refused",
                ));
            }
            Ok(())
        }

        fn line(&self, name: &'static str) -> Line {
            Line {
                name,
                log: Rc::clone(&self.log),
            }
        }
    }

    fn level(high: bool) -> &'static str {
        if high {
            "high"
        } else {
            "low"
        }
    }

    impl Backend for FakeBackend {
        type Output = Line;
        type Input = Line;
        type MotorPwm = FakePwm;
        type Bus = SharedAds;
        type EdgeSource = ();

        fn output(&mut self, name: &'static str, _: PinSpec, high: bool) -> Result<Line, HalError> {
            self.open(name, &format!("output at {}", level(high)))?;
            Ok(self.line(name))
        }

        fn input(&mut self, name: &'static str, _: PinSpec) -> Result<Line, HalError> {
            self.open(name, "input")?;
            Ok(self.line(name))
        }

        fn motor_pwm(&mut self) -> Result<FakePwm, HalError> {
            self.open("motor_pwm", "at duty 0")?;
            Ok(FakePwm)
        }

        fn stroke_edges(
            &mut self,
            _: PinSpec,
            rising: bool,
            _: Arc<EdgeTimestamps>,
        ) -> Result<(), HalError> {
            let edges = if rising { "rising" } else { "falling" };
            self.open("stroke_sensor", &format!("{edges} edges"))
        }

        fn adc_bus(&mut self) -> Result<SharedAds, HalError> {
            self.open("adc", "bus")?;
            Ok(self.bus.clone())
        }
    }

    fn pin(text: &str) -> PinSpec {
        text.parse().unwrap()
    }

    /// An active-low motor enable and E-stop and stroke sensor, the rest active-high.
    fn pin_map() -> PinMap {
        PinMap {
            motor_enable: pin("!23"),
            depth_step: pin("24"),
            depth_dir: pin("25"),
            charge_pump: pin("27"),
            home_switch: pin("5"),
            cartridge_switch: pin("6"),
            estop: pin("!13"),
            pedal: pin("19"),
            stroke_sensor: pin("!26"),
        }
    }

    fn adc_config() -> AdcConfig {
        let channel = |input| AdcChannelConfig {
            input,
            full_scale_mv: 4_096,
            milli_per_volt: 1_000,
            offset_milli: 0,
        };
        AdcConfig {
            address: 0x48,
            data_rate_sps: 860,
            max_age_ms: 1_000,
            current: channel(0),
            temperature: channel(1),
            supply: channel(2),
        }
    }

    /// An ADS1115 with 1 V, 2 V and 3 V on AIN0 to AIN2.
    fn adc_at_1_2_3_volts() -> SharedAds {
        let counts = |mv: i16| mv * 8;
        fake_ads([counts(1_000), counts(2_000), counts(3_000), 0])
    }

    /// Opens the rig through a [`FakeBackend`] on `bus` that refuses `refuse`.
    fn open_fake(
        refuse: Option<&'static str>,
        bus: SharedAds,
    ) -> (Result<Rig<FakeBackend>, HalError>, Log) {
        let log = Log::default();
        let backend = FakeBackend {
            log: Rc::clone(&log),
            refuse,
            bus,
        };
        let adc = adc_config();
        let wiring = Wiring {
            key: "hardware.fake",
            pins: pin_map(),
            step_pulse_us: 2,
            dir_setup_us: 1,
            bus: "/dev/i2c-9".into(),
            adc: &adc,
            tag_eeprom_address: 0x50,
            tag_eeprom_address_bytes: 1,
            cartridge_chip: CartridgeChipKind::Eeprom,
            atecc608: Atecc608Config::default(),
        };
        let rig = open_rig(backend, &wiring, &Config::default().stroke);
        (rig, log)
    }

    #[test]
    fn every_output_is_claimed_at_its_safe_level_before_anything_else_the_motor_enable_first() {
        let (rig, log) = open_fake(None, adc_at_1_2_3_volts());
        let mut rig = rig.unwrap();
        assert_eq!(
            *log.borrow(),
            [
                "motor_enable output at high", // active-low: off is electrically high
                "motor_pwm at duty 0",
                "depth_step output at low",
                "depth_dir output at low",
                "charge_pump output at low",
                "home_switch input",
                "cartridge_switch input",
                "estop input",
                "pedal input",
                "stroke_sensor falling edges", // active-low: the active edge falls
                "adc bus",
            ]
        );

        // Active-low pins are inverted; the ADC channels are current, temperature, supply.
        log.borrow_mut().clear();
        let p = rig.parts();
        p.motor_enable.set_high().unwrap();
        p.depth_step.set_high().unwrap();
        assert_eq!(
            *log.borrow(),
            ["motor_enable set low", "depth_step set high"]
        );
        assert_eq!(p.estop.is_high(), Ok(true));
        assert_eq!(p.pedal.is_high(), Ok(false));
        let milli = |a: &mut AnalogChannel| a.read_milli();
        assert_eq!(milli(p.current), Ok(1_000));
        assert_eq!(milli(p.temperature), Ok(2_000));
        assert_eq!(milli(p.supply), Ok(3_000));
    }

    #[test]
    fn a_device_that_cannot_be_opened_ends_the_start_before_the_next_one() {
        let (rig, log) = open_fake(Some("motor_pwm"), adc_at_1_2_3_volts());
        let err = rig.unwrap_err().to_string();
        assert!(err.contains("hardware.fake.motor_pwm"), "{err}");
        assert_eq!(
            *log.borrow(),
            ["motor_enable output at high", "motor_pwm at duty 0"]
        );

        let (rig, log) = open_fake(Some("stroke_sensor"), adc_at_1_2_3_volts());
        assert!(rig.is_err());
        assert!(!log.borrow().iter().any(|l| l.starts_with("adc")));
    }

    #[test]
    fn a_silent_adc_is_named_with_the_bus_and_the_table_key() {
        let bus = fake_ads([0; 4]);
        bus.0.lock().unwrap().present = false;
        let (rig, _) = open_fake(None, bus);
        let err = rig.unwrap_err().to_string();
        assert!(
            err.starts_with("ADS1115 at 0x48 on /dev/i2c-9 (hardware.fake.adc.address): "),
            "{err}"
        );
    }

    #[test]
    fn cartridge_chip_selects_the_reader() {
        use crate::hal::fakes::NACK;
        use crate::hal::ChipFault;

        /// A bus on which nothing acknowledges (no cartridge seated).
        struct Empty;
        impl embedded_hal::i2c::ErrorType for Empty {
            type Error = crate::hal::fakes::FakeI2cError;
        }
        impl I2c for Empty {
            fn transaction(
                &mut self,
                _: u8,
                _: &mut [embedded_hal::i2c::Operation<'_>],
            ) -> Result<(), Self::Error> {
                Err(NACK)
            }
        }
        let adc = adc_config();
        let mut wiring = Wiring {
            key: "hardware.fake",
            pins: pin_map(),
            step_pulse_us: 2,
            dir_setup_us: 1,
            bus: "/dev/i2c-9".into(),
            adc: &adc,
            tag_eeprom_address: 0x50,
            tag_eeprom_address_bytes: 1,
            cartridge_chip: CartridgeChipKind::Eeprom,
            atecc608: Atecc608Config::default(),
        };
        // The EEPROM reader has no chip to ask.
        let mut eeprom = tag_reader(Empty, &wiring);
        assert_eq!(eeprom.read_tag().unwrap(), None);
        assert!(matches!(
            eeprom.sign_challenge(&[0; 32]),
            Err(ChipFault::Unsupported)
        ));
        // The ATECC608 driver asks the chip, and an absent one does not answer.
        wiring.cartridge_chip = CartridgeChipKind::Atecc608;
        let mut chip = tag_reader(Empty, &wiring);
        assert_eq!(chip.read_tag().unwrap(), None);
        assert!(matches!(
            chip.sign_challenge(&[0; 32]),
            Err(ChipFault::NoAnswer)
        ));
        assert!(matches!(chip.advance_counter(), Err(ChipFault::NoAnswer)));
    }
}
