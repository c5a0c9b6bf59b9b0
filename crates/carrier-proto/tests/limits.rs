//! Limits agreed in the handshake (docs/protocol.md §4.6, §14): when the two sides configure
//! different channel counts, maximum message sizes or maximum datagram sizes, the connection uses
//! the smaller of each pair on both sides, sends beyond the agreed limits are refused locally with
//! a typed error (so no stream ever stalls on a message the peer would have to drop), nothing on
//! the wire exceeds the agreed datagram size, and `LimitsPolicy::RequireEqual` refuses any
//! difference. A peer that sends a message above the agreed maximum anyway (written by hand
//! here) gets nothing delivered and its packet treated as `Malformed`. Also: every rule of
//! `EndpointConfig::validate` names its field.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use carrier_proto::testing::{LinkId, Network, NodeId};
use carrier_proto::{
    ChannelId, ConnectionId, DisconnectReason, DropReason, Endpoint, EndpointConfig, Event,
    LimitsPolicy, Priority, Reliability, SendError,
};
use carrier_sim::LinkConfig;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// A connected client/server pair over a 10 ms link each way.
struct Pair {
    net: Network,
    server: NodeId,
    client: NodeId,
    /// The client's connection.
    cid: ConnectionId,
    /// The server's connection.
    sid: ConnectionId,
    /// client → server, server → client.
    links: (LinkId, LinkId),
}

fn connected_pair(
    server_cfg: EndpointConfig,
    client_cfg: EndpointConfig,
    link: LinkConfig,
) -> Pair {
    let mut net = Network::new();
    let server = net.add_node(server_cfg, 21);
    let client = net.add_node(client_cfg, 22);
    let links = net.route_both(client, server, link, 9).unwrap();
    let cid = net.connect(client, server).unwrap();
    assert!(
        net.run_until(Duration::from_secs(2), |n| n.is_connected(client, cid)
            && n.connection_to(server, client)
                .is_some_and(|sid| n.is_connected(server, sid))),
        "the pair did not connect: client events {:?}",
        net.node(client).events
    );
    let sid = net.connection_to(server, client).unwrap();
    Pair {
        net,
        server,
        client,
        cid,
        sid,
        links,
    }
}

fn latency() -> LinkConfig {
    LinkConfig::new().with_fixed_latency_ms(10.0)
}

impl Pair {
    fn send(
        &mut self,
        node: NodeId,
        channel: u8,
        reliability: Reliability,
        payload: Vec<u8>,
    ) -> Result<(), SendError> {
        let id = if node == self.client {
            self.cid
        } else {
            self.sid
        };
        self.net.node_mut(node).endpoint.send(
            id,
            ChannelId::new(channel),
            Priority::Normal,
            reliability,
            payload,
        )
    }

    /// Runs until `server` and `client` have delivered at least the given message counts.
    fn deliver(&mut self, to_server: usize, to_client: usize, limit: Duration) {
        let (server, client) = (self.server, self.client);
        let done = self.net.run_until(limit, |n| {
            n.node(server).messages.len() >= to_server && n.node(client).messages.len() >= to_client
        });
        assert!(
            done,
            "delivered {} of {to_server} to the server and {} of {to_client} to the client",
            self.net.node(server).messages.len(),
            self.net.node(client).messages.len()
        );
    }

    fn malformed_drops(&self) -> (u64, u64) {
        (
            self.net
                .node(self.server)
                .endpoint
                .drops()
                .get(DropReason::Malformed),
            self.net
                .node(self.client)
                .endpoint
                .drops()
                .get(DropReason::Malformed),
        )
    }
}

/// A payload whose bytes depend on `tag` and the position, so a mix-up is visible.
fn payload(tag: u32, len: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(31)
                .wrapping_add(tag.wrapping_mul(7)) as u8
        })
        .collect();
    let head = tag.to_be_bytes();
    let n = head.len().min(len);
    p[..n].copy_from_slice(&head[..n]);
    p
}

fn failed(events: &[Event]) -> Option<DisconnectReason> {
    events.iter().find_map(|e| match e {
        Event::FailedToConnect { reason, .. } => Some(*reason),
        _ => None,
    })
}

// ---------------------------------------------------------------------------------------------
// Channel count
// ---------------------------------------------------------------------------------------------

