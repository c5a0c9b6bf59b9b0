//! The I/O turn shared by the carrier thread and manual mode: receive from the driver (through
//! the simulator), feed the endpoint, fire its deadlines, collect its datagrams (through the
//! simulator) and send them, then publish events and messages.
//!
//! The endpoint lives in [`Core`] behind a mutex that the game thread also takes to send; the
//! driver lives in [`Io`], owned by whoever drives the I/O, so blocking in the driver never
//! holds the endpoint lock.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use carrier_proto::{ConnectionId, DisconnectReason, Endpoint, Event};
use carrier_sim::{Datagram, Direction, Simulator};

use crate::driver::{DirectSend, Driver, DriverError, Outgoing, RecvMeta, Wake};
use crate::event::{CarrierEvent, SecurityError};
use crate::mailbox::Mailbox;

/// Datagrams read from the driver per call.
const RECV_BATCH: usize = 32;
/// Datagrams read per turn at most, so one flooding peer cannot stall the rest of the turn.
const RECV_PER_TURN: usize = 4_096;
/// Datagrams collected from the endpoint per lock, then sent with the lock released.
const SEND_BATCH: usize = 64;
/// Capacity the burst queues (peer changes, the game's event queue) keep once empty: a burst of
/// connections grows them, and keeping that capacity would cost about as much per connection
/// as the connection's own state (a steady trickle stays below this and never reallocates).
pub(crate) const BURST_KEEP: usize = 32;

