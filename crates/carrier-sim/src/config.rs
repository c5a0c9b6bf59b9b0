//! What one direction of an emulated link does to the datagrams that cross it.
//!
//! A [`LinkConfig`] is a plain struct with public fields; [`LinkConfig::default`] is a perfect
//! pass-through (no delay, no loss, no cap). The `with_*` helpers build one by value:
//!
//! ```
//! use carrier_sim::{LinkConfig, QueueLimit};
//!
//! let cfg = LinkConfig::default()
//!     .with_jitter_ms(40.0, 10.0) // 30..50 ms one way
//!     .with_loss(0.01) // 1 % random loss
//!     .with_bandwidth_queue_kbps(2_000, 2_000, QueueLimit::Millis(100)); // 2 Mbit/s bottleneck
//! assert!(cfg.validate().is_ok());
//! ```
//!
//! Every knob documents its unit in its name or its doc: times are milliseconds (`_ms`), rates are
//! SI kilobits per second (`_kbps`, 1 kbit = 1000 bits), sizes are bytes, probabilities are in
//! `[0, 1]`. Ranges `[min, max)` are drawn as the original GridMate simulator did: uniformly, with
//! `max` itself excluded, and `min == max` meaning exactly `min`.
//!
//! # Order of the stages
//!
//! Each datagram offered to [`Link::push`](crate::Link::push) goes through these stages in this
//! order; the first one that drops it ends its journey and only that stage's counter moves:
//!
//! 1. **MTU** ([`mtu`](LinkConfig::mtu)): larger datagrams are dropped (`dropped_mtu`).
//! 2. **Blackhole** ([`blackhole`](LinkConfig::blackhole)): everything is dropped
//!    (`dropped_blackhole`).
//! 3. **Periodic loss** ([`periodic_loss`](LinkConfig::periodic_loss)): "drop 1 in every N"
//!    (`dropped_loss`).
//! 4. **Random loss** ([`loss_probability`](LinkConfig::loss_probability)) then **Gilbert–Elliott**
//!    loss ([`gilbert_elliott`](LinkConfig::gilbert_elliott)) (`dropped_loss`).
//! 5. **Burst drops** ([`burst_drop`](LinkConfig::burst_drop)): everything during the drop
//!    interval of each period (`dropped_burst`).
//! 6. **Bandwidth** ([`bandwidth`](LinkConfig::bandwidth)): in [`BandwidthMode::Drop`] the excess
//!    over the per-second byte budget is dropped (`dropped_bandwidth`); in [`BandwidthMode::Queue`]
//!    the datagram waits in a drop-tail bottleneck queue, and is dropped only if that queue is full
//!    (`dropped_queue_full`).
//! 7. **Hard memory cap** ([`max_queued_packets`](LinkConfig::max_queued_packets),
//!    [`max_queued_bytes`](LinkConfig::max_queued_bytes)): a datagram that would push the link's
//!    total queue over either cap is dropped (`dropped_queue_full`).
//! 8. **Duplication** ([`duplicate_probability`](LinkConfig::duplicate_probability)) then
//!    **corruption** ([`corrupt_probability`](LinkConfig::corrupt_probability), drawn for each copy).
//!    Duplication happens after the bottleneck, so a duplicate does not use bandwidth; it still
//!    needs room under the hard cap.
//! 9. **Latency** ([`latency`](LinkConfig::latency), drawn for each copy), with or without
//!    [`reorder`](LinkConfig::reorder).

use crate::error::ConfigError;

/// Largest accepted value, in milliseconds, of any time setting (24 hours). It keeps every
/// `Instant` computation far from overflow.
pub const MAX_MS: f64 = 86_400_000.0;

/// Largest accepted rate, in kbit/s (1 Tbit/s).
pub const MAX_KBPS: u64 = 1_000_000_000;

/// Default of [`LinkConfig::max_queued_packets`].
pub const DEFAULT_MAX_QUEUED_PACKETS: usize = 65_536;

/// Default of [`LinkConfig::max_queued_bytes`] (64 MiB).
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;