#[test]
fn mismatched_channel_counts_use_the_smaller_on_both_sides() {
    let client_cfg = EndpointConfig {
        channel_count: 8,
        ..EndpointConfig::default()
    };
    let server_cfg = EndpointConfig {
        channel_count: 3,
        ..EndpointConfig::default()
    };
    let mut p = connected_pair(server_cfg, client_cfg, latency());
    let client_conn = p.net.node(p.client).endpoint.connection(p.cid).unwrap();
    assert_eq!(
        client_conn.channel_count(),
        3,
        "initiator uses the agreed count"
    );
    let server_conn = p.net.node(p.server).endpoint.connection(p.sid).unwrap();
    assert_eq!(
        server_conn.channel_count(),
        3,
        "acceptor uses the agreed count"
    );

    // Channels 3 (the first beyond the agreed count), 5 and 7 (valid for the client's own
    // configuration) are refused locally on both sides, reliable or not.
    for node in [p.client, p.server] {
        for channel in [3u8, 5, 7, 255] {
            for reliability in [Reliability::Reliable, Reliability::Unreliable] {
                assert_eq!(
                    p.send(node, channel, reliability, b"nope".to_vec()),
                    Err(SendError::InvalidChannel {
                        channel: ChannelId::new(channel),
                        count: 3
                    }),
                    "node {node} channel {channel} {reliability:?}"
                );
            }
        }
    }
    for node in [p.client, p.server] {
        let id = if node == p.client { p.cid } else { p.sid };
        let conn = p.net.node(node).endpoint.connection(id).unwrap();
        assert_eq!(conn.queued_messages(), 0, "a refused send queues nothing");
    }

    // Nothing stalls: messages on channels 0..=2 flow both ways, in order per channel.
    let per_channel = 40u32;
    for i in 0..per_channel {
        for channel in 0..3u8 {
            let tag = u32::from(channel) * 1000 + i;
            p.send(p.client, channel, Reliability::Reliable, payload(tag, 100))
                .unwrap();
            p.send(p.server, channel, Reliability::Reliable, payload(tag, 3000))
                .unwrap();
        }
        // A refused send in the middle of the stream changes nothing.
        assert!(
            p.send(p.client, 5, Reliability::Reliable, b"x".to_vec())
                .is_err()
        );
    }
    let total = 3 * per_channel as usize;
    p.deliver(total, total, Duration::from_secs(5));
    for node in [p.server, p.client] {
        let messages = &p.net.node(node).messages;
        assert_eq!(messages.len(), total);
        for channel in 0..3u8 {
            let tags: Vec<u32> = messages
                .iter()
                .filter(|(_, m)| m.channel == ChannelId::new(channel))
                .map(|(_, m)| u32::from_be_bytes(m.payload[..4].try_into().unwrap()))
                .collect();
            let expected: Vec<u32> = (0..per_channel)
                .map(|i| u32::from(channel) * 1000 + i)
                .collect();
            assert_eq!(tags, expected, "node {node} channel {channel}");
        }
    }
    assert_eq!(
        p.malformed_drops(),
        (0, 0),
        "no frame beyond the agreed count"
    );
    assert!(p.net.is_connected(p.client, p.cid));
    assert!(p.net.is_connected(p.server, p.sid));
}

#[test]
fn fewer_channels_on_the_initiator_are_agreed_too() {
    let client_cfg = EndpointConfig {
        channel_count: 2,
        ..EndpointConfig::default()
    };
    let mut p = connected_pair(EndpointConfig::default(), client_cfg, latency());
    assert_eq!(
        p.net
            .node(p.client)
            .endpoint
            .connection(p.cid)
            .unwrap()
            .channel_count(),
        2
    );
    assert_eq!(
        p.net
            .node(p.server)
            .endpoint
            .connection(p.sid)
            .unwrap()
            .channel_count(),
        2
    );
    assert_eq!(
        p.send(p.server, 2, Reliability::Reliable, b"x".to_vec()),
        Err(SendError::InvalidChannel {
            channel: ChannelId::new(2),
            count: 2
        })
    );
    p.send(p.server, 1, Reliability::Reliable, b"ok".to_vec())
        .unwrap();
    p.deliver(0, 1, Duration::from_secs(1));
    assert_eq!(
        p.net.node(p.client).messages[0].1.channel,
        ChannelId::new(1)
    );
}

// ---------------------------------------------------------------------------------------------
// Maximum message size
// ---------------------------------------------------------------------------------------------

fn message_size_pair() -> Pair {
    let client_cfg = EndpointConfig {
        max_message_size: MIB,
        ..EndpointConfig::default()
    };
    let server_cfg = EndpointConfig {
        max_message_size: 64 * KIB,
        ..EndpointConfig::default()
    };
    connected_pair(server_cfg, client_cfg, latency())
}

#[test]
fn mismatched_max_message_sizes_use_the_smaller_on_both_sides() {
    let mut p = message_size_pair();
    for (node, id) in [(p.client, p.cid), (p.server, p.sid)] {
        let conn = p.net.node(node).endpoint.connection(id).unwrap();
        assert_eq!(conn.max_message_size(), 64 * KIB, "node {node}");
    }
    // 100 KiB is within the client's own limit but not the agreed one: refused on both sides.
    for node in [p.client, p.server] {
        for reliability in [Reliability::Reliable, Reliability::Unreliable] {
            assert_eq!(
                p.send(node, 0, reliability, vec![1; 100 * KIB]),
                Err(SendError::TooLarge {
                    size: 100 * KIB,
                    max: 64 * KIB
                }),
                "node {node} {reliability:?}"
            );
        }
    }
    // A message of exactly the agreed maximum goes through both ways, reliable and unreliable.
    p.send(p.client, 0, Reliability::Reliable, payload(1, 64 * KIB))
        .unwrap();
    p.send(p.server, 0, Reliability::Reliable, payload(2, 64 * KIB))
        .unwrap();
    p.send(p.client, 1, Reliability::Unreliable, payload(3, 64 * KIB))
        .unwrap();
    p.send(p.server, 1, Reliability::Unreliable, payload(4, 64 * KIB))
        .unwrap();
    p.deliver(2, 2, Duration::from_secs(5));
    let at_server: Vec<_> = p
        .net
        .node(p.server)
        .messages
        .iter()
        .map(|(_, m)| m.clone())
        .collect();
    let at_client: Vec<_> = p
        .net
        .node(p.client)
        .messages
        .iter()
        .map(|(_, m)| m.clone())
        .collect();
    for (messages, tags) in [(at_server, [1, 3]), (at_client, [2, 4])] {
        assert_eq!(messages.len(), 2);
        for tag in tags {
            let m = messages
                .iter()
                .find(|m| m.payload[..4] == (tag as u32).to_be_bytes())
                .unwrap_or_else(|| panic!("message {tag} missing"));
            assert_eq!(
                &m.payload[..],
                &payload(tag as u32, 64 * KIB)[..],
                "message {tag}"
            );
        }
    }
    assert_eq!(p.malformed_drops(), (0, 0));
}

