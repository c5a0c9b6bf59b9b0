//! The endpoint: routes datagrams by source address to connections, answers connect requests
//! statelessly until the peer proves its address, and serves its connections' output fairly
//! (docs/protocol.md §3, §4, §16).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::addr_table::AddrTable;
use crate::arena::PayloadArena;
use crate::config::MIN_DATAGRAM_SIZE;
use crate::connection::{Connecting, Connection, NewConnection, Phase, Scratch, Side};
use crate::cookie::CookieKey;
use crate::handshake::{DefaultHandshake, Handshake, MAX_HANDSHAKE_PAYLOAD};
use crate::packet::{self, COOKIE_LEN, Challenge, ConnectRequest, Limits, Packet, Reject};
use crate::{
    ChannelId, ConfigError, ConnectError, ConnectionId, DisconnectReason, DropReason,
    EndpointConfig, Event, LimitsPolicy, Message, Priority, Reliability, SendError, StreamKey,
};

/// Most stateless replies (challenges, refusals) waiting to be sent; more are dropped.
const MAX_STATELESS_REPLIES: usize = 256;
const STATELESS_REPLY_CAP: usize = 32;
/// Entries the endpoint's output queues keep when they are empty: a burst (many handshakes at
/// once, a flood of connect requests) does not leave its capacity behind for good.
const QUEUE_KEEP: usize = 32;
/// Shortest time between two releases of the output queues' capacity (a steady flow that
/// outgrows [`QUEUE_KEEP`] regrows its queues at most once per interval).
const QUEUE_RELEASE_INTERVAL: Duration = Duration::from_millis(250);

/// A datagram to send, written by [`Endpoint::poll_transmit`] at the start of the caller's
/// buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// Its length: send `buf[..size]`.
    pub size: usize,
}

/// Counters of dropped datagrams, by reason (docs/protocol.md §15).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DropCounters {
    counts: [u64; DropReason::ALL.len()],
}

impl DropCounters {
    /// Datagrams dropped for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts[reason.index()]
    }

    /// All drops.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn add(&mut self, reason: DropReason) {
        self.counts[reason.index()] += 1;
    }
}

/// Sizes of every internal table of an endpoint, to check that unauthenticated traffic creates
/// no state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableSizes {
    /// Connections (any state).
    pub connections: usize,
    /// Address → connection entries.
    pub addresses: usize,
    /// Stateless replies waiting to be sent.
    pub stateless_replies: usize,
    /// Events waiting to be polled.
    pub events: usize,
    /// Delivered messages waiting to be polled.
    pub messages: usize,
}

#[derive(Clone, Copy)]
struct StatelessReply {
    to: SocketAddr,
    len: usize,
    bytes: [u8; STATELESS_REPLY_CAP],
}

/// A Carrier endpoint: any number of connections over one transport address.
///
/// The endpoint never reads a clock or touches a socket. Feed it input, then drain its outputs —
/// see the crate documentation for the complete loop.
pub struct Endpoint {
    config: Arc<EndpointConfig>,
    handshake: Box<dyn Handshake>,
    rng: ChaCha8Rng,
    seed: u64,
    cookie: CookieKey,
    /// Boxed: a `Connection` is large, and a B-tree node holds eleven entries whether used or
    /// not, so inline entries would cost about twice their size (docs/performance.md, memory).
    connections: BTreeMap<ConnectionId, Box<Connection>>,
    /// Connections by remote address (ids only: each connection stores its address).
    by_addr: AddrTable,
    next_id: u64,
    events: VecDeque<Event>,
    messages: VecDeque<(ConnectionId, Message)>,
    /// Chunks that delivered payloads are copied into (crate::arena).
    rx_arena: PayloadArena,
    /// Chunks that [`send_copy`](Self::send_copy) copies payloads into.
    tx_arena: PayloadArena,
    stateless: VecDeque<StatelessReply>,
    drops: DropCounters,
    /// Each connection's next deadline, ordered (docs: `poll_timeout` and `handle_timeout` cost
    /// O(log n) per due connection, not a scan of all connections). The entry of a connection is
    /// also kept in the connection (`Connection::scheduled`). Deadlines are nanoseconds since
    /// `epoch` ([`Timers::key`]): 16 B keys instead of 24 make the set's nodes a third
    /// smaller (about 48 -> 34 B per connection).
    timers: Timers,
    /// Connections that may have something to send, served round robin by `poll_transmit`
    /// (`Connection::in_ready` says whether one is queued).
    ready: VecDeque<ConnectionId>,
    /// Buffers lent to the connection being called (`Endpoint::call`).
    scratch: Option<Box<Scratch>>,
    /// Scratch list of due connections (reused).
    due: Vec<ConnectionId>,
    timeouts_enabled: bool,
    shutting_down: bool,
    /// Whether a packet asking for a prompt ACK arrived since
    /// [`take_prompt_received`](Self::take_prompt_received).
    prompt_received: bool,
    /// When the empty output queues may next give back capacity ([`QUEUE_KEEP`]).
    next_queue_release: Instant,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("seed", &self.seed)
            .field("connections", &self.connections.len())
            .field("drops", &self.drops)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// An endpoint with the default handshake (the application version of `config`). `now` is
    /// its epoch; `seed` feeds every random choice (cookie secret, connection ids), so the same
    /// seed and inputs give the same outputs.
    pub fn new(config: EndpointConfig, now: Instant, seed: u64) -> Result<Self, ConfigError> {
        let handshake = Box::new(DefaultHandshake::new(config.version));
        Self::with_handshake(config, handshake, now, seed)
    }

