//! The transport seam: a [`Driver`] moves datagrams between the carrier and the network.
//!
//! The default is [`UdpDriver`] (IPv4, IPv6 and dual-stack UDP, one datagram per send syscall;
//! on Linux one `recvmmsg` reads what is waiting).
//! The trait is shaped for the drivers that follow (DESIGN.md §5):
//!
//! - **batches**: [`Driver::send`] takes a batch of [`Outgoing`] datagrams, and each entry may
//!   hold several same-size datagrams to one peer back to back (`segment_size`), which a Linux
//!   driver can hand to the kernel as one GSO super-buffer; [`Driver::recv`] fills a
//!   caller-provided batch, and one entry may hold several datagrams of one GRO read;
//! - **deadlines**: a driver may have timers of its own (DTLS retransmissions):
//!   [`Driver::poll_timeout`] is folded into the carrier thread's wait;
//! - **per-peer hooks**: [`Driver::on_peer_connected`] / [`Driver::on_peer_disconnected`] (a DTLS
//!   session per peer);
//! - **payload size**: [`Driver::max_payload`] sizes the protocol's datagrams (DTLS costs bytes
//!   per record);
//! - **direct send** (optional): [`Driver::direct_sender`] may hand out a [`DirectSend`] that
//!   sends from the game thread, so that a `send` in dedicated mode (an answer, see
//!   `CarrierDesc::thread_instant_response`) does not have to wake the carrier thread. The
//!   default is `None` (not supported: `send` wakes the carrier thread, which sends), which is
//!   what a driver with per-peer state touched by its sends (DTLS) or with batching of its own
//!   should keep.
//!
//! # Writing a driver
//!
//! ```
//! use std::net::SocketAddr;
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//! use carrier::driver::{Driver, DriverError, Outgoing, RecvMeta, Wake};
//!
//! /// A driver that drops everything (a real one talks to a platform service).
//! struct Null { addr: SocketAddr, waker: Arc<NullWake> }
//! struct NullWake;
//! impl Wake for NullWake { fn wake(&self) {} }
//!
//! impl Driver for Null {
//!     fn local_addr(&self) -> SocketAddr { self.addr }
//!     fn max_payload(&self) -> usize { 1_200 }
//!     fn send(&mut self, _now: Instant, _batch: &[Outgoing<'_>], _failed: &mut dyn FnMut(SocketAddr, DriverError)) {}
//!     fn recv(&mut self, _now: Instant, _bufs: &mut [Vec<u8>], _metas: &mut [RecvMeta]) -> Result<usize, DriverError> { Ok(0) }
//!     fn wait(&mut self, timeout: Option<Duration>) -> Result<(), DriverError> {
//!         std::thread::sleep(timeout.unwrap_or(Duration::from_millis(10)).min(Duration::from_millis(10)));
//!         Ok(())
//!     }
//!     fn waker(&self) -> Arc<dyn Wake> { self.waker.clone() }
//! }
//! let d = Null { addr: "127.0.0.1:1".parse().unwrap(), waker: Arc::new(NullWake) };
//! assert_eq!(d.max_payload(), 1_200);
//! ```

mod udp;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use udp::{UdpDriver, UdpDriverConfig};

/// The original's driver error codes (`Driver::ErrorCodes`), plus what Carrier adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DriverErrorCode {
    /// The socket could not be created.
    SocketCreate,
    /// The socket could not be made non-blocking.
    SocketMakeNonBlock,
    /// The socket could not be bound to the address and port.
    SocketBind,
    /// A socket option could not be set.
    SocketOption,
    /// A datagram could not be sent.
    Send,
    /// Receiving failed.
    Receive,
    /// A datagram larger than the driver's maximum payload.
    BufferTooLarge,
    /// Waiting for data failed.
    Wait,
    /// A platform-specific failure (the OS error is in the message).
    Platform,
}

impl DriverErrorCode {
    /// The original's numeric code.
    pub fn code(self) -> u32 {
        match self {
            DriverErrorCode::SocketCreate => 1,
            DriverErrorCode::SocketMakeNonBlock => 4,
            DriverErrorCode::SocketBind => 5,
            DriverErrorCode::SocketOption => 6,
            DriverErrorCode::Send => 14,
            DriverErrorCode::Receive => 16,
            DriverErrorCode::Platform => 1000,
            DriverErrorCode::BufferTooLarge => 1001,
            DriverErrorCode::Wait => 1002,
        }
    }
}

/// A driver failure: a code and what the operating system said.
///
/// ```
/// use carrier::driver::{DriverError, DriverErrorCode};
/// let e = DriverError::new(DriverErrorCode::SocketBind, "address in use");
/// assert_eq!(e.to_string(), "driver error SocketBind (5): address in use");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("driver error {code:?} ({}): {message}", code.code())]
pub struct DriverError {
    /// What failed.
    pub code: DriverErrorCode,
    /// Details (the OS error).
    pub message: String,
}

impl DriverError {
    /// An error with a code and a message.
    pub fn new(code: DriverErrorCode, message: impl fmt::Display) -> Self {
        DriverError {
            code,
            message: message.to_string(),
        }
    }
}

