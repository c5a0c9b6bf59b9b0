//! The receive side of a stream: fragment reassembly and the delivery rule
//! (docs/protocol.md §9, §10).
//!
//! A [`RecvStream`] is the receive state of one stream (one channel and priority of one
//! connection). The connection decodes message frames, expands their 32-bit sequence numbers to
//! 64 bits around [`RecvStream::expected_seq`] and [`RecvStream::expected_rel`], and hands each
//! one to [`RecvStream::on_message`] as an [`IncomingMessage`]. Every message that becomes
//! deliverable goes out through the `deliver` callback, in order:
//!
//! - a **reliable** message with index `r` is delivered when `r == next_r`, then every queued
//!   reliable message that follows it; a later one (`r > next_r`) is queued; an earlier one
//!   (`r < next_r`) or one already queued is a duplicate;
//! - an **unreliable** message is delivered on arrival if its sequence `s` is above the last
//!   delivered sequence and `r == next_r` (every reliable message sent before it has been
//!   delivered); otherwise it is discarded at once, never held back.
//!
//! Fragments (§9) are reassembled first; a complete message then follows the same rule. Any
//! number of reliable messages may be in reassembly at once (the connection's receive window
//! bounds their memory), keyed by `r`. Unreliable messages have at most **one** partial
//! reassembly per stream: a fragment of a newer message replaces it, and it is dropped as soon
//! as a message at or after its sequence is delivered (it could only be out of order), when the
//! unreliable budget has no room for it, or when it is older than the caller's maximum age
//! ([`RecvStream::expire_partials`]). A message given up this way is remembered, so its late
//! fragments are discarded instead of starting a reassembly that can never complete.
//!
//! **Memory.** Everything buffered is charged to a [`RecvBudget`] shared by the streams of a
//! connection, at [`message_cost`] (payload bytes plus [`MESSAGE_COST_OVERHEAD`]) per queued
//! message and allocated bytes plus overhead per reassembly (a reassembly allocates
//! `count × c` bytes once the fragment size `c` is known, which [`fragmented_message_cost`]
//! gives the sender; its bitset of one bit per fragment is covered by the overhead for messages
//! of up to 512 fragments and is below 1/8 of a byte per payload byte beyond). Reliable data is never refused
//! here: the connection checks the receive window for a whole packet before acknowledging it
//! (with [`RecvStream::would_buffer`] and [`RecvStream::buffer_charge`]), so accepted reliable
//! data is never lost. Unreliable partial reassemblies are refused
//! ([`RecvOutcome::DroppedNoBudget`]) when they do not fit their own budget. Nothing is
//! allocated from a length field before it has been checked against `max_message_size`.
//!
//! An `Err` from [`RecvStream::on_message`] leaves the stream unchanged: every check runs
//! before any state changes.

mod reassembly;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use self::reassembly::{Reassembly, Step, validate_fragment};
use crate::arena::PacketCopy;

/// Fixed cost charged per buffered message or reassembly, on top of its payload bytes: it stands
/// for the bookkeeping (map entry, reassembly state) and stops a flood of empty messages from
/// being free.
pub(crate) const MESSAGE_COST_OVERHEAD: usize = 64;

/// Cost charged against the receive budgets for one buffered message of `payload_len` bytes.
/// The sender uses the same formula for flow control (docs/protocol.md §10).
///
/// ```text
/// message_cost(n) = n + MESSAGE_COST_OVERHEAD
/// ```
pub(crate) fn message_cost(payload_len: usize) -> usize {
    payload_len.saturating_add(MESSAGE_COST_OVERHEAD)
}

/// Cost charged for a fragmented message of `count` fragments of `fragment_len` bytes (the last
/// one possibly shorter): the receiver allocates `count × fragment_len` bytes for it, which may
/// exceed the message length by up to `fragment_len − 1`. A sender whose flow control charges
/// fragmented messages with this function accounts exactly what the receiver charges.
pub(crate) fn fragmented_message_cost(count: u64, fragment_len: usize) -> usize {
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    message_cost(count.saturating_mul(fragment_len))
}

