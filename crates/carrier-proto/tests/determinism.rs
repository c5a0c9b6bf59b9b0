//! The same seeds and inputs give the same transcript of datagrams and events; sequence numbers
//! survive the 32-bit wrap of their wire form (docs/protocol.md §6).

use std::time::Duration;

use carrier_proto::testing::Network;
use carrier_proto::{ChannelId, EndpointConfig, Priority, Reliability};
use carrier_sim::LinkConfig;

fn run(endpoint_seed: u64, link_seed: u64) -> (u64, usize) {
    let mut net = Network::new();
    let server = net.add_node(EndpointConfig::default(), endpoint_seed);
    let client = net.add_node(EndpointConfig::default(), endpoint_seed + 1);
    let link = LinkConfig::new()
        .with_latency_ms(5.0, 40.0)
        .with_reorder(true)
        .with_loss(0.1)
        .with_duplicate(0.02);
    net.route_both(client, server, link, link_seed).unwrap();
    let id = net.connect(client, server).unwrap();
    assert!(net.run_until(Duration::from_secs(5), |n| n.is_connected(client, id)));
    for i in 0..3_000u32 {
        let r = if i % 3 == 0 {
            Reliability::Unreliable
        } else {
            Reliability::Reliable
        };
        let len = 1 + (i as usize * 7919) % 4_000;
        net.node_mut(client)
            .endpoint
            .send(
                id,
                ChannelId::new((i % 2) as u8),
                Priority::ALL[(i % 3) as usize],
                r,
                vec![i as u8; len],
            )
            .unwrap();
    }
    net.run_for(Duration::from_secs(10));
    (net.transcript_hash(), net.node(server).messages.len())
}

#[test]
fn same_seed_same_transcript_different_seed_different_transcript() {
    let a = run(100, 7);
    let b = run(100, 7);
    assert_eq!(a, b, "identical runs");
    assert!(a.1 >= 2_000, "the run carried traffic: {a:?}");
    let c = run(100, 8);
    assert_ne!(a.0, c.0, "another link seed changes the transcript");
    let d = run(200, 7);
    assert_ne!(a.0, d.0, "another endpoint seed changes the transcript");
}

/// Sequence numbers and packet numbers start just below 2^32 and cross it, on a lossy,
/// reordering link, with far more than 65,536 packets and messages.
#[test]
fn sequence_numbers_wrap_around_the_wire_width() {
    for initial in [0u64, (1 << 32) - 30_000] {
        let config = EndpointConfig {
            initial_sequence: initial,
            ..EndpointConfig::default()
        };
        let mut net = Network::new();
        let server = net.add_node(config.clone(), 1);
        let client = net.add_node(config, 2);
        let link = LinkConfig::new()
            .with_latency_ms(10.0, 12.0)
            .with_reorder(true)
            .with_loss(0.05);
        net.route_both(client, server, link, 3).unwrap();
        let id = net.connect(client, server).unwrap();
        assert!(net.run_until(Duration::from_secs(5), |n| n.is_connected(client, id)));
        let total = 100_000u32;
        let mut next = 0u32;
        let mut seen = 0u32;
        while seen < total {
            // A message per packet (900 bytes) so packets and messages both pass 65,536.
            while next < total && next < seen + 2_000 {
                let mut payload = vec![0u8; 900];
                payload[..4].copy_from_slice(&next.to_be_bytes());
                net.node_mut(client)
                    .endpoint
                    .send(
                        id,
                        ChannelId::new(0),
                        Priority::Normal,
                        Reliability::Reliable,
                        payload,
                    )
                    .unwrap();
                next += 1;
            }
            net.step(Duration::from_millis(5));
            for (_, m) in std::mem::take(&mut net.node_mut(server).messages) {
                let n = u32::from_be_bytes(m.payload[..4].try_into().unwrap());
                assert_eq!(n, seen, "initial {initial}: out of order");
                seen += 1;
            }
            assert!(
                net.elapsed() < Duration::from_secs(600),
                "stalled at {seen}: client {:?} server {:?}",
                net.node(client).events,
                net.node(server).events
            );
        }
        let sent = net.datagrams_sent();
        assert!(sent > 100_000, "{sent} datagrams");
    }
}
