//! The depth axis: a STEP/DIR stepper on a lead screw that moves the needles' depth stop.
//!
//! - Homing: fast approach to the home switch, back off, slow re-approach; the slow
//!   re-approach's trigger point is depth 0. Then the lash is measured: the motor creeps
//!   deeper at the slow speed until the switch opens (the lash taken up, the load lifted off
//!   by one step), and returns to 0. Fails after a travel limit, if the switch is still
//!   pressed after backing off (a stuck switch), or if it does not open within the back-off
//!   distance while measuring the lash.
//! - Moves: trapezoid velocity profile, integrated per tick, at most `max_steps_per_tick`
//!   pulses a tick.
//! - Backlash: the lead screw has lash, so the depth stop (the *load*) lags the motor by up to
//!   the lash when going deeper, and follows it directly going shallower (the motor side pushes
//!   it back). The axis tracks both with the lash measured at homing, never the configured
//!   one. Every move finishes going *shallower*: a deeper target is passed by the measured lash
//!   and one step, then approached from below, so any lash can only leave the needle short.
//! - Limits: the motor is never commanded past the move's `limit` (the arming ceiling) nor
//!   `max_depth`, both rounded down to whole steps. The load never leads the motor, so no lash
//!   and no configuration can carry the needle past them; where the limit cuts the overshoot
//!   short (a target at the ceiling), the needle ends short by up to the real lash.
//!
//! Pure logic: [`DepthAxis::update`] says how many steps to pulse and in which direction;
//! the controller drives the pins.

use crate::config::DepthConfig;
use crate::units::{Micrometers, Micros, Steps};

/// Integration steps longer than this are shortened, so a late tick never jumps the axis.
const MAX_DT: Micros = Micros(10_000);
const NANO: u64 = 1_000_000_000;

/// Speed class of a move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveSpeed {
    /// Motor off: the configured move speed.
    Normal,
    /// Motor running, needles in skin: the slower running speed.
    Running,
}

/// Something the axis reports from an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AxisEvent {
    /// Nothing happened.
    None,
    /// Homing finished: the axis is referenced at depth 0.
    Homed,
    /// Homing failed, or the home switch disagrees with the position.
    Fault,
}

/// What to do with the pins in this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AxisOutput {
    /// Level of DIR: `true` moves deeper.
    pub dir_deeper: bool,
    /// STEP pulses to emit after DIR is set.
    pub steps: u32,
    /// What happened.
    pub event: AxisEvent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Move,
    HomeFast,
    HomeBackOff,
    HomeSlow,
    HomeLash,
    HomeReturn,
}

/// Why a move was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveError {
    /// The axis is not referenced.
    NotHomed,
    /// The axis is still moving.
    Busy,
}

/// The depth axis.
#[derive(Debug, Clone)]
pub struct DepthAxis {
    steps_per_mm: i64,
    backlash: i32,
    max_steps: i32,
    window: i32,
    backoff: i32,
    travel_limit: i32,
    speed: u64,
    running_speed: u64,
    homing_fast: u64,
    homing_slow: u64,
    accel: u64,
    max_steps_per_tick: u64,

    referenced: bool,
    motor: i32,
    load: i32,
    phase: Phase,
    target: i32,
    then: Option<i32>,
    vmax: u64,
    velocity_milli: u64,
    frac: u64,
    dir_deeper: bool,
    dir_set: bool,
    phase_start: i32,
    setpoint: Micrometers,
    last: Micros,
    /// `load` in micrometres, kept as `load` changes: read every tick by the telemetry,
    /// changed only by a move.
    position: Micrometers,
    /// Bumped whenever the setpoint, the lash or the reference may have changed
    /// ([`DepthAxis::revision`]).
    revision: u32,
}

