//! What an endpoint reports: connection events, disconnect reasons, security events and the
//! reasons a datagram is dropped (docs/protocol.md §11, §15).

use std::fmt;
use std::net::SocketAddr;

/// Handle of one connection of an [`Endpoint`](crate::Endpoint). Never reused by an endpoint.
///
/// ```
/// use carrier_proto::ConnectionId;
/// assert_eq!(ConnectionId::from_raw(7).to_string(), "conn#7");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u64);

impl ConnectionId {
    /// Builds an id from its raw value (for tables and logs).
    pub const fn from_raw(raw: u64) -> Self {
        ConnectionId(raw)
    }

    /// The raw value.
    pub const fn raw(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// Why a connection ended or could not be made (docs/protocol.md §11). Sent to the peer.
///
/// ```
/// use carrier_proto::DisconnectReason;
/// let r = DisconnectReason::from_code(8);
/// assert_eq!(r, DisconnectReason::VersionMismatch);
/// assert_eq!(r.code(), 8);
/// assert_eq!(r.to_string(), "version mismatch when establishing the connection");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The application asked for it.
    UserRequested,
    /// Nothing heard for the connection timeout, or the RTT or loss thresholds were exceeded.
    BadConnection,
    /// The peer sent packets that violate the protocol.
    BadPackets,
    /// The driver could not send to the peer.
    DriverError,
    /// The acceptor's handshake refused the connection.
    HandshakeRejected,
    /// No answer to the connect request within the handshake timeout.
    HandshakeTimeout,
    /// The peer believed it was already connected.
    AlreadyConnected,
    /// The endpoint is shutting down.
    ShuttingDown,
    /// The two sides run different application versions.
    VersionMismatch,
    /// The two sides' limits (channels, message size, datagram size) could not be agreed.
    LimitsRefused,
    /// The acceptor has reached `max_connections`.
    ServerFull,
    /// A reason code this version does not know.
    Unknown(u8),
}

impl DisconnectReason {
    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            DisconnectReason::UserRequested => 0,
            DisconnectReason::BadConnection => 1,
            DisconnectReason::BadPackets => 2,
            DisconnectReason::DriverError => 3,
            DisconnectReason::HandshakeRejected => 4,
            DisconnectReason::HandshakeTimeout => 5,
            DisconnectReason::AlreadyConnected => 6,
            DisconnectReason::ShuttingDown => 7,
            DisconnectReason::VersionMismatch => 8,
            DisconnectReason::LimitsRefused => 9,
            DisconnectReason::ServerFull => 10,
            DisconnectReason::Unknown(c) => c,
        }
    }

    /// The reason for a wire code (unknown codes are kept as [`DisconnectReason::Unknown`]).
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => DisconnectReason::UserRequested,
            1 => DisconnectReason::BadConnection,
            2 => DisconnectReason::BadPackets,
            3 => DisconnectReason::DriverError,
            4 => DisconnectReason::HandshakeRejected,
            5 => DisconnectReason::HandshakeTimeout,
            6 => DisconnectReason::AlreadyConnected,
            7 => DisconnectReason::ShuttingDown,
            8 => DisconnectReason::VersionMismatch,
            9 => DisconnectReason::LimitsRefused,
            10 => DisconnectReason::ServerFull,
            c => DisconnectReason::Unknown(c),
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::UserRequested => f.write_str("user requested"),
            DisconnectReason::BadConnection => f.write_str("bad connection"),
            DisconnectReason::BadPackets => f.write_str("bad data packets"),
            DisconnectReason::DriverError => f.write_str("driver error"),
            DisconnectReason::HandshakeRejected => f.write_str("handshake rejected"),
            DisconnectReason::HandshakeTimeout => f.write_str("handshake timeout"),
            DisconnectReason::AlreadyConnected => f.write_str("already connected to that peer"),
            DisconnectReason::ShuttingDown => f.write_str("carrier is shutting down"),
            DisconnectReason::VersionMismatch => {
                f.write_str("version mismatch when establishing the connection")
            }
            DisconnectReason::LimitsRefused => f.write_str("connection limits could not be agreed"),
            DisconnectReason::ServerFull => f.write_str("the remote endpoint is full"),
            DisconnectReason::Unknown(c) => write!(f, "unknown reason {c}"),
        }
    }
}

