//! Traffic control: the seam through which every sent, acknowledged, lost and received datagram
//! passes (docs/protocol.md §13).
//!
//! A [`TrafficControl`] owns, per connection, the RTT estimate and the retransmission timeout,
//! decides when a datagram is lost, how many bytes may be in flight and when the next datagram
//! may leave (pacing), and keeps the statistics. The connection owns the *contents* of its
//! datagrams; the traffic control owns their *metadata* (number, send time, size), so the two
//! never disagree about what is outstanding: the traffic control says which numbers were acked or
//! lost, and the connection frees or resends what they carried.
//!
//! [`DefaultTrafficControl`] is the default: loss detection and RTT as docs/protocol.md §13
//! says, and model-based congestion control with pacing as docs/traffic-control.md says. A custom
//! one is supplied through a [`TrafficControlFactory`] in the endpoint configuration.

mod congestion;
mod default;
mod delivery;
mod model;
mod pacer;
mod rtt;
mod stats;

use std::fmt;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

pub use default::{
    CongestionControl, DefaultTrafficControl, DefaultTrafficControlFactory, LOST_MEMORY_RTTS,
    RATE_CHANGE_MIN_INTERVAL, RATE_CHANGE_RATIO, TrafficConfig,
};

/// Metadata of one datagram handed to the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentDatagram {
    /// Packet number (docs/protocol.md §6).
    pub number: u64,
    /// When it was sent.
    pub time_sent: Instant,
    /// Whole datagram size in bytes (headers included).
    pub size: usize,
    /// User payload bytes it carries (message payloads only, first transmissions and resends).
    pub payload_bytes: usize,
    /// User payload bytes of it that are retransmissions.
    pub resent_payload_bytes: usize,
    /// Whether the peer will acknowledge it (it carries a message or a PING).
    pub ack_eliciting: bool,
    /// Whether the sender had nothing more to send once it was built (its send queue was empty):
    /// the rate the connection achieves then shows what the application offers, not what the
    /// path can carry.
    pub app_limited: bool,
    /// Whether the peer may acknowledge it late, up to
    /// [`MAX_LAZY_ACK_DELAY`](crate::MAX_LAZY_ACK_DELAY): an ack-eliciting datagram with only
    /// unreliable messages or a `PING` (docs/protocol.md §12). Its retransmission timeout
    /// allows for that delay, and so does the RTT sample it gives.
    pub lazy_ack: bool,
}

/// Output buffers of [`TrafficControl::on_ack_received`] and [`TrafficControl::on_timeout`]:
/// packet numbers newly acknowledged and newly declared lost, in ascending order. The connection
/// clears and reuses them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AckOutcome {
    /// Packets acknowledged for the first time.
    pub acked: Vec<u64>,
    /// Packets declared lost.
    pub lost: Vec<u64>,
}

impl AckOutcome {
    /// Empties both lists, keeping their capacity.
    pub fn clear(&mut self) {
        self.acked.clear();
        self.lost.clear();
    }
}

/// What the traffic control allows right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendAllowance {
    /// Bytes that may still be put in flight (congestion window minus bytes in flight).
    pub window: usize,
    /// When pacing allows the next ack-eliciting datagram (`None` or a past instant: now).
    /// ACK-only datagrams are never paced.
    pub next_send_time: Option<Instant>,
}

/// Round-trip time estimate (docs/protocol.md §13).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RttEstimate {
    /// Smoothed RTT (`srtt`), or the initial guess before the first sample.
    pub smoothed: Duration,
    /// RTT variation (`rttvar`).
    pub variance: Duration,
    /// Smallest sample seen (zero before the first sample).
    pub min: Duration,
    /// Latest sample (zero before the first sample).
    pub latest: Duration,
    /// Whether at least one sample was taken.
    pub has_samples: bool,
}

/// One set of counters (the original's `TrafficControl::Statistics`): either all data (whole
/// datagrams) or effective data (user payload only), over the last second or the lifetime.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StatsSet {
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Bytes sent again (retransmissions).
    pub bytes_resent: u64,
    /// Bytes acknowledged by the peer.
    pub bytes_acked: u64,
    /// Datagrams sent.
    pub packets_sent: u64,
    /// Datagrams received.
    pub packets_received: u64,
    /// Datagrams declared lost.
    pub packets_lost: u64,
    /// Datagrams acknowledged.
    pub packets_acked: u64,
    /// Smoothed RTT at the end of the period, milliseconds.
    pub rtt_ms: f32,
    /// Lost / (lost + acked) over the period, 0..=1.
    pub packet_loss: f32,
    /// How close the connection is to the disconnect thresholds: max(rtt / rtt threshold,
    /// loss / loss threshold); ≥ 1 means a threshold is exceeded.
    pub connection_factor: f32,
}

