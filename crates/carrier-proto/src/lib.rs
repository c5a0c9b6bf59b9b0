//! The Carrier protocol as a sans-IO state machine: connections between endpoints over any
//! datagram transport, with ordered reliable and unreliable messages per channel and priority,
//! fragmentation and packing, acknowledgements and retransmission, and a versioned handshake.
//!
//! This crate performs no I/O, starts no thread, never reads a clock and never draws from a
//! global random source: time comes in as `now: Instant`, received datagrams come in as bytes,
//! and datagrams to send, events, delivered messages and the next deadline are pulled out. The
//! same seed and the same inputs give the same outputs, which is what makes the protocol
//! testable in virtual time (see the `testing` feature). The `carrier` crate drives it from its
//! carrier thread over real sockets.
//!
//! # The run loop and its one rule: after any input, drain the outputs
//!
//! Inputs are [`Endpoint::handle`] (a received datagram), [`Endpoint::handle_timeout`] (the
//! deadline passed), [`Endpoint::connect`], [`Endpoint::send`] and [`Endpoint::disconnect`].
//! After any of them, drain [`Endpoint::poll_transmit`] until it returns `None` (sending each
//! datagram), then [`Endpoint::poll_event`] and [`Endpoint::poll_message`], and wait until
//! [`Endpoint::poll_timeout`] or the next datagram, whichever comes first.
//!
//! ```
//! use std::collections::VecDeque;
//! use std::net::SocketAddr;
//! use std::time::{Duration, Instant};
//! use carrier_proto::{ChannelId, Endpoint, EndpointConfig, Event, Priority, Reliability};
//!
//! # #[allow(clippy::disallowed_methods)]
//! let mut now = Instant::now(); // the only clock read: the protocol itself never reads one
//! let server_addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
//! let client_addr: SocketAddr = "127.0.0.1:5001".parse().unwrap();
//! let mut server = Endpoint::new(EndpointConfig::default(), now, 1).unwrap();
//! let mut client = Endpoint::new(EndpointConfig::default(), now, 2).unwrap();
//!
//! let conn = client.connect(now, server_addr).unwrap();
//! let mut buf = vec![0u8; 65_536];
//! let mut wire: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)> = VecDeque::new(); // (from, to, bytes)
//! let mut sent = false;
//! let mut received = None;
//! for _ in 0..1_000 {
//!     // 1. Input: datagrams that arrived (here an in-memory, lossless wire).
//!     while let Some((from, to, bytes)) = wire.pop_front() {
//!         let endpoint = if to == server_addr { &mut server } else { &mut client };
//!         endpoint.handle(now, from, &bytes);
//!     }
//!     // 2. Input: deadlines that passed.
//!     server.handle_timeout(now);
//!     client.handle_timeout(now);
//!     // 3. Drain the outputs of both endpoints.
//!     for (endpoint, local) in [(&mut server, server_addr), (&mut client, client_addr)] {
//!         while let Some(t) = endpoint.poll_transmit(now, &mut buf) {
//!             wire.push_back((local, t.destination, buf[..t.size].to_vec()));
//!         }
//!     }
//!     while let Some(event) = client.poll_event() {
//!         if let Event::ConnectionEstablished { id } = event {
//!             client
//!                 .send(id, ChannelId::new(0), Priority::Normal, Reliability::Reliable, &b"hello"[..])
//!                 .unwrap();
//!             sent = true;
//!         }
//!     }
//!     while server.poll_event().is_some() {}
//!     if let Some((_, message)) = server.poll_message() {
//!         received = Some(message.payload);
//!         break;
//!     }
//!     // 4. Wait for the next deadline or datagram (virtual time here: at most 1 ms).
//!     let next = [server.poll_timeout(), client.poll_timeout()].into_iter().flatten().min();
//!     now = match next {
//!         Some(t) if wire.is_empty() => t.max(now).min(now + Duration::from_millis(1)),
//!         _ => now + Duration::from_micros(100),
//!     };
//! }
//! assert!(sent);
//! assert_eq!(received.as_deref(), Some(&b"hello"[..]));
//! # let _ = conn;
//! ```
//!
//! # Contract
//!
//! The full semantics are in `docs/protocol.md`; in short:
//!
//! 1. **Endpoint and connections.** An [`Endpoint`] routes datagrams by source address and
//!    accepts incoming connections. [`Endpoint::connect`] is asynchronous: the request is retried
//!    with exponential backoff (10 ms doubling to 1,000 ms) until answered or the handshake
//!    timeout (the connection timeout, 5,000 ms) passes → `FailedToConnect(HandshakeTimeout)`.
//!    `max_connections` refuses further peers with `ServerFull`.
//! 2. **Anti-spoofing.** A first request gets a stateless cookie challenge no larger than the
//!    request; state is created only when the cookie comes back. Every datagram carries a magic
//!    and the protocol version.
//! 3. **Handshake.** A [`Handshake`] attaches a payload and decides (Accept, Reject, Pending);
//!    [`DefaultHandshake`] carries a `u32` version and both sides of a mismatch learn
//!    [`DisconnectReason::VersionMismatch`].
//! 4. **Disconnect.** Graceful, with a [`DisconnectReason`] delivered to the peer, resent until
//!    acknowledged or the 500 ms linger expires. Nothing heard for `connection_timeout` →
//!    `Disconnect(BadConnection)`; idle connections send a keep-alive every 100 ms.
//! 5. **Messages and streams.** A stream is one ([`ChannelId`], [`Priority`]) pair. Within a
//!    stream a reliable message is delivered once every earlier reliable message was; an
//!    unreliable one is delivered on arrival if it is in order, otherwise discarded at once. A gap
//!    on one stream never delays another. Higher priorities are sent first, and lower ones keep a
//!    guaranteed share (weights 8 : 4 : 1). Channel count, maximum message size and maximum
//!    datagram size are agreed in the handshake (the smaller of each).
//! 6. **Reliability.** SACK-range acknowledgements carrying the ack delay, RFC 6298-style RTO
//!    (minimum 20 ms), fast loss detection (3 packets or 9/8 RTT), resend of reliable payload only,
//!    64-bit sequence numbers sent as 32 bits.
//! 7. **Fragmentation and packing.** Messages above [`Connection::message_mtu`] are split and
//!    reassembled (unreliable ones whole or not at all); small messages share datagrams with a
//!    2-byte header each in a steady stream.
//! 8. **Traffic control.** Every datagram passes through a [`TrafficControl`], which owns RTT,
//!    loss detection, the send window and the statistics; the default one runs model-based
//!    congestion control with pacing (docs/traffic-control.md).
//! 9. **Bad input** is dropped with a counted [`DropReason`]; never a panic, never an allocation
//!    sized by a length field before it is checked, never a disturbance of an established
//!    connection.
//!
//! # Modules
//!
//! [`wire`] (byte cursors, varints), [`seq`] (sequence number expansion) and [`ack`] (SACK
//! ranges) are the wire building blocks; `packet` and `frame` encode the datagrams; `send` and
//! `recv` are the two halves of a stream; `connection` and `endpoint` are the state machines;
//! [`traffic`] is the traffic-control seam.
//!
//! # Panics and errors
//!
//! Errors are for bad input: every operation that can fail returns a typed error
//! ([`ConfigError`], [`ConnectError`], [`SendError`]); datagrams that cannot be used are counted
//! by [`DropReason`]. Nothing from the network or from the application's arguments panics.
//!
//! # Features
//!
//! `testing`: the in-process harness (`carrier_proto::testing`) that runs endpoints over
//! `carrier-sim` links with a virtual clock.