/// Receive memory of one connection, shared by its streams.
///
/// `reliable_used` may exceed `reliable_limit`: the connection enforces the limit on whole
/// packets before they are acknowledged (docs/protocol.md §10), and a stream never refuses
/// reliable data. `unreliable_used` never exceeds `unreliable_limit`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RecvBudget {
    /// Cost of the reliable messages and reassemblies buffered.
    pub reliable_used: usize,
    /// The receive window plus one message (checked by the connection).
    pub reliable_limit: usize,
    /// Cost of the partial unreliable reassemblies.
    pub unreliable_used: usize,
    /// Budget of partial unreliable reassemblies (default 2 × maximum message size).
    pub unreliable_limit: usize,
    /// The agreed maximum message size (docs/protocol.md §4.6).
    pub max_message_size: usize,
}

/// One message frame after decoding and sequence expansion.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IncomingMessage<'a> {
    /// Sequence `s` of the message in its stream.
    pub seq: u64,
    /// Reliable index `r`: reliable messages sent on the stream before this one.
    pub rel: u64,
    /// Whether the message is reliable.
    pub reliable: bool,
    /// The fragment header, if the message is split (docs/protocol.md §9).
    pub fragment: Option<FragmentInfo>,
    /// The frame's payload: the whole message, or one fragment of it.
    pub payload: &'a [u8],
}

/// Fragment header of a message frame: `index` (0-based) of `count` (docs/protocol.md §9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FragmentInfo {
    /// Index of this fragment, below `count`.
    pub index: u64,
    /// Number of fragments of the message, at least 2.
    pub count: u64,
}

/// What [`RecvStream::on_message`] did with a frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RecvOutcome {
    /// This message (and maybe queued ones after it) went out.
    Delivered,
    /// Reliable, waiting for the gap before it to fill.
    Queued,
    /// A fragment was stored; the message is not complete yet.
    FragmentStored,
    /// Already received (a whole message or this fragment).
    Duplicate,
    /// Unreliable and out of order, or a fragment of a message that can no longer be delivered.
    Discarded,
    /// A fragment of an unreliable message whose reassembly does not fit the unreliable budget;
    /// the message is given up.
    DroppedNoBudget,
}

/// A frame that breaks docs/protocol.md §8–§9. The stream is unchanged.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RecvError {
    /// Inconsistent or oversized fragments, or an oversized message.
    Malformed(&'static str),
}

/// A complete reliable message waiting for the gap before it.
#[derive(Debug)]
struct Queued {
    seq: u64,
    payload: Bytes,
    /// What was charged to the reliable budget for it.
    cost: usize,
}

/// Receive state of one stream (docs/protocol.md §10).
#[derive(Debug)]
pub(crate) struct RecvStream {
    /// First sequence (and reliable index) of the stream.
    initial: u64,
    /// Highest sequence delivered, none before the first delivery.
    delivered: Option<u64>,
    /// Index of the next reliable message to deliver.
    next_r: u64,
    /// Complete reliable messages with `r > next_r`, by `r`.
    queued: BTreeMap<u64, Queued>,
    /// Partial reliable reassemblies, by `r` (all with `r ≥ next_r`).
    reliable_partials: BTreeMap<u64, Reassembly>,
    /// The partial unreliable reassembly, if any.
    unreliable_partial: Option<Reassembly>,
    /// Highest sequence of an unreliable fragmented message given up (replaced, dropped for
    /// budget, expired or discarded when complete): its late fragments are discarded.
    unreliable_floor: Option<u64>,
    /// Reliable budget charged by this stream.
    reliable_cost: usize,
    /// Unreliable budget charged by this stream.
    unreliable_cost: usize,
}

impl RecvStream {
    /// A stream whose sequences `s` and `r` both start at `initial`.
    pub fn new(initial: u64) -> Self {
        RecvStream {
            initial,
            delivered: None,
            next_r: initial,
            queued: BTreeMap::new(),
            reliable_partials: BTreeMap::new(),
            unreliable_partial: None,
            unreliable_floor: None,
            reliable_cost: 0,
            unreliable_cost: 0,
        }
    }

    /// The sequence expected next: last delivered + 1, or the initial one before any delivery.
    /// The connection expands truncated wire sequences around it (docs/protocol.md §6).
    pub fn expected_seq(&self) -> u64 {
        self.delivered.map_or(self.initial, |d| d.saturating_add(1))
    }

    /// The reliable index expected next (`next_r`).
    pub fn expected_rel(&self) -> u64 {
        self.next_r
    }