#[test]
fn sends_above_the_agreed_maximum_are_refused_and_the_stream_does_not_stall() {
    let mut p = message_size_pair();
    let max = 64 * KIB;
    for node in [p.client, p.server] {
        // One byte above: refused with the sizes in the error.
        assert_eq!(
            p.send(node, 0, Reliability::Reliable, vec![0; max + 1]),
            Err(SendError::TooLarge { size: max + 1, max })
        );
        // Far above (the client's own 1 MiB limit): refused too.
        assert_eq!(
            p.send(node, 0, Reliability::Reliable, vec![0; MIB]),
            Err(SendError::TooLarge { size: MIB, max })
        );
    }
    // The refused sends took no sequence number: the next messages of the same stream arrive in
    // order, none waits for a message that was never sent.
    for i in 0..10u32 {
        p.send(
            p.client,
            0,
            Reliability::Reliable,
            payload(i, 1 + i as usize * 7000),
        )
        .unwrap();
        p.send(
            p.server,
            0,
            Reliability::Reliable,
            payload(i, 1 + i as usize * 7000),
        )
        .unwrap();
        assert!(
            p.send(p.client, 0, Reliability::Reliable, vec![0; max + 1])
                .is_err()
        );
    }
    p.deliver(10, 10, Duration::from_secs(5));
    for node in [p.server, p.client] {
        let lens: Vec<usize> = p
            .net
            .node(node)
            .messages
            .iter()
            .map(|(_, m)| m.payload.len())
            .collect();
        let expected: Vec<usize> = (0..10).map(|i| 1 + i * 7000).collect();
        assert_eq!(lens, expected, "node {node}");
    }
}

#[test]
fn default_limit_refuses_one_byte_above_one_mebibyte() {
    let mut p = connected_pair(
        EndpointConfig::default(),
        EndpointConfig::default(),
        latency(),
    );
    assert_eq!(
        p.send(p.client, 0, Reliability::Reliable, vec![0; MIB + 1]),
        Err(SendError::TooLarge {
            size: MIB + 1,
            max: MIB
        })
    );
    p.send(p.client, 0, Reliability::Reliable, payload(5, MIB))
        .unwrap();
    p.deliver(1, 0, Duration::from_secs(10));
    assert_eq!(
        &p.net.node(p.server).messages[0].1.payload[..],
        &payload(5, MIB)[..]
    );
}

// ---------------------------------------------------------------------------------------------
// Maximum datagram size
// ---------------------------------------------------------------------------------------------

const SMALL_DATAGRAM: usize = 1_236;

fn datagram_size_pair() -> Pair {
    let client_cfg = EndpointConfig {
        max_datagram_size: 1_372,
        ..EndpointConfig::default()
    };
    let server_cfg = EndpointConfig {
        max_datagram_size: SMALL_DATAGRAM,
        ..EndpointConfig::default()
    };
    // The links drop (and count) anything above the agreed size, in both directions.
    let link = latency().with_mtu(SMALL_DATAGRAM);
    connected_pair(server_cfg, client_cfg, link)
}

#[test]
fn mismatched_datagram_sizes_use_the_smaller_and_nothing_larger_is_sent() {
    let mut p = datagram_size_pair();
    let mtu = carrier_proto::message_mtu(SMALL_DATAGRAM);
    for (node, id) in [(p.client, p.cid), (p.server, p.sid)] {
        let conn = p.net.node(node).endpoint.connection(id).unwrap();
        assert_eq!(conn.max_datagram_size(), SMALL_DATAGRAM, "node {node}");
        assert_eq!(conn.message_mtu(), mtu, "node {node}");
    }
    // Large fragmented messages, messages of exactly the message MTU (the largest sent
    // unsplit), one byte more (the smallest split), and a stream of small messages that packs
    // datagrams full — both ways at once, so ACKs ride along with data.
    let mut sizes = Vec::new();
    for i in 0..12 {
        sizes.push(20_000 + i * 1_111);
        sizes.push(mtu);
        sizes.push(mtu + 1);
    }
    for i in 0..300 {
        sizes.push(1 + (i * 13) % 200);
    }
    sizes.push(64 * KIB);
    for (i, &len) in sizes.iter().enumerate() {
        let tag = i as u32;
        p.send(p.client, 0, Reliability::Reliable, payload(tag, len))
            .unwrap();
        p.send(p.server, 0, Reliability::Reliable, payload(tag, len))
            .unwrap();
    }
    // Unreliable messages of the MTU on another channel (lossless link: all arrive).
    for i in 0..20u32 {
        p.send(
            p.client,
            1,
            Reliability::Unreliable,
            payload(10_000 + i, mtu),
        )
        .unwrap();
        p.send(
            p.server,
            1,
            Reliability::Unreliable,
            payload(10_000 + i, mtu),
        )
        .unwrap();
    }
    let total = sizes.len() + 20;
    p.deliver(total, total, Duration::from_secs(20));
    for node in [p.server, p.client] {
        let messages = &p.net.node(node).messages;
        let reliable: Vec<_> = messages
            .iter()
            .filter(|(_, m)| m.channel == ChannelId::new(0))
            .collect();
        assert_eq!(reliable.len(), sizes.len());
        for (i, (_, m)) in reliable.iter().enumerate() {
            assert_eq!(
                &m.payload[..],
                &payload(i as u32, sizes[i])[..],
                "node {node} message {i}"
            );
        }
        let unreliable = messages.len() - reliable.len();
        assert_eq!(
            unreliable, 20,
            "node {node}: unreliable messages lost on a lossless link"
        );
    }
    for link in [p.links.0, p.links.1] {
        let stats = p.net.link(link).stats();
        assert_eq!(
            stats.dropped_mtu, 0,
            "link {link}: a datagram above {SMALL_DATAGRAM} bytes"
        );
        assert_eq!(stats.dropped(), 0, "link {link}: {stats:?}");
        assert!(
            stats.packets_in > 100,
            "link {link} carried traffic: {stats:?}"
        );
    }
    assert_eq!(p.malformed_drops(), (0, 0));
}

