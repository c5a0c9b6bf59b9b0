//! The connection handshake over loopback: an asynchronous (Pending) custom handshake that
//! accepts once the application decides (the original's `Integ_CarrierAsyncHandshakeTest`), a
//! rejecting handshake, a version mismatch of the default handshake, and a handshake timeout.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use carrier::{
    Carrier, CarrierDesc, CarrierEvent, ConnectionId, ConnectionState, DisconnectReason, Handshake,
    HandshakeDecision, Priority, Reliability, ThreadMode,
};
use common::{desc, desc6, expect_event, now, pump_until, shutdown_all};

/// A handshake with a password; the acceptor answers Pending until `open` is set, or rejects.
#[derive(Debug, Clone)]
struct Gate {
    open: Arc<AtomicBool>,
    reject: bool,
    /// Requests the acceptor saw (first and retries).
    requests: Arc<AtomicUsize>,
    /// Requests seen after the acceptor decided.
    accepted_at: Arc<AtomicUsize>,
}

impl Gate {
    fn new(reject: bool) -> Gate {
        Gate {
            open: Arc::new(AtomicBool::new(false)),
            reject,
            requests: Arc::new(AtomicUsize::new(0)),
            accepted_at: Arc::new(AtomicUsize::new(usize::MAX)),
        }
    }
}

impl Handshake for Gate {
    fn initiate(&mut self, _peer: SocketAddr) -> Vec<u8> {
        b"open sesame".to_vec()
    }

    fn on_request(
        &mut self,
        _id: ConnectionId,
        _peer: SocketAddr,
        payload: &[u8],
    ) -> HandshakeDecision {
        let n = self.requests.fetch_add(1, Ordering::SeqCst) + 1;
        if self.reject || payload != b"open sesame" {
            return HandshakeDecision::Reject {
                reason: DisconnectReason::HandshakeRejected,
                payload: b"go away".to_vec(),
            };
        }
        if self.open.load(Ordering::SeqCst) {
            self.accepted_at.store(n, Ordering::SeqCst);
            HandshakeDecision::Accept {
                reply: b"welcome".to_vec(),
            }
        } else {
            HandshakeDecision::Pending
        }
    }

    fn on_accept(&mut self, _peer: SocketAddr, reply: &[u8]) -> Result<(), DisconnectReason> {
        if reply == b"welcome" {
            Ok(())
        } else {
            Err(DisconnectReason::HandshakeRejected)
        }
    }
}

fn with_gate(d: CarrierDesc, gate: &Gate) -> CarrierDesc {
    CarrierDesc {
        handshake: Some(Box::new(gate.clone())),
        ..d
    }
}