    /// An endpoint with a custom [`Handshake`].
    pub fn with_handshake(
        config: EndpointConfig,
        handshake: Box<dyn Handshake>,
        now: Instant,
        seed: u64,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        Ok(Endpoint {
            timeouts_enabled: config.timeouts_enabled,
            config: Arc::new(config),
            handshake,
            rng,
            seed,
            cookie: CookieKey::new(secret, now),
            connections: BTreeMap::new(),
            by_addr: AddrTable::default(),
            next_id: 1,
            events: VecDeque::new(),
            messages: VecDeque::new(),
            rx_arena: PayloadArena::default(),
            tx_arena: PayloadArena::default(),
            stateless: VecDeque::new(),
            drops: DropCounters::default(),
            timers: Timers {
                set: BTreeSet::new(),
                epoch: now,
                first: None,
            },
            ready: VecDeque::new(),
            scratch: Some(Box::default()),
            due: Vec::new(),
            shutting_down: false,
            prompt_received: false,
            next_queue_release: now,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// The seed this endpoint was created with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    fn own_limits(&self) -> Limits {
        let c = &self.config;
        Limits {
            channel_count: c.channel_count,
            max_message_size: u32::try_from(c.max_message_size).unwrap_or(u32::MAX),
            max_datagram_size: u16::try_from(c.max_datagram_size).unwrap_or(u16::MAX),
            receive_window: u32::try_from(c.receive_window).unwrap_or(u32::MAX),
        }
    }

    fn wire_id(&mut self) -> u32 {
        loop {
            let id = self.rng.next_u32();
            if id != 0 {
                return id;
            }
        }
    }

    fn insert(&mut self, conn: Connection) -> ConnectionId {
        let id = conn.id();
        let addr = conn.remote_addr();
        self.connections.insert(id, Box::new(conn));
        self.by_addr.insert(addr, id, &self.connections);
        self.mark_ready(id);
        self.reschedule(id);
        id
    }

    fn next_connection_id(&mut self) -> ConnectionId {
        let id = ConnectionId::from_raw(self.next_id);
        self.next_id += 1;
        id
    }

    /// Starts connecting to `addr` (docs/protocol.md §4). The result arrives as
    /// [`Event::ConnectionEstablished`] or [`Event::FailedToConnect`].
    pub fn connect(
        &mut self,
        now: Instant,
        addr: SocketAddr,
    ) -> Result<ConnectionId, ConnectError> {
        if self.shutting_down {
            return Err(ConnectError::ShuttingDown);
        }
        if self.by_addr.contains(&addr, &self.connections) {
            return Err(ConnectError::AlreadyConnected(addr));
        }
        let payload = self.handshake.initiate(addr);
        if payload.len() > MAX_HANDSHAKE_PAYLOAD {
            return Err(ConnectError::HandshakePayloadTooLarge(payload.len()));
        }
        let timeout = self
            .handshake
            .timeout()
            .unwrap_or_else(|| self.config.effective_handshake_timeout());
        let id = self.next_connection_id();
        let local_wire_id = self.wire_id();
        let conn = Connection::new(NewConnection {
            id,
            side: Side::Initiator,
            remote: addr,
            local_wire_id,
            remote_wire_id: 0,
            now,
            epoch: self.timers.epoch,
            config: Arc::clone(&self.config),
            limits: self.own_limits(),
            phase: Phase::Connecting(Box::new(Connecting {
                cookie: [0; COOKIE_LEN],
                next_retry: now,
                retries: 0,
                deadline: now + timeout,
                payload,
            })),
        });
        tracing::debug!(%id, %addr, "connecting");
        Ok(self.insert(conn))
    }

    /// Processes one received datagram from `from`. Afterwards drain the outputs
    /// ([`poll_transmit`](Self::poll_transmit), [`poll_event`](Self::poll_event),
    /// [`poll_message`](Self::poll_message), [`poll_timeout`](Self::poll_timeout)).
    pub fn handle(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        // A data packet applied to its connection: `Some(closed)`, collected in place
        // (this runs per datagram: one lookup of the connection, not two).
        let mut applied = None;
        let result = match packet::parse(datagram) {
            Err(reason) => Err(reason),
            Ok(Packet::ConnectRequest(req)) => self.handle_request(now, from, &req),
            Ok(Packet::Data(header, frames)) => {
                // Frames end where the checksum starts.
                let body = &datagram[..datagram.len() - packet::CHECKSUM_LEN];
                let start = body.len() - frames.len();
                match self.by_addr.get(&from, &self.connections) {
                    Some(id) => {
                        // Like `call`, with the receive arena lent as well: the scratch
                        // buffers must be lent on this path too, or every connection that
                        // receives data grows its own set.
                        let Endpoint {
                            connections,
                            scratch,
                            rx_arena,
                            events,
                            messages,
                            ready,
                            prompt_received,
                            ..
                        } = self;
                        match connections.get_mut(&id) {
                            Some(conn) => {
                                conn.borrow_scratch(scratch);
                                // Messages are delivered straight into the endpoint's queue.
                                conn.lend_delivered(messages);
                                let r = conn.handle_data(now, header, body, start, rx_arena);
                                *prompt_received |= conn.take_received_prompt();
                                drain(conn, events, messages);
                                conn.return_scratch(scratch);
                                if r.is_ok() {
                                    // What `collect` does, on the connection at hand. No
                                    // deadline is computed here (see `collect`).
                                    let closed = conn.is_closed();
                                    if !closed {
                                        queue_ready(id, conn, ready);
                                    }
                                    applied = Some(closed);
                                }
                                r
                            }
                            None => Err(DropReason::UnknownConnection),
                        }
                    }
                    None => Err(DropReason::UnknownConnection),
                }
            }
            Ok(Packet::Challenge(ch)) => {
                self.with_connection(from, |c, _| c.handle_challenge(now, &ch))
            }
            Ok(Packet::Accept(acc)) => {
                self.with_connection(from, |c, hs| c.handle_accept(now, &acc, hs))
            }
            Ok(Packet::Reject(rej)) => {
                self.with_connection(from, |c, hs| c.handle_reject(&rej, hs))
            }
        };
        if let Some(closed) = applied {
            if closed {
                self.remove_closed();
            }
            return;
        }
        if let Err(reason) = result {
            self.record_drop(now, from, reason);
        }
        // A handshake packet may have changed the address mapping.
        if let Some(id) = self.by_addr.get(&from, &self.connections) {
            self.collect(id);
        }
    }

    fn with_connection(
        &mut self,
        from: SocketAddr,
        f: impl FnOnce(&mut Connection, &mut dyn Handshake) -> Result<(), DropReason>,
    ) -> Result<(), DropReason> {
        let id = self
            .by_addr
            .get(&from, &self.connections)
            .ok_or(DropReason::UnknownConnection)?;
        self.call(id, f).ok_or(DropReason::UnknownConnection)?
    }

    /// Calls `f` on connection `id` with the endpoint's scratch buffers lent to it, then moves
    /// the connection's events and messages to the endpoint's queues and takes the buffers back.
    /// `None` if there is no such connection.
    fn call<R>(
        &mut self,
        id: ConnectionId,
        f: impl FnOnce(&mut Connection, &mut dyn Handshake) -> R,
    ) -> Option<R> {
        let conn = self.connections.get_mut(&id)?;
        conn.borrow_scratch(&mut self.scratch);
        let result = f(conn, &mut *self.handshake);
        drain(conn, &mut self.events, &mut self.messages);
        conn.return_scratch(&mut self.scratch);
        Some(result)
    }

    fn record_drop(&mut self, now: Instant, from: SocketAddr, reason: DropReason) {
        self.drops.add(reason);
        tracing::trace!(%from, %reason, "datagram dropped");
        if let Some(id) = self.by_addr.get(&from, &self.connections) {
            self.call(id, |conn, _| {
                if conn.is_connected() {
                    conn.report_drop(now, reason);
                }
            });
        }
    }

    /// A `ConnectRequest` (docs/protocol.md §4.1, §4.2).
    fn handle_request(
        &mut self,
        now: Instant,
        from: SocketAddr,
        req: &ConnectRequest<'_>,
    ) -> Result<(), DropReason> {
        if req.initiator_id == 0 {
            return Err(DropReason::Malformed);
        }
        if let Some(id) = self.by_addr.get(&from, &self.connections) {
            let same = self.connections.get(&id).is_some_and(|c| {
                c.side() == Side::Acceptor && c.remote_wire_id() == req.initiator_id
            });
            if same {
                self.call(id, |conn, hs| {
                    conn.handle_request_retry(now, hs, req.payload)
                });
                return Ok(());
            }
        }
        let valid = self.cookie.verify(
            now,
            from,
            req.initiator_id,
            &req.cookie,
            self.config.cookie_lifetime,
        );
        if !valid {
            // Stateless challenge, never larger than the request (docs/protocol.md §4.2).
            let challenge = Challenge {
                initiator_id: req.initiator_id,
                cookie: self.cookie.issue(now, from, req.initiator_id),
            };
            let mut bytes = [0u8; STATELESS_REPLY_CAP];
            if let Ok(len) = challenge.encode(&mut bytes) {
                self.queue_stateless(from, bytes, len);
            }
            return Err(DropReason::InvalidCookie);
        }
        if let Some(old) = self.by_addr.get(&from, &self.connections) {
            // The peer restarted with a new connection id while we still had its old
            // connection: close the old one, then accept the new one.
            if self
                .connections
                .get(&old)
                .is_some_and(|c| c.side() == Side::Initiator)
            {
                return Err(DropReason::Unexpected);
            }
            self.call(old, |conn, _| {
                conn.close(now, DisconnectReason::AlreadyConnected);
            });
            self.by_addr.remove(&from, old);
            self.collect(old);
        }
        if self.shutting_down {
            self.stateless_reject(from, req.initiator_id, DisconnectReason::ShuttingDown);
            return Ok(());
        }
        let accepted = self
            .connections
            .values()
            .filter(|c| c.side() == Side::Acceptor && !c.is_closed())
            .count();
        if accepted >= self.config.max_connections {
            self.stateless_reject(from, req.initiator_id, DisconnectReason::ServerFull);
            return Ok(());
        }
        let Some(limits) = self.agree(&req.limits) else {
            self.stateless_reject(from, req.initiator_id, DisconnectReason::LimitsRefused);
            return Ok(());
        };
        let id = self.next_connection_id();
        let local_wire_id = self.wire_id();
        let conn = Connection::new(NewConnection {
            id,
            side: Side::Acceptor,
            remote: from,
            local_wire_id,
            remote_wire_id: req.initiator_id,
            now,
            epoch: self.timers.epoch,
            config: Arc::clone(&self.config),
            limits,
            phase: Phase::Accepting {
                deadline: now + self.config.effective_handshake_timeout(),
            },
        });
        self.insert(conn);
        tracing::debug!(%id, %from, "incoming connection");
        self.events
            .push_back(Event::IncomingConnection { id, addr: from });
        self.call(id, |conn, hs| conn.decide(now, hs, req.payload));
        Ok(())
    }

    /// Agreed limits for a peer's advertised ones (docs/protocol.md §4.6), with the peer's
    /// receive window; `None` when they cannot be agreed.
    fn agree(&self, peer: &Limits) -> Option<Limits> {
        let own = self.own_limits();
        if peer.channel_count == 0
            || peer.max_message_size == 0
            || usize::from(peer.max_datagram_size) < MIN_DATAGRAM_SIZE
        {
            return None;
        }
        let differ = peer.channel_count != own.channel_count
            || peer.max_message_size != own.max_message_size
            || peer.max_datagram_size != own.max_datagram_size;
        if differ && self.config.limits_policy == LimitsPolicy::RequireEqual {
            return None;
        }
        Some(Limits {
            channel_count: own.channel_count.min(peer.channel_count),
            max_message_size: own.max_message_size.min(peer.max_message_size),
            max_datagram_size: own.max_datagram_size.min(peer.max_datagram_size),
            receive_window: peer.receive_window,
        })
    }

    fn stateless_reject(&mut self, to: SocketAddr, initiator_id: u32, reason: DisconnectReason) {
        let mut bytes = [0u8; STATELESS_REPLY_CAP];
        let reject = Reject {
            initiator_id,
            reason: reason.code(),
            payload: &[],
        };
        if let Ok(len) = reject.encode(&mut bytes) {
            self.queue_stateless(to, bytes, len);
        }
    }

    fn queue_stateless(&mut self, to: SocketAddr, bytes: [u8; STATELESS_REPLY_CAP], len: usize) {
        if self.stateless.len() < MAX_STATELESS_REPLIES {
            self.stateless.push_back(StatelessReply { to, len, bytes });
        }
    }

    /// Moves a connection's events and messages to the endpoint's queues; removes it once closed.
    fn collect(&mut self, id: ConnectionId) {
        // One map lookup for the drain and the ready queue (this runs per datagram).
        let Endpoint {
            connections,
            events,
            messages,
            ready,
            ..
        } = self;
        let Some(conn) = connections.get_mut(&id) else {
            return;
        };
        drain(conn, events, messages);
        if conn.is_closed() {
            self.remove_closed();
        } else {
            // No deadline computed here: the connection now waits for `poll_transmit`, which
            // reschedules every connection it serves, and the run loop drains it before it
            // reads `poll_timeout` (crate docs). Doing both would compute it twice per datagram.
            queue_ready(id, conn, ready);
        }
    }

    /// Puts a connection in the round-robin queue of `poll_transmit` (something changed: it may
    /// have something to send).
    fn mark_ready(&mut self, id: ConnectionId) {
        if let Some(conn) = self.connections.get_mut(&id) {
            queue_ready(id, conn, &mut self.ready);
        }
    }

    /// Recomputes a connection's deadline in the timer set.
    fn reschedule(&mut self, id: ConnectionId) {
        if let Some(conn) = self.connections.get_mut(&id) {
            schedule(id, conn, &mut self.timers);
        }
    }

    /// Writes the next datagram to send into `buf` (which should hold the maximum datagram
    /// size) and says where it goes; `None` when nothing is due now. Connections are served round
    /// robin, one datagram each per turn, so a busy connection never starves the others.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        if let Some(reply) = self.stateless.pop_front() {
            let dst = buf.get_mut(..reply.len)?;
            dst.copy_from_slice(&reply.bytes[..reply.len]);
            return Some(Transmit {
                destination: reply.to,
                size: reply.len,
            });
        }
        while let Some(id) = self.ready.pop_front() {
            // One map lookup per connection served (this runs per datagram).
            let Some(conn) = self.connections.get_mut(&id) else {
                continue;
            };
            conn.in_ready = false;
            let mut keep_alive = None;
            let sent = conn
                .poll_transmit(now, buf, &mut keep_alive)
                .map(|size| (conn.remote_addr(), size));
            schedule_with(id, conn, &mut self.timers, keep_alive);
            if let Some((destination, size)) = sent {
                // It may have more: back of the queue, so the others get their turn first.
                // Unless it certainly has nothing (the common case: one datagram answers
                // one input), which a second poll would only confirm at a cost.
                if conn.may_transmit_more(now) {
                    queue_ready(id, conn, &mut self.ready);
                }
                return Some(Transmit { destination, size });
            }
        }
        None
    }

