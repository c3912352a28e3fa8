//! The service configuration: the shipped files load, and every refusal names file, line and
//! key.

use std::path::{Path, PathBuf};

use needled::config::{self, Backend, ConfigError, LogFormat, Pull};

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config")
        .join(name)
}

fn refuse(text: &str) -> ConfigError {
    match config::parse(text, "test.toml") {
        Ok(c) => panic!("accepted:\n{text}\n{c:?}"),
        Err(e) => e,
    }
}

/// A valid `[hardware.linux]` section, for tests that change one thing in it.
const LINUX: &str = r#"
[hardware]
backend = "linux"

[hardware.linux]
motor_enable = 23
depth_step = 24
depth_dir = 25
home_switch = "!5"
cartridge_switch = "!6"
estop = 22
pedal = "!16"
stroke_sensor = 17
charge_pump = 27

[hardware.linux.adc.current]
input = 0
milli_per_volt = 2000

[hardware.linux.adc.temperature]
input = 1
milli_per_volt = 100000
offset_milli = -50000

[hardware.linux.adc.supply]
input = 2
milli_per_volt = 11000

[cartridge.trusted_keys]
"factory-2026-1" = "02213ee12f85ccd867f8f105f249ca027a2feb7555ffae66c9271d51e38b2e1c87"
"#;

#[test]
fn the_three_shipped_files_load_and_validate() {
    let default = config::load(&shipped("default.toml")).unwrap();
    assert_eq!(default.hardware.backend, Backend::Sim);
    assert!(default.service.bind.ip().is_loopback());
    assert!(default.service.data_dir.is_absolute());
    assert_eq!(
        default.controller_config(),
        needle_core::ControllerConfig::default()
    );
    // default.toml spells out the defaults: it must equal an empty file.
    let empty = config::parse("", "empty.toml").unwrap();
    assert_eq!(default, empty);

    let pi = config::load(&shipped("pi-rig.toml")).unwrap();
    assert_eq!(pi.hardware.backend, Backend::Rppal);
    assert_eq!(pi.service.data_dir, Path::new("/var/lib/needled"));
    assert_eq!(pi.service.log_format, LogFormat::Json);
    // People come from the ledger; a shipped file carries no token to forget to replace.
    assert!(pi.service.tokens.is_empty());
    let rppal = pi.hardware.rppal.as_ref().unwrap();
    assert_eq!(rppal.pwm_channel, 0);
    assert_eq!(rppal.adc.address, 0x48);
    assert_eq!(rppal.tag_eeprom_address, 0x50);

    let linux = config::load(&shipped("linux-rig.toml")).unwrap();
    assert_eq!(linux.hardware.backend, Backend::Linux);
    let l = linux.hardware.linux.as_ref().unwrap();
    assert_eq!(l.gpio_chip, Path::new("/dev/gpiochip0"));
    assert_eq!(l.pwm_chip, Path::new("/sys/class/pwm/pwmchip0"));
    assert_eq!(l.i2c_device, Path::new("/dev/i2c-1"));
}

#[test]
fn unknown_key_is_refused_with_file_line_and_key() {
    let e = refuse("[service]\nbind = \"127.0.0.1:7878\"\ntelemetry = 5\n");
    assert_eq!(e.origin, "test.toml");
    assert_eq!(e.line, Some(3));
    assert_eq!(e.key.as_deref(), Some("service.telemetry"));
    assert!(e.message.contains("unknown field `telemetry`"), "{e}");
    assert!(e
        .to_string()
        .starts_with("test.toml:3: key 'service.telemetry': unknown field"));
    assert_eq!(e.code(), "config_invalid");

    // An unknown section is named by its header.
    let e = refuse("[control]\nrate_hz = 1000\n\n[servce]\nbind = \"127.0.0.1:1\"\n");
    assert_eq!((e.line, e.key.as_deref()), (Some(4), Some("servce")));

    // Inside an array of tables and an inline table.
    let e = refuse("[[session.checklist]]\nid = \"a\"\ntext = \"A\"\nrequird = false\n");
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(4), Some("session.checklist[0].requird"))
    );
    let e = refuse("[areas]\nface = { max_depth_um = 1000, depth = 3 }\n");
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(2), Some("areas.face.depth"))
    );
}

