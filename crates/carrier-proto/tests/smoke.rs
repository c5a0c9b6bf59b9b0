//! Connection establishment and a message each way over a perfect and a lossy link.

use std::time::Duration;

use carrier_proto::testing::Network;
use carrier_proto::{ChannelId, EndpointConfig, Event, Priority, Reliability};
use carrier_sim::LinkConfig;

#[test]
fn connect_and_exchange_messages() {
    let mut net = Network::new();
    let server = net.add_node(EndpointConfig::default(), 1);
    let client = net.add_node(EndpointConfig::default(), 2);
    net.route_both(
        client,
        server,
        LinkConfig::new().with_fixed_latency_ms(10.0),
        3,
    )
    .unwrap();
    let id = net.connect(client, server).unwrap();
    assert!(net.run_until(Duration::from_secs(1), |n| n.is_connected(client, id)));
    let sid = net.connection_to(server, client).unwrap();
    assert!(net.is_connected(server, sid));
    assert!(matches!(
        net.node(server).events[0],
        Event::IncomingConnection { .. }
    ));
    for i in 0..100u32 {
        net.node_mut(client)
            .endpoint
            .send(
                id,
                ChannelId::new(1),
                Priority::Normal,
                Reliability::Reliable,
                i.to_be_bytes().to_vec(),
            )
            .unwrap();
    }
    net.node_mut(server)
        .endpoint
        .send(
            sid,
            ChannelId::new(0),
            Priority::High,
            Reliability::Reliable,
            vec![9u8; 5000],
        )
        .unwrap();
    assert!(
        net.run_until(Duration::from_secs(2), |n| n.node(server).messages.len()
            == 100
            && n.node(client).messages.len() == 1)
    );
    for (i, (_, m)) in net.node(server).messages.iter().enumerate() {
        assert_eq!(&m.payload[..], &(i as u32).to_be_bytes());
    }
    assert_eq!(net.node(client).messages[0].1.payload.len(), 5000);
    net.run_for(Duration::from_millis(100));
    let rtt = net.node(client).endpoint.connection(id).unwrap().rtt();
    assert!(
        rtt.has_samples,
        "{rtt:?} {:?}",
        net.node(client)
            .endpoint
            .connection(id)
            .unwrap()
            .statistics(net.now())
            .lifetime
    );
    assert!(
        rtt.smoothed >= Duration::from_millis(19) && rtt.smoothed <= Duration::from_millis(30),
        "{rtt:?}"
    );
}

#[test]
fn reliable_delivery_through_loss() {
    let mut net = Network::new();
    let server = net.add_node(EndpointConfig::default(), 1);
    let client = net.add_node(EndpointConfig::default(), 2);
    let link = LinkConfig::new()
        .with_latency_ms(5.0, 30.0)
        .with_reorder(true)
        .with_loss(0.2)
        .with_duplicate(0.05);
    net.route_both(client, server, link, 3).unwrap();
    let id = net.connect(client, server).unwrap();
    assert!(net.run_until(Duration::from_secs(5), |n| n.is_connected(client, id)));
    for i in 0..2000u32 {
        let len = 1 + (i as usize * 37) % 3000;
        let mut payload = vec![(i % 251) as u8; len];
        payload[..4.min(len)].copy_from_slice(&i.to_be_bytes()[..4.min(len)]);
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
    }
    assert!(
        net.run_until(Duration::from_secs(60), |n| n.node(server).messages.len()
            >= 2000),
        "delivered {}",
        net.node(server).messages.len()
    );
    assert_eq!(net.node(server).messages.len(), 2000);
    for (i, (_, m)) in net.node(server).messages.iter().enumerate() {
        let len = 1 + (i * 37) % 3000;
        assert_eq!(m.payload.len(), len, "message {i}");
    }
}
