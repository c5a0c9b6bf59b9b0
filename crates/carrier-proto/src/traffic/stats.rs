//! Statistics bookkeeping of the default traffic control (the original's three sets × two kinds,
//! gridmate-carrier-facts §5.2, reshaped for docs/protocol.md §13).
//!
//! Counters are kept for two kinds of data — *all data* (whole datagrams, headers included) and
//! *effective data* (user payload bytes only; its packet counters count only datagrams that
//! carried payload) — over three spans: the current one-second period (accumulating), the last
//! complete period, and the lifetime. Periods are aligned to the creation instant of the
//! connection: period `k` is `[start + k s, start + (k + 1) s)`. When `now` crosses a period
//! boundary the current counters become the last second's; if more than one boundary was crossed,
//! the last complete period saw nothing and the last second is all zeros. The last second keeps its
//! counters and the RTT at its end; its derived values (loss ratio, connection factor) follow from
//! them. The counters of one-second periods are `u32` (saturating: 4 GiB or 4 G datagrams per
//! second), the lifetime's `u64`.

use super::StatsSet;
use super::default::Sent;

/// Length of a statistics period, nanoseconds (one second).
const PERIOD_NANOS: u64 = 1_000_000_000;

/// A saturating counter: `u64` for the lifetime, `u32` for one-second periods (4 GiB or 4 G
/// packets per second saturate, far beyond what a connection carries; half the memory).
trait Count: Copy + Default + PartialEq + Eq + std::fmt::Debug {
    /// `self + n`, saturating.
    fn plus(self, n: usize) -> Self;
    /// `self - 1`, saturating.
    fn minus_one(self) -> Self;
    fn wide(self) -> u64;
}

impl Count for u64 {
    fn plus(self, n: usize) -> Self {
        self.saturating_add(u64::try_from(n).unwrap_or(u64::MAX))
    }
    fn minus_one(self) -> Self {
        self.saturating_sub(1)
    }
    fn wide(self) -> u64 {
        self
    }
}

impl Count for u32 {
    fn plus(self, n: usize) -> Self {
        self.saturating_add(u32::try_from(n).unwrap_or(u32::MAX))
    }
    fn minus_one(self) -> Self {
        self.saturating_sub(1)
    }
    fn wide(self) -> u64 {
        u64::from(self)
    }
}

/// Raw counters of one kind over one span.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counters<C: Count> {
    bytes_sent: C,
    bytes_received: C,
    bytes_resent: C,
    bytes_acked: C,
    packets_sent: C,
    packets_received: C,
    packets_lost: C,
    packets_acked: C,
}

impl<C: Count> Counters<C> {
    fn sent(&mut self, bytes: usize, resent: usize) {
        self.bytes_sent = self.bytes_sent.plus(bytes);
        self.bytes_resent = self.bytes_resent.plus(resent);
        self.packets_sent = self.packets_sent.plus(1);
    }

    fn received(&mut self, bytes: usize) {
        self.bytes_received = self.bytes_received.plus(bytes);
        self.packets_received = self.packets_received.plus(1);
    }

    fn acked(&mut self, bytes: usize) {
        self.bytes_acked = self.bytes_acked.plus(bytes);
        self.packets_acked = self.packets_acked.plus(1);
    }

    fn lost(&mut self) {
        self.packets_lost = self.packets_lost.plus(1);
    }

    fn unlost(&mut self) {
        self.packets_lost = self.packets_lost.minus_one();
    }

