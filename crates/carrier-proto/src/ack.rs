//! Selective acknowledgements: the receiver's record of packet numbers and the ACK frame.
//!
//! A receiver records every packet number it accepts in an [`AckRanges`]: a bounded, sorted set
//! of disjoint inclusive ranges. The set never grows past its configured number of ranges (when
//! reordering would create one more, the oldest range is forgotten), and the connection trims
//! it with [`AckRanges::forget_below`] once the peer has seen acknowledgements of old packets.
//! Anything below the forget floor is reported as too old, which also rejects duplicate and
//! replayed packets the set can no longer recognise.
//!
//! [`encode_ack`] writes an ACK frame body from the set, newest range first, so that an ACK
//! trimmed to fit a datagram still acknowledges the newest packets; [`decode_ack`] parses one
//! into a reusable vector. The byte layout is specified in docs/protocol.md §7 ACK frame:
//!
//! ```text
//! largest      u32     low 32 bits of the largest acknowledged packet number (§6 Packet numbers)
//! ack_delay    varint  microseconds the largest was held before this ACK was sent
//! range_count  varint  number of ranges after the first
//! first_range  varint  largest − smallest of the first (newest) range
//! range_count times:
//!   gap        varint  previous smallest − this largest − 2  (0 = exactly one packet missing)
//!   length     varint  this largest − this smallest
//! ```
//!
//! Varints are those of docs/protocol.md §2 Encoding. The arithmetic of the ranges is that of
//! RFC 9000 §19.3.1. The frame type byte is written and read by the caller.

use std::collections::VecDeque;
use std::ops::RangeInclusive;

use crate::seq;
use crate::wire::{Reader, VARINT_MAX, WireError, Writer, varint_len};

/// Upper bound applied to every `max_ranges` argument of this module (65 536 ranges), so a
/// misconfigured value can never make [`AckRanges::new`] reserve an absurd amount of memory.
pub const MAX_RANGES_LIMIT: usize = 1 << 16;

/// Size of the fixed-width `largest` field of the ACK frame.
const LARGEST_LEN: usize = 4;

/// Packet numbers received and not yet forgotten, as disjoint inclusive ranges, newest last.
///
/// Bounded: at most `max_ranges` ranges are kept. Inserting a packet number that would create
/// one range more than allowed forgets the oldest (lowest) range and raises the forget floor to
/// the start of the range that is now lowest; packet numbers below the floor are
/// [too old](Self::is_too_old) and are refused by [`insert`](Self::insert). Storage grows on
/// demand up to `max_ranges + 1` entries and is kept, so a steady connection stops allocating.
///
/// In-order arrival (the packet is at or just above [`largest`](Self::largest)) costs O(1);
/// a reordered packet costs O(log n) to find its place plus O(n) when it opens or closes a gap
/// in the middle.
///
/// ```
/// use carrier_proto::ack::AckRanges;
/// let mut r = AckRanges::new(8);
/// for pn in [1, 2, 3, 5, 6, 9] {
///     assert!(r.insert(pn));
/// }
/// assert!(!r.insert(5)); // duplicate
/// let desc: Vec<_> = r.iter_desc().collect();
/// assert_eq!(desc, [9..=9, 5..=6, 1..=3]);
/// r.forget_below(4);
/// assert!(r.is_too_old(2));
/// assert!(!r.insert(2));
/// assert_eq!(r.smallest(), Some(5));
/// ```
#[derive(Debug, Clone)]
pub struct AckRanges {
    /// `(start, end)` inclusive, ascending, disjoint and never adjacent (at least one missing
    /// packet number between two ranges); every start is `>= floor`.
    ranges: VecDeque<(u64, u64)>,
    max_ranges: usize,
    /// Lowest packet number that may still be inserted.
    floor: u64,
}

impl AckRanges {
    /// Creates an empty set that keeps at most `max_ranges` ranges (clamped to
    /// `1..=`[`MAX_RANGES_LIMIT`]).
    pub fn new(max_ranges: usize) -> Self {
        let max_ranges = max_ranges.clamp(1, MAX_RANGES_LIMIT);
        Self {
            // Grows on demand (an idle connection holds one or two ranges), never beyond
            // `max_ranges + 1` (an insert may briefly hold one more before trimming).
            ranges: VecDeque::new(),
            max_ranges,
            floor: 0,
        }
    }

    /// Gives back the capacity that bursts of reordering or loss grew the set to, keeping room
    /// for one range (an idle connection's).
    pub fn shrink_to_fit(&mut self) {
        self.ranges.shrink_to(1);
    }

    /// Records packet number `pn`.
    ///
    /// Returns `true` if it was newly recorded; `false` if it was already present or is too
    /// old — below the forget floor, or so far below the other ranges that recording it would
    /// have meant dropping it again at once (after which [`is_too_old`](Self::is_too_old) is
    /// true for it).
    pub fn insert(&mut self, pn: u64) -> bool {
        if pn < self.floor {
            return false;
        }
        let Some(top) = self.ranges.back_mut() else {
            // An idle connection holds one range: room for exactly one at first.
            self.ranges.reserve_exact(1);
            self.ranges.push_back((pn, pn));
            return true;
        };
        // Fast path: in-order arrival at or above the newest range.
        if pn > top.1 {
            // `top.1 < pn`, so `top.1 + 1` cannot overflow.
            if pn == top.1 + 1 {
                top.1 = pn;
            } else {
                crate::small::reserve_one(&mut self.ranges);
                self.ranges.push_back((pn, pn));
                // The new range is the highest, and `max_ranges >= 1`, so it survives.
                self.trim();
            }
            return true;
        }
        if pn >= top.0 {
            return false;
        }
        self.insert_reordered(pn)
    }