#[test]
fn wrong_type_is_refused_with_line_and_key() {
    let e = refuse("[control]\n\nrate_hz = \"fast\"\n");
    assert_eq!(
        e.to_string(),
        "test.toml:3: key 'control.rate_hz': invalid type: string \"fast\", expected u32"
    );
    let e = refuse("[depth]\nmax_depth_um = -5\n");
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(2), Some("depth.max_depth_um"))
    );
    let e = refuse("[service]\nbind = \"localhost\"\n");
    assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("service.bind")));
    let e = refuse("[service]\nlog_format = \"xml\"\n");
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(2), Some("service.log_format"))
    );
}

#[test]
fn out_of_range_value_is_refused_naming_key_and_line() {
    let e = refuse("# comment\n[depth]\nsteps_per_mm = 400\nmax_depth_um = 9000\n");
    assert_eq!(
        e.to_string(),
        "test.toml:4: key 'depth.max_depth_um': expected 1 to 5000, got 9000"
    );
    let e = refuse("[control]\nrate_hz = 50\n");
    assert_eq!(
        e.to_string(),
        "test.toml:2: key 'control.rate_hz': expected 100 to 10000, got 50"
    );
    let e = refuse("[service]\ntelemetry_hz = 0\n");
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(2), Some("service.telemetry_hz"))
    );
}

#[test]
fn core_rules_are_reported_with_our_key_names() {
    // needle-core refuses rate_max above rate_ceiling; the error names the TOML key.
    let e = refuse("[stroke]\nrate_ceiling_hz = 160\nrate_max_hz = 200\n");
    assert_eq!(e.key.as_deref(), Some("stroke.rate_max_hz"));
    assert_eq!(e.line, Some(3));
    assert!(e.message.contains("at most rate_ceiling"), "{e}");
    // The tick period comes from control.rate_hz.
    let e = refuse("[control]\nrate_hz = 1000\nmax_tick_gap_ms = 1\n");
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(3), Some("control.max_tick_gap_ms"))
    );
}

#[test]
fn homing_backoff_not_above_backlash_is_refused_naming_the_key() {
    // Homing measures the lash within the back-off: a back-off no longer than the lash could
    // never leave the switch.
    let e = refuse("[depth]\nbacklash_um = 200\nhoming_backoff_um = 200\n");
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(3), Some("depth.homing_backoff_um"))
    );
    assert!(e.message.contains("more than backlash"), "{e}");
}

#[test]
fn area_deeper_than_the_device_maximum_is_refused() {
    let e = refuse("[depth]\nmax_depth_um = 2000\n\n[areas]\nface = { max_depth_um = 1500 }\nbody = { max_depth_um = 2500 }\n");
    assert_eq!(
        e.to_string(),
        "test.toml:6: key 'areas.body.max_depth_um': expected 1 to 2000 (depth.max_depth_um), got 2500"
    );
    // The default areas too: lowering the device maximum alone refuses the default body area.
    let e = refuse("[depth]\nmax_depth_um = 2000\n");
    assert_eq!(e.key.as_deref(), Some("areas.body.max_depth_um"));
    assert!(e.message.contains("default applies"), "{e}");
    // Listing [areas] replaces the defaults.
    let c = config::parse(
        "[areas.face]\nmax_depth_um = 500\ntime_limit_min = 30\n",
        "t",
    )
    .unwrap();
    assert_eq!(c.areas.len(), 1);
    assert_eq!(c.areas["face"].time_limit_min, Some(30));
}

#[test]
fn non_loopback_bind_serves_tls_and_takes_people_from_the_ledger() {
    // No tokens needed in the file: people live in the ledger, and off loopback it is TLS.
    let c = config::parse("[service]\nbind = \"0.0.0.0:7878\"\n", "t").unwrap();
    assert!(c.service.tls_enabled());
    let c = config::parse("[service]\nbind = \"127.0.0.1:7878\"\n", "t").unwrap();
    assert!(!c.service.tls_enabled());
    let c = config::parse("[service.tls]\non_loopback = true\n", "t").unwrap();
    assert!(c.service.tls_enabled());
    let e = refuse("[service.tls]\ncert_file = \"c.pem\"\n");
    assert_eq!(e.key.as_deref(), Some("service.tls"));
    let e = refuse("[service]\nallowed_hosts = [\"pen.local:7878/x\"]\n");
    assert_eq!(e.key.as_deref(), Some("service.allowed_hosts[0]"));

    let with_token = "[service]\nbind = \"0.0.0.0:7878\"\n\n[[service.tokens]]\ntoken = \"{TOKEN}\"\nrole = \"operator\"\nname = \"desk\"\n";
    let c = config::parse(&with_token.replace("{TOKEN}", "9f2c1e7a5b3d4c6e8a0b"), "t").unwrap();
    assert_eq!(c.service.tokens[0].name, "desk");
    assert!(c.validate().is_ok());

    // The shipped placeholders are not good enough off loopback.
    let e = refuse(&with_token.replace("{TOKEN}", "CHANGE-ME-operator-token-00001"));
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(5), Some("service.tokens[0].token"))
    );
}