    /// The next instant [`handle_timeout`](Self::handle_timeout) must be called at, if any.
    /// Exact once [`poll_transmit`](Self::poll_transmit) has returned `None` since the last
    /// input (the run loop of the crate docs): a connection that received a datagram has its
    /// deadline recomputed when `poll_transmit` serves it, not twice per datagram. Read before
    /// that, it may be that connection's previous deadline (firing it early is harmless).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first.map(|(_, t)| t)
    }

    /// Fires every deadline that has passed: retransmissions, acknowledgements, keep-alives,
    /// connect retries and timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.release_queues(now);
        let mut any_closed = false;
        let mut timed_out = false;
        let mut due = std::mem::take(&mut self.due);
        due.clear();
        self.timers.due(now, &mut due);
        for &id in &due {
            if let Some((out, closed)) = self.call(id, |conn, _| {
                conn.handle_timeout(now);
                (conn.take_timed_out(), conn.is_closed())
            }) {
                timed_out |= out;
                any_closed |= closed;
            }
            self.mark_ready(id);
            self.reschedule(id);
        }
        // One connection timed out: maybe the network failed. Check every other connection
        // once against the scaled timeout and thresholds (docs/protocol.md §12).
        let factor = self.config.evaluation_threshold;
        if timed_out && factor < 1.0 {
            due.clear();
            due.extend(self.connections.keys().copied());
            for &id in &due {
                if let Some(closed) = self.call(id, |conn, _| {
                    conn.evaluate(now, factor);
                    conn.is_closed()
                }) {
                    any_closed |= closed;
                }
                self.mark_ready(id);
                self.reschedule(id);
            }
        }
        self.due = due;
        if any_closed {
            self.remove_closed();
        }
    }

    /// Gives back what the empty output queues grew to beyond [`QUEUE_KEEP`] entries, at most
    /// once per [`QUEUE_RELEASE_INTERVAL`].
    fn release_queues(&mut self, now: Instant) {
        if now < self.next_queue_release {
            return;
        }
        self.next_queue_release = now + QUEUE_RELEASE_INTERVAL;
        if self.events.is_empty() {
            self.events.shrink_to(QUEUE_KEEP);
        }
        if self.messages.is_empty() {
            self.messages.shrink_to(QUEUE_KEEP);
        }
        if self.stateless.is_empty() {
            self.stateless.shrink_to(QUEUE_KEEP);
        }
    }

    fn remove_closed(&mut self) {
        let by_addr = &mut self.by_addr;
        let timers = &mut self.timers;
        self.connections.retain(|id, c| {
            if c.is_closed() {
                by_addr.remove(&c.remote_addr(), *id);
                timers.update(*id, c.scheduled, None);
                tracing::debug!(%id, "connection removed");
                false
            } else {
                true
            }
        });
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next delivered message of any connection and channel, in delivery order.
    pub fn poll_message(&mut self) -> Option<(ConnectionId, Message)> {
        self.messages.pop_front()
    }

    /// Every delivered message waiting, in delivery order: what
    /// [`poll_message`](Self::poll_message) would return until `None`, without a call per
    /// message. Messages the iterator does not reach when it is dropped are dropped with it.
    pub fn drain_messages(
        &mut self,
    ) -> impl ExactSizeIterator<Item = (ConnectionId, Message)> + '_ {
        self.messages.drain(..)
    }

    /// The queue of delivered messages waiting, in delivery order, for a caller that takes
    /// them all at once: it may drain the queue or swap it for an empty one (whose buffer the
    /// endpoint then reuses).
    pub fn messages_mut(&mut self) -> &mut VecDeque<(ConnectionId, Message)> {
        &mut self.messages
    }

    /// Whether, since the last call, a connection received a packet that asks for a prompt
    /// acknowledgement: reliable data or `IMMEDIATE_ACK` (docs/protocol.md §12). Its sender
    /// counts the packet in its congestion window until the ACK comes, so a runtime that
    /// defers its receives (the `carrier` crate's receive coalescing) must not defer them
    /// now: a bulk reliable sender would wait for every deferred ACK.
    ///
    /// ```
    /// # use carrier_proto::{Endpoint, EndpointConfig};
    /// # use std::time::Instant;
    /// # #[allow(clippy::disallowed_methods)]
    /// let mut endpoint = Endpoint::new(EndpointConfig::default(), Instant::now(), 1).unwrap();
    /// assert!(!endpoint.take_prompt_received(), "nothing received yet");
    /// ```
    pub fn take_prompt_received(&mut self) -> bool {
        std::mem::take(&mut self.prompt_received)
    }

    /// Whether a delivered message waits.
    pub fn has_messages(&self) -> bool {
        !self.messages.is_empty()
    }

    /// Queues a message for one connection (docs/protocol.md §8).
    pub fn send(
        &mut self,
        id: ConnectionId,
        channel: ChannelId,
        priority: Priority,
        reliability: Reliability,
        payload: impl Into<Bytes>,
    ) -> Result<(), SendError> {
        let conn = self
            .connections
            .get_mut(&id)
            .ok_or(SendError::UnknownConnection(id))?;
        let moves = conn.send_moves_deadline();
        conn.send(StreamKey { channel, priority }, reliability, payload.into())?;
        queued(id, conn, moves, &mut self.ready, &mut self.timers);
        Ok(())
    }

    /// Queues a copy of `payload` for one connection, like [`send`](Self::send) with
    /// `Bytes::copy_from_slice(payload)` but without allocating in steady state: the payload is
    /// copied into a chunk shared with other messages and reused once they are all acknowledged
    /// or dropped (payloads above 4 KiB get a buffer of their own). Nothing is copied when the
    /// message is refused.
    ///
    /// ```
    /// # use std::time::Instant;
    /// use carrier_proto::{ChannelId, ConnectionId, Endpoint, EndpointConfig, Priority};
    /// use carrier_proto::{Reliability, SendError};
    ///
    /// # #[allow(clippy::disallowed_methods)]
    /// let mut endpoint = Endpoint::new(EndpointConfig::default(), Instant::now(), 1).unwrap();
    /// let unknown = ConnectionId::from_raw(7);
    /// let r = endpoint.send_copy(
    ///     unknown,
    ///     ChannelId::new(0),
    ///     Priority::Normal,
    ///     Reliability::Reliable,
    ///     b"state update",
    /// );
    /// assert!(matches!(r, Err(SendError::UnknownConnection(_))));
    /// ```
    #[inline]
    pub fn send_copy(
        &mut self,
        id: ConnectionId,
        channel: ChannelId,
        priority: Priority,
        reliability: Reliability,
        payload: &[u8],
    ) -> Result<(), SendError> {
        let conn = self
            .connections
            .get_mut(&id)
            .ok_or(SendError::UnknownConnection(id))?;
        let key = StreamKey { channel, priority };
        conn.check_send(key, payload.len())?;
        // Per message: one map lookup, and the timer set is touched only if the deadline moves.
        let moves = conn.send_moves_deadline();
        conn.enqueue_checked(key, reliability, self.tx_arena.copy(payload));
        queued(id, conn, moves, &mut self.ready, &mut self.timers);
        Ok(())
    }

    /// Closes a connection with `reason`; the peer learns the reason. The event is reported at
    /// once.
    pub fn disconnect(&mut self, now: Instant, id: ConnectionId, reason: DisconnectReason) {
        self.call(id, |conn, _| conn.close(now, reason));
        self.collect(id);
    }

    /// Closes every connection with [`DisconnectReason::ShuttingDown`] and refuses new ones.
    pub fn shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        let ids: Vec<ConnectionId> = self.connections.keys().copied().collect();
        for id in ids {
            self.disconnect(now, id, DisconnectReason::ShuttingDown);
        }
    }

    /// Turns timeouts (handshake and connection) on or off at runtime.
    pub fn set_timeouts_enabled(&mut self, now: Instant, on: bool) {
        self.timeouts_enabled = on;
        for conn in self.connections.values_mut() {
            conn.set_timeouts_enabled(on, now);
        }
        let ids: Vec<ConnectionId> = self.connections.keys().copied().collect();
        for id in ids {
            self.reschedule(id);
        }
    }

    /// Whether timeouts disconnect.
    pub fn timeouts_enabled(&self) -> bool {
        self.timeouts_enabled
    }

    /// A connection, to read its state and statistics.
    pub fn connection(&self, id: ConnectionId) -> Option<&Connection> {
        self.connections.get(&id).map(|c| &**c)
    }

    /// The connection with a peer address, if any.
    pub fn connection_by_addr(&self, addr: SocketAddr) -> Option<ConnectionId> {
        self.by_addr.get(&addr, &self.connections)
    }

    /// Every connection id, in ascending order.
    pub fn connection_ids(&self) -> impl Iterator<Item = ConnectionId> + '_ {
        self.connections.keys().copied()
    }

    /// Dropped datagrams by reason.
    pub fn drops(&self) -> &DropCounters {
        &self.drops
    }

    /// Connections that still need the network: all but those that only acknowledge a peer's
    /// disconnect or answer a refused handshake until their linger ends. A shutdown is complete
    /// when this is 0.
    pub fn busy_connections(&self) -> usize {
        self.connections
            .values()
            .filter(|c| !c.is_quiescent())
            .count()
    }

    /// Sizes of every internal table.
    pub fn table_sizes(&self) -> TableSizes {
        TableSizes {
            connections: self.connections.len(),
            addresses: self.by_addr.len(),
            stateless_replies: self.stateless.len(),
            events: self.events.len(),
            messages: self.messages.len(),
        }
    }
}

