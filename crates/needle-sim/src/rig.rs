//! [`SimRig`]: a handle on the simulated world for tests, jigs and the host's sim backend.

use std::sync::{Arc, Mutex};

use needle_core::units::Micros;
use needle_core::Controller;

use crate::hardware::{lock, SimHardware};
use crate::physics::{Injection, SimParams, Truth, World};
use crate::ticks::TickLog;

/// A handle on the simulated world. Clones share the same world.
#[derive(Debug, Clone)]
pub struct SimRig {
    world: Arc<Mutex<World>>,
    ticks: Arc<Mutex<TickLog>>,
}

impl SimRig {
    /// A rig at rest at time zero.
    pub fn new(params: SimParams) -> Self {
        Self {
            world: Arc::new(Mutex::new(World::new(params))),
            ticks: Arc::new(Mutex::new(TickLog::default())),
        }
    }

    /// The parts of the rig for a controller.
    pub fn hardware(&self) -> SimHardware {
        SimHardware::new(&self.world)
    }

    /// The simulation's clock.
    pub fn now(&self) -> Micros {
        lock(&self.world).now
    }

    /// Integrates the physics up to `t` (virtual time: as fast as the CPU allows).
    pub fn advance_to(&self, t: Micros) {
        lock(&self.world).advance_to(t);
    }

    /// Integrates the physics up to `t` for a control tick at `t`, and notes the tick in the
    /// rig's [`TickLog`]: a controller driven this way can be judged against its own schedule.
    /// The tick is noted before the controller runs it, so every output it writes at `t` is
    /// seen after its tick.
    pub fn tick_to(&self, t: Micros) {
        let mut world = lock(&self.world);
        world.advance_to(t);
        // Lock order: world, then ticks (nothing takes them the other way round).
        self.tick_log().push(world.now);
    }

    fn tick_log(&self) -> std::sync::MutexGuard<'_, TickLog> {
        self.ticks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Control ticks the rig has seen (through [`SimRig::tick_to`] or [`SimRig::run`]).
    pub fn ticks(&self) -> u64 {
        self.tick_log().total()
    }

    /// Control ticks in `(after, until]` of sim time, or `None` where the log no longer
    /// reaches back to `after`.
    pub fn ticks_between(&self, after: Micros, until: Micros) -> Option<u64> {
        self.tick_log().between(after, until)
    }

    /// Applies an injection now and returns the simulation time it was applied at.
    pub fn inject(&self, injection: Injection) -> Micros {
        let mut world = lock(&self.world);
        world.inject(injection);
        world.now
    }

    /// Applies an injection when the simulation reaches `at`.
    pub fn schedule(&self, at: Micros, injection: Injection) {
        lock(&self.world).schedule(at, injection);
    }

    /// The physical truth now.
    pub fn truth(&self) -> Truth {
        lock(&self.world).truth()
    }

    /// Whether the host link is cut by an injection.
    pub fn host_silent(&self) -> bool {
        lock(&self.world).host_silent
    }

    /// Whether the cartridge is seated.
    pub fn cartridge_seated(&self) -> bool {
        lock(&self.world).cartridge
    }

    /// Runs `ctrl` at its configured tick period for at most `duration` of virtual time, or
    /// until `until` holds after a tick. Sends a heartbeat each tick unless the host link is
    /// cut. Returns the virtual time spent.
    pub fn run(
        &self,
        ctrl: &mut Controller<SimHardware>,
        duration: Micros,
        mut until: impl FnMut(&Controller<SimHardware>) -> bool,
    ) -> Micros {
        let period = ctrl.config().safety.tick_period;
        let start = self.now();
        let end = start.saturating_add(duration);
        while self.now() < end {
            let t = self.now().saturating_add(period);
            self.tick_to(t);
            if !self.host_silent() {
                // The host refreshes the dead-man between ticks; a refusal cannot happen.
                let _ = ctrl.handle(needle_core::Command::Heartbeat);
            }
            ctrl.tick(t);
            if until(ctrl) {
                break;
            }
        }
        self.now().since(start)
    }
}

#[cfg(test)]
mod tests {
    use needle_core::{Command, ControllerConfig, State};

    use super::*;

    #[test]
    fn a_run_notes_every_tick_at_the_time_the_controller_ran_it() {
        let rig = SimRig::new(SimParams::default());
        let mut ctrl = Controller::new(rig.hardware(), ControllerConfig::default()).unwrap();
        let period = ctrl.config().safety.tick_period;
        let _ = ctrl.handle(Command::Home);
        rig.run(&mut ctrl, Micros(period.0 * 10), |_| false);
        assert_eq!(rig.ticks(), 10);
        assert_eq!(rig.ticks_between(Micros::ZERO, rig.now()), Some(10));
        assert_eq!(
            rig.ticks_between(Micros(period.0 * 3), Micros(period.0 * 5)),
            Some(2)
        );
        assert_ne!(ctrl.state(), State::Boot);
    }
}
