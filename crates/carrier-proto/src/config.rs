//! Endpoint configuration, with the original's defaults where it had one, validated by
//! [`EndpointConfig::validate`] (also called by [`Endpoint::new`](crate::Endpoint::new)).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::ConfigError;
use crate::traffic::{DefaultTrafficControlFactory, TrafficControlFactory};

/// The longest any side may delay an acknowledgement of a packet that carries only unreliable
/// messages or a `PING` (1 s; docs/protocol.md §12). A sender caps the ack delay its peer
/// reports for such packets at this, whatever the peer's `lazy_ack_delay`.
///
/// ```
/// assert_eq!(carrier_proto::MAX_LAZY_ACK_DELAY.as_millis(), 1_000);
/// ```
pub const MAX_LAZY_ACK_DELAY: Duration = Duration::from_secs(1);

/// Smallest maximum datagram size Carrier works with (docs/protocol.md §4.6).
pub const MIN_DATAGRAM_SIZE: usize = 256;
/// Largest datagram size (a UDP payload over IPv4 without fragmentation limits).
pub const MAX_DATAGRAM_SIZE: usize = 65_507;
/// The original's default datagram size (1,400 − 28 bytes of IP and UDP headers).
pub const DEFAULT_DATAGRAM_SIZE: usize = 1_372;
/// The original's cross-platform datagram size.
pub const CROSS_PLATFORM_DATAGRAM_SIZE: usize = 1_236;
/// The original's "full packets" datagram size (LAN only).
pub const FULL_PACKET_DATAGRAM_SIZE: usize = 65_479;

/// How the two sides' limits are agreed (docs/protocol.md §4.6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LimitsPolicy {
    /// Use the smaller value of each pair (the default).
    #[default]
    UseSmaller,
    /// Refuse the connection (`LimitsRefused`) unless both sides have the same limits.
    RequireEqual,
}

