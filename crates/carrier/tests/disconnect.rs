//! Disconnect reasons on both sides: a user's `disconnect(id)` (UserRequested), `shutdown()` and
//! drop (ShuttingDown), a peer that vanishes without a word (BadConnection within the connection
//! timeout), and no timeout at all with disconnect detection off.
//!
//! A peer "vanishes" through a [`Blackhole`] simulator: a pass-through whose switch the test
//! flips at run time, after which the carrier neither sends nor receives anything.

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use carrier::{
    Carrier, CarrierDesc, CarrierEvent, ConnectionId, ConnectionState, DisconnectReason, Priority,
    Reliability, Simulator, ThreadMode,
};
use carrier_sim::{Datagram, Direction, LinkStats};
use common::{connect, desc, desc6, expect_event, now, pump_until, shutdown_all};

/// Waits for `Disconnect` on `watched` and returns its reason.
fn disconnect_reason(
    carriers: &[&Carrier],
    watched: &Carrier,
    id: ConnectionId,
    limit: Duration,
) -> Option<DisconnectReason> {
    let mut log = Vec::new();
    let e = expect_event(carriers, watched, limit, &mut log, |e| {
        matches!(
            e,
            CarrierEvent::Disconnect { .. } | CarrierEvent::FailedToConnect { .. }
        )
    });
    match e {
        Some(CarrierEvent::Disconnect { id: got, reason }) => {
            assert_eq!(got, id, "{log:?}");
            Some(reason)
        }
        Some(other) => panic!("unexpected {other:?}"),
        None => None,
    }
}

fn user_disconnect(server_desc: CarrierDesc, client_desc: CarrierDesc, client_closes: bool) {
    let server = Carrier::new(server_desc).unwrap();
    let client = Carrier::new(client_desc).unwrap();
    let (cid, sid) = connect(&server, &client);
    let (closer, closer_id, peer, peer_id) = if client_closes {
        (&client, cid, &server, sid)
    } else {
        (&server, sid, &client, cid)
    };
    closer.disconnect(closer_id);
    let both = [&server, &client];
    let limit = Duration::from_secs(5);
    assert_eq!(
        disconnect_reason(&both, closer, closer_id, limit),
        Some(DisconnectReason::UserRequested),
        "the side that closed"
    );
    assert_eq!(
        disconnect_reason(&both, peer, peer_id, limit),
        Some(DisconnectReason::UserRequested),
        "the peer"
    );
    assert!(
        closer
            .send(closer_id, b"x", Reliability::Reliable, Priority::Normal, 0)
            .is_err(),
        "send after disconnect"
    );
    let gone = pump_until(&both, Duration::from_secs(3), || {
        server.connection_state(sid) == ConnectionState::Disconnected
            && client.connection_state(cid) == ConnectionState::Disconnected
    });
    assert!(gone, "both connections forgotten");
    assert!(server.connections().is_empty() && client.connections().is_empty());
    shutdown_all(&both);
}

#[test]
fn client_disconnect_is_user_requested_on_both_sides() {
    user_disconnect(
        desc(ThreadMode::Dedicated),
        desc(ThreadMode::Dedicated),
        true,
    );
}

#[test]
fn server_disconnect_is_user_requested_on_both_sides_manual() {
    user_disconnect(desc(ThreadMode::Manual), desc(ThreadMode::Manual), false);
}

#[test]
fn disconnect_ipv6() {
    user_disconnect(
        desc6(ThreadMode::Dedicated),
        desc6(ThreadMode::Manual),
        true,
    );
}

#[test]
fn disconnect_all_closes_every_connection() {
    let server = Carrier::new(desc(ThreadMode::Dedicated)).unwrap();
    let a = Carrier::new(desc(ThreadMode::Dedicated)).unwrap();
    let b = Carrier::new(desc(ThreadMode::Dedicated)).unwrap();
    let (aid, _) = connect(&server, &a);
    let (bid, _) = connect(&server, &b);
    server.disconnect_all();
    let all = [&server, &a, &b];
    for (c, id) in [(&a, aid), (&b, bid)] {
        assert_eq!(
            disconnect_reason(&all, c, id, Duration::from_secs(5)),
            Some(DisconnectReason::UserRequested)
        );
    }
    shutdown_all(&all);
}

