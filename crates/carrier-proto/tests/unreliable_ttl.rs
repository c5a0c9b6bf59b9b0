//! The unreliable TTL counts from when a message is queued, as far as the endpoint can tell
//! (docs/protocol.md §16): `Endpoint::send` takes no clock, so a message queued after a pause
//! in which the endpoint saw no time (an idle connection, a stalled thread) must not be taken
//! for one that has waited the whole pause, and dropped unsent.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use carrier_proto::{
    ChannelId, ConnectionId, Endpoint, EndpointConfig, Event, Priority, Reliability,
};

const CLIENT: &str = "127.0.0.1:4001";
const SERVER: &str = "127.0.0.1:4000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Moves datagrams both ways at `now` until neither side has anything to send.
fn exchange(now: Instant, client: &mut Endpoint, server: &mut Endpoint) {
    let mut buf = vec![0u8; 2_048];
    for _ in 0..100 {
        let mut moved = false;
        while let Some(t) = client.poll_transmit(now, &mut buf) {
            server.handle(now, addr(CLIENT), &buf[..t.size]);
            moved = true;
        }
        while let Some(t) = server.poll_transmit(now, &mut buf) {
            client.handle(now, addr(SERVER), &buf[..t.size]);
            moved = true;
        }
        if !moved {
            return;
        }
    }
    panic!("the endpoints never went quiet");
}

fn connected(t0: Instant) -> (Endpoint, Endpoint, ConnectionId) {
    let mut client = Endpoint::new(EndpointConfig::default(), t0, 1).unwrap();
    let mut server = Endpoint::new(EndpointConfig::default(), t0, 2).unwrap();
    let id = client.connect(t0, addr(SERVER)).unwrap();
    exchange(t0, &mut client, &mut server);
    let established = std::iter::from_fn(|| client.poll_event())
        .any(|e| matches!(e, Event::ConnectionEstablished { .. }));
    assert!(established);
    while server.poll_event().is_some() {}
    (client, server, id)
}

/// A message queued after a pause longer than the TTL, and sent at the first chance, arrives.
#[test]
fn a_message_queued_after_a_pause_is_sent_not_expired() {
    #[allow(clippy::disallowed_methods)] // the test's epoch
    let t0 = Instant::now();
    let (mut client, mut server, id) = connected(t0);
    let ttl = EndpointConfig::default().unreliable_ttl;
    for pause in [ttl + Duration::from_millis(1), 3 * ttl] {
        let now = t0 + pause;
        client
            .send(
                id,
                ChannelId::new(0),
                Priority::Normal,
                Reliability::Unreliable,
                &b"after a pause"[..],
            )
            .unwrap();
        exchange(now, &mut client, &mut server);
        let got = server.poll_message().map(|(_, m)| m.payload);
        assert_eq!(
            got.as_deref(),
            Some(&b"after a pause"[..]),
            "pause {pause:?}"
        );
        assert_eq!(client.connection(id).unwrap().expired_unreliable(), 0);
    }
}

/// Unreliable messages held back by a closed congestion window expire at their TTL, counted at
/// once, not only when the window opens again (the peer here never acknowledges anything).
#[test]
fn messages_behind_a_closed_window_expire_at_their_ttl() {
    use carrier_proto::traffic::{CongestionControl, DefaultTrafficControlFactory, TrafficConfig};
    use std::sync::Arc;
    #[allow(clippy::disallowed_methods)] // the test's epoch
    let t0 = Instant::now();
    let small_window = EndpointConfig {
        traffic_control: Arc::new(DefaultTrafficControlFactory::new(TrafficConfig {
            congestion_control: CongestionControl::FixedWindow,
            window: 4_096,
            // No retransmission timeout before the TTL: nothing reopens the window.
            min_rto: Duration::from_secs(2),
            ..TrafficConfig::default()
        })),
        ..EndpointConfig::default()
    };
    let mut client = Endpoint::new(small_window, t0, 1).unwrap();
    let mut server = Endpoint::new(EndpointConfig::default(), t0, 2).unwrap();
    let id = client.connect(t0, addr(SERVER)).unwrap();
    exchange(t0, &mut client, &mut server);
    assert!(
        std::iter::from_fn(|| client.poll_event())
            .any(|e| matches!(e, Event::ConnectionEstablished { .. }))
    );
    let payload = [7u8; 1_000];
    for _ in 0..40 {
        client
            .send_copy(
                id,
                ChannelId::new(0),
                Priority::Normal,
                Reliability::Unreliable,
                &payload,
            )
            .unwrap();
    }
    // The window lets a few datagrams out; they vanish (no acknowledgement ever comes).
    let mut buf = vec![0u8; 2_048];
    let mut sent = 0;
    while client.poll_transmit(t0, &mut buf).is_some() {
        sent += 1;
    }
    let queued = client.connection(id).unwrap().queued_messages();
    assert!(sent > 0 && queued > 0, "sent {sent}, queued {queued}");
    // Past the TTL, with the window still closed, one poll drops the rest.
    let ttl = EndpointConfig::default().unreliable_ttl;
    let later = t0 + ttl + Duration::from_millis(1);
    client.handle_timeout(later);
    while client.poll_transmit(later, &mut buf).is_some() {}
    let conn = client.connection(id).unwrap();
    assert_eq!(conn.queued_messages(), 0);
    assert_eq!(conn.expired_unreliable(), queued as u64);
}