/// Configuration of an [`Endpoint`](crate::Endpoint) and of all its connections.
///
/// ```
/// use std::time::Duration;
/// use carrier_proto::EndpointConfig;
/// let config = EndpointConfig {
///     channel_count: 4,
///     connection_timeout: Duration::from_secs(10),
///     ..EndpointConfig::default()
/// };
/// config.validate().unwrap();
/// ```
#[derive(Clone)]
pub struct EndpointConfig {
    /// Application version checked by the default handshake (original default 1).
    pub version: u32,
    /// Channels per connection, 1..=255 (default 8; the original had 3 user channels).
    pub channel_count: u8,
    /// Largest message, bytes (default 1 MiB). Larger sends are refused with `TooLarge`.
    pub max_message_size: usize,
    /// Largest datagram the driver carries, bytes, 256..=65,507 (default 1,372).
    pub max_datagram_size: usize,
    /// Bytes of out-of-order reliable data this side buffers per connection (default 4 MiB,
    /// docs/protocol.md §10). Must be at least `max_message_size`.
    pub receive_window: usize,
    /// Bytes of partial unreliable reassemblies buffered per connection (default
    /// 2 × `max_message_size`).
    pub unreliable_reassembly_budget: usize,
    /// Bytes of messages a connection may hold queued for sending (default 16 MiB); past it
    /// `send` answers `QueueFull`.
    pub max_queued_bytes: usize,
    /// How limits are agreed with the peer.
    pub limits_policy: LimitsPolicy,
    /// Most connections accepted from peers (default unlimited); more are refused with
    /// `ServerFull`.
    pub max_connections: usize,
    /// Nothing heard for this long → `Disconnect(BadConnection)` (default 5,000 ms).
    pub connection_timeout: Duration,
    /// How long connecting may take (default `None`: the handshake's own timeout, else
    /// `connection_timeout`).
    pub handshake_timeout: Option<Duration>,
    /// Whether timeouts disconnect (default true; false only for debugging: dead peers then stay
    /// connected). Can be changed at runtime with `Endpoint::set_timeouts_enabled`.
    pub timeouts_enabled: bool,
    /// First connect-request retry interval (default 10 ms).
    pub retry_interval_base: Duration,
    /// Cap of the connect-request retry interval (default 1,000 ms).
    pub retry_interval_max: Duration,
    /// A connection that has sent nothing for this long and owes no ACK sends a keep-alive
    /// (default 100 ms); it also sends a `PING` at the latest 5 × this after its last
    /// ack-eliciting packet, to keep measuring the RTT (docs/protocol.md §12).
    pub keep_alive_interval: Duration,
    /// Longest this side delays an acknowledgement of a packet with reliable data, a
    /// `DISCONNECT` or an `IMMEDIATE_ACK` request (default 5 ms).
    pub max_ack_delay: Duration,
    /// Longest this side delays an acknowledgement of a packet that carries only unreliable
    /// messages or a `PING` (default 500 ms, at most [`MAX_LAZY_ACK_DELAY`](crate::MAX_LAZY_ACK_DELAY);
    /// never less than `max_ack_delay`).
    /// Such acknowledgements only feed the peer's statistics and congestion control, so they
    /// are batched: one ACK datagram covers many packets, which is what lets a server carry
    /// thousands of clients sending small unreliable updates (docs/protocol.md §12). Ten such
    /// packets unacknowledged, or any packet this side sends anyway, bring the ACK forward.
    pub lazy_ack_delay: Duration,
    /// How long a closing connection resends its DISCONNECT (default 500 ms).
    pub linger: Duration,
    /// How long a connect cookie stays valid (default 10 s).
    pub cookie_lifetime: Duration,
    /// Most ranges an ACK frame carries (default 32).
    pub max_ack_ranges: usize,
    /// Drop connections whose RTT or loss stays above these thresholds (default `None`: no
    /// check; `carrier::CarrierDesc` turns it on with the original's thresholds, RTT 500 ms and
    /// loss 0.3, sustained 3 s). Applies only while timeouts are enabled.
    pub disconnect_thresholds: Option<DisconnectThresholds>,
    /// When one connection times out, every other connected one is checked once against the
    /// timeout and the thresholds multiplied by this factor, 0..=1 (default 0.5: a connection
    /// silent for more than half the timeout is dropped too); 1 disables this network-failure
    /// evaluation.
    pub evaluation_threshold: f32,
    /// How long an unreliable message may wait in the send queue (congestion, pacing) before
    /// it is dropped as too old (default 200 ms; counted by
    /// [`Connection::expired_unreliable`](crate::Connection::expired_unreliable)). Reliable
    /// messages never expire: past `max_queued_bytes`, `send` answers `QueueFull`.
    pub unreliable_ttl: Duration,
    /// Most datagrams accepted per connection per second (default `None`: unlimited). The
    /// excess is dropped (`RateLimited`) and reported as a security event; the limit never
    /// blacklists a connection and never affects other connections.
    pub receive_packet_limit: Option<u32>,
    /// Creates the traffic control of each connection.
    pub traffic_control: Arc<dyn TrafficControlFactory>,
    /// First packet number and first message sequence of every stream (default 0). Both sides
    /// must agree; tests set it near 2^32 to exercise wrap-around.
    #[doc(hidden)]
    pub initial_sequence: u64,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            version: 1,
            channel_count: 8,
            max_message_size: 1 << 20,
            max_datagram_size: DEFAULT_DATAGRAM_SIZE,
            receive_window: 4 << 20,
            unreliable_reassembly_budget: 2 << 20,
            max_queued_bytes: 16 << 20,
            limits_policy: LimitsPolicy::UseSmaller,
            max_connections: usize::MAX,
            connection_timeout: Duration::from_millis(5_000),
            handshake_timeout: None,
            timeouts_enabled: true,
            retry_interval_base: Duration::from_millis(10),
            retry_interval_max: Duration::from_millis(1_000),
            keep_alive_interval: Duration::from_millis(100),
            max_ack_delay: Duration::from_millis(5),
            lazy_ack_delay: Duration::from_millis(500),
            linger: Duration::from_millis(500),
            cookie_lifetime: Duration::from_secs(10),
            max_ack_ranges: 32,
            disconnect_thresholds: None,
            evaluation_threshold: 0.5,
            receive_packet_limit: None,
            unreliable_ttl: Duration::from_millis(200),
            traffic_control: Arc::new(DefaultTrafficControlFactory::default()),
            initial_sequence: 0,
        }
    }
}

/// RTT and loss disconnect thresholds (the original's `m_disconnectDetectionRttThreshold` and
/// `m_disconnectDetectionPacketLossThreshold`, which the original only logged).
///
/// A connection is checked once a second: its smoothed RTT, and its loss over that second (lost
/// / (lost + acknowledged) datagrams, when at least `min_packets` were decided). A check is bad
/// when either exceeds its threshold; a connection bad at every check for `window` is dropped with
/// `Disconnect(BadConnection)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DisconnectThresholds {
    /// RTT threshold (default 500 ms).
    pub rtt: Duration,
    /// Loss threshold, 0..=1 (default 0.3).
    pub loss: f32,
    /// How long the condition must hold (default 3 s).
    pub window: Duration,
    /// Fewest datagrams decided (acknowledged or lost) in a second for its loss to count
    /// (default 10).
    pub min_packets: u64,
}

