//! One connection: its lifecycle (docs/protocol.md §4, §12), the send and receive sides, the
//! acknowledgement state and the traffic control.
//!
//! Connections are owned and driven by an [`Endpoint`](crate::Endpoint); the application reads
//! them through [`Endpoint::connection`](crate::Endpoint::connection). The input half lives in
//! `receive.rs`, the output half in `transmit.rs`.

mod health;
mod lazy_send;
mod receive;
mod transmit;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::time::{self, nanos};

use crate::ack::AckRanges;
use crate::frame::{Frame, MAX_SMALL_MESSAGE_HEADER};
use crate::packet::{CHECKSUM_LEN, COOKIE_LEN, DATA_HEADER_LEN, Limits};
use crate::recv::{RecvBudget, RecvStream};
use crate::send::{ReliableFrame, SendState};
use crate::traffic::{AckOutcome, RttEstimate, Statistics, TrafficControl};
use crate::{
    ConnectionId, DisconnectReason, EndpointConfig, Event, Message, Reliability, SendError,
    StreamKey,
};
use lazy_send::LazySend;

/// Bytes reserved for an ACK frame in a packet that carries messages (docs/protocol.md §14).
pub(crate) const ACK_ROOM: usize = 24;
/// Lazily acknowledged packets after which the ACK is due within `max_ack_delay`
/// (docs/protocol.md §12).
const LAZY_ACK_PACKETS: u32 = 10;
/// Packets with reliable data after which an ACK goes out at once (docs/protocol.md §12).
pub(crate) const PROMPT_ACK_PACKETS: u32 = 2;
/// Shortest time between two releases of buffer capacity (`Connection::release_memory`).
const RELEASE_INTERVAL: Duration = Duration::from_millis(250);
/// Largest fragment header: flags, channel, s, r, index, count, length (docs/protocol.md §9).
/// Most frame vectors of acknowledged or lost packets kept for reuse: enough for every packet
/// in flight in practice, so a steady flow allocates no vector per packet; the pool is given
/// back once the connection has been idle for a keep-alive interval.
const FRAME_POOL_MAX: usize = 1024;
const MAX_FRAGMENT_HEADER: usize = 1 + 1 + 8 + 4 + 4 + 4;

/// The largest message that fits one packet unsplit, for a datagram size
/// (docs/protocol.md §14).
pub(crate) fn message_mtu_for(max_datagram_size: usize) -> usize {
    let mtu = max_datagram_size
        .saturating_sub(DATA_HEADER_LEN + CHECKSUM_LEN + ACK_ROOM + MAX_SMALL_MESSAGE_HEADER);
    if mtu >= 16_384 { mtu - 2 } else { mtu }
}

/// Fragment payload size for a datagram size (docs/protocol.md §9).
fn fragment_size_for(max_datagram_size: usize) -> usize {
    max_datagram_size
        .saturating_sub(DATA_HEADER_LEN + CHECKSUM_LEN + ACK_ROOM + MAX_FRAGMENT_HEADER)
        .max(1)
}

/// The peer's receive window and the fragment size agreed in `limits` (see
/// `Connection::send_limits`).
fn send_limits_of(limits: &Limits) -> (usize, usize) {
    (
        usize::try_from(limits.receive_window).unwrap_or(usize::MAX),
        fragment_size_for(usize::from(limits.max_datagram_size)),
    )
}

/// The state of a connection as the application sees it (the original's four states).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// The handshake is in progress.
    Connecting,
    /// Messages flow.
    Connected,
    /// The connection is closing (its disconnect is being delivered); no messages flow.
    Disconnecting,
    /// The connection is gone.
    Disconnected,
}

/// Which side opened the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// This endpoint called `connect`.
    Initiator,
    /// The peer connected to this endpoint.
    Acceptor,
}

