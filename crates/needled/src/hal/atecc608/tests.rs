//! The ATECC608 driver against [`FakeAtecc`]: a bus-level model of the chip that parses and
//! CRC-checks command packets, keeps TempKey, signs with a real P-256 key and counts.

use std::collections::VecDeque;

use embedded_hal::i2c::{self, Operation};
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::ecdsa::{Signature, SigningKey};
use proptest::prelude::*;

use super::*;
use crate::cartridge::{
    compressed, image_of, parse, provision_test, test_factory_key, verify_answer, Date, Needles,
    TagData, TrustStore,
};
use crate::hal::fakes::{FakeI2cError, NACK};

const ADDRESS: u8 = 0x60;
const SLOTS: AteccSlots = AteccSlots {
    address: ADDRESS,
    tag_slot: 8,
    key_slot: 0,
    counter: 1,
};

/// A fake ATECC608 at [`ADDRESS`].
struct FakeAtecc {
    present: bool,
    awake: bool,
    tempkey: Option<[u8; 32]>,
    slot8: Vec<u8>,
    key: SigningKey,
    key_slot: u16,
    counters: [u32; 2],
    response: Option<Vec<u8>>,
    /// Reads not acknowledged after each command (the chip busy).
    busy_reads: u32,
    busy_left: u32,
    /// Never answer after a command.
    silent: bool,
    /// Answer every command with this status.
    status: Option<u8>,
    /// Flip a bit of every response's CRC.
    bad_crc: bool,
    /// Cut every data response to this many data bytes (with a correct CRC).
    short_data: Option<usize>,
    /// Not acknowledge command writes.
    nack_commands: bool,
    /// A bus error (not a NACK) on reads.
    read_error: bool,
    /// The wake response, instead of the real one.
    wake_response: Option<[u8; 4]>,
    /// Wake tokens seen, command packets seen (opcodes), sleeps.
    wakes: u32,
    opcodes: Vec<u8>,
    sleeps: u32,
    /// Reads not acknowledged.
    nacked_reads: u32,
}

impl FakeAtecc {
    fn new() -> Self {
        Self {
            present: true,
            awake: false,
            tempkey: None,
            slot8: vec![0; 416],
            key: SigningKey::from_slice(&[0x42; 32]).expect("valid scalar"),
            key_slot: 0,
            counters: [0, 0],
            response: None,
            busy_reads: 2,
            busy_left: 0,
            silent: false,
            status: None,
            bad_crc: false,
            short_data: None,
            nack_commands: false,
            read_error: false,
            wake_response: None,
            wakes: 0,
            opcodes: vec![],
            sleeps: 0,
            nacked_reads: 0,
        }
    }

    fn packet(&self, data: &[u8]) -> Vec<u8> {
        let data = match self.short_data {
            Some(n) if data.len() > 1 => data.get(..n).unwrap_or(data),
            _ => data,
        };
        let mut p = vec![u8::try_from(data.len() + 3).expect("short")];
        p.extend_from_slice(data);
        let mut crc = crc16(&p);
        if self.bad_crc {
            crc ^= 1;
        }
        p.extend_from_slice(&crc.to_le_bytes());
        p
    }

    fn status_packet(&self, status: u8) -> Vec<u8> {
        let mut p = vec![4, status];
        let mut crc = crc16(&p);
        if self.bad_crc {
            crc ^= 1;
        }
        p.extend_from_slice(&crc.to_le_bytes());
        p
    }

