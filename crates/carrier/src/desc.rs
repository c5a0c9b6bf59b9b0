//! `CarrierDesc`: every parameter of the original `CarrierDesc`, in snake_case, with its default,
//! plus Carrier's own; validated by [`CarrierDesc::validate`] (called by
//! [`Carrier::new`](crate::Carrier::new)).

use std::fmt;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use carrier_proto::{
    CROSS_PLATFORM_DATAGRAM_SIZE, DEFAULT_DATAGRAM_SIZE, EndpointConfig, FULL_PACKET_DATAGRAM_SIZE,
    Handshake, TrafficControlFactory,
};
use carrier_sim::Simulator;

use crate::ConfigError;
use crate::driver::Driver;

/// Address family of the default driver (the original's `m_familyType`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FamilyType {
    /// IPv4 only (the original's default, `BSD_AF_INET`).
    #[default]
    Ipv4,
    /// IPv6 only (`IPV6_V6ONLY` set).
    Ipv6,
    /// One IPv6 socket that also carries IPv4 (IPv4-mapped addresses).
    DualStack,
}

/// How the carrier's I/O runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ThreadMode {
    /// A carrier thread owns the driver and the protocol (the original's model).
    #[default]
    Dedicated,
    /// No thread: [`Carrier::update`](crate::Carrier::update) does the I/O on the calling
    /// thread (single-threaded servers, lowest latency).
    Manual,
}

/// Value of [`CarrierDesc::thread_priority`] that keeps the creating thread's priority.
pub const INHERIT_PRIORITY: i32 = -100_000;

/// Largest [`CarrierDesc::thread_receive_coalescing_us`]: 10 ms.
pub const MAX_RECEIVE_COALESCING_US: u32 = 10_000;