impl Default for DisconnectThresholds {
    fn default() -> Self {
        DisconnectThresholds {
            rtt: Duration::from_millis(500),
            loss: 0.3,
            window: Duration::from_secs(3),
            min_packets: 10,
        }
    }
}

impl fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("version", &self.version)
            .field("channel_count", &self.channel_count)
            .field("max_message_size", &self.max_message_size)
            .field("max_datagram_size", &self.max_datagram_size)
            .field("receive_window", &self.receive_window)
            .field("max_connections", &self.max_connections)
            .field("connection_timeout", &self.connection_timeout)
            .field("traffic_control", &self.traffic_control)
            .finish_non_exhaustive()
    }
}

impl EndpointConfig {
    /// Checks every field; the error names the first invalid one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = |field: &'static str, d: Duration| {
            if d.is_zero() {
                Err(ConfigError::new(field, "must be greater than zero"))
            } else {
                Ok(())
            }
        };
        if self.channel_count == 0 {
            return Err(ConfigError::new("channel_count", "must be at least 1"));
        }
        if self.max_message_size == 0 || self.max_message_size > (1 << 30) {
            return Err(ConfigError::new(
                "max_message_size",
                format!("must be in 1..=1 GiB, got {}", self.max_message_size),
            ));
        }
        if !(MIN_DATAGRAM_SIZE..=MAX_DATAGRAM_SIZE).contains(&self.max_datagram_size) {
            return Err(ConfigError::new(
                "max_datagram_size",
                format!(
                    "must be in {MIN_DATAGRAM_SIZE}..={MAX_DATAGRAM_SIZE}, got {}",
                    self.max_datagram_size
                ),
            ));
        }
        if self.receive_window < self.max_message_size {
            return Err(ConfigError::new(
                "receive_window",
                format!(
                    "({}) must be at least max_message_size ({})",
                    self.receive_window, self.max_message_size
                ),
            ));
        }
        if self.unreliable_reassembly_budget == 0 {
            return Err(ConfigError::new(
                "unreliable_reassembly_budget",
                "must be greater than zero",
            ));
        }
        if self.max_queued_bytes < self.max_message_size {
            return Err(ConfigError::new(
                "max_queued_bytes",
                format!(
                    "({}) must be at least max_message_size ({})",
                    self.max_queued_bytes, self.max_message_size
                ),
            ));
        }
        positive("connection_timeout", self.connection_timeout)?;
        if let Some(t) = self.handshake_timeout {
            positive("handshake_timeout", t)?;
        }
        positive("retry_interval_base", self.retry_interval_base)?;
        if self.retry_interval_max < self.retry_interval_base {
            return Err(ConfigError::new(
                "retry_interval_max",
                "must not be below retry_interval_base",
            ));
        }
        positive("keep_alive_interval", self.keep_alive_interval)?;
        if self.keep_alive_interval >= self.connection_timeout {
            return Err(ConfigError::new(
                "keep_alive_interval",
                "must be below connection_timeout, or a live peer would time out",
            ));
        }
        if self.max_ack_delay > Duration::from_millis(1_000) {
            return Err(ConfigError::new(
                "max_ack_delay",
                "must be at most 1,000 ms",
            ));
        }
        if self.lazy_ack_delay > crate::MAX_LAZY_ACK_DELAY {
            return Err(ConfigError::new(
                "lazy_ack_delay",
                format!("must be at most 1,000 ms, got {:?}", self.lazy_ack_delay),
            ));
        }
        positive("cookie_lifetime", self.cookie_lifetime)?;
        if self.max_ack_ranges == 0 || self.max_ack_ranges > 256 {
            return Err(ConfigError::new("max_ack_ranges", "must be in 1..=256"));
        }
        if let Some(t) = &self.disconnect_thresholds {
            positive("disconnect_thresholds.rtt", t.rtt)?;
            positive("disconnect_thresholds.window", t.window)?;
            if !(0.0..=1.0).contains(&t.loss) {
                return Err(ConfigError::new(
                    "disconnect_thresholds.loss",
                    format!("must be in 0.0..=1.0, got {}", t.loss),
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.evaluation_threshold) {
            return Err(ConfigError::new(
                "evaluation_threshold",
                format!("must be in 0.0..=1.0, got {}", self.evaluation_threshold),
            ));
        }
        positive("unreliable_ttl", self.unreliable_ttl)?;
        if self.receive_packet_limit == Some(0) {
            return Err(ConfigError::new(
                "receive_packet_limit",
                "must be at least 1 (None means unlimited)",
            ));
        }
        Ok(())
    }

    /// The handshake timeout in effect when the handshake has none of its own.
    pub fn effective_handshake_timeout(&self) -> Duration {
        self.handshake_timeout.unwrap_or(self.connection_timeout)
    }
}
