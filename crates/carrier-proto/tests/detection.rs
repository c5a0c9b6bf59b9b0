//! Disconnect detection by RTT and loss, the network-failure evaluation of the other
//! connections, and the receive packet-rate limit (docs/protocol.md §12).

use std::time::Duration;

use carrier_proto::testing::Network;
use carrier_proto::{
    ChannelId, ConnectionId, DisconnectReason, DisconnectThresholds, DropReason, EndpointConfig,
    Event, Priority, Reliability,
};
use carrier_sim::LinkConfig;

fn detecting() -> EndpointConfig {
    EndpointConfig {
        disconnect_thresholds: Some(DisconnectThresholds::default()),
        ..EndpointConfig::default()
    }
}

fn disconnect_reason(events: &[Event]) -> Option<DisconnectReason> {
    events.iter().find_map(|e| match e {
        Event::Disconnect { reason, .. } => Some(*reason),
        _ => None,
    })
}

fn send(net: &mut Network, node: usize, id: ConnectionId) {
    let _ = net.node_mut(node).endpoint.send(
        id,
        ChannelId::new(0),
        Priority::Normal,
        Reliability::Reliable,
        vec![0u8; 100],
    );
}

/// Runs with 20 messages a second from the client until `limit` or a disconnect.
fn run_traffic(net: &mut Network, client: usize, id: ConnectionId, limit: Duration) -> Duration {
    let start = net.now();
    while net.now() - start < limit && disconnect_reason(&net.node(client).events).is_none() {
        send(net, client, id);
        net.run_for(Duration::from_millis(50));
    }
    net.now() - start
}

#[test]
fn rtt_above_the_threshold_disconnects_within_the_window() {
    let mut net = Network::new();
    let server = net.add_node(detecting(), 1);
    let client = net.add_node(detecting(), 2);
    let (c2s, s2c) = net
        .route_both(
            client,
            server,
            LinkConfig::new().with_fixed_latency_ms(20.0),
            3,
        )
        .unwrap();
    let id = net.connect(client, server).unwrap();
    assert!(net.run_until(Duration::from_secs(2), |n| n.is_connected(client, id)));
    // Healthy for 5 s: no disconnect.
    run_traffic(&mut net, client, id, Duration::from_secs(5));
    assert_eq!(disconnect_reason(&net.node(client).events), None);
    // RTT becomes 700 ms, above the 500 ms threshold.
    for link in [c2s, s2c] {
        net.link_mut(link)
            .set_config(LinkConfig::new().with_fixed_latency_ms(350.0))
            .unwrap();
    }
    let took = run_traffic(&mut net, client, id, Duration::from_secs(20));
    assert_eq!(
        disconnect_reason(&net.node(client).events),
        Some(DisconnectReason::BadConnection)
    );
    // The smoothed RTT needs a few samples to pass 500 ms, then the 3 s window, checked each
    // second: well within 8 s, and not before the window.
    assert!(
        took >= Duration::from_secs(3) && took <= Duration::from_secs(8),
        "{took:?}"
    );
}

#[test]
fn loss_above_the_threshold_disconnects_within_the_window() {
    let mut net = Network::new();
    let server = net.add_node(detecting(), 1);
    let client = net.add_node(detecting(), 2);
    let (c2s, s2c) = net
        .route_both(
            client,
            server,
            LinkConfig::new().with_fixed_latency_ms(20.0),
            3,
        )
        .unwrap();
    let id = net.connect(client, server).unwrap();
    assert!(net.run_until(Duration::from_secs(2), |n| n.is_connected(client, id)));
    run_traffic(&mut net, client, id, Duration::from_secs(3));
    assert_eq!(disconnect_reason(&net.node(client).events), None);
    for link in [c2s, s2c] {
        net.link_mut(link)
            .set_config(LinkConfig::new().with_fixed_latency_ms(20.0).with_loss(0.6))
            .unwrap();
    }
    let took = run_traffic(&mut net, client, id, Duration::from_secs(20));
    assert_eq!(
        disconnect_reason(&net.node(client).events),
        Some(DisconnectReason::BadConnection)
    );
    assert!(
        took >= Duration::from_secs(3) && took <= Duration::from_secs(6),
        "{took:?}"
    );
}

#[test]
fn nothing_disconnects_with_detection_disabled_and_it_can_be_turned_back_on() {
    let mut net = Network::new();
    let server = net.add_node(detecting(), 1);
    let client = net.add_node(detecting(), 2);
    let (c2s, s2c) = net
        .route_both(
            client,
            server,
            LinkConfig::new().with_fixed_latency_ms(20.0),
            3,
        )
        .unwrap();
    let id = net.connect(client, server).unwrap();
    assert!(net.run_until(Duration::from_secs(2), |n| n.is_connected(client, id)));
    let now = net.now();
    net.node_mut(client)
        .endpoint
        .set_timeouts_enabled(now, false);
    net.node_mut(server)
        .endpoint
        .set_timeouts_enabled(now, false);
    for link in [c2s, s2c] {
        net.link_mut(link)
            .set_config(
                LinkConfig::new()
                    .with_fixed_latency_ms(350.0)
                    .with_loss(0.6),
            )
            .unwrap();
    }
    run_traffic(&mut net, client, id, Duration::from_secs(15));
    assert_eq!(disconnect_reason(&net.node(client).events), None);
    assert!(net.is_connected(client, id));
    let now = net.now();
    net.node_mut(client)
        .endpoint
        .set_timeouts_enabled(now, true);
    run_traffic(&mut net, client, id, Duration::from_secs(15));
    assert_eq!(
        disconnect_reason(&net.node(client).events),
        Some(DisconnectReason::BadConnection)
    );
}

