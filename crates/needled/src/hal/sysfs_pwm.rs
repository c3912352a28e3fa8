//! The kernel's sysfs PWM (`/sys/class/pwm/pwmchipN/pwmM`): [`SysfsPwm`] is embedded-hal's
//! `SetDutyCycle` on a channel; [`sysfs_pwm_off`] drives a channel off for
//! `needled --safe-outputs`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use embedded_hal::pwm::{self, SetDutyCycle};

/// `max_duty_cycle` of [`SysfsPwm`]: duty in parts per ten thousand, as the core's
/// `Permyriad`.
pub const SYSFS_PWM_MAX_DUTY: u16 = 10_000;

/// A channel of the kernel's sysfs PWM (`/sys/class/pwm/pwmchipN/pwmM`) as an embedded-hal
/// [`SetDutyCycle`]: duty in ns = period × duty / max.
///
/// `open` exports the channel if needed, sets duty 0, the period, and enables it; dropping it
/// sets duty 0 and disables it. Writes go through `std::fs::write` (open, write, close) as
/// `echo value > file` does, and only when the duty changes.
#[derive(Debug)]
pub struct SysfsPwm {
    root: PathBuf,
    channel: u32,
    period_ns: u64,
    duty: Option<u16>,
}

/// A sysfs PWM file that could not be written or did not appear.
#[derive(Debug)]
pub struct SysfsPwmError {
    /// The file.
    pub path: PathBuf,
    /// What the kernel said.
    pub source: io::Error,
}

impl fmt::Display for SysfsPwmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for SysfsPwmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl pwm::Error for SysfsPwmError {
    fn kind(&self) -> pwm::ErrorKind {
        pwm::ErrorKind::Other
    }
}

impl SysfsPwm {
    /// Opens channel `channel` of the PWM chip at `root` (such as `/sys/class/pwm/pwmchip0`)
    /// at `frequency_hz`, output off (duty 0) but enabled. Waits up to `export_timeout` for
    /// the channel directory to appear after an export (udev sets its permissions).
    pub fn open(
        root: &Path,
        channel: u32,
        frequency_hz: u32,
        export_timeout: Duration,
    ) -> Result<Self, SysfsPwmError> {
        let mut pwm = Self {
            root: root.to_path_buf(),
            channel,
            period_ns: 1_000_000_000 / u64::from(frequency_hz.max(1)),
            duty: None,
        };
        let dir = pwm.channel_dir();
        if !dir.exists() {
            write_sysfs(&root.join("export"), &channel.to_string())?;
            let start = Instant::now();
            while !dir.join("enable").exists() {
                if start.elapsed() > export_timeout {
                    return Err(SysfsPwmError {
                        path: dir,
                        source: io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the channel did not appear after export",
                        ),
                    });
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // The kernel refuses every change while the period is 0 (a freshly exported channel
        // of a driver that reads no state back), so then the period goes first. Otherwise
        // duty first: a period shorter than the old duty would be refused.
        let period_file = dir.join("period");
        let unset = std::fs::read_to_string(&period_file).is_ok_and(|p| p.trim() == "0");
        if unset {
            write_sysfs(&period_file, &pwm.period_ns.to_string())?;
            write_sysfs(&dir.join("duty_cycle"), "0")?;
        } else {
            write_sysfs(&dir.join("duty_cycle"), "0")?;
            write_sysfs(&period_file, &pwm.period_ns.to_string())?;
        }
        write_sysfs(&dir.join("enable"), "1")?;
        pwm.duty = Some(0);
        Ok(pwm)
    }

    /// The PWM period in nanoseconds.
    pub fn period_ns(&self) -> u64 {
        self.period_ns
    }

    /// The duty last written, in parts of [`SYSFS_PWM_MAX_DUTY`].
    pub fn duty(&self) -> Option<u16> {
        self.duty
    }

    fn channel_dir(&self) -> PathBuf {
        self.root.join(format!("pwm{}", self.channel))
    }
}

fn write_sysfs(path: &Path, value: &str) -> Result<(), SysfsPwmError> {
    std::fs::write(path, value).map_err(|source| SysfsPwmError {
        path: path.to_path_buf(),
        source,
    })
}

impl Drop for SysfsPwm {
    fn drop(&mut self) {
        // Best effort: the motor enable is the primary safe state; this is the second.
        let dir = self.channel_dir();
        let _ = write_sysfs(&dir.join("duty_cycle"), "0");
        let _ = write_sysfs(&dir.join("enable"), "0");
    }
}

/// Drives channel `channel` of the sysfs PWM chip at `root` off without opening it for use:
/// duty 0, then disabled. For `needled --safe-outputs`, after the service died and left the
/// PWM at its last duty. A channel that is not exported is not running: it is left alone.
/// Returns what was done.
pub fn sysfs_pwm_off(root: &Path, channel: u32) -> Result<&'static str, SysfsPwmError> {
    if !root.is_dir() {
        return Err(SysfsPwmError {
            path: root.to_path_buf(),
            source: io::Error::new(io::ErrorKind::NotFound, "no such PWM chip"),
        });
    }
    let dir = root.join(format!("pwm{channel}"));
    if !dir.exists() {
        return Ok("not exported: off");
    }
    // Duty first, so the output is off even if disabling fails.
    write_sysfs(&dir.join("duty_cycle"), "0")?;
    write_sysfs(&dir.join("enable"), "0")?;
    Ok("duty 0, disabled")
}

impl pwm::ErrorType for SysfsPwm {
    type Error = SysfsPwmError;
}

impl SetDutyCycle for SysfsPwm {
    fn max_duty_cycle(&self) -> u16 {
        SYSFS_PWM_MAX_DUTY
    }