/// The carrier descriptor: everything a carrier is created with.
///
/// `Default` gives the original's defaults. Fields whose default differs from the original, or
/// that the original lacks, say so.
///
/// ```
/// use carrier::{CarrierDesc, FamilyType};
/// let desc = CarrierDesc {
///     port: 0,
///     family_type: FamilyType::Ipv4,
///     version: 3,
///     channel_count: 4,
///     ..CarrierDesc::default()
/// };
/// desc.validate().unwrap();
/// assert_eq!(desc.connection_timeout_ms, 5_000);
/// ```
pub struct CarrierDesc {
    /// Local address the driver binds to; `None` = any address (original `m_address`). A host
    /// name is resolved.
    pub address: Option<String>,
    /// Local port; 0 = chosen by the system (original `m_port`).
    pub port: u16,
    /// Address family of the default driver (original `m_familyType`, default IPv4).
    pub family_type: FamilyType,
    /// Application version: carriers with different versions never connect (original
    /// `m_version`, default 1).
    pub version: u32,
    /// Nothing heard for this long → `Disconnect(BadConnection)`; also the handshake timeout
    /// and the update watchdog (original `m_connectionTimeoutMS`, default 5,000).
    pub connection_timeout_ms: u32,
    /// When one connection times out, every other is checked against its thresholds multiplied
    /// by this factor, 0..=1 (original `m_connectionEvaluationThreshold`, default 0.5).
    pub connection_evaluation_threshold: f32,
    /// Packet loss ratio, 0..=1, above which a connection is dropped (original
    /// `m_disconnectDetectionPacketLossThreshold`, default 0.3).
    pub disconnect_detection_packet_loss_threshold: f32,
    /// RTT in milliseconds above which a connection is dropped (original
    /// `m_disconnectDetectionRttThreshold`, default 500).
    pub disconnect_detection_rtt_threshold: f32,
    /// Whether bad connections are dropped and timeouts apply; false only for debugging
    /// (original `m_enableDisconnectionDetection`, default true).
    pub enable_disconnect_detection: bool,
    /// How long the RTT or loss must stay above its threshold before the connection is dropped,
    /// ms (Carrier's; default 3,000; checked once a second).
    pub disconnect_detection_window_ms: u32,
    /// Most datagrams accepted per connection per second; 0 = unlimited (original
    /// `m_recvPacketsLimit`). The excess is dropped and reported as a security event; unlike
    /// the original it never blocks the connection for good.
    pub receive_packets_limit: u32,
    /// A custom driver; `None` = the default UDP driver (original `m_driver`).
    pub driver: Option<Box<dyn Driver>>,
    /// Use the most restrictive MTU of all platforms: 1,236-byte datagrams (original
    /// `m_driverIsCrossPlatform`, default false). Takes precedence over `driver_is_full_packets`.
    pub driver_is_cross_platform: bool,
    /// 65,479-byte datagrams for LANs (original `m_driverIsFullPackets`, default false).
    pub driver_is_full_packets: bool,
    /// `SO_RCVBUF` of the default driver, bytes; 0 = 256 KiB (original
    /// `m_driverReceiveBufferSize`). Only without a custom driver.
    pub driver_receive_buffer_size: u32,
    /// `SO_SNDBUF` of the default driver, bytes; 0 = 64 KiB (original
    /// `m_driverSendBufferSize`). Only without a custom driver.
    pub driver_send_buffer_size: u32,
    /// Opaque security data for platform drivers; unused by the default driver (original
    /// `m_securityData`).
    pub security_data: Option<String>,
    /// Wake the carrier thread when this many full datagrams are queued; 0 = every send wakes
    /// it at once (original `m_sendBatchPacketCount`, default 0). Otherwise data leaves on the
    /// next tick. With 0 and [`thread_instant_response`](Self::thread_instant_response), a
    /// driver that supports it sends on the calling thread instead (direct send).
    pub send_batch_packet_count: u32,
    /// A simulator every inbound and outbound datagram passes through (original `m_simulator`).
    pub simulator: Option<Box<dyn Simulator>>,
    /// CPU the carrier thread is pinned to; -1 = none (original `m_threadCpuID`).
    pub thread_cpu_id: i32,
    /// Carrier thread priority as a Linux nice value (-20..=19); [`INHERIT_PRIORITY`] (-100,000)
    /// keeps the creating thread's (original `m_threadPriority`, default -100,000).
    pub thread_priority: i32,
    /// Carrier thread tick, 0..=100 ms (original `m_threadUpdateTimeMS`, default 30).
    pub thread_update_time_ms: u32,
    /// Wake the carrier thread as soon as data arrives or a deadline passes instead of on the
    /// tick (original `m_threadInstantResponse`; default true, as the original's code does — its
    /// header comment says false).
    ///
    /// **Direct send** (beyond the original): in [`ThreadMode::Dedicated`] with this set,
    /// [`send_batch_packet_count`](Self::send_batch_packet_count) 0 and no
    /// [`simulator`](Self::simulator), [`Carrier::send`](crate::Carrier::send) and
    /// [`send_bytes`](crate::Carrier::send_bytes) send the datagrams they made ready on the
    /// calling thread, through the driver's [`DirectSend`](crate::driver::DirectSend) (the
    /// default UDP driver has one; a custom driver opts in with
    /// [`Driver::direct_sender`](crate::driver::Driver::direct_sender)), rather than waking the
    /// carrier thread to send them: a thread hand-off less per message. This applies to an
    /// answer: a message to a connection that owes its peer an acknowledgement (it received
    /// since it last sent) and has nothing in flight, as in a request/response exchange. A
    /// stream of sends still goes through the carrier thread, so that the messages queued
    /// while it wakes up are packed into shared datagrams. The carrier thread is
    /// still woken when the send moved the connection's next deadline earlier than its planned
    /// wake-up (a retransmission timer), when the driver's own queue must drain first, and when
    /// a send failed (which, as on the carrier thread, reports a
    /// [`CarrierEvent::DriverError`](crate::CarrierEvent::DriverError) and drops that
    /// connection). Sends of several threads are serialized with each other and with the
    /// carrier thread's, so datagrams leave in the order the protocol numbered them.
    ///
    /// **Cost on busy servers.** With instant response alone the carrier thread would wake for
    /// nearly every datagram that arrives when it is idle, each wake-up a turn on cold caches:
    /// a server receiving 20,000 small datagrams a second from 1,000 clients used 1.9× the CPU
    /// of a bare UDP server that way. [`thread_receive_coalescing_us`](Self::thread_receive_coalescing_us)
    /// (on by default) lets such datagrams gather for up to 2 ms while no game thread waits
    /// for them, which brought that server to the CPU of the bare UDP one
    /// (docs/performance.md, `connections`).
    pub thread_instant_response: bool,
    /// Receive coalescing of the carrier thread with instant response, microseconds (Carrier's;
    /// default 2,000; 0 = off; at most 10,000).
    ///
    /// Like a network card's interrupt moderation: while datagrams arrive densely (at least four
    /// per window on average over the last 10 ms, or two windows if longer), after a turn that
    /// found datagrams waiting and sent nothing in answer to them, while no game thread is
    /// blocked in
    /// [`Carrier::wait_message`](crate::Carrier::wait_message) or
    /// [`wait_event`](crate::Carrier::wait_event), the carrier thread lets further datagrams
    /// gather in the socket for this long before it looks again, so that a server receiving
    /// from many clients handles them a batch per wake-up instead of one. A `send` and a game
    /// thread beginning to wait still wake it at once; protocol deadlines that fall within the
    /// window (acknowledgement delays, keep-alives, retransmissions) are handled at its end, at
    /// most this late. The first datagram after a quiet spell is handled at once: only
    /// datagrams that follow another within this time can wait, by at most this long. A game
    /// that reads its messages once per frame does not see the difference; round-trip times
    /// measured by the peer may grow by up to this much under such traffic. A turn that
    /// answers (acknowledgements of a stream of reliable messages, data a sender was holding
    /// for the acknowledgements) or that received reliable data (its acknowledgement is owed
    /// promptly: the sender's congestion window waits for it) is not followed by a window, so
    /// bulk transfers are not slowed. Coalescing therefore serves unreliable traffic: a server
    /// whose clients send reliable messages wakes for them as without it. After such a turn in
    /// dense traffic the thread looks again up to three times, yielding the CPU in between,
    /// before it sleeps: the next datagram is most likely microseconds away, and a sleep and
    /// its wake-up cost more.
    ///
    /// On the `connections` benchmark (1,000 clients × 20 datagrams a second) the carrier
    /// thread wakes about 500 times a second instead of about 20,000 (docs/performance.md).
    /// Sparser traffic (100 clients, 2,000 datagrams a second) is left alone: there a window
    /// gathers one or two datagrams, and the timer wake-up that ends it cost more CPU than the
    /// wake-ups it saved.
    pub thread_receive_coalescing_us: u32,
    /// A custom traffic control (original `m_trafficControl`); `None` = the default.
    pub traffic_control: Option<Arc<dyn TrafficControlFactory>>,
    /// Most incoming connections; more are refused with `ServerFull` (original
    /// `m_maxConnections`, default unlimited).
    pub max_connections: u32,
    /// First connect retry interval, ms (original `m_connectionRetryIntervalBase`, default 10).
    pub connection_retry_interval_base_ms: u32,
    /// Cap of the connect retry interval, ms (original `m_connectionRetryIntervalMax`, default
    /// 1,000).
    pub connection_retry_interval_max_ms: u32,
    /// A custom handshake (original `m_handshake`); `None` = the version check.
    pub handshake: Option<Box<dyn Handshake>>,
    /// Channels per connection, 1..=255 (Carrier's; default 8, the original had 3 user
    /// channels). Agreed with the peer: the smaller count is used.
    pub channel_count: u8,
    /// Largest message, bytes (Carrier's; default 1 MiB). Agreed with the peer.
    pub max_message_size: u32,
    /// Dedicated carrier thread or manual mode (Carrier's; default dedicated).
    pub thread_mode: ThreadMode,
    /// Longest `shutdown()` or drop waits for disconnects to be delivered, ms (Carrier's; default
    /// 1,000).
    pub shutdown_timeout_ms: u32,
    /// How long an unreliable message may wait to be sent before it is dropped as too old, ms
    /// (Carrier's; default 200). Reliable messages never expire.
    pub unreliable_ttl_ms: u32,
    /// Bytes of messages one connection may hold queued for sending; past it `send` answers
    /// `QueueFull` (Carrier's; default 16 MiB; at least `max_message_size`).
    pub max_queued_bytes: usize,
    /// Seed of the protocol's random choices (cookie secret, connection ids); `None` = from the
    /// system clock and process id (Carrier's).
    pub seed: Option<u64>,
}