impl DepthAxis {
    /// An unreferenced axis at rest.
    pub fn new(config: &DepthConfig) -> Self {
        let spm = i64::from(config.steps_per_mm.max(1));
        let per_s = |um_per_s: u32| (u64::from(um_per_s) * spm.unsigned_abs() / 1000).max(1);
        let mut axis = Self {
            steps_per_mm: spm,
            backlash: 0,
            max_steps: 0,
            window: 0,
            backoff: 0,
            travel_limit: 0,
            speed: per_s(config.speed_um_per_s),
            running_speed: per_s(config.running_speed_um_per_s),
            homing_fast: per_s(config.homing_fast_um_per_s),
            homing_slow: per_s(config.homing_slow_um_per_s),
            accel: per_s(config.accel_um_per_s2),
            max_steps_per_tick: u64::from(config.max_steps_per_tick.max(1)),
            referenced: false,
            motor: 0,
            load: 0,
            phase: Phase::Idle,
            target: 0,
            then: None,
            vmax: 1,
            velocity_milli: 0,
            frac: 0,
            dir_deeper: false,
            dir_set: false,
            phase_start: 0,
            setpoint: Micrometers::ZERO,
            last: Micros::ZERO,
            revision: 0,
            position: Micrometers::ZERO,
        };
        axis.backlash = axis.to_steps(config.backlash).max(0);
        axis.max_steps = axis.to_steps_down(config.max_depth).max(0);
        axis.window = axis.to_steps(config.home_switch_window).max(0);
        axis.backoff = axis.to_steps(config.homing_backoff).max(1);
        axis.travel_limit = axis.to_steps(config.homing_travel_limit).max(1);
        axis
    }

    /// Micrometres to steps, rounded to the nearest step.
    fn to_steps(&self, um: Micrometers) -> i32 {
        let scaled = i64::from(um.0) * self.steps_per_mm;
        let rounded = (scaled + scaled.signum() * 500) / 1000;
        i32::try_from(rounded).unwrap_or(if rounded < 0 { i32::MIN } else { i32::MAX })
    }

    /// Micrometres to whole steps, rounded towards shallower, for limits.
    fn to_steps_down(&self, um: Micrometers) -> i32 {
        let scaled = i64::from(um.0) * self.steps_per_mm;
        let steps = scaled.div_euclid(1000);
        i32::try_from(steps).unwrap_or(if steps < 0 { i32::MIN } else { i32::MAX })
    }

    /// Steps to micrometres, rounded to the nearest micrometre.
    #[inline]
    pub fn to_um(&self, steps: i32) -> Micrometers {
        let scaled = i64::from(steps) * 1000;
        let half = self.steps_per_mm / 2;
        let rounded = (scaled + scaled.signum() * half) / self.steps_per_mm;
        Micrometers(i32::try_from(rounded).unwrap_or(if rounded < 0 { i32::MIN } else { i32::MAX }))
    }

    /// Whether the axis is referenced (homed, position not lost since).
    #[inline]
    pub fn is_referenced(&self) -> bool {
        self.referenced
    }

    /// Whether a move or homing is under way.
    #[inline]
    pub fn is_moving(&self) -> bool {
        self.phase != Phase::Idle
    }

    /// Whether homing is under way.
    pub fn is_homing(&self) -> bool {
        matches!(
            self.phase,
            Phase::HomeFast
                | Phase::HomeBackOff
                | Phase::HomeSlow
                | Phase::HomeLash
                | Phase::HomeReturn
        )
    }

    /// The lash the axis compensates: measured at the latest homing (the configured value
    /// until the first homing, when no move is allowed).
    #[inline]
    pub fn lash(&self) -> Micrometers {
        self.to_um(self.backlash)
    }

    /// The depth the depth stop is at, from counted steps and the lash model.
    #[inline]
    pub fn position(&self) -> Micrometers {
        self.position
    }

    /// Sets the load side's position in steps, and the micrometres of it.
    #[inline]
    fn set_load(&mut self, load: i32) {
        self.load = load;
        self.position = self.to_um(load);
    }

    /// The position of the motor side of the lead screw.
    pub fn motor_steps(&self) -> Steps {
        Steps(self.motor)
    }

    /// Micrometres as steps of this axis, rounded to the nearest step.
    pub fn steps_of(&self, um: Micrometers) -> Steps {
        Steps(self.to_steps(um))
    }

    /// The depth the axis was last told to go to.
    #[inline]
    pub fn setpoint(&self) -> Micrometers {
        self.setpoint
    }

    /// Forgets the reference: homing is required again (position may be lost).
    pub fn unreference(&mut self) {
        self.referenced = false;
        self.touched();
    }

    /// A number that changes whenever [`DepthAxis::setpoint`], [`DepthAxis::lash`] or
    /// [`DepthAxis::is_referenced`] may have changed (it may also change when they did not):
    /// a telemetry encoder compares the three only when it moved.
    #[inline]
    pub fn revision(&self) -> u32 {
        self.revision
    }

    #[inline]
    fn touched(&mut self) {
        self.revision = self.revision.wrapping_add(1);
    }

