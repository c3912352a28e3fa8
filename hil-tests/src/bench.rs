//! A bench = a rig and a jig, opened from the environment (`NEEDLE_RIG`, `NEEDLE_JIG_CONFIG`),
//! with the steps scenarios share: homing, sessions, test cartridges, setpoints, settling.
//!
//! The controller's status is read only to know what it is doing (homing finished, the depth
//! axis stopped, a fault latched); every figure a verdict rests on comes from the jig.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use needled::cartridge::{self, FactoryKey, Needles, Provisioned, TagData};
use serde_json::{json, Value};

use crate::api::{Api, Role};
use crate::config::{JigConfig, RIG_ENV};
use crate::error::{HilError, Result};
use crate::pi::{open_instruments, PiJig, PiRig};
use crate::rig::{Actuation, DepthReading, Jig, Rig, RigOptions};
use crate::sim::SimRig;

/// An open bench.
pub struct Bench {
    /// Which rig this is.
    pub kind: RigKind,
    /// The device under test.
    pub rig: Box<dyn Rig>,
    /// The jig.
    pub jig: Box<dyn Jig>,
    /// The jig configuration.
    pub config: JigConfig,
    /// Where the jig configuration came from (`None`: the defaults).
    pub config_source: Option<std::path::PathBuf>,
    api: Api,
    key: FactoryKey,
    serial: u32,
    prefix: String,
}

impl std::fmt::Debug for Bench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bench")
            .field("rig", &self.rig.kind())
            .field("jig", &self.jig.describe())
            .finish_non_exhaustive()
    }
}

/// A session holding the pen, with its cartridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Session id.
    pub id: i64,
    /// The bound cartridge's id.
    pub cartridge: String,
    /// The cartridge (to seat it again).
    pub tag: Provisioned,
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Which rig the environment selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RigKind {
    /// The simulated rig (default).
    Sim,
    /// The real rig on the bench jig.
    Pi,
    /// `needled` driving the pen firmware's host build over a pty (`NEEDLE_RIG=link`).
    Link,
}

/// Reads `NEEDLE_RIG`: unset, empty or `sim` is the sim; `pi` the bench; `link` needled and
/// the pen firmware over a pty; anything else an error.
pub fn rig_kind_from_env() -> Result<RigKind> {
    match std::env::var(RIG_ENV) {
        Err(std::env::VarError::NotPresent) => parse_rig_kind(None),
        Ok(v) => parse_rig_kind(Some(&v)),
        Err(e) => Err(HilError::Config(format!("{RIG_ENV}: {e}"))),
    }
}

/// The rig a `NEEDLE_RIG` value selects.
pub fn parse_rig_kind(value: Option<&str>) -> Result<RigKind> {
    match value {
        None | Some("" | "sim") => Ok(RigKind::Sim),
        Some("pi") => Ok(RigKind::Pi),
        Some("link") => Ok(RigKind::Link),
        Some(other) => Err(HilError::Config(format!(
            "{RIG_ENV}={other}: expected sim, link or pi"
        ))),
    }
}

impl Bench {
    /// Opens the bench the environment selects. With `NEEDLE_RIG=pi` every failure to reach
    /// the rig or open an instrument is an error that says what is missing: never a skip.
    pub fn open(options: RigOptions) -> Result<Bench> {
        Self::open_kind(rig_kind_from_env()?, options)
    }

