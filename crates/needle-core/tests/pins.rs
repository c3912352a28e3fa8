//! Pin-level checks with embedded-hal-mock: the exact reads and writes of a tick.

use embedded_hal_mock::eh1::digital::{Mock as Pin, State as Level, Transaction as P};
use embedded_hal_mock::eh1::pwm::{Mock as Pwm, Transaction as W};
use embedded_hal_mock::eh1::MockError;
use needle_core::hal::{self, Analog, ErrorKind, Hardware, Parts, StrokeSample, StrokeSensor};
use needle_core::units::Micros;
use needle_core::{Controller, ControllerConfig, Fault, State};

/// An analog channel or stroke sensor that always reads the same.
struct Fixed(i32);

impl hal::ErrorType for Fixed {
    type Error = ErrorKind;
}

impl Analog for Fixed {
    fn read_milli(&mut self) -> Result<i32, ErrorKind> {
        Ok(self.0)
    }
}

impl StrokeSensor for Fixed {
    fn sample(&mut self) -> Result<StrokeSample, ErrorKind> {
        Ok(StrokeSample::default())
    }
}

struct Mocked {
    pwm: Pwm,
    enable: Pin,
    step: Pin,
    dir: Pin,
    pump: Pin,
    home: Pin,
    cartridge: Pin,
    estop: Pin,
    pedal: Pin,
    stroke: Fixed,
    current: Fixed,
    temperature: Fixed,
    supply: Fixed,
}

impl Hardware for Mocked {
    type MotorPwm = Pwm;
    type MotorEnable = Pin;
    type DepthStep = Pin;
    type DepthDir = Pin;
    type ChargePump = Pin;
    type HomeSwitch = Pin;
    type CartridgeSwitch = Pin;
    type EStop = Pin;
    type Pedal = Pin;
    type Stroke = Fixed;
    type Current = Fixed;
    type Temperature = Fixed;
    type Supply = Fixed;

    fn parts(&mut self) -> Parts<'_, Self> {
        Parts {
            motor_pwm: &mut self.pwm,
            motor_enable: &mut self.enable,
            depth_step: &mut self.step,
            depth_dir: &mut self.dir,
            charge_pump: &mut self.pump,
            home_switch: &mut self.home,
            cartridge_switch: &mut self.cartridge,
            estop: &mut self.estop,
            pedal: &mut self.pedal,
            stroke: &mut self.stroke,
            current: &mut self.current,
            temperature: &mut self.temperature,
            supply: &mut self.supply,
        }
    }
}

impl Mocked {
    fn done(mut self) {
        self.pwm.done();
        self.enable.done();
        self.step.done();
        self.dir.done();
        self.pump.done();
        self.home.done();
        self.cartridge.done();
        self.estop.done();
        self.pedal.done();
    }
}

fn mocked(estop: Vec<P>, enable: Vec<P>, pwm: Vec<W>, pump: Vec<P>) -> Mocked {
    let ticks = estop.len();
    let level = |l: Level| (0..ticks).map(|_| P::get(l)).collect::<Vec<_>>();
    Mocked {
        pwm: Pwm::new(&pwm),
        enable: Pin::new(&enable),
        step: Pin::new(&[]),
        dir: Pin::new(&[]),
        pump: Pin::new(&pump),
        home: Pin::new(&level(Level::Low)),
        cartridge: Pin::new(&level(Level::High)),
        estop: Pin::new(&estop),
        pedal: Pin::new(&level(Level::Low)),
        stroke: Fixed(0),
        current: Fixed(100),
        temperature: Fixed(25_000),
        supply: Fixed(12_000),
    }
}

#[test]
fn boot_tick_writes_enable_low_before_pwm_off() {
    let hw = mocked(
        vec![P::get(Level::Low)],
        vec![P::set(Level::Low)],
        vec![W::set_duty_cycle(0)],
        vec![P::set(Level::High)],
    );
    let mut ctrl = Controller::new(hw, ControllerConfig::default()).unwrap();
    ctrl.tick(Micros(0));
    assert_eq!(ctrl.state(), State::Boot);
    ctrl.into_hardware().done();
}