#![forbid(unsafe_code)]

mod addr_table;
mod arena;
mod config;
mod connection;
mod cookie;
mod endpoint;
mod error;
mod event;
mod frame;
mod handshake;
mod message;
mod packet;
mod recv;
mod send;
mod small;
mod time;

pub mod ack;
pub mod seq;
#[cfg(feature = "testing")]
pub mod testing;
pub mod traffic;
pub mod wire;

pub use config::{
    CROSS_PLATFORM_DATAGRAM_SIZE, DEFAULT_DATAGRAM_SIZE, DisconnectThresholds, EndpointConfig,
    FULL_PACKET_DATAGRAM_SIZE, LimitsPolicy, MAX_DATAGRAM_SIZE, MAX_LAZY_ACK_DELAY,
    MIN_DATAGRAM_SIZE,
};
pub use connection::{Connection, ConnectionState, Side};
pub use endpoint::{DropCounters, Endpoint, TableSizes, Transmit};
pub use error::{ConfigError, ConnectError, SendError};
pub use event::{ConnectionId, DisconnectReason, DropReason, Event};
pub use handshake::{DefaultHandshake, Handshake, HandshakeDecision, MAX_HANDSHAKE_PAYLOAD};
pub use message::{ChannelId, Message, Priority, Reliability, StreamKey};
pub use traffic::{Statistics, TrafficControl, TrafficControlFactory};

/// The largest message that travels in one datagram of `max_datagram_size` bytes unsplit
/// (docs/protocol.md §14).
///
/// ```
/// assert_eq!(carrier_proto::message_mtu(1_372), 1_320);
/// ```
pub fn message_mtu(max_datagram_size: usize) -> usize {
    connection::message_mtu_for(max_datagram_size)
}