    /// Opens a bench of the given kind.
    pub fn open_kind(kind: RigKind, options: RigOptions) -> Result<Bench> {
        let (config, config_source) = JigConfig::from_env()?;
        let (rig, jig): (Box<dyn Rig>, Box<dyn Jig>) = match kind {
            RigKind::Sim => {
                let (rig, jig) = SimRig::start(options)?;
                (Box::new(rig), Box::new(jig))
            }
            RigKind::Link => {
                let (rig, jig) = SimRig::start_link(options)?;
                (Box::new(rig), Box::new(jig))
            }
            RigKind::Pi => {
                let pi = config.pi.as_ref().ok_or_else(|| {
                    HilError::Config(format!(
                        "{RIG_ENV}=pi needs {} naming a jig config with a [pi] section (see hil-tests/jig.example.toml)",
                        crate::config::JIG_CONFIG_ENV
                    ))
                })?;
                let instruments = open_instruments(pi)?;
                let rig = PiRig::open(pi, options)?;
                let description = format!(
                    "pi jig: optical stroke sensor {}, motor power sense {}, ADS1115 gauge at {:#04x}, E-stop relay {}, \
                     cartridge relay {}",
                    pi.stroke_sensor, pi.motor_power_sense, pi.displacement.address, pi.estop_relay, pi.cartridge_relay
                );
                let jig = PiJig::new(instruments, pi.edge_jitter_us, description);
                (Box::new(rig), Box::new(jig))
            }
        };
        let api = rig.api();
        let key = rig.factory_key()?;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let prefix = format!(
            "H{}{}",
            base36(now_ms),
            base36(u64::from(std::process::id() % 1_296))
        );
        Ok(Bench {
            kind,
            rig,
            jig,
            config,
            config_source,
            api,
            key,
            serial: 0,
            prefix,
        })
    }

    /// The API client (refreshed after a restart).
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// Kills the service (SIGKILL).
    pub fn kill_service(&mut self) -> Result<()> {
        self.rig.kill_service()
    }

    /// Starts the service again and reconnects.
    pub fn start_service(&mut self) -> Result<()> {
        self.rig.start_service()?;
        self.api = self.rig.api();
        Ok(())
    }

    /// The id of the factory key the rig trusts.
    pub fn factory_key_id(&self) -> &str {
        self.key.id()
    }

    /// A name unique on this rig across runs (cartridge ids, lots, subject references).
    pub fn unique(&mut self) -> String {
        self.serial += 1;
        format!("{}{:03}", self.prefix, self.serial)
    }