    /// The reliable budget [`on_message`](Self::on_message) would charge for this frame if it
    /// were applied now: 0 for unreliable frames, duplicates, immediate deliveries and frames
    /// that are malformed. Several frames of one packet may touch the same reassembly; the sum
    /// of their charges is then an upper bound.
    #[cfg(test)]
    pub fn buffer_charge(&self, msg: &IncomingMessage<'_>, max_message_size: usize) -> usize {
        self.precheck(msg, max_message_size).unwrap_or(0)
    }

    /// Checks one message frame without changing anything (the first pass over a packet,
    /// docs/protocol.md §5): `Err` if it is malformed — above the agreed maximum message size,
    /// an impossible fragment, or a fragment inconsistent with the others of its message — and
    /// otherwise what [`buffer_charge`](Self::buffer_charge) says.
    #[inline]
    pub fn precheck(
        &self,
        msg: &IncomingMessage<'_>,
        max_message_size: usize,
    ) -> Result<usize, RecvError> {
        let len = msg.payload.len();
        let Some(frag) = msg.fragment else {
            return self.precheck_whole(msg.reliable, msg.rel, len, max_message_size);
        };
        validate_fragment(frag, len, max_message_size)?;
        if !msg.reliable {
            if let Some(asm) = &self.unreliable_partial
                && asm.seq() == msg.seq
            {
                asm.check(msg.seq, msg.rel, frag, len, max_message_size)?;
            }
            return Ok(0);
        }
        if msg.rel < self.next_r || self.is_queued(msg.rel) {
            return Ok(0);
        }
        match self.reliable_partials.get(&msg.rel) {
            Some(asm) => match asm.check(msg.seq, msg.rel, frag, len, max_message_size)? {
                Step::Store { growth } => Ok(growth),
                _ => Ok(0),
            },
            None => Ok(Reassembly::fresh_growth(frag, len).saturating_add(MESSAGE_COST_OVERHEAD)),
        }
    }

    /// [`precheck`](Self::precheck) of a whole (unfragmented) message of `len` bytes.
    #[inline]
    pub fn precheck_whole(
        &self,
        reliable: bool,
        rel: u64,
        len: usize,
        max_message_size: usize,
    ) -> Result<usize, RecvError> {
        if len > max_message_size {
            return Err(RecvError::Malformed("message above max_message_size"));
        }
        let buffered = reliable && rel > self.next_r && !self.is_queued(rel);
        Ok(if buffered { message_cost(len) } else { 0 })
    }

    /// Applies one message frame. Every message that becomes deliverable is passed, in order, to
    /// `deliver(payload, reliable)`; budgets are charged and released as messages are buffered,
    /// delivered and dropped. On `Err` nothing has changed.
    ///
    /// A whole message delivered at once is copied with `copy` (a slice of a shared arena
    /// chunk, no allocation); one that must wait for a gap is copied into a buffer of its own, so a gap
    /// that stays open never pins arena chunks (crate::arena).
    #[inline]
    pub fn on_message(
        &mut self,
        now: Instant,
        msg: IncomingMessage<'_>,
        budget: &mut RecvBudget,
        copy: &mut PacketCopy<'_>,
        deliver: &mut impl FnMut(Bytes, bool),
    ) -> Result<RecvOutcome, RecvError> {
        match (msg.fragment, msg.reliable) {
            (None, reliable) => self.on_whole(
                msg.seq,
                msg.rel,
                reliable,
                msg.payload,
                budget,
                copy,
                deliver,
            ),
            (Some(frag), reliable) => {
                validate_fragment(frag, msg.payload.len(), budget.max_message_size)?;
                if reliable {
                    self.on_reliable_fragment(now, msg, frag, budget, copy, deliver)
                } else {
                    self.on_unreliable_fragment(now, msg, frag, budget, copy, deliver)
                }
            }
        }
    }