#[test]
fn placeholder_tokens_are_refused_at_load_on_loopback_too() {
    let file = "[service]\nbind = \"127.0.0.1:7878\"\n\n[[service.tokens]]\ntoken = \"{TOKEN}\"\nrole = \"operator\"\nname = \"desk\"\n";
    for placeholder in [
        "CHANGE-ME-operator-token-00001",
        "change-me-please-0000000",
        "Change-Me-0000000000000000",
        "a-long-random-secret-string",
    ] {
        let e = refuse(&file.replace("{TOKEN}", placeholder));
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(5), Some("service.tokens[0].token")),
            "{placeholder}"
        );
        assert!(e.message.contains("placeholder"), "{e}");
        // Never echoed.
        assert!(!e.to_string().contains(placeholder), "{e}");
    }
    // Every example in the shipped files is a known placeholder.
    for name in [
        "default.toml",
        "pi-rig.toml",
        "linux-rig.toml",
        "link-rig.toml",
    ] {
        let text = std::fs::read_to_string(shipped(name)).unwrap();
        for line in text.lines() {
            if let Some(v) = line.trim_start_matches(['#', ' ']).strip_prefix("token = ") {
                let v = v.trim().trim_matches('"');
                assert!(config::is_placeholder_token(v), "{name}: {v}");
            }
        }
    }
}

#[test]
fn short_token_is_refused_without_echoing_it() {
    let e =
        refuse("[[service.tokens]]\ntoken = \"hunter2\"\nrole = \"technician\"\nname = \"t\"\n");
    assert_eq!(
        e.to_string(),
        "test.toml:2: key 'service.tokens[0].token': expected at least 16 characters, got 7"
    );
    let e = refuse(
        "[[service.tokens]]\ntoken = \"has a space in it ok\"\nrole = \"operator\"\nname = \"t\"\n",
    );
    assert_eq!(e.key.as_deref(), Some("service.tokens[0].token"));
    assert!(!e.to_string().contains("has a space"));
    let e = refuse(
        "[[service.tokens]]\ntoken = \"0123456789abcdef\"\nrole = \"admin\"\nname = \"t\"\n",
    );
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(3), Some("service.tokens[0].role"))
    );
    // Debug output never shows a token.
    let c = config::parse(
        "[[service.tokens]]\ntoken = \"0123456789abcdef-secret\"\nrole = \"operator\"\nname = \"t\"\n",
        "t",
    )
    .unwrap();
    assert!(!format!("{c:?}").contains("secret"));
}

#[test]
fn missing_file_names_the_path() {
    let e = config::load(Path::new("/nonexistent/needled.toml")).unwrap_err();
    assert_eq!(e.origin, "/nonexistent/needled.toml");
    assert_eq!((e.line, e.key.as_deref()), (None, None));
    assert!(
        e.to_string()
            .starts_with("/nonexistent/needled.toml: cannot read the configuration file: "),
        "{e}"
    );
}

#[test]
fn syntax_error_gives_the_line() {
    let e = refuse("[service]\nbind = \"127.0.0.1:7878\n");
    assert_eq!(e.line, Some(2));
    assert!(!e.message.contains('\n'));
}