impl Default for CarrierDesc {
    fn default() -> Self {
        CarrierDesc {
            address: None,
            port: 0,
            family_type: FamilyType::Ipv4,
            version: 1,
            connection_timeout_ms: 5_000,
            connection_evaluation_threshold: 0.5,
            disconnect_detection_packet_loss_threshold: 0.3,
            disconnect_detection_rtt_threshold: 500.0,
            enable_disconnect_detection: true,
            disconnect_detection_window_ms: 3_000,
            receive_packets_limit: 0,
            driver: None,
            driver_is_cross_platform: false,
            driver_is_full_packets: false,
            driver_receive_buffer_size: 0,
            driver_send_buffer_size: 0,
            security_data: None,
            send_batch_packet_count: 0,
            simulator: None,
            thread_cpu_id: -1,
            thread_priority: INHERIT_PRIORITY,
            thread_update_time_ms: 30,
            thread_instant_response: true,
            thread_receive_coalescing_us: 2_000,
            traffic_control: None,
            max_connections: u32::MAX,
            connection_retry_interval_base_ms: 10,
            connection_retry_interval_max_ms: 1_000,
            handshake: None,
            channel_count: 8,
            max_message_size: 1 << 20,
            thread_mode: ThreadMode::Dedicated,
            shutdown_timeout_ms: 1_000,
            max_queued_bytes: 16 << 20,
            unreliable_ttl_ms: 200,
            seed: None,
        }
    }
}