    /// Stops at once (no deceleration) and returns whether the axis was moving.
    pub fn stop(&mut self) -> bool {
        let was_moving = self.is_moving();
        self.phase = Phase::Idle;
        self.then = None;
        self.velocity_milli = 0;
        self.frac = 0;
        was_moving
    }

    /// Brings a move to rest along its deceleration ramp, short of its target, keeping the
    /// reference (no step is lost to an abrupt stop). Homing, which has no reference to
    /// keep, stops at once. The axis may still move for the braking distance after this.
    pub fn halt(&mut self) {
        if self.phase != Phase::Move {
            self.stop();
            return;
        }
        let v = self.velocity_milli / 1000;
        let braking = i32::try_from(v * v / (2 * self.accel)).unwrap_or(i32::MAX);
        let remaining = self.target.saturating_sub(self.motor);
        self.target = if remaining >= 0 {
            self.motor.saturating_add(braking.min(remaining))
        } else {
            self.motor
                .saturating_sub(braking.min(remaining.saturating_neg()))
        };
        self.then = None;
        self.setpoint = self.to_um(self.target.clamp(0, self.max_steps));
        self.touched();
    }

    /// Starts homing; the reference is lost until it succeeds.
    pub fn start_homing(&mut self, now: Micros) {
        self.stop();
        self.referenced = false;
        self.touched();
        self.last = now;
        self.phase = Phase::HomeFast;
        self.phase_start = self.motor;
        self.target = self.motor.saturating_sub(self.travel_limit);
        self.vmax = self.homing_fast;
    }

    /// Moves the depth stop to `depth`, clamped to `0..=limit` and `0..=max_depth`, finishing
    /// going shallower. The motor never goes deeper than `limit` (rounded down to a step), so
    /// neither does the needle, whatever the real lash.
    pub fn move_to(
        &mut self,
        depth: Micrometers,
        limit: Micrometers,
        speed: MoveSpeed,
        now: Micros,
    ) -> Result<(), MoveError> {
        if !self.referenced {
            return Err(MoveError::NotHomed);
        }
        if self.is_moving() {
            return Err(MoveError::Busy);
        }
        let limit = self.to_steps_down(limit).clamp(0, self.max_steps);
        let target = self.to_steps(depth).clamp(0, limit);
        if target <= self.load {
            // Shallower: the motor side pushes the load straight back, no lash on the way.
            self.target = target;
            self.then = None;
        } else {
            // Deeper: pass the target by the lash and a step (never the limit), then come back.
            let over = target
                .saturating_add(self.backlash)
                .saturating_add(1)
                .min(limit)
                .max(target);
            self.target = over;
            self.then = (over != target).then_some(target);
        }
        self.setpoint = self.to_um(target);
        self.touched();
        self.vmax = match speed {
            MoveSpeed::Normal => self.speed,
            MoveSpeed::Running => self.running_speed,
        };
        self.last = now;
        self.phase = Phase::Move;
        Ok(())
    }

    /// Advances the axis to `now`, given the home switch's state.
    pub fn update(&mut self, now: Micros, home_switch: bool) -> AxisOutput {
        let dt = now.since(self.last).0.min(MAX_DT.0);
        self.last = now;
        let idle = AxisOutput {
            dir_deeper: self.dir_deeper,
            steps: 0,
            event: AxisEvent::None,
        };
        let fault = AxisOutput {
            event: AxisEvent::Fault,
            ..idle
        };
        match self.phase {
            Phase::Idle | Phase::Move => {
                if self.referenced && home_switch && self.load > self.window {
                    self.stop();
                    return fault;
                }
                if self.phase == Phase::Idle {
                    return idle;
                }
                if self.motor == self.target {
                    match self.then.take() {
                        Some(next) => self.target = next,
                        None => {
                            self.stop();
                            return idle;
                        }
                    }
                }
                self.step(dt)
            }
            Phase::HomeFast => {
                if home_switch {
                    self.begin_phase(Phase::HomeBackOff, self.backoff, self.homing_fast);
                    return idle;
                }
                if self.motor == self.target {
                    self.stop();
                    return fault;
                }
                self.step(dt)
            }
            Phase::HomeBackOff => {
                if self.motor == self.target {
                    if home_switch {
                        self.stop();
                        return fault;
                    }
                    let back = self.backoff.saturating_mul(-2);
                    self.begin_phase(Phase::HomeSlow, back, self.homing_slow);
                    return idle;
                }
                self.step(dt)
            }
            Phase::HomeSlow => {
                if home_switch {
                    // The slow approach went shallower, so the motor side touches the load:
                    // both are at the trigger point.
                    self.stop();
                    self.motor = 0;
                    self.set_load(0);
                    self.begin_phase(Phase::HomeLash, self.backoff, self.homing_slow);
                    return idle;
                }
                if self.motor == self.target {
                    self.stop();
                    return fault;
                }
                self.step(dt)
            }
            Phase::HomeLash => {
                if !home_switch {
                    // The switch reads the steps of earlier ticks: it opened at this motor
                    // position, when the lash was taken up and the load lifted by one step.
                    self.backlash = self.motor.saturating_sub(1).max(0);
                    self.touched();
                    self.set_load(self.motor.saturating_sub(self.backlash));
                    let back = self.motor.saturating_neg();
                    self.begin_phase(Phase::HomeReturn, back, self.homing_slow);
                    return idle;
                }
                if self.motor == self.target {
                    // Lash as long as the back-off, or a switch that never opens.
                    self.stop();
                    return fault;
                }
                self.step(dt)
            }
            Phase::HomeReturn => {
                if self.motor == self.target {
                    // Back at the trigger point going shallower: the load is at 0 again.
                    self.stop();
                    self.motor = 0;
                    self.set_load(0);
                    self.referenced = true;
                    self.setpoint = Micrometers::ZERO;
                    self.touched();
                    return AxisOutput {
                        event: AxisEvent::Homed,
                        ..idle
                    };
                }
                self.step(dt)
            }
        }
    }