/// Pops the next event of the game's queue, giving back burst capacity once it is empty.
pub(crate) fn pop_event(events: &mut VecDeque<CarrierEvent>) -> Option<CarrierEvent> {
    let e = events.pop_front();
    if events.is_empty() && events.capacity() > BURST_KEEP {
        events.shrink_to(BURST_KEEP);
    }
    e
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it: the carrier never
/// leaves its state half-updated across a panic point, and the game must keep running.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The protocol state, shared with the game thread.
pub(crate) struct Core {
    pub endpoint: Endpoint,
    pub simulator: Option<Box<dyn Simulator>>,
    pub local_addr: SocketAddr,
    tx_buf: Vec<u8>,
    /// Peers whose connections started or ended since the driver was last told.
    pub peer_changes: Vec<(SocketAddr, bool)>,
    /// Peers the driver was told about, by connection, sorted by id. A sorted vector, not a
    /// hash map: new ids are the largest, so announcing appends, and it costs half the memory
    /// per connection (40 B instead of a hash map's 41 B per bucket at a load of 44–87 %).
    /// Empty when the driver does not use the peer hooks (`peer_hooks`).
    announced: Vec<(ConnectionId, SocketAddr)>,
    /// [`Driver::uses_peer_hooks`](crate::driver::Driver::uses_peer_hooks): without it, no
    /// peer is announced (the default UDP driver's hooks do nothing, and `announced` would
    /// cost 40 B per connection).
    peer_hooks: bool,
    /// Connections that ended and may still linger in the endpoint.
    ending: Vec<ConnectionId>,
    /// Scratch: connections gone from the endpoint in this turn (reused).
    gone: Vec<ConnectionId>,
}

impl Core {
    pub(crate) fn new(
        endpoint: Endpoint,
        simulator: Option<Box<dyn Simulator>>,
        local_addr: SocketAddr,
        max_datagram: usize,
        peer_hooks: bool,
    ) -> Self {
        Core {
            endpoint,
            simulator,
            local_addr,
            tx_buf: vec![0; max_datagram],
            peer_changes: Vec::new(),
            announced: Vec::new(),
            peer_hooks,
            ending: Vec::new(),
            gone: Vec::new(),
        }
    }

    /// Tells the driver (on the next turn, before anything is sent) that `addr` is a peer.
    pub(crate) fn announce(&mut self, id: ConnectionId, addr: SocketAddr) {
        if !self.peer_hooks {
            return;
        }
        match self.announced.binary_search_by_key(&id, |e| e.0) {
            Ok(i) => self.announced[i].1 = addr,
            Err(i) => {
                self.announced.insert(i, (id, addr));
                self.peer_changes.push((addr, true));
            }
        }
    }

    /// Tells the driver about connections that are gone from the endpoint.
    fn retire_ended(&mut self) {
        let endpoint = &self.endpoint;
        let gone = &mut self.gone;
        self.ending.retain(|id| {
            if endpoint.connection(*id).is_some() {
                return true;
            }
            gone.push(*id);
            false
        });
        if gone.is_empty() {
            return;
        }
        // One pass over the announced peers for all the connections gone this turn.
        gone.sort_unstable();
        let changes = &mut self.peer_changes;
        self.announced.retain(|(id, addr)| {
            let keep = gone.binary_search(id).is_err();
            if !keep {
                changes.push((*addr, false));
            }
            keep
        });
        gone.clear();
    }

    /// One received datagram, through the simulator if any.
    fn input(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        match self.simulator.as_mut().filter(|s| s.is_enabled()) {
            Some(sim) => sim.input(
                now,
                Direction::Inbound,
                Datagram {
                    from,
                    to: self.local_addr,
                    payload: bytes.to_vec(),
                },
            ),
            None => self.endpoint.handle(now, from, bytes),
        }
    }

    /// The earliest deadline of the endpoint and the simulator.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let sim = self.simulator.as_ref().and_then(|s| s.poll_timeout());
        match (self.endpoint.poll_timeout(), sim) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires due deadlines and releases due inbound datagrams from the simulator.
    fn advance(&mut self, now: Instant) {
        if let Some(sim) = self.simulator.as_mut() {
            while let Some(d) = sim.poll_output(now, Direction::Inbound) {
                self.endpoint.handle(now, d.from, &d.payload);
            }
        }
        if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
            self.endpoint.handle_timeout(now);
        }
    }

    /// Collects up to [`SEND_BATCH`] datagrams to send into `out`; returns whether more may be
    /// waiting.
    fn collect(&mut self, now: Instant, out: &mut OutBatch) -> bool {
        while out.entries.len() < SEND_BATCH {
            let Some(t) = self.endpoint.poll_transmit(now, &mut self.tx_buf) else {
                break;
            };
            let bytes = &self.tx_buf[..t.size];
            match self.simulator.as_mut().filter(|s| s.is_enabled()) {
                Some(sim) => sim.input(
                    now,
                    Direction::Outbound,
                    Datagram {
                        from: self.local_addr,
                        to: t.destination,
                        payload: bytes.to_vec(),
                    },
                ),
                None => out.push(t.destination, bytes),
            }
        }
        let full = out.entries.len() >= SEND_BATCH;
        if let Some(sim) = self.simulator.as_mut() {
            while out.entries.len() < SEND_BATCH {
                let Some(d) = sim.poll_output(now, Direction::Outbound) else {
                    break;
                };
                out.push(d.to, &d.payload);
            }
        }
        full || out.entries.len() >= SEND_BATCH
    }

    /// Moves the endpoint's events and messages to the game-side queues. Takes the game-side
    /// locks only when the endpoint has something (most turns have nothing). Returns whether
    /// anything was queued: the caller then notifies `events_ready`, after releasing the core
    /// lock, so that a woken game thread that answers at once does not find it held.
    #[must_use]
    fn publish(&mut self, shared: &Shared) -> bool {
        let mut published = false;
        if self.endpoint.has_messages() {
            lock(&shared.mailbox).append(self.endpoint.messages_mut());
            published = true;
        }
        if let Some(first) = self.endpoint.poll_event() {
            published |= self.publish_events(shared, first);
        }
        if !self.ending.is_empty() {
            self.retire_ended();
        }
        published
    }

    /// Moves `first` and the endpoint's other events to the event queue; returns whether any
    /// was queued.
    fn publish_events(&mut self, shared: &Shared, first: Event) -> bool {
        let mut published = false;
        let mut next = Some(first);
        let mut events = lock(&shared.events);
        while let Some(e) = next.take() {
            next = self.endpoint.poll_event();
            let event = match e {
                Event::IncomingConnection { id, addr } => {
                    self.announce(id, addr);
                    CarrierEvent::IncomingConnection { id, addr }
                }
                Event::ConnectionEstablished { id } => CarrierEvent::ConnectionEstablished { id },
                Event::FailedToConnect { id, reason } => {
                    self.ending.push(id);
                    CarrierEvent::FailedToConnect { id, reason }
                }
                Event::Disconnect { id, reason } => {
                    self.ending.push(id);
                    CarrierEvent::Disconnect { id, reason }
                }
                Event::SecurityError { id, reason } => CarrierEvent::SecurityError {
                    id: Some(id),
                    error: SecurityError::BadDatagram(reason),
                },
                Event::RateChange {
                    id,
                    bytes_per_second,
                } => CarrierEvent::RateChange {
                    id,
                    bytes_per_second,
                },
                other => {
                    tracing::debug!(event = ?other, "unhandled protocol event");
                    continue;
                }
            };
            tracing::debug!(?event, "carrier event");
            events.push_back(event);
            published = true;
        }
        published
    }

    /// Drops the connection to `peer` after a send failure (docs: a send error on one
    /// connection drops only that connection).
    fn send_failed(&mut self, now: Instant, peer: SocketAddr, error: DriverError, shared: &Shared) {
        let id = self.endpoint.connection_by_addr(peer);
        tracing::warn!(%peer, %error, "send failed");
        lock(&shared.events).push_back(CarrierEvent::DriverError { id, error });
        if let Some(id) = id {
            self.endpoint
                .disconnect(now, id, DisconnectReason::DriverError);
        }
    }
}

