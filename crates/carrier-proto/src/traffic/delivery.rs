//! Delivery-rate sampling (after draft-cheng-iccrg-delivery-rate-estimation): how fast the path
//! delivered data over the last round trip, measured per acknowledgement.
//!
//! The sampler keeps connection-wide counters — bytes `delivered` (acknowledged) so far, when that
//! count last moved (`delivered_time`) and the send time of the newest datagram acknowledged so far
//! (`first_sent_time`, the start of the current send interval). Every ack-eliciting datagram takes
//! a [`DeliverySnapshot`] of them when it is sent, kept in its ledger entry. When an ACK
//! acknowledges datagrams, the one sent last among them gives the sample:
//!
//! ```text
//! delivered bytes = delivered now − delivered at its send
//! send interval   = its send time − first_sent_time at its send
//! ack interval    = delivered_time now − delivered_time at its send
//! delivery rate   = delivered bytes / max(send interval, ack interval)
//! ```
//!
//! Taking the larger interval keeps ACK compression (ACKs bunched by the return path) and send
//! bursts from inflating the rate. A sample whose interval is shorter than the minimum RTT is
//! discarded as too short to mean anything.
//!
//! A sample is *application-limited* when the datagram was sent while the sender had nothing more
//! to send although the window and the pacer allowed it: such a sample shows how much the
//! application offered, not what the path can carry, so the controller never lowers its bandwidth
//! estimate with one. Everything sent until the data in flight at that moment is delivered counts
//! as application-limited.

use std::time::Duration;

/// The sampler's counters copied into a datagram when it is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct DeliverySnapshot {
    /// Bytes delivered when it was sent.
    pub(super) delivered: u64,
    /// `delivered_time` when it was sent.
    pub(super) delivered_time: u64,
    /// `first_sent_time` when it was sent.
    pub(super) first_sent_time: u64,
    /// Whether the connection was application-limited when it was sent.
    pub(super) app_limited: bool,
}

/// One delivery-rate sample: the result of one ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RateSample {
    /// Bytes delivered when the newest acknowledged datagram was sent (rounds are counted with
    /// it).
    pub(super) prior_delivered: u64,
    /// Bytes delivered over the sample's interval.
    pub(super) delivered: u64,
    /// The sample's interval; zero when it was too short to give a rate.
    pub(super) interval: Duration,
    /// Delivery rate, bytes per second; `None` when the interval was too short.
    pub(super) rate: Option<u64>,
    /// Whether the sample is application-limited (see the module docs).
    pub(super) app_limited: bool,
}

/// The newest datagram acknowledged so far by the ACK being processed.
#[derive(Clone, Copy, Debug)]
pub(super) struct Candidate {
    snapshot: DeliverySnapshot,
    time_sent: u64,
}

/// Connection-wide delivery-rate sampler. Times are nanoseconds since the traffic control's
/// creation (`crate::time`).
#[derive(Clone, Debug)]
pub(super) struct DeliveryRate {
    delivered: u64,
    delivered_time: u64,
    first_sent_time: u64,
    /// Data counts as application-limited until `delivered` passes this; 0 = not limited.
    app_limited_until: u64,
}

/// `bytes / interval` in bytes per second, saturating; `None` for an empty interval.
pub(super) fn rate(bytes: u64, interval: Duration) -> Option<u64> {
    per_second(bytes, interval.as_nanos())
}

/// [`rate`] with the interval in nanoseconds.
pub(super) fn per_second(bytes: u64, nanos: u128) -> Option<u64> {
    if nanos == 0 {
        return None;
    }
    let per_second = u128::from(bytes).saturating_mul(1_000_000_000) / nanos;
    Some(u64::try_from(per_second).unwrap_or(u64::MAX))
}

impl DeliveryRate {
    /// A sampler for a connection created at time 0.
    pub(super) fn new() -> Self {
        Self {
            delivered: 0,
            delivered_time: 0,
            first_sent_time: 0,
            app_limited_until: 0,
        }
    }

    /// Bytes delivered so far.
    pub(super) fn delivered(&self) -> u64 {
        self.delivered
    }

    /// An ack-eliciting datagram is being sent at `now` with `in_flight_before` bytes already in
    /// flight; `app_limited` says the sender has nothing more to send after it although it could.
    /// Returns the snapshot to keep with the datagram.
    pub(super) fn on_sent(
        &mut self,
        now: u64,
        size: usize,
        in_flight_before: usize,
        app_limited: bool,
    ) -> DeliverySnapshot {
        if in_flight_before == 0 {
            // Nothing in flight: a new send interval starts here, so the idle time before it
            // does not count (draft-cheng §3.2).
            self.first_sent_time = now;
            self.delivered_time = now;
        }
        if app_limited {
            let in_flight = in_flight_before.saturating_add(size);
            self.app_limited_until = self
                .delivered
                .saturating_add(u64::try_from(in_flight).unwrap_or(u64::MAX))
                .max(1);
        }
        DeliverySnapshot {
            delivered: self.delivered,
            delivered_time: self.delivered_time,
            first_sent_time: self.first_sent_time,
            app_limited: self.app_limited_until != 0,
        }
    }