/// The message MTU is the datagram size minus the data header (12), the checksum (4), room for
/// an ACK (24) and the largest message frame header below 16 KiB (12) (docs/protocol.md §3,
/// §14).
#[test]
fn message_mtu_leaves_room_for_header_checksum_ack_and_frame_header() {
    let expected = |d: usize| d - 12 - 4 - 24 - 12;
    assert_eq!(carrier_proto::message_mtu(1_372), expected(1_372));
    assert_eq!(
        carrier_proto::message_mtu(SMALL_DATAGRAM),
        expected(SMALL_DATAGRAM)
    );
    let p = datagram_size_pair();
    for (node, id) in [(p.client, p.cid), (p.server, p.sid)] {
        let conn = p.net.node(node).endpoint.connection(id).unwrap();
        assert_eq!(conn.message_mtu(), expected(SMALL_DATAGRAM), "node {node}");
    }
}

// ---------------------------------------------------------------------------------------------
// LimitsPolicy::RequireEqual
// ---------------------------------------------------------------------------------------------

fn require_equal() -> EndpointConfig {
    EndpointConfig {
        limits_policy: LimitsPolicy::RequireEqual,
        ..EndpointConfig::default()
    }
}

#[test]
fn require_equal_refuses_any_difference() {
    let defaults = EndpointConfig::default();
    let differing = [
        (
            "channel_count",
            EndpointConfig {
                channel_count: 7,
                ..EndpointConfig::default()
            },
        ),
        (
            "max_message_size",
            EndpointConfig {
                max_message_size: defaults.max_message_size - 1,
                ..EndpointConfig::default()
            },
        ),
        (
            "max_datagram_size",
            EndpointConfig {
                max_datagram_size: defaults.max_datagram_size - 1,
                ..EndpointConfig::default()
            },
        ),
        (
            "larger max_datagram_size",
            EndpointConfig {
                max_datagram_size: defaults.max_datagram_size + 100,
                ..EndpointConfig::default()
            },
        ),
    ];
    for (what, client_cfg) in differing {
        let mut net = Network::new();
        let server = net.add_node(require_equal(), 31);
        let client = net.add_node(client_cfg, 32);
        net.route_both(client, server, latency(), 3).unwrap();
        let id = net.connect(client, server).unwrap();
        assert!(
            net.run_until(Duration::from_secs(3), |n| failed(&n.node(client).events)
                .is_some()),
            "{what}: no answer"
        );
        assert_eq!(
            failed(&net.node(client).events),
            Some(DisconnectReason::LimitsRefused),
            "{what}"
        );
        assert!(!net.is_connected(client, id), "{what}");
        assert!(
            !net.node(server)
                .events
                .iter()
                .any(|e| matches!(e, Event::ConnectionEstablished { .. })),
            "{what}: the acceptor established a connection it refused"
        );
        net.run_for(Duration::from_secs(1));
        assert_eq!(
            net.node(server).endpoint.table_sizes().connections,
            0,
            "{what}"
        );
        assert_eq!(
            net.node(client).endpoint.table_sizes().connections,
            0,
            "{what}"
        );
    }
}

#[test]
fn require_equal_accepts_equal_limits() {
    let client_cfg = EndpointConfig {
        channel_count: 4,
        max_message_size: 100_000,
        max_datagram_size: 1_000,
        ..EndpointConfig::default()
    };
    let server_cfg = EndpointConfig {
        limits_policy: LimitsPolicy::RequireEqual,
        ..client_cfg.clone()
    };
    let mut p = connected_pair(server_cfg, client_cfg, latency());
    for (node, id) in [(p.client, p.cid), (p.server, p.sid)] {
        let conn = p.net.node(node).endpoint.connection(id).unwrap();
        assert_eq!(conn.channel_count(), 4);
        assert_eq!(conn.max_message_size(), 100_000);
        assert_eq!(conn.max_datagram_size(), 1_000);
    }
    p.send(p.client, 3, Reliability::Reliable, payload(1, 100_000))
        .unwrap();
    p.deliver(1, 0, Duration::from_secs(3));
    assert_eq!(
        &p.net.node(p.server).messages[0].1.payload[..],
        &payload(1, 100_000)[..]
    );
}

