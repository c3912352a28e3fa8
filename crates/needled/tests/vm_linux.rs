//! The `linux` backend against a real kernel: run inside the VM test rig (vm/README.md),
//! where gpio-sim, the rig's I2C adapter (`needle_i2c_rig`) and PWM chip (`needle_pwm_rig`)
//! are loaded. Outside the guest (no `NEEDLE_VM_GUEST=1`) every test prints that it was
//! skipped and passes; `scripts/vm-test.sh` runs them in the guest, where CI requires them.
//!
//! Each test makes its own gpio-sim chip through configfs, opens the backend on it exactly as
//! needled does (`config/linux-rig.toml`, with the rig's device paths), and checks what the
//! kernel saw through gpio-sim's sysfs files and the rig modules' read-back.
#![cfg(feature = "linux")]

mod vm_rig;

use std::time::{Duration, Instant};

use embedded_hal::digital::{InputPin, OutputPin};
use embedded_hal::pwm::SetDutyCycle;
use needle_core::hal::{Analog, Hardware, StrokeSensor};
use needle_core::protocol::{Fault, State};
use needle_core::units::Micros;
use needled::config::Config;
use needled::control::monotonic_now;
use needled::hal::linux::{self, LinuxRig};
use needled::hal::CartridgeChip;
use vm_rig::{
    i2c_dev_of_rig, in_guest, pwm_applied, pwm_chip_of_rig, write, SimChip, I2C_PARAMS, RIG_TOML,
};

/// linux-rig.toml with the rig's device paths, and `edit` applied to the text.
fn rig_config(chip: &SimChip, edit: impl Fn(String) -> String) -> Config {
    let text = RIG_TOML
        .replace("/dev/gpiochip0", chip.dev.to_str().unwrap())
        .replace(
            "/sys/class/pwm/pwmchip0",
            pwm_chip_of_rig().to_str().unwrap(),
        )
        .replace("/dev/i2c-1", i2c_dev_of_rig().to_str().unwrap())
        // TCG is slow: an ADC reading a little older than 50 ms is no failure of the backend.
        .replace("max_age_ms = 50", "max_age_ms = 1000")
        .replace("realtime_priority = true", "realtime_priority = false");
    needled::config::parse(&edit(text), "vm linux-rig.toml").expect("rig config")
}

fn open(config: &Config) -> LinuxRig {
    linux::open(config).unwrap_or_else(|e| panic!("open the linux backend: {e}"))
}

/// The outputs of linux-rig.toml: part name and line. A new output (the charge-pump pin) is
/// one more entry here and one more arm in [`set_output`].
const OUTPUTS: &[(&str, u32)] = &[
    ("motor_enable", 23),
    ("depth_step", 24),
    ("depth_dir", 25),
    ("charge_pump", 27),
];

fn set_output(rig: &mut LinuxRig, name: &str, high: bool) {
    let p = rig.parts();
    let r = match (name, high) {
        ("motor_enable", true) => p.motor_enable.set_high(),
        ("motor_enable", false) => p.motor_enable.set_low(),
        ("depth_step", true) => p.depth_step.set_high(),
        ("depth_step", false) => p.depth_step.set_low(),
        ("depth_dir", true) => p.depth_dir.set_high(),
        ("depth_dir", false) => p.depth_dir.set_low(),
        ("charge_pump", true) => p.charge_pump.set_high(),
        ("charge_pump", false) => p.charge_pump.set_low(),
        _ => panic!("unknown output {name}"),
    };
    r.unwrap_or_else(|e| panic!("{name} set {high}: {e:?}"));
}

/// Inputs of linux-rig.toml: part name, line, active-low.
const INPUTS: &[(&str, u32, bool)] = &[
    ("home_switch", 5, true),
    ("cartridge_switch", 6, true),
    ("estop", 22, false),
    ("pedal", 16, true),
];

