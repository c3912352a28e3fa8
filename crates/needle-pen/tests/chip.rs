//! The dispatcher's chip relay, in one process with the pen's virtual clock: a chip request
//! is started once and polled each tick (the tick never waits for it), a request while the
//! chip works is answered `Busy` without disturbing it, the answer goes out in the tick the
//! chip finishes, and a repeat of an answered request is answered from the link's memory
//! without running the chip again.

use std::cell::RefCell;
use std::rc::Rc;

use needle_core::units::Micros;
use needle_link::{ChipAnswer, ChipCommand, FromPen, HostLink, PenId};
use needle_pen::{Chip, Pen};
use needle_sim::{SimParams, SimRig};

/// A chip that takes `ticks` polls to answer each command, and logs what it was asked.
struct SlowChip {
    ticks: u32,
    running: Option<(ChipCommand, u32)>,
    started: Rc<RefCell<Vec<ChipCommand>>>,
    counter: u32,
}

impl Chip for SlowChip {
    fn start(&mut self, command: ChipCommand) -> Result<(), ChipAnswer> {
        assert!(self.running.is_none(), "started while running");
        self.started.borrow_mut().push(command);
        self.running = Some((command, self.ticks));
        Ok(())
    }

    fn poll(&mut self) -> Option<ChipAnswer> {
        let (command, left) = self.running.as_mut()?;
        if *left > 1 {
            *left -= 1;
            return None;
        }
        let command = *command;
        self.running = None;
        Some(match command {
            ChipCommand::AdvanceCounter => {
                self.counter += 1;
                ChipAnswer::Counter(self.counter)
            }
            ChipCommand::ReadCounter => ChipAnswer::Counter(self.counter),
            ChipCommand::Sign(nonce) => ChipAnswer::Signed { r: nonce, s: nonce },
        })
    }
}

struct Wire {
    pen: Pen<needle_sim::SimHardware, SlowChip>,
    host: HostLink,
    now: Micros,
}

impl Wire {
    /// Host to pen, one pen tick, pen to host: what the host got.
    fn tick(&mut self) -> Vec<FromPen> {
        let bytes = self.host.pending().to_vec();
        self.host.consume(bytes.len());
        self.now = self.now.saturating_add(Micros(1_000));
        self.pen.receive(&bytes, self.now);
        self.pen.tick(self.now);
        let out = self.pen.pending().to_vec();
        self.pen.consume(out.len());
        out.into_iter()
            .filter_map(|b| self.host.receive(b, self.now))
            .collect()
    }

    fn chip_answers(&mut self) -> Vec<(u32, ChipAnswer)> {
        self.tick()
            .into_iter()
            .filter_map(|m| match m {
                FromPen::Chip { request, answer } => Some((request, answer)),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn a_chip_request_is_polled_each_tick_answered_once_and_a_second_meanwhile_is_busy() {
    let rig = SimRig::new(SimParams::default());
    let started = Rc::new(RefCell::new(Vec::new()));
    let chip = SlowChip {
        ticks: 20,
        running: None,
        started: Rc::clone(&started),
        counter: 4,
    };
    let mut w = Wire {
        pen: Pen::with_chip(rig.hardware(), PenId(*b"CHIPTEST"), chip),
        host: HostLink::new(Micros(20_000)),
        now: Micros::ZERO,
    };
    w.host.identify();
    w.tick();
    w.host.chip(1_000, ChipCommand::AdvanceCounter);
    // The tick that carries the request starts the chip and answers nothing yet.
    assert_eq!(w.chip_answers(), []);
    // Meanwhile another request: busy at once, and the running one is left alone.
    w.host.chip(1_001, ChipCommand::ReadCounter);
    assert_eq!(w.chip_answers(), [(1_001, ChipAnswer::Busy)]);
    // Ticks since the one that carried the request: it and the busy one.
    let mut ticks = 2u32;
    let answer = loop {
        let got = w.chip_answers();
        ticks += 1;
        if !got.is_empty() {
            break got;
        }
        assert!(ticks < 100, "never answered");
    };
    assert_eq!(answer, [(1_000, ChipAnswer::Counter(5))]);
    assert_eq!(ticks, 20, "answered in the tick of the chip's 20th poll");
    // The answer was lost: the host asks again under the same number; the chip is not run.
    w.host.chip(1_000, ChipCommand::AdvanceCounter);
    assert_eq!(w.chip_answers(), [(1_000, ChipAnswer::Counter(5))]);
    assert_eq!(*started.borrow(), [ChipCommand::AdvanceCounter]);
    // The pen ticked throughout: no tick waited for the chip.
    assert_eq!(w.pen.ticks(), u64::from(ticks) + 2);
}