/// One-way delay added to each datagram.
///
/// Each copy of a datagram draws its own latency when it is accepted. What happens when a later
/// datagram draws a shorter latency than an earlier one depends on [`LinkConfig::reorder`].
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub enum Latency {
    /// No delay: datagrams are due as soon as they are pushed (or leave the bottleneck).
    #[default]
    None,
    /// Uniform in `[min_ms, max_ms)` ms, drawn per datagram with nanosecond resolution (the
    /// original's model, which drew whole milliseconds). `min_ms == max_ms` is a fixed delay.
    Uniform {
        /// Smallest one-way delay, ms.
        min_ms: f64,
        /// Upper bound of the one-way delay (excluded unless equal to `min_ms`), ms.
        max_ms: f64,
    },
    /// `base_ms ± jitter_ms` with a symmetric **triangular** distribution: the sum of two
    /// independent uniform draws, so values near `base_ms` are the most likely and the delay never
    /// leaves `(base_ms - jitter_ms, base_ms + jitter_ms)`. The standard deviation is
    /// `jitter_ms / √6` (≈ 0.41 × jitter). `jitter_ms` must not exceed `base_ms`.
    Jitter {
        /// Mean one-way delay, ms.
        base_ms: f64,
        /// Largest deviation from `base_ms`, ms.
        jitter_ms: f64,
    },
}

impl Latency {
    /// The smallest delay this setting can produce, in ms.
    pub fn min_ms(&self) -> f64 {
        match *self {
            Self::None => 0.0,
            Self::Uniform { min_ms, .. } => min_ms,
            Self::Jitter { base_ms, jitter_ms } => base_ms - jitter_ms,
        }
    }

    /// The largest delay this setting can produce, in ms.
    pub fn max_ms(&self) -> f64 {
        match *self {
            Self::None => 0.0,
            Self::Uniform { max_ms, .. } => max_ms,
            Self::Jitter { base_ms, jitter_ms } => base_ms + jitter_ms,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match *self {
            Self::None => Ok(()),
            Self::Uniform { min_ms, max_ms } => {
                check_ms("latency.min_ms", min_ms)?;
                check_ms("latency.max_ms", max_ms)?;
                check_range("latency.min_ms", min_ms, "latency.max_ms", max_ms)
            }
            Self::Jitter { base_ms, jitter_ms } => {
                check_ms("latency.base_ms", base_ms)?;
                check_ms("latency.jitter_ms", jitter_ms)?;
                if jitter_ms > base_ms {
                    return Err(ConfigError::JitterExceedsBase {
                        jitter_field: "latency.jitter_ms".into(),
                        jitter: jitter_ms,
                        base_field: "latency.base_ms".into(),
                        base: base_ms,
                    });
                }
                if base_ms + jitter_ms > MAX_MS {
                    return Err(ConfigError::TooLarge {
                        field: "latency.base_ms".into(),
                        value: base_ms + jitter_ms,
                        max: MAX_MS,
                    });
                }
                Ok(())
            }
        }
    }
}

/// "Drop 1 in every N datagrams", N drawn in `[min_interval, max_interval)` after each drop.
///
/// The semantics are the original's: a countdown starts at 0, so **the first datagram that reaches
/// this stage (after the link is created, enabled, or this setting changes) is dropped**; after
/// each drop the countdown is set to `N - 1`, and the next `N - 1` datagrams pass. `(2, 2)` drops
/// exactly every other datagram (50 %), `(5, 5)` exactly one in five (20 %), `(1, 1)` everything.
/// Only datagrams that passed the MTU and blackhole stages count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeriodicLoss {
    /// Smallest N, datagrams (at least 1).
    pub min_interval: u32,
    /// Upper bound of N, datagrams (excluded unless equal to `min_interval`).
    pub max_interval: u32,
}

/// Two-state Markov (Gilbert–Elliott) bursty loss.
///
/// Per datagram: the datagram is lost with the loss probability of the current state, then the
/// state moves (good → bad with `p_good_to_bad`, bad → good with `r_bad_to_good`). The chain starts
/// in the good state. In the long run the bad state is occupied a fraction
/// `π_bad = p / (p + r)` of the time, so the loss rate is
/// `(1 - π_bad) · loss_in_good + π_bad · loss_in_bad`; with `loss_in_good = 0` and
/// `loss_in_bad = 1` losses come in bursts of mean length `1 / r`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GilbertElliott {
    /// Probability of moving from the good to the bad state after a datagram, in `[0, 1]`.
    pub p_good_to_bad: f64,
    /// Probability of moving from the bad to the good state after a datagram, in `[0, 1]`.
    pub r_bad_to_good: f64,
    /// Loss probability in the good state, in `[0, 1]` (often 0).
    pub loss_in_good: f64,
    /// Loss probability in the bad state, in `[0, 1]` (often 1).
    pub loss_in_bad: f64,
}