    /// [`on_message`](Self::on_message) of a whole (unfragmented) message, given by its fields.
    #[inline]
    #[allow(clippy::too_many_arguments)] // one message frame, spread out
    pub fn on_whole(
        &mut self,
        seq: u64,
        rel: u64,
        reliable: bool,
        payload: &[u8],
        budget: &mut RecvBudget,
        copy: &mut PacketCopy<'_>,
        deliver: &mut impl FnMut(Bytes, bool),
    ) -> Result<RecvOutcome, RecvError> {
        if payload.len() > budget.max_message_size {
            return Err(RecvError::Malformed("message above max_message_size"));
        }
        if reliable {
            self.on_reliable_whole(seq, rel, payload, budget, copy, deliver)
        } else if !self.unreliable_in_order(seq, rel) {
            Ok(RecvOutcome::Discarded)
        } else {
            let payload = copy.copy(payload);
            Ok(self.on_unreliable_whole(seq, rel, payload, budget, deliver))
        }
    }

    /// Drops the partial unreliable reassembly if it was started more than `max_age` before
    /// `now`, releasing its budget; returns the bytes released.
    pub fn expire_partials(
        &mut self,
        now: Instant,
        max_age: Duration,
        budget: &mut RecvBudget,
    ) -> usize {
        let expired = self
            .unreliable_partial
            .as_ref()
            .is_some_and(|p| now.saturating_duration_since(p.started()) > max_age);
        if expired {
            self.drop_unreliable_partial(budget)
        } else {
            0
        }
    }

    #[inline]
    fn on_reliable_whole(
        &mut self,
        seq: u64,
        rel: u64,
        payload: &[u8],
        budget: &mut RecvBudget,
        copy: &mut PacketCopy<'_>,
        deliver: &mut impl FnMut(Bytes, bool),
    ) -> Result<RecvOutcome, RecvError> {
        if rel < self.next_r || self.is_queued(rel) {
            return Ok(RecvOutcome::Duplicate);
        }
        if self.is_partial(rel) {
            return Err(RecvError::Malformed(
                "whole message with the index of a fragmented one",
            ));
        }
        if rel == self.next_r {
            let payload = copy.copy(payload);
            self.deliver_reliable(seq, payload, budget, deliver);
            return Ok(RecvOutcome::Delivered);
        }
        // Queued behind a gap: a buffer of its own (it may wait long).
        let payload = Bytes::copy_from_slice(payload);
        let cost = message_cost(payload.len());
        self.charge_reliable(budget, cost);
        self.queued.insert(rel, Queued { seq, payload, cost });
        Ok(RecvOutcome::Queued)
    }

    fn on_reliable_fragment(
        &mut self,
        now: Instant,
        msg: IncomingMessage<'_>,
        frag: FragmentInfo,
        budget: &mut RecvBudget,
        copy: &mut PacketCopy<'_>,
        deliver: &mut impl FnMut(Bytes, bool),
    ) -> Result<RecvOutcome, RecvError> {
        if msg.rel < self.next_r || self.is_queued(msg.rel) {
            return Ok(RecvOutcome::Duplicate);
        }
        let max = budget.max_message_size;
        let len = msg.payload.len();
        let (step, fresh) = match self.reliable_partials.get(&msg.rel) {
            Some(asm) => (asm.check(msg.seq, msg.rel, frag, len, max)?, false),
            None => (
                Step::Store {
                    growth: Reassembly::fresh_growth(frag, len),
                },
                true,
            ),
        };
        let Step::Store { growth } = step else {
            return Ok(RecvOutcome::Duplicate);
        };
        let charge = if fresh {
            growth.saturating_add(MESSAGE_COST_OVERHEAD)
        } else {
            growth
        };
        self.charge_reliable(budget, charge);
        let asm = self
            .reliable_partials
            .entry(msg.rel)
            .or_insert_with(|| Reassembly::new(msg.seq, msg.rel, frag.count, now));
        if !asm.insert(frag.index, msg.payload, copy) {
            return Ok(RecvOutcome::FragmentStored);
        }
        let Some(asm) = self.reliable_partials.remove(&msg.rel) else {
            // The entry was inserted or found just above.
            return Ok(RecvOutcome::FragmentStored);
        };
        let cost = asm.cost();
        if msg.rel == self.next_r {
            let payload = asm.finish(Some(copy));
            self.release_reliable(budget, cost);
            self.deliver_reliable(msg.seq, payload, budget, deliver);
            Ok(RecvOutcome::Delivered)
        } else {
            // Stays charged at its allocated capacity until delivered.
            let payload = asm.finish(None);
            self.queued.insert(
                msg.rel,
                Queued {
                    seq: msg.seq,
                    payload,
                    cost,
                },
            );
            Ok(RecvOutcome::Queued)
        }
    }