#[derive(Debug)]
pub(crate) enum Phase {
    /// Initiator waiting for `Accept` (docs/protocol.md §4). Boxed: the largest state, and
    /// a short one.
    Connecting(Box<Connecting>),
    /// Acceptor whose handshake answered Pending.
    Accepting {
        deadline: Instant,
    },
    Connected,
    /// We sent DISCONNECT; resending it until acknowledged or `until`. Boxed, as `Refused`: a
    /// short state, and inline it would make every connection 16 B larger.
    Closing(Box<Closing>),
    /// The peer closed: acknowledging its DISCONNECTs until `until`.
    Draining {
        until: Instant,
    },
    /// Acceptor refused: answering retries with the same Reject until `until`.
    Refused(Box<Refused>),
    Closed,
}

/// The state of a connection that sent DISCONNECT ([`Phase::Closing`]).
#[derive(Debug)]
pub(crate) struct Closing {
    pub(crate) reason: DisconnectReason,
    pub(crate) until: Instant,
    pub(crate) next_send: Instant,
}

/// The state of a refused acceptor ([`Phase::Refused`]).
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) reason: DisconnectReason,
    pub(crate) payload: Box<[u8]>,
    pub(crate) until: Instant,
    pub(crate) send_now: bool,
}

/// The state of an initiator waiting for `Accept` ([`Phase::Connecting`]).
#[derive(Debug)]
pub(crate) struct Connecting {
    pub(crate) cookie: [u8; COOKIE_LEN],
    pub(crate) next_retry: Instant,
    pub(crate) retries: u32,
    pub(crate) deadline: Instant,
    pub(crate) payload: Vec<u8>,
}

/// What one sent packet carried that matters after it is acknowledged or lost.
#[derive(Debug, Default)]
struct SentRecord {
    frames: Vec<ReliableFrame>,
    /// Largest packet number acknowledged by an ACK frame in it.
    ack_largest: Option<u64>,
    disconnect: bool,
    done: bool,
}

/// One connection of an [`Endpoint`](crate::Endpoint).
#[derive(Debug)]
pub struct Connection {
    id: ConnectionId,
    side: Side,
    remote: SocketAddr,
    local_wire_id: u32,
    remote_wire_id: u32,
    pub(crate) phase: Phase,
    config: Arc<EndpointConfig>,
    limits: Limits,
    timeouts_enabled: bool,
    tc: Box<dyn TrafficControl>,
    /// The send side, created on the first message queued.
    send: LazySend,
    recv: Vec<Option<Box<RecvStream>>>,
    budget: RecvBudget,
    // Acknowledgements we owe (docs/protocol.md §7.1, §12).
    ack_ranges: AckRanges,
    /// Times in nanoseconds since `epoch` (`crate::time`).
    largest_received_at: Option<u64>,
    ack_pending: bool,
    unacked_eliciting: u32,
    /// Whether a packet asking for a prompt ACK arrived since [`take_received_prompt`]
    /// (Self::take_received_prompt) was last called.
    received_prompt: bool,
    /// Lazily acknowledged packets received since our last ACK (docs/protocol.md §12).
    unacked_lazy: u32,
    ack_deadline: Option<u64>,
    // Packets we sent.
    next_pn: u64,
    ledger_base: u64,
    ledger: VecDeque<SentRecord>,
    /// Boxed: an idle connection has none (`release_memory`), and one pointer is what it
    /// costs inline then (a `Vec` is three words).
    #[allow(clippy::box_collection)]
    frame_pool: Option<Box<Vec<Vec<ReliableFrame>>>>,
    last_received: u64,
    /// When this side last sent an ack-eliciting packet.
    last_sent: u64,
    /// When this side last sent any packet (an ACK alone included).
    last_sent_any: u64,
    /// The endpoint's epoch (its creation): the times above are nanoseconds since it
    /// (`crate::time`), as are the keys of the endpoint's timers.
    epoch: Instant,
    /// The latest `now` this connection was given (sends are stamped with it).
    clock: Instant,
    /// `clock` in nanoseconds since `epoch`.
    clock_nanos: u64,
    /// When pacing lets held-back data leave (set by the last `poll_transmit`).
    pacing_wait: Option<Instant>,
    /// Acceptor: Accept to (re)send, with the handshake reply.
    accept_reply: Option<Box<[u8]>>,
    send_accept: bool,
    disconnect_due: bool,
    /// Health bookkeeping, only with disconnect thresholds or a packet-rate limit.
    health: Option<Box<health::Health>>,
    /// Set when the connection timeout fired (the endpoint then evaluates the others).
    timed_out: bool,
    /// The endpoint's scratch buffers while it calls this connection ([`Scratch`]); `None`
    /// between calls, unless something was queued outside a call (then its own, see [`lent`]).
    lent: Option<Box<Scratch>>,
    /// The endpoint's bookkeeping: the key of this connection's entry in its timer set.
    pub(crate) scheduled: Option<u64>,
    /// The endpoint's bookkeeping: whether this connection waits in its round-robin queue.
    pub(crate) in_ready: bool,
    /// When buffer capacity may next be released (`release_memory`).
    next_release: Instant,
}