fn pending_then_accept(server_mode: ThreadMode, client_mode: ThreadMode) {
    let gate = Gate::new(false);
    let server = Carrier::new(with_gate(desc(server_mode), &gate)).unwrap();
    let client = Carrier::new(with_gate(desc(client_mode), &Gate::new(false))).unwrap();
    let id = client.connect(&server.local_addr().to_string()).unwrap();

    // While pending: the server sees the peer (IncomingConnection) and its retries, nobody is
    // connected.
    let mut server_log = Vec::new();
    let mut client_log = Vec::new();
    let incoming = expect_event(
        &[&server, &client],
        &server,
        Duration::from_secs(5),
        &mut server_log,
        |e| matches!(e, CarrierEvent::IncomingConnection { .. }),
    );
    let Some(CarrierEvent::IncomingConnection { id: sid, addr }) = incoming else {
        panic!("no IncomingConnection: {server_log:?}");
    };
    assert_eq!(addr, client.local_addr());
    let ok = pump_until(&[&server, &client], Duration::from_secs(3), || {
        gate.requests.load(Ordering::SeqCst) > 2
    });
    assert!(ok, "the handshake was asked again on the client's retries");
    pump_until(&[&server, &client], Duration::from_millis(100), || false);
    common::drain(&server, &mut server_log);
    common::drain(&client, &mut client_log);
    assert!(
        !server_log
            .iter()
            .chain(&client_log)
            .any(|e| matches!(e, CarrierEvent::ConnectionEstablished { .. })),
        "connected while pending: {server_log:?} {client_log:?}"
    );
    assert_eq!(client.connection_state(id), ConnectionState::Connecting);
    assert_eq!(server.connection_state(sid), ConnectionState::Connecting);

    // The application decides: the next retry is accepted.
    gate.open.store(true, Ordering::SeqCst);
    let mut client_ok = false;
    let mut server_ok = false;
    let ok = pump_until(&[&server, &client], Duration::from_secs(5), || {
        while let Some(e) = client.poll_event() {
            match e {
                CarrierEvent::ConnectionEstablished { id: got } => {
                    assert_eq!(got, id, "established id == connect id");
                    client_ok = true;
                }
                CarrierEvent::FailedToConnect { .. } => panic!("client: {e:?}"),
                _ => {}
            }
        }
        while let Some(e) = server.poll_event() {
            match e {
                CarrierEvent::ConnectionEstablished { id: got } => {
                    assert_eq!(got, sid, "established id == incoming id");
                    server_ok = true;
                }
                CarrierEvent::FailedToConnect { .. } => panic!("server: {e:?}"),
                _ => {}
            }
        }
        client_ok && server_ok
    });
    assert!(
        ok,
        "connected after the gate opened (client {client_ok}, server {server_ok})"
    );
    let decided_at = gate.accepted_at.load(Ordering::SeqCst);
    assert!(decided_at > 2, "accepted on request {decided_at}");

    // Messages flow both ways, and no further request reaches the handshake.
    client
        .send(id, b"ping", Reliability::Reliable, Priority::Normal, 0)
        .unwrap();
    let mut pong = None;
    let ok = pump_until(&[&server, &client], Duration::from_secs(5), || {
        if let Some(m) = server.receive(sid, 0) {
            assert_eq!(&m[..], b"ping");
            server
                .send(sid, b"pong", Reliability::Reliable, Priority::Normal, 0)
                .unwrap();
        }
        pong = pong.take().or_else(|| client.receive(id, 0));
        pong.is_some()
    });
    assert!(ok);
    assert_eq!(pong.as_deref(), Some(&b"pong"[..]));
    pump_until(&[&server, &client], Duration::from_millis(300), || false);
    assert_eq!(
        gate.requests.load(Ordering::SeqCst),
        decided_at,
        "requests reached the handshake after it accepted"
    );
    shutdown_all(&[&server, &client]);
}

#[test]
fn pending_handshake_accepts_when_the_application_decides_threaded() {
    pending_then_accept(ThreadMode::Dedicated, ThreadMode::Dedicated);
}

#[test]
fn pending_handshake_accepts_when_the_application_decides_manual() {
    pending_then_accept(ThreadMode::Manual, ThreadMode::Manual);
}

/// Pumps until both carriers reported `FailedToConnect`; returns (client's, server's) reasons.
fn both_fail(
    server: &Carrier,
    client: &Carrier,
    id: ConnectionId,
) -> (DisconnectReason, DisconnectReason) {
    let mut client_reason = None;
    let mut server_reason = None;
    let ok = pump_until(&[server, client], Duration::from_secs(5), || {
        while let Some(e) = client.poll_event() {
            match e {
                CarrierEvent::FailedToConnect { id: got, reason } => {
                    assert_eq!(got, id);
                    client_reason = Some(reason);
                }
                CarrierEvent::ConnectionEstablished { .. } => panic!("client connected"),
                _ => {}
            }
        }
        while let Some(e) = server.poll_event() {
            match e {
                CarrierEvent::FailedToConnect { reason, .. } => server_reason = Some(reason),
                CarrierEvent::ConnectionEstablished { .. } => panic!("server connected"),
                _ => {}
            }
        }
        client_reason.is_some() && server_reason.is_some()
    });
    assert!(
        ok,
        "both sides failed: client {client_reason:?}, server {server_reason:?}"
    );
    (client_reason.unwrap(), server_reason.unwrap())
}