fn shutdown_reason(mode: ThreadMode, by_drop: bool) {
    let server = Carrier::new(desc(mode)).unwrap();
    let client = Carrier::new(desc(mode)).unwrap();
    let (cid, sid) = connect(&server, &client);
    // The client keeps being pumped on another thread while the server shuts down (a
    // manual-mode client would not answer otherwise).
    let started = now();
    let client_reason = std::thread::scope(|s| {
        let waiter =
            s.spawn(|| disconnect_reason(&[&client], &client, cid, Duration::from_secs(5)));
        if by_drop {
            drop(server);
        } else {
            server.shutdown();
            // The side that shut down reports its own connections closed, ShuttingDown.
            let mut log = Vec::new();
            common::drain(&server, &mut log);
            assert!(
                log.contains(&CarrierEvent::Disconnect {
                    id: sid,
                    reason: DisconnectReason::ShuttingDown
                }),
                "{log:?}"
            );
            // After shutdown nothing new starts.
            assert!(server.connect(&client.local_addr().to_string()).is_err());
        }
        // Shutdown is bounded by shutdown_timeout_ms (1 s) and does not block for long.
        let took = now() - started;
        assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
        waiter.join().unwrap()
    });
    assert_eq!(client_reason, Some(DisconnectReason::ShuttingDown));
}

#[test]
fn shutdown_is_shutting_down_on_both_sides_threaded() {
    shutdown_reason(ThreadMode::Dedicated, false);
}

#[test]
fn shutdown_is_shutting_down_on_both_sides_manual() {
    shutdown_reason(ThreadMode::Manual, false);
}

#[test]
fn drop_sends_shutting_down_threaded() {
    shutdown_reason(ThreadMode::Dedicated, true);
}

#[test]
fn drop_sends_shutting_down_manual() {
    shutdown_reason(ThreadMode::Manual, true);
}

/// A pass-through simulator that drops everything, both ways, once `on` is set.
struct Blackhole {
    on: Arc<AtomicBool>,
    inbound: VecDeque<Datagram>,
    outbound: VecDeque<Datagram>,
    dropped: [u64; 2],
}

impl Blackhole {
    fn new(on: &Arc<AtomicBool>) -> Box<Blackhole> {
        Box::new(Blackhole {
            on: Arc::clone(on),
            inbound: VecDeque::new(),
            outbound: VecDeque::new(),
            dropped: [0; 2],
        })
    }

    fn index(d: Direction) -> usize {
        match d {
            Direction::Inbound => 0,
            _ => 1,
        }
    }
}

impl Simulator for Blackhole {
    fn input(&mut self, _now: Instant, direction: Direction, datagram: Datagram) {
        if self.on.load(Ordering::SeqCst) {
            self.dropped[Self::index(direction)] += 1;
        } else if Self::index(direction) == 0 {
            self.inbound.push_back(datagram);
        } else {
            self.outbound.push_back(datagram);
        }
    }