    /// Slow path of [`insert`](Self::insert): `floor <= pn < start of the newest range`.
    fn insert_reordered(&mut self, pn: u64) -> bool {
        // Index of the first range starting above `pn`; it exists (the newest range does).
        let idx = self.ranges.partition_point(|&(start, _)| start <= pn);
        let prev = idx.checked_sub(1).and_then(|i| self.ranges.get(i).copied());
        if prev.is_some_and(|(_, end)| end >= pn) {
            return false;
        }
        // `prev.end < pn` and `next.start > pn`, so the `+ 1` / `- 1` below cannot overflow.
        let joins_prev = prev.is_some_and(|(_, end)| end + 1 == pn);
        let next = self.ranges.get(idx).copied();
        let joins_next = next.is_some_and(|(start, _)| start - 1 == pn);
        match (joins_prev, joins_next, next) {
            (true, true, Some((_, next_end))) => {
                if let Some(p) = idx.checked_sub(1).and_then(|i| self.ranges.get_mut(i)) {
                    p.1 = next_end;
                }
                self.ranges.remove(idx);
                true
            }
            (true, _, _) => {
                if let Some(p) = idx.checked_sub(1).and_then(|i| self.ranges.get_mut(i)) {
                    p.1 = pn;
                }
                true
            }
            (false, true, _) => {
                if let Some(n) = self.ranges.get_mut(idx) {
                    n.0 = pn;
                }
                true
            }
            (false, false, _) => {
                crate::small::reserve_one(&mut self.ranges);
                self.ranges.insert(idx, (pn, pn));
                self.trim();
                // The new range was dropped again if it was the lowest one.
                pn >= self.floor
            }
        }
    }

    /// Drops the oldest ranges while there are more than `max_ranges`, raising the floor.
    fn trim(&mut self) {
        while self.ranges.len() > self.max_ranges {
            if let Some((_, end)) = self.ranges.pop_front() {
                let next_start = self
                    .ranges
                    .front()
                    .map_or(end.saturating_add(1), |&(start, _)| start);
                self.floor = self.floor.max(next_start);
            }
        }
    }

    /// Whether `pn` is below the forget floor: it can no longer be recorded, and whether it was
    /// ever received is unknown.
    pub fn is_too_old(&self, pn: u64) -> bool {
        pn < self.floor
    }

    /// The forget floor: the lowest packet number that [`insert`](Self::insert) still accepts.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Whether `pn` is recorded.
    pub fn contains(&self, pn: u64) -> bool {
        let idx = self.ranges.partition_point(|&(start, _)| start <= pn);
        idx.checked_sub(1)
            .and_then(|i| self.ranges.get(i))
            .is_some_and(|&(_, end)| pn <= end)
    }

    /// The largest recorded packet number.
    pub fn largest(&self) -> Option<u64> {
        self.ranges.back().map(|&(_, end)| end)
    }

    /// The smallest recorded packet number.
    pub fn smallest(&self) -> Option<u64> {
        self.ranges.front().map(|&(start, _)| start)
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Number of disjoint ranges recorded.
    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }

    /// The most ranges this set keeps.
    pub fn max_ranges(&self) -> usize {
        self.max_ranges
    }

    /// The recorded ranges, newest (highest) first.
    pub fn iter_desc(
        &self,
    ) -> impl DoubleEndedIterator<Item = RangeInclusive<u64>> + ExactSizeIterator + '_ {
        self.ranges.iter().rev().map(|&(start, end)| start..=end)
    }

    /// Forgets every packet number below `pn` and raises the floor to `pn` (it never goes
    /// down). Call it when the peer has acknowledged an ACK covering them.
    pub fn forget_below(&mut self, pn: u64) {
        if pn <= self.floor {
            return;
        }
        self.floor = pn;
        while let Some(front) = self.ranges.front_mut() {
            if front.1 < pn {
                self.ranges.pop_front();
            } else {
                front.0 = front.0.max(pn);
                break;
            }
        }
    }
}

/// A decoded ACK frame; its ranges are returned separately by [`decode_ack`].
///
/// ```
/// use carrier_proto::ack::{AckRanges, decode_ack, encode_ack};
/// use carrier_proto::wire::{Reader, Writer};
///
/// let mut received = AckRanges::new(16);
/// for pn in [7, 8, 10] {
///     received.insert(pn);
/// }
/// let mut buf = [0u8; 32];
/// let mut w = Writer::new(&mut buf);
/// assert_eq!(encode_ack(&received, 250, 16, &mut w)?, 2);
///
/// let mut ranges = Vec::new();
/// let frame = decode_ack(&mut Reader::new(w.written()), 12, 16, &mut ranges)?;
/// assert_eq!((frame.largest, frame.ack_delay_us), (10, 250));
/// assert_eq!(ranges, [10..=10, 7..=8]);
/// # Ok::<(), carrier_proto::wire::WireError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckFrame {
    /// Largest acknowledged packet number, expanded to 64 bits.
    pub largest: u64,
    /// Microseconds the receiver held `largest` before acknowledging it.
    pub ack_delay_us: u64,
}

