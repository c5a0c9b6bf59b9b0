//! Streams are independent and priorities share the link as documented
//! (docs/protocol.md §10, §16).

use std::time::Duration;

use carrier_proto::testing::Network;
use carrier_proto::{ChannelId, ConnectionId, EndpointConfig, Priority, Reliability};
use carrier_sim::LinkConfig;

fn connected(latency_ms: f64) -> (Network, usize, usize, ConnectionId, (usize, usize)) {
    let mut net = Network::new();
    let server = net.add_node(EndpointConfig::default(), 21);
    let client = net.add_node(EndpointConfig::default(), 22);
    let links = net
        .route_both(
            client,
            server,
            LinkConfig::new().with_fixed_latency_ms(latency_ms),
            9,
        )
        .unwrap();
    let id = net.connect(client, server).unwrap();
    assert!(net.run_until(Duration::from_secs(2), |n| n.is_connected(client, id)));
    net.run_for(Duration::from_millis(300));
    (net, server, client, id, links)
}

fn send(
    net: &mut Network,
    node: usize,
    id: ConnectionId,
    ch: u8,
    p: Priority,
    r: Reliability,
    payload: &[u8],
) {
    net.node_mut(node)
        .endpoint
        .send(id, ChannelId::new(ch), p, r, payload.to_vec())
        .unwrap();
}

/// A reliable message lost on channel 0 delays neither channel 1 nor another priority of
/// channel 0; later reliable messages of its own stream wait for it, and a later unreliable one
/// of its stream is discarded rather than held.
#[test]
fn a_lost_reliable_message_blocks_only_its_own_stream() {
    let (mut net, server, client, id, (c2s, _)) = connected(50.0);
    let normal = net.link(c2s).config().clone();
    net.link_mut(c2s)
        .set_config(normal.clone().with_blackhole(true))
        .unwrap();
    send(
        &mut net,
        client,
        id,
        0,
        Priority::Normal,
        Reliability::Reliable,
        b"lost",
    );
    net.run_for(Duration::from_millis(1));
    net.link_mut(c2s).set_config(normal).unwrap();
    assert_eq!(net.link(c2s).stats().dropped_blackhole, 1);
    send(
        &mut net,
        client,
        id,
        0,
        Priority::Normal,
        Reliability::Reliable,
        b"after-lost",
    );
    send(
        &mut net,
        client,
        id,
        0,
        Priority::Normal,
        Reliability::Unreliable,
        b"unreliable-after-lost",
    );
    send(
        &mut net,
        client,
        id,
        1,
        Priority::Normal,
        Reliability::Reliable,
        b"other-channel",
    );
    send(
        &mut net,
        client,
        id,
        0,
        Priority::High,
        Reliability::Reliable,
        b"other-priority",
    );
    // One-way latency is 50 ms: the unaffected streams arrive after 50 ms.
    net.run_for(Duration::from_millis(60));
    let got: Vec<&[u8]> = net
        .node(server)
        .messages
        .iter()
        .map(|(_, m)| &m.payload[..])
        .collect();
    assert!(got.contains(&&b"other-channel"[..]), "{got:?}");
    assert!(got.contains(&&b"other-priority"[..]), "{got:?}");
    assert!(
        !got.contains(&&b"after-lost"[..]),
        "waits for the lost message: {got:?}"
    );
    assert!(!got.contains(&&b"unreliable-after-lost"[..]), "{got:?}");
    // The retransmission fills the gap, then the stream flows in order; the unreliable message
    // was discarded at once, never delivered late.
    assert!(
        net.run_until(Duration::from_secs(3), |n| n.node(server).messages.len()
            == 4)
    );
    net.run_for(Duration::from_millis(500));
    let got: Vec<&[u8]> = net
        .node(server)
        .messages
        .iter()
        .map(|(_, m)| &m.payload[..])
        .collect();
    let lost = got.iter().position(|m| *m == b"lost").unwrap();
    let after = got.iter().position(|m| *m == b"after-lost").unwrap();
    assert!(lost < after);
    assert!(!got.contains(&&b"unreliable-after-lost"[..]));
    assert_eq!(got.len(), 4);
}

/// Under saturation by High, Low still gets its documented share (1/9 of the bytes when only
/// High and Low are backlogged).
#[test]
fn low_priority_keeps_its_share_under_high_saturation() {
    let (mut net, server, client, id, _) = connected(20.0);
    let payload = vec![0u8; 500];
    for _ in 0..8_000 {
        send(
            &mut net,
            client,
            id,
            0,
            Priority::High,
            Reliability::Reliable,
            &payload,
        );
        send(
            &mut net,
            client,
            id,
            1,
            Priority::Low,
            Reliability::Reliable,
            &payload,
        );
    }
    // Look at the first 2,700 messages delivered: both classes are still backlogged then.
    assert!(
        net.run_until(Duration::from_secs(30), |n| n.node(server).messages.len()
            >= 2_700)
    );
    let first = &net.node(server).messages[..2_700];
    let low = first
        .iter()
        .filter(|(_, m)| m.priority == Priority::Low)
        .count();
    let share = low as f64 / first.len() as f64;
    eprintln!("low share {share:.4}");
    assert!(
        share >= 1.0 / 9.0 - 0.01,
        "Low got {share:.3} of the messages"
    );
    assert!(
        share <= 1.0 / 9.0 + 0.03,
        "High is served first: Low got {share:.3}"
    );
}

/// Two busy connections of one endpoint through one bottleneck get service within 20 % of each
/// other.
#[test]
fn two_busy_connections_get_equal_service() {
    let mut net = Network::new();
    let server = net.add_node(EndpointConfig::default(), 31);
    let a = net.add_node(EndpointConfig::default(), 32);
    let b = net.add_node(EndpointConfig::default(), 33);
    let bottleneck = net
        .add_link(
            LinkConfig::new()
                .with_fixed_latency_ms(10.0)
                .with_bandwidth_queue_kbps(20_000, 20_000, carrier_sim::QueueLimit::Millis(5_000)),
            40,
        )
        .unwrap();
    net.route(server, a, bottleneck);
    net.route(server, b, bottleneck);
    let ida = net.connect(a, server).unwrap();
    let idb = net.connect(b, server).unwrap();
    assert!(
        net.run_until(Duration::from_secs(2), |n| n.is_connected(a, ida)
            && n.is_connected(b, idb))
    );
    let sa = net.connection_to(server, a).unwrap();
    let sb = net.connection_to(server, b).unwrap();
    let payload = vec![1u8; 1_000];
    for _ in 0..6_000 {
        send(
            &mut net,
            server,
            sa,
            0,
            Priority::Normal,
            Reliability::Reliable,
            &payload,
        );
        send(
            &mut net,
            server,
            sb,
            0,
            Priority::Normal,
            Reliability::Reliable,
            &payload,
        );
    }
    net.run_for(Duration::from_secs(2));
    let got_a = net.node(a).messages.len() as f64;
    let got_b = net.node(b).messages.len() as f64;
    eprintln!("a {got_a} b {got_b}");
    assert!(got_a > 1_000.0 && got_b > 1_000.0, "{got_a} {got_b}");
    assert!(
        (got_a - got_b).abs() / got_a.max(got_b) <= 0.2,
        "{got_a} vs {got_b}"
    );
}