    /// Executes one command packet (word address stripped).
    fn command(&mut self, packet: &[u8]) -> Vec<u8> {
        let count = usize::from(packet[0]);
        if count != packet.len() || count < 7 {
            return self.status_packet(0x03);
        }
        let (body, crc) = packet.split_at(count - 2);
        if crc16(body).to_le_bytes() != [crc[0], crc[1]] {
            return self.status_packet(0xFF);
        }
        let (opcode, p1, p2, data) = (
            body[1],
            body[2],
            u16::from_le_bytes([body[3], body[4]]),
            &body[5..],
        );
        self.opcodes.push(opcode);
        if let Some(status) = self.status {
            return self.status_packet(status);
        }
        match (opcode, p1) {
            (0x02, 0x82) => {
                let (slot, block) = ((p2 >> 3) & 0x0F, usize::from(p2 >> 8));
                match self.slot8.get(block * 32..block * 32 + 32) {
                    Some(bytes) if slot == 8 && p2 & 7 == 0 => self.packet(bytes),
                    _ => self.status_packet(0x0F),
                }
            }
            (0x16, 0x03) if p2 == 0 && data.len() == 32 => {
                self.tempkey = data.try_into().ok();
                self.status_packet(0x00)
            }
            (0x41, 0x80) if p2 == self.key_slot => match self.tempkey.take() {
                Some(message) => {
                    let signature: Signature = self.key.sign_prehash(&message).expect("signs");
                    self.packet(&signature.to_bytes())
                }
                None => self.status_packet(0x0F),
            },
            (0x24, mode @ (0 | 1)) if p2 < 2 => {
                let counter = &mut self.counters[usize::from(p2)];
                if mode == 1 {
                    if *counter >= COUNTER_MAX {
                        return self.status_packet(0x0F);
                    }
                    *counter += 1;
                }
                let value = *counter;
                self.packet(&value.to_le_bytes())
            }
            _ => self.status_packet(0x03),
        }
    }
}

impl i2c::ErrorType for FakeAtecc {
    type Error = FakeI2cError;
}

impl I2c for FakeAtecc {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), FakeI2cError> {
        let [operation] = operations else {
            return Err(FakeI2cError(i2c::ErrorKind::Other));
        };
        if address == 0x00 {
            // The wake token: SDA low, and no byte for the general call's listeners.
            assert!(
                matches!(operation, Operation::Write(bytes) if bytes.is_empty()),
                "the wake token is a zero-length write"
            );
            if self.present && !self.awake {
                self.awake = true;
                self.wakes += 1;
                self.response = Some(self.wake_response.unwrap_or(WAKE_RESPONSE).to_vec());
            }
            return Err(NACK);
        }
        if !self.present || address != ADDRESS || !self.awake {
            return Err(NACK);
        }
        match operation {
            Operation::Write(bytes) => match bytes.split_first() {
                Some((&WORD_SLEEP, [])) => {
                    self.awake = false;
                    self.tempkey = None;
                    self.sleeps += 1;
                    Ok(())
                }
                Some((&WORD_COMMAND, packet)) => {
                    if self.nack_commands {
                        return Err(NACK);
                    }
                    let response = self.command(packet);
                    self.response = Some(response);
                    self.busy_left = self.busy_reads;
                    Ok(())
                }
                _ => Err(FakeI2cError(i2c::ErrorKind::Other)),
            },
            Operation::Read(buf) => {
                if self.read_error {
                    return Err(FakeI2cError(i2c::ErrorKind::Bus));
                }
                if self.silent && !self.opcodes.is_empty() || self.busy_left > 0 {
                    self.busy_left = self.busy_left.saturating_sub(1);
                    self.nacked_reads += 1;
                    return Err(NACK);
                }
                buf.fill(0xFF);
                if let Some(response) = self.response.take() {
                    for (dst, src) in buf.iter_mut().zip(&response) {
                        *dst = *src;
                    }
                }
                Ok(())
            }
        }
    }
}

/// A delay that only counts.
#[derive(Debug, Default)]
struct CountingDelay {
    total_us: u64,
}

impl DelayNs for CountingDelay {
    fn delay_ns(&mut self, ns: u32) {
        self.total_us += u64::from(ns / 1_000);
    }
    fn delay_us(&mut self, us: u32) {
        self.total_us += u64::from(us);
    }
}

fn driver(fake: FakeAtecc) -> Atecc608<FakeAtecc, CountingDelay> {
    Atecc608::new(
        fake,
        CountingDelay::default(),
        SLOTS,
        "ATECC608 at 0x60 on /dev/i2c-1",
        "hardware.linux.atecc608",
    )
}

fn fake(chip: &mut Atecc608<FakeAtecc, CountingDelay>) -> &mut FakeAtecc {
    &mut chip.i2c
}

#[test]
fn crc_matches_the_datasheet_wake_response_and_packets_carry_it() {
    // The datasheet's wake response 04 11 33 43: CRC 0x4333 of [04 11], sent LE.
    assert_eq!(crc16(&[0x04, 0x11]), 0x4333);
    assert_eq!(crc16(&[]), 0);
    // Read of slot 8 block 1: 03 07 02 82 40 01 crc (slot 8 << 3, block 1 << 8).
    let packet = command_packet(Opcode::Read, 0x82, data_address(8, 1), &[]);
    assert_eq!(&packet[..6], &[0x03, 0x07, 0x02, 0x82, 0x40, 0x01]);
    assert_eq!(crc16(&packet[1..6]).to_le_bytes(), [packet[6], packet[7]]);
    // The CRC covers count..data: a flipped bit anywhere changes it.
    let mut flipped = packet.clone();
    flipped[3] ^= 0x10;
    assert_ne!(crc16(&flipped[1..6]), crc16(&packet[1..6]));
}