/// How much of a range set an ACK frame will carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    /// Ranges to write, `>= 1`.
    ranges: usize,
    /// Encoded size in bytes.
    len: usize,
}

/// Chooses the newest ranges that fit in `budget` bytes, at most `max_ranges` of them.
///
/// A range whose gap or length does not fit a varint (a spread of more than 2^62 packet
/// numbers) ends the frame before it; the first range's length is clamped to [`VARINT_MAX`]
/// (acknowledging only its newest 2^62 packets). Acknowledging less than was received is
/// always safe; acknowledging more never happens.
fn plan(
    ranges: &AckRanges,
    ack_delay_us: u64,
    max_ranges: usize,
    budget: usize,
) -> Result<Plan, WireError> {
    let max_ranges = max_ranges.clamp(1, MAX_RANGES_LIMIT);
    let mut iter = ranges.iter_desc();
    let first = iter
        .next()
        .ok_or(WireError::Malformed("ack of no packets"))?;
    let full_first_len = first.end() - first.start();
    let first_len = full_first_len.min(VARINT_MAX);
    let base = LARGEST_LEN + varint_len(ack_delay_us.min(VARINT_MAX)) + varint_len(first_len);
    let mut best = Plan {
        ranges: 1,
        len: base + varint_len(0),
    };
    if best.len > budget {
        return Err(WireError::BufferTooSmall);
    }
    if full_first_len > VARINT_MAX {
        // The decoder will see a clamped first range; gaps below it would be misread.
        return Ok(best);
    }
    let mut prev_smallest = *first.start();
    let mut extra_bytes = 0usize;
    for (extra, range) in (1..max_ranges).zip(iter) {
        // Ranges are disjoint and non-adjacent: `prev_smallest >= end + 2`.
        let gap = prev_smallest.saturating_sub(*range.end()).saturating_sub(2);
        let length = range.end() - range.start();
        if gap > VARINT_MAX || length > VARINT_MAX {
            break;
        }
        extra_bytes = extra_bytes.saturating_add(varint_len(gap) + varint_len(length));
        // The count's varint grows with `extra` and `extra_bytes` only grows, so the total is
        // monotonic: the first range that does not fit ends the frame.
        let len = base
            .saturating_add(varint_len(extra as u64))
            .saturating_add(extra_bytes);
        if len > budget {
            break;
        }
        best = Plan {
            ranges: extra + 1,
            len,
        };
        prev_smallest = *range.start();
    }
    Ok(best)
}

/// Encoded size of the ACK frame body [`encode_ack`] writes when space is unlimited: all
/// ranges of `ranges` up to `max_ranges`. Returns 0 if `ranges` is empty (nothing to encode).
pub fn encoded_len(ranges: &AckRanges, ack_delay_us: u64, max_ranges: usize) -> usize {
    plan(ranges, ack_delay_us, max_ranges, usize::MAX).map_or(0, |p| p.len)
}

/// Smallest ACK frame body [`encode_ack`] can write for `ranges`: the first (newest) range
/// alone. If a writer has at least this much room, `encode_ack` succeeds. Returns 0 if
/// `ranges` is empty.
pub fn min_encoded_len(ranges: &AckRanges, ack_delay_us: u64) -> usize {
    encoded_len(ranges, ack_delay_us, 1)
}

/// Encodes an ACK frame body (docs/protocol.md §7 ACK frame) into `w`.
///
/// Writes as many ranges as fit in `w` (and at most `max_ranges`, clamped to
/// `1..=`[`MAX_RANGES_LIMIT`]), newest first, so a truncated ACK still acknowledges the newest
/// packets. Returns the number of ranges written (`>= 1`). `ack_delay_us` above
/// [`VARINT_MAX`] is sent as `VARINT_MAX`.
///
/// Errors, with nothing written: [`WireError::Malformed`] if `ranges` is empty,
/// [`WireError::BufferTooSmall`] if not even the first range fits (see [`min_encoded_len`]).
pub fn encode_ack(
    ranges: &AckRanges,
    ack_delay_us: u64,
    max_ranges: usize,
    w: &mut Writer<'_>,
) -> Result<usize, WireError> {
    let plan = plan(ranges, ack_delay_us, max_ranges, w.remaining())?;
    let mut iter = ranges.iter_desc().take(plan.ranges);
    let first = iter
        .next()
        .ok_or(WireError::Malformed("ack of no packets"))?;
    // The plan checked that everything below fits, so no write fails halfway.
    w.put_u32(seq::truncate(*first.end()))?;
    w.put_varint(ack_delay_us.min(VARINT_MAX))?;
    w.put_varint(plan.ranges as u64 - 1)?;
    w.put_varint((first.end() - first.start()).min(VARINT_MAX))?;
    let mut prev_smallest = *first.start();
    for range in iter {
        w.put_varint(prev_smallest - range.end() - 2)?;
        w.put_varint(range.end() - range.start())?;
        prev_smallest = *range.start();
    }
    Ok(plan.ranges)
}