// ---------------------------------------------------------------------------------------------
// Limits on the wire: values nobody can work with, and an acceptor that agrees too much
// ---------------------------------------------------------------------------------------------

fn peer(i: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, i)), 4000)
}

fn seal(mut d: Vec<u8>) -> Vec<u8> {
    let sum = crc32fast::hash(&d);
    d.extend_from_slice(&sum.to_be_bytes());
    d
}

/// A `ConnectRequest` (docs/protocol.md §4.1) with the default handshake payload (version 1).
fn request(
    id: u32,
    cookie: &[u8; 20],
    channels: u8,
    max_message: u32,
    max_datagram: u16,
) -> Vec<u8> {
    let mut d = vec![0xCA, 0x77, 1, 1];
    d.extend_from_slice(&id.to_be_bytes());
    d.extend_from_slice(cookie);
    d.push(channels);
    d.extend_from_slice(&max_message.to_be_bytes());
    d.extend_from_slice(&max_datagram.to_be_bytes());
    d.extend_from_slice(&(4u32 << 20).to_be_bytes());
    d.extend_from_slice(&[0, 4, 0, 0, 0, 1]);
    seal(d)
}

/// `UseSmaller` still refuses values it cannot work with: no channel, an empty maximum message,
/// a maximum datagram below 256 bytes (docs/protocol.md §4.6). Such requests come only from a
/// foreign implementation, so they are written by hand.
#[test]
fn use_smaller_refuses_unworkable_limits_with_limits_refused() {
    let mut net = Network::new();
    let server = net.add_node(EndpointConfig::default(), 41);
    let now = net.now();
    let endpoint = &mut net.node_mut(server).endpoint;
    let mut buf = vec![0u8; 2048];
    let cases: [(u8, u32, u16); 4] = [
        (0, 1 << 20, 1372),
        (8, 0, 1372),
        (8, 1 << 20, 255),
        (8, 1 << 20, 0),
    ];
    for (i, (channels, max_message, max_datagram)) in cases.into_iter().enumerate() {
        let from = peer(i as u8 + 1);
        let id = 0x1000 + i as u32;
        endpoint.handle(
            now,
            from,
            &request(id, &[0; 20], channels, max_message, max_datagram),
        );
        let t = endpoint.poll_transmit(now, &mut buf).expect("a challenge");
        assert_eq!(t.destination, from);
        assert_eq!(buf[3], 2, "challenge");
        let mut cookie = [0u8; 20];
        cookie.copy_from_slice(&buf[8..28]);
        endpoint.handle(
            now,
            from,
            &request(id, &cookie, channels, max_message, max_datagram),
        );
        let t = endpoint.poll_transmit(now, &mut buf).expect("a reject");
        assert_eq!(t.destination, from);
        let reply = &buf[..t.size];
        assert_eq!(reply[3], 4, "case {i}: a Reject, got {reply:?}");
        assert_eq!(&reply[4..8], &id.to_be_bytes(), "case {i}: echoes the id");
        assert_eq!(reply[8], DisconnectReason::LimitsRefused.code(), "case {i}");
        assert_eq!(
            endpoint.table_sizes().connections,
            0,
            "case {i}: no state kept"
        );
    }
    // A workable but small request is accepted with the smaller values.
    let from = peer(100);
    endpoint.handle(now, from, &request(77, &[0; 20], 2, 5_000, 256));
    let _ = endpoint.poll_transmit(now, &mut buf).expect("a challenge");
    let mut cookie = [0u8; 20];
    cookie.copy_from_slice(&buf[8..28]);
    endpoint.handle(now, from, &request(77, &cookie, 2, 5_000, 256));
    let t = endpoint.poll_transmit(now, &mut buf).expect("an accept");
    let reply = &buf[..t.size];
    assert_eq!(reply[3], 3, "an Accept, got {reply:?}");
    assert_eq!(reply[12], 2, "agreed channel count");
    assert_eq!(
        &reply[13..17],
        &5_000u32.to_be_bytes(),
        "agreed max message size"
    );
    assert_eq!(
        &reply[17..19],
        &256u16.to_be_bytes(),
        "agreed max datagram size"
    );
    let id = endpoint.connection_by_addr(from).unwrap();
    let conn = endpoint.connection(id).unwrap();
    assert_eq!(
        (
            conn.channel_count(),
            conn.max_message_size(),
            conn.max_datagram_size()
        ),
        (2, 5_000, 256)
    );
}