/// Buffers a connection needs only while the endpoint calls it: the receive path's scratch
/// vectors, the traffic control's outcome lists, and the queues of events and messages the
/// endpoint drains right after each call. The endpoint owns one set and lends it to the
/// connection it calls ([`Connection::borrow_scratch`]), so their capacity is paid once per endpoint, not
/// once per connection (an idle connection holds none of it).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    frames: Vec<Frame>,
    ranges: Vec<RangeInclusive<u64>>,
    seqs: Vec<(u64, u64)>,
    outcome: AckOutcome,
    events: VecDeque<Event>,
    delivered: VecDeque<(ConnectionId, Message)>,
}

/// The scratch buffers a connection works with: the endpoint's while it is lent, else a set of
/// its own, created on first use.
fn lent(l: &mut Option<Box<Scratch>>) -> &mut Scratch {
    l.get_or_insert_with(Box::default)
}

pub(crate) struct NewConnection {
    pub id: ConnectionId,
    pub side: Side,
    pub remote: SocketAddr,
    pub local_wire_id: u32,
    pub remote_wire_id: u32,
    pub now: Instant,
    /// The endpoint's epoch ([`Connection::epoch`]).
    pub epoch: Instant,
    pub config: Arc<EndpointConfig>,
    pub limits: Limits,
    pub phase: Phase,
}

impl Connection {
    pub(crate) fn new(n: NewConnection) -> Self {
        let cfg = &n.config;
        let tc = cfg
            .traffic_control
            .new_connection(n.now, usize::from(n.limits.max_datagram_size));
        let initial = cfg.initial_sequence;
        let created = time::since(n.epoch, n.now);
        let mut conn = Connection {
            id: n.id,
            side: n.side,
            remote: n.remote,
            local_wire_id: n.local_wire_id,
            remote_wire_id: n.remote_wire_id,
            phase: n.phase,
            limits: n.limits,
            timeouts_enabled: cfg.timeouts_enabled,
            tc,
            send: LazySend::default(),
            recv: Vec::new(),
            budget: RecvBudget {
                reliable_used: 0,
                reliable_limit: cfg.receive_window,
                unreliable_used: 0,
                unreliable_limit: cfg.unreliable_reassembly_budget,
                max_message_size: cfg.max_message_size,
            },
            ack_ranges: AckRanges::new(cfg.max_ack_ranges),
            largest_received_at: None,
            ack_pending: false,
            unacked_eliciting: 0,
            received_prompt: false,
            unacked_lazy: 0,
            ack_deadline: None,
            next_pn: initial,
            ledger_base: initial,
            ledger: VecDeque::new(),
            frame_pool: None,
            last_received: created,
            last_sent: created,
            last_sent_any: created,
            epoch: n.epoch,
            clock: n.now,
            clock_nanos: created,
            pacing_wait: None,
            accept_reply: None,
            send_accept: false,
            disconnect_due: false,
            health: None,
            timed_out: false,
            lent: None,
            scheduled: None,
            in_ready: false,
            next_release: n.now,
            config: n.config,
        };
        conn.apply_limits(n.limits);
        conn
    }

    /// Uses agreed limits: datagram size, message size, peer window (docs/protocol.md §4.6).
    pub(crate) fn apply_limits(&mut self, limits: Limits) {
        self.limits = limits;
        self.budget.max_message_size = limits.max_message_size as usize;
        let (peer_window, fragment_size) = self.send_limits();
        self.send.configure(peer_window, fragment_size);
    }

