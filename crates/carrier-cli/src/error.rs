//! [`CliError`]: everything that ends a command unsuccessfully, each printed as one sentence.

use std::net::SocketAddr;

use carrier::{CarrierError, ConnectError, DisconnectReason, SendError};

/// Why a command failed. `main` prints it after `error: ` and exits with status 1.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// A command-line value was out of range.
    #[error("{0}")]
    Usage(String),
    /// An address could not be parsed or resolved.
    #[error("`{address}` is not a usable address: {reason}")]
    Address {
        /// The address given.
        address: String,
        /// Why.
        reason: String,
    },
    /// The simulator settings were refused.
    #[error("the simulator settings are invalid: {0}")]
    Simulator(#[from] carrier_sim::ConfigError),
    /// The carrier could not be created (bad descriptor, socket error).
    #[error("the carrier could not be created: {0}")]
    Carrier(#[from] CarrierError),
    /// `connect` refused at once.
    #[error("the connection could not be started: {0}")]
    Connect(#[from] ConnectError),
    /// The peer never answered or refused.
    #[error("could not connect to {addr}: {reason}")]
    FailedToConnect {
        /// The peer.
        addr: String,
        /// Why.
        reason: DisconnectReason,
    },
    /// An established connection ended before we were done.
    #[error("the connection to {addr} ended: {reason}")]
    Disconnected {
        /// The peer.
        addr: SocketAddr,
        /// Why.
        reason: DisconnectReason,
    },
    /// A message could not be queued and retrying would not help.
    #[error("a message could not be sent: {0}")]
    Send(#[from] SendError),
    /// Reading standard input or writing standard output failed.
    #[error("input/output failed: {0}")]
    Io(#[from] std::io::Error),
    /// The demo finished but its checks failed (the report says which).
    #[error("the demo failed: {0}")]
    DemoFailed(String),
    /// Benchmark runs failed (stalled, lost or reordered messages); the report says which.
    #[error("benchmark runs failed: {0}")]
    BenchFailed(String),
}
