//! [`TxQueue`]: the bytes waiting for the serial port, in one flat buffer so frames go in and
//! out with slice copies (a DMA-friendly shape), not byte by byte.

/// Bytes waiting for the serial port.
pub struct TxQueue<const N: usize> {
    buf: [u8; N],
    start: usize,
    end: usize,
}

impl<const N: usize> Default for TxQueue<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> TxQueue<N> {
    /// An empty queue.
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            start: 0,
            end: 0,
        }
    }

    /// Appends `bytes` whole, or returns `false` and appends nothing when they do not fit.
    pub fn push(&mut self, bytes: &[u8]) -> bool {
        if N - self.len() < bytes.len() {
            return false;
        }
        if N - self.end < bytes.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let Some(room) = self.buf.get_mut(self.end..self.end + bytes.len()) else {
            return false;
        };
        room.copy_from_slice(bytes);
        self.end += bytes.len();
        true
    }

    /// Appends what `write` puts into the queue's free space (at least `want` bytes of it
    /// when the queue has that much room), so a frame is encoded straight into the queue.
    /// `write` returns how many bytes it wrote, or `None` to append nothing; returns whether
    /// something was appended.
    pub fn push_with(
        &mut self,
        want: usize,
        write: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        if N - self.end < want && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let Some(room) = self.buf.get_mut(self.end..) else {
            return false;
        };
        match write(room) {
            Some(n) if n <= N - self.end => {
                self.end += n;
                true
            }
            _ => false,
        }
    }

    /// Appends what `write` puts into `M` bytes of the queue's free space (compacting first
    /// when the free space at the end is shorter), so a frame is encoded straight into the
    /// queue through a buffer whose length is known. `write` returns how many bytes it
    /// wrote, or `None` to append nothing. Returns `None` when the queue has no `M` bytes of
    /// room (`write` is not called), or whether something was appended.
    #[inline]
    pub fn push_chunk<const M: usize>(
        &mut self,
        write: impl FnOnce(&mut [u8; M]) -> Option<usize>,
    ) -> Option<bool> {
        if N - self.end < M {
            if N - self.len() < M {
                return None;
            }
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let room = self.buf.get_mut(self.end..)?.first_chunk_mut::<M>()?;
        Some(match write(room) {
            Some(n) if n <= M => {
                self.end += n;
                true
            }
            _ => false,
        })
    }

    /// The first `M` bytes of the free space at the end, without compacting: `None` when
    /// the end has less room. What the caller writes there is queued by
    /// [`TxQueue::commit`].
    #[inline]
    pub fn tail_chunk<const M: usize>(&mut self) -> Option<&mut [u8; M]> {
        self.buf.get_mut(self.end..)?.first_chunk_mut::<M>()
    }

    /// Queues the first `n` bytes of the free space at the end, written through
    /// [`TxQueue::tail_chunk`] (`n` at most its `M`); never past the buffer's end.
    #[inline]
    pub fn commit(&mut self, n: usize) {
        // `end` is at most `N`, so neither the room nor the sum overflows.
        self.end += n.min(N - self.end);
    }

    /// Bytes that can still be queued.
    #[inline]
    pub fn room(&self) -> usize {
        N - self.len()
    }

    /// Bytes queued.
    #[inline]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether nothing is queued.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The queued bytes, oldest first.
    #[inline]
    pub fn pending(&self) -> &[u8] {
        // Clamped (a no-op: `start <= end <= N` always holds) so the slice needs no check.
        let end = self.end.min(N);
        let start = self.start.min(end);
        self.buf.get(start..end).unwrap_or(&[])
    }

    /// Drops the first `n` queued bytes (all of them if fewer).
    #[inline]
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_go_in_whole_and_come_out_in_order_across_compaction() {
        let mut q = TxQueue::<8>::new();
        assert!(q.push(b"abcde"));
        q.consume(3);
        assert!(q.push(b"fghij")); // compacts: "de" moves to the front
        assert_eq!(q.pending(), b"defghij");
        assert!(!q.push(b"xy"), "a frame that does not fit is refused whole");
        q.consume(100);
        assert!(q.is_empty());
    }

    #[test]
    fn push_chunk_writes_into_a_whole_chunk_after_compacting_or_not_at_all() {
        let mut q = TxQueue::<8>::new();
        assert!(q.push(b"abcdef"));
        assert_eq!(q.push_chunk::<4>(|_| unreachable!("no room")), None);
        q.consume(4);
        assert_eq!(
            q.push_chunk::<4>(|room| {
                room[..3].copy_from_slice(b"xyz");
                Some(3)
            }),
            Some(true)
        );
        assert_eq!(q.pending(), b"efxyz");
        assert_eq!(q.push_chunk::<2>(|_| None), Some(false));
        assert_eq!(
            q.push_chunk::<2>(|_| Some(3)),
            Some(false),
            "more than the chunk"
        );
        assert_eq!(q.pending(), b"efxyz");
    }

    #[test]
    fn push_with_writes_into_the_free_space_after_compacting() {
        let mut q = TxQueue::<8>::new();
        assert!(q.push(b"abcdef"));
        q.consume(4);
        assert!(q.push_with(5, |room| {
            assert!(room.len() >= 5, "compacted to make room");
            room[..3].copy_from_slice(b"xyz");
            Some(3)
        }));
        assert_eq!(q.pending(), b"efxyz");
        assert!(!q.push_with(1, |_| None), "a failed write appends nothing");
        assert_eq!(q.pending(), b"efxyz");
    }
}