impl fmt::Debug for CarrierDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CarrierDesc")
            .field("address", &self.address)
            .field("port", &self.port)
            .field("family_type", &self.family_type)
            .field("version", &self.version)
            .field("connection_timeout_ms", &self.connection_timeout_ms)
            .field("driver", &self.driver.as_ref().map(|_| "custom"))
            .field("simulator", &self.simulator.as_ref().map(|_| "set"))
            .field("thread_mode", &self.thread_mode)
            .finish_non_exhaustive()
    }
}

impl CarrierDesc {
    /// The largest datagram the default driver sends in this mode (docs/protocol.md §14).
    pub fn max_datagram_size(&self) -> usize {
        if self.driver_is_cross_platform {
            CROSS_PLATFORM_DATAGRAM_SIZE
        } else if self.driver_is_full_packets {
            FULL_PACKET_DATAGRAM_SIZE
        } else {
            DEFAULT_DATAGRAM_SIZE
        }
    }

    /// `SO_RCVBUF` in effect (0 means 256 KiB).
    pub fn receive_buffer_size(&self) -> usize {
        match self.driver_receive_buffer_size {
            0 => 256 * 1024,
            n => n as usize,
        }
    }

    /// `SO_SNDBUF` in effect (0 means 64 KiB).
    pub fn send_buffer_size(&self) -> usize {
        match self.driver_send_buffer_size {
            0 => 64 * 1024,
            n => n as usize,
        }
    }

