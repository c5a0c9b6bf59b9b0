//! Tests of the receive side: unit tests of every rule of docs/protocol.md §9–§10, and property
//! tests against the reference model of §10.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::arena::PayloadArena;
use proptest::prelude::*;

use super::*;

const MAX: usize = 4096;

#[allow(clippy::disallowed_methods)] // the one real-clock read of these tests: a base instant
fn base() -> Instant {
    Instant::now()
}

fn budget() -> RecvBudget {
    RecvBudget {
        reliable_used: 0,
        reliable_limit: 1 << 20,
        unreliable_used: 0,
        unreliable_limit: 2 * MAX,
        max_message_size: MAX,
    }
}

/// One stream, its budget and everything it delivered.
struct Rx {
    stream: RecvStream,
    budget: RecvBudget,
    arena: PayloadArena,
    out: Vec<(Bytes, bool)>,
    now: Instant,
}

impl Rx {
    fn new(initial: u64) -> Self {
        Rx {
            stream: RecvStream::new(initial),
            budget: budget(),
            arena: PayloadArena::default(),
            out: Vec::new(),
            now: base(),
        }
    }

    fn apply(&mut self, msg: IncomingMessage<'_>) -> Result<RecvOutcome, RecvError> {
        let out = &mut self.out;
        self.stream.on_message(
            self.now,
            msg,
            &mut self.budget,
            &mut PacketCopy::new(&mut self.arena, &[]),
            &mut |p, r| out.push((p, r)),
        )
    }

    fn whole(&mut self, seq: u64, rel: u64, reliable: bool, payload: &[u8]) -> RecvOutcome {
        self.apply(IncomingMessage {
            seq,
            rel,
            reliable,
            fragment: None,
            payload,
        })
        .expect("valid frame")
    }

    fn frag_result(
        &mut self,
        seq: u64,
        rel: u64,
        reliable: bool,
        (index, count): (u64, u64),
        payload: &[u8],
    ) -> Result<RecvOutcome, RecvError> {
        self.apply(IncomingMessage {
            seq,
            rel,
            reliable,
            fragment: Some(FragmentInfo { index, count }),
            payload,
        })
    }

    fn frag(
        &mut self,
        seq: u64,
        rel: u64,
        reliable: bool,
        at: (u64, u64),
        payload: &[u8],
    ) -> RecvOutcome {
        self.frag_result(seq, rel, reliable, at, payload)
            .expect("valid fragment")
    }

    /// Takes the deliveries so far as (payload, reliable).
    fn take(&mut self) -> Vec<(Vec<u8>, bool)> {
        self.out.drain(..).map(|(p, r)| (p.to_vec(), r)).collect()
    }

    /// Budget used by this (only) stream, checked against the stream's own account.
    fn used(&self) -> usize {
        let used = self.budget.reliable_used + self.budget.unreliable_used;
        assert_eq!(used, self.stream.buffered_cost());
        used
    }
}

fn rel(payload: &[u8]) -> (Vec<u8>, bool) {
    (payload.to_vec(), true)
}

fn unrel(payload: &[u8]) -> (Vec<u8>, bool) {
    (payload.to_vec(), false)
}

// ---------------------------------------------------------------------------------------------
// Delivery rule (§10)

#[test]
fn in_order_messages_are_delivered_at_once() {
    let mut rx = Rx::new(0);
    assert_eq!(rx.stream.expected_seq(), 0);
    assert_eq!(rx.whole(0, 0, true, b"a"), RecvOutcome::Delivered);
    assert_eq!(rx.whole(1, 1, false, b"b"), RecvOutcome::Delivered);
    assert_eq!(rx.whole(2, 1, true, b"c"), RecvOutcome::Delivered);
    assert_eq!(rx.take(), [rel(b"a"), unrel(b"b"), rel(b"c")]);
    assert_eq!(rx.stream.expected_seq(), 3);
    assert_eq!(rx.stream.expected_rel(), 2);
    assert_eq!(rx.used(), 0);
    assert!(rx.stream.is_idle());
}

#[test]
fn reliable_gap_queues_then_drains_in_order() {
    let mut rx = Rx::new(0);
    assert_eq!(rx.whole(2, 2, true, b"r2"), RecvOutcome::Queued);
    assert_eq!(rx.whole(1, 1, true, b"r1"), RecvOutcome::Queued);
    assert_eq!(rx.whole(4, 4, true, b"r4"), RecvOutcome::Queued);
    assert!(rx.take().is_empty());
    assert_eq!(rx.used(), 3 * MESSAGE_COST_OVERHEAD + 6);
    assert!(!rx.stream.is_idle());
    // Filling the gap delivers r0, then r1 and r2; r4 still waits for r3.
    assert_eq!(rx.whole(0, 0, true, b"r0"), RecvOutcome::Delivered);
    assert_eq!(rx.take(), [rel(b"r0"), rel(b"r1"), rel(b"r2")]);
    assert_eq!(rx.stream.expected_rel(), 3);
    assert_eq!(rx.stream.expected_seq(), 3);
    assert_eq!(rx.used(), message_cost(2));
    assert_eq!(rx.whole(3, 3, true, b"r3"), RecvOutcome::Delivered);
    assert_eq!(rx.take(), [rel(b"r3"), rel(b"r4")]);
    assert_eq!(rx.used(), 0);
    assert!(rx.stream.is_idle());
}

#[test]
fn payloads_delivered_at_once_share_the_arena_and_queued_ones_do_not() {
    let mut rx = Rx::new(0);
    assert_eq!(rx.whole(1, 1, true, b"r1"), RecvOutcome::Queued);
    assert_eq!(rx.whole(0, 0, true, b"r0"), RecvOutcome::Delivered);
    assert_eq!(rx.whole(2, 2, false, b"u2"), RecvOutcome::Delivered);
    let out = std::mem::take(&mut rx.out);
    assert_eq!(out.len(), 3);
    // r0 and u2 are slices of the arena's chunk (which the arena still holds); r1, which
    // waited for the gap, has a buffer of its own, so a gap never pins arena chunks.
    assert!(!out[0].0.is_unique(), "r0 shares the arena chunk");
    assert!(out[1].0.is_unique(), "the queued r1 has its own buffer");
    assert!(!out[2].0.is_unique(), "u2 shares the arena chunk");
    // Out-of-order unreliable messages are discarded without being copied.
    let chunks = rx.arena.chunks_allocated();
    assert_eq!(rx.whole(1, 2, false, b"late"), RecvOutcome::Discarded);
    assert_eq!(rx.arena.chunks_allocated(), chunks);
}