/// An `Accept` whose agreed limits are above the initiator's own is refused by the initiator
/// (docs/protocol.md §4.3) with `LimitsRefused`.
#[test]
fn initiator_refuses_an_accept_above_its_own_limits() {
    let own = EndpointConfig {
        channel_count: 4,
        max_message_size: 100_000,
        max_datagram_size: 1_200,
        ..EndpointConfig::default()
    };
    let too_much: [(u8, u32, u16); 3] = [
        (5, 100_000, 1_200),
        (4, 100_001, 1_200),
        (4, 100_000, 1_201),
    ];
    for (i, (channels, max_message, max_datagram)) in too_much.into_iter().enumerate() {
        let mut net = Network::new();
        let client = net.add_node(own.clone(), 51);
        let now = net.now();
        let acceptor = peer(9);
        let endpoint: &mut Endpoint = &mut net.node_mut(client).endpoint;
        let id = endpoint.connect(now, acceptor).unwrap();
        let mut buf = vec![0u8; 2048];
        let t = endpoint
            .poll_transmit(now, &mut buf)
            .expect("a connect request");
        assert_eq!(buf[3], 1);
        let mut initiator_id = [0u8; 4];
        initiator_id.copy_from_slice(&buf[4..8]);
        let _ = t;
        let mut accept = vec![0xCA, 0x77, 1, 3];
        accept.extend_from_slice(&initiator_id);
        accept.extend_from_slice(&0x5555_0001u32.to_be_bytes());
        accept.push(channels);
        accept.extend_from_slice(&max_message.to_be_bytes());
        accept.extend_from_slice(&max_datagram.to_be_bytes());
        accept.extend_from_slice(&(4u32 << 20).to_be_bytes());
        accept.extend_from_slice(&[0, 4, 0, 0, 0, 1]);
        endpoint.handle(now, acceptor, &seal(accept));
        let events: Vec<Event> = std::iter::from_fn(|| endpoint.poll_event()).collect();
        assert!(
            events.contains(&Event::FailedToConnect {
                id,
                reason: DisconnectReason::LimitsRefused
            }),
            "case {i}: {events:?}"
        );
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, Event::ConnectionEstablished { .. })),
            "case {i}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// A peer that ignores the agreed maximum message size
// ---------------------------------------------------------------------------------------------

/// A server (agreed maximum message size 1,000 bytes) connected to a peer played by hand. The
/// harness only keeps the clock: the test drives the server and reads what it sends.
struct HandPeer {
    net: Network,
    server: NodeId,
    addr: SocketAddr,
    /// The server's connection id, which the peer's `Data` packets carry.
    acceptor_id: [u8; 4],
    /// Packet numbers listed by the last ACK frame the server sent.
    last_ack: Vec<u32>,
    buf: Vec<u8>,
}

const HAND_MAX_MESSAGE: usize = 1_000;

impl HandPeer {
    fn new() -> Self {
        let mut net = Network::new();
        let server = net.add_node(
            EndpointConfig {
                max_message_size: HAND_MAX_MESSAGE,
                ..EndpointConfig::default()
            },
            61,
        );
        net.node_mut(server).online = false;
        let addr = peer(61);
        let now = net.now();
        let mut buf = vec![0u8; 65_536];
        let endpoint = &mut net.node_mut(server).endpoint;
        // Same limits as the server's, so the agreed maximum is 1,000 bytes.
        let ask = |cookie: &[u8; 20]| request(61, cookie, 8, HAND_MAX_MESSAGE as u32, 1_372);
        endpoint.handle(now, addr, &ask(&[0; 20]));
        let _ = endpoint.poll_transmit(now, &mut buf).expect("a challenge");
        let cookie: [u8; 20] = buf[8..28].try_into().unwrap();
        endpoint.handle(now, addr, &ask(&cookie));
        let t = endpoint.poll_transmit(now, &mut buf).expect("an accept");
        assert_eq!(buf[3], 3, "an Accept: {:?}", &buf[..t.size]);
        let acceptor_id: [u8; 4] = buf[8..12].try_into().unwrap();
        let id = endpoint.connection_by_addr(addr).unwrap();
        assert_eq!(
            endpoint.connection(id).unwrap().max_message_size(),
            HAND_MAX_MESSAGE
        );
        let mut p = HandPeer {
            net,
            server,
            addr,
            acceptor_id,
            last_ack: Vec::new(),
            buf,
        };
        p.pump();
        p
    }

    /// Fires the server's due timers and drains its outputs: ACKs are decoded, events and
    /// messages kept in the node's lists.
    fn pump(&mut self) {
        let now = self.net.now();
        let node = self.net.node_mut(self.server);
        if node.endpoint.poll_timeout().is_some_and(|t| t <= now) {
            node.endpoint.handle_timeout(now);
        }
        while let Some(t) = node.endpoint.poll_transmit(now, &mut self.buf) {
            let d = &self.buf[..t.size];
            assert_eq!(t.destination, self.addr);
            if d[3] == 5 && d[12] == 0x02 {
                self.last_ack = decode_ack(&d[13..]);
            }
        }
        while let Some(e) = node.endpoint.poll_event() {
            node.events.push(e);
        }
        while let Some(m) = node.endpoint.poll_message() {
            node.messages.push(m);
        }
    }

    /// Sends a `Data` packet with `frames` from the peer, then lets 10 ms pass (the server
    /// acknowledges within 5 ms).
    fn send(&mut self, pn: u32, frames: &[u8]) {
        let mut d = vec![0xCA, 0x77, 1, 5];
        d.extend_from_slice(&self.acceptor_id);
        d.extend_from_slice(&pn.to_be_bytes());
        d.extend_from_slice(frames);
        let now = self.net.now();
        self.net
            .node_mut(self.server)
            .endpoint
            .handle(now, self.addr, &seal(d));
        self.pump();
        self.net.run_for(Duration::from_millis(10));
        self.pump();
    }

