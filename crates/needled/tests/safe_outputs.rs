//! `needled --safe-outputs` as a real process: what systemd's `ExecStopPost=` runs after any
//! exit of the service. It needs no ledger, key or tokens, and names every output it could
//! not drive safe.

use std::path::Path;
use std::process::{Command, Output};

fn safe_outputs(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_needled"))
        .args(["--safe-outputs", "--config"])
        .arg(config)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn sim_backend_has_nothing_to_drive_exits_zero_and_opens_no_records() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("needled.toml");
    // A [service] section the service itself would refuse: the outputs come first.
    std::fs::write(
        &config,
        format!(
            "[service]\ndata_dir = \"{}\"\ntelemetry_hz = 0\n\n[hardware]\nbackend = \"sim\"\n",
            data.display()
        ),
    )
    .unwrap();
    let out = safe_outputs(&config);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text(&out.stdout).contains("no hardware outputs to drive"),
        "{out:?}"
    );
    assert!(!data.exists(), "--safe-outputs created the data dir");
}

#[test]
fn unreadable_configuration_exits_two_naming_the_file() {
    let out = safe_outputs(Path::new("/nonexistent/needled.toml"));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        text(&out.stderr).contains("/nonexistent/needled.toml"),
        "{out:?}"
    );
}

#[test]
fn backend_section_missing_exits_two() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("needled.toml");
    std::fs::write(&config, "[hardware]\nbackend = \"linux\"\n").unwrap();
    let out = safe_outputs(&config);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("[hardware.linux]"), "{out:?}");
}

/// linux-rig.toml with its GPIO chip and PWM chip moved.
fn linux_config(dir: &Path, gpio_chip: &str, pwm_chip: &Path) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/linux-rig.toml"
    ))
    .unwrap();
    let text = shipped
        .replace(
            "gpio_chip = \"/dev/gpiochip0\"",
            &format!("gpio_chip = \"{gpio_chip}\""),
        )
        .replace(
            "pwm_chip = \"/sys/class/pwm/pwmchip0\"",
            &format!("pwm_chip = \"{}\"", pwm_chip.display()),
        );
    assert_ne!(text, shipped);
    let path = dir.join("linux.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[cfg(feature = "linux")]
#[test]
fn linux_backend_turns_a_running_pwm_off_and_names_the_gpio_chip_it_could_not_open() {
    let dir = tempfile::tempdir().unwrap();
    // The PWM channel a SIGKILLed needled left running at 60 %.
    let pwm = dir.path().join("pwmchip0");
    std::fs::create_dir_all(pwm.join("pwm0")).unwrap();
    std::fs::write(pwm.join("pwm0/duty_cycle"), "30000").unwrap();
    std::fs::write(pwm.join("pwm0/enable"), "1").unwrap();
    let config = linux_config(dir.path(), "/nonexistent/gpiochip9", &pwm);

    let out = safe_outputs(&config);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(pwm.join("pwm0/duty_cycle")).unwrap(),
        "0"
    );
    assert_eq!(
        std::fs::read_to_string(pwm.join("pwm0/enable")).unwrap(),
        "0"
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("motor_pwm ("), "{stdout}");
    assert!(stdout.contains("duty 0, disabled"), "{stdout}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("NOT SAFE: could not drive motor_enable (/nonexistent/gpiochip9 line 23)"),
        "{stderr}"
    );
    assert!(stderr.contains("charge_pump"), "{stderr}");
}

#[cfg(not(feature = "linux"))]
#[test]
fn linux_backend_not_built_in_is_not_safe_and_says_how_to_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let config = linux_config(
        dir.path(),
        "/nonexistent/gpiochip9",
        Path::new("/nonexistent"),
    );
    let out = safe_outputs(&config);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stdout).contains("--features linux"), "{out:?}");
}