fn input_is_high(rig: &mut LinuxRig, name: &str) -> bool {
    let p = rig.parts();
    let r = match name {
        "home_switch" => p.home_switch.is_high(),
        "cartridge_switch" => p.cartridge_switch.is_high(),
        "estop" => p.estop.is_high(),
        "pedal" => p.pedal.is_high(),
        _ => panic!("unknown input {name}"),
    };
    r.unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

#[test]
fn outputs_open_at_their_safe_level_and_read_back_from_the_sim() {
    if !in_guest("outputs_open_at_their_safe_level_and_read_back_from_the_sim") {
        return;
    }
    let chip = SimChip::new(32);
    let mut rig = open(&rig_config(&chip, |t| t));
    for &(name, line) in OUTPUTS {
        assert_eq!(chip.value(line), 0, "{name} (line {line}) after open");
        set_output(&mut rig, name, true);
        assert_eq!(chip.value(line), 1, "{name} (line {line}) set high");
        set_output(&mut rig, name, false);
        assert_eq!(chip.value(line), 0, "{name} (line {line}) set low");
    }
}

#[test]
fn active_low_outputs_are_inverted_on_the_line() {
    if !in_guest("active_low_outputs_are_inverted_on_the_line") {
        return;
    }
    let chip = SimChip::new(32);
    let config = rig_config(&chip, |t| {
        t.replace("motor_enable = 23", "motor_enable = \"!23\"")
            .replace("depth_dir = 25", "depth_dir = \"!25\"")
    });
    let mut rig = open(&config);
    // Logical low (the safe level) is electrical high on an active-low line, from the request.
    assert_eq!(chip.value(23), 1, "active-low enable opens high (off)");
    assert_eq!(chip.value(25), 1);
    set_output(&mut rig, "motor_enable", true);
    assert_eq!(chip.value(23), 0);
    set_output(&mut rig, "depth_dir", true);
    assert_eq!(chip.value(25), 0);
    set_output(&mut rig, "motor_enable", false);
    assert_eq!(chip.value(23), 1);
}

#[test]
fn inputs_follow_the_pull_with_active_low_inversion() {
    if !in_guest("inputs_follow_the_pull_with_active_low_inversion") {
        return;
    }
    let chip = SimChip::new(32);
    let mut rig = open(&rig_config(&chip, |t| t));
    for &(name, line, active_low) in INPUTS {
        for up in [true, false, true] {
            chip.pull(line, up);
            assert_eq!(
                input_is_high(&mut rig, name),
                up != active_low,
                "{name} (line {line}, active_low {active_low}) pulled {}",
                if up { "up" } else { "down" }
            );
        }
    }
}

#[test]
fn stroke_edges_arrive_with_kernel_timestamps_and_their_periods() {
    if !in_guest("stroke_edges_arrive_with_kernel_timestamps_and_their_periods") {
        return;
    }
    let chip = SimChip::new(32);
    let mut rig = open(&rig_config(&chip, |t| t));
    let line = 17; // stroke_sensor, active-high: rising edges count
    chip.pull(line, false);
    // Rising edges at about 20 ms; the time of each write is bracketed by CLOCK_MONOTONIC
    // readings, and the kernel's timestamp must fall inside the bracket.
    let mut brackets: Vec<(Micros, Micros)> = Vec::new();
    let start = Instant::now();
    for i in 0..12u32 {
        let due = Duration::from_millis(20 * u64::from(i + 1));
        std::thread::sleep(due.saturating_sub(start.elapsed()));
        let before = monotonic_now();
        chip.pull(line, true);
        let after = monotonic_now();
        brackets.push((before, after));
        std::thread::sleep(Duration::from_millis(5));
        chip.pull(line, false);
    }
    std::thread::sleep(Duration::from_millis(100));
    let sample = rig.parts().stroke.sample().expect("stroke sample");
    assert_eq!(sample.edges, 12, "{sample:?}");
    let last = sample.last_edge.expect("last edge");
    let (b, a) = brackets[11];
    assert!(
        b <= last && last <= a,
        "last edge at {last:?} outside its write {b:?}..{a:?}: not CLOCK_MONOTONIC?"
    );
    let period = sample.last_period.expect("period");
    let (pb, pa) = brackets[10];
    assert!(
        b.since(pa) <= period && period <= a.since(pb),
        "period {period:?} outside {:?}..{:?}",
        b.since(pa),
        a.since(pb)
    );
    println!(
        "stroke: {} edges, last period {} us (writes 20 ms apart)",
        sample.edges, period.0
    );
}

#[test]
fn sysfs_pwm_sequence_reaches_the_pwm_chip() {
    if !in_guest("sysfs_pwm_sequence_reaches_the_pwm_chip") {
        return;
    }
    let chip = SimChip::new(32);
    let config = rig_config(&chip, |t| t);
    let (_, _, _, applies_before) = pwm_applied(0);
    let mut rig = open(&config);
    let pwm = pwm_chip_of_rig();
    assert!(pwm.join("pwm0/enable").exists(), "pwm0 exported");
    let (period, duty, enabled, applies) = pwm_applied(0);
    assert_eq!(
        (period, duty, enabled),
        (50_000, 0, true),
        "20 kHz, off, enabled"
    );
    assert!(applies > applies_before);
    let max = rig.parts().motor_pwm.max_duty_cycle();
    rig.parts().motor_pwm.set_duty_cycle(max / 2).unwrap();
    assert_eq!(pwm_applied(0).1, 25_000, "half duty");
    rig.parts().motor_pwm.set_duty_cycle(max).unwrap();
    assert_eq!(pwm_applied(0).1, 50_000, "full duty");
    drop(rig);
    let (_, duty, enabled, _) = pwm_applied(0);
    assert_eq!(
        (duty, enabled),
        (0, false),
        "dropping the rig turns the PWM off"
    );
}

#[test]
fn adc_reads_the_emulated_ads1115_over_i2c_dev() {
    if !in_guest("adc_reads_the_emulated_ads1115_over_i2c_dev") {
        return;
    }
    // AIN0 1.0 V (current 2000 mA), AIN1 0.75 V (25.000 °C), AIN2 2.0 V (supply 22000 mV).
    write(format!("{I2C_PARAMS}/adc_uv"), "1000000,750000,2000000,0");
    let chip = SimChip::new(32);
    let mut rig = open(&rig_config(&chip, |t| t));
    let close = |got: i32, want: i32, what: &str| {
        assert!(
            (got - want).abs() <= want.abs() / 500 + 2,
            "{what}: {got}, expected {want}"
        );
    };
    close(
        rig.parts().current.read_milli().unwrap(),
        2000,
        "current mA",
    );
    close(
        rig.parts().temperature.read_milli().unwrap(),
        25_000,
        "temperature m°C",
    );
    close(
        rig.parts().supply.read_milli().unwrap(),
        22_000,
        "supply mV",
    );
    // A change reaches the scanner.
    write(format!("{I2C_PARAMS}/adc_uv"), "1500000,750000,2000000,0");
    let start = Instant::now();
    while rig.parts().current.read_milli().unwrap() < 2900 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "new reading never came"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn tag_is_read_over_i2c_dev_and_absent_when_it_does_not_acknowledge() {
    if !in_guest("tag_is_read_over_i2c_dev_and_absent_when_it_does_not_acknowledge") {
        return;
    }
    use embedded_hal::i2c::I2c;
    let chip = SimChip::new(32);
    let config = rig_config(&chip, |t| t);
    // The whole EEPROM the reader reads (a 24C02's 256 bytes since tag format v2), so every
    // byte read back is one written here.
    let image: Vec<u8> = (0..needled::cartridge::TAG_CAPACITY as u32)
        .map(|i| (i * 7 + 3) as u8)
        .collect();
    write(format!("{I2C_PARAMS}/tag_present"), "1");
    // Program the EEPROM through i2c-dev, 16 bytes per write as a 24C02's page.
    let mut bus = linux_embedded_hal::I2cdev::new(i2c_dev_of_rig()).unwrap();
    for (i, page) in image.chunks(16).enumerate() {
        let mut msg = vec![(i * 16) as u8];
        msg.extend_from_slice(page);
        bus.write(0x50u8, &msg).unwrap();
    }
    let mut reader = linux::open_tag_reader(&config).unwrap();
    assert_eq!(reader.read_tag().unwrap(), Some(image));
    write(format!("{I2C_PARAMS}/tag_present"), "0");
    assert_eq!(
        reader.read_tag().unwrap(),
        None,
        "no acknowledge = no cartridge"
    );
    write(format!("{I2C_PARAMS}/tag_present"), "1");
}

#[test]
fn gpio_chip_removed_while_running_is_a_sensor_fault_with_pwm_off() {
    if !in_guest("gpio_chip_removed_while_running_is_a_sensor_fault_with_pwm_off") {
        return;
    }
    write(format!("{I2C_PARAMS}/adc_uv"), "500000,750000,2200000,0");
    let mut chip = SimChip::new(32);
    let config = rig_config(&chip, |t| t);
    let rig = open(&config);
    let mut controller =
        needle_core::controller::Controller::new(rig, config.controller_config()).unwrap();
    for _ in 0..20 {
        controller.tick(monotonic_now());
        std::thread::sleep(Duration::from_millis(1));
    }
    let before = controller.telemetry();
    assert!(
        !before.faults.contains(Fault::SensorFault),
        "no sensor fault before the chip goes: {before:?}"
    );
    chip.set_live(false);
    controller.tick(monotonic_now());
    let after = controller.telemetry();
    assert!(
        after.faults.contains(Fault::SensorFault),
        "chip removed: {after:?}"
    );
    assert!(
        matches!(after.state, State::Fault | State::EStop),
        "{after:?}"
    );
    let (_, duty, _, _) = pwm_applied(0);
    assert_eq!(duty, 0, "PWM off after the chip went");
    // Still faulted, still off, while ticking on.
    for _ in 0..10 {
        controller.tick(monotonic_now());
    }
    assert!(controller.telemetry().faults.contains(Fault::SensorFault));
    assert_eq!(pwm_applied(0).1, 0);
    chip.set_live(true);
}