#[test]
fn pins_parse_klipper_marks_and_refuse_conflicts() {
    let c = config::parse(LINUX, "t").unwrap();
    let l = c.hardware.linux.as_ref().unwrap();
    assert_eq!((l.home_switch.pin, l.home_switch.active_low), (5, true));
    assert_eq!((l.estop.pin, l.estop.active_low), (22, false));

    let c = config::parse(
        &LINUX.replace("stroke_sensor = 17", "stroke_sensor = \"!17\""),
        "t",
    )
    .unwrap();
    let s = c.hardware.linux.unwrap().stroke_sensor;
    assert_eq!((s.pin, s.active_low, s.pull), (17, true, Pull::None));

    let e = refuse(&LINUX.replace("pedal = \"!16\"", "pedal = \"!5\""));
    assert_eq!(e.key.as_deref(), Some("hardware.linux.pedal"));
    assert!(
        e.message
            .contains("already used by hardware.linux.home_switch"),
        "{e}"
    );

    let e = refuse(&LINUX.replace("estop = 22", "estop = \"^22\""));
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(11), Some("hardware.linux.estop"))
    );
    assert!(e.message.contains("not supported"), "{e}");

    let e = refuse(&LINUX.replace("estop = 22", "estop = \"GPIO22\""));
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(11), Some("hardware.linux.estop"))
    );

    let e = refuse("[hardware]\nbackend = \"rppal\"\n");
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(2), Some("hardware.backend"))
    );
}

#[test]
fn rppal_reserved_pins_are_refused() {
    let pi = std::fs::read_to_string(shipped("pi-rig.toml")).unwrap();
    let e = refuse(&pi.replace("depth_step = 24", "depth_step = 18"));
    assert_eq!(e.key.as_deref(), Some("hardware.rppal.depth_step"));
    assert!(e.message.contains("PWM"), "{e}");
    let e = refuse(&pi.replace("depth_dir = 25", "depth_dir = 3"));
    assert!(e.message.contains("I2C1"), "{e}");
    let e = refuse(&pi.replace("motor_enable = 23", "motor_enable = \"^23\""));
    assert!(e.message.contains("output"), "{e}");
}

#[test]
fn adc_calibration_that_could_never_trip_a_limit_is_refused() {
    // 200 mA/V over 4.096 V reads at most 819 mA: a 3000 mA limit could never trip.
    let e = refuse(&LINUX.replace("milli_per_volt = 2000", "milli_per_volt = 200"));
    assert_eq!(
        e.key.as_deref(),
        Some("hardware.linux.adc.current.milli_per_volt")
    );
    assert!(e.message.contains("safety.max_current_ma"), "{e}");
    let e = refuse(&LINUX.replace("input = 2", "input = 1"));
    assert_eq!(e.key.as_deref(), Some("hardware.linux.adc.supply.input"));
}

#[test]
fn controller_config_uses_units_from_the_key_names() {
    let c = config::parse(
        "[control]\nrate_hz = 2000\nhost_timeout_ms = 200\n[stroke]\nramp_time_ms = 120\n[safety]\nmax_temperature_c = 60\n[depth]\nmax_depth_um = 2500\n",
        "t",
    )
    .unwrap();
    let core = c.controller_config();
    assert_eq!(core.safety.tick_period.0, 500);
    assert_eq!(core.safety.host_timeout.0, 200_000);
    assert_eq!(core.stroke.ramp_time.0, 120_000);
    assert_eq!(core.safety.max_temperature.0, 60_000);
    assert_eq!(core.depth.max_depth.0, 2_500);
}

#[test]
fn only_the_sim_may_trust_the_test_factory_key() {
    // The sim defaults trust it.
    let sim = config::parse("", "t").unwrap();
    assert!(sim.cartridge.trusts_test_key());
    assert!(sim.cartridge.chip_required);
    // The shipped rig examples trust another key and start.
    for rig in ["pi-rig.toml", "linux-rig.toml", "link-rig.toml"] {
        let c = config::load(&shipped(rig)).unwrap();
        assert!(!c.cartridge.trusts_test_key(), "{rig}");
    }
    // A rig that trusts the test key, under its own id or another, is refused.
    let test_pub = "039821883714d4a37e633966865f90c1b9efadf79c595d0dd595c242ab52be22f7";
    for (rig, text) in [
        ("linux", LINUX.to_owned()),
        (
            "pi",
            std::fs::read_to_string(shipped("pi-rig.toml")).unwrap(),
        ),
    ] {
        for line in [
            format!("\"test-factory-1\" = \"{test_pub}\""),
            format!("\"renamed-1\" = \"{test_pub}\""),
        ] {
            let text = text.replace(
                "\"factory-2026-1\" = \"02213ee12f85ccd867f8f105f249ca027a2feb7555ffae66c9271d51e38b2e1c87\"",
                &line,
            );
            let e = refuse(&text).to_string();
            assert!(e.contains("cartridge.trusted_keys"), "{rig}: {e}");
            assert!(e.contains("test factory key"), "{rig}: {e}");
        }
    }
    // The published key's bytes are the test factory key's.
    assert_eq!(
        test_pub,
        hex::encode(needled::cartridge::test_factory_key().public_key())
    );
}