#[test]
fn rejecting_handshake_gives_the_reason_on_both_sides() {
    let gate = Gate::new(true);
    let server = Carrier::new(with_gate(desc(ThreadMode::Dedicated), &gate)).unwrap();
    let client = Carrier::new(with_gate(desc(ThreadMode::Dedicated), &Gate::new(false))).unwrap();
    let id = client.connect(&server.local_addr().to_string()).unwrap();
    let (c, s) = both_fail(&server, &client, id);
    assert_eq!(c, DisconnectReason::HandshakeRejected);
    assert_eq!(s, DisconnectReason::HandshakeRejected);
    assert!(gate.requests.load(Ordering::SeqCst) >= 1);
    pump_until(&[&server, &client], Duration::from_secs(2), || {
        client.connection_state(id) == ConnectionState::Disconnected
    });
    assert_eq!(client.connection_state(id), ConnectionState::Disconnected);
    assert_eq!(
        client.send(id, b"x", Reliability::Reliable, Priority::Normal, 0),
        Err(carrier::SendError::UnknownConnection(id))
    );
}

#[test]
fn wrong_password_is_rejected() {
    // The acceptor checks the initiator's payload: a default-handshake client (its payload is
    // its version) does not get in.
    let gate = Gate::new(false);
    gate.open.store(true, Ordering::SeqCst);
    let server = Carrier::new(with_gate(desc6(ThreadMode::Dedicated), &gate)).unwrap();
    let client = Carrier::new(desc6(ThreadMode::Manual)).unwrap();
    let id = client.connect(&server.local_addr().to_string()).unwrap();
    let (c, s) = both_fail(&server, &client, id);
    assert_eq!(
        (c, s),
        (
            DisconnectReason::HandshakeRejected,
            DisconnectReason::HandshakeRejected
        )
    );
}

fn version_mismatch(server_desc: CarrierDesc, client_desc: CarrierDesc) {
    let server = Carrier::new(CarrierDesc {
        version: 1,
        ..server_desc
    })
    .unwrap();
    let client = Carrier::new(CarrierDesc {
        version: 2,
        ..client_desc
    })
    .unwrap();
    let id = client.connect(&server.local_addr().to_string()).unwrap();
    let (c, s) = both_fail(&server, &client, id);
    assert_eq!(c, DisconnectReason::VersionMismatch, "client side");
    assert_eq!(s, DisconnectReason::VersionMismatch, "server side");
    // A client of the right version still gets in.
    let good = Carrier::new(desc(ThreadMode::Dedicated)).unwrap();
    if server.local_addr().is_ipv4() {
        common::connect(&server, &good);
    }
}

#[test]
fn version_mismatch_fails_on_both_sides_ipv4() {
    version_mismatch(desc(ThreadMode::Dedicated), desc(ThreadMode::Dedicated));
}

#[test]
fn version_mismatch_fails_on_both_sides_ipv6_manual() {
    version_mismatch(desc6(ThreadMode::Manual), desc6(ThreadMode::Manual));
}

#[test]
fn silent_peer_fails_with_handshake_timeout() {
    // A socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let client = Carrier::new(CarrierDesc {
        connection_timeout_ms: 1_000,
        ..desc(ThreadMode::Dedicated)
    })
    .unwrap();
    let start = now();
    let id = client
        .connect(&silent.local_addr().unwrap().to_string())
        .unwrap();
    let mut log = Vec::new();
    let e = expect_event(&[&client], &client, Duration::from_secs(5), &mut log, |e| {
        matches!(e, CarrierEvent::FailedToConnect { .. })
    });
    let elapsed = now() - start;
    assert_eq!(
        e,
        Some(CarrierEvent::FailedToConnect {
            id,
            reason: DisconnectReason::HandshakeTimeout
        }),
        "{log:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    // The request was retried: the silent socket received several.
    silent.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    let mut requests = 0;
    while silent.recv(&mut buf).is_ok() {
        requests += 1;
    }
    assert!(requests >= 3, "{requests} connect requests");
}
