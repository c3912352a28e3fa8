//! Unit tests of the configuration module: defaults, pin strings, the core's field names
//! and where keys are found in the document. The file-level behaviour is tested in
//! `tests/config.rs`.

use needle_core::config::ControllerConfig;

use super::spans::{KeyLines, Located};
use super::validate::core_field_key;
use super::*;

#[test]
fn empty_file_gives_the_defaults_and_the_core_defaults() {
    let config = parse("", "empty.toml").unwrap();
    let mut expected = Config::default();
    expected.service.data_dir = std::env::current_dir().unwrap().join("data");
    assert_eq!(config, expected);
    assert_eq!(config.controller_config(), ControllerConfig::default());
    assert_eq!(config.areas.len(), 7);
    assert!(config
        .session
        .checklist
        .iter()
        .any(|c| c.id == "numbing" && !c.required));
}

#[test]
fn pin_strings_parse_klipper_style() {
    assert_eq!("17".parse::<PinSpec>(), Ok(PinSpec::plain(17)));
    let p: PinSpec = "^!4".parse().unwrap();
    assert_eq!((p.pin, p.active_low, p.pull), (4, true, Pull::Up));
    let p: PinSpec = "!~ 5".parse().unwrap();
    assert_eq!((p.pin, p.active_low, p.pull), (5, true, Pull::Down));
    assert_eq!(p.to_string(), "~!5");
    for bad in ["", "!", "!!17", "^~17", "GPIO17", "-3", "17!", "1 7"] {
        assert!(bad.parse::<PinSpec>().is_err(), "{bad:?} accepted");
    }
}

#[test]
fn every_core_field_maps_to_an_existing_key() {
    // A core field name that does not map to a key of ours would point operators at
    // nothing; keep this list in step with ControllerConfig::validate.
    let text = include_str!("../../../../config/default.toml");
    let index = KeyLines::of(text);
    for field in [
        "stroke.edges_per_stroke",
        "stroke.rate_min",
        "stroke.rate_max",
        "stroke.rate_ceiling",
        "stroke.ramp_time",
        "stroke.max_duty",
        "stroke.gains",
        "stroke.stall_ratio_permille",
        "stroke.stall_window",
        "depth.steps_per_mm",
        "depth.max_depth",
        "depth.backlash",
        "depth.speed_um_per_s",
        "depth.running_speed_um_per_s",
        "depth.homing_fast_um_per_s",
        "depth.homing_slow_um_per_s",
        "depth.accel_um_per_s2",
        "depth.homing_backoff",
        "depth.homing_travel_limit",
        "depth.home_switch_window",
        "depth.max_steps_per_tick",
        "safety.tick_period",
        "safety.max_tick_gap",
        "safety.host_timeout",
        "safety.max_current",
        "safety.temperature_hysteresis",
        "safety.min_supply",
    ] {
        let key = core_field_key(field);
        assert!(
            index.locate(&key).set,
            "{field} -> {key} is not in default.toml"
        );
    }
}

#[test]
fn core_validation_errors_name_our_key_and_line() {
    let text = "[depth]\nsteps_per_mm = 2000\n";
    let err = parse(text, "t.toml").unwrap_err();
    assert_eq!(err.key.as_deref(), Some("depth.speed_um_per_s"));
    // The key is not in the file: the error points at its section and says so.
    assert_eq!(err.line, Some(2));
    assert!(err.message.contains("default applies"), "{err}");
}

#[test]
fn index_locates_keys_in_every_toml_form() {
    let text = "a.b = 1\n[hardware.rppal]\nestop = \"!17\"\n[service]\ntokens = [ { token = \"x\" },\n  { token = \"y\" } ]\n[[session.checklist]]\nid = \"a\"\n[[session.checklist]]\nid = \"b\"\n[areas]\nface = { max_depth_um = 1500 }\n";
    let index = KeyLines::of(text);
    let line = |key: &str| index.locate(key).line;
    assert_eq!(line("a.b"), Some(1));
    assert_eq!(line("hardware.rppal.estop"), Some(3));
    assert_eq!(line("service.tokens[1].token"), Some(6));
    assert_eq!(line("session.checklist[1].id"), Some(10));
    assert_eq!(line("areas.face.max_depth_um"), Some(12));
    assert_eq!(line("areas.face"), Some(12));
    assert_eq!(
        index.locate("areas.face.time_limit_min"),
        Located {
            line: Some(12),
            set: false
        }
    );
    // An unknown key's error names the key path, on the key's line.
    let err = parse("a.b = 1\n", "t.toml").unwrap_err();
    assert_eq!((err.line, err.key.as_deref()), (Some(1), Some("a")));
    let err = parse("[hardware.rppal]\nestopp = \"!17\"\n", "t.toml").unwrap_err();
    assert_eq!(
        (err.line, err.key.as_deref()),
        (Some(2), Some("hardware.rppal.estopp"))
    );
    // A syntax error on a table header line names the table.
    let err = parse("[service]\n[hardware.rppal\nestop = 17\n", "t.toml").unwrap_err();
    assert_eq!(
        (err.line, err.key.as_deref()),
        (Some(2), Some("hardware.rppal"))
    );
}
