//! Stroke sensor edges timestamped by the kernel: an edge-event source (a thread reading
//! gpio-cdev line events, rppal's interrupt thread) records them in [`EdgeTimestamps`]; the
//! control thread reads them through an [`EdgeReader`], the core's `StrokeSensor`.

use std::sync::{Arc, Mutex, TryLockError};

use needle_core::hal::{ErrorKind, ErrorType, StrokeSample, StrokeSensor};
use needle_core::units::Micros;

use super::lock;

/// Timestamps further in the future than this are not CLOCK_MONOTONIC.
const CLOCK_TOLERANCE: Micros = Micros(1_000_000);

/// The stroke sensor's shared state: updated by an edge-event source (a thread reading
/// gpio-cdev line events, rppal's interrupt thread) with kernel timestamps, read by the
/// control thread through an [`EdgeReader`].
///
/// Edges closer together than the glitch filter are not stroke edges and are ignored. When
/// the source reports sequence numbers (gpio v2 `line_seqno`), edges the kernel dropped are
/// counted and the period is averaged over them.
#[derive(Debug)]
pub struct EdgeTimestamps {
    state: Mutex<EdgeState>,
    glitch_filter: Micros,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct EdgeState {
    sample: StrokeSample,
    seqno: Option<u32>,
    failed: Option<ErrorKind>,
}

impl EdgeState {
    fn record(&mut self, at: Micros, seqno: Option<u32>, glitch_filter: Micros) {
        let seen = match (seqno, self.seqno) {
            (Some(now), Some(before)) => now.wrapping_sub(before),
            _ => 1,
        };
        if seqno.is_some() {
            self.seqno = seqno;
        }
        if seen == 0 {
            return; // the same event twice
        }
        let s = &mut self.sample;
        if let Some(last) = s.last_edge {
            if at <= last || at.since(last) < glitch_filter {
                return; // out of order, or a glitch
            }
            s.last_period = Some(Micros(at.since(last).0 / u64::from(seen)));
        }
        s.edges = s.edges.wrapping_add(seen);
        s.last_edge = Some(at);
    }
}

impl EdgeTimestamps {
    /// Shared state with a glitch filter: edges closer than this to the previous one are
    /// ignored. Choose well under the shortest expected edge period.
    pub fn new(glitch_filter: Micros) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(EdgeState::default()),
            glitch_filter,
        })
    }

    /// A glitch filter of a quarter of the shortest edge period at `rate_ceiling_hz` with
    /// `edges_per_stroke`.
    pub fn glitch_filter_for(rate_ceiling_hz: u32, edges_per_stroke: u32) -> Micros {
        let edges_per_s = u64::from(rate_ceiling_hz.max(1)) * u64::from(edges_per_stroke.max(1));
        Micros(1_000_000 / edges_per_s / 4)
    }

    /// Records an edge at kernel time `at` (CLOCK_MONOTONIC), with the kernel's sequence
    /// number if the source has one; `now` is the current CLOCK_MONOTONIC time, used to
    /// refuse timestamps of another clock (a pre-5.7 kernel's CLOCK_REALTIME).
    pub fn record(&self, at: Micros, seqno: Option<u32>, now: Micros) {
        let mut state = lock(&self.state);
        if at > now.saturating_add(CLOCK_TOLERANCE) {
            state.failed = Some(ErrorKind::OutOfRange);
            return;
        }
        state.record(at, seqno, self.glitch_filter);
    }

    /// Marks the source as failed: every later sample is an error of this kind.
    pub fn fail(&self, kind: ErrorKind) {
        lock(&self.state).failed = Some(kind);
    }

    /// The current sample, or the failure of the source.
    pub fn sample(&self) -> Result<StrokeSample, ErrorKind> {
        let state = lock(&self.state);
        state.failed.map_or(Ok(state.sample), Err)
    }

    /// A reader for the control thread.
    pub fn reader(self: &Arc<Self>) -> EdgeReader {
        EdgeReader {
            shared: Arc::clone(self),
            cache: Ok(StrokeSample::default()),
        }
    }
}

/// The control thread's side of [`EdgeTimestamps`], as the core's [`StrokeSensor`]. Never
/// blocks: if the source holds the lock this instant, the previous sample is returned.
#[derive(Debug)]
pub struct EdgeReader {
    shared: Arc<EdgeTimestamps>,
    cache: Result<StrokeSample, ErrorKind>,
}