#[test]
fn reliable_duplicates_are_recognised() {
    let mut rx = Rx::new(0);
    assert_eq!(rx.whole(0, 0, true, b"r0"), RecvOutcome::Delivered);
    assert_eq!(rx.whole(0, 0, true, b"r0"), RecvOutcome::Duplicate);
    assert_eq!(rx.whole(2, 2, true, b"r2"), RecvOutcome::Queued);
    let used = rx.used();
    assert_eq!(rx.whole(2, 2, true, b"r2"), RecvOutcome::Duplicate);
    assert_eq!(
        rx.used(),
        used,
        "a duplicate of a queued message is not charged twice"
    );
    assert_eq!(rx.whole(1, 1, true, b"r1"), RecvOutcome::Delivered);
    assert_eq!(rx.take(), [rel(b"r0"), rel(b"r1"), rel(b"r2")]);
}

#[test]
fn unreliable_after_reliable_gap_is_discarded_not_held() {
    let mut rx = Rx::new(0);
    // Sent: r0 (s0), u (s1, r = 1). r0 is missing when u arrives.
    assert_eq!(rx.whole(1, 1, false, b"u1"), RecvOutcome::Discarded);
    assert!(rx.stream.is_idle(), "an unreliable message is never held");
    assert_eq!(rx.whole(0, 0, true, b"r0"), RecvOutcome::Delivered);
    // Only r0 comes out: u1 was discarded for good.
    assert_eq!(rx.take(), [rel(b"r0")]);
    assert_eq!(rx.used(), 0);
}

#[test]
fn unreliable_old_sequence_is_discarded() {
    let mut rx = Rx::new(0);
    assert_eq!(rx.whole(3, 0, false, b"u3"), RecvOutcome::Delivered);
    assert_eq!(rx.whole(2, 0, false, b"u2"), RecvOutcome::Discarded);
    assert_eq!(rx.whole(3, 0, false, b"u3"), RecvOutcome::Discarded);
    assert_eq!(rx.whole(4, 0, false, b"u4"), RecvOutcome::Delivered);
    assert_eq!(rx.take(), [unrel(b"u3"), unrel(b"u4")]);
    assert_eq!(rx.stream.expected_seq(), 5);
}

#[test]
fn delivered_never_goes_backwards_even_with_inconsistent_numbering() {
    let mut rx = Rx::new(0);
    // A misbehaving peer numbers a reliable message below an unreliable one already delivered:
    // the stream still never delivers a lower sequence after a higher one through the
    // unreliable rule.
    assert_eq!(rx.whole(5, 0, false, b"u5"), RecvOutcome::Delivered);
    assert_eq!(rx.whole(3, 0, true, b"r0"), RecvOutcome::Delivered);
    assert_eq!(rx.stream.expected_seq(), 6);
    assert_eq!(rx.whole(4, 1, false, b"u4"), RecvOutcome::Discarded);
    assert_eq!(rx.take(), [unrel(b"u5"), rel(b"r0")]);
}

#[test]
fn reliable_drain_raises_delivered_past_skipped_unreliable() {
    let mut rx = Rx::new(0);
    // Sent: r0 (s0), u (s1), r1 (s2). r1 is queued, then r0 arrives: delivered = 2, so the late
    // unreliable s1 is out of order.
    assert_eq!(rx.whole(2, 1, true, b"r1"), RecvOutcome::Queued);
    assert_eq!(rx.whole(0, 0, true, b"r0"), RecvOutcome::Delivered);
    assert_eq!(rx.whole(1, 1, false, b"u1"), RecvOutcome::Discarded);
    assert_eq!(rx.take(), [rel(b"r0"), rel(b"r1")]);
}

#[test]
fn would_buffer_tells_which_reliable_frames_need_room() {
    let mut rx = Rx::new(10);
    assert!(!rx.stream.would_buffer(10, false));
    assert!(rx.stream.would_buffer(10, true));
    assert!(rx.stream.would_buffer(11, false));
    assert!(!rx.stream.would_buffer(9, true));
    rx.whole(11, 11, true, b"x");
    assert!(
        !rx.stream.would_buffer(11, false),
        "already queued: a duplicate"
    );
    rx.whole(10, 10, true, b"y");
    assert!(!rx.stream.would_buffer(10, false));
    assert!(!rx.stream.would_buffer(11, true));
    assert!(rx.stream.would_buffer(12, true));
}

#[test]
fn buffer_charge_predicts_what_is_charged() {
    let mut rx = Rx::new(0);
    let msg = |seq, rel, fragment, payload| IncomingMessage {
        seq,
        rel,
        reliable: true,
        fragment,
        payload,
    };
    let f = |index, count| Some(FragmentInfo { index, count });
    assert_eq!(rx.stream.buffer_charge(&msg(0, 0, None, b"abc"), MAX), 0);
    assert_eq!(
        rx.stream.buffer_charge(&msg(1, 1, None, b"abc"), MAX),
        message_cost(3)
    );
    // A lone last fragment costs its own length; the first non-last one allocates count × c.
    let last = msg(1, 1, f(3, 4), b"zz");
    assert_eq!(rx.stream.buffer_charge(&last, MAX), message_cost(2));
    rx.apply(last).unwrap();
    assert_eq!(rx.used(), message_cost(2));
    let first = msg(1, 1, f(0, 4), b"aaaa");
    assert_eq!(rx.stream.buffer_charge(&first, MAX), 16 - 2);
    rx.apply(first).unwrap();
    assert_eq!(rx.used(), fragmented_message_cost(4, 4));
    let second = msg(1, 1, f(1, 4), b"bbbb");
    assert_eq!(rx.stream.buffer_charge(&second, MAX), 0);
    // Unreliable frames, duplicates and malformed frames charge nothing.
    let mut unreliable = msg(5, 2, None, b"u");
    unreliable.reliable = false;
    assert_eq!(rx.stream.buffer_charge(&unreliable, MAX), 0);
    assert_eq!(rx.stream.buffer_charge(&msg(0, 0, f(3, 2), b"x"), MAX), 0);
    rx.whole(0, 0, true, b"r0");
    assert_eq!(rx.stream.buffer_charge(&msg(0, 0, None, b"r0"), MAX), 0);
}