    fn begin_phase(&mut self, phase: Phase, distance: i32, vmax: u64) {
        self.phase = phase;
        self.phase_start = self.motor;
        self.target = self.motor.saturating_add(distance);
        self.vmax = vmax;
        self.velocity_milli = 0;
        self.frac = 0;
    }

    /// One tick of the trapezoid profile towards `self.target`.
    fn step(&mut self, dt: u64) -> AxisOutput {
        let deeper = self.target > self.motor;
        if !self.dir_set || self.dir_deeper != deeper {
            // Set DIR this tick and step from the next, so DIR is settled before STEP.
            self.dir_deeper = deeper;
            self.dir_set = true;
            self.velocity_milli = 0;
            self.frac = 0;
            return AxisOutput {
                dir_deeper: deeper,
                steps: 0,
                event: AxisEvent::None,
            };
        }
        let remaining = u64::from(self.target.abs_diff(self.motor));
        let v = self.velocity_milli / 1000;
        let braking_distance = v * v / (2 * self.accel);
        let dv = self.accel * dt / 1000;
        let vmax_milli = self.vmax * 1000;
        self.velocity_milli = if braking_distance >= remaining {
            self.velocity_milli.saturating_sub(dv)
        } else {
            self.velocity_milli.saturating_add(dv).min(vmax_milli)
        };
        // A floor so the last steps of a deceleration do not crawl.
        self.velocity_milli = self.velocity_milli.max((vmax_milli / 8).max(1000));
        self.frac = self
            .frac
            .saturating_add(self.velocity_milli.saturating_mul(dt));
        let due = self.frac / NANO;
        self.frac %= NANO;
        let steps = due.min(remaining).min(self.max_steps_per_tick);
        // steps <= max_steps_per_tick <= 64.
        let n = i32::try_from(steps).unwrap_or(0);
        if deeper {
            self.motor = self.motor.saturating_add(n);
            self.set_load(self.load.max(self.motor.saturating_sub(self.backlash)));
        } else {
            self.motor = self.motor.saturating_sub(n);
            self.set_load(self.load.min(self.motor));
        }
        AxisOutput {
            dir_deeper: deeper,
            steps: u32::try_from(steps).unwrap_or(0),
            event: AxisEvent::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No arming ceiling: only `max_depth` limits the move.
    const NO_LIMIT: Micrometers = Micrometers(i32::MAX);

    /// A perfect mechanism: the load follows the motor with the configured lash; the home
    /// switch closes at load <= 0.
    struct Mech {
        motor: i32,
        load: i32,
        lash: i32,
        offset: i32,
    }

    impl Mech {
        fn apply(&mut self, out: AxisOutput) {
            let n = out.steps as i32;
            if out.dir_deeper {
                self.motor += n;
                self.load = self.load.max(self.motor - self.lash);
            } else {
                self.motor -= n;
                self.load = self.load.min(self.motor);
            }
        }
        fn switch(&self) -> bool {
            self.load + self.offset <= 0
        }
    }

    fn run(axis: &mut DepthAxis, mech: &mut Mech, t: &mut u64, max_ticks: u32) -> AxisEvent {
        for _ in 0..max_ticks {
            *t += 1000;
            let out = axis.update(Micros(*t), mech.switch());
            mech.apply(out);
            if out.event != AxisEvent::None {
                return out.event;
            }
            if !axis.is_moving() {
                return AxisEvent::None;
            }
        }
        panic!("axis still moving after {max_ticks} ticks");
    }

    fn homed() -> (DepthAxis, Mech, u64) {
        let cfg = DepthConfig::default();
        let mut axis = DepthAxis::new(&cfg);
        let mut mech = Mech {
            motor: 0,
            load: 0,
            lash: axis.to_steps(cfg.backlash),
            offset: 600,
        };
        let mut t = 0;
        axis.start_homing(Micros(t));
        assert_eq!(run(&mut axis, &mut mech, &mut t, 10_000), AxisEvent::Homed);
        (axis, mech, t)
    }

    #[test]
    fn homing_references_at_switch_trigger() {
        let (axis, mech, _) = homed();
        assert!(axis.is_referenced());
        assert_eq!(axis.position(), Micrometers(0));
        // The switch closed on the last step: the true load sits at the trigger point.
        assert_eq!(mech.load + mech.offset, 0);
    }

    #[test]
    fn homing_fails_after_travel_limit_without_switch() {
        let cfg = DepthConfig::default();
        let mut axis = DepthAxis::new(&cfg);
        let mut mech = Mech {
            motor: 0,
            load: 0,
            lash: 0,
            offset: 1_000_000,
        };
        let mut t = 0;
        axis.start_homing(Micros(0));
        assert_eq!(run(&mut axis, &mut mech, &mut t, 20_000), AxisEvent::Fault);
        assert!(!axis.is_referenced());
        assert_eq!(-mech.motor, axis.to_steps(cfg.homing_travel_limit));
    }

    #[test]
    fn stuck_home_switch_fails_homing() {
        let mut axis = DepthAxis::new(&DepthConfig::default());
        let mut t = 0u64;
        axis.start_homing(Micros(0));
        let mut event = AxisEvent::None;
        for _ in 0..10_000 {
            t += 1000;
            event = axis.update(Micros(t), true).event;
            if event != AxisEvent::None {
                break;
            }
        }
        assert_eq!(event, AxisEvent::Fault);
    }

    #[test]
    fn moves_land_exactly_from_both_directions_with_lash() {
        let (mut axis, mut mech, mut t) = homed();
        for target in [1000, 2400, 500, 1200, 1150, 0, 50, 2450] {
            axis.move_to(Micrometers(target), NO_LIMIT, MoveSpeed::Normal, Micros(t))
                .unwrap();
            run(&mut axis, &mut mech, &mut t, 10_000);
            let truth = mech.load + mech.offset;
            assert_eq!(truth, axis.to_steps(Micrometers(target)), "target {target}");
            assert_eq!(axis.position(), Micrometers(target));
        }
    }

    #[test]
    fn homing_measures_the_real_lash_and_moves_use_it() {
        for real in [0, 3, 30, 70] {
            let cfg = DepthConfig::default();
            let mut axis = DepthAxis::new(&cfg);
            let mut mech = Mech {
                motor: 0,
                load: 0,
                lash: real,
                offset: 600,
            };
            let mut t = 0;
            axis.start_homing(Micros(t));
            assert_eq!(run(&mut axis, &mut mech, &mut t, 20_000), AxisEvent::Homed);
            assert_eq!(axis.lash(), axis.to_um(real), "real lash {real} steps");
            assert_eq!(
                mech.load + mech.offset,
                0,
                "homing ends at the trigger point"
            );
            for target in [1000, 400, 1200] {
                axis.move_to(Micrometers(target), NO_LIMIT, MoveSpeed::Normal, Micros(t))
                    .unwrap();
                run(&mut axis, &mut mech, &mut t, 10_000);
                assert_eq!(mech.load + mech.offset, axis.to_steps(Micrometers(target)));
                assert_eq!(axis.position(), Micrometers(target));
            }
        }
    }

    #[test]
    fn lash_longer_than_the_back_off_fails_homing() {
        let cfg = DepthConfig::default();
        let mut axis = DepthAxis::new(&cfg);
        let mut mech = Mech {
            motor: 0,
            load: 0,
            lash: axis.to_steps(cfg.homing_backoff) + 1,
            offset: 600,
        };
        let mut t = 0;
        axis.start_homing(Micros(t));
        assert_eq!(run(&mut axis, &mut mech, &mut t, 20_000), AxisEvent::Fault);
        assert!(!axis.is_referenced());
    }

    #[test]
    fn targets_are_clamped_to_soft_limits() {
        let (mut axis, mut mech, mut t) = homed();
        axis.move_to(Micrometers(9_000), NO_LIMIT, MoveSpeed::Normal, Micros(t))
            .unwrap();
        run(&mut axis, &mut mech, &mut t, 10_000);
        // At the limit the motor cannot pass the target to take up the lash from below: the
        // needle ends short by the lash, and the axis knows it.
        assert_eq!(mech.motor + mech.offset, axis.to_steps(Micrometers(2_500)));
        assert_eq!(axis.position(), Micrometers(2_500 - 20));
        assert_eq!(axis.to_steps(axis.position()), mech.load + mech.offset);
        axis.move_to(Micrometers(-100), NO_LIMIT, MoveSpeed::Normal, Micros(t))
            .unwrap();
        run(&mut axis, &mut mech, &mut t, 10_000);
        assert_eq!(axis.position(), Micrometers(0));
    }

    #[test]
    fn the_motor_never_passes_the_limit_of_a_move() {
        let (mut axis, mut mech, mut t) = homed();
        let limit = Micrometers(1_501);
        let limit_steps = 600; // 1501 um rounds down to 600 steps of 2.5 um
        for target in [1_400, 1_501, 1_499, 200, 1_500, 1_000, 9_000] {
            axis.move_to(Micrometers(target), limit, MoveSpeed::Normal, Micros(t))
                .unwrap();
            for _ in 0..10_000 {
                t += 1000;
                let out = axis.update(Micros(t), mech.switch());
                mech.apply(out);
                assert!(mech.motor + mech.offset <= limit_steps, "target {target}");
                if !axis.is_moving() {
                    break;
                }
            }
            assert!(mech.load + mech.offset <= axis.to_steps(Micrometers(target)));
        }
    }

    #[test]
    fn never_more_than_max_steps_per_tick_even_after_a_late_tick() {
        let (mut axis, _mech, t) = homed();
        axis.move_to(Micrometers(2_500), NO_LIMIT, MoveSpeed::Normal, Micros(t))
            .unwrap();
        let _ = axis.update(Micros(t + 1000), false);
        let out = axis.update(Micros(t + 900_000), false);
        assert!(out.steps <= DepthConfig::default().max_steps_per_tick);
    }

    #[test]
    fn running_moves_are_slower() {
        let (mut axis, mut mech, mut t) = homed();
        let start = t;
        axis.move_to(Micrometers(1000), NO_LIMIT, MoveSpeed::Normal, Micros(t))
            .unwrap();
        run(&mut axis, &mut mech, &mut t, 10_000);
        let normal = t - start;
        let start = t;
        axis.move_to(Micrometers(2000), NO_LIMIT, MoveSpeed::Running, Micros(t))
            .unwrap();
        run(&mut axis, &mut mech, &mut t, 10_000);
        // 1 mm at 0.5 mm/s is about 2 s.
        assert!(t - start >= 1_900_000, "running move took {} us", t - start);
        assert!(normal < 600_000, "normal move took {normal} us");
    }

    #[test]
    fn switch_pressed_deep_in_travel_is_a_fault() {
        let (mut axis, mut mech, mut t) = homed();
        axis.move_to(Micrometers(1000), NO_LIMIT, MoveSpeed::Normal, Micros(t))
            .unwrap();
        run(&mut axis, &mut mech, &mut t, 10_000);
        assert_eq!(axis.update(Micros(t + 1000), true).event, AxisEvent::Fault);
    }

    #[test]
    fn moves_refused_unhomed_or_busy() {
        let mut axis = DepthAxis::new(&DepthConfig::default());
        assert_eq!(
            axis.move_to(Micrometers(10), NO_LIMIT, MoveSpeed::Normal, Micros(0)),
            Err(MoveError::NotHomed)
        );
        let (mut axis, _, t) = homed();
        axis.move_to(Micrometers(1000), NO_LIMIT, MoveSpeed::Normal, Micros(t))
            .unwrap();
        assert_eq!(
            axis.move_to(Micrometers(10), NO_LIMIT, MoveSpeed::Normal, Micros(t)),
            Err(MoveError::Busy)
        );
    }
}