#[test]
fn a_bad_trusted_key_or_key_id_is_a_config_error_naming_it() {
    for (text, key) in [
        ("[cartridge.trusted_keys]\n\"k-1\" = \"zz\"\n", "cartridge.trusted_keys.k-1"),
        ("[cartridge.trusted_keys]\n\"k-1\" = \"02aa\"\n", "cartridge.trusted_keys.k-1"),
        ("[cartridge.trusted_keys]\n\"bad id\" = \"039821883714d4a37e633966865f90c1b9efadf79c595d0dd595c242ab52be22f7\"\n", "cartridge.trusted_keys.bad id"),
    ] {
        let e = refuse(text).to_string();
        assert!(e.contains(key), "{e}");
    }
}

#[test]
fn charge_pump_pin_is_required_and_checked_like_every_output() {
    let e = refuse(&LINUX.replace("charge_pump = 27\n", ""));
    assert!(e.message.contains("charge_pump"), "{e}");
    let e = refuse(&LINUX.replace("charge_pump = 27", "charge_pump = 23"));
    assert_eq!(e.key.as_deref(), Some("hardware.linux.charge_pump"));
    assert!(
        e.message
            .contains("already used by hardware.linux.motor_enable"),
        "{e}"
    );
    let pi = std::fs::read_to_string(shipped("pi-rig.toml")).unwrap();
    let e = refuse(&pi.replace("charge_pump = 27", "charge_pump = \"^27\""));
    assert_eq!(e.key.as_deref(), Some("hardware.rppal.charge_pump"));
    assert!(e.message.contains("output"), "{e}");
}

#[test]
fn cartridge_chip_selects_the_atecc608_and_its_slots_are_checked() {
    use needled::config::{Atecc608Config, CartridgeChipKind};
    let pi = std::fs::read_to_string(shipped("pi-rig.toml")).unwrap();
    let shipped_pi = config::parse(&pi, "pi-rig.toml").unwrap();
    let r = shipped_pi.hardware.rppal.as_ref().unwrap();
    assert_eq!(r.cartridge_chip, CartridgeChipKind::Eeprom);
    assert_eq!(r.atecc608, Atecc608Config::default());
    let chip = pi.replace(
        "cartridge_chip = \"eeprom\"",
        "cartridge_chip = \"atecc608\"",
    );
    let c = config::parse(&chip.replace("counter = 0", "counter = 1"), "t").unwrap();
    let r = c.hardware.rppal.as_ref().unwrap();
    assert_eq!(r.cartridge_chip, CartridgeChipKind::Atecc608);
    assert_eq!(r.atecc608.counter, 1);
    let e = refuse(&chip.replace(
        "cartridge_chip = \"atecc608\"",
        "cartridge_chip = \"atecc508\"",
    ));
    assert_eq!(e.key.as_deref(), Some("hardware.rppal.cartridge_chip"));
    for (from, to, key, says) in [
        ("tag_slot = 8", "tag_slot = 9", "tag_slot", "only slot 8"),
        ("key_slot = 0", "key_slot = 8", "key_slot", "tag slot"),
        (
            "key_slot = 0",
            "key_slot = 16",
            "key_slot",
            "expected 0 to 15",
        ),
        ("counter = 0", "counter = 2", "counter", ""),
        (
            "i2c_address = 0x60",
            "i2c_address = 0x48",
            "i2c_address",
            "ADC",
        ),
        (
            "i2c_address = 0x60",
            "i2c_address = 0x80",
            "i2c_address",
            "",
        ),
    ] {
        let e = refuse(&chip.replace(from, to));
        assert_eq!(
            e.key.as_deref(),
            Some(format!("hardware.rppal.atecc608.{key}").as_str()),
            "{to}: {e}"
        );
        assert!(e.message.contains(says), "{to}: {e}");
    }
    // linux-rig.toml has the same keys.
    let linux = std::fs::read_to_string(shipped("linux-rig.toml")).unwrap();
    let e = refuse(&linux.replace("tag_slot = 8", "tag_slot = 3"));
    assert_eq!(e.key.as_deref(), Some("hardware.linux.atecc608.tag_slot"));
}

