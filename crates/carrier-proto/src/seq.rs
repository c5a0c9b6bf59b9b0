//! Wrap-safe sequence numbers: 64 bits in memory, 32 bits on the wire.
//!
//! Packet numbers and per-stream message sequences are `u64` inside Carrier, so they never wrap
//! in the life of a connection and can be compared with `<`. On the wire only their low 32 bits
//! are sent ([`truncate`]); the receiver rebuilds the full value with [`expand`], choosing the
//! 64-bit number with those low bits that is closest to the value it expects next. This is the
//! packet-number decoding of RFC 9000 §A.3 with a fixed 32-bit window, specified in
//! docs/protocol.md §6 Packet numbers.
//!
//! The reconstruction is exact as long as the true value lies in the half-open window
//! `(expected − 2^31, expected + 2^31]` — i.e. the sender never has more than about two billion
//! numbers in flight or reordered, far beyond anything a game connection reaches. A value
//! exactly 2^31 away is read as being *ahead* of `expected` (the newer interpretation).
//!
//! Near 0 and near `u64::MAX` part of that window falls outside the `u64` range; there the
//! nearest candidate that *is* representable is returned instead, so [`expand`] never
//! underflows or overflows.

/// Size of the window of distinct truncated values: 2^32.
pub const WINDOW: u64 = 1 << 32;

/// Half the window, 2^31: the farthest a value may be from the expected one and still be
/// reconstructed exactly.
pub const HALF_WINDOW: u64 = 1 << 31;

/// The low 32 bits of `v`, as sent on the wire.
///
/// ```
/// use carrier_proto::seq::truncate;
/// assert_eq!(truncate(0x1_0000_0005), 5);
/// ```
pub const fn truncate(v: u64) -> u32 {
    // Truncation is the point: keep the low 32 bits.
    v as u32
}