    fn on_unreliable_whole(
        &mut self,
        seq: u64,
        rel: u64,
        payload: Bytes,
        budget: &mut RecvBudget,
        deliver: &mut impl FnMut(Bytes, bool),
    ) -> RecvOutcome {
        if !self.unreliable_in_order(seq, rel) {
            return RecvOutcome::Discarded;
        }
        deliver(payload, false);
        self.delivered = Some(seq);
        self.drop_stale_partial(budget);
        RecvOutcome::Delivered
    }

    /// Whether an unreliable message `seq`, sent after `rel` reliable ones, would be delivered.
    fn unreliable_in_order(&self, seq: u64, rel: u64) -> bool {
        self.delivered.is_none_or(|d| seq > d) && rel == self.next_r
    }

    fn on_unreliable_fragment(
        &mut self,
        now: Instant,
        msg: IncomingMessage<'_>,
        frag: FragmentInfo,
        budget: &mut RecvBudget,
        copy: &mut PacketCopy<'_>,
        deliver: &mut impl FnMut(Bytes, bool),
    ) -> Result<RecvOutcome, RecvError> {
        let seq = msg.seq;
        // A message at or before the last delivered one can never be delivered (that includes
        // every message sent before a delivered reliable one); nor can one already given up.
        if self.delivered.is_some_and(|d| seq <= d)
            || self.unreliable_floor.is_some_and(|f| seq <= f)
        {
            return Ok(RecvOutcome::Discarded);
        }
        let max = budget.max_message_size;
        let len = msg.payload.len();
        let (step, fresh) = match &self.unreliable_partial {
            Some(p) if seq < p.seq() => return Ok(RecvOutcome::Discarded),
            Some(p) if seq == p.seq() => (p.check(seq, msg.rel, frag, len, max)?, false),
            _ => (
                Step::Store {
                    growth: Reassembly::fresh_growth(frag, len),
                },
                true,
            ),
        };
        let Step::Store { growth } = step else {
            return Ok(RecvOutcome::Duplicate);
        };
        if fresh {
            // The newest message wins: an older partial could only be delivered out of order.
            self.drop_unreliable_partial(budget);
        }
        let charge = if fresh {
            growth.saturating_add(MESSAGE_COST_OVERHEAD)
        } else {
            growth
        };
        let fits = budget
            .unreliable_used
            .checked_add(charge)
            .is_some_and(|used| used <= budget.unreliable_limit);
        if !fits {
            self.drop_unreliable_partial(budget);
            self.raise_floor(seq);
            return Ok(RecvOutcome::DroppedNoBudget);
        }
        self.charge_unreliable(budget, charge);
        let asm = self
            .unreliable_partial
            .get_or_insert_with(|| Reassembly::new(seq, msg.rel, frag.count, now));
        if !asm.insert(frag.index, msg.payload, copy) {
            return Ok(RecvOutcome::FragmentStored);
        }
        let Some(asm) = self.unreliable_partial.take() else {
            // Inserted or found just above.
            return Ok(RecvOutcome::FragmentStored);
        };
        self.release_unreliable(budget, asm.cost());
        self.raise_floor(seq);
        let payload = asm.finish(Some(copy));
        Ok(self.on_unreliable_whole(seq, msg.rel, payload, budget, deliver))
    }

    /// Delivers reliable message `next_r` (sequence `seq`), then every queued one that follows.
    #[inline]
    fn deliver_reliable(
        &mut self,
        seq: u64,
        payload: Bytes,
        budget: &mut RecvBudget,
        deliver: &mut impl FnMut(Bytes, bool),
    ) {
        deliver(payload, true);
        self.advance(seq);
        while let Some(entry) = self.queued.first_entry() {
            if *entry.key() != self.next_r {
                break;
            }
            let q = entry.remove();
            self.release_reliable(budget, q.cost);
            deliver(q.payload, true);
            self.advance(q.seq);
        }
        self.drop_stale_partial(budget);
    }

    /// Whether complete reliable message `rel` waits behind a gap. The map is empty while
    /// messages arrive in order: then no lookup (each frame of a packet asks, once or twice).
    #[inline]
    fn is_queued(&self, rel: u64) -> bool {
        !self.queued.is_empty() && self.queued.contains_key(&rel)
    }

