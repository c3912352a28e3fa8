//! The simulated rig as a backend: needle-sim in real time. The control thread advances the
//! physics to the wall clock each tick; technicians reach the rig's switches and faults
//! through the sim endpoints of the API.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use needle_core::units::Micros;
use needle_sim::{Injection, SimParams, SimRig};

use crate::control::TickClock;

/// The sim's cartridge tag slot: the EEPROM image of the seated cartridge, if any, and how
/// long a read takes (a slow I2C bus, injectable).
#[derive(Debug, Clone, Default)]
pub struct SimTagSlot(Arc<Mutex<Option<Vec<u8>>>>, Arc<AtomicU64>);

impl SimTagSlot {
    /// Makes every tag read take `ms` (0: instant).
    pub fn set_read_delay_ms(&self, ms: u64) {
        self.1.store(ms, Ordering::Release);
    }

    /// The image of the seated cartridge's tag.
    pub fn read(&self) -> Option<Vec<u8>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, image: Option<Vec<u8>>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = image;
    }
}

impl crate::hal::TagReader for SimTagSlot {
    fn read_tag(&mut self) -> Result<Option<Vec<u8>>, crate::hal::HalError> {
        let delay = self.1.load(Ordering::Acquire);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        Ok(self.read())
    }
}

/// The running simulated rig and its controls.
#[derive(Debug, Clone)]
pub struct SimBackend {
    /// The rig (shared with the control thread's hardware).
    pub rig: SimRig,
    /// The seated cartridge's tag.
    pub tag: SimTagSlot,
}

impl SimBackend {
    /// A rig at rest, no cartridge seated.
    pub fn new(params: SimParams) -> Self {
        Self {
            rig: SimRig::new(params),
            tag: SimTagSlot::default(),
        }
    }

    /// Seats a cartridge carrying `image` on its tag (or no readable tag); returns the sim
    /// time it was seated at.
    pub fn seat_cartridge(&self, image: Option<Vec<u8>>) -> Micros {
        self.tag.set(image);
        self.rig.inject(Injection::Cartridge(true))
    }

    /// Pulls the cartridge; returns the sim time it was pulled at.
    pub fn pull_cartridge(&self) -> Micros {
        let at = self.rig.inject(Injection::Cartridge(false));
        self.tag.set(None);
        at
    }

    /// The clock for the control thread: sim time is the monotonic time since start.
    pub fn clock(&self, start: Micros) -> SimClock {
        SimClock {
            rig: self.rig.clone(),
            start,
        }
    }
}

/// Advances the physics to the wall clock each tick, noting each tick in the rig's tick log.
pub struct SimClock {
    rig: SimRig,
    start: Micros,
}

impl TickClock for SimClock {
    fn controller_time(&mut self, monotonic: Micros) -> Micros {
        let t = monotonic.since(self.start);
        self.rig.tick_to(t);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seating_and_pulling_sets_switch_and_tag() {
        let sim = SimBackend::new(SimParams::default());
        sim.seat_cartridge(Some(vec![1, 2, 3]));
        assert!(sim.rig.cartridge_seated());
        assert_eq!(sim.tag.read(), Some(vec![1, 2, 3]));
        sim.pull_cartridge();
        assert!(!sim.rig.cartridge_seated());
        assert_eq!(sim.tag.read(), None);
    }

    #[test]
    fn clock_advances_physics_to_wall_time() {
        let sim = SimBackend::new(SimParams::default());
        let mut clock = sim.clock(Micros(5_000_000));
        assert_eq!(clock.controller_time(Micros(5_010_000)), Micros(10_000));
        assert_eq!(sim.rig.now(), Micros(10_000));
        assert_eq!(sim.rig.ticks(), 1);
    }
}
