//! Reassembly of one fragmented message (docs/protocol.md §9).
//!
//! A message of `count` fragments is sent with every fragment but the last carrying the same
//! payload length `c` (the fragment size) and the last carrying `1..=c` bytes. The receiver
//! never allocates more than those checked numbers allow:
//!
//! - [`validate_fragment`] checks one fragment on its own: `count ≥ 2`, `index < count`, a
//!   non-empty payload and sizes that can still fit `max_message_size`, with checked
//!   arithmetic;
//! - a [`Reassembly`] allocates its buffer (`count × c` bytes) only once `c` is known, that is
//!   once a non-last fragment has arrived. A last fragment that arrives first is kept aside in
//!   a buffer of its own length and copied in when the buffer exists;
//! - received fragments are tracked with a bitset, so duplicates are recognised and ignored;
//! - [`Reassembly::check`] validates a fragment against what is already known (same message,
//!   same count, same fragment size, total within the limit) *without* changing anything, and
//!   reports how many bytes [`Reassembly::insert`] would allocate, so the caller can charge (or
//!   refuse) the memory before it is allocated.
//!
//! Unlike a byte-stream assembler (quinn's, for instance, which accepts arbitrary overlapping
//! ranges), fragments here have fixed boundaries, so a flat buffer and one bit per fragment are
//! enough: no overlap handling, no defragmentation.

use std::time::Instant;

use bytes::Bytes;

use super::{FragmentInfo, MESSAGE_COST_OVERHEAD, RecvError};
use crate::arena::PacketCopy;
use crate::small::FragmentBits;

/// Checks a fragment on its own (docs/protocol.md §9): everything that does not depend on the
/// other fragments of the message.
pub(super) fn validate_fragment(
    frag: FragmentInfo,
    len: usize,
    max_message_size: usize,
) -> Result<(), RecvError> {
    if frag.count < 2 {
        return Err(RecvError::Malformed("fragment count below 2"));
    }
    if frag.index >= frag.count {
        return Err(RecvError::Malformed("fragment index not below its count"));
    }
    if len == 0 {
        return Err(RecvError::Malformed("empty fragment"));
    }
    let len64 = u64::try_from(len).unwrap_or(u64::MAX);
    let max64 = u64::try_from(max_message_size).unwrap_or(u64::MAX);
    let fits = if frag.index < frag.count - 1 {
        // A non-last fragment gives c: `(count − 1) × c < max_message_size` (§9).
        (frag.count - 1)
            .checked_mul(len64)
            .is_some_and(|bytes| bytes < max64)
    } else {
        // The last fragment carries at most c bytes, so the whole message has at least
        // `count × last` bytes, which must not exceed the maximum message size.
        frag.count
            .checked_mul(len64)
            .is_some_and(|bytes| bytes <= max64)
    };
    if fits {
        Ok(())
    } else {
        Err(RecvError::Malformed(
            "fragmented message above max_message_size",
        ))
    }
}

/// What inserting a fragment would do, as decided by [`Reassembly::check`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// The fragment has already been received: nothing to do.
    Duplicate,
    /// The fragment is new; inserting it allocates `growth` more bytes.
    Store {
        /// Bytes [`Reassembly::insert`] will allocate (0 once the buffer exists).
        growth: usize,
    },
}

/// The partial state of one fragmented message.
#[derive(Debug)]
pub(super) struct Reassembly {
    /// Sequence `s` of the message.
    seq: u64,
    /// Reliable index `r` of the message.
    rel: u64,
    /// Number of fragments.
    count: u64,
    /// When the first fragment arrived.
    started: Instant,
    /// The fragment size `c`; 0 until a non-last fragment has arrived.
    frag_len: usize,
    /// `count × c` bytes once `c` is known; empty before.
    buf: Vec<u8>,
    /// One bit per fragment, sized with `buf` (inline up to 64 fragments).
    received: FragmentBits,
    /// Number of distinct fragments received.
    received_count: u64,
    /// Length of the last fragment, once it has arrived.
    last_len: Option<usize>,
    /// The last fragment, kept aside while `c` is unknown.
    pending_last: Vec<u8>,
}

impl Reassembly {
    /// An empty reassembly of message `(seq, rel)` in `count` fragments, started at `now`.
    /// Allocates nothing.
    pub(super) fn new(seq: u64, rel: u64, count: u64, now: Instant) -> Self {
        Reassembly {
            seq,
            rel,
            count,
            started: now,
            frag_len: 0,
            buf: Vec::new(),
            received: FragmentBits::default(),
            received_count: 0,
            last_len: None,
            pending_last: Vec::new(),
        }
    }

    /// Bytes a new reassembly allocates for its first fragment (already passed through
    /// [`validate_fragment`]): the lone last fragment, or the whole `count × c` buffer.
    pub(super) fn fresh_growth(frag: FragmentInfo, len: usize) -> usize {
        if frag.index == frag.count - 1 {
            len
        } else {
            usize::try_from(frag.count)
                .unwrap_or(usize::MAX)
                .saturating_mul(len)
        }
    }

    /// Sequence `s` of the message.
    pub(super) fn seq(&self) -> u64 {
        self.seq
    }

    /// When the first fragment arrived.
    pub(super) fn started(&self) -> Instant {
        self.started
    }

    /// Bytes allocated for payload: the buffer once `c` is known, else the lone last fragment.
    pub(super) fn allocated(&self) -> usize {
        if self.frag_len == 0 {
            self.pending_last.len()
        } else {
            self.buf.len()
        }
    }

    /// What this reassembly currently costs the receive budget: allocated bytes + overhead.
    pub(super) fn cost(&self) -> usize {
        self.allocated().saturating_add(MESSAGE_COST_OVERHEAD)
    }

    fn is_last(&self, index: u64) -> bool {
        index == self.count - 1
    }

