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
