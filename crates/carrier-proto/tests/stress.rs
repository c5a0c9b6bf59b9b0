//! 100,000 messages of log-uniform sizes (1 B to 64 KiB; the mean of that distribution is about
//! 5.9 KB, so about 600 MB in all) over 2 channels × 3
//! priorities through links with 20 % loss, reordering and duplication: the delivery rule holds
//! on every stream (docs/protocol.md §10), and every message arrives intact.

use std::time::Duration;

use carrier_proto::testing::Network;
use carrier_proto::{ChannelId, EndpointConfig, Priority, Reliability};
use carrier_sim::{LinkConfig, QueueLimit};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    ReliableOnly,
    UnreliableOnly,
    Mixed,
}

/// Stream layout: (channel, priority) → kind.
const STREAMS: [(u8, Priority, Kind); 6] = [
    (0, Priority::High, Kind::ReliableOnly),
    (0, Priority::Normal, Kind::UnreliableOnly),
    (0, Priority::Low, Kind::Mixed),
    (1, Priority::High, Kind::Mixed),
    (1, Priority::Normal, Kind::ReliableOnly),
    (1, Priority::Low, Kind::UnreliableOnly),
];

/// Payload: stream index (1 byte), per-stream sequence (4 bytes), reliable flag (1 byte), then
/// filler; messages shorter than 6 bytes are identified by their length class only.
fn payload(stream: usize, seq: u32, reliable: bool, len: usize) -> Vec<u8> {
    let mut p = vec![(seq % 251) as u8; len];
    let header = [
        [stream as u8].as_slice(),
        &seq.to_be_bytes(),
        &[u8::from(reliable)],
    ]
    .concat();
    let n = header.len().min(len);
    p[..n].copy_from_slice(&header[..n]);
    p
}

