//! The order needled starts in: the hardware first, at its safe levels, and only then the
//! records (ledger, tokens) and the factory keys the tags are checked against.
//!
//! A restart after a SIGKILL finds the outputs where the dead process left them, possibly the
//! motor enabled at a running duty. Opening the hardware drives them safe (every backend
//! claims its outputs at logical low, the motor enable first, and the PWM at duty 0), so a
//! restart that then fails on an unreadable ledger or key, and even one killed again at once,
//! leaves the pins safe. systemd's `ExecStopPost=needled --safe-outputs` covers every exit
//! after that.

use std::path::PathBuf;

use crate::auth::Tokens;
use crate::cartridge::TrustStore;
use crate::config::Config;
use crate::store::Store;

/// What needled opens from its data directory.
pub struct Records {
    /// The ledger (`data_dir/needled.db`).
    pub store: Store,
    /// The factory public keys cartridge tags are checked against (`[cartridge]`).
    pub trust: TrustStore,
    /// The API tokens.
    pub tokens: Tokens,
    /// The file generated tokens are kept in, when the configuration names none.
    pub token_file: Option<PathBuf>,
}

impl Records {
    /// Creates the data directory if missing and opens the ledger and the tokens, each error
    /// naming the file, and builds the trust store of `[cartridge]`.
    pub fn open(config: &Config) -> Result<Self, String> {
        let data_dir = &config.service.data_dir;
        std::fs::create_dir_all(data_dir)
            .map_err(|e| format!("cannot create data dir {}: {e}", data_dir.display()))?;
        let store_path = data_dir.join("needled.db");
        let store = Store::open(&store_path)
            .map_err(|e| format!("cannot open ledger {}: {e}", store_path.display()))?;
        let trust = config
            .cartridge
            .trust_store()
            .map_err(|(key, reason)| format!("{key}: {reason}"))?;
        let (tokens, token_file) = if config.service.tokens.is_empty() {
            let (t, path) = Tokens::load_or_generate(data_dir)
                .map_err(|e| format!("tokens in {}: {e}", data_dir.display()))?;
            (t, Some(path))
        } else {
            (Tokens::from_config(&config.service.tokens), None)
        };
        Ok(Self {
            store,
            trust,
            tokens,
            token_file,
        })
    }
}

/// Opens the hardware with `open_hardware`, which must leave every output at its safe level,
/// and only then the [`Records`]. A failure to open the records drops the hardware (a clean
/// exit), but its outputs were safe from the moment it was opened.
pub fn open<H>(
    config: &Config,
    open_hardware: impl FnOnce(&Config) -> Result<H, String>,
) -> Result<(H, Records), String> {
    let hardware = open_hardware(config)?;
    let records = Records::open(config)?;
    Ok((hardware, records))
}

#[cfg(test)]
mod tests {
    use std::mem::ManuallyDrop;
    use std::time::Duration;

    use embedded_hal::digital::OutputPin;
    use embedded_hal::pwm::SetDutyCycle;

    use super::*;
    use crate::hal::pins::{electrical_level, Inverted};
    use crate::hal::sysfs_pwm::SysfsPwm;

    /// An enable line whose electrical level a test can read after the "process" is gone.
    #[derive(Debug, Clone, Default)]
    struct Line(std::sync::Arc<std::sync::atomic::AtomicBool>);

    impl embedded_hal::digital::ErrorType for Line {
        type Error = std::convert::Infallible;
    }

    impl OutputPin for Line {
        fn set_low(&mut self) -> Result<(), Self::Error> {
            self.0.store(false, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
        fn set_high(&mut self) -> Result<(), Self::Error> {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
    }

    fn read(path: &std::path::Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn failed_start_on_an_unopenable_data_dir_has_already_driven_the_outputs_safe() {
        // What a SIGKILLed needled left: the motor enabled (an active-low enable, so
        // electrically low) and the PWM channel running at 60 %.
        let pwm_root = tempfile::tempdir().unwrap();
        let dir = pwm_root.path().join("pwm0");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("period"), "50000").unwrap();
        std::fs::write(dir.join("duty_cycle"), "30000").unwrap();
        std::fs::write(dir.join("enable"), "1").unwrap();
        let enable_line = Line::default();

        // A data dir that cannot be created: its parent is a regular file.
        let data = tempfile::tempdir().unwrap();
        let file = data.path().join("not-a-dir");
        std::fs::write(&file, "").unwrap();
        let mut config = Config::default();
        config.service.data_dir = file.join("data");

        let result = open(&config, |_| {
            // The backends' way: the enable line claimed at the electrical level of logical
            // low, then the PWM opened at duty 0.
            let mut line = enable_line.clone();
            if electrical_level(false, true) {
                let _ = line.set_high();
            }
            let enable = Inverted::new(line, true);
            let pwm = SysfsPwm::open(pwm_root.path(), 0, 20_000, Duration::ZERO)
                .map_err(|e| e.to_string())?;
            // Killed later without Drop: nothing may depend on drop to be safe.
            Ok((enable, ManuallyDrop::new(pwm)))
        });
        let err = result.err().expect("the start fails");
        assert!(err.contains("cannot create data dir"), "{err}");
        assert_eq!(read(&dir.join("duty_cycle")), "0");
        // Electrically high on an active-low enable: the driver is disabled.
        assert!(enable_line.0.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn records_are_not_opened_when_the_hardware_fails() {
        let data = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.service.data_dir = data.path().join("data");
        let result: Result<((), Records), String> =
            open(&config, |_| Err("cannot open /dev/gpiochip0".into()));
        assert_eq!(result.err().as_deref(), Some("cannot open /dev/gpiochip0"));
        assert!(!config.service.data_dir.exists());
    }

    #[test]
    fn a_start_that_opens_everything_returns_the_hardware_with_its_pwm_at_zero() {
        let pwm_root = tempfile::tempdir().unwrap();
        let dir = pwm_root.path().join("pwm0");
        std::fs::create_dir(&dir).unwrap();
        for f in ["period", "duty_cycle", "enable"] {
            std::fs::write(dir.join(f), "0").unwrap();
        }
        let data = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.service.data_dir = data.path().join("data");
        let (pwm, records) = open(&config, |_| {
            SysfsPwm::open(pwm_root.path(), 0, 20_000, Duration::ZERO).map_err(|e| e.to_string())
        })
        .unwrap();
        assert_eq!(pwm.max_duty_cycle(), 10_000);
        assert_eq!(read(&dir.join("duty_cycle")), "0");
        assert!(records.token_file.is_some());
        assert!(config.service.data_dir.join("needled.db").exists());
    }
}