// ---------------------------------------------------------------------------------------------
// Fragments (§9)

/// Splits `payload` into fragments of `c` bytes: (index, count, bytes).
fn split(payload: &[u8], c: usize) -> Vec<(u64, u64, Vec<u8>)> {
    let count = payload.len().div_ceil(c) as u64;
    payload
        .chunks(c)
        .enumerate()
        .map(|(i, chunk)| (i as u64, count, chunk.to_vec()))
        .collect()
}

fn message(len: usize, tag: u8) -> Vec<u8> {
    (0..len).map(|i| tag.wrapping_add(i as u8)).collect()
}

#[test]
fn reliable_fragments_reassemble_under_reordering_and_duplication() {
    let mut rx = Rx::new(0);
    let big = message(45, 1);
    let frags = split(&big, 10); // 4 × 10 + 5
    assert_eq!(frags.len(), 5);
    let mut outcomes = Vec::new();
    for i in [4usize, 2, 4, 0, 2, 3] {
        let (index, count, bytes) = &frags[i];
        outcomes.push(rx.frag(0, 0, true, (*index, *count), bytes));
    }
    use RecvOutcome::{Duplicate, FragmentStored};
    assert_eq!(
        outcomes,
        [
            FragmentStored,
            FragmentStored,
            Duplicate,
            FragmentStored,
            Duplicate,
            FragmentStored
        ]
    );
    assert!(rx.take().is_empty());
    assert_eq!(rx.used(), fragmented_message_cost(5, 10));
    // Fragment 2 again is a duplicate, fragment 1 completes the message.
    assert_eq!(
        rx.frag(0, 0, true, (2, 5), &frags[2].2),
        RecvOutcome::Duplicate
    );
    assert_eq!(
        rx.frag(0, 0, true, (1, 5), &frags[1].2),
        RecvOutcome::Delivered
    );
    let out = rx.take();
    assert_eq!(out, [rel(&big)]);
    assert_eq!(out[0].0.len(), 45, "exactly the message length");
    assert_eq!(rx.used(), 0);
    assert!(rx.stream.is_idle());
    // Late fragments of a delivered message are duplicates.
    assert_eq!(
        rx.frag(0, 0, true, (3, 5), &frags[3].2),
        RecvOutcome::Duplicate
    );
}

#[test]
fn reliable_fragmented_message_after_a_gap_is_queued_then_delivered() {
    let mut rx = Rx::new(0);
    let big = message(30, 7);
    let frags = split(&big, 16);
    for (index, count, bytes) in frags.iter().rev() {
        rx.frag(1, 1, true, (*index, *count), bytes);
    }
    // Complete but waiting for r0: queued, still charged at its allocated capacity.
    assert_eq!(rx.used(), fragmented_message_cost(2, 16));
    assert_eq!(
        rx.frag(1, 1, true, (0, 2), &frags[0].2),
        RecvOutcome::Duplicate
    );
    assert!(rx.take().is_empty());
    assert_eq!(rx.whole(0, 0, true, b"r0"), RecvOutcome::Delivered);
    assert_eq!(rx.take(), [rel(b"r0"), rel(&big)]);
    assert_eq!(rx.used(), 0);
}

#[test]
fn reliable_fragment_completing_a_gap_message_is_queued() {
    let mut rx = Rx::new(0);
    rx.frag(1, 1, true, (0, 2), b"ab");
    assert_eq!(rx.frag(1, 1, true, (1, 2), b"c"), RecvOutcome::Queued);
    assert_eq!(rx.whole(0, 0, true, b"r0"), RecvOutcome::Delivered);
    assert_eq!(rx.take(), [rel(b"r0"), rel(b"abc")]);
}

#[test]
fn unreliable_fragments_reassemble_under_reordering_and_duplication() {
    let mut rx = Rx::new(0);
    let big = message(100, 3);
    let frags = split(&big, 30);
    for &i in &[3usize, 1, 3, 1] {
        let (index, count, bytes) = &frags[i];
        rx.frag(5, 0, false, (*index, *count), bytes);
    }
    assert_eq!(
        rx.frag(5, 0, false, (1, 4), &frags[1].2),
        RecvOutcome::Duplicate
    );
    assert_eq!(rx.used(), fragmented_message_cost(4, 30));
    assert_eq!(rx.budget.unreliable_used, rx.used());
    assert_eq!(rx.budget.reliable_used, 0);
    assert_eq!(
        rx.frag(5, 0, false, (0, 4), &frags[0].2),
        RecvOutcome::FragmentStored
    );
    assert_eq!(
        rx.frag(5, 0, false, (2, 4), &frags[2].2),
        RecvOutcome::Delivered
    );
    assert_eq!(rx.take(), [unrel(&big)]);
    assert_eq!(rx.used(), 0);
    assert_eq!(rx.stream.expected_seq(), 6);
    // Late fragments of a delivered unreliable message are discarded, not restarted.
    assert_eq!(
        rx.frag(5, 0, false, (0, 4), &frags[0].2),
        RecvOutcome::Discarded
    );
    assert!(rx.stream.is_idle());
}

