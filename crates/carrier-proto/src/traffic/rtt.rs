//! Round-trip time estimation and the retransmission timeout (docs/protocol.md §13).
//!
//! [`RttEstimator`] keeps the RFC 6298 smoothed RTT and RTT variation with QUIC's refinements
//! (RFC 9002 §5): the minimum RTT is taken from raw samples, and the peer's reported ack delay is
//! subtracted from a sample only when that keeps it at or above the minimum, so a peer cannot
//! talk the estimate below what the path has shown. [`RttEstimator::rto`] turns the estimate into
//! the base retransmission timeout; the exponential backoff lives in the traffic control, which
//! knows when an ACK made progress.

use std::time::Duration;

use super::RttEstimate;

/// Timer granularity: the smallest variance term of the RTO and the smallest loss delay
/// (docs/protocol.md §13, `max(4 rttvar, 1 ms)`).
pub(super) const GRANULARITY: Duration = Duration::from_millis(1);
/// [`GRANULARITY`] in nanoseconds.
const GRANULARITY_NANOS: u64 = 1_000_000;

/// A duration as the estimator stores it: whole nanoseconds in a `u64` (half a `Duration`),
/// saturating at about 584 years, far beyond any round trip. The estimator's arithmetic only
/// divides by 2, 4 and 8, which a `Duration` does exactly too, so the results are the same.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The inverse of [`nanos`]; the saturated value stands for `Duration::MAX`, so an absurd
/// configured RTT still saturates the RTO instead of wrapping to a mere 584 years.
fn dur(n: u64) -> Duration {
    if n == u64::MAX {
        Duration::MAX
    } else {
        Duration::from_nanos(n)
    }
}

/// RFC 6298 RTT estimator with QUIC's ack-delay and minimum-RTT rules. Durations are stored as
/// nanoseconds ([`nanos`]): 40 B instead of 72 per connection.
#[derive(Clone, Copy, Debug)]
pub(super) struct RttEstimator {
    /// `srtt` once `has_samples`; before, the initial guess (the first sample replaces it).
    smoothed: u64,
    /// `rttvar`; meaningful once `has_samples`.
    variance: u64,
    /// Smallest raw sample (ack delay not subtracted).
    min: u64,
    /// Latest raw sample (ack delay not subtracted).
    latest: u64,
    has_samples: bool,
}

impl RttEstimator {
    /// An estimator that answers `initial` until the first sample.
    pub(super) fn new(initial: Duration) -> Self {
        let initial = nanos(initial);
        Self {
            smoothed: initial,
            variance: initial / 2,
            min: 0,
            latest: 0,
            has_samples: false,
        }
    }

    /// Feeds one sample: `sample` is `now − time_sent` of the largest newly acknowledged,
    /// ack-eliciting datagram, `ack_delay` the delay the peer reported for it.
    pub(super) fn update(&mut self, sample: Duration, ack_delay: Duration) {
        // docs/protocol.md §13: the RTT is the network's round trip, so the time the peer held
        // the datagram before acknowledging it is subtracted from every sample (the caller caps it
        // at the peer's max_ack_delay), keeping at least 1 µs. The
        // minimum RTT is the smallest adjusted sample; `latest` keeps the raw sample.
        let adjusted = nanos(
            sample
                .checked_sub(ack_delay)
                .filter(|a| !a.is_zero())
                .unwrap_or(Duration::from_micros(1).min(sample)),
        );
        self.latest = nanos(sample);
        if !self.has_samples {
            // First sample: srtt = sample, rttvar = sample / 2.
            self.min = adjusted;
            self.smoothed = adjusted;
            self.variance = adjusted / 2;
            self.has_samples = true;
            return;
        }
        self.min = self.min.min(adjusted);
        // docs/protocol.md §13 (RFC 6298 §2.3): rttvar first, with the old srtt.
        let deviation = self.smoothed.abs_diff(adjusted);
        self.variance = (self.variance.saturating_mul(3) / 4).saturating_add(deviation / 4);
        self.smoothed = (self.smoothed.saturating_mul(7) / 8).saturating_add(adjusted / 8);
    }

    /// The smoothed RTT, or the initial guess before the first sample.
    pub(super) fn smoothed(&self) -> Duration {
        dur(self.smoothed)
    }

    /// The latest raw sample (zero before the first sample).
    pub(super) fn latest(&self) -> Duration {
        dur(self.latest)
    }

    /// Whether at least one sample was taken.
    /// The minimum RTT, nanoseconds ([`RttEstimate::min`]).
    pub(super) fn min_nanos(&self) -> u64 {
        self.min
    }

    pub(super) fn has_samples(&self) -> bool {
        self.has_samples
    }

    /// The base retransmission timeout, before any backoff (docs/protocol.md §13):
    /// `srtt + max(4 rttvar, 1 ms) + max_ack_delay`, or `2 × initial RTT` before the first sample;
    /// then at least `min_rto` and at most `max_rto` (the maximum wins if they cross).
    pub(super) fn rto(
        &self,
        max_ack_delay: Duration,
        min_rto: Duration,
        max_rto: Duration,
    ) -> Duration {
        let smoothed = dur(self.smoothed);
        let raw = if self.has_samples {
            smoothed
                .saturating_add(dur(self.variance).saturating_mul(4).max(GRANULARITY))
                .saturating_add(max_ack_delay)
        } else {
            // `smoothed` is still the initial guess.
            smoothed.saturating_mul(2)
        };
        raw.max(min_rto).min(max_rto)
    }

