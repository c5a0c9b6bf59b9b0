//! The `Driver` trait carries a transport that is not UDP: an in-memory network whose drivers
//! have their own timer (a periodic "maintenance" deadline, as DTLS retransmission timers),
//! per-peer state created and dropped by the carrier's hooks, and a Condvar-based waker. Two
//! carriers connect over it, exchange messages and disconnect; the hooks are called with the
//! right addresses and the carrier thread folds the driver's deadline into its wait.

mod common;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use carrier::driver::{Driver, DriverError, DriverErrorCode, Outgoing, RecvMeta, Wake};
use carrier::{
    Carrier, CarrierDesc, CarrierEvent, ConnectionId, DisconnectReason, Priority, Reliability,
    ThreadMode,
};
use common::{now, pump_until};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One driver's inbox on the in-memory network.
#[derive(Default)]
struct Port {
    inbox: Mutex<Inbox>,
    ready: Condvar,
}

#[derive(Default)]
struct Inbox {
    queue: VecDeque<(SocketAddr, Vec<u8>)>,
    woken: bool,
}

impl Port {
    fn post(&self, from: SocketAddr, datagram: &[u8]) {
        lock(&self.inbox).queue.push_back((from, datagram.to_vec()));
        self.ready.notify_all();
    }

    fn wake(&self) {
        lock(&self.inbox).woken = true;
        self.ready.notify_all();
    }
}

/// The in-memory network: an inbox per address.
#[derive(Default)]
struct Net {
    ports: Mutex<HashMap<SocketAddr, Arc<Port>>>,
}

/// What a driver observed, shared with the test.
#[derive(Debug, Default)]
struct Log {
    connected: Vec<SocketAddr>,
    disconnected: Vec<SocketAddr>,
    timer_fires: u64,
    datagrams_sent: u64,
    datagrams_received: u64,
    largest_batch: usize,
    /// Most datagrams one batch entry held (a GSO super-buffer when above 1).
    most_segments: usize,
    /// Per-peer counters moved here when the session ended: (peer, sent, received).
    closed_sessions: Vec<(SocketAddr, u64, u64)>,
    /// Peers with a session now.
    open_sessions: Vec<SocketAddr>,
    /// Datagrams to peers without a session (the stateless cookie exchange has some).
    sent_without_session: u64,
}

/// Per-peer state, created by `on_peer_connected`, dropped by `on_peer_disconnected`.
#[derive(Debug, Default)]
struct Session {
    sent: u64,
    received: u64,
}

struct CountingWake {
    port: Arc<Port>,
    wakes: Arc<AtomicU64>,
}

impl Wake for CountingWake {
    fn wake(&self) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.port.wake();
    }
}

struct MemDriver {
    addr: SocketAddr,
    net: Arc<Net>,
    port: Arc<Port>,
    log: Arc<Mutex<Log>>,
    wakes: Arc<AtomicU64>,
    period: Duration,
    next_timer: Instant,
    sessions: HashMap<SocketAddr, Session>,
}

/// The test's view of one driver.
struct Probe {
    addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    wakes: Arc<AtomicU64>,
}

impl Probe {
    fn log(&self) -> MutexGuard<'_, Log> {
        lock(&self.log)
    }
}

fn mem_driver(net: &Arc<Net>, addr: &str, period: Duration) -> (Box<MemDriver>, Probe) {
    let addr: SocketAddr = addr.parse().unwrap();
    let port = Arc::new(Port::default());
    lock(&net.ports).insert(addr, Arc::clone(&port));
    let log = Arc::new(Mutex::new(Log::default()));
    let wakes = Arc::new(AtomicU64::new(0));
    let driver = MemDriver {
        addr,
        net: Arc::clone(net),
        port,
        log: Arc::clone(&log),
        wakes: Arc::clone(&wakes),
        period,
        next_timer: now() + period,
        sessions: HashMap::new(),
    };
    (Box::new(driver), Probe { addr, log, wakes })
}

impl Driver for MemDriver {
    fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn max_payload(&self) -> usize {
        1_300
    }