impl GilbertElliott {
    /// The classic Gilbert model: no loss in the good state, every datagram lost in the bad one.
    pub fn gilbert(p_good_to_bad: f64, r_bad_to_good: f64) -> Self {
        Self {
            p_good_to_bad,
            r_bad_to_good,
            loss_in_good: 0.0,
            loss_in_bad: 1.0,
        }
    }

    /// The long-run loss rate: `(1 - π_bad) · loss_in_good + π_bad · loss_in_bad` with
    /// `π_bad = p / (p + r)` (0 when `p + r == 0`, as the chain then stays in the good state).
    pub fn stationary_loss(&self) -> f64 {
        let sum = self.p_good_to_bad + self.r_bad_to_good;
        let pi_bad = if sum > 0.0 {
            self.p_good_to_bad / sum
        } else {
            0.0
        };
        (1.0 - pi_bad) * self.loss_in_good + pi_bad * self.loss_in_bad
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_probability("gilbert_elliott.p_good_to_bad", self.p_good_to_bad)?;
        check_probability("gilbert_elliott.r_bad_to_good", self.r_bad_to_good)?;
        check_probability("gilbert_elliott.loss_in_good", self.loss_in_good)?;
        check_probability("gilbert_elliott.loss_in_bad", self.loss_in_bad)
    }
}

/// Periodic outages, as the original's `SetPacketDrop`: time is cut into periods of
/// `[min_period_ms, max_period_ms)` ms, and every datagram arriving during the first
/// `[min_interval_ms, max_interval_ms)` ms of a period is dropped (the interval is capped at its
/// period).
///
/// The first period starts at the first datagram that reaches this stage (after the link is
/// created, enabled, or this setting changes). Both durations are drawn again for each period.
/// If more than 1024 periods pass without a datagram, the timeline restarts at the next datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BurstDrop {
    /// Shortest period, ms (at least 1).
    pub min_period_ms: u64,
    /// Upper bound of the period (excluded unless equal to `min_period_ms`), ms.
    pub max_period_ms: u64,
    /// Shortest drop interval at the start of each period, ms (0 allowed).
    pub min_interval_ms: u64,
    /// Upper bound of the drop interval (excluded unless equal to `min_interval_ms`), ms.
    pub max_interval_ms: u64,
}

/// How a [`Bandwidth`] cap treats traffic above the rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BandwidthMode {
    /// The original's model: each one-second window has a byte budget of `rate / 8` bytes
    /// (100 kbit/s = 12,500 bytes); a datagram larger than what is left of the budget is dropped
    /// (`dropped_bandwidth`). No delay is added. Windows start at the first datagram and follow
    /// each other back to back.
    Drop,
    /// A bottleneck like a router's drop-tail queue or `tc tbf`: datagrams are sent one after the
    /// other at exactly the rate (a datagram of `n` bytes takes `8·n / rate` seconds), and wait
    /// in a FIFO queue meanwhile. A datagram that would make the queue (the bytes waiting plus the
    /// one being serialized) exceed the limit is dropped (`dropped_queue_full`). Latency is added
    /// after a datagram leaves the bottleneck.
    Queue(QueueLimit),
}

/// The capacity of a [`BandwidthMode::Queue`] bottleneck.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueLimit {
    /// At most this many bytes queued (including the datagram being serialized).
    Bytes(usize),
    /// At most this many milliseconds of data at the current rate queued, i.e.
    /// `rate_bps · ms / 8000` bytes; bounds the queueing delay a datagram can see.
    Millis(u64),
}

impl QueueLimit {
    /// The limit in bytes at `rate_bps` bits per second.
    pub fn bytes_at(self, rate_bps: u64) -> usize {
        match self {
            Self::Bytes(b) => b,
            Self::Millis(ms) => {
                let bytes = u128::from(rate_bps) * u128::from(ms) / 8000;
                usize::try_from(bytes).unwrap_or(usize::MAX)
            }
        }
    }
}

/// A bandwidth cap.
///
/// The rate is drawn in `[min_kbps, max_kbps)` kbit/s (SI: 1 kbit = 1000 bits) for each
/// one-second window, at the first datagram that arrives in the window; `min_kbps == max_kbps`
/// is a constant rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bandwidth {
    /// Lowest rate, kbit/s (at least 1).
    pub min_kbps: u64,
    /// Upper bound of the rate (excluded unless equal to `min_kbps`), kbit/s.
    pub max_kbps: u64,
    /// What happens to traffic above the rate.
    pub mode: BandwidthMode,
}