    /// The bind address, resolved; `None` = any address.
    pub fn bind_ip(&self) -> Result<Option<IpAddr>, ConfigError> {
        let Some(address) = self.address.as_deref().filter(|a| !a.is_empty()) else {
            return Ok(None);
        };
        if let Ok(ip) = address.parse::<IpAddr>() {
            return Ok(Some(ip));
        }
        let resolved = (address, 0u16)
            .to_socket_addrs()
            .map_err(|e| ConfigError::new("address", format!("`{address}` is unknown: {e}")))?
            .map(|a| a.ip())
            .find(|ip| match self.family_type {
                FamilyType::Ipv4 => ip.is_ipv4(),
                FamilyType::Ipv6 | FamilyType::DualStack => ip.is_ipv6(),
            });
        resolved.map(Some).ok_or_else(|| {
            ConfigError::new(
                "address",
                format!("`{address}` has no {:?} address", self.family_type),
            )
        })
    }

    /// Checks every field; the error names the first invalid one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.thread_receive_coalescing_us > MAX_RECEIVE_COALESCING_US {
            return Err(ConfigError::new(
                "thread_receive_coalescing_us",
                format!(
                    "must be in 0..={MAX_RECEIVE_COALESCING_US}, got {}",
                    self.thread_receive_coalescing_us
                ),
            ));
        }
        if self.thread_update_time_ms > 100 {
            return Err(ConfigError::new(
                "thread_update_time_ms",
                format!("must be in 0..=100, got {}", self.thread_update_time_ms),
            ));
        }
        if self.connection_timeout_ms == 0 {
            return Err(ConfigError::new(
                "connection_timeout_ms",
                "must be greater than zero",
            ));
        }
        let unit = |field: &'static str, v: f32| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError::new(
                    field,
                    format!("must be in 0.0..=1.0, got {v}"),
                ))
            }
        };
        unit(
            "connection_evaluation_threshold",
            self.connection_evaluation_threshold,
        )?;
        unit(
            "disconnect_detection_packet_loss_threshold",
            self.disconnect_detection_packet_loss_threshold,
        )?;
        let rtt = self.disconnect_detection_rtt_threshold;
        if !(rtt.is_finite() && rtt > 0.0) {
            return Err(ConfigError::new(
                "disconnect_detection_rtt_threshold",
                format!("must be a positive number of milliseconds, got {rtt}"),
            ));
        }
        if self.driver.is_some() && self.driver_receive_buffer_size != 0 {
            return Err(ConfigError::new(
                "driver_receive_buffer_size",
                "applies to the default driver only; configure a custom driver yourself",
            ));
        }
        if self.driver.is_some() && self.driver_send_buffer_size != 0 {
            return Err(ConfigError::new(
                "driver_send_buffer_size",
                "applies to the default driver only; configure a custom driver yourself",
            ));
        }
        if self.thread_cpu_id < -1 {
            return Err(ConfigError::new(
                "thread_cpu_id",
                format!(
                    "must be -1 (no affinity) or a CPU index, got {}",
                    self.thread_cpu_id
                ),
            ));
        }
        if self.thread_priority != INHERIT_PRIORITY && !(-20..=19).contains(&self.thread_priority) {
            return Err(ConfigError::new(
                "thread_priority",
                format!(
                    "must be a nice value in -20..=19 or {INHERIT_PRIORITY} (inherit), got {}",
                    self.thread_priority
                ),
            ));
        }
        if self.connection_retry_interval_base_ms == 0 {
            return Err(ConfigError::new(
                "connection_retry_interval_base_ms",
                "must be greater than zero",
            ));
        }
        if self.connection_retry_interval_max_ms < self.connection_retry_interval_base_ms {
            return Err(ConfigError::new(
                "connection_retry_interval_max_ms",
                "must not be below connection_retry_interval_base_ms",
            ));
        }
        if self.channel_count == 0 {
            return Err(ConfigError::new("channel_count", "must be at least 1"));
        }
        if self.max_message_size == 0 {
            return Err(ConfigError::new("max_message_size", "must be at least 1"));
        }
        if self.shutdown_timeout_ms > 60_000 {
            return Err(ConfigError::new(
                "shutdown_timeout_ms",
                "must be at most 60,000",
            ));
        }
        if self.driver.is_none()
            && let Some(ip) = self.bind_ip()?
        {
            let ok = match self.family_type {
                FamilyType::Ipv4 => ip.is_ipv4(),
                FamilyType::Ipv6 | FamilyType::DualStack => ip.is_ipv6(),
            };
            if !ok {
                return Err(ConfigError::new(
                    "address",
                    format!("{ip} is not an address of family {:?}", self.family_type),
                ));
            }
        }
        self.endpoint_config(self.max_datagram_size())
            .validate()
            .map_err(|e| ConfigError::new(desc_field(e.field()), e.problem()))
    }

    /// The protocol configuration this descriptor stands for, for datagrams of
    /// `max_datagram_size` bytes (the driver's payload).
    pub fn endpoint_config(&self, max_datagram_size: usize) -> EndpointConfig {
        let ms = |v: u32| Duration::from_millis(u64::from(v));
        let max_message_size = self.max_message_size as usize;
        let mut config = EndpointConfig {
            version: self.version,
            channel_count: self.channel_count,
            max_message_size,
            max_datagram_size,
            max_connections: self.max_connections as usize,
            connection_timeout: ms(self.connection_timeout_ms),
            timeouts_enabled: self.enable_disconnect_detection,
            retry_interval_base: ms(self.connection_retry_interval_base_ms),
            retry_interval_max: ms(self.connection_retry_interval_max_ms),
            ..EndpointConfig::default()
        };
        config.disconnect_thresholds = Some(carrier_proto::DisconnectThresholds {
            // validate() refuses NaN, infinite and non-positive thresholds; never panic here anyway.
            rtt: Duration::try_from_secs_f32(self.disconnect_detection_rtt_threshold / 1e3)
                .unwrap_or(Duration::from_millis(500)),
            loss: self.disconnect_detection_packet_loss_threshold,
            window: ms(self.disconnect_detection_window_ms),
            ..carrier_proto::DisconnectThresholds::default()
        });
        config.evaluation_threshold = self.connection_evaluation_threshold;
        config.receive_packet_limit =
            (self.receive_packets_limit > 0).then_some(self.receive_packets_limit);
        config.receive_window = config.receive_window.max(max_message_size);
        config.max_queued_bytes = self.max_queued_bytes;
        config.unreliable_ttl = ms(self.unreliable_ttl_ms);
        config.unreliable_reassembly_budget = 2 * max_message_size;
        if let Some(tc) = &self.traffic_control {
            config.traffic_control = Arc::clone(tc);
        }
        config
    }
}

/// The descriptor field behind a protocol configuration field, for error messages.
fn desc_field(endpoint_field: &'static str) -> &'static str {
    match endpoint_field {
        "connection_timeout" | "keep_alive_interval" => "connection_timeout_ms",
        "disconnect_thresholds.window" => "disconnect_detection_window_ms",
        "disconnect_thresholds.rtt" => "disconnect_detection_rtt_threshold",
        "disconnect_thresholds.loss" => "disconnect_detection_packet_loss_threshold",
        "evaluation_threshold" => "connection_evaluation_threshold",
        "unreliable_ttl" => "unreliable_ttl_ms",
        "retry_interval_base" => "connection_retry_interval_base_ms",
        "retry_interval_max" => "connection_retry_interval_max_ms",
        "max_datagram_size" => "driver_is_full_packets",
        "receive_window" | "unreliable_reassembly_budget" => "max_message_size",
        other => other,
    }
}