    fn send(
        &mut self,
        _now: Instant,
        batch: &[Outgoing<'_>],
        failed: &mut dyn FnMut(SocketAddr, DriverError),
    ) {
        let mut log = lock(&self.log);
        let datagrams: usize = batch.iter().map(|o| o.datagrams().count()).sum();
        log.largest_batch = log.largest_batch.max(datagrams);
        for out in batch {
            log.most_segments = log.most_segments.max(out.datagrams().count());
            let Some(port) = lock(&self.net.ports).get(&out.to).cloned() else {
                failed(
                    out.to,
                    DriverError::new(DriverErrorCode::Send, "no such address"),
                );
                continue;
            };
            for datagram in out.datagrams() {
                assert!(datagram.len() <= self.max_payload(), "oversized datagram");
                match self.sessions.get_mut(&out.to) {
                    Some(s) => s.sent += 1,
                    None => log.sent_without_session += 1,
                }
                log.datagrams_sent += 1;
                port.post(self.addr, datagram);
            }
        }
    }

    fn recv(
        &mut self,
        _now: Instant,
        bufs: &mut [Vec<u8>],
        metas: &mut [RecvMeta],
    ) -> Result<usize, DriverError> {
        let mut inbox = lock(&self.port.inbox);
        let mut n = 0;
        while n < bufs.len().min(metas.len()) {
            let Some((from, datagram)) = inbox.queue.pop_front() else {
                break;
            };
            let len = datagram.len().min(bufs[n].len());
            bufs[n][..len].copy_from_slice(&datagram[..len]);
            metas[n] = RecvMeta {
                from,
                len,
                segment_size: len,
            };
            if let Some(s) = self.sessions.get_mut(&from) {
                s.received += 1;
            }
            n += 1;
        }
        lock(&self.log).datagrams_received += n as u64;
        Ok(n)
    }

    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), DriverError> {
        let mut inbox = lock(&self.port.inbox);
        if inbox.queue.is_empty() && !inbox.woken {
            inbox = match timeout {
                Some(t) => {
                    self.port
                        .ready
                        .wait_timeout(inbox, t)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
                None => self
                    .port
                    .ready
                    .wait(inbox)
                    .unwrap_or_else(|p| p.into_inner()),
            };
        }
        inbox.woken = false;
        Ok(())
    }

    fn waker(&self) -> Arc<dyn Wake> {
        Arc::new(CountingWake {
            port: Arc::clone(&self.port),
            wakes: Arc::clone(&self.wakes),
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_timer)
    }

    fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_timer {
            lock(&self.log).timer_fires += 1;
            self.next_timer = now + self.period;
        }
    }

    fn on_peer_connected(&mut self, peer: SocketAddr) {
        self.sessions.entry(peer).or_default();
        let mut log = lock(&self.log);
        log.connected.push(peer);
        log.open_sessions = self.sessions.keys().copied().collect();
    }

    fn on_peer_disconnected(&mut self, peer: SocketAddr) {
        let mut log = lock(&self.log);
        log.disconnected.push(peer);
        if let Some(s) = self.sessions.remove(&peer) {
            log.closed_sessions.push((peer, s.sent, s.received));
        }
        log.open_sessions = self.sessions.keys().copied().collect();
    }
}

const SERVER: &str = "198.18.0.1:1";
const CLIENT: &str = "198.18.0.2:1";
/// The drivers' maintenance period: well below the carrier tick of 100 ms.
const PERIOD: Duration = Duration::from_millis(20);

fn mem_desc(driver: Box<MemDriver>, mode: ThreadMode) -> CarrierDesc {
    CarrierDesc {
        driver: Some(driver),
        thread_mode: mode,
        thread_update_time_ms: 100,
        // Every wait in the driver, so that the test sees the driver's waker used (a carrier
        // thread coalescing receives sleeps outside the driver and is woken elsewhere).
        thread_receive_coalescing_us: 0,
        ..CarrierDesc::default()
    }
}

/// Two carriers over the in-memory network, connected.
struct Pair {
    server: Carrier,
    client: Carrier,
    server_probe: Probe,
    client_probe: Probe,
    cid: ConnectionId,
    sid: ConnectionId,
}

fn pair(mode: ThreadMode) -> Pair {
    let net = Arc::new(Net::default());
    let (sd, server_probe) = mem_driver(&net, SERVER, PERIOD);
    let (cd, client_probe) = mem_driver(&net, CLIENT, PERIOD);
    let server = Carrier::new(mem_desc(sd, mode)).unwrap();
    let client = Carrier::new(mem_desc(cd, mode)).unwrap();
    assert_eq!(server.local_addr(), server_probe.addr);
    assert_eq!(client.local_addr(), client_probe.addr);
    // The protocol sizes its datagrams from the driver's payload.
    assert_eq!(client.message_mtu(), carrier_proto::message_mtu(1_300));
    let (cid, sid) = common::connect(&server, &client);
    assert_eq!(server.remote_addr(sid), Some(client_probe.addr));
    Pair {
        server,
        client,
        server_probe,
        client_probe,
        cid,
        sid,
    }
}

/// Connect, exchange, disconnect; checks the acceptor's hooks and the traffic.
fn exchange_and_disconnect(mode: ThreadMode) -> Pair {
    let p = pair(mode);
    let (server, client) = (&p.server, &p.client);
    // 50 round trips, one after the other.
    let mut echoed = 0u32;
    client
        .send(
            p.cid,
            &0u32.to_be_bytes(),
            Reliability::Reliable,
            Priority::Normal,
            0,
        )
        .unwrap();
    let started = now();
    let ok = pump_until(&[server, client], Duration::from_secs(5), || {
        while let Some(m) = server.receive(p.sid, 0) {
            server
                .send(p.sid, &m, Reliability::Reliable, Priority::Normal, 0)
                .unwrap();
        }
        while let Some(m) = client.receive(p.cid, 0) {
            assert_eq!(&m[..], &echoed.to_be_bytes());
            echoed += 1;
            if echoed < 50 {
                client
                    .send(
                        p.cid,
                        &echoed.to_be_bytes(),
                        Reliability::Reliable,
                        Priority::Normal,
                        0,
                    )
                    .unwrap();
            }
        }
        echoed == 50
    });
    assert!(ok, "{echoed} of 50 round trips");
    // Without working wake-ups each send would wait for the 100 ms tick: 50 round trips would
    // take 5 s or more.
    let took = now() - started;
    assert!(
        took < Duration::from_secs(3),
        "50 round trips took {took:?}"
    );
    if mode == ThreadMode::Dedicated {
        assert!(
            p.client_probe.wakes.load(Ordering::SeqCst) > 0,
            "the carrier never used the driver's waker"
        );
    }

    // The acceptor created a session for the client, and the traffic went through it.
    {
        let log = p.server_probe.log();
        assert_eq!(
            log.connected,
            vec![p.client_probe.addr],
            "server hooks: {log:?}"
        );
        assert!(log.disconnected.is_empty());
        assert!(
            log.datagrams_sent >= 50 && log.datagrams_received >= 50,
            "{log:?}"
        );
    }

    // Disconnect: both sides report it.
    client.disconnect(p.cid);
    let mut reasons = (None, None);
    let ok = pump_until(&[server, client], Duration::from_secs(5), || {
        while let Some(e) = client.poll_event() {
            if let CarrierEvent::Disconnect { reason, .. } = e {
                reasons.0 = Some(reason);
            }
        }
        while let Some(e) = server.poll_event() {
            if let CarrierEvent::Disconnect { reason, .. } = e {
                reasons.1 = Some(reason);
            }
        }
        reasons.0.is_some() && reasons.1.is_some()
    });
    assert!(ok, "{reasons:?}");
    assert_eq!(
        reasons,
        (
            Some(DisconnectReason::UserRequested),
            Some(DisconnectReason::UserRequested)
        )
    );
    // Let the hooks run (they follow the events by one turn).
    pump_until(&[server, client], Duration::from_millis(700), || {
        !p.server_probe.log().disconnected.is_empty() && server.connections().is_empty()
    });
    {
        let log = p.server_probe.log();
        assert_eq!(
            log.disconnected,
            vec![p.client_probe.addr],
            "server hooks: {log:?}"
        );
        assert!(log.open_sessions.is_empty(), "{log:?}");
        let (peer, sent, received) = log.closed_sessions[0];
        assert_eq!(peer, p.client_probe.addr);
        assert!(
            sent >= 50 && received >= 50,
            "the session saw the traffic: {log:?}"
        );
    }
    p
}

#[test]
fn in_memory_driver_carries_a_connection_threaded() {
    exchange_and_disconnect(ThreadMode::Dedicated);
}

#[test]
fn in_memory_driver_carries_a_connection_manual() {
    exchange_and_disconnect(ThreadMode::Manual);
}

#[test]
fn initiator_driver_gets_both_peer_hooks() {
    let p = exchange_and_disconnect(ThreadMode::Dedicated);
    let log = p.client_probe.log();
    assert_eq!(
        log.connected,
        vec![p.server_probe.addr],
        "client hooks: {log:?}"
    );
    assert_eq!(
        log.disconnected,
        vec![p.server_probe.addr],
        "client hooks: {log:?}"
    );
    // The initiator has no stateless exchange: every datagram it sent went through a session.
    assert_eq!(log.sent_without_session, 0, "{log:?}");
}

#[test]
fn carrier_thread_folds_the_driver_deadline_into_its_wait() {
    // An idle carrier (no connection, so no protocol deadline) with a 100 ms tick: only the
    // driver's 20 ms deadline can wake it more often than 10 times a second.
    let net = Arc::new(Net::default());
    let (driver, probe) = mem_driver(&net, SERVER, PERIOD);
    let carrier = Carrier::new(mem_desc(driver, ThreadMode::Dedicated)).unwrap();
    let window = Duration::from_millis(1_500);
    let before = probe.log().timer_fires;
    let started = now();
    while now() - started < window {
        carrier.update();
        std::thread::sleep(Duration::from_millis(50));
    }
    let fires = probe.log().timer_fires - before;
    // Nominally 75; the tick alone would give at most 15.
    assert!(
        fires >= 30,
        "the driver's 20 ms timer fired {fires} times in {window:?}"
    );
}

#[test]
fn manual_mode_wait_event_folds_the_driver_deadline() {
    let net = Arc::new(Net::default());
    let (driver, probe) = mem_driver(&net, SERVER, PERIOD);
    let carrier = Carrier::new(mem_desc(driver, ThreadMode::Manual)).unwrap();
    // Nothing happens: wait_event drives the I/O for 1 s and returns nothing...
    assert_eq!(carrier.wait_event(Duration::from_secs(1)), None);
    // ...and meanwhile served the driver's timer.
    let fires = probe.log().timer_fires;
    assert!(
        fires >= 20,
        "the driver's 20 ms timer fired {fires} times in 1 s"
    );
}

#[test]
fn large_messages_are_sent_in_batches() {
    let p = pair(ThreadMode::Dedicated);
    let payload = common::pattern(5, 40 * 1024);
    p.client
        .send(p.cid, &payload, Reliability::Reliable, Priority::Normal, 0)
        .unwrap();
    let mut got = None;
    let ok = pump_until(&[&p.server, &p.client], Duration::from_secs(5), || {
        got = got.take().or_else(|| p.server.receive(p.sid, 0));
        got.is_some()
    });
    assert!(ok);
    common::assert_same_bytes(&got.unwrap(), &payload, "40 KiB over the in-memory driver");
    let log = p.client_probe.log();
    assert!(
        log.largest_batch > 1,
        "every send call carried one datagram: {log:?}"
    );
}

#[test]
fn same_size_datagrams_to_one_peer_are_grouped_for_gso() {
    let p = pair(ThreadMode::Dedicated);
    let payload = common::pattern(6, 40 * 1024);
    p.client
        .send(p.cid, &payload, Reliability::Reliable, Priority::Normal, 0)
        .unwrap();
    let ok = pump_until(&[&p.server, &p.client], Duration::from_secs(5), || {
        p.server.receive(p.sid, 0).is_some()
    });
    assert!(ok);
    let log = p.client_probe.log();
    // 32 full-size fragments to one peer: a driver should be able to send runs of them as one
    // GSO super-buffer.
    assert!(
        log.most_segments > 1,
        "no batch entry held more than one datagram: {log:?}"
    );
}