#[test]
fn lone_last_fragment_is_kept_aside_until_the_fragment_size_is_known() {
    let mut rx = Rx::new(0);
    assert_eq!(
        rx.frag(0, 0, false, (9, 10), b"xyz"),
        RecvOutcome::FragmentStored
    );
    // No buffer sized by `count` yet: only the 3 bytes and the overhead.
    assert_eq!(rx.used(), message_cost(3));
    assert_eq!(
        rx.frag(0, 0, false, (9, 10), b"xyz"),
        RecvOutcome::Duplicate
    );
    assert_eq!(
        rx.frag(0, 0, false, (0, 10), b"aaaa"),
        RecvOutcome::FragmentStored
    );
    assert_eq!(rx.used(), fragmented_message_cost(10, 4));
    for i in 1..9 {
        rx.frag(0, 0, false, (i, 10), b"bbbb");
    }
    let mut expected = b"aaaa".to_vec();
    expected.extend(std::iter::repeat_n(b'b', 32));
    expected.extend(b"xyz");
    assert_eq!(rx.take(), [unrel(&expected)]);
    assert_eq!(rx.used(), 0);
}

#[test]
fn unreliable_partial_is_dropped_when_a_later_message_is_delivered() {
    let mut rx = Rx::new(0);
    rx.frag(1, 0, false, (0, 2), b"aaaa");
    assert!(rx.used() > 0);
    // s = 2 (unfragmented) is delivered: the partial s = 1 could only be out of order.
    assert_eq!(rx.whole(2, 0, false, b"u2"), RecvOutcome::Delivered);
    assert_eq!(rx.used(), 0);
    assert!(rx.stream.is_idle());
    assert_eq!(rx.frag(1, 0, false, (1, 2), b"b"), RecvOutcome::Discarded);
    assert_eq!(rx.take(), [unrel(b"u2")]);

    // Same with a reliable delivery.
    let mut rx = Rx::new(0);
    rx.frag(1, 0, false, (0, 2), b"aaaa");
    assert_eq!(rx.whole(0, 0, true, b"r0"), RecvOutcome::Delivered);
    assert!(
        rx.stream.partial_since().is_some(),
        "s = 1 is still after s = 0"
    );
    // Sent after u1: r1 at s = 2. Its delivery makes the partial stale.
    assert_eq!(rx.whole(2, 1, true, b"r1"), RecvOutcome::Delivered);
    assert_eq!(rx.used(), 0);
    assert!(rx.stream.is_idle());
    assert_eq!(rx.frag(1, 0, false, (1, 2), b"b"), RecvOutcome::Discarded);
    assert_eq!(rx.take(), [rel(b"r0"), rel(b"r1")]);
}

#[test]
fn newer_unreliable_partial_replaces_the_older_one() {
    let mut rx = Rx::new(0);
    rx.frag(1, 0, false, (0, 3), b"aaaaaa");
    assert_eq!(rx.used(), fragmented_message_cost(3, 6));
    rx.frag(2, 0, false, (0, 2), b"cc");
    // Only the newer partial is charged.
    assert_eq!(rx.used(), fragmented_message_cost(2, 2));
    // Fragments of the older message are discarded now.
    assert_eq!(
        rx.frag(1, 0, false, (1, 3), b"bbbbbb"),
        RecvOutcome::Discarded
    );
    assert_eq!(rx.frag(2, 0, false, (1, 2), b"d"), RecvOutcome::Delivered);
    assert_eq!(rx.take(), [unrel(b"ccd")]);
    assert_eq!(rx.used(), 0);
}

#[test]
fn unreliable_fragmented_message_completed_after_a_reliable_gap_is_discarded() {
    let mut rx = Rx::new(0);
    // Sent: r0 (s0), u (s1, r = 1). u's fragments arrive, r0 does not (yet).
    rx.frag(1, 1, false, (0, 2), b"aa");
    assert_eq!(rx.frag(1, 1, false, (1, 2), b"b"), RecvOutcome::Discarded);
    assert_eq!(rx.used(), 0);
    assert!(rx.take().is_empty());
    // A duplicate fragment does not start a reassembly that can never be delivered.
    assert_eq!(rx.frag(1, 1, false, (0, 2), b"aa"), RecvOutcome::Discarded);
    assert!(rx.stream.is_idle());
}

#[test]
fn unreliable_partial_waits_for_a_reliable_gap_that_fills_before_it_completes() {
    let mut rx = Rx::new(0);
    rx.frag(1, 1, false, (0, 2), b"aa");
    assert_eq!(rx.whole(0, 0, true, b"r0"), RecvOutcome::Delivered);
    assert_eq!(rx.frag(1, 1, false, (1, 2), b"b"), RecvOutcome::Delivered);
    assert_eq!(rx.take(), [rel(b"r0"), unrel(b"aab")]);
}

#[test]
fn unreliable_partial_that_does_not_fit_the_budget_is_dropped() {
    let mut rx = Rx::new(0);
    rx.budget.unreliable_limit = 200;
    // 3 × 100 bytes + overhead do not fit 200.
    assert_eq!(
        rx.frag(0, 0, false, (0, 3), &[1; 100]),
        RecvOutcome::DroppedNoBudget
    );
    assert_eq!(rx.used(), 0);
    // The message is given up: its other fragments are discarded.
    assert_eq!(
        rx.frag(0, 0, false, (1, 3), &[1; 100]),
        RecvOutcome::Discarded
    );
    // A lone last fragment fits, but the buffer it needs once `c` is known does not.
    assert_eq!(
        rx.frag(1, 0, false, (2, 3), &[2; 50]),
        RecvOutcome::FragmentStored
    );
    assert_eq!(rx.used(), message_cost(50));
    assert_eq!(
        rx.frag(1, 0, false, (0, 3), &[2; 100]),
        RecvOutcome::DroppedNoBudget
    );
    assert_eq!(rx.used(), 0);
    assert_eq!(rx.budget.unreliable_used, 0);
    // A message that fits is reassembled.
    rx.frag(2, 0, false, (0, 2), &[3; 60]);
    assert_eq!(
        rx.frag(2, 0, false, (1, 2), &[3; 10]),
        RecvOutcome::Delivered
    );
    assert_eq!(rx.take(), [unrel(&[3; 70])]);
    // The limit also counts other streams' partials.
    rx.budget.unreliable_used = 150;
    assert_eq!(
        rx.frag(3, 0, false, (0, 2), &[4; 10]),
        RecvOutcome::DroppedNoBudget
    );
    assert_eq!(rx.budget.unreliable_used, 150);
}