#[test]
fn wake_read_tag_and_sleep() {
    let made = provision_test(
        &TagData::new(
            "C-7",
            "L-7",
            Needles::Pins24,
            Date::new(2031, 1, 1).expect("date"),
        )
        .expect("valid"),
    )
    .expect("provisions");
    let mut chip_fake = FakeAtecc::new();
    chip_fake.slot8[..TAG_CAPACITY].copy_from_slice(&image_of(&made.tag));
    let mut chip = driver(chip_fake);
    let image = chip.read_tag().expect("reads").expect("a chip answers");
    assert_eq!(image, image_of(&made.tag).to_vec());
    let f = test_factory_key();
    let mut trust = TrustStore::new();
    trust.trust(f.id(), &f.public_key()).expect("valid");
    assert!(parse(&image, &trust).is_ok());
    let fake = fake(&mut chip);
    assert_eq!(fake.wakes, 1);
    assert_eq!(fake.opcodes, vec![0x02; TAG_CAPACITY / BLOCK_LEN]);
    assert_eq!(fake.sleeps, 1);
    assert!(!fake.awake, "asleep after the read");
    // Each read was polled through the busy chip's NACKs.
    assert_eq!(fake.nacked_reads, 2 * 8);
}

#[test]
fn no_chip_is_no_tag_and_no_answer() {
    let mut absent = FakeAtecc::new();
    absent.present = false;
    let mut chip = driver(absent);
    assert_eq!(chip.read_tag().expect("no error"), None);
    assert!(matches!(chip.sign(&[7; 32]), Err(ChipFault::NoAnswer)));
    assert!(matches!(chip.read_counter(), Err(ChipFault::NoAnswer)));
    assert!(matches!(chip.advance_counter(), Err(ChipFault::NoAnswer)));
}

#[test]
fn the_chips_answer_verifies_with_its_public_key_and_only_for_its_nonce() {
    let fake_chip = FakeAtecc::new();
    let public = compressed(fake_chip.key.verifying_key());
    let mut chip = driver(fake_chip);
    let nonce = crate::cartridge::fresh_nonce();
    let answer = chip.sign_challenge(&nonce).expect("signs");
    assert_eq!(answer.len(), 64);
    assert_eq!(verify_answer(&public, &nonce, &answer), Ok(()));
    let other = [nonce[0] ^ 1; 32];
    assert!(verify_answer(&public, &other, &answer).is_err());
    let fake = fake(&mut chip);
    assert_eq!(fake.opcodes, vec![0x16, 0x41]);
    assert_eq!(fake.sleeps, 1);
    assert_eq!(fake.tempkey, None, "sleep clears TempKey");
    // The answer matches the sim chip's for the same key (deterministic RFC 6979 signing).
    let sim = crate::cartridge::SimChip {
        memory: vec![],
        answers: crate::cartridge::sim_key(&[0x42; 32]).expect("valid"),
        counter: 0,
    };
    assert_eq!(sim.answer(&nonce), Some(answer));
}

#[test]
fn counter_reads_and_advances_the_configured_counter() {
    let mut f = FakeAtecc::new();
    f.counters = [9, 0];
    let mut chip = driver(f);
    assert_eq!(chip.read_counter().expect("reads"), 0);
    assert_eq!(chip.advance_counter().expect("advances"), 1);
    assert_eq!(chip.read_counter().expect("reads"), 1);
    assert_eq!(fake(&mut chip).counters, [9, 1], "counter 1, not 0");
    // At its limit the chip refuses to count: an execution error, not a wrap.
    fake(&mut chip).counters[1] = COUNTER_MAX;
    assert!(matches!(
        chip.advance_counter(),
        Err(ChipFault::Status(0x0F))
    ));
    assert_eq!(chip.read_counter().expect("reads"), COUNTER_MAX);
}