    /// The public set, with the derived values computed from these counters.
    fn to_set(self, rtt_ms: f32, thresholds: Thresholds) -> StatsSet {
        let packets_lost = self.packets_lost.wide();
        let packets_acked = self.packets_acked.wide();
        let decided = packets_lost.saturating_add(packets_acked);
        let packet_loss = if decided == 0 {
            0.0
        } else {
            // Ratio of two counters; f32 precision is plenty for a statistic.
            packets_lost as f32 / decided as f32
        };
        StatsSet {
            bytes_sent: self.bytes_sent.wide(),
            bytes_received: self.bytes_received.wide(),
            bytes_resent: self.bytes_resent.wide(),
            bytes_acked: self.bytes_acked.wide(),
            packets_sent: self.packets_sent.wide(),
            packets_received: self.packets_received.wide(),
            packets_lost,
            packets_acked,
            rtt_ms,
            packet_loss,
            connection_factor: thresholds.factor(rtt_ms, packet_loss),
        }
    }
}

/// The disconnect thresholds the connection factor is measured against.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Thresholds {
    /// RTT threshold, milliseconds.
    pub(super) rtt_ms: f32,
    /// Loss threshold, 0..=1.
    pub(super) loss: f32,
}

impl Thresholds {
    /// `max(rtt / rtt threshold, loss / loss threshold)`; a threshold that is not a positive
    /// finite number disables its term (so the factor is never NaN or infinite because of the
    /// configuration).
    fn factor(self, rtt_ms: f32, loss: f32) -> f32 {
        fn ratio(value: f32, threshold: f32) -> f32 {
            if threshold.is_finite() && threshold > 0.0 {
                value / threshold
            } else {
                0.0
            }
        }
        ratio(rtt_ms, self.rtt_ms).max(ratio(loss, self.loss))
    }
}

/// Both kinds of counters over one span.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Pair<C: Count> {
    all: Counters<C>,
    effective: Counters<C>,
}

impl<C: Count> Pair<C> {
    /// A datagram was sent.
    fn on_sent(&mut self, sent: &Sent) {
        self.all.sent(sent.size, sent.resent_payload_bytes);
        if sent.payload_bytes > 0 {
            self.effective
                .sent(sent.payload_bytes, sent.resent_payload_bytes);
        }
    }

    /// A datagram was acknowledged for the first time.
    fn on_acked(&mut self, sent: &Sent) {
        self.all.acked(sent.size);
        if sent.payload_bytes > 0 {
            self.effective.acked(sent.payload_bytes);
        }
    }

    /// A datagram was declared lost.
    fn on_lost(&mut self, sent: &Sent) {
        self.all.lost();
        if sent.payload_bytes > 0 {
            self.effective.lost();
        }
    }

    /// A datagram declared lost was acknowledged after all (reordering): take the loss back.
    /// A loss counted in an earlier period stays there; the acknowledgement counts now.
    fn on_spurious_loss(&mut self, size: usize, payload_bytes: usize) {
        self.all.unlost();
        self.all.acked(size);
        if payload_bytes > 0 {
            self.effective.unlost();
            self.effective.acked(payload_bytes);
        }
    }

    /// A datagram was received.
    fn on_received(&mut self, size: usize, payload_bytes: usize) {
        self.all.received(size);
        if payload_bytes > 0 {
            self.effective.received(payload_bytes);
        }
    }

    fn to_sets(self, rtt_ms: f32, thresholds: Thresholds) -> (StatsSet, StatsSet) {
        (
            self.all.to_set(rtt_ms, thresholds),
            self.effective.to_set(rtt_ms, thresholds),
        )
    }
}

/// The four public sets, in the order (last second all, last second effective, lifetime all,
/// lifetime effective).
pub(super) struct Sets {
    pub(super) last_second: StatsSet,
    pub(super) effective_last_second: StatsSet,
    pub(super) lifetime: StatsSet,
    pub(super) effective_lifetime: StatsSet,
}

/// Statistics of one connection.
#[derive(Clone, Debug)]
pub(super) struct StatsKeeper {
    /// End of the current period (its start + 1 s): most events fall before it, and checking
    /// that is one comparison.
    /// Nanoseconds since the traffic control's creation (`crate::time`).
    period_end: u64,
    /// Counters of the current period.
    current: Pair<u32>,
    /// The counters of the last complete period and the RTT at its end, in milliseconds (the
    /// public sets are derived on demand).
    last_second: (Pair<u32>, f32),
    lifetime: Pair<u64>,
}