    /// The send side's peer window and fragment size under the agreed limits.
    fn send_limits(&self) -> (usize, usize) {
        send_limits_of(&self.limits)
    }

    /// Borrows the endpoint's scratch buffers before a call. A connection that already holds
    /// a set (events queued outside a call) keeps its own.
    pub(crate) fn borrow_scratch(&mut self, s: &mut Option<Box<Scratch>>) {
        if self.lent.is_none() {
            self.lent = s.take();
        }
    }

    /// Gives the scratch buffers back after a call, once the events and messages have been
    /// drained; a set still holding any stays (nothing pending ever moves). A connection's own
    /// set is dropped if the endpoint has one.
    pub(crate) fn return_scratch(&mut self, s: &mut Option<Box<Scratch>>) {
        if self
            .lent
            .as_ref()
            .is_some_and(|l| l.events.is_empty() && l.delivered.is_empty())
        {
            let set = self.lent.take();
            if s.is_none() {
                *s = set;
            }
        }
    }

    /// The handle of this connection.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// Which side opened it.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The peer's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote
    }

    /// The state the application sees.
    pub fn state(&self) -> ConnectionState {
        match self.phase {
            Phase::Connecting(_) | Phase::Accepting { .. } => ConnectionState::Connecting,
            Phase::Connected => ConnectionState::Connected,
            Phase::Closing(_) | Phase::Draining { .. } | Phase::Refused(_) => {
                ConnectionState::Disconnecting
            }
            Phase::Closed => ConnectionState::Disconnected,
        }
    }

    /// Whether messages can be sent.
    pub fn is_connected(&self) -> bool {
        matches!(self.phase, Phase::Connected)
    }

    /// Agreed channel count (this side's own before the handshake completes).
    pub fn channel_count(&self) -> u8 {
        self.limits.channel_count
    }

    /// Agreed maximum message size, bytes.
    pub fn max_message_size(&self) -> usize {
        self.limits.max_message_size as usize
    }

    /// Agreed maximum datagram size, bytes.
    pub fn max_datagram_size(&self) -> usize {
        usize::from(self.limits.max_datagram_size)
    }

    /// The largest message that travels in one datagram unsplit (docs/protocol.md §14).
    pub fn message_mtu(&self) -> usize {
        message_mtu_for(usize::from(self.limits.max_datagram_size))
    }

    /// RTT estimate.
    pub fn rtt(&self) -> RttEstimate {
        self.tc.rtt()
    }

    /// Statistics of the traffic control.
    pub fn statistics(&self, now: Instant) -> Statistics {
        let mut stats = self.tc.statistics(now);
        stats.flow.queued_messages = self.send.queued_messages();
        stats.flow.expired_unreliable = self.send.expired();
        stats
    }

    /// Messages queued and not yet sent once.
    pub fn queued_messages(&self) -> usize {
        self.send.queued_messages()
    }

    /// Unreliable messages dropped before sending because they could not leave within
    /// `unreliable_ttl` (docs/protocol.md §16).
    pub fn expired_unreliable(&self) -> u64 {
        self.send.expired()
    }

    /// Payload bytes queued and not yet sent once.
    pub fn queued_bytes(&self) -> usize {
        self.send.queued_bytes()
    }

    /// Bytes of sent datagrams neither acknowledged nor declared lost yet (traffic control's
    /// count): 0 when the path is idle.
    pub fn bytes_in_flight(&self) -> usize {
        self.tc.bytes_in_flight()
    }

    /// Whether a packet that asks for a prompt acknowledgement (reliable data or
    /// `IMMEDIATE_ACK`, docs/protocol.md §12) arrived since the last call: its sender is
    /// waiting for the ACK (its congestion window counts it).
    pub(crate) fn take_received_prompt(&mut self) -> bool {
        std::mem::take(&mut self.received_prompt)
    }

    /// Whether this side owes the peer an acknowledgement (it received ack-eliciting packets
    /// not acknowledged yet): the next packet sent carries it.
    pub fn owes_ack(&self) -> bool {
        self.ack_pending && !self.ack_ranges.is_empty()
    }

    /// Bytes of out-of-order or partial messages held by the receive side.
    pub fn buffered_receive_bytes(&self) -> usize {
        self.budget.reliable_used + self.budget.unreliable_used
    }

    pub(crate) fn remote_wire_id(&self) -> u32 {
        self.remote_wire_id
    }

    pub(crate) fn set_timeouts_enabled(&mut self, on: bool, now: Instant) {
        if on && !self.timeouts_enabled {
            // Do not punish the time spent with detection off.
            self.last_received = self.nanos_at(now);
        }
        self.timeouts_enabled = on;
    }

    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.lent.as_mut()?.events.pop_front()
    }

    /// Takes `queue` (the endpoint's delivered messages) as its own queue of delivered
    /// messages if that is empty, leaving the empty one in its place: messages are then
    /// delivered after those waiting, and [`drain_messages`](Self::drain_messages) hands them
    /// all back at once.
    pub(crate) fn lend_delivered(&mut self, queue: &mut VecDeque<(ConnectionId, Message)>) {
        if let Some(l) = self.lent.as_mut()
            && l.delivered.is_empty()
        {
            std::mem::swap(&mut l.delivered, queue);
        }
    }

    /// Hands the queue of delivered messages, in order, to `f` to be emptied (or swapped for
    /// an empty one).
    pub(crate) fn drain_messages(
        &mut self,
        f: impl FnOnce(&mut VecDeque<(ConnectionId, Message)>),
    ) {
        if let Some(l) = self.lent.as_mut()
            && !l.delivered.is_empty()
        {
            f(&mut l.delivered);
        }
    }

    /// Whether it only lingers (acknowledging the peer's close, or answering with its refusal).
    pub(crate) fn is_quiescent(&self) -> bool {
        matches!(
            self.phase,
            Phase::Draining { .. } | Phase::Refused(_) | Phase::Closed
        )
    }

    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Queues a message (docs/protocol.md §8). Checked against the agreed limits.
    pub(crate) fn send(
        &mut self,
        key: StreamKey,
        reliability: Reliability,
        payload: Bytes,
    ) -> Result<(), SendError> {
        self.check_send(key, payload.len())?;
        self.enqueue_checked(key, reliability, payload);
        Ok(())
    }

    /// Whether queueing a message can move the connection's deadline
    /// ([`poll_deadline`](Self::poll_deadline)): only the pacing wait depends on the
    /// send queue, and only while it is empty (it counts once something waits).
    pub(crate) fn send_moves_deadline(&self) -> bool {
        self.pacing_wait.is_some() && !self.send.has_pending()
    }

    /// [`send`](Self::send) of a message that [`check_send`](Self::check_send) accepted.
    #[inline]
    pub(crate) fn enqueue_checked(
        &mut self,
        key: StreamKey,
        reliability: Reliability,
        payload: Bytes,
    ) {
        let now = self.clock;
        let mtu = self.message_mtu();
        // The send side's parameters are read only when it is created (the first message):
        // the closure borrows the fields, not `self`, which `self.send` does.
        let (limits, config) = (&self.limits, &self.config);
        self.send
            .enqueue(key, reliability.is_reliable(), payload, mtu, now, || {
                let (peer_window, fragment_size) = send_limits_of(limits);
                let mut s = SendState::new(config.initial_sequence, now);
                s.configure(peer_window, fragment_size);
                s.set_unreliable_ttl(config.unreliable_ttl);
                s
            });
    }

    /// Whether a message of `len` bytes on stream `key` would be queued by
    /// [`send`](Self::send), and if not why.
    #[inline]
    pub(crate) fn check_send(&self, key: StreamKey, len: usize) -> Result<(), SendError> {
        if !self.is_connected() {
            return Err(SendError::NotConnected(self.id));
        }
        if key.channel.get() >= self.limits.channel_count {
            return Err(SendError::InvalidChannel {
                channel: key.channel,
                count: self.limits.channel_count,
            });
        }
        let max = self.max_message_size();
        if len > max {
            return Err(SendError::TooLarge { size: len, max });
        }
        let limit = self.config.max_queued_bytes;
        let queued = self.send.queued_bytes();
        if queued.saturating_add(len) > limit {
            return Err(SendError::QueueFull { queued, limit });
        }
        Ok(())
    }

    /// Starts closing with `reason` (docs/protocol.md §12). Reports the event at once.
    pub(crate) fn close(&mut self, now: Instant, reason: DisconnectReason) {
        match self.phase {
            Phase::Connected => {
                lent(&mut self.lent).events.push_back(Event::Disconnect {
                    id: self.id,
                    reason,
                });
                self.begin_closing(now, reason);
            }
            // A pending incoming connection: tell the initiator instead of letting it retry.
            Phase::Accepting { .. } => self.refuse(now, reason, Vec::new()),
            Phase::Connecting(_) => {
                lent(&mut self.lent)
                    .events
                    .push_back(Event::FailedToConnect {
                        id: self.id,
                        reason,
                    });
                if self.remote_wire_id != 0 {
                    self.begin_closing(now, reason);
                } else {
                    self.phase = Phase::Closed;
                }
            }
            Phase::Closing(_) | Phase::Draining { .. } | Phase::Refused(_) => {}
            Phase::Closed => {}
        }
    }

    fn begin_closing(&mut self, now: Instant, reason: DisconnectReason) {
        self.send.clear();
        self.phase = Phase::Closing(Box::new(Closing {
            reason,
            until: now + self.config.linger,
            next_send: now,
        }));
        self.disconnect_due = true;
    }

    fn fail(&mut self, reason: DisconnectReason) {
        lent(&mut self.lent)
            .events
            .push_back(Event::FailedToConnect {
                id: self.id,
                reason,
            });
        self.phase = Phase::Closed;
    }

    /// The connection's next deadline, given the keep-alive deadline if it is known already
    /// (`poll_transmit` computed it and nothing changed since), else `None`: its nanoseconds
    /// since the epoch (its timer key: the endpoint's epoch is the connection's) and the instant
    /// of that.
    pub(crate) fn poll_deadline(&self, keep_alive: Option<Option<u64>>) -> Option<(u64, Instant)> {
        debug_assert!(
            keep_alive.is_none_or(|k| k == self.keep_alive_deadline()),
            "stale keep-alive deadline"
        );
        // Deadlines kept as instants, and the connection's own ones in nanoseconds.
        let mut t = Deadline::default();
        let mut own: Option<u64> = None;
        let mut add = |d: Option<u64>| {
            if let Some(d) = d {
                own = Some(own.map_or(d, |o| o.min(d)));
            }
        };
        match &self.phase {
            Phase::Connecting(c) => {
                t.add(Some(c.next_retry));
                if self.timeouts_enabled {
                    t.add(Some(c.deadline));
                }
            }
            Phase::Accepting { deadline } => {
                if self.timeouts_enabled {
                    t.add(Some(*deadline));
                }
            }
            Phase::Connected => {
                add(keep_alive.unwrap_or_else(|| self.keep_alive_deadline()));
                add(self.ack_deadline);
                if self.timeouts_enabled {
                    add(Some(self.connection_timeout_deadline()));
                }
                t.add(self.tc.poll_timeout());
                t.add(self.health_deadline());
                if self.send.has_pending() {
                    t.add(self.pacing_wait);
                }
            }
            Phase::Closing(c) => {
                t.add(Some(c.until));
                t.add(Some(c.next_send));
                add(self.ack_deadline);
            }
            Phase::Draining { until } => {
                t.add(Some(*until));
                add(self.ack_deadline);
            }
            Phase::Refused(r) => {
                t.add(Some(r.until));
                add(self.ack_deadline);
            }
            Phase::Closed => {}
        }
        match (own, t.0) {
            (None, None) => None,
            (Some(o), None) => Some((o, self.instant_at(o))),
            (None, Some(f)) => Some(self.deadline_of(f)),
            (Some(o), Some(f)) => {
                let at = self.instant_at(o);
                Some(if at <= f {
                    (o, at)
                } else {
                    self.deadline_of(f)
                })
            }
        }
    }

    /// Deadline `t` in nanoseconds since the epoch, with the instant of that: `t` itself unless
    /// the conversion clamped it (before the epoch, or saturated).
    fn deadline_of(&self, t: Instant) -> (u64, Instant) {
        let k = self.nanos_at(t);
        if k == 0 || k == u64::MAX {
            (k, self.instant_at(k))
        } else {
            (k, t)
        }
    }

    /// The connection learns the time: its clock moves forward (never back), and messages
    /// queued since it last learned the time get their queueing time (`SendState::stamp`).
    fn advance_clock(&mut self, now: Instant) {
        if now > self.clock {
            self.clock = now;
            self.clock_nanos = time::since(self.epoch, now);
        }
        self.send.stamp(self.clock);
    }

    /// `t` in nanoseconds since the creation (`crate::time`); the clock's own instant costs a
    /// comparison.
    pub(crate) fn nanos_at(&self, t: Instant) -> u64 {
        if t == self.clock {
            self.clock_nanos
        } else {
            time::since(self.epoch, t)
        }
    }

    /// The instant `n` nanoseconds after the creation.
    fn instant_at(&self, n: u64) -> Instant {
        time::instant(self.epoch, n)
    }

    /// When the connection times out without hearing from the peer, nanoseconds (saturating).
    fn connection_timeout_deadline(&self) -> u64 {
        self.last_received
            .saturating_add(nanos(self.config.connection_timeout))
    }

    /// Fires the deadlines that have passed.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.advance_clock(now);
        match &mut self.phase {
            Phase::Connecting(c) if self.timeouts_enabled && now >= c.deadline => {
                self.fail(DisconnectReason::HandshakeTimeout);
            }
            Phase::Connecting(_) => {}
            Phase::Accepting { deadline } => {
                if self.timeouts_enabled && now >= *deadline {
                    self.fail(DisconnectReason::HandshakeTimeout);
                }
            }
            Phase::Connected => {
                let now_nanos = self.nanos_at(now);
                if self.timeouts_enabled && now_nanos >= self.connection_timeout_deadline() {
                    tracing::debug!(id = %self.id, "connection timed out");
                    self.mark_timed_out();
                    self.close(now, DisconnectReason::BadConnection);
                    return;
                }
                self.check_health(now);
                if !matches!(self.phase, Phase::Connected) {
                    return;
                }
                if now_nanos
                    >= self
                        .last_sent
                        .saturating_add(nanos(self.config.keep_alive_interval))
                {
                    // Idle: nothing ack-eliciting sent for a keep-alive interval. The vectors
                    // pooled for packets in flight are given back (idle memory stays small).
                    self.frame_pool = None;
                }
                if self.tc.poll_timeout().is_some_and(|t| t <= now) {
                    let outcome = &mut lent(&mut self.lent).outcome;
                    outcome.clear();
                    self.tc.on_timeout(now, outcome);
                    self.process_outcome();
                    self.poll_rate_change();
                }
            }
            Phase::Closing(c) => {
                if now >= c.until {
                    self.phase = Phase::Closed;
                } else if now >= c.next_send {
                    self.disconnect_due = true;
                }
            }
            Phase::Draining { until } => {
                if now >= *until {
                    self.phase = Phase::Closed;
                }
            }
            Phase::Refused(r) => {
                if now >= r.until {
                    self.phase = Phase::Closed;
                }
            }
            Phase::Closed => {}
        }
    }

    /// Applies the acked and lost lists of the traffic control to the sent records.
    fn process_outcome(&mut self) {
        let mut outcome = std::mem::take(&mut lent(&mut self.lent).outcome);
        for &pn in &outcome.acked {
            if let Some(rec) = self.take_record(pn) {
                self.send.on_acked_frames(&rec.frames);
                if let Some(largest) = rec.ack_largest {
                    // The peer has seen our ACK up to `largest`: stop repeating it.
                    self.ack_ranges.forget_below(largest.saturating_add(1));
                }
                if rec.disconnect
                    && let Phase::Closing(_) = self.phase
                {
                    self.phase = Phase::Closed;
                }
                self.recycle(rec);
            }
        }
        for &pn in &outcome.lost {
            if let Some(mut rec) = self.take_record(pn) {
                for f in rec.frames.drain(..) {
                    self.send.on_lost(f);
                }
                if rec.disconnect {
                    self.disconnect_due = true;
                }
                self.recycle(rec);
            }
        }
        outcome.clear();
        lent(&mut self.lent).outcome = outcome;
        while self.ledger.front().is_some_and(|r| r.done) {
            self.ledger.pop_front();
            self.ledger_base += 1;
        }
        // At most the latest datagram in flight: the connection is quiet (an idle one always
        // has its latest keep-alive or ACK in flight).
        if self.ledger.len() <= 1 {
            self.release_memory();
        }
    }

    /// Reports a significant change of the allowed send rate (docs/traffic-control.md).
    fn poll_rate_change(&mut self) {
        if let Some(bytes_per_second) = self.tc.poll_rate_change()
            && matches!(self.phase, Phase::Connected)
        {
            lent(&mut self.lent).events.push_back(Event::RateChange {
                id: self.id,
                bytes_per_second,
            });
        }
    }

    fn take_record(&mut self, pn: u64) -> Option<SentRecord> {
        let idx = usize::try_from(pn.checked_sub(self.ledger_base)?).ok()?;
        let rec = self.ledger.get_mut(idx)?;
        if rec.done {
            return None;
        }
        rec.done = true;
        Some(SentRecord {
            frames: std::mem::take(&mut rec.frames),
            ack_largest: rec.ack_largest,
            disconnect: rec.disconnect,
            done: true,
        })
    }

    /// At most one datagram is in flight: gives back what the buffers grew to during traffic,
    /// keeping room for that one, so an idle connection stays small and allocates nothing per
    /// keep-alive. At most once per [`RELEASE_INTERVAL`], so traffic that often has one
    /// datagram in flight (one message at a time) does not reallocate each time.
    fn release_memory(&mut self) {
        if self.clock < self.next_release {
            return;
        }
        self.next_release = self.clock + RELEASE_INTERVAL;
        self.ledger.shrink_to(1);
        self.frame_pool = None;
        self.ack_ranges.shrink_to_fit();
        self.tc.release_memory();
    }

    /// A keep-alive is going out (nothing ack-eliciting was sent for a keep-alive interval):
    /// sent-packet ledgers that a burst or late ACKs grew to more than twice what they hold
    /// (plus this datagram) shrink to that. `release_memory` alone waits for at
    /// most one datagram in flight, which a connection whose peer acknowledges late may not
    /// see for a long time; the factor two keeps a steady flow from shrinking and regrowing.
    /// At most once per [`RELEASE_INTERVAL`].
    fn trim_ledgers(&mut self) {
        let keep = self.ledger.len() + 1;
        if self.clock < self.next_release || self.ledger.capacity() <= 2 * keep {
            return;
        }
        self.next_release = self.clock + RELEASE_INTERVAL;
        self.ledger.shrink_to(keep);
        self.tc.release_memory();
    }

    fn recycle(&mut self, mut rec: SentRecord) {
        // Records without reliable frames (ACKs, keep-alives) have nothing worth pooling, and
        // must not create the pool either: a receiver that only sends ACKs has its pool released
        // as idle on every timer check, and would allocate it again for each acknowledged ACK.
        if rec.frames.capacity() == 0 {
            return;
        }
        rec.frames.clear();
        let pool = self.frame_pool.get_or_insert_with(Box::default);
        if pool.len() < FRAME_POOL_MAX {
            pool.push(rec.frames);
        }
    }

    /// Reports a dropped datagram from this connection's address, at most once a second.
    pub(crate) fn report_drop(&mut self, now: Instant, reason: crate::DropReason) {
        let due = self
            .health
            .as_ref()
            .and_then(|h| h.last_security_event())
            .is_none_or(|t| now >= t + Duration::from_secs(1));
        if due && !matches!(self.phase, Phase::Closed) {
            health::health(&mut self.health).set_last_security_event(now);
            lent(&mut self.lent).events.push_back(Event::SecurityError {
                id: self.id,
                reason,
            });
        }
    }
}

/// The earliest of several optional deadlines.
#[derive(Default)]
struct Deadline(Option<Instant>);

impl Deadline {
    fn add(&mut self, t: Option<Instant>) {
        if let Some(t) = t {
            self.0 = Some(self.0.map_or(t, |d| d.min(t)));
        }
    }
}
