//! The unit the emulator moves: one UDP datagram with its addresses.
//!
//! The emulator never looks inside a payload (except to flip a bit when it corrupts one); the
//! addresses are only used by [`Link::purge_peer`](crate::Link::purge_peer).

use std::net::SocketAddr;

/// One UDP datagram crossing an emulated link.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Datagram {
    /// Source address.
    pub from: SocketAddr,
    /// Destination address.
    pub to: SocketAddr,
    /// Payload bytes (the UDP payload, no headers).
    pub payload: Vec<u8>,
}

impl Datagram {
    /// A datagram from `from` to `to` carrying `payload`.
    pub fn new(from: SocketAddr, to: SocketAddr, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            from,
            to,
            payload: payload.into(),
        }
    }

    /// True if `peer` is its source or its destination.
    pub fn involves(&self, peer: SocketAddr) -> bool {
        self.from == peer || self.to == peer
    }
}

/// Which way a datagram crosses a [`Simulator`](crate::Simulator), seen from the local carrier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the network to the local carrier (received datagrams).
    Inbound,
    /// From the local carrier to the network (sent datagrams).
    Outbound,
}

impl Direction {
    /// Both directions, inbound first.
    pub const ALL: [Direction; 2] = [Direction::Inbound, Direction::Outbound];
}
