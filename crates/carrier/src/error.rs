//! Typed errors of the carrier's operations.

use crate::driver::DriverError;
use carrier_proto::{ChannelId, ConfigError};

/// Why [`Carrier::new`](crate::Carrier::new) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CarrierError {
    /// The descriptor is invalid (the error names the field).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The driver could not be opened.
    #[error(transparent)]
    Driver(#[from] DriverError),
}

/// Why [`Carrier::connect`](crate::Carrier::connect) failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The address could not be parsed or resolved.
    #[error("cannot resolve `{address}`: {reason}")]
    Resolve {
        /// The address given.
        address: String,
        /// Why.
        reason: String,
    },
    /// The protocol refused (already connected, shutting down...).
    #[error(transparent)]
    Protocol(#[from] carrier_proto::ConnectError),
    /// The carrier has shut down.
    #[error("the carrier has shut down")]
    ShutDown,
}

/// Why [`Carrier::receive_into`](crate::Carrier::receive_into) could not copy a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiveError {
    /// The buffer is too small; the message stays queued.
    #[error("buffer of {len} bytes is too small for the next message of {needed} bytes")]
    BufferTooSmall {
        /// Bytes the message needs.
        needed: usize,
        /// Bytes the buffer has.
        len: usize,
    },
    /// The channel is not below the channel count.
    #[error("{0} is not a valid channel")]
    InvalidChannel(ChannelId),
}