#[test]
fn hardware_only_load_names_file_line_and_key() {
    // `needled --safe-outputs` reads only [hardware], with the same file:line:key errors.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("needled.toml");
    let linux = std::fs::read_to_string(shipped("linux-rig.toml")).unwrap();
    let broken = linux.replace("estop = 22", "estop = \"GPIO22\"");
    let line = broken.lines().position(|l| l.contains("GPIO22")).unwrap() + 1;
    std::fs::write(&path, &broken).unwrap();
    let e = config::load_hardware(&path).unwrap_err();
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(line), Some("hardware.linux.estop"))
    );
    assert!(e.message.contains("got \"GPIO22\""), "{e}");

    // Another section's refusal does not stop it.
    std::fs::write(&path, format!("{linux}\n[depth]\nmax_depth_um = 9000\n")).unwrap();
    let hardware = config::load_hardware(&path).unwrap();
    assert_eq!(hardware.backend, Backend::Linux);

    std::fs::write(&path, "# rig\n[hardware]\nbackend = \"linux\"\n").unwrap();
    let e = config::load_hardware(&path).unwrap_err();
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(3), Some("hardware.backend"))
    );
    assert!(e.message.contains("[hardware.linux]"), "{e}");
}

/// The CPUs present, as `control.cpu` is validated against them.
fn online_cpus() -> Vec<u32> {
    needled::realtime::online_cpus().expect("/sys/devices/system/cpu/online")
}

#[test]
fn control_cpu_not_present_is_refused_with_file_line_and_key() {
    let cpus = online_cpus();
    let absent = cpus.iter().max().copied().unwrap_or(0) + 1;
    let e = refuse(&format!("[control]\nrate_hz = 1000\ncpu = {absent}\n"));
    assert_eq!(
        e.to_string(),
        format!(
            "test.toml:3: key 'control.cpu': expected one of the CPUs present ({}), got {absent}",
            needled::realtime::format_cpu_list(&cpus)
        )
    );
    let e = refuse("[control]\ncpu = -1\n");
    assert_eq!(e.line, Some(2));
    assert_eq!(e.key.as_deref(), Some("control.cpu"));
}

#[test]
fn control_cpu_present_is_accepted_and_absent_means_not_pinned() {
    assert_eq!(config::parse("", "test.toml").unwrap().control.cpu, None);
    let cpus = online_cpus();
    let last = *cpus.last().expect("a CPU");
    let parsed = config::parse(&format!("[control]\ncpu = {last}\n"), "test.toml");
    if cpus.len() >= 2 {
        assert_eq!(parsed.unwrap().control.cpu, Some(last));
    } else {
        let e = parsed.unwrap_err();
        assert!(e.to_string().contains("this machine has one CPU"), "{e}");
    }
}

#[test]
fn require_memory_lock_is_off_by_default() {
    let c = config::parse("", "test.toml").unwrap();
    assert!(!c.control.require_memory_lock);
    let c = config::parse("[control]\nrequire_memory_lock = true\n", "test.toml").unwrap();
    assert!(c.control.require_memory_lock);
}

/// `link.sync_ms` is the clock probe period alone (the pen's dead-man is fed by accepted
/// commands, not probes): a probe a second at the slowest, and not 0.
#[test]
fn link_sync_period_is_a_clock_probe_rate_not_tied_to_the_dead_man() {
    let link = |sync_ms: u32| {
        format!(
            "[hardware]\nbackend = \"link\"\n[link]\ndevice = \"/tmp/pen.tty\"\nsync_ms = {sync_ms}\n\
             [cartridge.trusted_keys]\n\"factory-2026-1\" = \"02213ee12f85ccd867f8f105f249ca027a2feb7555ffae66c9271d51e38b2e1c87\"\n"
        )
    };
    // Longer than half the 100 ms dead-man: accepted, it has nothing to do with it.
    let c = config::parse(&link(500), "test.toml").unwrap();
    assert_eq!(c.link.sync_ms, 500);
    for bad in [0, 1_001] {
        let e = refuse(&link(bad));
        assert_eq!(e.key.as_deref(), Some("link.sync_ms"), "{e}");
    }
}