/// Datagrams collected under the endpoint lock, sent after it is released.
#[derive(Default)]
pub(crate) struct OutBatch {
    data: Vec<u8>,
    entries: Vec<(SocketAddr, Range<usize>)>,
}

impl OutBatch {
    fn push(&mut self, to: SocketAddr, bytes: &[u8]) {
        let start = self.data.len();
        self.data.extend_from_slice(bytes);
        self.entries.push((to, start..self.data.len()));
    }

    fn clear(&mut self) {
        self.data.clear();
        self.entries.clear();
    }
}

/// Hands the datagrams of `out` to `send` in batches of [`Outgoing`] entries (grouped for GSO).
/// A batch is a fixed array on the stack (allocation-free); a few datagrams, the common case
/// of a game's send, use a small one rather than initialising all [`SEND_BATCH`] entries.
fn send_batches(out: &OutBatch, mut send: impl FnMut(&[Outgoing<'_>])) {
    fn run<const N: usize>(out: &OutBatch, send: &mut impl FnMut(&[Outgoing<'_>])) {
        let mut next = 0;
        while next < out.entries.len() {
            let mut batch = [Outgoing {
                to: out.entries[next].0,
                payload: &[],
                segment_size: 0,
            }; N];
            let (n, after) = group_for_gso(out, next, &mut batch);
            next = after;
            send(&batch[..n]);
        }
    }
    match out.entries.len() {
        0 => {}
        1..=4 => run::<4>(out, &mut send),
        _ => run::<SEND_BATCH>(out, &mut send),
    }
}

/// Largest GSO super-buffer: the kernel's UDP limit, in bytes and in segments.
const GSO_MAX_BYTES: usize = 65_000;
const GSO_MAX_SEGMENTS: usize = 64;

/// Groups consecutive datagrams to the same peer, all of one size but the last (which may be
/// shorter), into one [`Outgoing`] entry (DESIGN.md §5: a Linux driver sends it as one GSO
/// super-buffer). Starts at entry `start` of `out` and fills `batch` (a fixed array, so a send
/// batch allocates nothing); returns the entries written and where the next call starts.
fn group_for_gso<'a>(
    out: &'a OutBatch,
    start: usize,
    batch: &mut [Outgoing<'a>],
) -> (usize, usize) {
    let mut n = 0;
    let mut i = start;
    while i < out.entries.len() && n < batch.len() {
        let (to, first) = &out.entries[i];
        let seg = first.len();
        let start = first.start;
        let mut end = first.end;
        let mut j = i + 1;
        while let Some((next_to, r)) = out.entries.get(j) {
            let fits = next_to == to
                && r.start == end
                && r.len() <= seg
                && j - i < GSO_MAX_SEGMENTS
                && r.end - start <= GSO_MAX_BYTES;
            if !fits {
                break;
            }
            end = r.end;
            j += 1;
            if r.len() < seg {
                break;
            }
        }
        batch[n] = Outgoing {
            to: *to,
            payload: &out.data[start..end],
            segment_size: seg,
        };
        n += 1;
        i = j;
    }
    (n, i)
}

/// Direct send: the game thread sends what its `send` made ready itself, through the driver's
/// [`DirectSend`], instead of waking the carrier thread to do it (dedicated mode with instant
/// response, no send batching, no simulator).
///
/// `tx` serializes collecting datagrams from the endpoint and sending them, on the game threads
/// and on the carrier thread alike: datagrams come out of the endpoint in packet-number order,
/// and two threads collecting and sending at once could swap them on the wire (the receiver
/// drops an unreliable message that arrives after a newer one). Lock order: `tx`, then `core`.
pub(crate) struct Direct {
    pub sender: Arc<dyn DirectSend>,
    pub tx: Mutex<DirectTx>,
}

/// The direct path's buffers, behind [`Direct::tx`].
#[derive(Default)]
pub(crate) struct DirectTx {
    out: OutBatch,
    failures: Vec<(SocketAddr, DriverError)>,
}

/// `Shared::planned` when the carrier thread plans no deadline of the endpoint.
const NO_DEADLINE: u64 = u64::MAX;

/// What the game thread and the I/O side share.
pub(crate) struct Shared {
    pub core: Mutex<Core>,
    pub mailbox: Mutex<Mailbox>,
    pub events: Mutex<VecDeque<CarrierEvent>>,
    pub events_ready: Condvar,
    pub waker: Arc<dyn Wake>,
    /// Set by `send` (and other commands); the I/O side clears it when it starts a turn.
    pub dirty: AtomicBool,
    /// Set by the carrier thread while it waits.
    pub sleeping: AtomicBool,
    /// Set by the carrier thread (before `sleeping`) while it coalesces receives: it then
    /// sleeps on `tick_cv`, not in the driver, and a wake-up must go there.
    pub coalescing: AtomicBool,
    pub shutting_down: AtomicBool,
    /// Game threads blocked in `wait_event` (the game is alive while it waits).
    pub waiters: AtomicUsize,
    /// Game threads that may block on `events_ready` (dedicated mode's `wait_event` and
    /// `wait_message`): without any, publishing skips the notification, which is a system
    /// call even when nobody waits.
    pub ready_sleepers: AtomicUsize,
    /// Milliseconds since `epoch` of the game's last `update()`.
    pub last_update_ms: AtomicU64,
    pub epoch: Instant,
    /// Whether the I/O side sleeps on `tick_cv` (a carrier thread without instant response)
    /// rather than in the driver.
    pub tick_sleeper: bool,
    /// A tick-mode sleeper (thread_instant_response = false) waits on this.
    pub tick: Mutex<bool>,
    pub tick_cv: Condvar,
    /// Direct send, when enabled.
    pub direct: Option<Direct>,
    /// The endpoint deadline the carrier thread last read (nanoseconds since `epoch`,
    /// [`NO_DEADLINE`] for none), written and read under the core lock: the carrier thread
    /// sleeps no later than that, so a direct send wakes it only when it moved the endpoint's
    /// deadline earlier (e.g. a retransmission timer armed by the new packet).
    pub planned: AtomicU64,
}

impl Shared {
    /// Wakes the I/O side if it sleeps (Dekker-style: `dirty` is set before `sleeping` is read,
    /// the thread sets `sleeping` before it reads `dirty`).
    ///
    /// A poke that finds `dirty` already set wakes nothing: whoever set it either woke the
    /// thread or saw it awake, and an awake thread reads `dirty` before it sleeps again (it is
    /// cleared only when a turn starts). A game thread sending a burst of messages therefore
    /// costs one wake-up per carrier turn, not one per message.
    pub(crate) fn poke(&self) {
        if !self.dirty.swap(true, Ordering::SeqCst) && self.sleeping.load(Ordering::SeqCst) {
            self.wake();
        }
    }

    /// Wakes the game threads blocked on `events_ready`, if any. Called after queueing an event
    /// or a message (under the queue's lock, released since). Nothing when none can be blocked
    /// there: an uncontended `notify_all` is still a `futex` system call. A sleeper counts itself
    /// before it looks at the queues under their locks, so either it sees what was queued or the
    /// queueing thread, ordered after its look by that lock, sees it counted. Taking the event
    /// lock then orders the wake-up after a counted sleeper's check: the sleeper holds that lock
    /// from its check until it is inside `wait_timeout` (the mailbox is filled without it).
    pub(crate) fn notify_ready(&self) {
        if self.ready_sleepers.load(Ordering::SeqCst) > 0 {
            drop(lock(&self.events));
            self.events_ready.notify_all();
        }
    }

    /// Records the endpoint deadline the carrier thread will honour (call under the core
    /// lock).
    fn plan(&self, deadline: Option<Instant>) {
        if self.direct.is_some() {
            self.planned
                .store(self.nanos_since_epoch(deadline), Ordering::Relaxed);
        }
    }

    fn nanos_since_epoch(&self, t: Option<Instant>) -> u64 {
        t.map_or(NO_DEADLINE, |t| {
            let ns = t.saturating_duration_since(self.epoch).as_nanos();
            u64::try_from(ns).unwrap_or(NO_DEADLINE - 1)
        })
    }

    /// Direct send (see [`Direct`]): collects what the endpoint has to send and sends it on the
    /// calling thread. `tx` and `core` are the locks of `direct.tx` and `self.core`, taken in
    /// that order by the caller (which typically just queued a message under `core`).
    ///
    /// Wakes the carrier thread only when it is needed: the driver cannot send directly now
    /// (its own queue must drain first), the endpoint's next deadline moved earlier than the
    /// one the carrier thread sleeps towards, a peer must be announced to the driver, or a
    /// send failed (the connection is being dropped, which has datagrams to send).
    pub(crate) fn send_direct<'a>(
        &'a self,
        direct: &Direct,
        mut tx: MutexGuard<'_, DirectTx>,
        mut core: MutexGuard<'a, Core>,
    ) {
        if !direct.sender.ready() {
            drop(core);
            drop(tx);
            self.poke();
            return;
        }
        let now = crate::carrier::now();
        let DirectTx { out, failures } = &mut *tx;
        let mut wake = false;
        loop {
            out.clear();
            let more = core.collect(now, out);
            let published = core.publish(self);
            wake |= !core.peer_changes.is_empty();
            let deadline = self.nanos_since_epoch(core.poll_timeout());
            wake |= deadline < self.planned.load(Ordering::Relaxed);
            drop(core);
            if published {
                self.notify_ready();
            }
            send_batches(out, |batch| {
                direct
                    .sender
                    .send(now, batch, &mut |peer, e| failures.push((peer, e)));
            });
            if !failures.is_empty() {
                let mut core = lock(&self.core);
                for (peer, e) in failures.drain(..) {
                    core.send_failed(now, peer, e, self);
                }
                let _ = core.publish(self);
                drop(core);
                self.notify_ready();
                // The dropped connections have disconnects to send: the carrier thread's turn.
                wake = true;
            }
            if !more {
                break;
            }
            core = lock(&self.core);
        }
        drop(tx);
        if wake {
            self.poke();
        }
    }

    /// Sleeps on `tick_cv` for up to `timeout` unless a wake-up is pending, and consumes it.
    fn sleep_on_tick(&self, timeout: Duration) {
        let mut woken = lock(&self.tick);
        if !*woken {
            woken = self
                .tick_cv
                .wait_timeout(woken, timeout)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        *woken = false;
    }

    pub(crate) fn wake(&self) {
        // `coalescing` is stored before `sleeping`, which a poke read as set before this.
        if self.tick_sleeper || self.coalescing.load(Ordering::SeqCst) {
            *lock(&self.tick) = true;
            self.tick_cv.notify_all();
        } else {
            self.waker.wake();
        }
    }
}

/// The driver side, owned by the carrier thread or, in manual mode, by the `Carrier`.
pub(crate) struct Io {
    pub driver: Box<dyn Driver>,
    bufs: Vec<Vec<u8>>,
    metas: Vec<RecvMeta>,
    out: OutBatch,
    failures: Vec<(SocketAddr, DriverError)>,
    /// Datagrams the last turn received.
    received: usize,
    /// Whether the last turn sent anything after receiving (answers, acknowledgements).
    answered: bool,
    /// Whether the last turn received a packet that asks for a prompt acknowledgement
    /// (`Endpoint::take_prompt_received`).
    prompted: bool,
}

impl Io {
    pub(crate) fn new(driver: Box<dyn Driver>) -> Self {
        let size = driver.max_payload().max(2048);
        Io {
            driver,
            bufs: (0..RECV_BATCH).map(|_| vec![0u8; size]).collect(),
            metas: vec![RecvMeta::default(); RECV_BATCH],
            out: OutBatch::default(),
            failures: Vec::new(),
            received: 0,
            answered: false,
            prompted: false,
        }
    }

    /// Datagrams the last turn received.
    pub(crate) fn received(&self) -> usize {
        self.received
    }

    /// Whether the last turn is one after which receives may be coalesced
    /// ([`CarrierDesc::thread_receive_coalescing_us`](crate::CarrierDesc)): it found datagrams
    /// waiting, drained the socket, and they asked for no answer, not even a prompt
    /// acknowledgement owed for later (reliable data: its sender waits for the ACK).
    pub(crate) fn coalescible(&self) -> bool {
        self.received > 0 && self.received < RECV_PER_TURN && !self.answered && !self.prompted
    }

    /// One turn: fire deadlines and send what is queued, receive, then (if anything arrived)
    /// send the answers and publish. Returns the next deadline.
    ///
    /// Sending comes first so that what the game queued since the last turn (an answer to the
    /// message it just read) leaves before the receive system calls, not after them: in a
    /// ping-pong that is the critical path. The receive then costs one call when nothing or a
    /// short batch is waiting, and an idle turn takes the endpoint lock once.
    pub(crate) fn turn(&mut self, shared: &Shared, mut now: Instant) -> Option<Instant> {
        shared.dirty.store(false, Ordering::SeqCst);
        // 1. Deadlines of the driver.
        if self.driver.poll_timeout().is_some_and(|t| t <= now) {
            self.driver.handle_timeout(now);
        }
        // 2. Deadlines and output of the endpoint.
        let (mut deadline, _) = self.transmit(shared, now);
        // 3. Receive, a batch per lock.
        let mut received = 0;
        let mut prompted = false;
        while received < RECV_PER_TURN {
            let n = match self.driver.recv(now, &mut self.bufs, &mut self.metas) {
                Ok(n) => n,
                Err(error) => {
                    tracing::warn!(%error, "receive failed");
                    lock(&shared.events).push_back(CarrierEvent::DriverError { id: None, error });
                    shared.notify_ready();
                    0
                }
            };
            if n == 0 {
                break;
            }
            received += n;
            // The time of arrival, read after the receive: `now` dates from before this turn's
            // sends, and a datagram sent meanwhile by a game thread (direct send, with its own
            // reading of the clock) may already be acknowledged in this batch; an older `now`
            // would make its RTT sample negative (clamped to 0).
            now = crate::carrier::now();
            let mut core = lock(&shared.core);
            for (buf, meta) in self.bufs.iter().zip(&self.metas).take(n) {
                let len = meta.len.min(buf.len());
                let seg = if meta.segment_size == 0 {
                    len
                } else {
                    meta.segment_size
                };
                for datagram in buf[..len].chunks(seg.max(1)) {
                    core.input(now, meta.from, datagram);
                }
            }
            prompted |= core.endpoint.take_prompt_received();
            // A short batch means the driver found nothing more waiting: asking again would
            // only cost another system call.
            if n < self.bufs.len().min(self.metas.len()) {
                break;
            }
        }
        // 4. What the received datagrams caused: answers (acks), messages and events.
        self.received = received;
        self.prompted = prompted;
        self.answered = false;
        if received > 0 {
            let sent;
            (deadline, sent) = self.transmit(shared, now);
            self.answered = sent;
        }
        // 5. Say when to come back.
        match (deadline, self.driver.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires the endpoint's due deadlines, collects and sends its datagrams (a batch per lock),
    /// publishes its events and messages; returns the endpoint's next deadline and whether it
    /// sent anything. The last batch's lock also publishes and reads the next deadline: sending
    /// changes neither.
    fn transmit(&mut self, shared: &Shared, now: Instant) -> (Option<Instant>, bool) {
        let mut first = true;
        let mut sent = false;
        let mut deadline;
        loop {
            self.out.clear();
            // With direct send, collecting and sending are serialized with the game threads'.
            let mut tx = shared.direct.as_ref().map(|d| lock(&d.tx));
            let (more, published) = {
                let mut core = lock(&shared.core);
                if first {
                    core.advance(now);
                    first = false;
                }
                let more = core.collect(now, &mut self.out);
                // Publishing may announce peers (an incoming connection): the driver hears of
                // them before anything is sent to them.
                let published = core.publish(shared);
                for (peer, up) in core.peer_changes.drain(..) {
                    if up {
                        self.driver.on_peer_connected(peer);
                    } else {
                        self.driver.on_peer_disconnected(peer);
                    }
                }
                if core.peer_changes.capacity() > BURST_KEEP {
                    core.peer_changes.shrink_to(BURST_KEEP);
                }
                deadline = core.poll_timeout();
                shared.plan(deadline);
                (more, published)
            };
            if self.out.entries.is_empty() {
                tx = None;
            } else {
                sent = true;
            }
            // A woken game thread that answers at once takes `tx` to send: with something to
            // send under `tx` here, it is notified once that is done.
            let notify_now = published && tx.is_none();
            if notify_now {
                shared.notify_ready();
            }
            let (driver, failures) = (&mut self.driver, &mut self.failures);
            send_batches(&self.out, |batch| {
                driver.send(now, batch, &mut |peer, e| failures.push((peer, e)));
            });
            if !self.failures.is_empty() {
                let mut core = lock(&shared.core);
                for (peer, e) in self.failures.drain(..) {
                    core.send_failed(now, peer, e, shared);
                }
                // The failures queued `DriverError` events: notify in any case.
                let _ = core.publish(shared);
                deadline = core.poll_timeout();
                shared.plan(deadline);
                drop(core);
                shared.notify_ready();
            }
            drop(tx);
            if published && !notify_now {
                shared.notify_ready();
            }
            if !more {
                break;
            }
        }
        (deadline, sent)
    }

    /// Waits for data, a wake-up or `until`; `instant` says whether incoming data wakes it.
    pub(crate) fn wait(
        &mut self,
        shared: &Shared,
        until: Option<Instant>,
        now: Instant,
        instant: bool,
    ) {
        let timeout = until.map(|t| t.saturating_duration_since(now));
        shared.sleeping.store(true, Ordering::SeqCst);
        if shared.dirty.load(Ordering::SeqCst) || timeout == Some(Duration::ZERO) {
            shared.sleeping.store(false, Ordering::SeqCst);
            return;
        }
        if instant {
            if let Err(error) = self.driver.wait(timeout) {
                tracing::warn!(%error, "wait failed");
                std::thread::sleep(Duration::from_millis(1));
            }
        } else {
            shared.sleep_on_tick(timeout.unwrap_or(Duration::from_millis(100)));
        }
        shared.sleeping.store(false, Ordering::SeqCst);
    }

    /// Waits for a wake-up or `until`, leaving incoming datagrams in the socket meanwhile
    /// (receive coalescing, see [`Io::coalescible`]). Returns `false` without waiting when a
    /// game thread waits for messages or events (counted in `ready_sleepers`): that one must
    /// not wait for the coalescing.
    pub(crate) fn wait_coalescing(
        &mut self,
        shared: &Shared,
        until: Instant,
        now: Instant,
    ) -> bool {
        let timeout = until.saturating_duration_since(now);
        // Before `sleeping`: a poke that sees this sleep sees where to wake it. Before reading
        // `ready_sleepers` too: a game thread counts itself there, then reads this and pokes.
        shared.coalescing.store(true, Ordering::SeqCst);
        if shared.ready_sleepers.load(Ordering::SeqCst) > 0 {
            shared.coalescing.store(false, Ordering::SeqCst);
            return false;
        }
        shared.sleeping.store(true, Ordering::SeqCst);
        if !shared.dirty.load(Ordering::SeqCst) && !timeout.is_zero() {
            shared.sleep_on_tick(timeout);
        }
        shared.sleeping.store(false, Ordering::SeqCst);
        shared.coalescing.store(false, Ordering::SeqCst);
        true
    }
}