/// Live flow information.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowInfo {
    /// Bytes sent and neither acknowledged nor declared lost.
    pub bytes_in_flight: usize,
    /// Congestion window, bytes.
    pub congestion_window: usize,
    /// Allowed send rate, bytes per second: the rate the congestion controller settles on (the
    /// default one's bottleneck-bandwidth estimate; its instantaneous pacing rate varies around
    /// it while it probes). 0 = no estimate yet, or not paced.
    pub send_rate: u64,
    /// Messages queued for sending and not yet sent once (filled in by the connection).
    pub queued_messages: usize,
    /// Messages delivered and not yet taken by the application (filled in by the endpoint's
    /// caller where it keeps them; 0 from the protocol).
    pub received_messages: usize,
    /// Unreliable messages dropped at the sender because they could not leave in time (filled
    /// in by the connection).
    pub expired_unreliable: u64,
}

/// Per-connection statistics: last second and lifetime, all data and effective data.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Statistics {
    /// Whole datagrams, last complete second.
    pub last_second: StatsSet,
    /// Whole datagrams, since the connection started.
    pub lifetime: StatsSet,
    /// User payload only, last complete second.
    pub effective_last_second: StatsSet,
    /// User payload only, since the connection started.
    pub effective_lifetime: StatsSet,
    /// RTT estimate now.
    pub rtt: RttEstimate,
    /// Flow information now.
    pub flow: FlowInfo,
}

/// Per-connection traffic control: statistics, RTT/RTO, loss detection, congestion control.
///
/// The connection calls it on the protocol's thread for every datagram; all methods must be
/// cheap and must never panic. Time always comes in as `now`.
pub trait TrafficControl: Send + fmt::Debug {
    /// A datagram was handed to the driver.
    fn on_datagram_sent(&mut self, now: Instant, sent: SentDatagram);

    /// An ACK frame arrived. `ranges` are the acknowledged packet numbers, newest range first
    /// (already expanded and checked against the largest number sent). Push the numbers this ACK
    /// acknowledges for the first time into `outcome.acked` and the numbers now considered lost
    /// into `outcome.lost` (both ascending); update the RTT from the largest one if it is newly
    /// acknowledged, subtracting `ack_delay` as docs/protocol.md §13 says.
    fn on_ack_received(
        &mut self,
        now: Instant,
        ranges: &[RangeInclusive<u64>],
        ack_delay: Duration,
        outcome: &mut AckOutcome,
    );

    /// The deadline of [`TrafficControl::poll_timeout`] passed: run time-based loss detection
    /// and the retransmission timeout, pushing lost numbers into `outcome.lost`.
    fn on_timeout(&mut self, now: Instant, outcome: &mut AckOutcome);

    /// The next instant [`TrafficControl::on_timeout`] must be called at, if any.
    fn poll_timeout(&self) -> Option<Instant>;

    /// A datagram of this connection arrived and was accepted. `payload_bytes` counts user
    /// payload in it.
    fn on_datagram_received(&mut self, now: Instant, size: usize, payload_bytes: usize);

    /// How much may be sent now.
    fn send_allowance(&self, now: Instant) -> SendAllowance;

    /// The RTT estimate.
    fn rtt(&self) -> RttEstimate;

    /// Whether the RTT estimate has a sample yet (`rtt().has_samples`). The connection asks
    /// after every datagram; the default calls [`rtt`](Self::rtt).
    fn has_rtt_sample(&self) -> bool {
        self.rtt().has_samples
    }

    /// The current retransmission timeout (used for DISCONNECT resends and probes).
    fn rto(&self) -> Duration;

    /// Bytes in flight.
    fn bytes_in_flight(&self) -> usize;

    /// Whether any ack-eliciting datagram is outstanding.
    fn has_ack_eliciting_in_flight(&self) -> bool;

    /// Current statistics.
    fn statistics(&self, now: Instant) -> Statistics;

    /// The allowed send rate, bytes per second, if it changed significantly since it was last
    /// reported; the connection asks after every ACK and timeout and reports it as
    /// [`Event::RateChange`](crate::Event::RateChange). What counts as significant is the
    /// implementation's rule ([`DefaultTrafficControl`]: ±[`RATE_CHANGE_RATIO`], at most once per
    /// `max(srtt, RATE_CHANGE_MIN_INTERVAL)`). The default never reports.
    fn poll_rate_change(&mut self) -> Option<u64> {
        None
    }

    /// At most one datagram is in flight: a good moment to give back memory that buffers grew
    /// to during traffic, so idle connections stay small. Called at most four times a second. The default does
    /// nothing.
    fn release_memory(&mut self) {}
}

/// Creates one [`TrafficControl`] per connection.
pub trait TrafficControlFactory: Send + Sync + fmt::Debug {
    /// A traffic control for a new connection whose datagrams are at most `max_datagram_size`
    /// bytes, created at `now`.
    fn new_connection(&self, now: Instant, max_datagram_size: usize) -> Box<dyn TrafficControl>;
}
