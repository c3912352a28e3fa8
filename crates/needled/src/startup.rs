//! The order needled starts in: the hardware first, at its safe levels, and only then the
//! records (ledger, tokens) and the factory keys the tags are checked against.
//!
//! A restart after a SIGKILL finds the outputs where the dead process left them, possibly the
//! motor enabled at a running duty. Opening the hardware drives them safe (every backend
//! claims its outputs at logical low, the motor enable first, and the PWM at duty 0), so a
//! restart that then fails on an unreadable ledger or key, and even one killed again at once,
//! leaves the pins safe. systemd's `ExecStopPost=needled --safe-outputs` covers every exit
//! after that.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::auth::{Generated, Tokens};
use crate::cartridge::TrustStore;
use crate::config::Config;
use crate::store::{token_hash, Store};

/// Who the bootstrap people are recorded as created by.
pub const BOOTSTRAP_ACTOR: &str = "bootstrap";

/// What needled opens from its data directory.
pub struct Records {
    /// The ledger (`data_dir/needled.db`).
    pub store: Store,
    /// The factory public keys cartridge tags are checked against (`[cartridge]`).
    pub trust: TrustStore,
    /// The API tokens: the configured ones and the ledger's people.
    pub tokens: Tokens,
    /// The file the bootstrap tokens are kept in, if there is one.
    pub token_file: Option<PathBuf>,
}

/// Makes `dir` exist with mode 0700, tightening a looser one (with a log line).
pub fn private_dir(dir: &Path) -> Result<(), String> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", dir.display()))?;
    tighten(dir, 0o700)
}

/// Sets `path` to `mode` if it exists with any bit beyond it (with a log line).
fn tighten(path: &Path, mode: u32) -> Result<(), String> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let found = meta.permissions().mode() & 0o777;
    if found & !mode != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot make {} private: {e}", path.display()))?;
        tracing::warn!(
            path = %path.display(),
            found = format!("{found:o}"),
            set = format!("{mode:o}"),
            "file mode was looser than the data dir allows: corrected"
        );
    }
    Ok(())
}

/// The ledger's files (the database and SQLite's -wal and -shm beside it).
fn ledger_files(db: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut s = db.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    [db.to_path_buf(), with("-wal"), with("-shm")]
}

impl Records {
    /// Creates the data directory if missing (0700) and opens the ledger and the tokens, each
    /// error naming the file, and builds the trust store of `[cartridge]`. The database and
    /// its -wal and -shm and the token file are 0600: created so (SQLite gives -wal and -shm
    /// the database's mode) and corrected here, with a log line, if found looser.
    pub fn open(config: &Config) -> Result<Self, String> {
        let data_dir = &config.service.data_dir;
        private_dir(data_dir)?;
        let store_path = data_dir.join("needled.db");
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&store_path)
            .map_err(|e| format!("cannot open ledger {}: {e}", store_path.display()))?;
        for f in ledger_files(&store_path) {
            tighten(&f, 0o600)?;
        }
        let mut store = Store::open(&store_path)
            .map_err(|e| format!("cannot open ledger {}: {e}", store_path.display()))?;
        for f in ledger_files(&store_path) {
            tighten(&f, 0o600)?;
        }
        let trust = config
            .cartridge
            .trust_store()
            .map_err(|(key, reason)| format!("{key}: {reason}"))?;
        tighten(&data_dir.join(crate::tls::KEY_FILE), 0o600)?;
        let token_file = bootstrap_people(config, &mut store)?;
        let people = store
            .reopen()
            .map_err(|e| format!("cannot open ledger {}: {e}", store_path.display()))?;
        Ok(Self {
            store,
            trust,
            tokens: Tokens::new(&config.service.tokens, Some(people))
                .map_err(|e| format!("people in ledger {}: {e}", store_path.display()))?,
            token_file,
        })
    }
}

/// The first people of a fresh install: with no people in the ledger and no configured
/// tokens, the operator and technician of `tokens.json` (generated, 0600, if missing) are
/// added as people created by [`BOOTSTRAP_ACTOR`]. A ledger that has people is left alone,
/// and no new token file is made for it.
fn bootstrap_people(config: &Config, store: &mut Store) -> Result<Option<PathBuf>, String> {
    let data_dir = &config.service.data_dir;
    let path = data_dir.join(crate::auth::TOKEN_FILE);
    let has_people = store.has_people().map_err(|e| e.to_string())?;
    if has_people || !config.service.tokens.is_empty() {
        tighten(&path, 0o600)?;
        return Ok(path.exists().then_some(path));
    }
    let (generated, path) = Generated::load_or_generate(data_dir)
        .map_err(|e| format!("tokens in {}: {e}", data_dir.display()))?;
    tighten(&path, 0o600)?;
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let people: Vec<_> = generated
        .0
        .iter()
        .map(|t| (t.name.as_str(), t.role, token_hash(&t.token)))
        .collect();
    // All or none: a start killed here finds no people and adds them all again.
    store
        .add_people(&people, BOOTSTRAP_ACTOR, now_ms)
        .map_err(|e| format!("bootstrap people in the ledger: {e}"))?;
    tracing::info!(
        token_file = %path.display(),
        "first start: bootstrap operator and technician added; add people with \
         `needlectl person add` and revoke these"
    );
    Ok(Some(path))
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

    use std::os::unix::fs::PermissionsExt;

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

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn data_dir_and_files_are_private_when_created_and_corrected_when_looser() {
        let data = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.service.data_dir = data.path().join("data");
        let dir = config.service.data_dir.clone();
        let files = [
            dir.join("needled.db"),
            dir.join("needled.db-wal"),
            dir.join("needled.db-shm"),
            dir.join(crate::auth::TOKEN_FILE),
        ];
        let records = Records::open(&config).unwrap();
        assert_eq!(mode(&dir), 0o700);
        for f in &files {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
        drop(records);
        // Loosened behind needled's back (a copy, an umask 022 tool): corrected at start.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        for f in &files {
            if f.exists() {
                std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
        let _records = Records::open(&config).unwrap();
        assert_eq!(mode(&dir), 0o700);
        for f in &files {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
    }

    #[test]
    fn the_first_start_adds_bootstrap_people_once() {
        let data = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.service.data_dir = data.path().join("data");
        let records = Records::open(&config).unwrap();
        let people = records.store.people().unwrap();
        assert_eq!(people.len(), 2);
        assert!(people.iter().all(|p| p.created_by == BOOTSTRAP_ACTOR));
        drop(records);
        // Token file lost: no new tokens are made for a ledger that has people.
        std::fs::remove_file(config.service.data_dir.join(crate::auth::TOKEN_FILE)).unwrap();
        let records = Records::open(&config).unwrap();
        assert_eq!(records.token_file, None);
        assert_eq!(records.store.people().unwrap().len(), 2);
    }
}