#[test]
fn every_status_code_is_a_fault_naming_it() {
    for status in [0x01u8, 0x03, 0x05, 0x07, 0x08, 0x0F, 0x11, 0xEE, 0xFF] {
        let mut f = FakeAtecc::new();
        f.status = Some(status);
        let mut chip = driver(f);
        let fault = chip.sign(&[1; 32]).expect_err("refused");
        assert!(
            matches!(fault, ChipFault::Status(s) if s == status),
            "{fault:?}"
        );
        assert!(fault.to_string().contains(status_name(status)), "{fault}");
        assert!(matches!(chip.advance_counter(), Err(ChipFault::Status(s)) if s == status));
        let err = chip.read_tag().expect_err("refused").to_string();
        assert!(
            err.starts_with("ATECC608 at 0x60 on /dev/i2c-1 (hardware.linux.atecc608): "),
            "{err}"
        );
        assert_eq!(fake(&mut chip).counters, [0, 0], "nothing counted");
        assert!(!fake(&mut chip).awake, "asleep after a fault");
    }
    // A success status where data was due is not data.
    let mut f = FakeAtecc::new();
    f.status = Some(0x00);
    let mut chip = driver(f);
    assert!(matches!(chip.read_counter(), Err(ChipFault::Corrupt(_))));
}

#[test]
fn bad_crc_and_short_responses_are_corrupt() {
    let mut f = FakeAtecc::new();
    f.bad_crc = true;
    let mut chip = driver(f);
    assert!(matches!(chip.sign(&[1; 32]), Err(ChipFault::Corrupt(_))));
    assert!(matches!(chip.read_counter(), Err(ChipFault::Corrupt(_))));

    let mut f = FakeAtecc::new();
    f.short_data = Some(32);
    let mut chip = driver(f);
    assert!(matches!(chip.sign(&[1; 32]), Err(ChipFault::Corrupt(_))));
    let mut f = FakeAtecc::new();
    f.short_data = Some(2);
    let mut chip = driver(f);
    assert!(matches!(chip.read_counter(), Err(ChipFault::Corrupt(_))));
    assert!(chip.read_tag().is_err());

    // A count promising more than was read, a count below 4, nothing at all.
    assert!(matches!(
        parse_response(&[0x43, 1, 2, 3], Expect::Data(64)),
        Err(ChipFault::Corrupt(_))
    ));
    assert!(matches!(
        parse_response(&[0x02, 0, 0, 0], Expect::Success),
        Err(ChipFault::Corrupt(_))
    ));
    assert!(matches!(
        parse_response(&[], Expect::Success),
        Err(ChipFault::Corrupt(_))
    ));
}

#[test]
fn a_wrong_wake_response_is_a_fault() {
    let mut f = FakeAtecc::new();
    f.wake_response = Some([0x04, 0x11, 0x33, 0x44]);
    let mut chip = driver(f);
    assert!(matches!(chip.read_counter(), Err(ChipFault::Corrupt(_))));
    // A self-test failure reported at wake.
    let mut f = FakeAtecc::new();
    let mut p = vec![0x04, 0x07];
    p.extend_from_slice(&crc16(&p).to_le_bytes());
    f.wake_response = Some([p[0], p[1], p[2], p[3]]);
    let mut chip = driver(f);
    assert!(matches!(chip.read_counter(), Err(ChipFault::Status(0x07))));
    assert!(
        fake(&mut chip).opcodes.is_empty(),
        "no command after a bad wake"
    );
}

#[test]
fn a_silent_chip_times_out_after_the_commands_maximum_time() {
    let mut f = FakeAtecc::new();
    f.silent = true;
    let mut chip = driver(f);
    assert!(matches!(chip.sign(&[1; 32]), Err(ChipFault::Timeout)));
    let polls = Opcode::Nonce.max_exec_ms() + 1;
    assert_eq!(fake(&mut chip).nacked_reads, polls);
    // Polled for the command's maximum time, not forever: wake waits plus one poll each ms.
    let waited_us = chip.delay.total_us;
    let expected = u64::from(WAKE_HIGH_US) + u64::from(polls) * u64::from(POLL_US);
    assert_eq!(waited_us, expected);
    assert!(!fake(&mut chip).awake, "put to sleep after the timeout");
}

#[test]
fn nacked_commands_and_bus_errors_are_bus_faults() {
    let mut f = FakeAtecc::new();
    f.nack_commands = true;
    let mut chip = driver(f);
    assert!(matches!(chip.advance_counter(), Err(ChipFault::Bus(_))));
    assert_eq!(fake(&mut chip).counters, [0, 0]);
    let mut f = FakeAtecc::new();
    f.read_error = true;
    let mut chip = driver(f);
    assert!(matches!(chip.sign(&[1; 32]), Err(ChipFault::Bus(_))));
    assert!(chip.read_tag().is_err());
}

