//! [`Carrier`]: the game-facing handle. Created from a [`CarrierDesc`]; `Send + Sync`, so every
//! method takes `&self` and can be called from several game threads at once.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use carrier_proto::{
    ChannelId, ConnectionId, ConnectionState, DefaultHandshake, DisconnectReason, Endpoint,
    Message, Priority, Reliability, SendError, Statistics,
};

use crate::desc::{FamilyType, INHERIT_PRIORITY, ThreadMode};
use crate::driver::{Driver, UdpDriver, UdpDriverConfig};
use crate::event::{CarrierEvent, SecurityError};
use crate::mailbox::Mailbox;
use crate::runtime::{Core, Direct, DirectTx, Io, Shared, lock};
use crate::{CarrierDesc, CarrierError, ConnectError, ReceiveError};

/// Reads the real clock: the runtime is where time enters the sans-IO protocol.
#[allow(clippy::disallowed_methods)] // the runtime's single clock source
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// Whom a message goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// One connection.
    Connection(ConnectionId),
    /// Every connection that is connected now (the original's `AllConnections`).
    AllConnected,
}

impl From<ConnectionId> for Target {
    fn from(id: ConnectionId) -> Self {
        Target::Connection(id)
    }
}

/// Settings the handle needs after creation.
#[derive(Clone, Copy, Debug)]
struct Settings {
    mode: ThreadMode,
    local_addr: SocketAddr,
    family: FamilyType,
    message_mtu: usize,
    channel_count: u8,
    batch_bytes: usize,
    connection_timeout: Duration,
    shutdown_timeout: Duration,
}

/// A carrier: connections to other carriers over one driver (UDP by default), with ordered
/// reliable and unreliable messages per channel and priority.
///
/// ```no_run
/// use std::time::Duration;
/// use carrier::{Carrier, CarrierDesc, CarrierEvent, Priority, Reliability};
///
/// let server = Carrier::new(CarrierDesc { port: 4000, ..CarrierDesc::default() })?;
/// let client = Carrier::new(CarrierDesc::default())?;
/// let id = client.connect("127.0.0.1:4000")?;
/// while let Some(event) = client.wait_event(Duration::from_secs(5)) {
///     if let CarrierEvent::ConnectionEstablished { .. } = event {
///         client.send(id, b"hello", Reliability::Reliable, Priority::Normal, 0)?;
///         break;
///     }
/// }
/// loop {
///     server.update();
///     if let Some((from, message)) = server.poll_message() {
///         println!("{from}: {:?}", message.payload);
///         break;
///     }
///     std::thread::sleep(Duration::from_millis(1));
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Carrier {
    shared: Arc<Shared>,
    settings: Settings,
    /// The driver in manual mode (the carrier thread owns it otherwise).
    io: Option<Mutex<Io>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    shut_down: AtomicBool,
}

impl std::fmt::Debug for Carrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Carrier")
            .field("local_addr", &self.settings.local_addr)
            .field("mode", &self.settings.mode)
            .finish_non_exhaustive()
    }
}

fn seed_from_clock() -> u64 {
    #[allow(clippy::disallowed_methods)] // seeds the protocol's random source when none is given
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 32)
}