/// One client vanishes; another has been silent for more than half the timeout when the first
/// times out and is dropped with it; a healthy one stays.
#[test]
fn evaluation_threshold_drops_a_half_silent_connection_but_not_a_healthy_one() {
    let mut net = Network::new();
    let server = net.add_node(detecting(), 1);
    let vanishing = net.add_node(detecting(), 2);
    let half_silent = net.add_node(detecting(), 3);
    let healthy = net.add_node(detecting(), 4);
    for (i, c) in [vanishing, half_silent, healthy].into_iter().enumerate() {
        net.route_both(
            c,
            server,
            LinkConfig::new().with_fixed_latency_ms(10.0),
            10 + i as u64,
        )
        .unwrap();
        net.connect(c, server).unwrap();
    }
    assert!(net.run_until(Duration::from_secs(2), |n| {
        n.node(server).endpoint.connection_ids().count() == 3
            && n.node(server)
                .endpoint
                .connection_ids()
                .all(|id| n.is_connected(server, id))
    }));
    let id_of = |net: &Network, peer| net.connection_to(server, peer).unwrap();
    let (v, h, ok) = (
        id_of(&net, vanishing),
        id_of(&net, half_silent),
        id_of(&net, healthy),
    );
    net.node_mut(vanishing).online = false;
    net.run_for(Duration::from_millis(2_400));
    net.node_mut(half_silent).online = false;
    // The vanished one times out 5 s after its last datagram; the half-silent one has then been
    // silent for about 2.6 s > 2.5 s.
    assert!(net.run_until(Duration::from_secs(4), |n| {
        n.node(server)
            .events
            .iter()
            .any(|e| matches!(e, Event::Disconnect { id, .. } if *id == v))
    }));
    let dropped: Vec<ConnectionId> = net
        .node(server)
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Disconnect { id, reason } => {
                assert_eq!(*reason, DisconnectReason::BadConnection);
                Some(*id)
            }
            _ => None,
        })
        .collect();
    assert!(
        dropped.contains(&h),
        "the half-silent connection is evaluated and dropped"
    );
    assert!(!dropped.contains(&ok), "the healthy connection stays");
    assert!(net.is_connected(server, ok));
}

#[test]
fn evaluation_threshold_of_one_disables_the_evaluation() {
    let config = EndpointConfig {
        evaluation_threshold: 1.0,
        ..detecting()
    };
    let mut net = Network::new();
    let server = net.add_node(config, 1);
    let vanishing = net.add_node(detecting(), 2);
    let half_silent = net.add_node(detecting(), 3);
    for c in [vanishing, half_silent] {
        net.connect(c, server).unwrap();
    }
    net.run_for(Duration::from_secs(1));
    let h = net.connection_to(server, half_silent).unwrap();
    net.node_mut(vanishing).online = false;
    net.run_for(Duration::from_millis(2_400));
    net.node_mut(half_silent).online = false;
    net.run_for(Duration::from_millis(2_700));
    assert!(
        net.is_connected(server, h),
        "silent 2.7 s < 5 s: not dropped without evaluation"
    );
}

#[test]
fn receive_rate_limit_drops_the_excess_without_blacklisting() {
    let limited = EndpointConfig {
        receive_packet_limit: Some(50),
        ..EndpointConfig::default()
    };
    let mut net = Network::new();
    let server = net.add_node(limited, 1);
    let flooder = net.add_node(EndpointConfig::default(), 2);
    let other = net.add_node(EndpointConfig::default(), 3);
    let fid = net.connect(flooder, server).unwrap();
    let oid = net.connect(other, server).unwrap();
    assert!(
        net.run_until(Duration::from_secs(2), |n| n.is_connected(flooder, fid)
            && n.is_connected(other, oid))
    );
    // The flooder sends 200 separate datagrams a second for 2 s (one message per step).
    // The other client sends 40 a second, below the limit.
    for i in 0..400 {
        send(&mut net, flooder, fid);
        if i % 5 == 0 {
            send(&mut net, other, oid);
        }
        net.run_for(Duration::from_millis(5));
    }
    let drops = net
        .node(server)
        .endpoint
        .drops()
        .get(DropReason::RateLimited);
    assert!(drops > 100, "excess dropped: {drops}");
    assert!(net.node(server).events.iter().any(|e| matches!(
        e,
        Event::SecurityError {
            reason: DropReason::RateLimited,
            ..
        }
    )));
    let sid_f = net.connection_to(server, flooder).unwrap();
    let sid_o = net.connection_to(server, other).unwrap();
    let count = |net: &Network, id| {
        net.node(server)
            .messages
            .iter()
            .filter(|(c, _)| *c == id)
            .count()
    };
    // The other connection was served during the flood.
    assert!(count(&net, sid_o) >= 75, "{}", count(&net, sid_o));
    // Afterwards everything arrives: the flooder was never blacklisted.
    net.run_for(Duration::from_secs(5));
    assert_eq!(
        count(&net, sid_f),
        400,
        "the flooder's reliable messages all arrived"
    );
    assert_eq!(count(&net, sid_o), 80);
    assert!(net.is_connected(server, sid_f));
}