#[test]
fn reliable_fragments_are_charged_even_beyond_the_limit() {
    // The connection checks the window for the whole packet; the stream never refuses
    // reliable data it was handed.
    let mut rx = Rx::new(0);
    rx.budget.reliable_limit = 10;
    assert_eq!(
        rx.frag(1, 1, true, (0, 2), &[1; 100]),
        RecvOutcome::FragmentStored
    );
    assert_eq!(rx.budget.reliable_used, fragmented_message_cost(2, 100));
    assert_eq!(rx.whole(2, 2, true, &[2; 50]), RecvOutcome::Queued);
    assert_eq!(
        rx.budget.reliable_used,
        fragmented_message_cost(2, 100) + message_cost(50)
    );
}

#[test]
fn budget_is_charged_on_buffering_and_released_on_delivery_and_drop() {
    let mut rx = Rx::new(0);
    rx.budget.reliable_used = 1000; // other streams' share stays untouched
    rx.budget.unreliable_used = 500;
    rx.whole(1, 1, true, &[0; 10]);
    rx.frag(2, 2, true, (0, 3), &[0; 20]);
    rx.frag(3, 3, false, (0, 2), &[0; 8]);
    let reliable = message_cost(10) + fragmented_message_cost(3, 20);
    let unreliable = fragmented_message_cost(2, 8);
    assert_eq!(rx.budget.reliable_used, 1000 + reliable);
    assert_eq!(rx.budget.unreliable_used, 500 + unreliable);
    assert_eq!(rx.stream.buffered_cost(), reliable + unreliable);
    // r0 drains r1; r2 is still partial; the unreliable partial (r = 3) is still pending.
    rx.whole(0, 0, true, b"");
    assert_eq!(
        rx.budget.reliable_used,
        1000 + fragmented_message_cost(3, 20)
    );
    rx.frag(2, 2, true, (1, 3), &[0; 20]);
    rx.frag(2, 2, true, (2, 3), &[0; 1]);
    assert_eq!(rx.budget.reliable_used, 1000);
    assert_eq!(rx.budget.unreliable_used, 500 + unreliable);
    // The unreliable partial completes and is delivered: released too.
    rx.frag(3, 3, false, (1, 2), &[0; 8]);
    assert_eq!(rx.budget.unreliable_used, 500);
    assert_eq!(rx.stream.buffered_cost(), 0);
    assert_eq!(rx.take().len(), 4);

    // clear() releases everything.
    rx.whole(9, 9, true, b"q");
    rx.frag(8, 8, true, (0, 2), b"xx");
    rx.frag(20, 9, false, (0, 2), b"yy");
    let cost = rx.stream.buffered_cost();
    assert!(cost > 0);
    assert_eq!(rx.stream.clear(&mut rx.budget), cost);
    assert_eq!(
        (rx.budget.reliable_used, rx.budget.unreliable_used),
        (1000, 500)
    );
    assert!(rx.stream.is_idle());
}

#[test]
fn empty_messages_are_valid() {
    let mut rx = Rx::new(0);
    assert_eq!(rx.whole(1, 1, true, b""), RecvOutcome::Queued);
    assert_eq!(rx.used(), MESSAGE_COST_OVERHEAD);
    assert_eq!(rx.whole(0, 0, true, b""), RecvOutcome::Delivered);
    assert_eq!(rx.whole(2, 2, false, b""), RecvOutcome::Delivered);
    assert_eq!(rx.take(), [rel(b""), rel(b""), unrel(b"")]);
}

#[test]
fn expire_partials_drops_only_old_unreliable_partials() {
    let mut rx = Rx::new(0);
    let t0 = rx.now;
    rx.frag(0, 0, false, (0, 2), b"aa");
    rx.frag(1, 1, true, (0, 2), b"rr");
    assert_eq!(rx.stream.partial_since(), Some(t0));
    let max_age = Duration::from_millis(100);
    assert_eq!(
        rx.stream
            .expire_partials(t0 + max_age, max_age, &mut rx.budget),
        0
    );
    assert!(rx.stream.partial_since().is_some());
    let released = rx.stream.expire_partials(
        t0 + max_age + Duration::from_millis(1),
        max_age,
        &mut rx.budget,
    );
    assert_eq!(released, fragmented_message_cost(2, 2));
    assert_eq!(rx.budget.unreliable_used, 0);
    assert!(rx.stream.partial_since().is_none());
    // The reliable reassembly is untouched (it is retransmitted, never expired).
    assert_eq!(rx.budget.reliable_used, fragmented_message_cost(2, 2));
    // Late fragments of the expired message do not restart it.
    assert_eq!(rx.frag(0, 0, false, (1, 2), b"b"), RecvOutcome::Discarded);
    // An instant before the partial started expires nothing.
    rx.frag(2, 0, false, (0, 2), b"cc");
    assert_eq!(
        rx.stream
            .expire_partials(t0, Duration::ZERO, &mut rx.budget),
        0
    );
}

#[test]
fn sequences_crossing_2_pow_32_are_delivered_in_order() {
    let initial = (1u64 << 32) - 5;
    let mut rx = Rx::new(initial);
    // 20 messages, alternating reliable/unreliable, s and r crossing 2^32. Reliable ones
    // arrive in reverse order, then the unreliable ones in order (all after a reliable gap
    // except those before the first reliable message).
    let mut sent = Vec::new();
    let mut r = initial;
    for i in 0..20u64 {
        let s = initial + i;
        let reliable = i % 2 == 0;
        sent.push((s, r, reliable, s.to_le_bytes().to_vec()));
        if reliable {
            r += 1;
        }
    }
    assert!(sent.last().unwrap().0 > 1 << 32 && sent.last().unwrap().1 > 1 << 32);
    for (s, r, _, p) in sent.iter().filter(|m| m.2).rev() {
        rx.whole(*s, *r, true, p);
    }
    let expected: Vec<_> = sent.iter().filter(|m| m.2).map(|m| rel(&m.3)).collect();
    assert_eq!(rx.take(), expected);
    assert_eq!(rx.stream.expected_rel(), initial + 10);
    assert_eq!(rx.stream.expected_seq(), initial + 19);

    // In order, with fragments, across the boundary.
    let mut rx = Rx::new(initial);
    let mut expected = Vec::new();
    for (s, r, reliable, p) in &sent {
        let mut payload = p.clone();
        payload.extend_from_slice(p);
        if s % 3 == 0 {
            for (index, count, bytes) in split(&payload, 5).into_iter().rev() {
                rx.frag(*s, *r, *reliable, (index, count), &bytes);
            }
        } else {
            rx.whole(*s, *r, *reliable, &payload);
        }
        expected.push((payload, *reliable));
    }
    assert_eq!(rx.take(), expected);
    assert_eq!(rx.stream.expected_seq(), initial + 20);
    assert_eq!(rx.used(), 0);
}

