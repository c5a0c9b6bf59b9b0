//! The default traffic control: RTT estimation, loss detection, the retransmission timeout,
//! statistics (docs/protocol.md §13) and congestion control with pacing
//! (docs/traffic-control.md).
//!
//! Every datagram sent is kept in a *sent ledger* in packet-number order until it is
//! acknowledged or declared lost; the ledger holds metadata only ([`SentDatagram`]) plus the
//! delivery-rate snapshot taken when it left. Ack-only datagrams are tracked too, so the
//! connection learns when its ACKs were received, but they never count as bytes in flight, are
//! never paced and never arm the retransmission timeout. A datagram is lost when a datagram at
//! least `packet_threshold` (3) numbers later is acknowledged, when a later one is acknowledged
//! and it was sent more than `time_threshold × max(srtt, latest RTT)` (9/8) ago, or when the
//! retransmission timeout passes without ACK progress. The ledger is capped
//! ([`TrafficConfig::max_tracked_datagrams`]): beyond the cap the oldest entries are declared
//! lost, so memory stays bounded whatever the peer does.
//!
//! **Congestion control.** By default ([`CongestionControl::Model`]) a model-based controller
//! in the manner of BBR sizes the window and the pacing rate from two estimates, the bottleneck
//! bandwidth (the largest delivery rate of the last ten round trips) and the minimum RTT; it
//! ignores random loss up to 30 % of a round and backs off on heavier loss or on a standing queue.
//! docs/traffic-control.md describes it with every constant. [`CongestionControl::FixedWindow`]
//! keeps the window constant at [`TrafficConfig::window`] without pacing (tests, debugging).
//!
//! **Spurious losses.** A datagram declared lost (usually by the packet threshold, when the path
//! reorders) that is acknowledged within [`LOST_MEMORY_RTTS`] (3) RTTs after the declaration counts
//! as delivered for the delivery rate and is taken back from the controller's loss count and
//! from the statistics of the current period (a loss counted in an earlier period stays there);
//! the connection has already resent its reliable messages.
//!
//! **Pacing.** Ack-eliciting datagrams leave at the controller's pacing rate
//! ([`SendAllowance::next_send_time`]), with a burst of at most ten datagrams or one millisecond
//! of data after a pause (docs/traffic-control.md, "Pacing").
//!
//! **Rate changes.** [`TrafficControl::poll_rate_change`] reports the controller's send rate (its
//! bandwidth estimate, [`FlowInfo::send_rate`]) when it differs from the last value reported by at
//! least [`RATE_CHANGE_RATIO`] (25 %), at most once per `max(srtt, RATE_CHANGE_MIN_INTERVAL)`
//! (100 ms); the first estimate is reported too.

use std::cell::Cell;
use std::collections::VecDeque;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::congestion::{AckSummary, Controller, FixedWindow};
use super::delivery::{Candidate, DeliveryRate, DeliverySnapshot};
use super::model::Model;
use super::pacer::Pacer;
use super::rtt::{GRANULARITY, RttEstimator};
use super::stats::{StatsKeeper, Thresholds};
use super::{
    AckOutcome, FlowInfo, RttEstimate, SendAllowance, SentDatagram, Statistics, TrafficControl,
    TrafficControlFactory,
};
use crate::MAX_LAZY_ACK_DELAY;
use crate::time::{self, checked_nanos, nanos};

/// Tuning of [`DefaultTrafficControl`] (docs/protocol.md §13).
#[derive(Clone, Debug, PartialEq)]
pub struct TrafficConfig {
    /// RTT assumed before the first sample. The initial retransmission timeout is twice this.
    /// Default 100 ms (initial RTO 200 ms).
    pub initial_rtt: Duration,
    /// Smallest retransmission timeout. Default 20 ms.
    pub min_rto: Duration,
    /// Largest retransmission timeout, backoff included. Default 60 s. If it is below
    /// `min_rto`, it wins.
    pub max_rto: Duration,
    /// The *peer's* maximum ACK delay, added to the retransmission timeout. Default 5 ms.
    pub max_ack_delay: Duration,
    /// Packet-threshold loss detection: a datagram is lost once one numbered at least this much
    /// higher is acknowledged. Default 3.
    pub packet_threshold: u64,
    /// Time-threshold loss detection, as a multiple of `max(srtt, latest RTT)` (never less than
    /// 1 ms): a datagram older than that is lost once a later one is acknowledged. Default 9/8.
    pub time_threshold: f32,
    /// Largest window of bytes in flight. Default 1 MiB (the ceiling the original GridMate
    /// carrier effectively ran with). With [`CongestionControl::Model`] it caps the congestion
    /// window (values below four datagrams act as four); with [`CongestionControl::FixedWindow`]
    /// it is the window.
    pub window: usize,
    /// Which congestion controller runs. Default [`CongestionControl::Model`].
    pub congestion_control: CongestionControl,
    /// RTT that counts as bad for [`StatsSet::connection_factor`](super::StatsSet), milliseconds.
    /// Default 500 ms. Used for nothing else; a value that is not positive disables the RTT term.
    pub rtt_threshold_ms: f32,
    /// Loss ratio (0..=1) that counts as bad for the connection factor. Default 0.3. Used for
    /// nothing else; a value that is not positive disables the loss term.
    pub loss_threshold: f32,
    /// Hard cap on the datagrams tracked by the sent ledger (counted from the oldest one still
    /// outstanding). When a send would exceed it, the oldest outstanding datagrams are declared
    /// lost. Default 65,536; values below 1 act as 1.
    pub max_tracked_datagrams: usize,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        Self {
            initial_rtt: Duration::from_millis(100),
            min_rto: Duration::from_millis(20),
            max_rto: Duration::from_secs(60),
            max_ack_delay: Duration::from_millis(5),
            packet_threshold: 3,
            time_threshold: 9.0 / 8.0,
            window: 1 << 20,
            congestion_control: CongestionControl::Model,
            rtt_threshold_ms: 500.0,
            loss_threshold: 0.3,
            max_tracked_datagrams: 65_536,
        }
    }
}

