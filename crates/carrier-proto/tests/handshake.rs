//! Connection establishment and teardown: version check, custom handshakes, timeouts and
//! disconnect reasons (docs/protocol.md §4, §11, §12).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use carrier_proto::testing::Network;
use carrier_proto::{
    ConnectionId, DisconnectReason, EndpointConfig, Event, Handshake, HandshakeDecision,
};
use carrier_sim::LinkConfig;

fn config(version: u32) -> EndpointConfig {
    EndpointConfig {
        version,
        ..EndpointConfig::default()
    }
}

fn failed(events: &[Event]) -> Option<DisconnectReason> {
    events.iter().find_map(|e| match e {
        Event::FailedToConnect { reason, .. } => Some(*reason),
        _ => None,
    })
}

fn disconnected(events: &[Event]) -> Option<DisconnectReason> {
    events.iter().find_map(|e| match e {
        Event::Disconnect { reason, .. } => Some(*reason),
        _ => None,
    })
}

fn pair(server_cfg: EndpointConfig, client_cfg: EndpointConfig) -> (Network, usize, usize) {
    let mut net = Network::new();
    let server = net.add_node(server_cfg, 11);
    let client = net.add_node(client_cfg, 12);
    net.route_both(
        client,
        server,
        LinkConfig::new().with_fixed_latency_ms(15.0),
        5,
    )
    .unwrap();
    (net, server, client)
}

#[test]
fn version_mismatch_is_refused_with_the_reason_on_both_sides() {
    let (mut net, server, client) = pair(config(1), config(2));
    let id = net.connect(client, server).unwrap();
    assert!(net.run_until(Duration::from_secs(2), |n| {
        failed(&n.node(client).events).is_some()
    }));
    assert_eq!(
        failed(&net.node(client).events),
        Some(DisconnectReason::VersionMismatch)
    );
    assert_eq!(
        failed(&net.node(server).events),
        Some(DisconnectReason::VersionMismatch)
    );
    assert!(!net.is_connected(client, id));
    net.run_for(Duration::from_secs(1));
    assert_eq!(
        net.node(server).endpoint.table_sizes().connections,
        0,
        "refused state lingers only"
    );
    assert_eq!(net.node(client).endpoint.table_sizes().connections, 0);
}

#[test]
fn matching_versions_connect_on_both_sides() {
    let (mut net, server, client) = pair(config(7), config(7));
    let id = net.connect(client, server).unwrap();
    assert!(net.run_until(Duration::from_secs(2), |n| n.is_connected(client, id)));
    let events = &net.node(server).events;
    assert!(matches!(events[0], Event::IncomingConnection { .. }));
    assert!(matches!(events[1], Event::ConnectionEstablished { .. }));
}

/// Accepts when `open` is set, answers Pending before; rejects the payload "bad".
#[derive(Debug)]
struct Gate {
    open: Arc<AtomicBool>,
    asked: Arc<std::sync::atomic::AtomicUsize>,
    payload: Vec<u8>,
}