// ---------------------------------------------------------------------------------------------
// Malformed frames

fn assert_malformed(rx: &mut Rx, result: Result<RecvOutcome, RecvError>) {
    assert!(
        matches!(result, Err(RecvError::Malformed(_))),
        "expected Malformed, got {result:?}"
    );
    let _ = rx;
}

#[test]
fn fragment_headers_are_validated() {
    let mut rx = Rx::new(0);
    for reliable in [true, false] {
        let r = rx.frag_result(0, 0, reliable, (0, 1), b"a");
        assert_malformed(&mut rx, r); // count < 2
        let r = rx.frag_result(0, 0, reliable, (0, 0), b"a");
        assert_malformed(&mut rx, r);
        let r = rx.frag_result(0, 0, reliable, (2, 2), b"a");
        assert_malformed(&mut rx, r); // index >= count
        let r = rx.frag_result(0, 0, reliable, (u64::MAX, 3), b"a");
        assert_malformed(&mut rx, r);
        let r = rx.frag_result(0, 0, reliable, (0, 2), b"");
        assert_malformed(&mut rx, r); // empty non-last
        let r = rx.frag_result(0, 0, reliable, (1, 2), b"");
        assert_malformed(&mut rx, r); // empty last
    }
    assert!(rx.stream.is_idle());
    assert_eq!(rx.used(), 0);
}

#[test]
fn sizes_above_max_message_size_are_malformed() {
    let mut rx = Rx::new(0);
    let r = rx.apply(IncomingMessage {
        seq: 1,
        rel: 1,
        reliable: true,
        fragment: None,
        payload: &[0; MAX + 1],
    });
    assert_malformed(&mut rx, r);
    // Exactly the maximum is fine.
    assert_eq!(rx.whole(1, 1, true, &[0; MAX]), RecvOutcome::Queued);
    rx.stream.clear(&mut rx.budget);

    let c = vec![0u8; 1024];
    // (count − 1) × c < max: 4 × 1024 = MAX is too much for a non-last fragment.
    let r = rx.frag_result(2, 2, true, (0, 5), &c);
    assert_malformed(&mut rx, r);
    // 3 × 1024 < MAX is fine.
    assert_eq!(rx.frag(2, 2, true, (0, 4), &c), RecvOutcome::FragmentStored);
    // But the last fragment may only bring the total to MAX: 3 × 1024 + 1024 = MAX is fine,
    // while a count × last above MAX is refused for a lone last fragment.
    let r = rx.frag_result(3, 3, false, (2, 3), &[0; MAX / 3 + 1]);
    assert_malformed(&mut rx, r);
    // A count that overflows when multiplied.
    let r = rx.frag_result(4, 4, true, (0, u64::MAX), &[0; 2]);
    assert_malformed(&mut rx, r);
    let r = rx.frag_result(4, 4, true, (u64::MAX - 1, u64::MAX), &[0; 2]);
    assert_malformed(&mut rx, r);
    let r = rx.frag_result(4, 4, false, (0, 1 << 40), &[0; 1]);
    assert_malformed(&mut rx, r);
    // A lone last fragment, then a non-last one that makes the total too big:
    // (3 − 1) × 2000 + 200 = 4200 > MAX although 2 × 2000 < MAX.
    assert_eq!(
        rx.frag(5, 5, true, (2, 3), &[0; 200]),
        RecvOutcome::FragmentStored
    );
    let r = rx.frag_result(5, 5, true, (0, 3), &[0; 2000]);
    assert_malformed(&mut rx, r);
    // And the other way round: c known, then a last fragment that overshoots the total.
    let mut rx = Rx::new(0);
    rx.budget.max_message_size = 1000;
    assert_eq!(
        rx.frag(0, 0, true, (0, 3), &[0; 450]),
        RecvOutcome::FragmentStored
    );
    let r = rx.frag_result(0, 0, true, (2, 3), &[0; 101]);
    assert_malformed(&mut rx, r);
    assert_eq!(
        rx.frag(0, 0, true, (2, 3), &[0; 100]),
        RecvOutcome::FragmentStored
    );
}