/// What one direction of a link does to datagrams. `Default` is a perfect pass-through.
///
/// See the [module docs](self) for the order in which the settings apply.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkConfig {
    /// One-way delay per datagram.
    pub latency: Latency,
    /// With latency: `true` lets a later datagram that draws a shorter delay overtake earlier ones
    /// (each datagram is released at its own arrival + delay); `false` keeps FIFO order: a
    /// datagram's release time is never earlier than the previous one's (it waits behind it).
    pub reorder: bool,
    /// "Drop 1 in every N" loss; `None` = off.
    pub periodic_loss: Option<PeriodicLoss>,
    /// Independent random loss probability per datagram, in `[0, 1]`.
    pub loss_probability: f64,
    /// Bursty Gilbert–Elliott loss; `None` = off. Applies after (and in addition to)
    /// `loss_probability`.
    pub gilbert_elliott: Option<GilbertElliott>,
    /// Periodic outages; `None` = off.
    pub burst_drop: Option<BurstDrop>,
    /// Bandwidth cap; `None` = unlimited.
    pub bandwidth: Option<Bandwidth>,
    /// Probability that an accepted datagram is delivered twice, in `[0, 1]`. The copy draws its
    /// own latency (and corruption).
    pub duplicate_probability: f64,
    /// Probability that a copy has one random bit flipped, in `[0, 1]`. Empty datagrams are never
    /// corrupted.
    pub corrupt_probability: f64,
    /// Largest datagram payload, bytes; larger ones are dropped. `None` = no limit.
    pub mtu: Option<usize>,
    /// Drop everything.
    pub blackhole: bool,
    /// Hard cap on the datagrams held by the link (bottleneck queue, latency queue, and datagrams
    /// released but not yet polled). With latency alone the link holds the datagrams sent during
    /// the last `latency.max_ms`; this cap bounds it whatever the offered load. Over the cap,
    /// datagrams are dropped (`dropped_queue_full`). Default [`DEFAULT_MAX_QUEUED_PACKETS`].
    pub max_queued_packets: usize,
    /// Hard cap on the payload bytes held by the link, like `max_queued_packets`. Default
    /// [`DEFAULT_MAX_QUEUED_BYTES`].
    pub max_queued_bytes: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            latency: Latency::None,
            reorder: false,
            periodic_loss: None,
            loss_probability: 0.0,
            gilbert_elliott: None,
            burst_drop: None,
            bandwidth: None,
            duplicate_probability: 0.0,
            corrupt_probability: 0.0,
            mtu: None,
            blackhole: false,
            max_queued_packets: DEFAULT_MAX_QUEUED_PACKETS,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
        }
    }
}

impl LinkConfig {
    /// A pass-through link (same as `default()`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Latency uniform in `[min_ms, max_ms)` ms.
    #[must_use]
    pub fn with_latency_ms(mut self, min_ms: f64, max_ms: f64) -> Self {
        self.latency = Latency::Uniform { min_ms, max_ms };
        self
    }

    /// A fixed latency of `ms` milliseconds.
    #[must_use]
    pub fn with_fixed_latency_ms(self, ms: f64) -> Self {
        self.with_latency_ms(ms, ms)
    }

    /// Latency `base_ms ± jitter_ms` (triangular, see [`Latency::Jitter`]).
    #[must_use]
    pub fn with_jitter_ms(mut self, base_ms: f64, jitter_ms: f64) -> Self {
        self.latency = Latency::Jitter { base_ms, jitter_ms };
        self
    }

    /// Allow (`true`) or forbid reordering by latency.
    #[must_use]
    pub fn with_reorder(mut self, reorder: bool) -> Self {
        self.reorder = reorder;
        self
    }

    /// Drop 1 in every `[min_interval, max_interval)` datagrams (see [`PeriodicLoss`]).
    #[must_use]
    pub fn with_periodic_loss(mut self, min_interval: u32, max_interval: u32) -> Self {
        self.periodic_loss = Some(PeriodicLoss {
            min_interval,
            max_interval,
        });
        self
    }

    /// Random loss with probability `p` in `[0, 1]`.
    #[must_use]
    pub fn with_loss(mut self, p: f64) -> Self {
        self.loss_probability = p;
        self
    }