#[test]
fn slot_capacities_and_addresses() {
    assert_eq!(slot_capacity(8), Some(416));
    assert!(slot_capacity(9).is_some_and(|c| c < TAG_CAPACITY));
    assert_eq!(slot_capacity(16), None);
    assert_eq!(data_address(8, 0), 0x0040);
    assert_eq!(data_address(8, 7), 0x0740);
    let mut chip = Atecc608::new(
        FakeAtecc::new(),
        CountingDelay::default(),
        AteccSlots {
            tag_slot: 9,
            ..SLOTS
        },
        "d",
        "k",
    );
    assert!(chip.read_tag().is_err(), "a slot too small for the tag");
}

/// A bus whose every read returns the next scripted bytes (then NACKs).
struct ScriptedBus(VecDeque<Vec<u8>>);

impl i2c::ErrorType for ScriptedBus {
    type Error = FakeI2cError;
}

impl I2c for ScriptedBus {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), FakeI2cError> {
        if address == 0 {
            return Err(NACK);
        }
        for op in operations {
            if let Operation::Read(buf) = op {
                let next = self.0.pop_front().ok_or(NACK)?;
                buf.fill(0);
                for (d, s) in buf.iter_mut().zip(&next) {
                    *d = *s;
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #[test]
    fn arbitrary_responses_never_panic_and_are_accepted_only_with_a_right_crc(
        buf in proptest::collection::vec(any::<u8>(), 0..80),
        n in prop_oneof![Just(0usize), Just(4), Just(32), Just(64)],
    ) {
        let expect = if n == 0 { Expect::Success } else { Expect::Data(n) };
        if let Ok(data) = parse_response(&buf, expect) {
            let len = expect.packet_len();
            prop_assert_eq!(usize::from(buf[0]), len);
            prop_assert_eq!(data.len(), n);
            prop_assert_eq!(crc16(&buf[..len - 2]).to_le_bytes(), [buf[len - 2], buf[len - 1]]);
        }
    }

    #[test]
    fn arbitrary_bus_bytes_never_panic_the_driver(
        reads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..70), 0..4),
        wake_ok in any::<bool>(),
    ) {
        let mut script: VecDeque<Vec<u8>> = reads.into();
        if wake_ok {
            script.push_front(WAKE_RESPONSE.to_vec());
        }
        let mut chip = Atecc608::new(ScriptedBus(script.clone()), CountingDelay::default(), SLOTS, "d", "k");
        let signed = chip.sign(&[3; 32]);
        if let Ok(answer) = signed {
            // Only a CRC-valid 67-byte packet after a CRC-valid Nonce status can get here.
            prop_assert_eq!(answer.len(), 64);
            prop_assert!(script.iter().any(|r| r.len() >= 67 && r[0] == 67
                && crc16(&r[..65]).to_le_bytes() == [r[65], r[66]]));
        }
        let mut chip = Atecc608::new(ScriptedBus(script), CountingDelay::default(), SLOTS, "d", "k");
        if let Ok(value) = chip.read_counter() {
            prop_assert!(value <= COUNTER_MAX);
        }
    }
}

/// A [`FakeAtecc`] the test keeps a handle to while the service owns the driver.
#[derive(Clone)]
struct SharedFake(std::sync::Arc<std::sync::Mutex<FakeAtecc>>);

impl i2c::ErrorType for SharedFake {
    type Error = FakeI2cError;
}

impl I2c for SharedFake {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), FakeI2cError> {
        let mut fake = self.0.lock().unwrap_or_else(|p| p.into_inner());
        fake.transaction(address, operations)
    }
}