    fn poll_output(&mut self, _now: Instant, direction: Direction) -> Option<Datagram> {
        if Self::index(direction) == 0 {
            self.inbound.pop_front()
        } else {
            self.outbound.pop_front()
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        // Nothing is ever held: the carrier drains both directions in the turn that fed them.
        None
    }

    fn set_enabled(&mut self, _enabled: bool) {}

    fn is_enabled(&self) -> bool {
        true
    }

    fn purge_peer(&mut self, peer: SocketAddr) {
        self.inbound.retain(|d| !d.involves(peer));
        self.outbound.retain(|d| !d.involves(peer));
    }

    fn stats(&self, direction: Direction) -> LinkStats {
        LinkStats {
            dropped_blackhole: self.dropped[Self::index(direction)],
            ..LinkStats::default()
        }
    }

    fn seed(&self) -> u64 {
        0
    }
}

/// Connects a server and a client whose simulator can swallow everything.
fn vanishing_pair(
    server_mode: ThreadMode,
    client_mode: ThreadMode,
    timeout_ms: u32,
) -> (
    Carrier,
    Carrier,
    Arc<AtomicBool>,
    ConnectionId,
    ConnectionId,
) {
    let hole = Arc::new(AtomicBool::new(false));
    let server = Carrier::new(CarrierDesc {
        connection_timeout_ms: timeout_ms,
        ..desc(server_mode)
    })
    .unwrap();
    let client = Carrier::new(CarrierDesc {
        connection_timeout_ms: timeout_ms,
        simulator: Some(Blackhole::new(&hole)),
        ..desc(client_mode)
    })
    .unwrap();
    let (cid, sid) = connect(&server, &client);
    (server, client, hole, cid, sid)
}

/// Keeps traffic flowing for a moment (so "last heard" is now on both sides), then swallows
/// everything; returns when it did.
fn vanish(server: &Carrier, client: &Carrier, cid: ConnectionId, hole: &AtomicBool) -> Instant {
    for i in 0..20u8 {
        client
            .send(cid, &[i], Reliability::Unreliable, Priority::Normal, 0)
            .unwrap();
        pump_until(&[server, client], Duration::from_millis(5), || false);
    }
    hole.store(true, Ordering::SeqCst);
    now()
}

fn vanished_peer(server_mode: ThreadMode, client_mode: ThreadMode) {
    let (server, client, hole, cid, sid) = vanishing_pair(server_mode, client_mode, 1_000);
    let vanished = vanish(&server, &client, cid, &hole);
    let both = [&server, &client];
    let reason = disconnect_reason(&both, &server, sid, Duration::from_secs(5));
    let elapsed = now() - vanished;
    assert_eq!(reason, Some(DisconnectReason::BadConnection));
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed <= Duration::from_secs(3),
        "BadConnection after {elapsed:?} with a 1 s connection timeout"
    );
    // The vanished side hears nothing either, and times out the same way.
    assert_eq!(
        disconnect_reason(&both, &client, cid, Duration::from_secs(3)),
        Some(DisconnectReason::BadConnection)
    );
    assert!(
        client
            .with_simulator(|s| s.stats(Direction::Outbound).dropped())
            .unwrap()
            > 0
    );
}

#[test]
fn vanished_peer_times_out_with_bad_connection_threaded() {
    vanished_peer(ThreadMode::Dedicated, ThreadMode::Dedicated);
}

#[test]
fn vanished_peer_times_out_with_bad_connection_manual() {
    vanished_peer(ThreadMode::Manual, ThreadMode::Manual);
}

#[test]
fn without_disconnect_detection_nothing_times_out() {
    // A 500 ms connection timeout keeps this test short.
    let (server, client, hole, cid, sid) =
        vanishing_pair(ThreadMode::Dedicated, ThreadMode::Dedicated, 500);
    server.set_disconnect_detection(false);
    client.set_disconnect_detection(false);
    vanish(&server, &client, cid, &hole);
    // Three connection timeouts of silence.
    let mut server_log = Vec::new();
    let mut client_log = Vec::new();
    pump_until(&[&server, &client], Duration::from_millis(1_500), || {
        common::drain(&server, &mut server_log);
        common::drain(&client, &mut client_log);
        false
    });
    let ended = |log: &[CarrierEvent]| {
        log.iter()
            .any(|e| matches!(e, CarrierEvent::Disconnect { .. }))
    };
    assert!(!ended(&server_log), "server: {server_log:?}");
    assert!(!ended(&client_log), "client: {client_log:?}");
    assert_eq!(server.connection_state(sid), ConnectionState::Connected);
    assert_eq!(client.connection_state(cid), ConnectionState::Connected);

    // The peer comes back: the connection still works.
    hole.store(false, Ordering::SeqCst);
    client
        .send(
            cid,
            b"still here",
            Reliability::Reliable,
            Priority::Normal,
            1,
        )
        .unwrap();
    let mut got = None;
    let ok = pump_until(&[&server, &client], Duration::from_secs(5), || {
        got = got.take().or_else(|| server.receive(sid, 1));
        got.is_some()
    });
    assert!(ok, "reliable message after the silence");
    assert_eq!(got.as_deref(), Some(&b"still here"[..]));

    // Detection back on: the connection is fine, and a new silence times out again.
    server.set_disconnect_detection(true);
    client.set_disconnect_detection(true);
    pump_until(&[&server, &client], Duration::from_millis(300), || false);
    assert_eq!(server.connection_state(sid), ConnectionState::Connected);
    vanish(&server, &client, cid, &hole);
    assert_eq!(
        disconnect_reason(&[&server, &client], &server, sid, Duration::from_secs(5)),
        Some(DisconnectReason::BadConnection)
    );
}
