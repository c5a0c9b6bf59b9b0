//! The statistics report what the network did: RTT within 10 % of the simulated round trip
//! (the receiver's ack delay excluded), loss within 2 points of the configured loss, and the
//! last-second and lifetime sets move as they should (issue 5).

use std::time::Duration;

use carrier_proto::testing::Network;
use carrier_proto::{ChannelId, ConnectionId, EndpointConfig, Priority, Reliability};
use carrier_sim::LinkConfig;

fn pair(link: LinkConfig) -> (Network, usize, usize, ConnectionId) {
    let mut net = Network::new();
    let server = net.add_node(EndpointConfig::default(), 71);
    let client = net.add_node(EndpointConfig::default(), 72);
    net.route_both(client, server, link, 73).unwrap();
    let id = net.connect(client, server).unwrap();
    assert!(net.run_until(Duration::from_secs(5), |n| n.is_connected(client, id)));
    (net, server, client, id)
}

/// 50 small reliable messages a second, one per datagram.
fn traffic(net: &mut Network, client: usize, id: ConnectionId, secs: u64) {
    for _ in 0..secs * 50 {
        net.node_mut(client)
            .endpoint
            .send(
                id,
                ChannelId::new(0),
                Priority::Normal,
                Reliability::Reliable,
                vec![1u8; 200],
            )
            .unwrap();
        net.run_for(Duration::from_millis(20));
    }
}

#[test]
fn reported_rtt_is_twice_the_one_way_latency() {
    for one_way in [15.0, 40.0, 100.0] {
        let (mut net, _server, client, id) = pair(LinkConfig::new().with_fixed_latency_ms(one_way));
        traffic(&mut net, client, id, 5);
        let now = net.now();
        let stats = net
            .node(client)
            .endpoint
            .connection(id)
            .unwrap()
            .statistics(now);
        let expected = 2.0 * one_way;
        let smoothed = stats.rtt.smoothed.as_secs_f64() * 1e3;
        let min = stats.rtt.min.as_secs_f64() * 1e3;
        eprintln!("one-way {one_way} ms: smoothed {smoothed:.1} ms, min {min:.1} ms");
        assert!(
            (smoothed - expected).abs() <= 0.1 * expected,
            "smoothed {smoothed} vs {expected}"
        );
        assert!(
            (min - expected).abs() <= 0.1 * expected,
            "min {min} vs {expected}"
        );
        let last = stats.last_second.rtt_ms as f64;
        assert!(
            (last - expected).abs() <= 0.1 * expected,
            "last second {last} vs {expected}"
        );
    }
}

#[test]
fn reported_loss_matches_the_configured_loss() {
    for loss in [0.05, 0.1, 0.2] {
        // Loss on the data direction only: the datagrams declared lost are the client's.
        let mut net = Network::new();
        let server = net.add_node(EndpointConfig::default(), 81);
        let client = net.add_node(EndpointConfig::default(), 82);
        let c2s = net
            .add_link(
                LinkConfig::new()
                    .with_fixed_latency_ms(20.0)
                    .with_loss(loss),
                83,
            )
            .unwrap();
        let s2c = net
            .add_link(LinkConfig::new().with_fixed_latency_ms(20.0), 84)
            .unwrap();
        net.route(client, server, c2s);
        net.route(server, client, s2c);
        let id = net.connect(client, server).unwrap();
        assert!(net.run_until(Duration::from_secs(10), |n| n.is_connected(client, id)));
        traffic(&mut net, client, id, 40);
        net.run_for(Duration::from_secs(2));
        let now = net.now();
        let stats = net
            .node(client)
            .endpoint
            .connection(id)
            .unwrap()
            .statistics(now);
        let link = net.link(c2s).stats().clone();
        let actual = link.dropped_loss as f64 / link.packets_in as f64;
        let reported = stats.lifetime.packet_loss as f64;
        eprintln!(
            "configured {loss}: link dropped {actual:.4}, reported {reported:.4} ({} lost, {} acked)",
            stats.lifetime.packets_lost, stats.lifetime.packets_acked
        );
        assert!(
            (reported - loss).abs() <= 0.02,
            "reported {reported} vs configured {loss}"
        );
    }
}

#[test]
fn last_second_and_lifetime_sets_move_as_they_should() {
    let (mut net, _server, client, id) = pair(LinkConfig::new().with_fixed_latency_ms(10.0));
    traffic(&mut net, client, id, 3);
    let now = net.now();
    let a = net
        .node(client)
        .endpoint
        .connection(id)
        .unwrap()
        .statistics(now);
    // About 50 data datagrams a second: the last second shows them, the lifetime all of them.
    assert!(
        a.last_second.packets_sent >= 40 && a.last_second.packets_sent <= 120,
        "{a:?}"
    );
    assert!(a.lifetime.packets_sent >= 140, "{a:?}");
    assert!(a.effective_last_second.bytes_sent >= 40 * 200);
    assert!(a.effective_lifetime.bytes_sent >= 150 * 200);
    assert!(
        a.lifetime.bytes_sent > a.effective_lifetime.bytes_sent,
        "headers count in all data"
    );
    assert!(a.lifetime.packets_acked > 0 && a.last_second.packets_acked > 0);
    // Idle for 3 s: the last second shows only keep-alives; the lifetime keeps its totals.
    net.run_for(Duration::from_secs(3));
    let now = net.now();
    let b = net
        .node(client)
        .endpoint
        .connection(id)
        .unwrap()
        .statistics(now);
    assert_eq!(b.effective_last_second.bytes_sent, 0, "{b:?}");
    assert!(
        b.last_second.packets_sent <= 25,
        "keep-alives and their acks only: {b:?}"
    );
    assert!(b.lifetime.packets_sent >= a.lifetime.packets_sent);
    assert_eq!(
        b.effective_lifetime.bytes_sent,
        a.effective_lifetime.bytes_sent
    );
}