/// Why a datagram was dropped (docs/protocol.md §15). Counted per reason by the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DropReason {
    /// Shorter than the datagram header.
    TooShort,
    /// Not a Carrier datagram (wrong magic).
    BadMagic,
    /// Another Carrier protocol version.
    UnsupportedVersion,
    /// The checksum does not match: the datagram was damaged.
    BadChecksum,
    /// Unknown packet type.
    UnknownPacketType,
    /// A field could not be parsed or holds an impossible value.
    Malformed,
    /// No connection for this source address and connection id.
    UnknownConnection,
    /// A connect request with a missing, forged or expired cookie (answered with a challenge).
    InvalidCookie,
    /// A packet number already received.
    Duplicate,
    /// The packet would overflow the receive window (a misbehaving peer).
    ReceiveWindowExceeded,
    /// A valid packet that makes no sense in the connection's current state.
    Unexpected,
    /// Too many packets per second from this connection (receive rate limit).
    RateLimited,
}

impl DropReason {
    /// Every reason, for tables.
    pub const ALL: [DropReason; 12] = [
        DropReason::TooShort,
        DropReason::BadMagic,
        DropReason::UnsupportedVersion,
        DropReason::BadChecksum,
        DropReason::UnknownPacketType,
        DropReason::Malformed,
        DropReason::UnknownConnection,
        DropReason::InvalidCookie,
        DropReason::Duplicate,
        DropReason::ReceiveWindowExceeded,
        DropReason::Unexpected,
        DropReason::RateLimited,
    ];

    /// Dense index into [`DropReason::ALL`].
    pub fn index(self) -> usize {
        DropReason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            DropReason::TooShort => "datagram too short",
            DropReason::BadMagic => "not a Carrier datagram",
            DropReason::UnsupportedVersion => "unsupported protocol version",
            DropReason::BadChecksum => "checksum mismatch",
            DropReason::UnknownPacketType => "unknown packet type",
            DropReason::Malformed => "malformed packet",
            DropReason::UnknownConnection => "unknown connection",
            DropReason::InvalidCookie => "invalid or expired cookie",
            DropReason::Duplicate => "duplicate packet",
            DropReason::ReceiveWindowExceeded => "receive window exceeded",
            DropReason::Unexpected => "unexpected packet for the connection state",
            DropReason::RateLimited => "receive packet rate limit exceeded",
        };
        f.write_str(s)
    }
}

/// Something an endpoint reports to the application, pulled with
/// [`Endpoint::poll_event`](crate::Endpoint::poll_event).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A peer proved its address and asked to connect; the handshake is being evaluated.
    IncomingConnection {
        /// The new connection.
        id: ConnectionId,
        /// The peer's address.
        addr: SocketAddr,
    },
    /// The connection is established: messages can flow.
    ConnectionEstablished {
        /// The connection.
        id: ConnectionId,
    },
    /// A connection that was being established failed.
    FailedToConnect {
        /// The connection.
        id: ConnectionId,
        /// Why (the peer's reason when it refused).
        reason: DisconnectReason,
    },
    /// An established connection ended.
    Disconnect {
        /// The connection.
        id: ConnectionId,
        /// Why (the peer's reason when it closed).
        reason: DisconnectReason,
    },
    /// A datagram from an established connection was dropped: the connection is not affected.
    SecurityError {
        /// The connection the datagram came from.
        id: ConnectionId,
        /// Why it was dropped.
        reason: DropReason,
    },
    /// The allowed send rate of a connection changed significantly.
    RateChange {
        /// The connection.
        id: ConnectionId,
        /// The new allowed send rate, bytes per second.
        bytes_per_second: u64,
    },
}
