//! The simulated rig as a backend: needle-sim in real time. The control thread advances the
//! physics to the wall clock each tick; technicians reach the rig's switches and faults
//! through the sim endpoints of the API.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use needle_core::units::Micros;
use needle_sim::{Injection, SimParams, SimRig};

use crate::cartridge::SimChip;
use crate::control::TickClock;
use crate::hal::ChipFault;

/// The sim's cartridge slot: the seated cartridge's authenticator chip (its readable tag,
/// its key or a forger's stand-in, its use counter), if any, and how long a tag read takes
/// (a slow I2C bus, injectable).
#[derive(Debug, Clone, Default)]
pub struct SimTagSlot(Arc<Mutex<Option<SimChip>>>, Arc<AtomicU64>);

impl SimTagSlot {
    /// Makes every tag read take `ms` (0: instant).
    pub fn set_read_delay_ms(&self, ms: u64) {
        self.1.store(ms, Ordering::Release);
    }

    /// The image of the seated cartridge's tag.
    pub fn read(&self) -> Option<Vec<u8>> {
        self.chip().map(|c| c.memory)
    }

    /// The seated cartridge's chip, as it is now (counter included).
    pub fn chip(&self) -> Option<SimChip> {
        self.lock().clone()
    }

    fn set(&self, chip: Option<SimChip>) {
        *self.lock() = chip;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<SimChip>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl crate::hal::CartridgeChip for SimTagSlot {
    fn read_tag(&mut self) -> Result<Option<Vec<u8>>, crate::hal::HalError> {
        let delay = self.1.load(Ordering::Acquire);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        Ok(self.read())
    }

    fn sign_challenge(&mut self, nonce: &[u8; 32]) -> Result<Vec<u8>, ChipFault> {
        self.lock()
            .as_ref()
            .and_then(|c| c.answer(nonce))
            .ok_or(ChipFault::NoAnswer)
    }

    fn read_counter(&mut self) -> Result<u32, ChipFault> {
        match self.lock().as_ref() {
            Some(c) if c.secret().is_some() => Ok(c.counter),
            _ => Err(ChipFault::NoAnswer),
        }
    }

    fn advance_counter(&mut self) -> Result<u32, ChipFault> {
        match self.lock().as_mut() {
            // A real counter stops at its limit; so does this one (refused, not wrapped).
            Some(c) if c.secret().is_some() => {
                c.counter = c.counter.checked_add(1).ok_or(ChipFault::NoAnswer)?;
                Ok(c.counter)
            }
            _ => Err(ChipFault::NoAnswer),
        }
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

    /// Seats a cartridge with `chip` (or no readable chip); returns the sim time it was
    /// seated at.
    pub fn seat_cartridge(&self, chip: Option<SimChip>) -> Micros {
        self.tag.set(chip);
        self.rig.inject(Injection::Cartridge(true))
    }

    /// Pulls the cartridge; returns the sim time it was pulled at and its chip, which keeps
    /// its state (the use counter) wherever it is seated next.
    pub fn pull_cartridge(&self) -> (Micros, Option<SimChip>) {
        let at = self.rig.inject(Injection::Cartridge(false));
        let chip = self.tag.chip();
        self.tag.set(None);
        (at, chip)
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
    use crate::cartridge::SimAnswers;

    #[test]
    fn seating_and_pulling_sets_switch_and_tag() {
        let sim = SimBackend::new(SimParams::default());
        sim.seat_cartridge(Some(SimChip {
            memory: vec![1, 2, 3],
            answers: SimAnswers::Nothing,
            counter: 0,
        }));
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