    /// Gilbert–Elliott bursty loss.
    #[must_use]
    pub fn with_gilbert_elliott(mut self, ge: GilbertElliott) -> Self {
        self.gilbert_elliott = Some(ge);
        self
    }

    /// Outages: every `[min_period_ms, max_period_ms)` ms, drop everything for
    /// `[min_interval_ms, max_interval_ms)` ms.
    #[must_use]
    pub fn with_burst_drop_ms(
        mut self,
        min_period_ms: u64,
        max_period_ms: u64,
        min_interval_ms: u64,
        max_interval_ms: u64,
    ) -> Self {
        self.burst_drop = Some(BurstDrop {
            min_period_ms,
            max_period_ms,
            min_interval_ms,
            max_interval_ms,
        });
        self
    }

    /// A cap of `[min_kbps, max_kbps)` kbit/s that drops the excess ([`BandwidthMode::Drop`]).
    #[must_use]
    pub fn with_bandwidth_drop_kbps(mut self, min_kbps: u64, max_kbps: u64) -> Self {
        self.bandwidth = Some(Bandwidth {
            min_kbps,
            max_kbps,
            mode: BandwidthMode::Drop,
        });
        self
    }

    /// A bottleneck of `[min_kbps, max_kbps)` kbit/s with a drop-tail queue
    /// ([`BandwidthMode::Queue`]).
    #[must_use]
    pub fn with_bandwidth_queue_kbps(
        mut self,
        min_kbps: u64,
        max_kbps: u64,
        limit: QueueLimit,
    ) -> Self {
        self.bandwidth = Some(Bandwidth {
            min_kbps,
            max_kbps,
            mode: BandwidthMode::Queue(limit),
        });
        self
    }

    /// Duplicate each datagram with probability `p` in `[0, 1]`.
    #[must_use]
    pub fn with_duplicate(mut self, p: f64) -> Self {
        self.duplicate_probability = p;
        self
    }

    /// Flip one random bit of each copy with probability `p` in `[0, 1]`.
    #[must_use]
    pub fn with_corrupt(mut self, p: f64) -> Self {
        self.corrupt_probability = p;
        self
    }

    /// Drop datagrams larger than `bytes`.
    #[must_use]
    pub fn with_mtu(mut self, bytes: usize) -> Self {
        self.mtu = Some(bytes);
        self
    }

    /// Drop everything (`true`) or nothing (`false`) at the blackhole stage.
    #[must_use]
    pub fn with_blackhole(mut self, on: bool) -> Self {
        self.blackhole = on;
        self
    }

    /// Hard caps on what the link holds: datagrams and payload bytes.
    #[must_use]
    pub fn with_max_queued(mut self, packets: usize, bytes: usize) -> Self {
        self.max_queued_packets = packets;
        self.max_queued_bytes = bytes;
        self
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.latency.validate()?;
        if let Some(pl) = &self.periodic_loss {
            if pl.min_interval == 0 {
                return Err(zero("periodic_loss.min_interval"));
            }
            check_range(
                "periodic_loss.min_interval",
                f64::from(pl.min_interval),
                "periodic_loss.max_interval",
                f64::from(pl.max_interval),
            )?;
        }
        check_probability("loss_probability", self.loss_probability)?;
        if let Some(ge) = &self.gilbert_elliott {
            ge.validate()?;
        }
        if let Some(b) = &self.burst_drop {
            if b.min_period_ms == 0 {
                return Err(zero("burst_drop.min_period_ms"));
            }
            check_ms_u64("burst_drop.max_period_ms", b.max_period_ms)?;
            check_ms_u64("burst_drop.max_interval_ms", b.max_interval_ms)?;
            check_range_u64(
                "burst_drop.min_period_ms",
                b.min_period_ms,
                "burst_drop.max_period_ms",
                b.max_period_ms,
            )?;
            check_range_u64(
                "burst_drop.min_interval_ms",
                b.min_interval_ms,
                "burst_drop.max_interval_ms",
                b.max_interval_ms,
            )?;
        }
        if let Some(bw) = &self.bandwidth {
            if bw.min_kbps == 0 {
                return Err(zero("bandwidth.min_kbps"));
            }
            if bw.max_kbps > MAX_KBPS {
                return Err(ConfigError::TooLarge {
                    field: "bandwidth.max_kbps".into(),
                    value: bw.max_kbps as f64,
                    max: MAX_KBPS as f64,
                });
            }
            check_range_u64(
                "bandwidth.min_kbps",
                bw.min_kbps,
                "bandwidth.max_kbps",
                bw.max_kbps,
            )?;
            match bw.mode {
                BandwidthMode::Drop => {}
                BandwidthMode::Queue(QueueLimit::Bytes(0)) => {
                    return Err(zero("bandwidth.mode.queue_limit_bytes"));
                }
                BandwidthMode::Queue(QueueLimit::Millis(0)) => {
                    return Err(zero("bandwidth.mode.queue_limit_ms"));
                }
                BandwidthMode::Queue(QueueLimit::Millis(ms)) => {
                    check_ms_u64("bandwidth.mode.queue_limit_ms", ms)?;
                }
                BandwidthMode::Queue(QueueLimit::Bytes(_)) => {}
            }
        }
        check_probability("duplicate_probability", self.duplicate_probability)?;
        check_probability("corrupt_probability", self.corrupt_probability)?;
        if self.mtu == Some(0) {
            return Err(zero("mtu"));
        }
        if self.max_queued_packets == 0 {
            return Err(zero("max_queued_packets"));
        }
        if self.max_queued_bytes == 0 {
            return Err(zero("max_queued_bytes"));
        }
        Ok(())
    }

