//! The pen's dead-man over the link: what refreshes it, in-process (the pen's dispatcher with
//! the simulated rig, the host's end of the link, bytes handed across by hand, so a frame can
//! be lost on purpose).

use needle_core::units::Micros;
use needle_core::{Command, ControllerConfig};
use needle_link::{FromPen, HostLink, PenId, Reliable};
use needle_pen::Pen;
use needle_sim::{SimHardware, SimParams, SimRig};

struct Bench {
    pen: Pen<SimHardware>,
    host: HostLink,
    now: Micros,
}

impl Bench {
    /// Host bytes to the pen, now; returns what the pen said back.
    fn deliver(&mut self) -> Vec<FromPen> {
        let bytes = self.take_host();
        self.pen.receive(&bytes, self.now);
        let out = self.pen.pending().to_vec();
        self.pen.consume(out.len());
        out.iter()
            .filter_map(|b| self.host.receive(*b, self.now))
            .collect()
    }

    /// The host's queued bytes, taken off its queue (sent, or lost if dropped).
    fn take_host(&mut self) -> Vec<u8> {
        let bytes = self.host.pending().to_vec();
        self.host.consume(bytes.len());
        bytes
    }

    /// One pen tick, 1 ms after the last.
    fn tick(&mut self) {
        self.now = Micros(self.now.0 + 1_000);
        self.pen.tick(self.now);
        let out = self.pen.pending().len();
        self.pen.consume(out);
    }
}

#[test]
fn a_heartbeat_feeds_the_dead_man_only_once_every_command_before_it_is_applied() {
    let rig = SimRig::new(SimParams::default());
    let mut b = Bench {
        pen: Pen::new(rig.hardware(), PenId(*b"HEARTBT1")),
        host: HostLink::new(Micros(5_000)),
        now: Micros(0),
    };
    b.host.identify();
    let said = b.deliver();
    let Some(FromPen::Identity { next_seq, .. }) = said.first().copied() else {
        panic!("no identity: {said:?}");
    };
    b.host.start(next_seq);
    let configure = Reliable::Configure {
        config: ControllerConfig::default(),
        telemetry_every: 1,
    };
    b.host.send_reliable(configure, b.now).unwrap();
    b.deliver();
    assert!(b.pen.controller().is_some(), "configured");

    // A heartbeat with every command through: the controller takes it, unanswered.
    b.tick();
    b.host.heartbeat().unwrap();
    assert!(b.deliver().is_empty(), "a heartbeat gets no answer");
    assert_eq!(b.pen.last_refresh(), Some(Micros(1_000)));

    // A command lost on the line, then a heartbeat: the dead-man is not fed.
    b.tick();
    let numbered = Reliable::Command(Command::Heartbeat);
    b.host.send_reliable(numbered, b.now).unwrap();
    let _lost = b.take_host();
    b.host.heartbeat().unwrap();
    b.deliver();
    assert_eq!(
        b.pen.last_refresh(),
        Some(Micros(1_000)),
        "a heartbeat behind a lost command fed the dead-man"
    );
    assert_eq!(b.pen.link().counters().out_of_order, 1);

    // The command's retransmission is applied (and, accepted, refreshes); then heartbeats
    // feed it again.
    for _ in 0..5 {
        b.tick();
    }
    b.host.poll(b.now);
    let verdicts = b.deliver();
    assert!(
        matches!(verdicts.as_slice(), [FromPen::Verdict { .. }]),
        "{verdicts:?}"
    );
    assert_eq!(b.pen.last_refresh(), Some(Micros(7_000)));
    b.tick();
    b.host.heartbeat().unwrap();
    b.deliver();
    assert_eq!(b.pen.last_refresh(), Some(Micros(8_000)));
}