#[test]
fn hundred_thousand_messages_through_a_bad_network() {
    let seed = std::env::var("CARRIER_SIM_SEED")
        .ok()
        .and_then(|s| carrier_sim::parse_seed(&s))
        .unwrap_or(2026);
    eprintln!("seed {seed} (set CARRIER_SIM_SEED to replay)");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut net = Network::new();
    let server = net.add_node(EndpointConfig::default(), seed ^ 1);
    let client = net.add_node(EndpointConfig::default(), seed ^ 2);
    // 20 % loss, duplication and reordering (uniform 20–21 ms: datagrams less than 1 ms apart may
    // swap), behind a 200 Mbit/s queue that spaces them as a real link does.
    let link = LinkConfig::new()
        .with_latency_ms(20.0, 21.0)
        .with_reorder(true)
        .with_loss(0.2)
        .with_duplicate(0.05)
        .with_bandwidth_queue_kbps(200_000, 200_000, QueueLimit::Millis(10_000));
    let (c2s, _) = net.route_both(client, server, link, seed).unwrap();
    let id = net.connect(client, server).unwrap();
    assert!(net.run_until(Duration::from_secs(10), |n| n.is_connected(client, id)));
    let mtu = net
        .node(client)
        .endpoint
        .connection(id)
        .unwrap()
        .message_mtu();

    // Sender side: per stream, every message with its sequence and reliability.
    let mut sent: Vec<Vec<(u32, bool, usize)>> = vec![Vec::new(); STREAMS.len()];
    let mut total_bytes = 0usize;
    let total = 100_000;
    let mut queued = 0;
    let mut small_delivered = vec![0usize; STREAMS.len()];
    let mut state: Vec<(Option<u32>, u32)> = vec![(None, 0); STREAMS.len()]; // (last delivered seq, reliable delivered)
    let mut delivered_count = 0usize;
    let deadline = net.now() + Duration::from_secs(600);
    while delivered_count < total && net.now() < deadline {
        // Keep about 256 KB queued: the sender is always busy, memory stays bounded, and messages
        // do not wait longer than the unreliable TTL (200 ms) behind the backlog.
        while queued < total
            && net
                .node(client)
                .endpoint
                .connection(id)
                .map_or(0, |c| c.queued_bytes())
                < 256 << 10
        {
            let s = rng.random_range(0..STREAMS.len());
            let (ch, prio, kind) = STREAMS[s];
            let reliable = match kind {
                Kind::ReliableOnly => true,
                Kind::UnreliableOnly => false,
                Kind::Mixed => rng.random_bool(0.5),
            };
            // Log-uniform size in [1, 65536].
            let len = (2f64.powf(rng.random_range(0.0..16.0))) as usize;
            let seq = sent[s].len() as u32;
            sent[s].push((seq, reliable, len));
            total_bytes += len;
            let r = if reliable {
                Reliability::Reliable
            } else {
                Reliability::Unreliable
            };
            net.node_mut(client)
                .endpoint
                .send(
                    id,
                    ChannelId::new(ch),
                    prio,
                    r,
                    payload(s, seq, reliable, len),
                )
                .unwrap();
            queued += 1;
        }
        net.step(Duration::from_millis(5));
        // Check deliveries as they come (and free them).
        let msgs = std::mem::take(&mut net.node_mut(server).messages);
        for (_, m) in msgs {
            let s = STREAMS
                .iter()
                .position(|&(ch, p, _)| ch == m.channel.get() && p == m.priority)
                .unwrap();
            let len = m.payload.len();
            // Identify the message: full header when long enough, else the next matching one.
            let seq = if len >= 5 {
                u32::from_be_bytes(m.payload[1..5].try_into().unwrap())
            } else {
                // Short messages: the smallest sequence after the last delivered with this
                // length and reliability (the delivery rule makes it unambiguous enough).
                let from = state[s].0.map_or(0, |d| d + 1);
                (from..sent[s].len() as u32)
                    .find(|&q| {
                        let (_, rel, l) = sent[s][q as usize];
                        l == len && rel == m.reliability.is_reliable()
                    })
                    .expect("a sent message matches")
            };
            let (_, reliable, expected_len) = sent[s][seq as usize];
            assert_eq!(len, expected_len, "stream {s} message {seq}: wrong size");
            assert_eq!(reliable, m.reliability.is_reliable());
            if len >= 6 {
                // Reassembled (fragmented, or split to fill packets) byte for byte.
                assert!(
                    m.payload[..] == payload(s, seq, reliable, len)[..],
                    "stream {s} message {seq}: damaged payload"
                );
            }
            let (last, _) = state[s];
            assert!(
                last.is_none_or(|l| seq > l),
                "stream {s}: {seq} delivered after {last:?}"
            );
            // Every reliable message before it has been delivered.
            let reliable_before = sent[s][..seq as usize].iter().filter(|x| x.1).count() as u32;
            if reliable {
                assert_eq!(
                    state[s].1, reliable_before,
                    "stream {s}: reliable {seq} out of order"
                );
                state[s].1 += 1;
            } else {
                assert_eq!(
                    state[s].1, reliable_before,
                    "stream {s}: unreliable {seq} before an earlier reliable"
                );
            }
            state[s].0 = Some(seq);
            if len <= mtu {
                small_delivered[s] += 1;
            }
            delivered_count += 1;
        }
        // Stop once every reliable message arrived and the queue is empty.
        let reliable_total: u32 = sent
            .iter()
            .map(|v| v.iter().filter(|x| x.1).count() as u32)
            .sum();
        let reliable_done: u32 = state.iter().map(|x| x.1).sum();
        if queued == total
            && reliable_done == reliable_total
            && net
                .node(client)
                .endpoint
                .connection(id)
                .is_some_and(|c| c.queued_messages() == 0)
        {
            net.run_for(Duration::from_millis(500));
            let msgs = std::mem::take(&mut net.node_mut(server).messages);
            assert!(msgs.is_empty() || msgs.iter().all(|(_, m)| !m.reliability.is_reliable()));
            break;
        }
    }
    eprintln!(
        "{} bytes in {} messages, {:?} virtual, link {:?}",
        total_bytes,
        total,
        net.elapsed(),
        net.link(c2s).stats()
    );
    assert!(total_bytes > 300_000_000, "about 600 MB: {total_bytes}");
    // Every reliable message delivered exactly once and in order.
    for (s, v) in sent.iter().enumerate() {
        let reliable = v.iter().filter(|x| x.1).count() as u32;
        assert_eq!(
            state[s].1, reliable,
            "stream {s}: reliable messages missing"
        );
    }
    // Unreliable-only streams: at least 70 % of the messages that fit one datagram arrived.
    for (s, &(_, _, kind)) in STREAMS.iter().enumerate() {
        if kind != Kind::UnreliableOnly {
            continue;
        }
        let small_sent = sent[s].iter().filter(|x| x.2 <= mtu).count();
        let delivered = small_delivered[s];
        let ratio = delivered as f64 / small_sent as f64;
        eprintln!(
            "stream {s}: {delivered} unreliable delivered of {small_sent} that fit a datagram"
        );
        assert!(
            ratio >= 0.7,
            "stream {s}: only {ratio:.2} of unreliable messages delivered"
        );
    }
    let link = net.link(c2s).stats();
    assert!(
        link.dropped_loss > 1_000 && link.duplicated > 100,
        "{link:?}"
    );
}