#[test]
fn inconsistent_fragments_are_malformed_and_change_nothing() {
    for reliable in [true, false] {
        let mut rx = Rx::new(0);
        assert_eq!(
            rx.frag(0, 0, reliable, (0, 4), b"abcd"),
            RecvOutcome::FragmentStored
        );
        let used = rx.used();
        let checks: [((u64, u64), &[u8]); 5] = [
            ((1, 5), b"abcd"), // another count
            ((1, 4), b"abc"),  // another fragment size
            ((1, 4), b"abcde"),
            ((3, 4), b"abcde"), // last longer than c
            ((0, 4), b"xyz"),   // a duplicate with another length
        ];
        for (at, payload) in checks {
            let r = rx.frag_result(0, 0, reliable, at, payload);
            assert_malformed(&mut rx, r);
        }
        // The message's identity: reliable reassemblies are keyed by r, unreliable by s.
        let r = if reliable {
            rx.frag_result(7, 0, true, (1, 4), b"abcd")
        } else {
            rx.frag_result(0, 1, false, (1, 4), b"abcd")
        };
        assert_malformed(&mut rx, r);
        assert_eq!(rx.used(), used, "a malformed frame changes nothing");
        // The reassembly still completes with consistent fragments.
        rx.frag(0, 0, reliable, (1, 4), b"efgh");
        rx.frag(0, 0, reliable, (3, 4), b"m");
        assert_eq!(
            rx.frag(0, 0, reliable, (2, 4), b"ijkl"),
            RecvOutcome::Delivered
        );
        assert_eq!(rx.take(), [(b"abcdefghijklm".to_vec(), reliable)]);
    }
    // A lone last fragment with two lengths, or longer than the fragment size that follows.
    let mut rx = Rx::new(0);
    rx.frag(0, 0, true, (2, 3), b"xyz");
    let r = rx.frag_result(0, 0, true, (2, 3), b"xy");
    assert_malformed(&mut rx, r);
    let r = rx.frag_result(0, 0, true, (0, 3), b"ab");
    assert_malformed(&mut rx, r);
    assert_eq!(rx.used(), message_cost(3));
    // A whole message with the index of a fragmented one.
    let r = rx.apply(IncomingMessage {
        seq: 0,
        rel: 0,
        reliable: true,
        fragment: None,
        payload: b"abc",
    });
    assert_malformed(&mut rx, r);
    assert!(rx.take().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Property tests against the reference model (docs/protocol.md §10)

/// The reference model of docs/protocol.md §10, on whole messages.
struct Model {
    delivered: Option<u64>,
    next_r: u64,
    queued: BTreeMap<u64, usize>,
}

impl Model {
    fn new(initial: u64) -> Self {
        Model {
            delivered: None,
            next_r: initial,
            queued: BTreeMap::new(),
        }
    }

    /// Message `i` of `sent` arrives (complete); deliveries are appended to `out`.
    fn arrive(&mut self, sent: &[Sent], i: usize, out: &mut Vec<usize>) {
        let m = &sent[i];
        if m.reliable {
            if m.rel < self.next_r || self.queued.contains_key(&m.rel) {
                return; // duplicate
            }
            self.queued.insert(m.rel, i);
            while let Some(x) = self.queued.remove(&self.next_r) {
                out.push(x);
                self.next_r += 1;
                self.delivered = Some(self.delivered.map_or(sent[x].seq, |d| d.max(sent[x].seq)));
            }
        } else if self.delivered.is_none_or(|d| m.seq > d) && m.rel == self.next_r {
            out.push(i);
            self.delivered = Some(m.seq);
        }
    }
}

/// A message as sent.
#[derive(Clone, Debug)]
struct Sent {
    seq: u64,
    rel: u64,
    reliable: bool,
    /// Starts with `seq` (little endian), so a delivered payload names its message.
    payload: Vec<u8>,
    /// Fragment size if the message is split.
    frag_len: Option<usize>,
}

impl Sent {
    fn frames(&self) -> Vec<(Option<FragmentInfo>, Vec<u8>)> {
        match self.frag_len {
            None => vec![(None, self.payload.clone())],
            Some(c) => split(&self.payload, c)
                .into_iter()
                .map(|(index, count, bytes)| (Some(FragmentInfo { index, count }), bytes))
                .collect(),
        }
    }
}

/// Builds the messages of one stream from (reliable, length, fragmented) specs.
fn build(initial: u64, specs: &[(bool, usize, bool)], frag_len: usize) -> Vec<Sent> {
    let mut r = initial;
    specs
        .iter()
        .enumerate()
        .map(|(i, &(reliable, len, fragmented))| {
            let seq = initial + i as u64;
            let mut payload = seq.to_le_bytes().to_vec();
            payload.extend((0..len).map(|k| (k as u8).wrapping_mul(31) ^ seq as u8));
            let m = Sent {
                seq,
                rel: r,
                reliable,
                frag_len: (fragmented && payload.len() > frag_len).then_some(frag_len),
                payload,
            };
            if reliable {
                r += 1;
            }
            m
        })
        .collect()
}

/// splitmix64: a small deterministic generator for arrival orders.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One frame on the wire: message index and frame index within the message.
type Arrival = (usize, usize);

/// The frames in send order, lost (unreliable only), duplicated and reordered: every frame of
/// a reliable message arrives at least once.
fn arrivals(sent: &[Sent], rng: &mut Rng, window: u64, loss_pct: u64) -> Vec<Arrival> {
    let mut keyed = Vec::new();
    let mut pos = 0u64;
    for (i, m) in sent.iter().enumerate() {
        for f in 0..m.frames().len() {
            let copies = if m.reliable {
                1 + u64::from(rng.below(4) == 0)
            } else if rng.below(100) < loss_pct {
                0
            } else {
                1 + u64::from(rng.below(8) == 0)
            };
            for _ in 0..copies {
                let jitter = if window == 0 {
                    0
                } else {
                    rng.below(window + 1)
                };
                keyed.push((pos + jitter, rng.next(), (i, f)));
            }
            pos += 1;
        }
    }
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, _, a)| a).collect()
}

/// What one run produced.
struct Run {
    /// Delivered message indices, in order.
    delivered: Vec<usize>,
    /// Message indices in the order the model delivers them, when every message the stream
    /// sees as a whole (unfragmented or fully reassembled) is fed to the model as it completes.
    model: Vec<usize>,
    rx: Rx,
}