    fn set_duty_cycle(&mut self, duty: u16) -> Result<(), Self::Error> {
        let duty = duty.min(SYSFS_PWM_MAX_DUTY);
        if self.duty == Some(duty) {
            return Ok(());
        }
        let ns = self.period_ns * u64::from(duty) / u64::from(SYSFS_PWM_MAX_DUTY);
        // Forget the cached duty first: after a failed write the real duty is unknown.
        self.duty = None;
        write_sysfs(&self.channel_dir().join("duty_cycle"), &ns.to_string())?;
        self.duty = Some(duty);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn sysfs_pwm_sets_period_then_duty_in_nanoseconds() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("pwm0");
        std::fs::create_dir(&dir).unwrap();
        for f in ["period", "duty_cycle", "enable"] {
            std::fs::write(dir.join(f), "0").unwrap();
        }
        let mut pwm = SysfsPwm::open(root.path(), 0, 20_000, Duration::ZERO).unwrap();
        assert_eq!(read(&dir.join("period")), "50000");
        assert_eq!(read(&dir.join("enable")), "1");
        assert_eq!(pwm.max_duty_cycle(), 10_000);
        pwm.set_duty_cycle_percent(25).unwrap();
        assert_eq!(read(&dir.join("duty_cycle")), "12500");
        pwm.set_duty_cycle(u16::MAX).unwrap();
        assert_eq!(read(&dir.join("duty_cycle")), "50000");
        drop(pwm);
        assert_eq!(read(&dir.join("duty_cycle")), "0");
        assert_eq!(read(&dir.join("enable")), "0");
    }

    #[test]
    fn sysfs_pwm_exports_a_missing_channel_and_times_out_clearly() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("export"), "").unwrap();
        let err = SysfsPwm::open(root.path(), 1, 20_000, Duration::from_millis(20)).unwrap_err();
        assert_eq!(read(&root.path().join("export")), "1");
        assert_eq!(err.path, root.path().join("pwm1"));
        assert!(err.to_string().contains("did not appear"), "{err}");
    }

    #[test]
    fn sysfs_pwm_without_chip_names_the_file() {
        let err = SysfsPwm::open(Path::new("/nonexistent/pwmchip9"), 0, 1_000, Duration::ZERO)
            .unwrap_err();
        assert_eq!(err.path, Path::new("/nonexistent/pwmchip9/export"));
    }

    /// A channel left running by a killed process: enabled at a 60 % duty.
    fn running_pwm_tree() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("pwm0");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("period"), "50000").unwrap();
        std::fs::write(dir.join("duty_cycle"), "30000").unwrap();
        std::fs::write(dir.join("enable"), "1").unwrap();
        root
    }

    #[test]
    fn sysfs_pwm_off_zeroes_the_duty_and_disables_a_running_channel() {
        let root = running_pwm_tree();
        assert_eq!(sysfs_pwm_off(root.path(), 0).unwrap(), "duty 0, disabled");
        assert_eq!(read(&root.path().join("pwm0/duty_cycle")), "0");
        assert_eq!(read(&root.path().join("pwm0/enable")), "0");
        // An unexported channel is not running and is not exported for this.
        std::fs::write(root.path().join("export"), "").unwrap();
        assert_eq!(sysfs_pwm_off(root.path(), 1).unwrap(), "not exported: off");
        assert_eq!(read(&root.path().join("export")), "");
        // A missing chip is an error naming it.
        let err = sysfs_pwm_off(Path::new("/nonexistent/pwmchip9"), 0).unwrap_err();
        assert_eq!(err.path, Path::new("/nonexistent/pwmchip9"));
    }

    #[test]
    fn sysfs_pwm_open_drives_a_running_channel_to_duty_zero_before_anything_else() {
        // What a restart after a SIGKILL finds, and leaves even if it is killed again at once
        // (no Drop).
        let root = running_pwm_tree();
        let pwm = SysfsPwm::open(root.path(), 0, 20_000, Duration::ZERO).unwrap();
        std::mem::forget(pwm);
        assert_eq!(read(&root.path().join("pwm0/duty_cycle")), "0");
    }
}