impl Handshake for Gate {
    fn initiate(&mut self, _peer: SocketAddr) -> Vec<u8> {
        self.payload.clone()
    }
    fn on_request(
        &mut self,
        _id: ConnectionId,
        _peer: SocketAddr,
        payload: &[u8],
    ) -> HandshakeDecision {
        self.asked.fetch_add(1, Ordering::SeqCst);
        if payload == b"bad" {
            HandshakeDecision::Reject {
                reason: DisconnectReason::HandshakeRejected,
                payload: b"go away".to_vec(),
            }
        } else if self.open.load(Ordering::SeqCst) {
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

fn gate(
    open: bool,
    payload: &[u8],
) -> (Gate, Arc<AtomicBool>, Arc<std::sync::atomic::AtomicUsize>) {
    let flag = Arc::new(AtomicBool::new(open));
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    (
        Gate {
            open: flag.clone(),
            asked: asked.clone(),
            payload: payload.to_vec(),
        },
        flag,
        asked,
    )
}

#[test]
fn pending_handshake_is_asked_again_and_accepts_later() {
    let mut net = Network::new();
    let (server_hs, open, asked) = gate(false, b"");
    let (client_hs, _, _) = gate(false, b"hello");
    let server = net.add_node_with_handshake(EndpointConfig::default(), Box::new(server_hs), 1);
    let client = net.add_node_with_handshake(EndpointConfig::default(), Box::new(client_hs), 2);
    let id = net.connect(client, server).unwrap();
    net.run_for(Duration::from_millis(500));
    assert!(!net.is_connected(client, id));
    let asked_before = asked.load(Ordering::SeqCst);
    assert!(asked_before >= 2, "retries ask again: {asked_before}");
    open.store(true, Ordering::SeqCst);
    assert!(net.run_until(Duration::from_secs(3), |n| n.is_connected(client, id)));
    assert!(asked.load(Ordering::SeqCst) > asked_before);
}

#[test]
fn rejecting_handshake_reports_its_reason_on_both_sides() {
    let mut net = Network::new();
    let (server_hs, _, _) = gate(true, b"");
    let (client_hs, _, _) = gate(true, b"bad");
    let server = net.add_node_with_handshake(EndpointConfig::default(), Box::new(server_hs), 1);
    let client = net.add_node_with_handshake(EndpointConfig::default(), Box::new(client_hs), 2);
    net.connect(client, server).unwrap();
    assert!(net.run_until(Duration::from_secs(2), |n| {
        failed(&n.node(client).events).is_some()
    }));
    assert_eq!(
        failed(&net.node(client).events),
        Some(DisconnectReason::HandshakeRejected)
    );
    assert_eq!(
        failed(&net.node(server).events),
        Some(DisconnectReason::HandshakeRejected)
    );
}

#[test]
fn handshake_timeout_when_nobody_answers() {
    let mut net = Network::new();
    let server = net.add_node(EndpointConfig::default(), 1);
    let client = net.add_node(EndpointConfig::default(), 2);
    net.node_mut(server).online = false;
    let start = net.now();
    net.connect(client, server).unwrap();
    assert!(net.run_until(Duration::from_secs(10), |n| {
        failed(&n.node(client).events).is_some()
    }));
    assert_eq!(
        failed(&net.node(client).events),
        Some(DisconnectReason::HandshakeTimeout)
    );
    let took = net.now() - start;
    assert!(
        took >= Duration::from_millis(5000) && took < Duration::from_millis(5100),
        "{took:?}"
    );
    // Backoff: 0, 10, 20, 40, ... capped at 1000 ms: about 5 + 5 requests in 5 s, not hundreds.
    assert!(net.datagrams_sent() < 20, "{}", net.datagrams_sent());
}

#[test]
fn connection_times_out_when_the_peer_vanishes() {
    let (mut net, server, client) = pair(config(1), config(1));
    let id = net.connect(client, server).unwrap();
    assert!(net.run_until(Duration::from_secs(2), |n| n.is_connected(client, id)));
    // Idle for a while: keep-alives keep it up.
    net.run_for(Duration::from_secs(8));
    assert!(
        net.is_connected(client, id),
        "keep-alive holds an idle connection"
    );
    net.node_mut(server).online = false;
    let start = net.now();
    assert!(net.run_until(Duration::from_secs(10), |n| {
        disconnected(&n.node(client).events).is_some()
    }));
    assert_eq!(
        disconnected(&net.node(client).events),
        Some(DisconnectReason::BadConnection)
    );
    let took = net.now() - start;
    assert!(took <= Duration::from_millis(5200), "{took:?}");
}

#[test]
fn no_timeout_with_timeouts_disabled() {
    let (mut net, server, client) = pair(config(1), config(1));
    let id = net.connect(client, server).unwrap();
    assert!(net.run_until(Duration::from_secs(2), |n| n.is_connected(client, id)));
    let now = net.now();
    net.node_mut(client)
        .endpoint
        .set_timeouts_enabled(now, false);
    net.node_mut(server).online = false;
    net.run_for(Duration::from_secs(20));
    assert!(net.is_connected(client, id));
    let now = net.now();
    net.node_mut(client)
        .endpoint
        .set_timeouts_enabled(now, true);
    assert!(net.run_until(Duration::from_secs(6), |n| {
        disconnected(&n.node(client).events).is_some()
    }));
}

#[test]
fn disconnect_reason_reaches_the_peer() {
    for reason in [
        DisconnectReason::UserRequested,
        DisconnectReason::ShuttingDown,
        DisconnectReason::BadPackets,
    ] {
        let (mut net, server, client) = pair(config(1), config(1));
        let id = net.connect(client, server).unwrap();
        assert!(net.run_until(Duration::from_secs(2), |n| n.is_connected(client, id)));
        let now = net.now();
        net.node_mut(client).endpoint.disconnect(now, id, reason);
        assert_eq!(
            disconnected(&net.node(client).events),
            None,
            "not yet drained"
        );
        assert!(net.run_until(Duration::from_secs(1), |n| {
            disconnected(&n.node(server).events).is_some()
        }));
        assert_eq!(disconnected(&net.node(server).events), Some(reason));
        assert_eq!(disconnected(&net.node(client).events), Some(reason));
        net.run_for(Duration::from_secs(1));
        assert_eq!(net.node(client).endpoint.table_sizes().connections, 0);
        assert_eq!(net.node(server).endpoint.table_sizes().connections, 0);
    }
}

#[test]
fn lost_disconnect_is_resent() {
    let mut net = Network::new();
    let server = net.add_node(EndpointConfig::default(), 1);
    let client = net.add_node(EndpointConfig::default(), 2);
    let (c2s, _) = net
        .route_both(
            client,
            server,
            LinkConfig::new().with_fixed_latency_ms(10.0),
            5,
        )
        .unwrap();
    let id = net.connect(client, server).unwrap();
    assert!(net.run_until(Duration::from_secs(2), |n| n.is_connected(client, id)));
    // Drop the first two client→server datagrams after the disconnect.
    let cfg = net.link(c2s).config().clone().with_periodic_loss(1, 1);
    net.link_mut(c2s).set_config(cfg).unwrap();
    let now = net.now();
    net.node_mut(client)
        .endpoint
        .disconnect(now, id, DisconnectReason::UserRequested);
    net.run_for(Duration::from_millis(60));
    let ok = net.link(c2s).config().clone();
    let ok = LinkConfig {
        periodic_loss: None,
        ..ok
    };
    net.link_mut(c2s).set_config(ok).unwrap();
    assert!(net.run_until(Duration::from_millis(450), |n| {
        disconnected(&n.node(server).events).is_some()
    }));
    assert_eq!(
        disconnected(&net.node(server).events),
        Some(DisconnectReason::UserRequested)
    );
}