/// Rebuilds a full sequence number from its low 32 bits.
///
/// Returns the value `c` with `truncate(c) == truncated` that lies in the window
/// `(expected − 2^31, expected + 2^31]`. When that candidate would be below 0 or above
/// `u64::MAX`, the candidate 2^32 away on the other side of `expected` (the closest
/// representable one) is returned instead. For packet numbers, `expected` is the largest number received so far
/// plus one; for acknowledgements it is the largest number sent.
///
/// ```
/// use carrier_proto::seq::{expand, truncate};
/// // Just past a 2^32 boundary, a small truncated value means "after the boundary"...
/// assert_eq!(expand(3, 0xffff_fff0), 0x1_0000_0003);
/// // ...and a large one just after it means "before the boundary".
/// assert_eq!(expand(0xffff_fff0, 0x1_0000_0003), 0xffff_fff0);
/// let pn = 0x0123_4567_89ab_cdef;
/// assert_eq!(expand(truncate(pn), pn - 1000), pn);
/// ```
pub fn expand(truncated: u32, expected: u64) -> u64 {
    // The distance from `expected` to the candidate, modulo 2^32 (this runs for every packet
    // and message received: plain u64 arithmetic, no i128).
    let ahead = u64::from(truncated.wrapping_sub(truncate(expected)));
    if ahead <= HALF_WINDOW {
        // `expected + ahead`, or 2^32 lower if that is above u64::MAX (then `expected` is
        // within 2^31 of the top, so the result stays in range).
        expected
            .checked_add(ahead)
            .unwrap_or_else(|| expected - (WINDOW - ahead))
    } else {
        // `expected − back` with back in 1..2^31, or 2^32 higher if that is below 0.
        let back = WINDOW - ahead;
        expected
            .checked_sub(back)
            .unwrap_or_else(|| expected + ahead)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference: among all in-range candidates with the right low bits, the one in the
    /// window, else the closest one (brute force over a few multiples of 2^32).
    fn model(truncated: u32, expected: u64) -> u64 {
        let e = i128::from(expected);
        let base = (e >> 32) << 32;
        let cands: Vec<i128> = (-2..=2)
            .map(|k| base + k * (1i128 << 32) + i128::from(truncated))
            .filter(|&c| c >= 0 && c <= i128::from(u64::MAX))
            .collect();
        if let Some(&c) = cands
            .iter()
            .find(|&&c| c > e - (1 << 31) && c <= e + (1 << 31))
        {
            return c as u64;
        }
        *cands.iter().min_by_key(|&&c| (c - e).abs()).unwrap() as u64
    }

    fn check_window(expected: u64, offset: i128) {
        let actual = i128::from(expected) + offset;
        if actual < 0 || actual > i128::from(u64::MAX) {
            return;
        }
        let actual = actual as u64;
        assert_eq!(
            expand(truncate(actual), expected),
            actual,
            "expected={expected:#x} actual={actual:#x}"
        );
    }

    #[test]
    fn truncate_keeps_low_bits() {
        assert_eq!(truncate(0), 0);
        assert_eq!(truncate(u64::MAX), u32::MAX);
        assert_eq!(truncate(0xdead_beef_0000_0001), 1);
    }

    #[test]
    fn expand_near_multiples_of_2_pow_32() {
        let offsets: Vec<i128> = (-3..=3)
            .chain([
                -(1 << 31) + 1,
                -(1 << 31) + 2,
                (1 << 31) - 1,
                1 << 31,
                -(1 << 16),
                1 << 16,
            ])
            .collect();
        for k in [0u64, 1, 2, 3, 0xffff, 0xffff_fffe, 0xffff_ffff] {
            let m = i128::from(k) << 32;
            for d in -4i128..=4 {
                let e = m + d;
                if e < 0 || e > i128::from(u64::MAX) {
                    continue;
                }
                for &off in &offsets {
                    check_window(e as u64, off);
                }
            }
        }
    }

    #[test]
    fn ties_resolve_forward() {
        // Exactly 2^31 ahead is accepted; exactly 2^31 behind is read as 2^31 ahead.
        let e = 10 * WINDOW;
        assert_eq!(expand(truncate(e + HALF_WINDOW), e), e + HALF_WINDOW);
        assert_eq!(expand(truncate(e - HALF_WINDOW), e), e + HALF_WINDOW);
        assert_eq!(
            expand(truncate(e - HALF_WINDOW + 1), e),
            e - HALF_WINDOW + 1
        );
    }

    #[test]
    fn edges_of_u64_pick_in_range_candidate() {
        // Near 0: a value that "should" be 2^31 + 5 below 0 must come out as the in-range
        // candidate above.
        assert_eq!(expand(u32::MAX, 0), u64::from(u32::MAX));
        assert_eq!(expand(u32::MAX, 5), u64::from(u32::MAX));
        assert_eq!(expand(0x8000_0000, 0), 0x8000_0000);
        assert_eq!(expand(0x8000_0001, 0), 0x8000_0001);
        // Near u64::MAX: the forward candidate would overflow, so the one below is chosen.
        assert_eq!(expand(0, u64::MAX), u64::MAX - u64::from(u32::MAX));
        assert_eq!(expand(u32::MAX, u64::MAX), u64::MAX);
        assert_eq!(expand(5, u64::MAX - 2), u64::MAX - u64::from(u32::MAX) + 5);
        for t in [0u32, 1, 0x7fff_ffff, 0x8000_0000, 0x8000_0001, u32::MAX] {
            for e in [0u64, 1, HALF_WINDOW, u64::MAX, u64::MAX - HALF_WINDOW] {
                assert_eq!(expand(t, e), model(t, e), "t={t:#x} e={e:#x}");
            }
        }
    }

    proptest! {
        /// The defining property: any value within the window round-trips exactly.
        #[test]
        fn round_trips_within_window(
            expected in any::<u64>(),
            offset in (-(1i128 << 31) + 1)..=(1i128 << 31),
        ) {
            check_window(expected, offset);
        }

        /// Same, with `expected` drawn near the interesting edges.
        #[test]
        fn round_trips_near_edges(
            k in prop_oneof![Just(0u64), Just(1), Just(0xffff_ffff), any::<u32>().prop_map(u64::from)],
            d in -(1i64 << 33)..(1i64 << 33),
            offset in (-(1i128 << 31) + 1)..=(1i128 << 31),
        ) {
            let e = (i128::from(k) << 32) + i128::from(d);
            if e >= 0 && e <= i128::from(u64::MAX) {
                check_window(e as u64, offset);
            }
            let e = i128::from(u64::MAX) - i128::from(d.unsigned_abs());
            check_window(e as u64, offset);
        }

        /// For any input the result has the right low bits and agrees with the brute-force
        /// model (closest in-range candidate, ties forward).
        #[test]
        fn matches_model(truncated in any::<u32>(), expected in any::<u64>()) {
            let r = expand(truncated, expected);
            prop_assert_eq!(truncate(r), truncated);
            prop_assert_eq!(r, model(truncated, expected));
        }
    }
}