    /// A datagram of `size` bytes sent at `time_sent` with `snapshot` was delivered (first
    /// acknowledged, or acknowledged after it had been declared lost). `candidate` is the ACK's
    /// sample in the making (`None` at the start of each ACK), passed on to
    /// [`finish`](Self::finish): it lives only while one ACK is processed.
    pub(super) fn on_delivered(
        &mut self,
        now: u64,
        size: usize,
        time_sent: u64,
        snapshot: DeliverySnapshot,
        candidate: &mut Option<Candidate>,
    ) {
        self.delivered = self
            .delivered
            .saturating_add(u64::try_from(size).unwrap_or(u64::MAX));
        self.delivered_time = now;
        let newer = candidate
            .is_none_or(|c| (snapshot.delivered, time_sent) > (c.snapshot.delivered, c.time_sent));
        if newer {
            *candidate = Some(Candidate {
                snapshot,
                time_sent,
            });
            // The next send interval starts at the newest delivered datagram's send time.
            self.first_sent_time = self.first_sent_time.max(time_sent);
        }
    }

    /// Closes the ACK being processed: the sample it gives, if it delivered anything. Samples
    /// over an interval shorter than `min_rtt` have no rate.
    pub(super) fn finish(
        &mut self,
        candidate: &mut Option<Candidate>,
        min_rtt: Option<u64>,
    ) -> Option<RateSample> {
        let c = candidate.take()?;
        if self.app_limited_until != 0 && self.delivered > self.app_limited_until {
            self.app_limited_until = 0;
        }
        let delivered = self.delivered.saturating_sub(c.snapshot.delivered);
        let send_elapsed = c.time_sent.saturating_sub(c.snapshot.first_sent_time);
        let ack_elapsed = self
            .delivered_time
            .saturating_sub(c.snapshot.delivered_time);
        let interval = send_elapsed.max(ack_elapsed);
        let long_enough = min_rtt.is_none_or(|m| interval >= m);
        let rate = if long_enough {
            per_second(delivered, u128::from(interval))
        } else {
            None
        };
        let interval = Duration::from_nanos(interval);
        Some(RateSample {
            prior_delivered: c.snapshot.delivered,
            delivered,
            interval: if rate.is_some() {
                interval
            } else {
                Duration::ZERO
            },
            rate,
            app_limited: c.snapshot.app_limited,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> u64 {
        0
    }

    const MS: u64 = 1_000_000;
    const MS_D: Duration = Duration::from_millis(1);

    #[test]
    fn steady_flow_measures_its_rate() {
        // 1,000 bytes every millisecond, each acknowledged 40 ms after it left: 1 MB/s.
        let t0 = base();
        let mut d = DeliveryRate::new();
        let mut p = None;
        let mut snaps = Vec::new();
        let mut in_flight = 0usize;
        let mut last = None;
        for i in 0..200u32 {
            let now = t0 + MS * u64::from(i);
            snaps.push((now, d.on_sent(now, 1_000, in_flight, false)));
            in_flight += 1_000;
            if i >= 40 {
                let (sent, snap) = snaps[(i - 40) as usize];
                d.on_delivered(now, 1_000, sent, snap, &mut p);
                in_flight -= 1_000;
                last = d.finish(&mut p, Some(40 * MS));
            }
        }
        let s = last.unwrap();
        assert!(!s.app_limited);
        let r = s.rate.unwrap();
        assert!((990_000..=1_010_000).contains(&r), "{s:?}");
        assert!(s.interval >= 40 * MS_D, "{s:?}");
    }

    #[test]
    fn idle_time_is_not_counted_and_short_samples_have_no_rate() {
        let t0 = base();
        let mut d = DeliveryRate::new();
        let mut p = None;
        let s0 = d.on_sent(t0, 1_000, 0, false);
        d.on_delivered(t0 + 10 * MS, 1_000, t0, s0, &mut p);
        // 10 ms interval with a 40 ms minimum RTT: no rate, but a sample for round counting.
        let s = d.finish(&mut p, Some(40 * MS)).unwrap();
        assert_eq!(s.rate, None);
        assert_eq!(s.delivered, 1_000);
        // One second idle, then a datagram delivered after 50 ms: the idle second is not in it.
        let t1 = t0 + 1_000 * MS;
        let s1 = d.on_sent(t1, 1_000, 0, false);
        d.on_delivered(t1 + 50 * MS, 1_000, t1, s1, &mut p);
        let s = d.finish(&mut p, Some(40 * MS)).unwrap();
        assert_eq!(s.interval, 50 * MS_D);
        assert_eq!(s.rate, Some(20_000));
        // Nothing delivered: no sample.
        assert_eq!(d.finish(&mut p, None), None);
    }

    #[test]
    fn app_limited_marks_until_the_flight_is_delivered() {
        let t0 = base();
        let mut d = DeliveryRate::new();
        let mut p = None;
        let a = d.on_sent(t0, 1_000, 0, true);
        let b = d.on_sent(t0 + MS, 1_000, 1_000, false);
        assert!(a.app_limited && b.app_limited);
        d.on_delivered(t0 + 40 * MS, 1_000, t0, a, &mut p);
        d.on_delivered(t0 + 41 * MS, 1_000, t0 + MS, b, &mut p);
        assert!(d.finish(&mut p, None).unwrap().app_limited);
        // 2,000 delivered > 1,000 marked: later datagrams are not limited.
        let c = d.on_sent(t0 + 42 * MS, 1_000, 0, false);
        assert!(!c.app_limited);
    }

    #[test]
    fn rate_saturates_and_rejects_empty_intervals() {
        assert_eq!(rate(1, Duration::ZERO), None);
        assert_eq!(rate(u64::MAX, Duration::from_nanos(1)), Some(u64::MAX));
        assert_eq!(rate(500, MS_D), Some(500_000));
    }
}