/// The service's own bind and arm, on the sim rig's motor but with this driver as the
/// cartridge reader: the chip's answers pass the same checks as the sim chip's, and the first
/// arming advances the chip's counter once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_binds_and_arms_through_the_driver_and_advances_the_chips_counter() {
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    use needle_core::units::{Micrometers, MilliHertz};
    use needle_core::{Controller, ControllerConfig};
    use needle_sim::{Injection, SimParams};

    use crate::control::{self, LoopConfig};
    use crate::hal::sim::SimBackend;
    use crate::session::{Actor, ChecklistSpec, CreateSession, Policy, Role, Service, Setpoints};
    use crate::store::{CartridgeLimits, Store};

    let sim = SimBackend::new(SimParams::default());
    let mut config = ControllerConfig::default();
    // A loaded shared machine: margins so a starved thread does not fault the session.
    config.safety.host_timeout = needle_core::units::Micros::from_millis(5_000);
    config.safety.max_tick_gap = needle_core::units::Micros::from_millis(5_000);
    let ctrl = Controller::new(sim.rig.hardware(), config).expect("controller");
    let handle = control::spawn(
        ctrl,
        sim.clock(control::monotonic_now()),
        LoopConfig {
            period: Duration::from_millis(1),
            realtime: false,
            cpu: None,
        },
    )
    .expect("control thread");
    let factory = test_factory_key();
    let mut trust = TrustStore::new();
    trust
        .trust(factory.id(), &factory.public_key())
        .expect("valid");
    let policy = Policy {
        areas: BTreeMap::from([("face".to_string(), Micrometers(1_500))]),
        checklist: vec![ChecklistSpec {
            id: "consent".into(),
            text: "consent given".into(),
            required: true,
        }],
        time_limit: Duration::from_secs(3_600),
        area_time_limits: BTreeMap::new(),
        warning_before: Duration::from_millis(500),
        min_interval: Duration::from_secs(0),
        limits: CartridgeLimits::default(),
        post_care: "keep it clean".into(),
        rate_range: (MilliHertz::from_hz(80), MilliHertz::from_hz(160)),
        numbing: None,
    };
    // A cartridge provisioned for this chip's key: the tag in slot 8, counter 0.
    let mut chip = FakeAtecc::new();
    let data = TagData::new(
        "C-ATECC",
        "L-1",
        Needles::Pins12,
        Date::new(2099, 1, 1).expect("date"),
    )
    .expect("valid");
    let tag = factory
        .sign_tag(&data, &compressed(chip.key.verifying_key()))
        .expect("signs");
    chip.slot8[..TAG_CAPACITY].copy_from_slice(&image_of(&tag));
    chip.counters = [0, 7];
    let fake = SharedFake(std::sync::Arc::new(std::sync::Mutex::new(chip)));
    let slots = AteccSlots {
        counter: 0,
        ..SLOTS
    };
    let driver = Atecc608::new(fake.clone(), CountingDelay::default(), slots, "d", "k");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("ledger.db")).expect("store");
    let svc =
        Service::new(handle, store, trust, true, Box::new(driver), policy, None).expect("service");

    // Waits for `f`, feeding the dead-man and running the monitor as main's tasks do.
    async fn wait(svc: &Service, f: impl Fn(&crate::control::Snapshot) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let _ = svc.control().command(needle_core::Command::Heartbeat).await;
            svc.monitor().await;
            if f(&svc.control().snapshot()) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let a = Actor {
        name: "tester".into(),
        role: Role::Technician,
    };
    svc.home(&a).await.expect("homes");
    wait(&svc, |s| s.telemetry.homed).await;
    let id = svc
        .create_session(
            &a,
            CreateSession {
                operator: Some("op".into()),
                subject_ref: "s-1".into(),
                area: "face".into(),
                checklist: BTreeMap::from([("consent".to_string(), true)]),
                override_reason: None,
                plan_id: None,
            },
        )
        .await
        .expect("created")
        .id;
    sim.rig.inject(Injection::Cartridge(true));
    wait(&svc, |s| {
        !s.telemetry
            .interlocks
            .contains(needle_core::Interlock::CartridgeMissing)
    })
    .await;
    svc.bind_cartridge(&a, id).await.expect("binds");
    assert_eq!(
        fake.0.lock().expect("lock").counters,
        [0, 7],
        "bind reads, never counts"
    );
    svc.monitor().await;
    svc.arm(
        &a,
        id,
        Setpoints {
            depth_um: Some(800),
            rate_mhz: Some(120_000),
            override_reason: None,
        },
    )
    .await
    .expect("arms");
    let f = fake.0.lock().expect("lock");
    assert_eq!(f.counters, [1, 7], "the configured counter, once");
    // Sign was asked at bind and at arm, each after its own Nonce.
    let signs = f.opcodes.windows(2).filter(|w| w == &[0x16, 0x41]).count();
    assert_eq!(signs, 2, "{:?}", f.opcodes);
}
