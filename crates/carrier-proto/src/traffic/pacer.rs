//! Pacing: spreads ack-eliciting datagrams over time at the congestion controller's pacing rate
//! instead of sending a whole window at once (docs/traffic-control.md, "Pacing").
//!
//! The pacer is a virtual-time token bucket. It keeps `release`, the earliest instant the next
//! datagram may leave. Sending `n` bytes moves it forward by `n / rate`; when the sender was idle
//! it restarts from `now − (burst − n) / rate`, so at most `burst` bytes may leave back to back
//! after a pause (credit for idle time is capped there). `burst` is
//! `max(PACING_BURST_DATAGRAMS × max datagram size, rate × PACING_BURST_TIME)`: a few datagrams
//! at low rates, one millisecond of data at high rates, so a driver woken a little late by its
//! timer does not fall behind.
//!
//! When the pacer holds data back, the wake-up it asks for is not `release` itself but the
//! instant credit for `max(1 datagram, rate × PACING_BURST_TIME)` has accumulated: at low rates
//! one datagram per wake-up, at high rates about a millisecond of datagrams per wake-up, so the
//! driver is not woken for every datagram (at 200 Mbit/s a datagram leaves every 55 µs).

use std::time::Duration;

/// Smallest burst the pacer allows after a pause, in datagrams of the largest size: the initial
/// window, so the messages of one game tick leave together after an idle period.
pub(super) const PACING_BURST_DATAGRAMS: usize = 10;
/// The burst at high rates, as time at the pacing rate.
pub(super) const PACING_BURST_TIME: Duration = Duration::from_millis(1);

/// Time to send `bytes` at `rate` bytes per second, nanoseconds (saturating; zero rate →
/// `u64::MAX`).
pub(super) fn transmit_time(bytes: u64, rate: u64) -> u64 {
    if rate == 0 {
        return u64::MAX;
    }
    let nanos = u128::from(bytes).saturating_mul(1_000_000_000) / u128::from(rate);
    u64::try_from(nanos).unwrap_or(u64::MAX)
}

/// The pacer of one connection.
#[derive(Clone, Debug, Default)]
pub(super) struct Pacer {
    /// Nanoseconds since the traffic control's creation (`crate::time`), signed: the idle
    /// credit can reach back before the creation, as it could with an `Instant`.
    release: Option<i64>,
}

impl Pacer {
    /// An ack-eliciting datagram of `size` bytes left at `now`; `rate` is the pacing rate in
    /// bytes per second (`None`: not paced) and `max_datagram_size` sizes the burst.
    pub(super) fn on_sent(
        &mut self,
        now: u64,
        size: usize,
        rate: Option<u64>,
        max_datagram_size: usize,
    ) {
        let Some(rate) = rate.filter(|&r| r > 0) else {
            self.release = None;
            return;
        };
        let per_time = u128::from(rate) * PACING_BURST_TIME.as_nanos() / 1_000_000_000;
        let burst_bytes = u64::try_from(PACING_BURST_DATAGRAMS.saturating_mul(max_datagram_size))
            .unwrap_or(u64::MAX)
            .max(u64::try_from(per_time).unwrap_or(u64::MAX));
        let size = u64::try_from(size).unwrap_or(u64::MAX);
        // This datagram is part of the burst: credit for idle time covers the rest of it.
        let credit = transmit_time(burst_bytes.saturating_sub(size), rate);
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let earliest = now.checked_sub_unsigned(credit).unwrap_or(now);
        let start = self.release.map_or(earliest, |r| r.max(earliest));
        let cost = transmit_time(size, rate);
        self.release = start.checked_add_unsigned(cost);
    }

    /// `None` if a datagram may leave now; otherwise when to try again (module docs: a little
    /// after `release` at high rates, so several datagrams leave per wake-up).
    pub(super) fn next_send_time(
        &self,
        now: u64,
        rate: Option<u64>,
        max_datagram_size: usize,
    ) -> Option<u64> {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        // Later than `now`, so positive.
        let release = self.release.filter(|&r| r > now)?.unsigned_abs();
        let Some(rate) = rate.filter(|&r| r > 0) else {
            return Some(release);
        };
        let per_time = u128::from(rate) * PACING_BURST_TIME.as_nanos() / 1_000_000_000;
        let quantum = u64::try_from(per_time).unwrap_or(u64::MAX);
        let extra = quantum.saturating_sub(u64::try_from(max_datagram_size).unwrap_or(u64::MAX));
        Some(
            release
                .checked_add(transmit_time(extra, rate))
                .unwrap_or(release),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> u64 {
        0
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn spaces_datagrams_at_the_rate_after_a_small_burst() {
        let t0 = base() + 1_000 * MS;
        let mut p = Pacer::default();
        // 1,000,000 B/s, 1,000-byte datagrams: a burst of 10, then one per millisecond.
        let mut now = t0;
        let mut sent = 0;
        while p.next_send_time(now, Some(1_000_000), 1_000).is_none() {
            p.on_sent(now, 1_000, Some(1_000_000), 1_000);
            sent += 1;
        }
        assert_eq!(sent, 10);
        // The burst is spent: the next one waits a millisecond.
        assert_eq!(
            p.next_send_time(now, Some(1_000_000), 1_000).unwrap() - now,
            MS
        );
        for _ in 0..10 {
            now = p.next_send_time(now, Some(1_000_000), 1_000).unwrap_or(now);
            p.on_sent(now, 1_000, Some(1_000_000), 1_000);
        }
        // Ten more over ten milliseconds.
        assert!(now - t0 >= 9 * MS, "{:?}", now - t0);
        assert!(now - t0 <= 10 * MS, "{:?}", now - t0);
        assert_eq!(
            p.next_send_time(now, Some(1_000_000), 1_000).unwrap() - now,
            MS
        );
    }

    #[test]
    fn high_rates_wake_up_once_per_millisecond_of_data() {
        let t0 = base() + 1_000 * MS;
        let mut p = Pacer::default();
        // 100 MB/s, 1,000-byte datagrams: 10 µs each; the burst is 1 ms = 100 datagrams.
        let rate = Some(100_000_000);
        let mut now = t0;
        let mut wakeups = 0;
        let mut sent = 0;
        while now < t0 + 20 * MS {
            while p.next_send_time(now, rate, 1_000).is_none() {
                p.on_sent(now, 1_000, rate, 1_000);
                sent += 1;
            }
            now = p.next_send_time(now, rate, 1_000).unwrap();
            wakeups += 1;
        }
        // 20 ms at 100 MB/s = 2,000 datagrams (+ the first burst), about 20 wake-ups.
        assert!((2_000..=2_200).contains(&sent), "{sent}");
        assert!((18..=22).contains(&wakeups), "{wakeups}");
    }

    #[test]
    fn unpaced_and_zero_rates_never_wait() {
        let t0 = base();
        let mut p = Pacer::default();
        p.on_sent(t0, 1_000, None, 1_000);
        assert_eq!(p.next_send_time(t0, None, 1_000), None);
        p.on_sent(t0, 1_000, Some(0), 1_000);
        assert_eq!(p.next_send_time(t0, None, 1_000), None);
        assert_eq!(transmit_time(1, 0), u64::MAX);
        assert_eq!(transmit_time(1_000, 1_000_000), MS);
    }
}
