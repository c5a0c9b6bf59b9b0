//! Typed errors of the endpoint's operations. Every variant names what was wrong.

use std::net::SocketAddr;

use crate::{ChannelId, ConnectionId};

/// Why a configuration was refused. The message names the field.
///
/// ```
/// use carrier_proto::EndpointConfig;
/// let config = EndpointConfig { channel_count: 0, ..EndpointConfig::default() };
/// let err = config.validate().unwrap_err();
/// assert_eq!(err.field(), "channel_count");
/// assert!(err.to_string().contains("channel_count"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: `{field}` {problem}")]
pub struct ConfigError {
    field: &'static str,
    problem: String,
}

impl ConfigError {
    /// An error about `field`.
    pub fn new(field: &'static str, problem: impl Into<String>) -> Self {
        ConfigError {
            field,
            problem: problem.into(),
        }
    }

    /// The field at fault.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// What is wrong with it.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

/// Why [`Endpoint::connect`](crate::Endpoint::connect) refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// A connection to this address already exists.
    #[error("already connected or connecting to {0}")]
    AlreadyConnected(SocketAddr),
    /// The endpoint has reached `max_connections`.
    #[error("the endpoint has reached max_connections ({0})")]
    TooManyConnections(usize),
    /// The handshake produced a payload above 1,024 bytes.
    #[error("handshake payload of {0} bytes exceeds the 1024-byte limit")]
    HandshakePayloadTooLarge(usize),
    /// The endpoint is shutting down.
    #[error("the endpoint is shutting down")]
    ShuttingDown,
}

/// Why a message was not queued.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No connection with this id.
    #[error("unknown connection {0}")]
    UnknownConnection(ConnectionId),
    /// The connection is not (or no longer) connected.
    #[error("connection {0} is not connected")]
    NotConnected(ConnectionId),
    /// The channel is not below the connection's agreed channel count.
    #[error("{channel} is invalid: the connection has {count} channels")]
    InvalidChannel {
        /// The channel asked for.
        channel: ChannelId,
        /// The agreed channel count.
        count: u8,
    },
    /// The message is larger than the agreed maximum message size.
    #[error("message of {size} bytes exceeds the maximum message size of {max} bytes")]
    TooLarge {
        /// Size of the message.
        size: usize,
        /// The agreed maximum message size.
        max: usize,
    },
    /// The connection's send queue is full (`max_queued_bytes`); try again after it drains.
    #[error("send queue full: {queued} bytes queued, limit {limit}")]
    QueueFull {
        /// Bytes queued now.
        queued: usize,
        /// The limit.
        limit: usize,
    },
}