/// One entry of a send batch: `payload` holds one datagram, or several datagrams of
/// `segment_size` bytes each to the same peer (the last may be shorter), as a GSO super-buffer.
#[derive(Clone, Copy, Debug)]
pub struct Outgoing<'a> {
    /// Destination.
    pub to: SocketAddr,
    /// The datagram bytes.
    pub payload: &'a [u8],
    /// Size of each datagram in `payload` (equal to `payload.len()` for a single datagram).
    pub segment_size: usize,
}

impl Outgoing<'_> {
    /// The datagrams of this entry, one by one.
    pub fn datagrams(&self) -> impl Iterator<Item = &[u8]> {
        self.payload.chunks(self.segment_size.max(1))
    }
}

/// What one received batch entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvMeta {
    /// The sender.
    pub from: SocketAddr,
    /// Bytes written in the entry's buffer.
    pub len: usize,
    /// Size of each datagram in the buffer (equal to `len` for a single datagram; smaller
    /// after a GRO read of several).
    pub segment_size: usize,
}

impl Default for RecvMeta {
    fn default() -> Self {
        RecvMeta {
            from: SocketAddr::from(([0, 0, 0, 0], 0)),
            len: 0,
            segment_size: 0,
        }
    }
}

/// Wakes a driver blocked in [`Driver::wait`], from any thread.
pub trait Wake: Send + Sync {
    /// Makes the current or next `wait` return promptly.
    fn wake(&self);
}

/// Sends datagrams from any thread, beside the [`Driver`] that handed it out
/// ([`Driver::direct_sender`]).
///
/// The carrier calls it with the same lock held that it holds around [`Driver::send`], so the
/// two never send at the same time and datagrams leave in the order the protocol made them.
pub trait DirectSend: Send + Sync {
    /// Whether a send now may go out directly; `false` while the driver holds datagrams queued
    /// behind a full socket buffer, which must leave first (the carrier then wakes its thread
    /// to send through [`Driver::send`], which should make this `true` again once its queue is
    /// empty).
    fn ready(&self) -> bool;

    /// Sends a batch from the calling thread, like [`Driver::send`]: failures to one
    /// destination are reported through `failed`; a datagram that cannot be sent right now
    /// (full socket buffer) may be dropped (reliable data is resent by the protocol), after
    /// which [`ready`](Self::ready) should say `false` until the driver's own send catches up.
    fn send(
        &self,
        now: Instant,
        batch: &[Outgoing<'_>],
        failed: &mut dyn FnMut(SocketAddr, DriverError),
    );
}

/// A transport for datagrams. All methods but [`Wake::wake`] are called from one thread at a
/// time (the carrier thread, or the game thread in manual mode).
pub trait Driver: Send {
    /// The bound local address.
    fn local_addr(&self) -> SocketAddr;

    /// The largest datagram payload this driver carries.
    fn max_payload(&self) -> usize;

    /// Sends a batch. Failures to one destination are reported through `failed` (the carrier
    /// then drops the connection to that peer with `DriverError`); a datagram that cannot be
    /// sent right now (full socket buffer) is the driver's to queue or drop.
    fn send(
        &mut self,
        now: Instant,
        batch: &[Outgoing<'_>],
        failed: &mut dyn FnMut(SocketAddr, DriverError),
    );

    /// Receives into `bufs` (each a buffer of at least [`Driver::max_payload`] bytes, or more
    /// for GRO) without blocking; returns how many entries it filled (`metas[i]` describes
    /// `bufs[i]`), 0 when nothing is waiting.
    fn recv(
        &mut self,
        now: Instant,
        bufs: &mut [Vec<u8>],
        metas: &mut [RecvMeta],
    ) -> Result<usize, DriverError>;

    /// Blocks until data may be available, `timeout` passes or a [`Wake`] fires.
    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), DriverError>;

    /// A handle that wakes [`Driver::wait`] from another thread.
    fn waker(&self) -> Arc<dyn Wake>;

    /// The driver's own next deadline (e.g. DTLS retransmission), if any.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// The deadline of [`Driver::poll_timeout`] passed.
    fn handle_timeout(&mut self, _now: Instant) {}

    /// Whether this driver uses [`Driver::on_peer_connected`] and
    /// [`Driver::on_peer_disconnected`] (default: `true`). A driver whose hooks do nothing
    /// returns `false`: the carrier then keeps no table of the peers it announced (about 40 B
    /// per connection) and calls neither hook.
    fn uses_peer_hooks(&self) -> bool {
        true
    }

    /// The carrier started a connection with `peer` (incoming or outgoing).
    fn on_peer_connected(&mut self, _peer: SocketAddr) {}

    /// The carrier forgot `peer`.
    fn on_peer_disconnected(&mut self, _peer: SocketAddr) {}

    /// A handle to send from other threads, if this driver supports it (default: `None`).
    ///
    /// In dedicated mode with `thread_instant_response`, no send batching and no simulator, the
    /// carrier uses it to send what `Carrier::send` made ready on the calling thread rather
    /// than waking the carrier thread: a thread hand-off less per message. A driver that
    /// returns one must accept datagrams to a peer from it as from [`Driver::send`]; the
    /// per-peer hooks are still called on the driver's thread, and a datagram to a new peer is
    /// never sent before that peer was announced there.
    fn direct_sender(&self) -> Option<Arc<dyn DirectSend>> {
        None
    }
}