impl ErrorType for EdgeReader {
    type Error = ErrorKind;
}

impl StrokeSensor for EdgeReader {
    fn sample(&mut self) -> Result<StrokeSample, ErrorKind> {
        let read = |s: &EdgeState| s.failed.map_or(Ok(s.sample), Err);
        match self.shared.state.try_lock() {
            Ok(state) => self.cache = read(&state),
            Err(TryLockError::Poisoned(p)) => self.cache = read(&p.into_inner()),
            Err(TryLockError::WouldBlock) => {}
        }
        self.cache
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_after(edges: &[(u64, Option<u32>)], glitch: u64) -> EdgeState {
        let mut s = EdgeState::default();
        for (at, seqno) in edges {
            s.record(Micros(*at), *seqno, Micros(glitch));
        }
        s
    }

    #[test]
    fn edges_give_count_last_edge_and_period() {
        let s = state_after(&[(1_000, None)], 0).sample;
        assert_eq!(
            (s.edges, s.last_edge, s.last_period),
            (1, Some(Micros(1_000)), None)
        );
        let s = state_after(&[(1_000, None), (9_000, None), (17_500, None)], 0).sample;
        assert_eq!(s.edges, 3);
        assert_eq!(s.last_edge, Some(Micros(17_500)));
        assert_eq!(s.last_period, Some(Micros(8_500)));
    }

    #[test]
    fn glitches_out_of_order_and_duplicate_events_are_ignored() {
        let s = state_after(
            &[
                (10_000, Some(1)),
                (10_050, Some(2)), // glitch: 50 us after the last edge
                (9_000, Some(3)),  // out of order
                (18_000, Some(4)), // real edge
                (18_000, Some(4)), // the same event again
            ],
            1_000,
        )
        .sample;
        assert_eq!(s.edges, 2);
        assert_eq!(s.last_period, Some(Micros(8_000)));
    }

    #[test]
    fn dropped_events_are_counted_and_the_period_averaged() {
        let s = state_after(&[(0, Some(10)), (8_000, Some(11)), (32_000, Some(14))], 0).sample;
        assert_eq!(s.edges, 5);
        assert_eq!(s.last_period, Some(Micros(8_000)));
    }

    #[test]
    fn edge_counter_and_sequence_numbers_wrap() {
        let mut s = EdgeState::default();
        s.sample.edges = u32::MAX - 1;
        s.record(Micros(1_000), Some(u32::MAX), Micros(0));
        s.record(Micros(2_000), Some(0), Micros(0));
        s.record(Micros(3_000), Some(1), Micros(0));
        // MAX - 1, then MAX, then wraps to 0 and 1; sequence numbers wrap from MAX to 0.
        assert_eq!(s.sample.edges, 1);
        assert_eq!(s.sample.last_period, Some(Micros(1_000)));
    }

    #[test]
    fn shared_edges_reach_the_reader_and_a_failure_is_an_error() {
        let edges = EdgeTimestamps::new(Micros(100));
        let mut reader = edges.reader();
        assert_eq!(reader.sample(), Ok(StrokeSample::default()));
        let now = Micros(1_000_000);
        edges.record(Micros(990_000), Some(7), now);
        edges.record(Micros(998_000), Some(8), now);
        let s = reader.sample().unwrap();
        assert_eq!((s.edges, s.last_period), (2, Some(Micros(8_000))));
        assert_eq!(edges.sample(), Ok(s));

        // A CLOCK_REALTIME timestamp (decades ahead of CLOCK_MONOTONIC) fails the source.
        edges.record(Micros(1_700_000_000_000_000), Some(9), now);
        assert_eq!(reader.sample(), Err(ErrorKind::OutOfRange));
        edges.fail(ErrorKind::Disconnected);
        assert_eq!(reader.sample(), Err(ErrorKind::Disconnected));
    }

    #[test]
    fn glitch_filter_is_a_quarter_of_the_shortest_edge_period() {
        assert_eq!(EdgeTimestamps::glitch_filter_for(160, 1), Micros(1_562));
        assert_eq!(EdgeTimestamps::glitch_filter_for(1_000, 64), Micros(3));
        assert_eq!(EdgeTimestamps::glitch_filter_for(0, 0), Micros(250_000));
    }
}