    fn malformed(&self) -> u64 {
        self.net
            .node(self.server)
            .endpoint
            .drops()
            .get(DropReason::Malformed)
    }
}

/// The packet numbers an ACK frame body lists (docs/protocol.md §7.1; one-byte varints and a
/// two-byte delay are enough here, longer varints are decoded too).
fn decode_ack(body: &[u8]) -> Vec<u32> {
    let mut pos = 4;
    let mut varint = || {
        let first = body[pos];
        let len = 1usize << (first >> 6);
        let mut v = u64::from(first & 0x3f);
        for k in 1..len {
            v = (v << 8) | u64::from(body[pos + k]);
        }
        pos += len;
        v as u32
    };
    let largest = u32::from_be_bytes(body[..4].try_into().unwrap());
    let _delay = varint();
    let extra = varint();
    let first = varint();
    let mut acked: Vec<u32> = (largest - first..=largest).collect();
    let mut smallest = largest - first;
    for _ in 0..extra {
        let gap = varint();
        let len = varint();
        let end = smallest - gap - 2;
        acked.extend(end - len..=end);
        smallest = end - len;
    }
    acked.sort_unstable();
    acked
}

/// A message frame with explicit numbers (s = r = 0) on channel 0, High priority.
fn message_frame(reliable: bool, fragment: Option<(u8, u8)>, payload_len: usize) -> Vec<u8> {
    let mut flags = 0x80 | 0x04;
    if reliable {
        flags |= 0x40;
    }
    if fragment.is_some() {
        flags |= 0x02;
    }
    let mut f = vec![flags, 0, 0, 0, 0, 0, 0, 0, 0];
    if let Some((index, count)) = fragment {
        f.extend_from_slice(&[index, count]);
    }
    assert!(payload_len < 16_384);
    f.extend_from_slice(&(0x4000 | payload_len as u16).to_be_bytes());
    f.extend(std::iter::repeat_n(0x5A, payload_len));
    f
}

/// What the receiver does with a message above the agreed maximum that a non-conforming peer
/// sends anyway: it is never delivered, allocates nothing, and the connection goes on.
#[test]
fn a_peers_message_above_the_agreed_maximum_is_never_delivered() {
    let mut p = HandPeer::new();
    p.send(0, &[0x01]);
    // Whole reliable, whole unreliable, and a fragment whose (count − 1) × c reaches the
    // maximum (docs/protocol.md §9), each in a packet of its own.
    p.send(1, &message_frame(true, None, HAND_MAX_MESSAGE + 1));
    p.send(2, &message_frame(false, None, HAND_MAX_MESSAGE + 1));
    p.send(3, &message_frame(true, Some((0, 2)), HAND_MAX_MESSAGE));
    let server = p.server;
    assert!(p.net.node(server).messages.is_empty(), "nothing delivered");
    let id = p
        .net
        .node(server)
        .endpoint
        .connection_by_addr(p.addr)
        .unwrap();
    let conn = p.net.node(server).endpoint.connection(id).unwrap();
    assert!(conn.is_connected());
    assert_eq!(conn.buffered_receive_bytes(), 0, "nothing buffered");
    assert!(
        p.net.node(server).events.iter().any(|e| matches!(
            e,
            Event::SecurityError {
                reason: DropReason::Malformed,
                ..
            }
        )),
        "reported: {:?}",
        p.net.node(server).events
    );
    // A message within the limit, with the same numbers, is delivered.
    p.send(4, &message_frame(true, None, HAND_MAX_MESSAGE));
    assert_eq!(p.net.node(server).messages.len(), 1);
    assert_eq!(
        p.net.node(server).messages[0].1.payload.len(),
        HAND_MAX_MESSAGE
    );
}

/// docs/protocol.md §9 calls a message frame beyond the agreed maximum `Malformed`; §5 drops a
/// packet with such a frame whole, before any frame takes effect (so it is not acknowledged:
/// §10, "no acknowledged data is ever lost"); §15 counts every drop with its reason.
#[test]
fn a_peers_message_above_the_agreed_maximum_makes_its_packet_malformed() {
    let mut p = HandPeer::new();
    let bad = [
        (
            "whole reliable",
            message_frame(true, None, HAND_MAX_MESSAGE + 1),
        ),
        (
            "whole unreliable",
            message_frame(false, None, HAND_MAX_MESSAGE + 1),
        ),
        (
            "fragment",
            message_frame(true, Some((0, 2)), HAND_MAX_MESSAGE),
        ),
    ];
    let mut pn = 0;
    for (what, frame) in bad {
        // IMMEDIATE_ACK (0x04) asks for a prompt ACK (a PING alone may be acknowledged lazily).
        p.send(pn, &[0x04]);
        let before = p.malformed();
        // A PING first: the packet carries a valid frame too, which must not take effect.
        let mut frames = vec![0x01, 0x04];
        frames.extend_from_slice(&frame);
        p.send(pn + 1, &frames);
        p.send(pn + 2, &[0x04]);
        assert_eq!(p.malformed(), before + 1, "{what}: counted as Malformed");
        let acked = p.last_ack.clone();
        assert!(
            acked.contains(&pn) && acked.contains(&(pn + 2)),
            "{what}: the good packets are acknowledged: {acked:?}"
        );
        assert!(
            !acked.contains(&(pn + 1)),
            "{what}: packet {} was dropped but acknowledged: {acked:?}",
            pn + 1
        );
        pn += 3;
    }
}