    /// [`Self::rto`] with every duration in nanoseconds, computed in `u64` (the `Duration`
    /// arithmetic costs about twice as much): `None` when a value or an intermediate result does
    /// not fit, and the caller then asks [`Self::rto`]. Whenever it answers, it answers exactly
    /// what [`Self::rto`] does.
    pub(super) fn rto_nanos(&self, max_ack_delay: u64, min_rto: u64, max_rto: u64) -> Option<u64> {
        if self.smoothed == u64::MAX || self.variance == u64::MAX {
            // Saturated: they stand for `Duration::MAX` (`dur`).
            return None;
        }
        let raw = if self.has_samples {
            self.smoothed
                .checked_add(self.variance.checked_mul(4)?.max(GRANULARITY_NANOS))?
                .checked_add(max_ack_delay)?
        } else {
            self.smoothed.checked_mul(2)?
        };
        Some(raw.max(min_rto).min(max_rto))
    }

    /// The public view.
    pub(super) fn estimate(&self) -> RttEstimate {
        RttEstimate {
            smoothed: dur(self.smoothed),
            variance: dur(self.variance),
            min: dur(self.min),
            latest: dur(self.latest),
            has_samples: self.has_samples,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn first_sample_sets_srtt_and_half_variance() {
        let mut rtt = RttEstimator::new(100 * MS);
        assert_eq!(rtt.smoothed(), 100 * MS);
        assert!(!rtt.has_samples());
        rtt.update(40 * MS, Duration::ZERO);
        let e = rtt.estimate();
        assert_eq!(e.smoothed, 40 * MS);
        assert_eq!(e.variance, 20 * MS);
        assert_eq!(e.min, 40 * MS);
        assert_eq!(e.latest, 40 * MS);
        assert!(e.has_samples);
    }

    #[test]
    fn later_samples_follow_rfc6298_weights() {
        let mut rtt = RttEstimator::new(100 * MS);
        rtt.update(80 * MS, Duration::ZERO);
        rtt.update(160 * MS, Duration::ZERO);
        // rttvar = 3/4·40 + 1/4·|80 − 160| = 30 + 20 = 50; srtt = 7/8·80 + 1/8·160 = 70 + 20 = 90.
        assert_eq!(rtt.estimate().variance, 50 * MS);
        assert_eq!(rtt.smoothed(), 90 * MS);
        assert_eq!(rtt.estimate().min, 80 * MS);
        assert_eq!(rtt.latest(), 160 * MS);
        // A smaller sample lowers the minimum; the ack delay is excluded from it.
        rtt.update(30 * MS, 5 * MS);
        assert_eq!(rtt.estimate().min, 25 * MS);
        assert_eq!(rtt.latest(), 30 * MS);
    }

    #[test]
    fn rto_formula_floor_ceiling_and_initial() {
        let mut rtt = RttEstimator::new(100 * MS);
        // Before any sample: 2 × initial.
        assert_eq!(rtt.rto(5 * MS, 20 * MS, 60_000 * MS), 200 * MS);
        rtt.update(40 * MS, Duration::ZERO);
        // 40 + max(4·20, 1) + 5 = 125.
        assert_eq!(rtt.rto(5 * MS, 20 * MS, 60_000 * MS), 125 * MS);
        // Ceiling.
        assert_eq!(rtt.rto(5 * MS, 20 * MS, 100 * MS), 100 * MS);
        // Crossed bounds: never panics, the maximum wins.
        assert_eq!(rtt.rto(5 * MS, 500 * MS, 100 * MS), 100 * MS);
    }

    #[test]
    fn rto_nanos_matches_rto() {
        let durations = [
            Duration::ZERO,
            Duration::from_nanos(1),
            MS,
            5 * MS,
            20 * MS,
            100 * MS,
            60_000 * MS,
            Duration::from_nanos(u64::MAX / 3),
            Duration::from_nanos(u64::MAX),
            Duration::MAX,
        ];
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).ok();
        for initial in durations {
            let mut rtt = RttEstimator::new(initial);
            for sample in durations.iter().copied().chain([initial]) {
                for &delay in &durations {
                    for &min in &durations {
                        for &max in &durations {
                            let fast = nanos(delay)
                                .zip(nanos(min))
                                .zip(nanos(max))
                                .and_then(|((d, lo), hi)| rtt.rto_nanos(d, lo, hi));
                            if let Some(fast) = fast {
                                assert_eq!(Duration::from_nanos(fast), rtt.rto(delay, min, max));
                            }
                        }
                    }
                }
                rtt.update(sample, Duration::ZERO);
            }
        }
    }

    #[test]
    fn huge_values_saturate() {
        let mut rtt = RttEstimator::new(Duration::MAX);
        assert_eq!(
            rtt.rto(Duration::MAX, Duration::ZERO, Duration::MAX),
            Duration::MAX
        );
        rtt.update(Duration::MAX, Duration::MAX);
        rtt.update(Duration::ZERO, Duration::MAX);
        rtt.update(Duration::MAX, Duration::ZERO);
        assert_eq!(
            rtt.rto(Duration::MAX, Duration::ZERO, 60_000 * MS),
            60_000 * MS
        );
    }
}