    fn has(&self, index: u64) -> bool {
        if self.frag_len == 0 {
            // Before `c` is known only the last fragment can have arrived.
            return self.is_last(index) && self.last_len.is_some();
        }
        // `index < count` and the bitset has `count` bits: both indices are in range.
        self.received.get(index)
    }

    fn mark(&mut self, index: u64) {
        self.received.set(index);
    }

    /// `(count − 1) × c + last`, if it fits in `usize` and in `max_message_size`.
    fn total_within(&self, c: usize, last: usize, max_message_size: usize) -> bool {
        usize::try_from(self.count - 1)
            .ok()
            .and_then(|n| n.checked_mul(c))
            .and_then(|n| n.checked_add(last))
            .is_some_and(|total| total <= max_message_size)
    }

    /// Validates fragment `frag` (already passed through [`validate_fragment`]) of message
    /// `(seq, rel)` against this reassembly, without changing anything.
    pub(super) fn check(
        &self,
        seq: u64,
        rel: u64,
        frag: FragmentInfo,
        len: usize,
        max_message_size: usize,
    ) -> Result<Step, RecvError> {
        if seq != self.seq || rel != self.rel {
            return Err(RecvError::Malformed(
                "fragments of one message with different sequences",
            ));
        }
        if frag.count != self.count {
            return Err(RecvError::Malformed(
                "fragments of one message with different counts",
            ));
        }
        let last = self.is_last(frag.index);
        if last {
            if self.last_len.is_some_and(|l| l != len) {
                return Err(RecvError::Malformed("last fragment with two lengths"));
            }
            if self.frag_len != 0 {
                if len > self.frag_len {
                    return Err(RecvError::Malformed("last fragment longer than the others"));
                }
                if !self.total_within(self.frag_len, len, max_message_size) {
                    return Err(RecvError::Malformed(
                        "fragmented message above max_message_size",
                    ));
                }
            }
        } else if self.frag_len != 0 {
            if len != self.frag_len {
                return Err(RecvError::Malformed(
                    "non-last fragments of different lengths",
                ));
            }
        } else if let Some(last_len) = self.last_len {
            if last_len > len {
                return Err(RecvError::Malformed("last fragment longer than the others"));
            }
            if !self.total_within(len, last_len, max_message_size) {
                return Err(RecvError::Malformed(
                    "fragmented message above max_message_size",
                ));
            }
        }
        if self.has(frag.index) {
            return Ok(Step::Duplicate);
        }
        let growth = if self.frag_len != 0 {
            0
        } else if last {
            len
        } else {
            // The buffer is allocated now: count × c bytes, minus the lone last fragment it
            // replaces. validate_fragment bounded (count − 1) × c below max_message_size, so
            // count × c < 2 × max_message_size fits.
            self.capacity_for(len)
                .unwrap_or(usize::MAX)
                .saturating_sub(self.pending_last.len())
        };
        Ok(Step::Store { growth })
    }

    fn capacity_for(&self, c: usize) -> Option<usize> {
        usize::try_from(self.count).ok()?.checked_mul(c)
    }

    /// Inserts a fragment that [`check`](Self::check) reported as `Step::Store`, taking the
    /// buffer from `pool` when it is allocated. Returns whether the message is now complete.
    pub(super) fn insert(&mut self, index: u64, payload: &[u8], pool: &mut PacketCopy<'_>) -> bool {
        let last = self.is_last(index);
        if self.frag_len == 0 {
            if last {
                self.pending_last = payload.to_vec();
                self.last_len = Some(payload.len());
                self.received_count += 1;
                // count ≥ 2: a lone last fragment never completes a message.
                return false;
            }
            self.allocate(payload.len(), pool);
        }
        let c = self.frag_len;
        // index < count and the buffer holds count × c bytes (both checked), so the range is
        // inside it.
        let start = usize::try_from(index)
            .unwrap_or(usize::MAX)
            .saturating_mul(c);
        if let Some(dst) = self.buf.get_mut(start..start.saturating_add(payload.len())) {
            dst.copy_from_slice(payload);
        }
        self.mark(index);
        self.received_count += 1;
        if last {
            self.last_len = Some(payload.len());
        }
        self.received_count == self.count
    }

    /// Allocates the buffer once the fragment size `c` is known, moving a lone last fragment
    /// into it.
    fn allocate(&mut self, c: usize, pool: &mut PacketCopy<'_>) {
        self.frag_len = c;
        self.buf = pool.take_buffer(self.capacity_for(c).unwrap_or(0));
        self.received = FragmentBits::new(self.count);
        if self.last_len.is_some() {
            let pending = std::mem::take(&mut self.pending_last);
            let index = self.count - 1;
            let start = usize::try_from(index)
                .unwrap_or(usize::MAX)
                .saturating_mul(c);
            if let Some(dst) = self.buf.get_mut(start..start.saturating_add(pending.len())) {
                dst.copy_from_slice(&pending);
            }
            self.mark(index);
        }
    }

    /// The whole message, exactly `(count − 1) × c + last` bytes. Only meaningful once
    /// [`insert`](Self::insert) has returned `true`. With `pool` (a message delivered at once)
    /// a small message is copied into the arena and its buffer kept for the next reassembly;
    /// without (a message that waits in a queue) it keeps its own buffer.
    pub(super) fn finish(mut self, pool: Option<&mut PacketCopy<'_>>) -> Bytes {
        let total = usize::try_from(self.count - 1)
            .unwrap_or(0)
            .saturating_mul(self.frag_len)
            .saturating_add(self.last_len.unwrap_or(0));
        self.buf.truncate(total);
        match pool {
            Some(pool) => pool.finish_buffer(self.buf),
            None => Bytes::from(self.buf),
        }
    }
}