/// Feeds the arrivals to a RecvStream (and the reference model), checking the invariants that
/// hold after every frame.
fn run(initial: u64, sent: &[Sent], order: &[Arrival], unreliable_limit: usize) -> Run {
    let mut rx = Rx::new(initial);
    rx.budget.unreliable_limit = unreliable_limit;
    let mut model = Model::new(initial);
    let mut model_out = Vec::new();
    let mut fragments_seen: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); sent.len()];
    let index_of = |payload: &[u8]| -> usize {
        let seq = u64::from_le_bytes(payload[..8].try_into().expect("8-byte prefix"));
        usize::try_from(seq - initial).expect("index")
    };
    let mut delivered = Vec::new();
    for &(i, f) in order {
        let m = &sent[i];
        let frames = m.frames();
        let (fragment, bytes) = &frames[f];
        let msg = IncomingMessage {
            seq: m.seq,
            rel: m.rel,
            reliable: m.reliable,
            fragment: *fragment,
            payload: bytes,
        };
        let predicted = rx.stream.buffer_charge(&msg, MAX);
        let would_buffer = rx.stream.would_buffer(m.rel, fragment.is_some());
        let before = rx.budget.reliable_used;
        let outcome = rx
            .apply(msg)
            .expect("frames of a well-behaved sender are valid");
        if m.reliable {
            match outcome {
                RecvOutcome::Queued | RecvOutcome::FragmentStored => {
                    assert!(would_buffer);
                    assert_eq!(rx.budget.reliable_used - before, predicted);
                }
                RecvOutcome::Delivered if fragment.is_none() => assert!(!would_buffer),
                RecvOutcome::Duplicate => assert_eq!(rx.budget.reliable_used, before),
                _ => {}
            }
        } else {
            assert_eq!(predicted, 0);
            assert_eq!(rx.budget.reliable_used, before);
        }
        assert!(rx.budget.unreliable_used <= rx.budget.unreliable_limit);
        rx.used();
        for (payload, reliable) in rx.out.drain(..) {
            let x = index_of(&payload);
            assert_eq!(reliable, sent[x].reliable);
            assert_eq!(&payload[..], &sent[x].payload[..], "payload of message {x}");
            delivered.push(x);
        }
        // The model sees a message when it first becomes whole.
        let newly_whole = fragments_seen[i].insert(f) && fragments_seen[i].len() == frames.len();
        if fragment.is_none() || newly_whole {
            model.arrive(sent, i, &mut model_out);
        }
    }
    Run {
        delivered,
        model: model_out,
        rx,
    }
}

/// The guarantees of docs/protocol.md §10 that hold for any arrival order.
fn check_contract(sent: &[Sent], run: &mut Run) {
    let delivered = &run.delivered;
    // Nothing twice, nothing out of send order (this covers reliable and unreliable alike).
    for w in delivered.windows(2) {
        assert!(
            sent[w[0]].seq < sent[w[1]].seq,
            "out of order: {delivered:?}"
        );
    }
    // Every reliable message exactly once, in order.
    let reliable: Vec<usize> = delivered
        .iter()
        .copied()
        .filter(|&i| sent[i].reliable)
        .collect();
    let all_reliable: Vec<usize> = (0..sent.len()).filter(|&i| sent[i].reliable).collect();
    assert_eq!(reliable, all_reliable);
    // An unreliable message never before a reliable message sent before it.
    let mut reliable_so_far = 0u64;
    let initial = run.rx.stream.initial;
    for &i in delivered {
        if sent[i].reliable {
            reliable_so_far += 1;
        } else {
            assert_eq!(sent[i].rel - initial, reliable_so_far, "message {i}");
        }
    }
    // Every reliable message arrived: nothing reliable is buffered any more.
    assert_eq!(run.rx.budget.reliable_used, 0);
    if run.rx.stream.partial_since().is_none() {
        assert_eq!(run.rx.budget.unreliable_used, 0);
        assert!(run.rx.stream.is_idle());
    }
    let later = run.rx.now + Duration::from_secs(1);
    run.rx
        .stream
        .expire_partials(later, Duration::ZERO, &mut run.rx.budget);
    assert_eq!(run.rx.budget, budget_with(&run.rx.budget));
    assert_eq!(run.rx.stream.buffered_cost(), 0);
    assert!(run.rx.stream.is_idle());
}

/// `b` with nothing used.
fn budget_with(b: &RecvBudget) -> RecvBudget {
    RecvBudget {
        reliable_used: 0,
        unreliable_used: 0,
        ..b.clone()
    }
}

fn initial_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        ((1u64 << 32) - 40..(1u64 << 32) + 5),
        0u64..(1 << 62),
    ]
}

fn window_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 1u64..4, 4u64..30, Just(1000u64)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Unfragmented unreliable messages, reliable ones split or not: the stream delivers exactly
    /// what the reference model delivers for the same arrivals (a fragmented reliable message
    /// "arrives" when its last missing fragment does).
    #[test]
    fn delivery_matches_the_reference_model(
        initial in initial_strategy(),
        specs in prop::collection::vec((any::<bool>(), 0usize..120, any::<bool>()), 1..60),
        frag_len in 4usize..40,
        window in window_strategy(),
        loss_pct in 0u64..60,
        seed in any::<u64>(),
    ) {
        let specs: Vec<_> = specs
            .into_iter()
            .map(|(reliable, len, fragmented)| (reliable, len, fragmented && reliable))
            .collect();
        let sent = build(initial, &specs, frag_len);
        let order = arrivals(&sent, &mut Rng(seed), window, loss_pct);
        let mut run = run(initial, &sent, &order, 2 * MAX);
        prop_assert_eq!(&run.delivered, &run.model);
        check_contract(&sent, &mut run);
    }

    /// Any mix of reliable, unreliable, split and whole messages, with a tight or generous
    /// unreliable budget: the contract of §10 holds and every budget returns to zero.
    #[test]
    fn fragmented_streams_keep_the_contract(
        initial in initial_strategy(),
        specs in prop::collection::vec((any::<bool>(), 0usize..300, any::<bool>()), 1..50),
        frag_len in 4usize..64,
        window in window_strategy(),
        loss_pct in 0u64..40,
        unreliable_limit in prop_oneof![Just(2 * MAX), 100usize..400],
        seed in any::<u64>(),
    ) {
        let sent = build(initial, &specs, frag_len);
        let order = arrivals(&sent, &mut Rng(seed), window, loss_pct);
        let mut run = run(initial, &sent, &order, unreliable_limit);
        check_contract(&sent, &mut run);
    }

    /// Without loss, reordering or a budget limit, every message is delivered, in order.
    #[test]
    fn in_order_lossless_streams_deliver_everything(
        initial in initial_strategy(),
        specs in prop::collection::vec((any::<bool>(), 0usize..300, any::<bool>()), 1..50),
        frag_len in 4usize..64,
    ) {
        let sent = build(initial, &specs, frag_len);
        let order: Vec<Arrival> = sent
            .iter()
            .enumerate()
            .flat_map(|(i, m)| (0..m.frames().len()).map(move |f| (i, f)))
            .collect();
        let mut run = run(initial, &sent, &order, 2 * MAX);
        prop_assert_eq!(&run.delivered, &(0..sent.len()).collect::<Vec<_>>());
        check_contract(&sent, &mut run);
    }
}