    /// Whether reliable message `rel` is being reassembled (no lookup while none is).
    #[inline]
    fn is_partial(&self, rel: u64) -> bool {
        !self.reliable_partials.is_empty() && self.reliable_partials.contains_key(&rel)
    }

    fn advance(&mut self, seq: u64) {
        self.next_r += 1;
        self.delivered = Some(self.delivered.map_or(seq, |d| d.max(seq)));
    }

    /// Drops the partial unreliable reassembly if a message at or after it was delivered.
    #[inline]
    fn drop_stale_partial(&mut self, budget: &mut RecvBudget) {
        let stale = match (&self.unreliable_partial, self.delivered) {
            (Some(p), Some(d)) => p.seq() <= d,
            _ => false,
        };
        if stale {
            self.drop_unreliable_partial(budget);
        }
    }

    /// Drops the partial unreliable reassembly, if any, and gives its message up; returns the
    /// cost released.
    fn drop_unreliable_partial(&mut self, budget: &mut RecvBudget) -> usize {
        let Some(p) = self.unreliable_partial.take() else {
            return 0;
        };
        self.raise_floor(p.seq());
        let cost = p.cost();
        self.release_unreliable(budget, cost);
        cost
    }

    fn raise_floor(&mut self, seq: u64) {
        self.unreliable_floor = Some(self.unreliable_floor.map_or(seq, |f| f.max(seq)));
    }

    fn charge_reliable(&mut self, budget: &mut RecvBudget, cost: usize) {
        self.reliable_cost += cost;
        budget.reliable_used = budget.reliable_used.saturating_add(cost);
    }

    fn release_reliable(&mut self, budget: &mut RecvBudget, cost: usize) {
        debug_assert!(cost <= self.reliable_cost, "reliable budget released twice");
        self.reliable_cost = self.reliable_cost.saturating_sub(cost);
        budget.reliable_used = budget.reliable_used.saturating_sub(cost);
    }

    fn charge_unreliable(&mut self, budget: &mut RecvBudget, cost: usize) {
        self.unreliable_cost += cost;
        budget.unreliable_used = budget.unreliable_used.saturating_add(cost);
    }

    fn release_unreliable(&mut self, budget: &mut RecvBudget, cost: usize) {
        debug_assert!(
            cost <= self.unreliable_cost,
            "unreliable budget released twice"
        );
        self.unreliable_cost = self.unreliable_cost.saturating_sub(cost);
        budget.unreliable_used = budget.unreliable_used.saturating_sub(cost);
    }
}

/// Introspection and teardown. The connection uses what it needs; the rest serves the tests and
/// future callers (per-stream accounting, closing).
#[cfg_attr(not(test), allow(dead_code))]
impl RecvStream {
    /// Whether a reliable frame with this index would be buffered rather than delivered at once
    /// or recognised as a duplicate: `rel > next_r` (not already queued), or `rel == next_r`
    /// and fragmented. Used for the receive-window check of a whole packet.
    pub fn would_buffer(&self, rel: u64, fragmented: bool) -> bool {
        (rel > self.next_r && !self.is_queued(rel)) || (rel == self.next_r && fragmented)
    }

    /// When the partial unreliable reassembly started, if there is one (its expiry deadline is
    /// this plus the connection's maximum age).
    pub fn partial_since(&self) -> Option<Instant> {
        self.unreliable_partial.as_ref().map(Reassembly::started)
    }

    /// Reliable plus unreliable cost currently charged by this stream.
    pub fn buffered_cost(&self) -> usize {
        self.reliable_cost + self.unreliable_cost
    }

    /// Whether nothing is buffered (queued messages or reassemblies).
    pub fn is_idle(&self) -> bool {
        self.queued.is_empty()
            && self.reliable_partials.is_empty()
            && self.unreliable_partial.is_none()
    }

    /// Drops everything buffered and releases its budget (the connection is closing); returns
    /// the cost released. Delivery state is kept.
    pub fn clear(&mut self, budget: &mut RecvBudget) -> usize {
        let released = self.buffered_cost();
        self.queued.clear();
        self.reliable_partials.clear();
        self.unreliable_partial = None;
        let (reliable, unreliable) = (self.reliable_cost, self.unreliable_cost);
        self.release_reliable(budget, reliable);
        self.release_unreliable(budget, unreliable);
        released
    }
}
