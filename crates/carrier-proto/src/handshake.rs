//! The connection handshake: what the initiator attaches to its connect request and how the
//! acceptor decides (docs/protocol.md §4.5).
//!
//! [`DefaultHandshake`] carries the application's `u32` version: carriers with different
//! versions never connect, and both sides learn [`DisconnectReason::VersionMismatch`].

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::{ConnectionId, DisconnectReason};

/// Largest handshake payload or reply, bytes (docs/protocol.md §4.1).
pub const MAX_HANDSHAKE_PAYLOAD: usize = 1024;

/// The acceptor's answer to a connect request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeDecision {
    /// Accept; `reply` (≤ 1,024 bytes) is sent back to the initiator.
    Accept {
        /// Reply payload for the initiator's [`Handshake::on_accept`].
        reply: Vec<u8>,
    },
    /// Refuse with a reason (and an optional payload, ≤ 1,024 bytes) sent to the initiator.
    Reject {
        /// Reason both sides report.
        reason: DisconnectReason,
        /// Payload for the initiator (informational).
        payload: Vec<u8>,
    },
    /// Decide later: nothing is sent; the initiator's next retry asks again.
    Pending,
}

/// A pluggable handshake. One instance serves every connection of an endpoint.
///
/// ```
/// use std::net::SocketAddr;
/// use carrier_proto::{ConnectionId, DisconnectReason, Handshake, HandshakeDecision};
///
/// /// Accepts only peers that send the right password.
/// #[derive(Debug)]
/// struct Password(&'static [u8]);
///
/// impl Handshake for Password {
///     fn initiate(&mut self, _peer: SocketAddr) -> Vec<u8> {
///         self.0.to_vec()
///     }
///     fn on_request(&mut self, _id: ConnectionId, _peer: SocketAddr, payload: &[u8]) -> HandshakeDecision {
///         if payload == self.0 {
///             HandshakeDecision::Accept { reply: Vec::new() }
///         } else {
///             HandshakeDecision::Reject { reason: DisconnectReason::HandshakeRejected, payload: Vec::new() }
///         }
///     }
///     fn on_accept(&mut self, _peer: SocketAddr, _reply: &[u8]) -> Result<(), DisconnectReason> {
///         Ok(())
///     }
/// }
/// ```
pub trait Handshake: Send + fmt::Debug {
    /// Initiator: the payload of the connect request to `peer` (at most 1,024 bytes).
    fn initiate(&mut self, peer: SocketAddr) -> Vec<u8>;

    /// Acceptor: decide on a request whose address has been proven by the cookie. Called again
    /// on each retry while the answer is [`HandshakeDecision::Pending`].
    fn on_request(
        &mut self,
        id: ConnectionId,
        peer: SocketAddr,
        payload: &[u8],
    ) -> HandshakeDecision;

    /// Initiator: check the acceptor's reply; an error fails the connection with that reason.
    fn on_accept(&mut self, peer: SocketAddr, reply: &[u8]) -> Result<(), DisconnectReason>;

    /// Initiator: the acceptor refused with `reason` and `payload` (the payload of its
    /// [`HandshakeDecision::Reject`]). Informational; the connection fails with `reason`.
    fn on_reject(&mut self, _peer: SocketAddr, _reason: DisconnectReason, _payload: &[u8]) {}

    /// How long the initiator keeps trying; `None` uses the endpoint's handshake timeout.
    fn timeout(&self) -> Option<Duration> {
        None
    }
}

/// The default handshake: both payloads are the application version, a big-endian `u32`.
///
/// ```
/// use carrier_proto::{ConnectionId, DefaultHandshake, DisconnectReason, Handshake, HandshakeDecision};
/// let peer = "127.0.0.1:9".parse().unwrap();
/// let mut v1 = DefaultHandshake::new(1);
/// let mut v2 = DefaultHandshake::new(2);
/// let request = v2.initiate(peer);
/// assert_eq!(
///     v1.on_request(ConnectionId::from_raw(1), peer, &request),
///     HandshakeDecision::Reject { reason: DisconnectReason::VersionMismatch, payload: 1u32.to_be_bytes().to_vec() }
/// );
/// assert_eq!(v2.on_accept(peer, &1u32.to_be_bytes()), Err(DisconnectReason::VersionMismatch));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultHandshake {
    version: u32,
}

impl DefaultHandshake {
    /// A handshake for application version `version`.
    pub fn new(version: u32) -> Self {
        DefaultHandshake { version }
    }

    /// The version this handshake announces and requires.
    pub fn version(&self) -> u32 {
        self.version
    }

    fn matches(&self, payload: &[u8]) -> bool {
        payload == self.version.to_be_bytes()
    }
}

impl Handshake for DefaultHandshake {
    fn initiate(&mut self, _peer: SocketAddr) -> Vec<u8> {
        self.version.to_be_bytes().to_vec()
    }

    fn on_request(
        &mut self,
        _id: ConnectionId,
        _peer: SocketAddr,
        payload: &[u8],
    ) -> HandshakeDecision {
        let mine = self.version.to_be_bytes().to_vec();
        if self.matches(payload) {
            HandshakeDecision::Accept { reply: mine }
        } else {
            HandshakeDecision::Reject {
                reason: DisconnectReason::VersionMismatch,
                payload: mine,
            }
        }
    }

    fn on_accept(&mut self, _peer: SocketAddr, reply: &[u8]) -> Result<(), DisconnectReason> {
        if self.matches(reply) {
            Ok(())
        } else {
            Err(DisconnectReason::VersionMismatch)
        }
    }
}