    /// True when the config changes nothing (the pass-through default, hard caps aside).
    pub fn is_passthrough(&self) -> bool {
        Self {
            max_queued_packets: DEFAULT_MAX_QUEUED_PACKETS,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            ..self.clone()
        } == Self::default()
    }
}

fn zero(field: &str) -> ConfigError {
    ConfigError::Zero {
        field: field.into(),
    }
}

fn check_probability(field: &str, p: f64) -> Result<(), ConfigError> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(ConfigError::InvalidProbability {
            field: field.into(),
            value: p,
        })
    }
}

fn check_ms(field: &str, ms: f64) -> Result<(), ConfigError> {
    if !ms.is_finite() || ms < 0.0 {
        return Err(ConfigError::InvalidDuration {
            field: field.into(),
            value: ms,
        });
    }
    if ms > MAX_MS {
        return Err(ConfigError::TooLarge {
            field: field.into(),
            value: ms,
            max: MAX_MS,
        });
    }
    Ok(())
}

fn check_ms_u64(field: &str, ms: u64) -> Result<(), ConfigError> {
    if ms as f64 > MAX_MS {
        return Err(ConfigError::TooLarge {
            field: field.into(),
            value: ms as f64,
            max: MAX_MS,
        });
    }
    Ok(())
}

fn check_range(min_field: &str, min: f64, max_field: &str, max: f64) -> Result<(), ConfigError> {
    if min > max {
        return Err(ConfigError::InvertedRange {
            min_field: min_field.into(),
            min,
            max_field: max_field.into(),
            max,
        });
    }
    Ok(())
}

fn check_range_u64(
    min_field: &str,
    min: u64,
    max_field: &str,
    max: u64,
) -> Result<(), ConfigError> {
    check_range(min_field, min as f64, max_field, max as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_passthrough() {
        let c = LinkConfig::default();
        assert!(c.validate().is_ok());
        assert!(c.is_passthrough());
        assert!(!c.clone().with_fixed_latency_ms(1.0).is_passthrough());
    }

    #[test]
    fn queue_limit_in_ms_converts_at_rate() {
        // 100 kbit/s for 400 ms = 40,000 bits = 5,000 bytes.
        assert_eq!(QueueLimit::Millis(400).bytes_at(100_000), 5_000);
        assert_eq!(QueueLimit::Bytes(77).bytes_at(1), 77);
    }

    #[test]
    fn stationary_loss_formula() {
        let ge = GilbertElliott::gilbert(0.1, 0.4);
        assert!((ge.stationary_loss() - 0.2).abs() < 1e-12);
        let still = GilbertElliott::gilbert(0.0, 0.0);
        assert_eq!(still.stationary_loss(), 0.0);
    }

    #[test]
    fn latency_bounds() {
        let l = Latency::Jitter {
            base_ms: 10.0,
            jitter_ms: 3.0,
        };
        assert_eq!((l.min_ms(), l.max_ms()), (7.0, 13.0));
        assert_eq!(Latency::None.max_ms(), 0.0);
    }
}