/// Creates a [`DefaultTrafficControl`] per connection, all with the same configuration (shared,
/// not copied: an idle connection should hold little).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DefaultTrafficControlFactory {
    /// Configuration of every traffic control created.
    pub config: Arc<TrafficConfig>,
}

impl DefaultTrafficControlFactory {
    /// A factory of traffic controls with `config`.
    pub fn new(config: TrafficConfig) -> Self {
        Self {
            config: Arc::new(config),
        }
    }
}

impl TrafficControlFactory for DefaultTrafficControlFactory {
    fn new_connection(&self, now: Instant, max_datagram_size: usize) -> Box<dyn TrafficControl> {
        Box::new(DefaultTrafficControl::new(
            now,
            max_datagram_size,
            Arc::clone(&self.config),
        ))
    }
}

/// The congestion controller of [`DefaultTrafficControl`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CongestionControl {
    /// The model-based controller with pacing (docs/traffic-control.md): converges to the
    /// bottleneck bandwidth, keeps the bottleneck queue short, tolerates random loss.
    #[default]
    Model,
    /// A constant window of [`TrafficConfig::window`] bytes and no pacing: no congestion control
    /// at all (tests and debugging; it fills any queue on the path).
    FixedWindow,
}

/// A datagram declared lost is remembered for this many RTTs (`max(srtt, latest RTT)`): if it is
/// acknowledged meanwhile, the loss was spurious (module docs).
pub const LOST_MEMORY_RTTS: u32 = 3;

/// A rate change is reported when the send rate moved by at least this fraction of the last rate
/// reported.
pub const RATE_CHANGE_RATIO: f64 = 0.25;
/// Rate changes are reported at most once per `max(srtt, RATE_CHANGE_MIN_INTERVAL)`.
pub const RATE_CHANGE_MIN_INTERVAL: Duration = Duration::from_millis(100);

/// What became of a tracked datagram.
/// A [`SentDatagram`] with its send time in nanoseconds since the traffic control's creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Sent {
    pub(super) number: u64,
    pub(super) time_sent: u64,
    pub(super) size: usize,
    pub(super) payload_bytes: usize,
    pub(super) resent_payload_bytes: usize,
    pub(super) ack_eliciting: bool,
    pub(super) app_limited: bool,
    pub(super) lazy_ack: bool,
}