impl Carrier {
    /// Creates a carrier: validates `desc`, opens the driver and, unless in manual mode, starts
    /// the carrier thread.
    pub fn new(mut desc: CarrierDesc) -> Result<Carrier, CarrierError> {
        desc.validate()?;
        let driver: Box<dyn Driver> = match desc.driver.take() {
            Some(d) => d,
            None => Box::new(UdpDriver::open(&UdpDriverConfig {
                family: desc.family_type,
                address: desc.bind_ip()?,
                port: desc.port,
                receive_buffer_size: desc.receive_buffer_size(),
                send_buffer_size: desc.send_buffer_size(),
                max_payload: desc.max_datagram_size(),
            })?),
        };
        let max_datagram = driver.max_payload().clamp(
            carrier_proto::MIN_DATAGRAM_SIZE,
            carrier_proto::MAX_DATAGRAM_SIZE,
        );
        let local_addr = driver.local_addr();
        let config = desc.endpoint_config(max_datagram);
        config.validate()?;
        let start = now();
        let handshake = desc
            .handshake
            .take()
            .unwrap_or_else(|| Box::new(DefaultHandshake::new(desc.version)));
        let seed = desc.seed.unwrap_or_else(seed_from_clock);
        let endpoint = Endpoint::with_handshake(config, handshake, start, seed)?;
        let settings = Settings {
            mode: desc.thread_mode,
            local_addr,
            family: desc.family_type,
            message_mtu: carrier_proto::message_mtu(max_datagram),
            channel_count: desc.channel_count,
            batch_bytes: desc.send_batch_packet_count as usize * max_datagram,
            connection_timeout: Duration::from_millis(u64::from(desc.connection_timeout_ms)),
            shutdown_timeout: Duration::from_millis(u64::from(desc.shutdown_timeout_ms)),
        };
        let simulator = desc.simulator.take();
        // Direct send (see `CarrierDesc::thread_instant_response`): where `send` would wake the
        // carrier thread at once anyway, and every datagram goes straight to the driver.
        let direct = (desc.thread_mode == ThreadMode::Dedicated
            && desc.thread_instant_response
            && desc.send_batch_packet_count == 0
            && simulator.is_none())
        .then(|| driver.direct_sender())
        .flatten()
        .map(|sender| Direct {
            sender,
            tx: Mutex::new(DirectTx::default()),
        });
        let shared = Arc::new(Shared {
            core: Mutex::new(Core::new(
                endpoint,
                simulator,
                local_addr,
                max_datagram,
                driver.uses_peer_hooks(),
            )),
            mailbox: Mutex::new(Mailbox::default()),
            events: Mutex::new(VecDeque::new()),
            events_ready: Condvar::new(),
            waker: driver.waker(),
            dirty: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            coalescing: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            waiters: AtomicUsize::new(0),
            ready_sleepers: AtomicUsize::new(0),
            last_update_ms: AtomicU64::new(0),
            epoch: start,
            tick_sleeper: desc.thread_mode == ThreadMode::Dedicated
                && !desc.thread_instant_response,
            tick: Mutex::new(false),
            tick_cv: Condvar::new(),
            direct,
            planned: AtomicU64::new(u64::MAX),
        });
        tracing::info!(%local_addr, seed, mode = ?settings.mode, "carrier created");
        let io = Io::new(driver);
        let carrier = match settings.mode {
            ThreadMode::Manual => Carrier {
                shared,
                settings,
                io: Some(Mutex::new(io)),
                thread: Mutex::new(None),
                shut_down: AtomicBool::new(false),
            },
            ThreadMode::Dedicated => {
                let thread_shared = Arc::clone(&shared);
                let cfg = ThreadConfig {
                    cpu: desc.thread_cpu_id,
                    priority: desc.thread_priority,
                    tick: Duration::from_millis(u64::from(desc.thread_update_time_ms)),
                    instant: desc.thread_instant_response,
                    coalesce: Duration::from_micros(u64::from(desc.thread_receive_coalescing_us)),
                    connection_timeout: settings.connection_timeout,
                    shutdown_timeout: settings.shutdown_timeout,
                };
                let handle = std::thread::Builder::new()
                    .name("carrier".into())
                    .spawn(move || carrier_thread(io, &thread_shared, cfg))
                    .map_err(|e| {
                        crate::driver::DriverError::new(crate::driver::DriverErrorCode::Platform, e)
                    })?;
                Carrier {
                    shared,
                    settings,
                    io: None,
                    thread: Mutex::new(Some(handle)),
                    shut_down: AtomicBool::new(false),
                }
            }
        };
        Ok(carrier)
    }

    fn mark_alive(&self) {
        self.mark_alive_at(now());
    }

    fn mark_alive_at(&self, t: Instant) {
        let ms = t.saturating_duration_since(self.shared.epoch).as_millis() as u64;
        self.shared.last_update_ms.store(ms, Ordering::Relaxed);
    }

    /// Call once per frame. Manual mode: does the I/O (receive, timers, send). Dedicated mode:
    /// tells the carrier thread the game is alive (the update watchdog). Events and messages are
    /// then read with [`poll_event`](Self::poll_event) and [`poll_message`](Self::poll_message)
    /// or [`receive`](Self::receive).
    pub fn update(&self) {
        let t = now();
        match &self.io {
            Some(io) => {
                // Manual mode: no carrier thread, so no watchdog reads `last_update_ms`.
                lock(io).turn(&self.shared, t);
            }
            None => self.mark_alive_at(t),
        }
    }