/// Decodes an ACK frame body (docs/protocol.md §7 ACK frame) from `r`.
///
/// `largest_sent` is the largest packet number this side has sent; the truncated largest is
/// expanded against it (§6 Packet numbers). The ranges, newest first, are written to `out`,
/// which is cleared first and reused, so steady-state decoding does not allocate. At most
/// `max_ranges` ranges (clamped to `1..=`[`MAX_RANGES_LIMIT`]) are accepted, and the count is
/// checked against the bytes present (each range costs at least 2 bytes) before any is read.
///
/// Errors (`out` is left empty):
/// - [`WireError::Truncated`] if the frame ends early;
/// - [`WireError::Malformed`] if it acknowledges a packet above `largest_sent`, if a range
///   reaches below packet number 0, or if it has more than `max_ranges` ranges.
pub fn decode_ack(
    r: &mut Reader<'_>,
    largest_sent: u64,
    max_ranges: usize,
    out: &mut Vec<RangeInclusive<u64>>,
) -> Result<AckFrame, WireError> {
    out.clear();
    let result = decode_ack_into(r, largest_sent, max_ranges, out);
    if result.is_err() {
        out.clear();
    }
    result
}

fn decode_ack_into(
    r: &mut Reader<'_>,
    largest_sent: u64,
    max_ranges: usize,
    out: &mut Vec<RangeInclusive<u64>>,
) -> Result<AckFrame, WireError> {
    const UNDERFLOW: WireError = WireError::Malformed("ack range below packet number 0");
    let max_ranges = max_ranges.clamp(1, MAX_RANGES_LIMIT);
    let largest = seq::expand(r.u32()?, largest_sent);
    let ack_delay_us = r.varint()?;
    let extra = r.varint()?;
    let first_len = r.varint()?;
    if largest > largest_sent {
        return Err(WireError::Malformed("ack of unsent packet"));
    }
    if extra >= max_ranges as u64 {
        return Err(WireError::Malformed("too many ack ranges"));
    }
    if extra > (r.remaining() / 2) as u64 {
        return Err(WireError::Truncated);
    }
    let mut smallest = largest.checked_sub(first_len).ok_or(UNDERFLOW)?;
    out.push(smallest..=largest);
    for _ in 0..extra {
        let gap = r.varint()?;
        let length = r.varint()?;
        let end = smallest
            .checked_sub(gap)
            .and_then(|v| v.checked_sub(2))
            .ok_or(UNDERFLOW)?;
        let start = end.checked_sub(length).ok_or(UNDERFLOW)?;
        out.push(start..=end);
        smallest = start;
    }
    Ok(AckFrame {
        largest,
        ack_delay_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn set_of(max_ranges: usize, pns: impl IntoIterator<Item = u64>) -> AckRanges {
        let mut r = AckRanges::new(max_ranges);
        for pn in pns {
            r.insert(pn);
        }
        r
    }

    fn encode_vec(ranges: &AckRanges, delay: u64, max: usize, cap: usize) -> (usize, Vec<u8>) {
        let mut buf = vec![0u8; cap];
        let mut w = Writer::new(&mut buf);
        let n = encode_ack(ranges, delay, max, &mut w).unwrap();
        (n, w.written().to_vec())
    }

    /// Golden bytes of one ACK frame with 3 ranges.
    ///
    /// Received {2, 3, 5, 6, 7, 10, 11, 12}, held the largest for 100 µs:
    /// - largest 12 as u32                      -> 00 00 00 0c
    /// - ack_delay 100 (> 63, 2-byte varint)    -> 40 64
    /// - range_count 2 (ranges after the first) -> 02
    /// - first_range 12 − 10 = 2                -> 02
    /// - range 5..=7:  gap 10 − 7 − 2 = 1       -> 01, length 7 − 5 = 2 -> 02
    /// - range 2..=3:  gap 5 − 3 − 2 = 0        -> 00, length 3 − 2 = 1 -> 01
    #[test]
    fn ack_golden_three_ranges() {
        let golden = [
            0x00, 0x00, 0x00, 0x0c, 0x40, 0x64, 0x02, 0x02, 0x01, 0x02, 0x00, 0x01,
        ];
        let ranges = set_of(8, [2, 3, 5, 6, 7, 10, 11, 12]);
        assert_eq!(encoded_len(&ranges, 100, 8), golden.len());
        let (n, bytes) = encode_vec(&ranges, 100, 8, 64);
        assert_eq!(n, 3);
        assert_eq!(bytes, golden);

        let mut out = Vec::new();
        let mut r = Reader::new(&golden);
        let frame = decode_ack(&mut r, 12, 8, &mut out).unwrap();
        assert_eq!(
            frame,
            AckFrame {
                largest: 12,
                ack_delay_us: 100
            }
        );
        assert_eq!(out, [10..=12, 5..=7, 2..=3]);
        assert!(r.is_empty());
    }

    /// Golden bytes across the 2^32 boundary: largest 2^32 + 1 is sent as 1.
    ///
    /// Received {2^32 − 2, 2^32 − 1, 2^32 + 1}, delay 0:
    /// - largest low 32 bits of 2^32 + 1        -> 00 00 00 01
    /// - ack_delay 0 -> 00, range_count 1 -> 01, first_range 0 -> 00
    /// - range (2^32 − 2)..=(2^32 − 1): gap (2^32 + 1) − (2^32 − 1) − 2 = 0 -> 00, length 1 -> 01
    #[test]
    fn ack_golden_across_2_pow_32() {
        let golden = [0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x01];
        let w = 1u64 << 32;
        let ranges = set_of(8, [w - 2, w - 1, w + 1]);
        let (n, bytes) = encode_vec(&ranges, 0, 8, 64);
        assert_eq!((n, &bytes[..]), (2, &golden[..]));
        let mut out = Vec::new();
        let frame = decode_ack(&mut Reader::new(&golden), w + 5, 8, &mut out).unwrap();
        assert_eq!(frame.largest, w + 1);
        assert_eq!(out, [w + 1..=w + 1, w - 2..=w - 1]);
    }

    #[test]
    fn in_order_and_reordered_inserts_merge() {
        let mut r = AckRanges::new(16);
        assert!(r.is_empty());
        assert_eq!((r.largest(), r.smallest()), (None, None));
        assert!(r.insert(10));
        assert!(r.insert(11));
        assert!(r.insert(14));
        assert!(r.insert(12));
        assert_eq!(r.iter_desc().collect::<Vec<_>>(), [14..=14, 10..=12]);
        assert!(r.insert(13)); // closes the gap: both sides merge
        assert_eq!(r.iter_desc().collect::<Vec<_>>(), [10..=14]);
        assert!(r.insert(8));
        assert!(r.insert(9)); // joins 8 and 10..=14
        assert!(r.insert(5));
        assert!(r.insert(6)); // extends 5 upward
        assert!(r.insert(3)); // new range below everything
        assert!(r.insert(4)); // joins 3 and 5..=6
        assert_eq!(r.iter_desc().collect::<Vec<_>>(), [8..=14, 3..=6]);
        for pn in [3, 4, 6, 8, 14] {
            assert!(!r.insert(pn), "duplicate {pn}");
            assert!(r.contains(pn));
        }
        for pn in [0, 2, 7, 15] {
            assert!(!r.contains(pn));
        }
        assert_eq!((r.smallest(), r.largest()), (Some(3), Some(14)));
        assert_eq!(r.range_count(), 2);
    }

    #[test]
    fn exceeding_max_ranges_drops_oldest() {
        let mut r = AckRanges::new(3);
        for pn in [1, 3, 5] {
            assert!(r.insert(pn));
        }
        // A fourth range at the top pushes out the lowest (1) and raises the floor to 3.
        assert!(r.insert(7));
        assert_eq!(r.iter_desc().collect::<Vec<_>>(), [7..=7, 5..=5, 3..=3]);
        assert_eq!(r.floor(), 3);
        assert!(r.is_too_old(1) && r.is_too_old(2) && !r.is_too_old(3));
        assert!(!r.insert(1));
        assert!(!r.insert(2));
        // A new range in the middle also pushes out the lowest.
        assert!(r.insert(100));
        assert!(r.insert(50));
        assert_eq!(
            r.iter_desc().collect::<Vec<_>>(),
            [100..=100, 50..=50, 7..=7]
        );
        assert_eq!(r.floor(), 7);
        // Filling a gap needs no new range, so nothing is dropped.
        assert!(r.insert(51));
        assert_eq!(r.range_count(), 3);
        // A new range below every other one is dropped at once: reported as too old.
        let mut r = AckRanges::new(2);
        r.insert(10);
        r.insert(20);
        assert!(!r.insert(5));
        assert!(r.is_too_old(5));
        assert_eq!(r.iter_desc().collect::<Vec<_>>(), [20..=20, 10..=10]);
        // max_ranges 0 is clamped to 1.
        let mut r = AckRanges::new(0);
        assert_eq!(r.max_ranges(), 1);
        r.insert(1);
        r.insert(3);
        assert_eq!(r.iter_desc().collect::<Vec<_>>(), [3..=3]);
    }

    #[test]
    fn forget_below_raises_floor() {
        let mut r = set_of(8, [1, 2, 3, 6, 7, 9]);
        r.forget_below(2);
        assert_eq!(r.iter_desc().collect::<Vec<_>>(), [9..=9, 6..=7, 2..=3]);
        r.forget_below(5);
        assert_eq!(r.iter_desc().collect::<Vec<_>>(), [9..=9, 6..=7]);
        assert!(r.is_too_old(4));
        assert!(!r.insert(4));
        assert!(r.insert(5)); // at the floor: still accepted
        r.forget_below(3); // the floor never goes down
        assert_eq!(r.floor(), 5);
        r.forget_below(100);
        assert!(r.is_empty());
        assert!(!r.insert(99));
        assert!(r.insert(100));
    }

    #[test]
    fn extremes_of_u64() {
        let mut r = AckRanges::new(4);
        assert!(r.insert(u64::MAX));
        assert!(r.insert(u64::MAX - 1));
        assert!(!r.insert(u64::MAX));
        assert!(r.insert(0));
        assert_eq!(
            r.iter_desc().collect::<Vec<_>>(),
            [u64::MAX - 1..=u64::MAX, 0..=0]
        );
        // The gap (2^64 − 4) does not fit a varint: the frame stops before that range.
        let (n, bytes) = encode_vec(&r, 0, 4, 64);
        assert_eq!(n, 1);
        let mut out = Vec::new();
        decode_ack(&mut Reader::new(&bytes), u64::MAX, 4, &mut out).unwrap();
        assert_eq!(out, [u64::MAX - 1..=u64::MAX]);

        // A range below the only one allowed is dropped at once.
        let mut one = AckRanges::new(1);
        one.insert(u64::MAX);
        assert!(!one.insert(0));
        assert_eq!(one.range_count(), 1);
        let (n, bytes) = encode_vec(&one, 0, 4, 64);
        assert_eq!(n, 1);
        decode_ack(&mut Reader::new(&bytes), u64::MAX, 4, &mut out).unwrap();
        assert_eq!(out, [u64::MAX..=u64::MAX]);
    }

    #[test]
    fn ranges_longer_than_varint_max() {
        // Ranges spanning more than 2^62 packet numbers are built directly (not by 2^62
        // inserts). Newest range 5..=2^62+9: its length 2^62 + 4 exceeds VARINT_MAX, so only
        // its newest 2^62 packets are acknowledged, and the range 0..=0 below it is left out
        // (its gap would be read relative to the clamped start).
        let top = VARINT_MAX + 10;
        let mut r = AckRanges::new(4);
        r.ranges.push_back((0, 0));
        r.ranges.push_back((5, top));
        let (n, bytes) = encode_vec(&r, 0, 4, 64);
        assert_eq!(n, 1);
        let mut out = Vec::new();
        decode_ack(&mut Reader::new(&bytes), top, 4, &mut out).unwrap();
        assert_eq!(out, [top - VARINT_MAX..=top]);

        // The same long range as the second one: its length does not fit a varint, so the
        // frame stops before it.
        let mut r = AckRanges::new(4);
        r.ranges.push_back((0, VARINT_MAX + 6));
        r.ranges.push_back((top, top));
        let (n, bytes) = encode_vec(&r, 0, 4, 64);
        assert_eq!(n, 1);
        decode_ack(&mut Reader::new(&bytes), top, 4, &mut out).unwrap();
        assert_eq!(out, [top..=top]);
    }

    #[test]
    fn encode_errors_write_nothing() {
        let empty = AckRanges::new(4);
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        assert!(matches!(
            encode_ack(&empty, 0, 4, &mut w),
            Err(WireError::Malformed(_))
        ));
        assert_eq!(encoded_len(&empty, 0, 4), 0);
        assert_eq!(min_encoded_len(&empty, 0), 0);

        let ranges = set_of(8, [2, 3, 5, 6, 7, 10, 11, 12]);
        assert_eq!(min_encoded_len(&ranges, 100), 8); // 4 + 2 + 1 + 1
        let mut small = [0u8; 7];
        let mut w = Writer::new(&mut small);
        assert_eq!(
            encode_ack(&ranges, 100, 8, &mut w),
            Err(WireError::BufferTooSmall)
        );
        assert!(w.is_empty());
        // Exactly the minimum: one range. Two more bytes: two ranges.
        for (cap, want) in [(8, 1), (9, 1), (10, 2), (11, 2), (12, 3), (100, 3)] {
            let (n, bytes) = encode_vec(&ranges, 100, 8, cap);
            assert_eq!(n, want, "cap {cap}");
            assert_eq!(bytes.len(), encoded_len(&ranges, 100, want));
        }
        // max_ranges limits too, and 0 is clamped to 1.
        assert_eq!(encode_vec(&ranges, 100, 2, 100).0, 2);
        assert_eq!(encode_vec(&ranges, 100, 0, 100).0, 1);
        // An out-of-range delay is clamped rather than refused.
        let (_, bytes) = encode_vec(&ranges, u64::MAX, 8, 100);
        let mut out = Vec::new();
        let f = decode_ack(&mut Reader::new(&bytes), 12, 8, &mut out).unwrap();
        assert_eq!(f.ack_delay_us, VARINT_MAX);
    }

    #[test]
    fn decode_rejects_bad_frames() {
        let mut out = vec![0..=0];
        let malformed = |bytes: &[u8], sent: u64, max: usize, out: &mut Vec<_>| {
            let e = decode_ack(&mut Reader::new(bytes), sent, max, out).unwrap_err();
            assert!(out.is_empty());
            e
        };
        // Largest 12 but only 11 sent.
        assert_eq!(
            malformed(&[0, 0, 0, 12, 0, 0, 0], 11, 8, &mut out),
            WireError::Malformed("ack of unsent packet")
        );
        // First range 12 − 13 < 0.
        assert_eq!(
            malformed(&[0, 0, 0, 12, 0, 0, 13], 12, 8, &mut out),
            WireError::Malformed("ack range below packet number 0")
        );
        // Second range: gap 9 from smallest 10 -> 10 − 9 − 2 < 0.
        assert_eq!(
            malformed(&[0, 0, 0, 12, 0, 1, 2, 9, 0], 12, 8, &mut out),
            WireError::Malformed("ack range below packet number 0")
        );
        // Second range: end 10 − 0 − 2 = 8, length 9 -> below 0.
        assert_eq!(
            malformed(&[0, 0, 0, 12, 0, 1, 2, 0, 9], 12, 8, &mut out),
            WireError::Malformed("ack range below packet number 0")
        );
        // Three ranges when at most two are accepted.
        let golden = [0, 0, 0, 12, 0x40, 0x64, 2, 2, 1, 2, 0, 1];
        assert_eq!(
            malformed(&golden, 12, 2, &mut out),
            WireError::Malformed("too many ack ranges")
        );
        // A huge range count with few bytes is refused before reading any range.
        assert_eq!(
            malformed(
                &[0, 0, 0, 12, 0, 0x7f, 0xff, 0, 0, 0],
                12,
                MAX_RANGES_LIMIT,
                &mut out
            ),
            WireError::Truncated
        );
        // Ranges reaching exactly 0 are fine.
        decode_ack(
            &mut Reader::new(&[0, 0, 0, 12, 0, 1, 2, 0, 8]),
            12,
            8,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [10..=12, 0..=8]);
    }

    /// Packet numbers crossing 2^32 survive the u32 truncation of `largest`.
    #[test]
    fn wraps_across_2_pow_32() {
        let w = 1u64 << 32;
        let mut r = AckRanges::new(1024);
        let mut model = BTreeSet::new();
        for pn in (w - 1000)..=(w + 1000) {
            // Lose a few, including around the boundary itself.
            if (pn - (w - 1000)) % 7 == 3 || pn == w || pn == w - 2 {
                continue;
            }
            assert!(r.insert(pn));
            model.insert(pn);
        }
        assert_eq!(r.largest(), Some(w + 1000));
        assert!(r.range_count() > 250);
        let (n, bytes) = encode_vec(&r, 1234, 1024, 4096);
        assert_eq!(n, r.range_count());
        assert_eq!(&bytes[..4], &seq::truncate(w + 1000).to_be_bytes());
        for sent in [w + 1000, w + 1001, w + 100_000, w + (1 << 31) - 1 + 1000] {
            let mut out = Vec::new();
            let frame = decode_ack(&mut Reader::new(&bytes), sent, 1024, &mut out).unwrap();
            assert_eq!(frame.largest, w + 1000);
            assert_eq!(out, r.iter_desc().collect::<Vec<_>>());
            let acked: BTreeSet<u64> = out.iter().flat_map(|r| r.clone()).collect();
            assert_eq!(acked, model);
        }
    }

    /// Reference model: a plain set with a floor, dropping the lowest range when over the limit.
    #[derive(Debug)]
    struct Model {
        set: BTreeSet<u64>,
        floor: u64,
        max: usize,
    }

    impl Model {
        fn new(max: usize) -> Self {
            Self {
                set: BTreeSet::new(),
                floor: 0,
                max: max.max(1),
            }
        }

        fn ranges_asc(&self) -> Vec<(u64, u64)> {
            let mut out: Vec<(u64, u64)> = Vec::new();
            for &pn in &self.set {
                match out.last_mut() {
                    Some(last) if last.1.checked_add(1) == Some(pn) => last.1 = pn,
                    _ => out.push((pn, pn)),
                }
            }
            out
        }

        fn insert(&mut self, pn: u64) -> bool {
            if pn < self.floor || !self.set.insert(pn) {
                return false;
            }
            let ranges = self.ranges_asc();
            if ranges.len() > self.max {
                let (lo, hi) = ranges[0];
                self.set.retain(|&x| !(lo..=hi).contains(&x));
                self.floor = self.floor.max(ranges[1].0);
            }
            self.set.contains(&pn)
        }

        fn forget_below(&mut self, pn: u64) {
            self.set = self.set.split_off(&pn);
            self.floor = self.floor.max(pn);
        }

        fn desc(&self) -> Vec<RangeInclusive<u64>> {
            self.ranges_asc()
                .into_iter()
                .rev()
                .map(|(s, e)| s..=e)
                .collect()
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64),
        ForgetBelow(u64),
    }

    fn base() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0u64),
            Just((1u64 << 32) - 150),
            Just(u64::MAX - 300),
            any::<u64>().prop_map(|b| b.min(u64::MAX - 300)),
        ]
    }

    fn ops(span: u64) -> impl Strategy<Value = Vec<Op>> {
        proptest::collection::vec(
            prop_oneof![
                12 => (0..span).prop_map(Op::Insert),
                1 => (0..span).prop_map(Op::ForgetBelow),
            ],
            0..300,
        )
    }

    fn check_same(r: &AckRanges, m: &Model) -> Result<(), TestCaseError> {
        let desc = m.desc();
        prop_assert_eq!(r.iter_desc().collect::<Vec<_>>(), desc.clone());
        prop_assert_eq!(r.range_count(), desc.len());
        prop_assert_eq!(r.is_empty(), m.set.is_empty());
        prop_assert_eq!(r.largest(), m.set.last().copied());
        prop_assert_eq!(r.smallest(), m.set.first().copied());
        prop_assert_eq!(r.floor(), m.floor);
        prop_assert!(r.range_count() <= r.max_ranges());
        Ok(())
    }

    /// An arbitrary frame body: fields of the right shape with arbitrary values.
    fn frame_bytes() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<u32>(),
            proptest::collection::vec(prop_oneof![0u64..64, 0u64..20_000, 0..=VARINT_MAX], 0..40),
        )
            .prop_map(|(largest, vs)| {
                let mut buf = vec![0u8; 4 + 8 * vs.len()];
                let mut w = Writer::new(&mut buf);
                w.put_u32(largest).unwrap();
                for v in vs {
                    w.put_varint(v).unwrap();
                }
                w.written().to_vec()
            })
    }

    fn check_decoded(
        res: Result<AckFrame, WireError>,
        out: &[RangeInclusive<u64>],
        sent: u64,
        max: usize,
    ) -> Result<(), TestCaseError> {
        match res {
            Err(_) => prop_assert!(out.is_empty()),
            Ok(f) => {
                prop_assert!(!out.is_empty() && out.len() <= max.max(1));
                prop_assert!(f.largest <= sent);
                prop_assert_eq!(out.first().map(|r| *r.end()), Some(f.largest));
                for pair in out.windows(2) {
                    // Descending, disjoint and non-adjacent.
                    prop_assert!(pair[1].end().checked_add(2) <= Some(*pair[0].start()));
                }
                for r in out {
                    prop_assert!(r.start() <= r.end());
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// AckRanges agrees with the BTreeSet model, with few ranges allowed (frequent drops)
        /// and many (no drops), on any base including the u64::MAX edge.
        #[test]
        fn ack_ranges_match_model(
            base in base(),
            max in prop_oneof![1usize..6, Just(1000usize)],
            ops in ops(300),
        ) {
            let mut r = AckRanges::new(max);
            let mut m = Model::new(max);
            for op in ops {
                match op {
                    Op::Insert(x) => {
                        let pn = base + x;
                        prop_assert_eq!(r.insert(pn), m.insert(pn), "insert {}", pn);
                        prop_assert_eq!(r.is_too_old(pn), pn < m.floor);
                    }
                    Op::ForgetBelow(x) => {
                        r.forget_below(base + x);
                        m.forget_below(base + x);
                    }
                }
                check_same(&r, &m)?;
            }
            for x in 0..300 {
                let pn = base + x;
                prop_assert_eq!(r.contains(pn), m.set.contains(&pn));
                prop_assert_eq!(r.is_too_old(pn), pn < m.floor);
            }
        }

        /// Mostly in-order arrival (the fast path) with occasional reordering.
        #[test]
        fn ack_ranges_mostly_in_order(
            base in base(),
            max in 1usize..8,
            steps in proptest::collection::vec(prop_oneof![8 => Just(1i64), 2 => 2i64..5, 1 => -20i64..0], 0..300),
        ) {
            let mut r = AckRanges::new(max);
            let mut m = Model::new(max);
            let mut x: i64 = 20;
            for s in steps {
                x = (x + s).clamp(0, 299);
                let pn = base + x as u64;
                prop_assert_eq!(r.insert(pn), m.insert(pn));
                check_same(&r, &m)?;
            }
        }

        /// Encoding then decoding gives back exactly the newest ranges that fit, and no more
        /// would have fit.
        #[test]
        fn ack_encode_decode_round_trip(
            base in base(),
            pns in proptest::collection::btree_set(0u64..300, 1..200),
            extra_sent in 0u64..1_000_000,
            delay in prop_oneof![0u64..64, 0..=VARINT_MAX],
            max in 1usize..64,
            cap in 0usize..300,
        ) {
            let ranges = set_of(1000, pns.iter().map(|&x| base + x));
            let largest = ranges.largest().unwrap();
            let sent = largest.saturating_add(extra_sent);
            let mut buf = vec![0u8; cap];
            let mut w = Writer::new(&mut buf);
            let min = min_encoded_len(&ranges, delay);
            match encode_ack(&ranges, delay, max, &mut w) {
                Err(e) => {
                    prop_assert_eq!(e, WireError::BufferTooSmall);
                    prop_assert!(cap < min);
                    prop_assert!(w.is_empty());
                }
                Ok(n) => {
                    prop_assert!(cap >= min);
                    let bytes = w.written();
                    prop_assert!(n >= 1 && n <= max && n <= ranges.range_count());
                    prop_assert_eq!(bytes.len(), encoded_len(&ranges, delay, n));
                    // Maximal: one more range would not have fit (or there is none / max hit).
                    if n < max && n < ranges.range_count() {
                        prop_assert!(encoded_len(&ranges, delay, n + 1) > cap);
                    }
                    let mut out = vec![0..=0; 3];
                    let mut r = Reader::new(bytes);
                    let f = decode_ack(&mut r, sent, max, &mut out).unwrap();
                    prop_assert!(r.is_empty());
                    prop_assert_eq!(f, AckFrame { largest, ack_delay_us: delay });
                    let want: Vec<_> = ranges.iter_desc().take(n).collect();
                    prop_assert_eq!(out, want);

                    // Every strict prefix is reported as truncated, never misread.
                    for len in 0..bytes.len() {
                        let mut out = Vec::new();
                        let res = decode_ack(&mut Reader::new(&bytes[..len]), sent, max, &mut out);
                        prop_assert_eq!(res, Err(WireError::Truncated));
                        prop_assert!(out.is_empty());
                    }
                }
            }
        }

        /// Bit flips in a valid frame never panic and never yield an invalid range list.
        #[test]
        fn ack_bit_flips_never_panic(
            pns in proptest::collection::btree_set(0u64..500, 1..100),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..4),
            sent_extra in 0u64..100,
            max in 1usize..40,
        ) {
            let ranges = set_of(1000, pns);
            let sent = ranges.largest().unwrap() + sent_extra;
            let (_, mut bytes) = encode_vec(&ranges, 77, 1000, 2048);
            for (i, bit) in flips {
                let i = i.index(bytes.len());
                bytes[i] ^= 1 << bit;
            }
            let mut out = Vec::new();
            let res = decode_ack(&mut Reader::new(&bytes), sent, max, &mut out);
            check_decoded(res, &out, sent, max)?;
        }

        /// Arbitrary bytes, shaped or not, never panic and never give more than `max` ranges.
        #[test]
        fn ack_decode_arbitrary_bytes(
            bytes in prop_oneof![proptest::collection::vec(any::<u8>(), 0..128), frame_bytes()],
            sent in prop_oneof![any::<u64>(), 0u64..100, Just(u64::MAX)],
            max in prop_oneof![0usize..8, Just(usize::MAX)],
        ) {
            let mut out = vec![1..=2];
            let mut r = Reader::new(&bytes);
            let res = decode_ack(&mut r, sent, max, &mut out);
            prop_assert!(out.len() <= MAX_RANGES_LIMIT.min(max.max(1)));
            check_decoded(res, &out, sent, max)?;
            prop_assert!(r.position() <= bytes.len());
        }
    }
}