/// The connections' deadlines, ordered ([`Endpoint::timers`]). The earliest entry is kept apart
/// from the set, with its instant at hand: `poll_timeout` is asked several times per datagram,
/// and an endpoint with one connection (a client) then moves its deadline without touching the
/// set at all (a B-tree remove and insert cost some 200 instructions per move).
#[derive(Debug)]
struct Timers {
    /// Every entry but the earliest (`first`); none orders before `first`.
    set: BTreeSet<(u64, ConnectionId)>,
    /// The instant the endpoint was created at: the epoch of the keys.
    epoch: Instant,
    /// The earliest entry (`None` only when `set` is empty too) and its instant
    /// ([`Timers::instant`] of its key).
    first: Option<((u64, ConnectionId), Instant)>,
}

impl Timers {
    /// `t` as a timer key: nanoseconds since the endpoint's creation, `epoch`. Instants are
    /// exact to the nanosecond, so [`Timers::instant`] gives `t` back, and keys order as their
    /// instants, for any instant from the creation on (a caller's clock never goes back before
    /// it; an earlier one would count as the creation). Saturates after 584 years.
    fn key(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The instant of key `k`.
    fn instant(&self, k: u64) -> Instant {
        self.epoch + Duration::from_nanos(k)
    }

    /// Deadline `t` as its key and [`Timers::instant`] of that: `t` itself unless the key
    /// clamped it (before the epoch, or saturated).
    #[cfg(test)]
    fn deadline(&self, t: Instant) -> (u64, Instant) {
        let k = self.key(t);
        let at = if k == 0 || k == u64::MAX {
            self.instant(k)
        } else {
            t
        };
        (k, at)
    }

    /// Moves connection `id`'s entry from the deadline of key `old` to deadline `new`, a key and
    /// the instant of that key (either may be none).
    fn update(&mut self, id: ConnectionId, old: Option<u64>, new: Option<(u64, Instant)>) {
        if let Some(k) = old {
            // A connection has one entry at most: if `first` is its, that is the one.
            if self.first.is_some_and(|((_, f), _)| f == id) {
                self.first = None;
            } else {
                self.set.remove(&(k, id));
            }
        }
        let new = new.map(|(k, at)| ((k, id), at));
        match (self.first, new) {
            (Some(_), None) => {}
            (Some((f, _)), Some((n, at))) => {
                if n < f {
                    self.set.insert(f);
                    self.first = Some((n, at));
                } else {
                    self.set.insert(n);
                }
            }
            (None, Some((n, at))) => match self.set.first() {
                Some(&e) if e < n => {
                    self.set.pop_first();
                    self.set.insert(n);
                    self.first = Some((e, self.instant(e.0)));
                }
                _ => self.first = Some((n, at)),
            },
            (None, None) => {
                self.first = self.set.pop_first().map(|e| (e, self.instant(e.0)));
            }
        }
    }

    /// The connections whose deadline is at or before `now`, earliest first, into `due`.
    fn due(&self, now: Instant, due: &mut Vec<ConnectionId>) {
        let Some(((k, id), _)) = self.first else {
            return;
        };
        let now_key = self.key(now);
        if k > now_key {
            return;
        }
        due.push(id);
        due.extend(
            self.set
                .iter()
                .take_while(|&&(k, _)| k <= now_key)
                .map(|(_, id)| *id),
        );
    }
}

/// After a message was queued on `conn`: it is served next, and its timer moves only if
/// queueing could move its deadline (`moves`, `Connection::send_moves_deadline` read before).
#[inline]
fn queued(
    id: ConnectionId,
    conn: &mut Connection,
    moves: bool,
    ready: &mut VecDeque<ConnectionId>,
    timers: &mut Timers,
) {
    queue_ready(id, conn, ready);
    if moves {
        schedule(id, conn, timers);
    } else {
        debug_assert_eq!(
            conn.scheduled,
            conn.poll_deadline(None).map(|(k, _)| k),
            "deadline moved"
        );
    }
}

/// Puts `conn` in the round-robin queue of `poll_transmit` unless it is there already.
#[inline]
fn queue_ready(id: ConnectionId, conn: &mut Connection, ready: &mut VecDeque<ConnectionId>) {
    if !conn.in_ready {
        conn.in_ready = true;
        ready.push_back(id);
    }
}

/// Moves `conn`'s entry in the timer set to its current deadline.
fn schedule(id: ConnectionId, conn: &mut Connection, timers: &mut Timers) {
    schedule_with(id, conn, timers, None);
}

/// [`schedule`], given the keep-alive deadline if `poll_transmit` computed it
/// (`Connection::poll_deadline`).
fn schedule_with(
    id: ConnectionId,
    conn: &mut Connection,
    timers: &mut Timers,
    keep_alive: Option<Option<u64>>,
) {
    let deadline = conn.poll_deadline(keep_alive);
    let key = deadline.map(|(k, _)| k);
    if conn.scheduled == key {
        return;
    }
    timers.update(id, conn.scheduled, deadline);
    conn.scheduled = key;
}

/// Moves a connection's pending events and delivered messages to the endpoint's queues.
fn drain(
    conn: &mut Connection,
    events: &mut VecDeque<Event>,
    messages: &mut VecDeque<(ConnectionId, Message)>,
) {
    while let Some(e) = conn.poll_event() {
        events.push_back(e);
    }
    conn.drain_messages(|delivered| {
        if messages.is_empty() {
            // The whole queue at once; the connection gets the empty one back.
            std::mem::swap(messages, delivered);
        } else {
            messages.extend(delivered.drain(..));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The split set (earliest entry apart) answers like one ordered set, whatever the moves.
    #[test]
    fn timers_order_like_one_set() {
        #[allow(clippy::disallowed_methods)] // A real `Instant` as the epoch.
        let epoch = Instant::now();
        let mut timers = Timers {
            set: BTreeSet::new(),
            epoch,
            first: None,
        };
        let mut reference: BTreeSet<(u64, ConnectionId)> = BTreeSet::new();
        let mut scheduled: Vec<Option<u64>> = vec![None; 5];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for step in 0..5_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let slot = (x % 5) as usize;
            let id = ConnectionId::from_raw(slot as u64 + 1);
            let new = (!x.is_multiple_of(7))
                .then(|| timers.deadline(epoch + Duration::from_nanos((x >> 8) % 50)));
            let old = scheduled[slot];
            if old == new.map(|(k, _)| k) {
                continue;
            }
            timers.update(id, old, new);
            scheduled[slot] = new.map(|(k, _)| k);
            if let Some(k) = old {
                reference.remove(&(k, id));
            }
            if let Some((k, _)) = new {
                reference.insert((k, id));
            }
            let expected = reference.first().map(|&e| (e, timers.instant(e.0)));
            assert_eq!(timers.first, expected, "step {step}");
            let now = epoch + Duration::from_nanos(step % 50);
            let mut due = Vec::new();
            timers.due(now, &mut due);
            let want: Vec<ConnectionId> = reference
                .iter()
                .take_while(|&&(k, _)| k <= timers.key(now))
                .map(|&(_, id)| id)
                .collect();
            assert_eq!(due, want, "step {step}");
        }
    }
}
