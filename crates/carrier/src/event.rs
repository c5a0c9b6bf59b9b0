//! What a carrier reports: [`CarrierEvent`]s, pulled with
//! [`Carrier::poll_event`](crate::Carrier::poll_event) or
//! [`Carrier::wait_event`](crate::Carrier::wait_event).

use std::fmt;
use std::net::SocketAddr;

use carrier_proto::{ConnectionId, DisconnectReason, DropReason};

use crate::driver::DriverError;

/// A security problem (the original's `SecurityError` codes that Carrier raises).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecurityError {
    /// The game thread did not call [`Carrier::update`](crate::Carrier::update) for longer than
    /// the connection timeout (raised once until updates resume).
    UpdateTimeout,
    /// A datagram from an established connection was dropped (malformed, duplicate, over the
    /// receive window...). The connection is not affected.
    BadDatagram(DropReason),
}

impl fmt::Display for SecurityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecurityError::UpdateTimeout => {
                f.write_str("Carrier::update was not called within the connection timeout")
            }
            SecurityError::BadDatagram(r) => write!(f, "datagram dropped: {r}"),
        }
    }
}

/// Something that happened to a carrier or one of its connections.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CarrierEvent {
    /// A peer is connecting (its address is proven); the handshake decides next.
    IncomingConnection {
        /// The new connection.
        id: ConnectionId,
        /// The peer's address.
        addr: SocketAddr,
    },
    /// The connection is established: messages flow.
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
    /// The driver failed; with a connection, that connection was dropped (`DriverError`).
    DriverError {
        /// The connection concerned, if any.
        id: Option<ConnectionId>,
        /// The error.
        error: DriverError,
    },
    /// A security problem; never disconnects by itself.
    SecurityError {
        /// The connection concerned, if any.
        id: Option<ConnectionId>,
        /// The problem.
        error: SecurityError,
    },
    /// The allowed send rate of a connection changed significantly.
    RateChange {
        /// The connection.
        id: ConnectionId,
        /// Allowed send rate, bytes per second.
        bytes_per_second: u64,
    },
    /// The carrier thread could not apply `thread_cpu_id` or `thread_priority`.
    ThreadSetupFailed {
        /// What failed.
        message: String,
    },
}

impl CarrierEvent {
    /// The connection the event is about, if any.
    pub fn connection(&self) -> Option<ConnectionId> {
        match self {
            CarrierEvent::IncomingConnection { id, .. }
            | CarrierEvent::ConnectionEstablished { id }
            | CarrierEvent::FailedToConnect { id, .. }
            | CarrierEvent::Disconnect { id, .. }
            | CarrierEvent::RateChange { id, .. } => Some(*id),
            CarrierEvent::DriverError { id, .. } | CarrierEvent::SecurityError { id, .. } => *id,
            CarrierEvent::ThreadSetupFailed { .. } => None,
        }
    }
}
