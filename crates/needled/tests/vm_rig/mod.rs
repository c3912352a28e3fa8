//! What the VM tests share (vm/README.md): the rig's paths in the guest, a gpio-sim chip made
//! through configfs, the rig modules' sysfs files, and needled's API client ([`api`]). Each
//! test file that uses it declares `mod vm_rig;`; not every file uses every item.
#![allow(dead_code)]

pub mod api;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

pub const RIG_TOML: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../config/linux-rig.toml"
));
pub const CONFIGFS: &str = "/sys/kernel/config/gpio-sim";
pub const I2C_PARAMS: &str = "/sys/module/needle_i2c_rig/parameters";
pub const PWM_APPLIED: &str = "/sys/devices/platform/needle-pwm-rig/applied";

/// Whether we are in the VM guest; prints why not otherwise.
pub fn in_guest(test: &str) -> bool {
    if std::env::var("NEEDLE_VM_GUEST").as_deref() == Ok("1") {
        return true;
    }
    println!("{test} SKIPPED: not in the VM test rig (run scripts/vm-test.sh; see vm/README.md)");
    false
}

/// Writes `value` to a sysfs or configfs file; panics naming it on failure.
pub fn write(path: impl AsRef<Path>, value: &str) {
    let path = path.as_ref();
    fs::write(path, value).unwrap_or_else(|e| panic!("write {value:?} to {}: {e}", path.display()));
}

/// Reads a sysfs or configfs file, trimmed; panics naming it on failure.
pub fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// A gpio-sim chip made through configfs; removed on drop.
pub struct SimChip {
    config: PathBuf,
    /// The chip's character device.
    pub dev: PathBuf,
    /// The chip's sysfs directory (`sim_gpio<N>/{value,pull}`).
    pub sysfs: PathBuf,
}

impl SimChip {
    /// A live chip of `lines` lines.
    pub fn new(lines: u32) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "needle{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let config = Path::new(CONFIGFS).join(name);
        fs::create_dir(&config).expect("gpio-sim configfs (is gpio-sim loaded?)");
        fs::create_dir(config.join("bank0")).unwrap();
        write(config.join("bank0/num_lines"), &lines.to_string());
        let mut chip = Self {
            config,
            dev: PathBuf::new(),
            sysfs: PathBuf::new(),
        };
        chip.set_live(true);
        chip
    }

    /// Makes the chip live (or removes it from the kernel, as `live` = 0 does).
    pub fn set_live(&mut self, live: bool) {
        write(self.config.join("live"), if live { "1" } else { "0" });
        if live {
            let dev_name = read(self.config.join("dev_name"));
            let chip_name = read(self.config.join("bank0/chip_name"));
            self.dev = Path::new("/dev").join(&chip_name);
            self.sysfs = Path::new("/sys/devices/platform")
                .join(dev_name)
                .join(chip_name);
        }
    }

    /// The electrical level of line `n` (an output's driven level, an input's pulled one).
    pub fn value(&self, n: u32) -> u8 {
        read(self.sysfs.join(format!("sim_gpio{n}/value")))
            .parse()
            .unwrap()
    }

    /// Pulls line `n` up (electrical 1) or down (0), as a switch on the rig would.
    pub fn pull(&self, n: u32, up: bool) {
        write(
            self.sysfs.join(format!("sim_gpio{n}/pull")),
            if up { "pull-up" } else { "pull-down" },
        );
    }
}

impl Drop for SimChip {
    fn drop(&mut self) {
        let _ = fs::write(self.config.join("live"), "0");
        let _ = fs::remove_dir(self.config.join("bank0"));
        let _ = fs::remove_dir(&self.config);
    }
}

/// The `/sys/class/pwm` chip of the rig's PWM module.
pub fn pwm_chip_of_rig() -> PathBuf {
    for entry in fs::read_dir("/sys/class/pwm").expect("/sys/class/pwm") {
        let path = entry.unwrap().path();
        let device = fs::read_link(path.join("device")).unwrap_or_default();
        if device.ends_with("needle-pwm-rig") {
            return path;
        }
    }
    panic!("no pwmchip of needle_pwm_rig (is it loaded?)");
}

/// The `/dev/i2c-N` of the rig's I2C adapter module.
pub fn i2c_dev_of_rig() -> PathBuf {
    for entry in fs::read_dir("/sys/bus/i2c/devices").expect("/sys/bus/i2c/devices") {
        let path = entry.unwrap().path();
        if fs::read_to_string(path.join("name")).is_ok_and(|n| n.trim() == "needle-i2c-rig") {
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            return Path::new("/dev").join(name);
        }
    }
    panic!("no I2C adapter of needle_i2c_rig (is it loaded?)");
}

/// The PWM rig module's view of channel `ch`: (period ns, duty ns, enabled, applies).
pub fn pwm_applied(ch: u32) -> (u64, u64, bool, u64) {
    let text = read(PWM_APPLIED);
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&ch.to_string()))
        .expect("channel line");
    let field = |k: &str| -> u64 {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{k}=")))
            .unwrap()
            .parse()
            .unwrap()
    };
    (
        field("period"),
        field("duty"),
        field("enabled") == 1,
        field("applies"),
    )
}