impl StatsKeeper {
    /// Statistics starting at `now`.
    /// A keeper for a connection created at time 0.
    pub(super) fn new() -> Self {
        Self {
            period_end: PERIOD_NANOS,
            current: Pair::default(),
            last_second: (Pair::default(), 0.0),
            lifetime: Pair::default(),
        }
    }

    /// Number of period boundaries (periods are one second long) between the start of the
    /// current period and `now`.
    fn periods_passed(&self, now: u64) -> u64 {
        if now < self.period_end {
            0
        } else {
            1 + (now - self.period_end) / PERIOD_NANOS
        }
    }

    /// Whether `now` is past the current period (the next [`roll`](Self::roll) moves).
    pub(super) fn is_past(&self, now: u64) -> bool {
        now >= self.period_end
    }

    /// What the last second is at `now`, given `rtt_ms` is the RTT now (no sample was taken
    /// since the current period ended, because every event rolls first).
    fn last_second_at(&self, now: u64, rtt_ms: f32) -> (Pair<u32>, f32) {
        match self.periods_passed(now) {
            0 => self.last_second,
            1 => (self.current, rtt_ms),
            // The last complete period saw nothing at all.
            _ => (Pair::default(), 0.0),
        }
    }

    /// Moves to the period containing `now`. Call before recording an event at `now`;
    /// `rtt_ms` is the RTT before that event, i.e. at the end of the period being closed.
    pub(super) fn roll(&mut self, now: u64, rtt_ms: f32) {
        let passed = self.periods_passed(now);
        if passed == 0 {
            return;
        }
        self.last_second = self.last_second_at(now, rtt_ms);
        self.current = Pair::default();
        // `passed` whole periods end at or before `now`, so this cannot overflow; fall back to
        // `now` rather than panic anyway.
        self.period_end = passed
            .checked_mul(PERIOD_NANOS)
            .and_then(|d| self.period_end.checked_add(d))
            .unwrap_or(now);
    }

    /// A datagram was sent.
    pub(super) fn on_sent(&mut self, sent: &Sent) {
        self.current.on_sent(sent);
        self.lifetime.on_sent(sent);
    }

    /// A datagram was acknowledged for the first time.
    pub(super) fn on_acked(&mut self, sent: &Sent) {
        self.current.on_acked(sent);
        self.lifetime.on_acked(sent);
    }

    /// A datagram was declared lost.
    pub(super) fn on_lost(&mut self, sent: &Sent) {
        self.current.on_lost(sent);
        self.lifetime.on_lost(sent);
    }

    /// A datagram declared lost was acknowledged after all (reordering): take the loss back.
    /// A loss counted in an earlier period stays there; the acknowledgement counts now.
    pub(super) fn on_spurious_loss(&mut self, size: usize, payload_bytes: usize) {
        self.current.on_spurious_loss(size, payload_bytes);
        self.lifetime.on_spurious_loss(size, payload_bytes);
    }

    /// A datagram was received.
    pub(super) fn on_received(&mut self, size: usize, payload_bytes: usize) {
        self.current.on_received(size, payload_bytes);
        self.lifetime.on_received(size, payload_bytes);
    }

    /// The public sets as seen at `now` (rolling logically, without changing state).
    /// `thresholds` are those the connection factor is measured against.
    pub(super) fn sets(&self, now: u64, rtt_ms: f32, thresholds: Thresholds) -> Sets {
        let (pair, last_rtt_ms) = self.last_second_at(now, rtt_ms);
        let (last_second, effective_last_second) = pair.to_sets(last_rtt_ms, thresholds);
        let (lifetime, effective_lifetime) = self.lifetime.to_sets(rtt_ms, thresholds);
        Sets {
            last_second,
            effective_last_second,
            lifetime,
            effective_lifetime,
        }
    }
}