#[test]
fn input_error_latches_sensor_fault_and_keeps_outputs_safe() {
    let estop = vec![P::get(Level::Low).with_error(MockError::Io(std::io::ErrorKind::Other))];
    let hw = mocked(
        estop,
        vec![P::set(Level::Low)],
        vec![W::set_duty_cycle(0)],
        vec![P::set(Level::Low)],
    );
    let mut ctrl = Controller::new(hw, ControllerConfig::default()).unwrap();
    ctrl.tick(Micros(0));
    assert_eq!(ctrl.state(), State::Fault);
    assert!(ctrl.telemetry().faults.contains(Fault::SensorFault));
    ctrl.into_hardware().done();
}

#[test]
fn pwm_write_error_latches_sensor_fault_and_retries_safe_outputs() {
    let pwm = vec![
        W::set_duty_cycle(0).with_error(MockError::Io(std::io::ErrorKind::Other)),
        W::set_duty_cycle(0),
    ];
    let enable = vec![P::set(Level::Low), P::set(Level::Low)];
    // The charge pump toggled high before the failed write was seen, then is held low.
    let pump = vec![P::set(Level::High), P::set(Level::Low)];
    let hw = mocked(vec![P::get(Level::Low)], enable, pwm, pump);
    let mut ctrl = Controller::new(hw, ControllerConfig::default()).unwrap();
    ctrl.tick(Micros(0));
    assert_eq!(ctrl.state(), State::Fault);
    assert!(ctrl.telemetry().faults.contains(Fault::SensorFault));
    assert!(!ctrl.telemetry().motor_enabled);
    ctrl.into_hardware().done();
}

#[test]
fn estop_pressed_at_boot_latches_and_keeps_motor_off() {
    let estop = vec![P::get(Level::High), P::get(Level::High)];
    let enable = vec![P::set(Level::Low), P::set(Level::Low)];
    let pwm = vec![W::set_duty_cycle(0), W::set_duty_cycle(0)];
    let pump = vec![P::set(Level::Low), P::set(Level::Low)];
    let mut ctrl = Controller::new(
        mocked(estop, enable, pwm, pump),
        ControllerConfig::default(),
    )
    .unwrap();
    ctrl.tick(Micros(0));
    ctrl.tick(Micros(1000));
    assert_eq!(ctrl.state(), State::EStop);
    assert_eq!(
        ctrl.handle(needle_core::Command::Home),
        Err(needle_core::Rejected::Interlocked(
            needle_core::Interlock::EStopPressed
        ))
    );
    ctrl.into_hardware().done();
}

#[test]
fn charge_pump_toggles_every_healthy_tick_and_is_held_low_in_a_fault_tick() {
    let low = || P::get(Level::Low);
    let high = || P::get(Level::High);
    // Four healthy ticks, then the E-stop is pressed for two ticks.
    let estop = vec![low(), low(), low(), low(), high(), high()];
    let enable = (0..6).map(|_| P::set(Level::Low)).collect();
    let pwm = (0..6).map(|_| W::set_duty_cycle(0)).collect();
    let pump = [
        Level::High,
        Level::Low,
        Level::High,
        Level::Low,
        Level::Low,
        Level::Low,
    ]
    .into_iter()
    .map(P::set)
    .collect();
    let mut ctrl = Controller::new(
        mocked(estop, enable, pwm, pump),
        ControllerConfig::default(),
    )
    .unwrap();
    for t in 0..6 {
        ctrl.tick(Micros(t * 1000));
    }
    assert_eq!(ctrl.state(), State::EStop);
    ctrl.into_hardware().done();
}

#[test]
fn charge_pump_write_error_latches_sensor_fault_and_holds_it_low() {
    let pump = vec![
        P::set(Level::High).with_error(MockError::Io(std::io::ErrorKind::Other)),
        P::set(Level::Low),
    ];
    let enable = vec![P::set(Level::Low), P::set(Level::Low)];
    let pwm = vec![W::set_duty_cycle(0), W::set_duty_cycle(0)];
    let hw = mocked(vec![P::get(Level::Low)], enable, pwm, pump);
    let mut ctrl = Controller::new(hw, ControllerConfig::default()).unwrap();
    ctrl.tick(Micros(0));
    assert_eq!(ctrl.state(), State::Fault);
    assert!(ctrl.telemetry().faults.contains(Fault::SensorFault));
    ctrl.into_hardware().done();
}