// ---------------------------------------------------------------------------------------------
// EndpointConfig::validate
// ---------------------------------------------------------------------------------------------

#[test]
fn validate_errors_name_the_field() {
    let ok = EndpointConfig::default;
    ok().validate().expect("the defaults are valid");
    let ms = Duration::from_millis;
    let cases: Vec<(&str, EndpointConfig)> = vec![
        (
            "channel_count",
            EndpointConfig {
                channel_count: 0,
                ..ok()
            },
        ),
        (
            "max_message_size",
            EndpointConfig {
                max_message_size: 0,
                ..ok()
            },
        ),
        (
            "max_message_size",
            EndpointConfig {
                max_message_size: (1 << 30) + 1,
                receive_window: 2 << 30,
                max_queued_bytes: 2 << 30,
                ..ok()
            },
        ),
        (
            "max_datagram_size",
            EndpointConfig {
                max_datagram_size: 255,
                ..ok()
            },
        ),
        (
            "max_datagram_size",
            EndpointConfig {
                max_datagram_size: 65_508,
                ..ok()
            },
        ),
        (
            "receive_window",
            EndpointConfig {
                receive_window: MIB - 1,
                ..ok()
            },
        ),
        (
            "unreliable_reassembly_budget",
            EndpointConfig {
                unreliable_reassembly_budget: 0,
                ..ok()
            },
        ),
        (
            "max_queued_bytes",
            EndpointConfig {
                max_queued_bytes: MIB - 1,
                ..ok()
            },
        ),
        (
            "connection_timeout",
            EndpointConfig {
                connection_timeout: Duration::ZERO,
                ..ok()
            },
        ),
        (
            "handshake_timeout",
            EndpointConfig {
                handshake_timeout: Some(Duration::ZERO),
                ..ok()
            },
        ),
        (
            "retry_interval_base",
            EndpointConfig {
                retry_interval_base: Duration::ZERO,
                ..ok()
            },
        ),
        (
            "retry_interval_max",
            EndpointConfig {
                retry_interval_base: ms(50),
                retry_interval_max: ms(49),
                ..ok()
            },
        ),
        (
            "keep_alive_interval",
            EndpointConfig {
                keep_alive_interval: Duration::ZERO,
                ..ok()
            },
        ),
        (
            "keep_alive_interval",
            EndpointConfig {
                keep_alive_interval: ms(5_000),
                connection_timeout: ms(5_000),
                ..ok()
            },
        ),
        (
            "max_ack_delay",
            EndpointConfig {
                max_ack_delay: ms(1_001),
                ..ok()
            },
        ),
        (
            "cookie_lifetime",
            EndpointConfig {
                cookie_lifetime: Duration::ZERO,
                ..ok()
            },
        ),
        (
            "max_ack_ranges",
            EndpointConfig {
                max_ack_ranges: 0,
                ..ok()
            },
        ),
        (
            "max_ack_ranges",
            EndpointConfig {
                max_ack_ranges: 257,
                ..ok()
            },
        ),
    ];
    for (field, config) in cases {
        let err = config
            .validate()
            .expect_err(&format!("{field}: {config:?} should be invalid"));
        assert_eq!(err.field(), field, "{err}");
        assert!(
            err.to_string().contains(field),
            "the message names the field: {err}"
        );
        assert!(!err.problem().is_empty());
        // The endpoint refuses it with the same error.
        let now = Network::new().now();
        assert_eq!(Endpoint::new(config, now, 1).unwrap_err(), err);
    }
}

#[test]
fn validate_accepts_the_boundaries() {
    let ok = EndpointConfig::default;
    let ms = Duration::from_millis;
    let valid = [
        EndpointConfig {
            channel_count: 1,
            ..ok()
        },
        EndpointConfig {
            channel_count: 255,
            ..ok()
        },
        EndpointConfig {
            max_message_size: 1,
            ..ok()
        },
        EndpointConfig {
            max_message_size: 1 << 30,
            receive_window: 1 << 30,
            max_queued_bytes: 1 << 30,
            ..ok()
        },
        EndpointConfig {
            max_datagram_size: 256,
            ..ok()
        },
        EndpointConfig {
            max_datagram_size: 65_507,
            ..ok()
        },
        EndpointConfig {
            receive_window: MIB,
            max_queued_bytes: MIB,
            ..ok()
        },
        EndpointConfig {
            handshake_timeout: Some(ms(1)),
            ..ok()
        },
        EndpointConfig {
            retry_interval_base: ms(50),
            retry_interval_max: ms(50),
            ..ok()
        },
        EndpointConfig {
            keep_alive_interval: ms(4_999),
            connection_timeout: ms(5_000),
            ..ok()
        },
        EndpointConfig {
            max_ack_delay: ms(1_000),
            ..ok()
        },
        EndpointConfig {
            max_ack_delay: Duration::ZERO,
            ..ok()
        },
        EndpointConfig {
            max_ack_ranges: 1,
            ..ok()
        },
        EndpointConfig {
            max_ack_ranges: 256,
            ..ok()
        },
    ];
    for config in valid {
        config
            .validate()
            .unwrap_or_else(|e| panic!("{config:?} should be valid: {e}"));
    }
}
