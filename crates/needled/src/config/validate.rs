//! The rules every value must follow, and the rules between sections; needle-core's own rules
//! are reported under our key names. The hardware sections' rules are in
//! `validate_hardware.rs`.

use std::collections::BTreeSet;

use super::error::{in_range, invalid, Invalid};
use super::{is_placeholder_token, Config, MIN_TOKEN_LEN, PLACEHOLDER_TOKEN_PREFIX};

impl Config {
    /// Checks every value, the rules between sections, and needle-core's own
    /// [`ControllerConfig::validate`](needle_core::config::ControllerConfig::validate); the
    /// first refused value is returned with its key.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.validate_service()?;
        self.validate_control()?;
        self.validate_motion()?;
        self.validate_core()?;
        self.validate_session()?;
        self.validate_areas()?;
        self.validate_cartridge()?;
        self.validate_hardware()?;
        self.validate_trust()?;
        in_range(
            "sim.motor_load_permille",
            self.sim.motor_load_permille,
            1..=5_000,
        )
    }

    fn validate_service(&self) -> Result<(), Invalid> {
        let s = &self.service;
        in_range("service.telemetry_hz", s.telemetry_hz, 1..=100)?;
        if s.data_dir.as_os_str().is_empty() {
            return Err(invalid(
                "service.data_dir",
                "expected a directory, got \"\"",
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, t) in s.tokens.iter().enumerate() {
            let key = format!("service.tokens[{i}]");
            // Everywhere, loopback too: a placeholder is a published secret.
            if is_placeholder_token(&t.token) {
                return Err(invalid(
                    format!("{key}.token"),
                    format!(
                        "expected a real token: placeholders ({PLACEHOLDER_TOKEN_PREFIX}..., in any \
                         case) and the examples of the shipped files are refused; make one with \
                         `openssl rand -hex 32`, or leave [[service.tokens]] out and add people \
                         with `needlectl person add`"
                    ),
                ));
            }
            // Never echo a token: it may be a real secret with one character too few.
            if t.token.len() < MIN_TOKEN_LEN {
                return Err(invalid(
                    format!("{key}.token"),
                    format!(
                        "expected at least {MIN_TOKEN_LEN} characters, got {}",
                        t.token.chars().count()
                    ),
                ));
            }
            if !t.token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid(
                    format!("{key}.token"),
                    "expected visible ASCII characters only (no spaces)",
                ));
            }
            if !seen.insert(t.token.as_str()) {
                return Err(invalid(
                    format!("{key}.token"),
                    "expected a token different from every other token",
                ));
            }
            if t.name.trim().is_empty() {
                return Err(invalid(format!("{key}.name"), "expected a non-empty name"));
            }
        }
        if s.tls.cert_file.is_some() != s.tls.key_file.is_some() {
            return Err(invalid(
                "service.tls",
                "expected both cert_file and key_file, or neither (a self-signed certificate)",
            ));
        }
        for (i, h) in s.allowed_hosts.iter().enumerate() {
            let ok = !h.is_empty()
                && h.len() <= 253
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
            if !ok {
                return Err(invalid(
                    format!("service.allowed_hosts[{i}]"),
                    format!("expected a host name or address without port, got {h:?}"),
                ));
            }
        }
        Ok(())
    }

    fn validate_control(&self) -> Result<(), Invalid> {
        let c = &self.control;
        in_range("control.rate_hz", c.rate_hz, 100..=10_000)?;
        in_range("control.host_timeout_ms", c.host_timeout_ms, 1..=5_000)?;
        in_range("control.max_tick_gap_ms", c.max_tick_gap_ms, 1..=1_000)?;
        in_range("control.service_stall_ms", c.service_stall_ms, 50..=10_000)?;
        c.validate_cpu()
    }

    fn validate_motion(&self) -> Result<(), Invalid> {
        let s = &self.stroke;
        in_range("stroke.edges_per_stroke", s.edges_per_stroke, 1..=64)?;
        in_range("stroke.rate_min_hz", s.rate_min_hz, 1..=1_000)?;
        in_range("stroke.rate_max_hz", s.rate_max_hz, 1..=1_000)?;
        in_range("stroke.rate_ceiling_hz", s.rate_ceiling_hz, 1..=1_000)?;
        in_range("stroke.ramp_time_ms", s.ramp_time_ms, 1..=10_000)?;
        in_range(
            "stroke.feedforward_permyriad_per_hz",
            s.feedforward_permyriad_per_hz,
            0..=10_000,
        )?;
        in_range(
            "stroke.kp_permyriad_per_hz",
            s.kp_permyriad_per_hz,
            0..=10_000,
        )?;
        in_range(
            "stroke.ki_permyriad_per_hz_s",
            s.ki_permyriad_per_hz_s,
            0..=1_000_000,
        )?;
        in_range(
            "stroke.max_duty_permyriad",
            s.max_duty_permyriad,
            1..=10_000,
        )?;
        in_range(
            "stroke.stall_ratio_permille",
            s.stall_ratio_permille,
            1..=999,
        )?;
        in_range("stroke.stall_window_ms", s.stall_window_ms, 1..=10_000)?;

        let d = &self.depth;
        in_range("depth.steps_per_mm", d.steps_per_mm, 1..=100_000)?;
        in_range("depth.max_depth_um", d.max_depth_um, 1..=5_000)?;
        in_range("depth.backlash_um", d.backlash_um, 0..=500)?;
        for (key, speed) in [
            ("depth.speed_um_per_s", d.speed_um_per_s),
            ("depth.running_speed_um_per_s", d.running_speed_um_per_s),
            ("depth.homing_fast_um_per_s", d.homing_fast_um_per_s),
            ("depth.homing_slow_um_per_s", d.homing_slow_um_per_s),
        ] {
            in_range(key, speed, 1..=50_000)?;
        }
        in_range("depth.accel_um_per_s2", d.accel_um_per_s2, 1..=10_000_000)?;
        in_range("depth.homing_backoff_um", d.homing_backoff_um, 1..=20_000)?;
        in_range(
            "depth.homing_travel_limit_um",
            d.homing_travel_limit_um,
            1..=20_000,
        )?;
        in_range(
            "depth.home_switch_window_um",
            d.home_switch_window_um,
            0..=5_000,
        )?;
        in_range("depth.max_steps_per_tick", d.max_steps_per_tick, 1..=64)?;

        let f = &self.safety;
        in_range("safety.max_current_ma", f.max_current_ma, 1..=100_000)?;
        in_range(
            "safety.over_current_time_ms",
            f.over_current_time_ms,
            1..=10_000,
        )?;
        in_range("safety.max_temperature_c", f.max_temperature_c, 1..=150)?;
        in_range(
            "safety.temperature_hysteresis_c",
            f.temperature_hysteresis_c,
            0..=100,
        )?;
        in_range("safety.min_supply_mv", f.min_supply_mv, 0..=100_000)?;
        in_range(
            "safety.under_voltage_time_ms",
            f.under_voltage_time_ms,
            1..=10_000,
        )
    }

    fn validate_core(&self) -> Result<(), Invalid> {
        self.controller_config()
            .validate()
            .map_err(|e| invalid(core_field_key(e.field), format!("expected {}", e.expected)))
    }

    fn validate_session(&self) -> Result<(), Invalid> {
        let s = &self.session;
        in_range("session.time_limit_min", s.time_limit_min, 1..=480)?;
        in_range(
            "session.warning_before_min",
            s.warning_before_min,
            0..=s.time_limit_min.saturating_sub(1),
        )?;
        in_range("session.min_interval_days", s.min_interval_days, 0..=365)?;
        if s.post_care.chars().count() > 2_000 {
            return Err(Invalid {
                key: "session.post_care".into(),
                message: format!(
                    "expected at most 2000 characters, got {}",
                    s.post_care.chars().count()
                ),
            });
        }
        let mut seen = BTreeSet::new();
        for (i, item) in s.checklist.iter().enumerate() {
            let key = format!("session.checklist[{i}]");
            if !is_identifier(&item.id) {
                return Err(invalid(
                    format!("{key}.id"),
                    format!(
                        "expected 1 to 64 characters of a-z, 0-9 and _, got \"{}\"",
                        item.id
                    ),
                ));
            }
            if !seen.insert(item.id.as_str()) {
                return Err(invalid(
                    format!("{key}.id"),
                    format!("expected a unique id, \"{}\" is used twice", item.id),
                ));
            }
            if item.text.trim().is_empty() {
                return Err(invalid(format!("{key}.text"), "expected a non-empty text"));
            }
        }
        Ok(())
    }

    fn validate_areas(&self) -> Result<(), Invalid> {
        if self.areas.is_empty() {
            return Err(invalid("areas", "expected at least one treatment area"));
        }
        for (name, area) in &self.areas {
            let key = format!("areas.{name}");
            if !is_identifier(name) {
                return Err(invalid(
                    key,
                    "expected an area name of 1 to 64 characters of a-z, 0-9 and _",
                ));
            }
            if !(1..=self.depth.max_depth_um).contains(&area.max_depth_um) {
                return Err(invalid(
                    format!("{key}.max_depth_um"),
                    format!(
                        "expected 1 to {} (depth.max_depth_um), got {}",
                        self.depth.max_depth_um, area.max_depth_um
                    ),
                ));
            }
            if let Some(limit) = area.time_limit_min {
                if !(1..=self.session.time_limit_min).contains(&limit) {
                    return Err(invalid(
                        format!("{key}.time_limit_min"),
                        format!(
                            "expected 1 to {} (session.time_limit_min), got {limit}",
                            self.session.time_limit_min
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_cartridge(&self) -> Result<(), Invalid> {
        let c = &self.cartridge;
        in_range("cartridge.max_run_min", c.max_run_min, 1..=600)?;
        in_range("cartridge.max_strokes", c.max_strokes, 1..=100_000_000)?;
        c.trust_store()
            .map_err(|(key, reason)| invalid(key, reason))?;
        Ok(())
    }

    /// The test factory key's private half is public: a rig that trusted it would accept
    /// cartridges anyone can make. Checked after the hardware sections, whose errors come
    /// first.
    fn validate_trust(&self) -> Result<(), Invalid> {
        let backend = self.hardware.backend;
        if backend != super::hardware::Backend::Sim && self.cartridge.trusts_test_key() {
            return Err(invalid(
                "cartridge.trusted_keys",
                format!(
                    "the test factory key (\"{}\") may only be trusted by the sim backend, \
                     not by \"{backend}\": trust your factory's public key instead",
                    crate::cartridge::TEST_FACTORY_KEY_ID
                ),
            ));
        }
        Ok(())
    }
}

fn is_identifier(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The TOML key of a needle-core [`ConfigError`](needle_core::config::ConfigError) field.
pub(super) fn core_field_key(field: &str) -> String {
    let key = match field {
        "stroke.rate_min" => "stroke.rate_min_hz",
        "stroke.rate_max" => "stroke.rate_max_hz",
        "stroke.rate_ceiling" => "stroke.rate_ceiling_hz",
        "stroke.ramp_time" => "stroke.ramp_time_ms",
        "stroke.max_duty" => "stroke.max_duty_permyriad",
        "stroke.gains" => "stroke.kp_permyriad_per_hz",
        "stroke.stall_window" => "stroke.stall_window_ms",
        "depth.max_depth" => "depth.max_depth_um",
        "depth.backlash" => "depth.backlash_um",
        "depth.homing_backoff" => "depth.homing_backoff_um",
        "depth.homing_travel_limit" => "depth.homing_travel_limit_um",
        "depth.home_switch_window" => "depth.home_switch_window_um",
        "safety.tick_period" => "control.rate_hz",
        "safety.max_tick_gap" => "control.max_tick_gap_ms",
        "safety.host_timeout" => "control.host_timeout_ms",
        "safety.max_current" => "safety.max_current_ma",
        "safety.over_current_time" => "safety.over_current_time_ms",
        "safety.max_temperature" => "safety.max_temperature_c",
        "safety.temperature_hysteresis" => "safety.temperature_hysteresis_c",
        "safety.min_supply" => "safety.min_supply_mv",
        "safety.under_voltage_time" => "safety.under_voltage_time_ms",
        // Fields whose TOML key has the core's name (edges_per_stroke, steps_per_mm, the
        // speeds...), and any field a newer core adds.
        other => other,
    };
    key.to_owned()
}