    /// Starts connecting to `addr` ("host:port", names are resolved). The outcome arrives as
    /// [`CarrierEvent::ConnectionEstablished`] or [`CarrierEvent::FailedToConnect`].
    pub fn connect(&self, addr: &str) -> Result<ConnectionId, ConnectError> {
        if self.shut_down.load(Ordering::SeqCst) {
            return Err(ConnectError::ShutDown);
        }
        let target = self.resolve(addr)?;
        let id = {
            let mut core = lock(&self.shared.core);
            let id = core.endpoint.connect(now(), target)?;
            core.announce(id, target);
            id
        };
        self.shared.poke();
        Ok(id)
    }

    /// Starts connecting to a socket address.
    pub fn connect_addr(&self, addr: SocketAddr) -> Result<ConnectionId, ConnectError> {
        self.connect(&addr.to_string())
    }

    fn resolve(&self, addr: &str) -> Result<SocketAddr, ConnectError> {
        let fail = |reason: String| ConnectError::Resolve {
            address: addr.to_string(),
            reason,
        };
        let candidates: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| fail(e.to_string()))?
            .collect();
        let pick = match self.settings.family {
            FamilyType::Ipv4 => candidates.iter().find(|a| a.is_ipv4()).copied(),
            FamilyType::Ipv6 => candidates.iter().find(|a| a.is_ipv6()).copied(),
            // A dual-stack socket sees IPv4 peers as IPv4-mapped IPv6 addresses.
            FamilyType::DualStack => candidates.first().map(|a| match a.ip() {
                IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
                IpAddr::V6(_) => *a,
            }),
        };
        pick.ok_or_else(|| fail(format!("no {:?} address", self.settings.family)))
    }

    /// Closes a connection; the peer learns [`DisconnectReason::UserRequested`]. The
    /// [`CarrierEvent::Disconnect`] (or `FailedToConnect`) event follows.
    pub fn disconnect(&self, id: ConnectionId) {
        lock(&self.shared.core)
            .endpoint
            .disconnect(now(), id, DisconnectReason::UserRequested);
        self.shared.poke();
    }

    /// Closes every connection.
    pub fn disconnect_all(&self) {
        {
            let mut core = lock(&self.shared.core);
            let ids: Vec<ConnectionId> = core.endpoint.connection_ids().collect();
            let t = now();
            for id in ids {
                core.endpoint
                    .disconnect(t, id, DisconnectReason::UserRequested);
            }
        }
        self.shared.poke();
    }

    /// Queues a message (copied) for `target`: one connection, or every connected one.
    ///
    /// Errors: unknown connection, not connected, invalid channel, too large for the agreed
    /// maximum message size, send queue full. For [`Target::AllConnected`] the message goes to
    /// every connected connection and the first error, if any, is returned after all were tried.
    ///
    /// To one connection the payload is copied into a buffer shared with other messages and
    /// reused once they are acknowledged, so a steady flow of sends allocates nothing
    /// ([`Endpoint::send_copy`](carrier_proto::Endpoint::send_copy)); to every connected one
    /// it is copied once and shared.
    pub fn send(
        &self,
        target: impl Into<Target>,
        payload: &[u8],
        reliability: Reliability,
        priority: Priority,
        channel: impl Into<ChannelId>,
    ) -> Result<(), SendError> {
        let channel = channel.into();
        match target.into() {
            Target::Connection(id) => {
                let mut core = lock(&self.shared.core);
                // Direct send only for an answer on an idle path (see `try_direct`): a stream
                // of sends never touches the transmit lock, which the carrier thread holds
                // while it sends. Trying it with the core lock held cannot deadlock (the
                // carrier thread takes tx, then core), as a try never waits.
                let idle = self.shared.direct.is_some() && path_idle(&core.endpoint, id);
                core.endpoint
                    .send_copy(id, channel, priority, reliability, payload)?;
                if idle && let Some((direct, tx)) = self.try_direct() {
                    self.shared.send_direct(direct, tx, core);
                    return Ok(());
                }
                let wake = idle || self.should_wake(&core.endpoint, id);
                drop(core);
                if wake {
                    self.shared.poke();
                }
                Ok(())
            }
            all => self.send_bytes(
                all,
                Bytes::copy_from_slice(payload),
                reliability,
                priority,
                channel,
            ),
        }
    }

    /// Like [`send`](Self::send), without copying the payload.
    pub fn send_bytes(
        &self,
        target: impl Into<Target>,
        payload: Bytes,
        reliability: Reliability,
        priority: Priority,
        channel: impl Into<ChannelId>,
    ) -> Result<(), SendError> {
        let channel = channel.into();
        // With direct send, the transmit lock comes first (lock order: tx, then core).
        let tx = self.try_direct();
        let (wake, result) = {
            let mut core = lock(&self.shared.core);
            // Direct send only when every target's path is idle (see `try_direct`).
            let mut idle = true;
            let (wake, result) = match target.into() {
                Target::Connection(id) => {
                    idle = path_idle(&core.endpoint, id);
                    core.endpoint
                        .send(id, channel, priority, reliability, payload)?;
                    (self.should_wake(&core.endpoint, id), Ok(()))
                }
                Target::AllConnected => {
                    let ids: Vec<ConnectionId> = core
                        .endpoint
                        .connection_ids()
                        .filter(|id| {
                            core.endpoint
                                .connection(*id)
                                .is_some_and(|c| c.is_connected())
                        })
                        .collect();
                    let mut first_error = None;
                    let mut wake = false;
                    for id in ids {
                        idle &= path_idle(&core.endpoint, id);
                        match core.endpoint.send(
                            id,
                            channel,
                            priority,
                            reliability,
                            payload.clone(),
                        ) {
                            Ok(()) => wake |= self.should_wake(&core.endpoint, id),
                            Err(e) => {
                                first_error.get_or_insert(e);
                            }
                        }
                    }
                    (wake, first_error.map_or(Ok(()), Err))
                }
            };
            match tx {
                Some((direct, tx)) if wake && idle => {
                    self.shared.send_direct(direct, tx, core);
                    (false, result)
                }
                _ => (wake, result),
            }
        };
        if wake {
            self.shared.poke();
        }
        result
    }

    /// The transmit lock of direct send, if direct send is on and the lock is free (see
    /// `CarrierDesc::thread_instant_response`). A busy lock means another thread is sending:
    /// this send then leaves it to the carrier thread rather than waiting.
    ///
    /// Callers send directly only an answer: when the connection owes the peer an
    /// acknowledgement (it received since it last sent) and nothing it sent awaits one (the
    /// path is idle). In a request/response exchange the answer then leaves at once from the
    /// calling thread; a stream of sends (no ack owed, or the path busy) is left to the carrier
    /// thread as before, whose wake-up lets the messages queued meanwhile be packed into shared
    /// datagrams (a direct send per message would send a datagram per message).
    fn try_direct(&self) -> Option<(&Direct, MutexGuard<'_, DirectTx>)> {
        let direct = self.shared.direct.as_ref()?;
        match direct.tx.try_lock() {
            Ok(tx) => Some((direct, tx)),
            Err(TryLockError::Poisoned(p)) => Some((direct, p.into_inner())),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Send batching (`send_batch_packet_count`): 0 wakes the carrier thread on every send;
    /// N wakes it once N full datagrams are queued, otherwise data leaves on the next tick.
    fn should_wake(&self, endpoint: &Endpoint, id: ConnectionId) -> bool {
        if self.settings.mode == ThreadMode::Manual {
            return false;
        }
        self.settings.batch_bytes == 0
            || endpoint
                .connection(id)
                .is_some_and(|c| c.queued_bytes() >= self.settings.batch_bytes)
    }

    fn check_channel(&self, channel: ChannelId) -> Result<(), ReceiveError> {
        if channel.get() >= self.settings.channel_count {
            Err(ReceiveError::InvalidChannel(channel))
        } else {
            Ok(())
        }
    }

    /// The next whole message of a connection's channel, if any.
    pub fn receive(&self, id: ConnectionId, channel: impl Into<ChannelId>) -> Option<Bytes> {
        let channel = channel.into();
        lock(&self.shared.mailbox)
            .pop(id, channel.get())
            .map(|m| m.payload)
    }

    /// Copies the next message of a connection's channel into `buf` without allocating;
    /// `Ok(None)` when there is none, `BufferTooSmall` (the message stays queued) when it does
    /// not fit.
    pub fn receive_into(
        &self,
        id: ConnectionId,
        channel: impl Into<ChannelId>,
        buf: &mut [u8],
    ) -> Result<Option<usize>, ReceiveError> {
        let channel = channel.into();
        self.check_channel(channel)?;
        let mut mailbox = lock(&self.shared.mailbox);
        let Some(needed) = mailbox.peek_len(id, channel.get()) else {
            return Ok(None);
        };
        if needed > buf.len() {
            return Err(ReceiveError::BufferTooSmall {
                needed,
                len: buf.len(),
            });
        }
        let Some(m) = mailbox.pop(id, channel.get()) else {
            return Ok(None);
        };
        buf[..needed].copy_from_slice(&m.payload);
        Ok(Some(needed))
    }

    /// The next message of any connection and channel, in delivery order.
    pub fn poll_message(&self) -> Option<(ConnectionId, Message)> {
        lock(&self.shared.mailbox).pop_any()
    }

    /// Moves up to `max` received messages of any connection and channel, in delivery order,
    /// to the end of `out`, and returns how many it moved: [`poll_message`](Self::poll_message)
    /// for a frame loop that handles everything that arrived, with one lock of the mailbox
    /// for all of them instead of one per message (the carrier thread takes the same lock to
    /// deliver). `out` keeps its capacity from frame to frame, so this allocates nothing once
    /// it has grown.
    ///
    /// ```
    /// # use carrier::{Carrier, CarrierDesc};
    /// # let carrier = Carrier::new(CarrierDesc::default()).unwrap();
    /// let mut inbox = Vec::with_capacity(256);
    /// // Once per frame:
    /// carrier.poll_messages(&mut inbox, 256);
    /// for (from, message) in inbox.drain(..) {
    ///     println!("{} bytes from {from}", message.payload.len());
    /// }
    /// ```
    pub fn poll_messages(&self, out: &mut Vec<(ConnectionId, Message)>, max: usize) -> usize {
        let mut mailbox = lock(&self.shared.mailbox);
        let before = out.len();
        out.reserve(max.min(mailbox.len()));
        out.extend(std::iter::from_fn(|| mailbox.pop_any()).take(max));
        out.len() - before
    }

    /// Blocks until a message of any connection and channel arrives or `timeout` passes, and
    /// returns it (in manual mode it drives the I/O meanwhile). For servers and tools without a
    /// frame loop; events keep queueing for [`poll_event`](Self::poll_event).
    pub fn wait_message(&self, timeout: Duration) -> Option<(ConnectionId, Message)> {
        self.wait_for(timeout, |_| lock(&self.shared.mailbox).pop_any())
    }

    /// Blocks until `take` finds something or `timeout` passes; `take` is called with the event
    /// queue locked. Manual mode drives the I/O meanwhile; dedicated mode sleeps on
    /// `events_ready`, which the carrier thread signals after filling the mailbox or the event
    /// queue when a thread waits here (counted in `ready_sleepers` before the first check),
    /// taking the event lock first, so checking under that lock cannot miss a wake-up
    /// (`Shared::notify_ready`).
    fn wait_for<T>(
        &self,
        timeout: Duration,
        mut take: impl FnMut(&mut VecDeque<CarrierEvent>) -> Option<T>,
    ) -> Option<T> {
        let deadline = now() + timeout;
        self.mark_alive();
        // A game blocked here is not stalled: the watchdog leaves it alone meanwhile.
        let _waiting = Waiting::new(&self.shared);
        if let Some(io) = &self.io {
            loop {
                let t = now();
                let next = lock(io).turn(&self.shared, t);
                if let Some(x) = take(&mut lock(&self.shared.events)) {
                    return Some(x);
                }
                if t >= deadline {
                    return None;
                }
                let until = next.map_or(deadline, |n| n.min(deadline));
                lock(io).wait(&self.shared, Some(until), now(), true);
            }
        }
        // Counted before the first look, so a publisher that queues after it notifies.
        // (see `Shared::notify_ready`)
        let _sleeping = Counted::new(&self.shared.ready_sleepers);
        // A carrier thread coalescing receives lets datagrams wait in the socket: not while a
        // game thread waits for them.
        if self.shared.coalescing.load(Ordering::SeqCst) {
            self.shared.poke();
        }
        let mut events = lock(&self.shared.events);
        loop {
            if let Some(x) = take(&mut events) {
                return Some(x);
            }
            let left = deadline.saturating_duration_since(now());
            if left.is_zero() {
                return None;
            }
            events = self
                .shared
                .events_ready
                .wait_timeout(events, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Messages waiting to be received.
    pub fn pending_messages(&self) -> usize {
        lock(&self.shared.mailbox).len()
    }

    /// The next event, if any.
    pub fn poll_event(&self) -> Option<CarrierEvent> {
        self.mark_alive();
        crate::runtime::pop_event(&mut lock(&self.shared.events))
    }

    /// Blocks until an event arrives or `timeout` passes (in manual mode it drives the I/O
    /// meanwhile). For tools and servers without a frame loop.
    pub fn wait_event(&self, timeout: Duration) -> Option<CarrierEvent> {
        self.wait_for(timeout, crate::runtime::pop_event)
    }

    /// Statistics of a connection (last second and lifetime, all and effective data, RTT,
    /// flow).
    pub fn statistics(&self, id: ConnectionId) -> Option<Statistics> {
        let t = now();
        let mut stats = lock(&self.shared.core)
            .endpoint
            .connection(id)
            .map(|c| c.statistics(t))?;
        stats.flow.received_messages = lock(&self.shared.mailbox).connection_len(id);
        Some(stats)
    }

    /// A connection's state ([`ConnectionState::Disconnected`] once it is gone).
    pub fn connection_state(&self, id: ConnectionId) -> ConnectionState {
        lock(&self.shared.core)
            .endpoint
            .connection(id)
            .map_or(ConnectionState::Disconnected, |c| c.state())
    }

    /// The peer address of a connection.
    pub fn remote_addr(&self, id: ConnectionId) -> Option<SocketAddr> {
        lock(&self.shared.core)
            .endpoint
            .connection(id)
            .map(|c| c.remote_addr())
    }

    /// Unreliable messages of a connection dropped before sending because they could not leave
    /// within the unreliable TTL (congestion, pacing).
    pub fn expired_unreliable(&self, id: ConnectionId) -> Option<u64> {
        lock(&self.shared.core)
            .endpoint
            .connection(id)
            .map(|c| c.expired_unreliable())
    }

    /// Every connection (any state).
    pub fn connections(&self) -> Vec<ConnectionId> {
        lock(&self.shared.core).endpoint.connection_ids().collect()
    }

    /// Datagrams the protocol dropped, by reason (malformed, duplicate, unknown connection,
    /// spoofed connect requests...).
    pub fn drop_counters(&self) -> carrier_proto::DropCounters {
        lock(&self.shared.core).endpoint.drops().clone()
    }

    /// The bound local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.settings.local_addr
    }

    /// The bound local port.
    pub fn port(&self) -> u16 {
        self.settings.local_addr.port()
    }

    /// The largest message that travels in one datagram unsplit, for this carrier's datagram
    /// size (a connection to a peer with smaller datagrams may have a smaller one:
    /// [`connection_message_mtu`](Self::connection_message_mtu)).
    pub fn message_mtu(&self) -> usize {
        self.settings.message_mtu
    }

    /// The message MTU agreed with one connection's peer.
    pub fn connection_message_mtu(&self, id: ConnectionId) -> Option<usize> {
        lock(&self.shared.core)
            .endpoint
            .connection(id)
            .map(|c| c.message_mtu())
    }

    /// Turns disconnect detection (timeouts) on or off at runtime (the original's
    /// `DebugEnableDisconnectDetection`).
    pub fn set_disconnect_detection(&self, enabled: bool) {
        lock(&self.shared.core)
            .endpoint
            .set_timeouts_enabled(now(), enabled);
        self.shared.poke();
    }

    /// Runs `f` on the simulator, if one is configured (to change its settings at runtime).
    pub fn with_simulator<R>(
        &self,
        f: impl FnOnce(&mut dyn carrier_sim::Simulator) -> R,
    ) -> Option<R> {
        let mut core = lock(&self.shared.core);
        core.simulator.as_mut().map(|sim| f(sim.as_mut()))
    }

    /// Sends disconnects (`ShuttingDown`) to every peer, waits for them to be delivered (at most
    /// `shutdown_timeout_ms`) and stops the carrier thread. Idempotent; also done on drop.
    pub fn shutdown(&self) {
        if self.shut_down.swap(true, Ordering::SeqCst) {
            return;
        }
        lock(&self.shared.core).endpoint.shutdown(now());
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        self.shared.wake();
        if let Some(io) = &self.io {
            let deadline = now() + self.settings.shutdown_timeout;
            loop {
                let t = now();
                let next = lock(io).turn(&self.shared, t);
                let left = lock(&self.shared.core).endpoint.busy_connections();
                if left == 0 || t >= deadline {
                    break;
                }
                let until = next.map_or(deadline, |n| n.min(deadline));
                lock(io).wait(&self.shared, Some(until), now(), true);
            }
        }
        if let Some(handle) = lock(&self.thread).take() {
            // The thread exits within the shutdown timeout; a panic inside it is reported, not
            // propagated.
            if handle.join().is_err() {
                tracing::error!("the carrier thread panicked");
            }
        }
        tracing::info!(local_addr = %self.settings.local_addr, "carrier shut down");
    }
}

impl Drop for Carrier {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Direct send's rule (see `Carrier::try_direct`): the connection owes an acknowledgement and
/// nothing it sent awaits one.
fn path_idle(endpoint: &Endpoint, id: ConnectionId) -> bool {
    endpoint
        .connection(id)
        .is_some_and(|c| c.owes_ack() && c.bytes_in_flight() == 0)
}

/// Counts the calling thread in an atomic counter while it lives.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Counted(counter)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts a thread blocked in `wait_event` (in `waiters`), and marks the game alive when it
/// leaves.
struct Waiting<'a> {
    shared: &'a Shared,
    _counted: Counted<'a>,
}

impl<'a> Waiting<'a> {
    fn new(shared: &'a Shared) -> Self {
        Waiting {
            shared,
            _counted: Counted::new(&shared.waiters),
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let ms = now()
            .saturating_duration_since(self.shared.epoch)
            .as_millis() as u64;
        self.shared.last_update_ms.store(ms, Ordering::Relaxed);
    }
}

/// Datagrams a coalescing window must gather on average for coalescing to pay: below, the
/// timer wake-ups that end the windows cost more than the wake-ups by datagrams they save
/// (measured: 2,000 datagrams a second over 100 connections cost 40 % more CPU with 1 ms windows,
/// 20,000 over 1,000 connections about half).
const COALESCE_MIN_PER_WINDOW: u64 = 4;

/// The carrier thread's estimate of how densely datagrams arrive, over periods of at least
/// [`Self::MIN_PERIOD`] (and two windows).
struct ArrivalRate {
    window: Duration,
    period: Duration,
    since: Instant,
    count: u64,
    dense: bool,
}

impl ArrivalRate {
    const MIN_PERIOD: Duration = Duration::from_millis(10);

    fn new(now: Instant, window: Duration) -> Self {
        ArrivalRate {
            window,
            period: (window * 2).max(Self::MIN_PERIOD),
            since: now,
            count: 0,
            dense: false,
        }
    }

    /// Counts `received` datagrams at `now`; returns whether the last full period saw at least
    /// [`COALESCE_MIN_PER_WINDOW`] per window (always `false` with coalescing off).
    fn record(&mut self, now: Instant, received: usize) -> bool {
        if self.window.is_zero() {
            return false;
        }
        self.count += received as u64;
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed >= self.period {
            let windows = (elapsed.as_nanos() / self.window.as_nanos().max(1)).max(1);
            self.dense = u128::from(self.count) >= u128::from(COALESCE_MIN_PER_WINDOW) * windows;
            self.since = now;
            self.count = 0;
        }
        self.dense
    }
}

struct ThreadConfig {
    cpu: i32,
    priority: i32,
    tick: Duration,
    instant: bool,
    /// `CarrierDesc::thread_receive_coalescing_us` (zero: off).
    coalesce: Duration,
    connection_timeout: Duration,
    shutdown_timeout: Duration,
}

/// Turns the carrier thread takes, yielding the CPU in between, after a turn that received
/// dense traffic it could not coalesce, before it sleeps in the driver (see `carrier_thread`).
const YIELDS_BEFORE_SLEEP: u32 = 3;

fn carrier_thread(mut io: Io, shared: &Shared, cfg: ThreadConfig) {
    let mut setup_errors = Vec::new();
    if cfg.cpu >= 0
        && let Err(e) = crate::sys::pin_to_cpu(cfg.cpu as usize)
    {
        setup_errors.push(e);
    }
    if cfg.priority != INHERIT_PRIORITY
        && let Err(e) = crate::sys::set_nice(cfg.priority)
    {
        setup_errors.push(e);
    }
    if !setup_errors.is_empty() {
        let mut events = lock(&shared.events);
        for message in setup_errors {
            tracing::warn!(%message, "carrier thread setup failed");
            events.push_back(CarrierEvent::ThreadSetupFailed { message });
        }
        drop(events);
        shared.notify_ready();
    }
    let mut next_tick = now() + cfg.tick;
    let mut watchdog_fired_at: Option<u64> = None;
    let mut shutdown_deadline: Option<Instant> = None;
    let mut arrivals = ArrivalRate::new(now(), cfg.coalesce);
    let mut spins = 0u32;
    loop {
        let t = now();
        let deadline = io.turn(shared, t);
        // The update watchdog (original EC_UPDATE_TIMEOUT): once, until update() resumes.
        let since_epoch = t.saturating_duration_since(shared.epoch);
        if shared.waiters.load(Ordering::SeqCst) > 0 {
            shared
                .last_update_ms
                .store(since_epoch.as_millis() as u64, Ordering::Relaxed);
        }
        let last = shared.last_update_ms.load(Ordering::Relaxed);
        let silent = since_epoch.saturating_sub(Duration::from_millis(last));
        // The core lock only when the watchdog may fire (not on every turn).
        if silent > cfg.connection_timeout
            && watchdog_fired_at != Some(last)
            && lock(&shared.core).endpoint.timeouts_enabled()
        {
            watchdog_fired_at = Some(last);
            lock(&shared.events).push_back(CarrierEvent::SecurityError {
                id: None,
                error: SecurityError::UpdateTimeout,
            });
            shared.notify_ready();
        }
        if shared.shutting_down.load(Ordering::SeqCst) {
            let end = *shutdown_deadline.get_or_insert(t + cfg.shutdown_timeout);
            let left = lock(&shared.core).endpoint.busy_connections();
            if left == 0 || t >= end {
                break;
            }
        }
        if t >= next_tick {
            next_tick = t + cfg.tick;
        }
        let mut until = if cfg.instant {
            deadline.map_or(next_tick, |d| d.min(next_tick))
        } else {
            next_tick
        };
        if let Some(end) = shutdown_deadline {
            until = until.min(end);
        }
        // Wake up in time for the watchdog as well.
        let watchdog = shared.epoch + Duration::from_millis(last) + cfg.connection_timeout;
        if watchdog > t {
            until = until.min(watchdog + Duration::from_millis(1));
        }
        // Receive coalescing (see `CarrierDesc::thread_receive_coalescing_us`): not while a
        // game thread is blocked waiting for what arrives (`wait_for` cuts one short that was
        // under way when it began to wait). Deadlines due meanwhile wait for the window's end
        // too: with many connections their timers (acknowledgement delays, keep-alives) are
        // due every few microseconds, and a turn for each would undo the coalescing.
        // Only while datagrams arrive densely enough for a window to gather several: a wake-up
        // by the window's timer costs more than one by an arriving datagram.
        let dense = arrivals.record(t, io.received());
        let coalesced = cfg.instant
            && dense
            && io.coalescible()
            && io.wait_coalescing(shared, t + cfg.coalesce, now());
        // Dense traffic that may not be coalesced (it asked for answers, or for prompt
        // acknowledgements): the next datagram is most likely a few microseconds away, and on
        // these machines a sleep in the driver and the wake-up that ends it cost more than
        // handing the CPU to the other threads once and looking again. At most
        // YIELDS_BEFORE_SLEEP times in a row, then the thread sleeps as usual.
        if coalesced {
            spins = 0;
        } else if cfg.instant && dense && io.received() > 0 && spins < YIELDS_BEFORE_SLEEP {
            spins += 1;
            std::thread::yield_now();
        } else {
            spins = 0;
            io.wait(shared, Some(until), now(), cfg.instant);
        }
    }
    tracing::debug!("carrier thread exits");
}