impl Sent {
    fn new(s: &SentDatagram, time_sent: u64) -> Self {
        Self {
            number: s.number,
            time_sent,
            size: s.size,
            payload_bytes: s.payload_bytes,
            resent_payload_bytes: s.resent_payload_bytes,
            ack_eliciting: s.ack_eliciting,
            app_limited: s.app_limited,
            lazy_ack: s.lazy_ack,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Neither acknowledged nor declared lost.
    Outstanding,
    Acked,
    Lost,
}

/// One entry of the sent ledger: a [`SentDatagram`] and, for ack-eliciting datagrams, the
/// delivery-rate counters when it was sent, packed into 80 B instead of 112 (an idle connection
/// keeps one entry, and every datagram in flight has one): sizes are `u32` (a datagram is far
/// below 4 GiB; larger values saturate) and the flags share a byte. (Storing the snapshot's
/// instants as offsets from the send time would save 16 B more, but the conversions cost about
/// 200 instructions per datagram sent.)
#[derive(Clone, Copy, Debug)]
struct Tracked {
    number: u64,
    time_sent: u64,
    size: u32,
    payload_bytes: u32,
    resent_payload_bytes: u32,
    fate: Fate,
    /// `FLAG_*` bits.
    flags: u8,
    /// [`DeliverySnapshot::delivered`] (meaningful with `FLAG_DELIVERY`).
    delivered: u64,
    /// [`DeliverySnapshot::delivered_time`] (meaningful with `FLAG_DELIVERY`).
    delivered_time: u64,
    /// [`DeliverySnapshot::first_sent_time`] (meaningful with `FLAG_DELIVERY`).
    first_sent_time: u64,
}

const FLAG_ACK_ELICITING: u8 = 1;
const FLAG_APP_LIMITED: u8 = 2;
const FLAG_LAZY_ACK: u8 = 4;
/// The entry has a delivery snapshot.
const FLAG_DELIVERY: u8 = 8;
/// The snapshot's `app_limited`.
const FLAG_DELIVERY_APP_LIMITED: u8 = 16;

/// A size as stored in the ledger.
fn size32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Tracked {
    fn new(sent: Sent, delivery: Option<DeliverySnapshot>) -> Self {
        let flag = |on: bool, f: u8| if on { f } else { 0 };
        let mut flags = flag(sent.ack_eliciting, FLAG_ACK_ELICITING)
            | flag(sent.app_limited, FLAG_APP_LIMITED)
            | flag(sent.lazy_ack, FLAG_LAZY_ACK);
        let (mut delivered, mut delivered_time, mut first_sent_time) =
            (0, sent.time_sent, sent.time_sent);
        if let Some(d) = delivery {
            flags |= FLAG_DELIVERY | flag(d.app_limited, FLAG_DELIVERY_APP_LIMITED);
            delivered = d.delivered;
            delivered_time = d.delivered_time;
            first_sent_time = d.first_sent_time;
        }
        Tracked {
            number: sent.number,
            time_sent: sent.time_sent,
            size: size32(sent.size),
            payload_bytes: size32(sent.payload_bytes),
            resent_payload_bytes: size32(sent.resent_payload_bytes),
            fate: Fate::Outstanding,
            flags,
            delivered,
            delivered_time,
            first_sent_time,
        }
    }

    fn sent(&self) -> Sent {
        Sent {
            number: self.number,
            time_sent: self.time_sent,
            size: self.size as usize,
            payload_bytes: self.payload_bytes as usize,
            resent_payload_bytes: self.resent_payload_bytes as usize,
            ack_eliciting: self.flags & FLAG_ACK_ELICITING != 0,
            app_limited: self.flags & FLAG_APP_LIMITED != 0,
            lazy_ack: self.flags & FLAG_LAZY_ACK != 0,
        }
    }

    fn delivery(&self) -> Option<DeliverySnapshot> {
        (self.flags & FLAG_DELIVERY != 0).then_some(DeliverySnapshot {
            delivered: self.delivered,
            delivered_time: self.delivered_time,
            first_sent_time: self.first_sent_time,
            app_limited: self.flags & FLAG_DELIVERY_APP_LIMITED != 0,
        })
    }
}

/// An ack-eliciting datagram declared lost recently: if it is acknowledged after all, the loss
/// was spurious.
#[derive(Clone, Copy, Debug)]
struct RecentlyLost {
    number: u64,
    size: usize,
    /// User payload bytes it carried (for the effective statistics).
    payload_bytes: usize,
    time_sent: u64,
    lazy_ack: bool,
    delivery: DeliverySnapshot,
    lost_at: u64,
    /// Acknowledged after all (kept in place, dropped with the others).
    delivered: bool,
}

/// Per ACK being processed: bytes delivered and the smallest per-datagram RTT.
#[derive(Clone, Copy, Debug, Default)]
struct PerAck {
    delivered: usize,
    min_rtt: Option<Duration>,
    /// The send time and `now − send time` of the latest datagram whose RTT sample was taken
    /// (the largest newly acknowledged one's, usually: its RTT need not be computed twice).
    last_sample: Option<(u64, Duration)>,
    /// The delivery-rate sample in the making.
    candidate: Option<Candidate>,
}

impl PerAck {
    fn rtt_sample(&mut self, sample: Duration) {
        self.min_rtt = Some(self.min_rtt.map_or(sample, |m| m.min(sample)));
    }
}

/// Datagrams declared lost by the ledger cap, not yet reported.
#[derive(Debug)]
struct Evicted {
    numbers: Vec<u64>,
    /// When the first of them was evicted (a deadline already due).
    at: u64,
}

/// What [`DefaultTrafficControl::poll_rate_change`] has reported.
#[derive(Clone, Copy, Debug, Default)]
struct RateReport {
    /// The last rate reported and when.
    last: Option<(u64, u64)>,
    /// A change not yet polled.
    pending: Option<u64>,
}

/// The default [`TrafficControl`]: RTT/RTO per RFC 6298 with QUIC's refinements, packet- and
/// time-threshold loss detection, an exponentially backed-off retransmission timeout,
/// per-second and lifetime statistics (docs/protocol.md §13), and model-based congestion control
/// with pacing (docs/traffic-control.md).
#[derive(Debug)]
pub struct DefaultTrafficControl {
    config: Arc<TrafficConfig>,
    max_datagram_size: usize,
    rtt: RttEstimator,
    controller: Box<dyn Controller>,
    /// The creation instant: internal times are nanoseconds since it (`crate::time`).
    epoch: Instant,
    /// The last instant converted and its nanoseconds: a connection gives one `now` to several
    /// calls in a row (receive, ACK, send allowance, send), and comparing two instants costs
    /// less than converting one.
    last_now: Cell<(Instant, u64)>,
    delivery: DeliveryRate,
    pacer: Pacer,
    /// Ack-eliciting datagrams declared lost within the last `LOST_MEMORY_RTTS` RTTs, by number.
    /// Boxed: most connections have none most of the time (`release_memory` drops it).
    #[allow(clippy::box_collection)]
    recently_lost: Option<Box<VecDeque<RecentlyLost>>>,
    rate_report: RateReport,
    /// Sent datagrams in packet-number order. Invariant: empty, or the front is outstanding
    /// (settled entries are marked in place and popped from the front lazily).
    ledger: VecDeque<Tracked>,
    /// Largest number passed to `on_datagram_sent` (smaller or equal ones are not tracked).
    largest_sent: Option<u64>,
    /// Largest number any ACK acknowledged.
    largest_acked: Option<u64>,
    /// Sum of the sizes of outstanding ack-eliciting datagrams.
    bytes_in_flight: usize,
    /// Count of outstanding ack-eliciting datagrams.
    ack_eliciting_outstanding: u32,
    /// Of those, the ones the peer acknowledges promptly (not `lazy_ack`).
    prompt_outstanding: u32,
    /// The latest send time of a prompt ack-eliciting datagram.
    last_prompt_sent: Option<u64>,
    /// Latest send time of an ack-eliciting datagram.
    last_ack_eliciting_sent: Option<u64>,
    /// Last time an ACK acknowledged something new.
    last_ack_progress: Option<u64>,
    /// RTO doublings since the last ACK progress.
    backoff: u32,
    /// When the earliest outstanding datagram below the largest acknowledged one passes the time
    /// threshold.
    loss_time: Option<u64>,
    /// Numbers declared lost by the ledger cap in `on_datagram_sent` (which has no outcome to
    /// report them in); handed out by the next `on_ack_received` or `on_timeout`.
    evicted: Option<Box<Evicted>>,
    /// The answer of `poll_timeout`, computed by [`Self::rearm`] after each call that changes
    /// one of its inputs (`on_datagram_sent`, `on_ack_received`, `on_timeout`): the connection
    /// asks for it after every datagram, and the backed-off RTO alone costs some hundred
    /// instructions to compute.
    timer: Option<Instant>,
    stats: StatsKeeper,
}

/// `d × factor`, saturating; a factor that is negative or NaN gives zero.
fn scale(d: Duration, factor: f32) -> Duration {
    let product = d.as_secs_f64() * f64::from(factor);
    Duration::try_from_secs_f64(product).unwrap_or(if product > 0.0 {
        Duration::MAX
    } else {
        Duration::ZERO
    })
}

/// Sorts `list[from..]` if it is not already ascending (it always is for validated ranges and
/// monotonic send times; this keeps the documented order for any input).
fn sort_tail(list: &mut [u64], from: usize) {
    if let Some(tail) = list.get_mut(from..)
        && !tail.is_sorted()
    {
        tail.sort_unstable();
    }
}

impl DefaultTrafficControl {
    /// A traffic control for a connection created at `now` whose datagrams are at most
    /// `max_datagram_size` bytes (it sizes the initial and the smallest window, and the pacing
    /// burst).
    pub fn new(
        now: Instant,
        max_datagram_size: usize,
        config: impl Into<Arc<TrafficConfig>>,
    ) -> Self {
        let config: Arc<TrafficConfig> = config.into();
        let controller: Box<dyn Controller> = match config.congestion_control {
            CongestionControl::Model => Box::new(Model::new(
                max_datagram_size,
                config.window,
                config.initial_rtt,
            )),
            CongestionControl::FixedWindow => Box::new(FixedWindow {
                window: config.window,
            }),
        };
        Self {
            max_datagram_size: max_datagram_size.max(1),
            rtt: RttEstimator::new(config.initial_rtt),
            controller,
            epoch: now,
            last_now: Cell::new((now, 0)),
            delivery: DeliveryRate::new(),
            pacer: Pacer::default(),
            recently_lost: None,
            rate_report: RateReport::default(),
            ledger: VecDeque::new(),
            largest_sent: None,
            largest_acked: None,
            bytes_in_flight: 0,
            ack_eliciting_outstanding: 0,
            prompt_outstanding: 0,
            last_prompt_sent: None,
            last_ack_eliciting_sent: None,
            last_ack_progress: None,
            backoff: 0,
            loss_time: None,
            evicted: None,
            timer: None,
            stats: StatsKeeper::new(),
            config,
        }
    }

    /// The smoothed RTT in milliseconds for the statistics, 0 before the first sample.
    fn rtt_ms(&self) -> f32 {
        if self.rtt.has_samples() {
            self.rtt.smoothed().as_secs_f32() * 1000.0
        } else {
            0.0
        }
    }

    /// Closes the statistics period if `now` is past it.
    /// `t` in nanoseconds since the creation (`crate::time`).
    fn nanos_at(&self, t: Instant) -> u64 {
        let (last, n) = self.last_now.get();
        if t == last {
            return n;
        }
        let n = time::since(self.epoch, t);
        self.last_now.set((t, n));
        n
    }

    fn roll(&mut self, now: u64) {
        if self.stats.is_past(now) {
            let rtt_ms = self.rtt_ms();
            self.stats.roll(now, rtt_ms);
        }
    }

    /// The RTO before backoff (docs/protocol.md §13).
    fn base_rto(&self) -> Duration {
        self.rtt.rto(
            self.config.max_ack_delay,
            self.config.min_rto,
            self.config.max_rto,
        )
    }

    /// The RTO with backoff: `base × 2^backoff`, at most `max_rto`. Computed in nanoseconds
    /// when every value fits in a `u64` (always, in practice: the RTO deadline is needed after
    /// every datagram sent), with `Duration`s otherwise; the result is the same.
    fn backed_off_rto(&self) -> Duration {
        match self.backed_off_rto_fast() {
            Some(n) => Duration::from_nanos(n),
            None => self.backed_off_rto_exact(),
        }
    }

    /// [`Self::backed_off_rto`] in nanoseconds, saturating.
    fn backed_off_rto_nanos(&self) -> u64 {
        self.backed_off_rto_fast()
            .unwrap_or_else(|| nanos(self.backed_off_rto_exact()))
    }

    /// [`Self::backed_off_rto`] in `u64` nanoseconds when every input fits.
    fn backed_off_rto_fast(&self) -> Option<u64> {
        let nanos = checked_nanos;
        let fast = (|| {
            let max_rto = nanos(self.config.max_rto)?;
            let base = self.rtt.rto_nanos(
                nanos(self.config.max_ack_delay)?,
                nanos(self.config.min_rto)?,
                max_rto,
            )?;
            let factor = u64::from(1u32.checked_shl(self.backoff).unwrap_or(u32::MAX));
            // An overflow is above `max_rto`, which fits.
            Some(base.checked_mul(factor).map_or(max_rto, |r| r.min(max_rto)))
        })();
        if let Some(n) = fast {
            debug_assert_eq!(Duration::from_nanos(n), self.backed_off_rto_exact());
        }
        fast
    }

    /// [`Self::backed_off_rto`] in `Duration` arithmetic.
    fn backed_off_rto_exact(&self) -> Duration {
        let factor = 1u32.checked_shl(self.backoff).unwrap_or(u32::MAX);
        self.base_rto()
            .checked_mul(factor)
            .unwrap_or(Duration::MAX)
            .min(self.config.max_rto)
    }

    /// When the retransmission timeout fires: an RTO after the later of the last ack-eliciting
    /// send and the last ACK progress, while an ack-eliciting datagram is outstanding.
    ///
    /// Datagrams the peer may acknowledge lazily (docs/protocol.md §12) count only when no
    /// prompt one is outstanding, and then the RTO allows for the longest lazy delay.
    /// A deadline past `u64::MAX` nanoseconds (584 years) is none.
    fn rto_deadline(&self) -> Option<u64> {
        if self.ack_eliciting_outstanding == 0 {
            return None;
        }
        let (sent, extra) = if self.prompt_outstanding > 0 {
            (self.last_prompt_sent?, 0)
        } else {
            (self.last_ack_eliciting_sent?, nanos(MAX_LAZY_ACK_DELAY))
        };
        // docs/protocol.md §13: the RTO passes "after the last ack-eliciting packet was sent
        // without any ACK progress" — an ACK that acknowledges something new restarts it.
        let anchor = self.last_ack_progress.map_or(sent, |p| p.max(sent));
        anchor.checked_add(self.backed_off_rto_nanos().checked_add(extra)?)
    }

    /// The earliest of the eviction report, the loss timer and the retransmission timeout.
    fn next_timer(&self) -> Option<u64> {
        let evicted = self.evicted.as_ref().map(|e| e.at);
        [evicted, self.loss_time, self.rto_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Recomputes the cached answer of `poll_timeout` (its inputs may have changed).
    fn rearm(&mut self) {
        self.timer = self.next_timer().map(|t| time::instant(self.epoch, t));
    }

    /// `time_threshold × max(srtt, latest RTT)`, at least 1 ms (docs/protocol.md §13).
    /// In nanoseconds; `None` if it does not fit (nothing is then lost by time).
    fn loss_delay(&self) -> Option<u64> {
        let rtt = self.rtt.smoothed().max(self.rtt.latest());
        checked_nanos(scale(rtt, self.config.time_threshold).max(GRANULARITY))
    }

    /// Marks ledger entry `idx` acknowledged if it is outstanding; returns it if so.
    fn mark_acked(&mut self, idx: usize, now: u64, ack: &mut PerAck) -> Option<Sent> {
        let entry = self.ledger.get_mut(idx)?;
        if entry.fate != Fate::Outstanding {
            return None;
        }
        entry.fate = Fate::Acked;
        let sent = entry.sent();
        let delivery = entry.delivery();
        if sent.ack_eliciting {
            self.bytes_in_flight = self.bytes_in_flight.saturating_sub(sent.size);
            self.ack_eliciting_outstanding = self.ack_eliciting_outstanding.saturating_sub(1);
            if !sent.lazy_ack {
                self.prompt_outstanding = self.prompt_outstanding.saturating_sub(1);
            }
        }
        self.stats.on_acked(&sent);
        if let Some(snapshot) = delivery {
            self.on_delivered(now, sent.size, sent.time_sent, sent.lazy_ack, snapshot, ack);
        }
        Some(sent)
    }

    /// Marks ledger entry `idx` lost if it is outstanding; returns its number if so.
    fn mark_lost(&mut self, idx: usize, now: u64) -> Option<u64> {
        let entry = self.ledger.get_mut(idx)?;
        if entry.fate != Fate::Outstanding {
            return None;
        }
        entry.fate = Fate::Lost;
        let sent = entry.sent();
        let delivery = entry.delivery();
        if sent.ack_eliciting {
            self.bytes_in_flight = self.bytes_in_flight.saturating_sub(sent.size);
            self.ack_eliciting_outstanding = self.ack_eliciting_outstanding.saturating_sub(1);
            if !sent.lazy_ack {
                self.prompt_outstanding = self.prompt_outstanding.saturating_sub(1);
            }
        }
        self.stats.on_lost(&sent);
        if let Some(delivery) = delivery {
            self.controller.on_lost(now, sent.size);
            self.remember_lost(RecentlyLost {
                number: sent.number,
                size: sent.size,
                payload_bytes: sent.payload_bytes,
                time_sent: sent.time_sent,
                lazy_ack: sent.lazy_ack,
                delivery,
                lost_at: now,
                delivered: false,
            });
        }
        Some(sent.number)
    }

    /// Pops settled entries from the front (restores the ledger invariant).
    fn pop_settled(&mut self) {
        while self
            .ledger
            .front()
            .is_some_and(|e| e.fate != Fate::Outstanding)
        {
            self.ledger.pop_front();
        }
    }

    /// Hands out the numbers the ledger cap declared lost.
    fn flush_evicted(&mut self, lost: &mut Vec<u64>) {
        if let Some(mut e) = self.evicted.take() {
            lost.append(&mut e.numbers);
        }
    }

    /// Packet- and time-threshold loss detection (docs/protocol.md §13), then re-arms the loss
    /// timer for the earliest survivor below the largest acknowledged number.
    fn detect_lost(&mut self, now: u64, lost: &mut Vec<u64>) {
        self.loss_time = None;
        let Some(largest) = self.largest_acked else {
            return;
        };
        // Nothing below the largest acknowledged number is left (the common case): no walk,
        // and no loss delay to compute.
        if self.ledger.front().is_none_or(|e| e.number >= largest) {
            return;
        }
        let delay = self.loss_delay();
        // Sent at or before this instant and below the largest acknowledged → lost by time.
        let lost_send_time = delay.and_then(|d| now.checked_sub(d));
        let threshold = self.config.packet_threshold;
        // The front is outstanding and every survivor lies within `packet_threshold` numbers of
        // the largest acknowledged, so this walk stays short.
        let mut idx = 0;
        while let Some(&Tracked {
            number,
            time_sent,
            fate,
            ..
        }) = self.ledger.get(idx)
            && number < largest
        {
            if fate == Fate::Outstanding {
                let by_packets = number.saturating_add(threshold) <= largest;
                let by_time = lost_send_time.is_some_and(|limit| time_sent <= limit);
                if by_packets || by_time {
                    lost.extend(self.mark_lost(idx, now));
                } else if let Some(at) = delay.and_then(|d| time_sent.checked_add(d)) {
                    self.loss_time = Some(self.loss_time.map_or(at, |t| t.min(at)));
                }
            }
            idx += 1;
        }
    }

    /// The retransmission timeout passed: every outstanding datagram sent at least one (backed
    /// off) RTO ago is lost and the RTO doubles, up to `max_rto` (docs/protocol.md §13).
    fn fire_rto(&mut self, now: u64, lost: &mut Vec<u64>) {
        // When only lazily acknowledged datagrams are outstanding, they are given the longest
        // lazy delay on top. When a prompt one timed out, the peer would have acknowledged the
        // lazy ones with it: all go by the plain RTO (a late ACK undoes it as spurious).
        let mut wait = self.backed_off_rto_nanos();
        if self.prompt_outstanding == 0 {
            wait = wait.saturating_add(nanos(MAX_LAZY_ACK_DELAY));
        }
        if let Some(limit) = now.checked_sub(wait) {
            for idx in 0..self.ledger.len() {
                if self
                    .ledger
                    .get(idx)
                    .is_some_and(|e| e.fate == Fate::Outstanding && e.time_sent <= limit)
                {
                    lost.extend(self.mark_lost(idx, now));
                }
            }
        }
        if self.backed_off_rto() < self.config.max_rto && self.backoff < 31 {
            self.backoff += 1;
        }
        self.controller.on_retransmission_timeout(now);
    }
}

impl DefaultTrafficControl {
    /// An ack-eliciting datagram was delivered: feeds the sampler and the ACK's RTT minimum.
    /// A lazily acknowledged datagram's raw sample includes the peer's deliberate delay, so it
    /// does not count here (the ACK's corrected RTT sample does, in `on_ack_received`).
    fn on_delivered(
        &mut self,
        now: u64,
        size: usize,
        time_sent: u64,
        lazy_ack: bool,
        snapshot: DeliverySnapshot,
        ack: &mut PerAck,
    ) {
        self.delivery
            .on_delivered(now, size, time_sent, snapshot, &mut ack.candidate);
        ack.delivered = ack.delivered.saturating_add(size);
        if !lazy_ack {
            let sample = Duration::from_nanos(now.saturating_sub(time_sent));
            ack.last_sample = Some((time_sent, sample));
            ack.rtt_sample(sample);
        }
    }

    /// How long a lost datagram is remembered for spurious-loss detection:
    /// `LOST_MEMORY_RTTS × max(srtt, latest RTT)`, at least 1 ms. A reordered datagram is
    /// acknowledged at most about one RTT spread after it was declared lost.
    /// In nanoseconds; `None` if it does not fit (a loss is then remembered for good).
    fn lost_memory(&self) -> Option<u64> {
        checked_nanos(
            self.rtt
                .smoothed()
                .max(self.rtt.latest())
                .saturating_mul(LOST_MEMORY_RTTS)
                .max(GRANULARITY),
        )
    }

    /// Remembers a lost datagram (kept in number order; bounded by the ledger cap).
    fn remember_lost(&mut self, lost: RecentlyLost) {
        let cap = self.config.max_tracked_datagrams.max(1);
        let list = self.recently_lost.get_or_insert_with(Box::default);
        while list.len() >= cap {
            list.pop_front();
        }
        if list.back().is_none_or(|last| last.number < lost.number) {
            list.push_back(lost);
        } else {
            let at = list.partition_point(|e| e.number < lost.number);
            list.insert(at, lost);
        }
    }

    /// Forgets lost datagrams older than [`Self::lost_memory`] (from the front, which holds the
    /// oldest numbers).
    fn expire_lost(&mut self, now: u64) {
        let memory = self.lost_memory();
        let Some(list) = self.recently_lost.as_deref_mut() else {
            return;
        };
        while list.front().is_some_and(|e| {
            e.delivered
                || memory
                    .and_then(|m| e.lost_at.checked_add(m))
                    .is_none_or(|t| t <= now)
        }) {
            list.pop_front();
        }
    }

    /// Datagrams of `start..=end` declared lost recently and acknowledged now: spurious losses.
    fn detect_spurious(&mut self, now: u64, start: u64, end: u64, ack: &mut PerAck) {
        let Some(list) = self.recently_lost.as_deref() else {
            return;
        };
        let mut idx = list.partition_point(|e| e.number < start);
        while let Some(e) = self
            .recently_lost
            .as_deref()
            .and_then(|l| l.get(idx))
            .copied()
            && e.number <= end
        {
            if !e.delivered {
                if let Some(entry) = self
                    .recently_lost
                    .as_deref_mut()
                    .and_then(|l| l.get_mut(idx))
                {
                    entry.delivered = true;
                }
                self.controller.on_spurious_loss(now, e.size);
                // It was delivered after all: the statistics count it acknowledged, not lost.
                self.stats.on_spurious_loss(e.size, e.payload_bytes);
                self.on_delivered(now, e.size, e.time_sent, e.lazy_ack, e.delivery, ack);
            }
            idx += 1;
        }
    }

    /// Bytes the delivery-rate sampler counts as delivered (tests).
    #[cfg(test)]
    pub(in crate::traffic) fn delivered_bytes(&self) -> u64 {
        self.delivery.delivered()
    }

    /// Queues a rate change if the send rate moved enough since the last report
    /// ([`RATE_CHANGE_RATIO`], [`RATE_CHANGE_MIN_INTERVAL`]).
    fn check_rate_change(&mut self, now: u64) {
        let rate = self.controller.send_rate();
        if rate == 0 {
            return;
        }
        let due = match self.rate_report.last {
            None => true,
            Some((last, at)) => {
                let interval = self.rtt.smoothed().max(RATE_CHANGE_MIN_INTERVAL);
                let moved = rate.abs_diff(last) as f64 >= RATE_CHANGE_RATIO * last as f64;
                moved && Duration::from_nanos(now.saturating_sub(at)) >= interval
            }
        };
        if due {
            self.rate_report.last = Some((rate, now));
            self.rate_report.pending = Some(rate);
        }
    }
}

impl TrafficControl for DefaultTrafficControl {
    fn on_datagram_sent(&mut self, now: Instant, sent: SentDatagram) {
        // The connection stamps datagrams with `now`: one conversion then.
        let time_sent = (sent.time_sent != now).then(|| self.nanos_at(sent.time_sent));
        let now = self.nanos_at(now);
        let sent = Sent::new(&sent, time_sent.unwrap_or(now));
        self.roll(now);
        self.stats.on_sent(&sent);
        // docs/protocol.md §6: numbers grow with every packet. One that does not cannot be
        // placed in the ledger; it is counted as sent but never reported acked or lost.
        if self
            .largest_sent
            .is_some_and(|largest| sent.number <= largest)
        {
            tracing::warn!(
                number = sent.number,
                largest = self.largest_sent,
                "traffic control: packet number not increasing; not tracked"
            );
            return;
        }
        self.largest_sent = Some(sent.number);
        // Ledger cap: declare the oldest lost until there is room (reported by the next
        // on_ack_received / on_timeout, which poll_timeout asks for at once).
        let cap = self.config.max_tracked_datagrams.max(1);
        while self.ledger.len() >= cap {
            if let Some(number) = self.mark_lost(0, now) {
                self.evicted
                    .get_or_insert_with(|| {
                        Box::new(Evicted {
                            numbers: Vec::new(),
                            at: now,
                        })
                    })
                    .numbers
                    .push(number);
            }
            self.ledger.pop_front();
            self.pop_settled();
        }
        let mut delivery = None;
        if sent.ack_eliciting {
            // Application-limited: nothing more to send although the window had room.
            let app_limited = sent.app_limited
                && self.bytes_in_flight.saturating_add(sent.size) < self.controller.window();
            delivery =
                Some(
                    self.delivery
                        .on_sent(now, sent.size, self.bytes_in_flight, app_limited),
                );
            self.bytes_in_flight = self.bytes_in_flight.saturating_add(sent.size);
            self.ack_eliciting_outstanding = self.ack_eliciting_outstanding.saturating_add(1);
            if !sent.lazy_ack {
                self.prompt_outstanding = self.prompt_outstanding.saturating_add(1);
                self.last_prompt_sent = Some(
                    self.last_prompt_sent
                        .map_or(sent.time_sent, |t| t.max(sent.time_sent)),
                );
            }
            self.last_ack_eliciting_sent = Some(
                self.last_ack_eliciting_sent
                    .map_or(sent.time_sent, |t| t.max(sent.time_sent)),
            );
            self.controller
                .on_sent(now, sent.size, self.bytes_in_flight);
            self.pacer.on_sent(
                now,
                sent.size,
                self.controller.pacing_rate(),
                self.max_datagram_size,
            );
        }
        crate::small::reserve_one(&mut self.ledger);
        self.ledger.push_back(Tracked::new(sent, delivery));
        self.rearm();
    }

    fn on_ack_received(
        &mut self,
        now: Instant,
        ranges: &[RangeInclusive<u64>],
        ack_delay: Duration,
        outcome: &mut AckOutcome,
    ) {
        let now = self.nanos_at(now);
        self.roll(now);
        let acked_from = outcome.acked.len();
        let lost_from = outcome.lost.len();
        self.flush_evicted(&mut outcome.lost);
        self.expire_lost(now);
        let mut ack = PerAck::default();

        // The largest number this ACK acknowledges (never above the largest sent, whatever the
        // caller validated).
        let ack_largest = ranges
            .iter()
            .filter(|r| !r.is_empty())
            .map(|r| *r.end())
            .max()
            .zip(self.largest_sent)
            .map(|(a, s)| a.min(s));
        let Some(ack_largest) = ack_largest else {
            // The evicted numbers were handed out.
            self.rearm();
            return;
        };

        // Ranges come newest first: walk them oldest first so `acked` comes out ascending.
        let mut largest_newly_acked = None;
        let mut any_eliciting = false;
        for range in ranges.iter().rev() {
            let (start, end) = (*range.start(), *range.end());
            if self.recently_lost.as_ref().is_some_and(|l| !l.is_empty()) {
                self.detect_spurious(now, start, end, &mut ack);
            }
            let mut idx = self.ledger.partition_point(|e| e.number < start);
            while let Some(entry) = self.ledger.get(idx)
                && entry.number <= end
            {
                if let Some(sent) = self.mark_acked(idx, now, &mut ack) {
                    outcome.acked.push(sent.number);
                    any_eliciting |= sent.ack_eliciting;
                    if sent.number == ack_largest {
                        largest_newly_acked = Some(sent);
                    }
                }
                idx += 1;
            }
        }
        sort_tail(&mut outcome.acked, acked_from);

        self.largest_acked = Some(
            self.largest_acked
                .map_or(ack_largest, |l| l.max(ack_largest)),
        );
        // docs/protocol.md §13 (RFC 9002 §5.1): an RTT sample when the largest acknowledged number
        // is newly acknowledged and the ACK newly acknowledges at least one ack-eliciting
        // datagram (a peer that only acknowledges sends mostly ack-only datagrams: requiring the
        // largest itself to be ack-eliciting would starve its RTT).
        if let Some(sent) = largest_newly_acked.filter(|_| any_eliciting) {
            let raw = match ack.last_sample {
                Some((time_sent, sample)) if time_sent == sent.time_sent => sample,
                _ => Duration::from_nanos(now.saturating_sub(sent.time_sent)),
            };
            if sent.lazy_ack {
                // Held back on purpose by up to MAX_LAZY_ACK_DELAY (docs/protocol.md §12): the
                // delay is taken out before the estimator sees it, so even the "latest" RTT is
                // the network's, and the ACK's RTT minimum gets the corrected sample.
                let corrected = raw
                    .saturating_sub(ack_delay.min(MAX_LAZY_ACK_DELAY))
                    .max(Duration::from_micros(1).min(raw));
                self.rtt.update(corrected, Duration::ZERO);
                ack.rtt_sample(corrected);
            } else {
                // A peer cannot report more delay than it promised (docs/protocol.md §13).
                self.rtt
                    .update(raw, ack_delay.min(self.config.max_ack_delay));
            }
        }
        if outcome.acked.len() > acked_from {
            // ACK progress: the RTO stops backing off and restarts from now.
            self.backoff = 0;
            self.last_ack_progress = Some(now);
        }

        self.detect_lost(now, &mut outcome.lost);
        sort_tail(&mut outcome.lost, lost_from);
        self.pop_settled();

        let min_rtt = self.rtt.has_samples().then(|| self.rtt.min_nanos());
        let summary = AckSummary {
            acked_bytes: ack.delivered,
            sample: self.delivery.finish(&mut ack.candidate, min_rtt),
            rtt_sample: ack.min_rtt,
            bytes_in_flight: self.bytes_in_flight,
            delivered: self.delivery.delivered(),
        };
        self.controller.on_ack(now, &summary);
        self.check_rate_change(now);
        self.rearm();
    }

    fn on_timeout(&mut self, now: Instant, outcome: &mut AckOutcome) {
        let now = self.nanos_at(now);
        self.roll(now);
        let lost_from = outcome.lost.len();
        self.flush_evicted(&mut outcome.lost);
        self.detect_lost(now, &mut outcome.lost);
        if self.rto_deadline().is_some_and(|deadline| deadline <= now) {
            self.fire_rto(now, &mut outcome.lost);
            // Re-arm the loss timer over what is left.
            self.detect_lost(now, &mut outcome.lost);
        }
        sort_tail(&mut outcome.lost, lost_from);
        self.pop_settled();
        self.check_rate_change(now);
        self.rearm();
    }

    fn poll_timeout(&self) -> Option<Instant> {
        debug_assert_eq!(
            self.timer,
            self.next_timer().map(|t| time::instant(self.epoch, t)),
            "stale timer"
        );
        self.timer
    }

    fn on_datagram_received(&mut self, now: Instant, size: usize, payload_bytes: usize) {
        let now = self.nanos_at(now);
        self.roll(now);
        self.stats.on_received(size, payload_bytes);
    }

    /// The congestion window minus the bytes in flight, and the pacer's next release time if
    /// it is after `now`.
    fn send_allowance(&self, now: Instant) -> SendAllowance {
        SendAllowance {
            window: self
                .controller
                .window()
                .saturating_sub(self.bytes_in_flight),
            next_send_time: self
                .pacer
                .next_send_time(
                    self.nanos_at(now),
                    self.controller.pacing_rate(),
                    self.max_datagram_size,
                )
                .map(|t| time::instant(self.epoch, t)),
        }
    }

    fn poll_rate_change(&mut self) -> Option<u64> {
        self.rate_report.pending.take()
    }

    fn release_memory(&mut self) {
        // Room for one entry stays: an idle connection's keep-alive then allocates nothing.
        self.ledger.shrink_to(1);
        if self.recently_lost.as_ref().is_some_and(|l| l.is_empty()) {
            self.recently_lost = None;
        } else if let Some(l) = self.recently_lost.as_deref_mut() {
            l.shrink_to_fit();
        }
    }

    fn rtt(&self) -> RttEstimate {
        self.rtt.estimate()
    }

    fn has_rtt_sample(&self) -> bool {
        self.rtt.has_samples()
    }

    /// The retransmission timeout including the current backoff (`base × 2^backoff`, at most
    /// `max_rto`).
    fn rto(&self) -> Duration {
        self.backed_off_rto()
    }

    fn bytes_in_flight(&self) -> usize {
        self.bytes_in_flight
    }

    fn has_ack_eliciting_in_flight(&self) -> bool {
        self.ack_eliciting_outstanding > 0
    }

    fn statistics(&self, now: Instant) -> Statistics {
        let thresholds = Thresholds {
            rtt_ms: self.config.rtt_threshold_ms,
            loss: self.config.loss_threshold,
        };
        let sets = self
            .stats
            .sets(self.nanos_at(now), self.rtt_ms(), thresholds);
        Statistics {
            last_second: sets.last_second,
            lifetime: sets.lifetime,
            effective_last_second: sets.effective_last_second,
            effective_lifetime: sets.effective_lifetime,
            rtt: self.rtt.estimate(),
            flow: FlowInfo {
                bytes_in_flight: self.bytes_in_flight,
                congestion_window: self.controller.window(),
                send_rate: self.controller.send_rate(),
                ..FlowInfo::default()
            },
        }
    }
}

#[cfg(test)]
mod tests;