    /// Waits until the controller's status satisfies `done`.
    pub fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.api.status()?;
            if done(&s) {
                return Ok(s);
            }
            if Instant::now() > deadline {
                return Err(HilError::Timeout {
                    what: format!("{what} (last status: {s})"),
                    waited: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until the session reaches `state`.
    pub fn wait_session(&self, id: i64, state: &str, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.api.get(&format!("/v1/sessions/{id}"))?;
            if s["state"] == state {
                return Ok(s);
            }
            if Instant::now() > deadline {
                return Err(HilError::Timeout {
                    what: format!("session {id} to be {state} (it is {})", s["state"]),
                    waited: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Homes the depth axis and waits until the controller is idle and homed.
    pub fn home(&self) -> Result<()> {
        self.api.post("/v1/home", None)?;
        self.wait_status("homing", Duration::from_secs(30), |s| {
            s["state"] == "Idle" && s["homed"] == true
        })?;
        Ok(())
    }

    /// Homes unless the controller is already idle and homed.
    pub fn ensure_homed(&self) -> Result<()> {
        let s = self.api.status()?;
        if s["state"] == "Idle" && s["homed"] == true {
            return Ok(());
        }
        self.home()
    }

    /// A cartridge provisioned with the factory key the rig trusts.
    pub fn tag(&self, id: &str, lot: &str, expiry: &str) -> Result<Provisioned> {
        Self::tag_signed(id, lot, expiry, &self.key)
    }

    /// A cartridge provisioned with `key` (a counterfeiter's key, say).
    pub fn tag_signed(id: &str, lot: &str, expiry: &str, key: &FactoryKey) -> Result<Provisioned> {
        let expiry = expiry
            .parse()
            .map_err(|e| HilError::Config(format!("expiry {expiry}: {e:?}")))?;
        let data = TagData::new(id, lot, Needles::Pins12, expiry)
            .map_err(|e| HilError::Config(format!("tag {id}: {e}")))?;
        cartridge::provision(&data, key).map_err(|e| HilError::Config(format!("tag {id}: {e}")))
    }

    /// A new genuine cartridge: (id, cartridge).
    pub fn new_cartridge(&mut self) -> Result<(String, Provisioned)> {
        let id = self.unique();
        let lot = format!("L{id}");
        let image = self.tag(&id, &lot, "2099-12-31")?;
        Ok((id, image))
    }

    /// Creates a session in `area` with every checklist item confirmed.
    pub fn create_session(&mut self, area: &str) -> Result<i64> {
        let checklist: serde_json::Map<String, Value> = self
            .rig
            .settings()
            .checklist
            .iter()
            .map(|c| (c.clone(), Value::Bool(true)))
            .collect();
        let subject = format!("hil-{}", self.unique());
        let v = self.api.post(
            "/v1/sessions",
            Some(&json!({ "operator": "hil-jig", "subject_ref": subject, "area": area, "checklist": checklist })),
        )?;
        v["id"]
            .as_i64()
            .ok_or_else(|| HilError::Service(format!("session without an id: {v}")))
    }

    /// Seats a cartridge with the jig.
    pub fn seat(&mut self, cartridge: &Provisioned) -> Result<()> {
        self.jig.actuate(Actuation::SeatCartridge(cartridge))
    }

    /// Binds the seated cartridge to session `id`.
    pub fn bind(&self, id: i64) -> Result<Value> {
        self.api.post(&format!("/v1/sessions/{id}/cartridge"), None)
    }

    /// Arms session `id`.
    pub fn arm(&self, id: i64, depth_um: u32, rate_hz: u32) -> Result<Value> {
        self.api.post(
            &format!("/v1/sessions/{id}/arm"),
            Some(&json!({ "depth_um": depth_um, "rate_mhz": rate_hz * 1000 })),
        )
    }

    /// Starts the needles of session `id` and waits until the jig sees the motor powered.
    pub fn start(&mut self, id: i64) -> Result<()> {
        self.api.post(&format!("/v1/sessions/{id}/start"), None)?;
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.jig.motor_powered()? {
            if Instant::now() > deadline {
                return Err(HilError::Timeout {
                    what: "the jig to see the motor powered".into(),
                    waited: Duration::from_secs(2),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    /// Ends session `id`.
    pub fn end(&self, id: i64) -> Result<Value> {
        self.api.post(
            &format!("/v1/sessions/{id}/end"),
            Some(&json!({ "reason": "hil scenario finished" })),
        )
    }

    /// Clears latched faults, waiting for the controller to reach `Fault` first (it holds
    /// `EStop` while the cause is present).
    pub fn clear_faults(&self, reason: &str) -> Result<()> {
        self.wait_status(
            "the controller to hold a clearable fault",
            Duration::from_secs(5),
            |s| s["state"] == "Fault",
        )?;
        self.api
            .post("/v1/faults/clear", Some(&json!({ "reason": reason })))?;
        Ok(())
    }

    /// Changes the depth setpoint, retrying while the controller reports the axis busy.
    pub fn set_depth(&self, id: i64, depth_um: u32) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.api.put(
                &format!("/v1/sessions/{id}/setpoints"),
                &json!({ "depth_um": depth_um }),
            ) {
                Ok(_) => return Ok(()),
                Err(e)
                    if e.api_code() == Some("depth_not_settled") && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Changes the stroke rate setpoint.
    pub fn set_rate(&self, id: i64, rate_hz: u32) -> Result<()> {
        self.api.put(
            &format!("/v1/sessions/{id}/setpoints"),
            &json!({ "rate_mhz": rate_hz * 1000 }),
        )?;
        Ok(())
    }

    /// Waits for the depth stop to come to rest and returns the jig's reading: first until
    /// the controller says the axis stopped (to know when to look), then until two jig
    /// readings at least 20 ms apart agree within a tenth of the depth tolerance.
    pub fn settled_depth(&mut self) -> Result<DepthReading> {
        self.wait_status("the depth axis to stop", Duration::from_secs(10), |s| {
            s["depth"]["moving"] == false
        })?;
        let agree = self.config.tolerances.depth_um / 10.0;
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut a = self.jig.depth()?;
        loop {
            std::thread::sleep(Duration::from_millis(5));
            let b = self.jig.depth()?;
            if b.at_us >= a.at_us + 20_000 {
                if (b.depth_um - a.depth_um).abs() <= agree {
                    return Ok(b);
                }
                a = b;
            }
            if Instant::now() > deadline {
                return Err(HilError::Timeout {
                    what: "the jig's depth reading to settle".into(),
                    waited: Duration::from_secs(5),
                });
            }
        }
    }

    /// Homes if needed, opens a session in `area` with a new cartridge, arms it and waits for
    /// the depth stop to settle.
    pub fn armed_session(&mut self, area: &str, depth_um: u32, rate_hz: u32) -> Result<Session> {
        self.ensure_homed()?;
        let id = self.create_session(area)?;
        let (cartridge, tag) = self.new_cartridge()?;
        self.seat(&tag)?;
        self.bind(id)?;
        self.arm(id, depth_um, rate_hz)?;
        self.settled_depth()?;
        Ok(Session { id, cartridge, tag })
    }

    /// An armed session, started; returns once the jig sees the stroke rate within 2 % of
    /// the setpoint.
    pub fn running_session(&mut self, area: &str, depth_um: u32, rate_hz: u32) -> Result<Session> {
        let s = self.armed_session(area, depth_um, rate_hz)?;
        self.start(s.id)?;
        self.wait_rate_near(f64::from(rate_hz), 2.0, Duration::from_secs(3))?;
        Ok(s)
    }

    /// Waits until the jig's stroke rate is within `percent` of `target_hz`.
    pub fn wait_rate_near(
        &mut self,
        target_hz: f64,
        percent: f64,
        timeout: Duration,
    ) -> Result<f64> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.jig.instant_rate()?.rate_hz;
            if (r - target_hz).abs() <= target_hz * percent / 100.0 {
                return Ok(r);
            }
            if Instant::now() > deadline {
                return Err(HilError::Timeout {
                    what: format!("the stroke rate to reach {target_hz} Hz (it is {r:.2} Hz)"),
                    waited: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A request as the technician that may be refused: (status, error code).
    pub fn try_call(
        &self,
        role: Role,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, String)> {
        let reply = self.api.call(Some(role), method, path, body)?;
        Ok((reply.status, reply.code().unwrap_or_default().to_string()))
    }

    /// Every event in the log, in order.
    pub fn all_events(&self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut after = 0i64;
        loop {
            let page = self
                .api
                .get(&format!("/v1/events?after={after}&limit=1000"))?;
            let events = page["events"].as_array().cloned().unwrap_or_default();
            if events.is_empty() {
                return Ok(out);
            }
            after = events
                .last()
                .and_then(|e| e["seq"].as_i64())
                .unwrap_or(after);
            out.extend(events);
        }
    }

    /// Watches the jig for `duration` and returns whether the motor was ever powered.
    pub fn motor_ever_powered(&mut self, duration: Duration) -> Result<bool> {
        let deadline = Instant::now() + duration;
        loop {
            if self.jig.motor_powered()? {
                return Ok(true);
            }
            if Instant::now() > deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_fit_a_tag_field() {
        // Realistic: milliseconds since 1970 until the year 3000 fit in 9 base-36 digits.
        let now = format!("H{}{}{:03}", base36(32_503_680_000_000), base36(1_295), 999);
        assert!(now.len() < needled::cartridge::MAX_FIELD_LEN, "{now}");
        assert!(needled::cartridge::validate_identifier("id", &format!("L{now}")).is_ok());
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "Z");
        assert_eq!(base36(36), "10");
    }

    #[test]
    fn rig_kind_names_are_strict() {
        assert_eq!(parse_rig_kind(None).unwrap(), RigKind::Sim);
        assert_eq!(parse_rig_kind(Some("")).unwrap(), RigKind::Sim);
        assert_eq!(parse_rig_kind(Some("sim")).unwrap(), RigKind::Sim);
        assert_eq!(parse_rig_kind(Some("pi")).unwrap(), RigKind::Pi);
        let e = parse_rig_kind(Some("PI")).unwrap_err().to_string();
        assert!(
            e.contains("NEEDLE_RIG=PI") && e.contains("expected sim, link or pi"),
            "{e}"
        );
    }
}
