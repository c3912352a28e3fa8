//! [`SimRig`]: a handle on the simulated world for tests, jigs and the host's sim backend.

use std::sync::{Arc, Mutex};

use needle_core::units::Micros;
use needle_core::Controller;

use crate::hardware::{lock, SimHardware};
use crate::physics::{Injection, SimParams, Truth, World};

/// A handle on the simulated world. Clones share the same world.
#[derive(Debug, Clone)]
pub struct SimRig {
    world: Arc<Mutex<World>>,
}

impl SimRig {
    /// A rig at rest at time zero.
    pub fn new(params: SimParams) -> Self {
        Self {
            world: Arc::new(Mutex::new(World::new(params))),
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
            self.advance_to(t);
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
