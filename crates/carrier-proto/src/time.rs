//! Time inside the protocol: whole nanoseconds in a `u64` since an epoch (an `Instant` kept by
//! the owner, such as a connection's creation). An `Instant` is a seconds-and-nanoseconds pair,
//! so every difference, sum and comparison of two of them is multi-word arithmetic with
//! normalisation; a `u64` is one instruction. Instants are exact to the nanosecond, so for
//! instants from the epoch on the results are the same; an instant before the epoch counts as
//! the epoch, and the count saturates after 584 years.

use std::time::{Duration, Instant};

/// `d` in whole nanoseconds, saturating at `u64::MAX`.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `d` in whole nanoseconds, `None` if it does not fit (a sum with it overflows, as an
/// `Instant` sum would).
pub(crate) fn checked_nanos(d: Duration) -> Option<u64> {
    u64::try_from(d.as_nanos()).ok()
}

/// `t` as nanoseconds since `epoch` (0 before it, saturating).
pub(crate) fn since(epoch: Instant, t: Instant) -> u64 {
    nanos(t.saturating_duration_since(epoch))
}

/// The instant `n` nanoseconds after `epoch`.
pub(crate) fn instant(epoch: Instant, n: u64) -> Instant {
    epoch + Duration::from_nanos(n)
}
