//! Congestion control with pacing (docs/traffic-control.md) on the in-process harness.
//!
//! The path: a 10 Mbit/s drop-tail bottleneck whose queue holds 250 ms of data, 20 ms one way in
//! each direction (40 ms base RTT). Senders keep an unbounded backlog of reliable 1 KiB
//! messages. *Utilization* is what leaves the bottleneck of the data direction
//! (`LinkStats::bytes_out`, whole Carrier datagrams: payload plus headers, retransmissions
//! included) divided by the bottleneck rate, 1,250,000 bytes per second. Every test prints its
//! figures (`cargo test --release --test congestion -- --nocapture`).

use std::sync::Arc;
use std::time::Duration;

use carrier_proto::testing::{LinkId, Network, NodeId};
use carrier_proto::traffic::{CongestionControl, DefaultTrafficControlFactory, TrafficConfig};
use carrier_proto::{ChannelId, ConnectionId, EndpointConfig, Event, Priority, Reliability};
use carrier_sim::{LinkConfig, QueueLimit};

/// Bottleneck rate, kbit/s.
const RATE_KBPS: u64 = 10_000;
/// Bottleneck rate, bytes per second.
const RATE_BYTES: f64 = RATE_KBPS as f64 * 1000.0 / 8.0;
/// One-way delay, ms.
const ONE_WAY_MS: f64 = 20.0;
/// Base RTT.
const BASE_RTT: Duration = Duration::from_millis(40);
/// Message size of the backlog.
const MESSAGE: usize = 1024;
/// Queued bytes kept per sender.
const BACKLOG: usize = 256 * 1024;
/// Sampling period.
const TICK: Duration = Duration::from_millis(100);

/// One direction of the path.
fn bottleneck(kbps: u64, loss: f64) -> LinkConfig {
    LinkConfig::new()
        .with_fixed_latency_ms(ONE_WAY_MS)
        .with_loss(loss)
        .with_bandwidth_queue_kbps(kbps, kbps, QueueLimit::Millis(250))
}

fn config(congestion_control: CongestionControl) -> EndpointConfig {
    EndpointConfig {
        traffic_control: Arc::new(DefaultTrafficControlFactory::new(TrafficConfig {
            congestion_control,
            ..TrafficConfig::default()
        })),
        ..EndpointConfig::default()
    }
}

/// Keeps at least [`BACKLOG`] bytes of reliable 1 KiB messages queued on `id` of `node`.
fn top_up(net: &mut Network, node: NodeId, id: ConnectionId) {
    while net
        .node(node)
        .endpoint
        .connection(id)
        .is_some_and(|c| c.queued_bytes() < BACKLOG)
    {
        net.node_mut(node)
            .endpoint
            .send(
                id,
                ChannelId::new(0),
                Priority::Normal,
                Reliability::Reliable,
                vec![7u8; MESSAGE],
            )
            .unwrap();
    }
}

/// Runs for `duration` keeping the backlogs of `senders` full; calls `sample` every [`TICK`].
/// Delivered messages are dropped as they come.
fn run_sampled(
    net: &mut Network,
    senders: &[(NodeId, ConnectionId)],
    duration: Duration,
    mut sample: impl FnMut(&mut Network),
) {
    let end = net.now() + duration;
    let mut next = net.now() + TICK;
    while net.now() < end {
        for &(node, id) in senders {
            top_up(net, node, id);
        }
        net.step(Duration::from_millis(1));
        if net.now() >= next {
            next += TICK;
            sample(net);
            for n in 0..net.node_count() {
                net.node_mut(n).messages.clear();
            }
        }
    }
}

/// A connected client → server pair over the path; returns (net, client, connection, c2s link).
fn single(cc: CongestionControl, loss: f64, seed: u64) -> (Network, NodeId, ConnectionId, LinkId) {
    let mut net = Network::new();
    let server = net.add_node(config(cc), seed);
    let client = net.add_node(config(cc), seed + 1);
    let (c2s, _) = net
        .route_both(client, server, bottleneck(RATE_KBPS, loss), seed + 2)
        .unwrap();
    let id = net.connect(client, server).unwrap();
    assert!(net.run_until(Duration::from_secs(2), |n| n.is_connected(client, id)));
    (net, client, id, c2s)
}

/// Per-tick samples of one flow.
#[derive(Default)]
struct Trace {
    /// Bytes that left the bottleneck during each tick.
    out: Vec<u64>,
    /// `rtt().latest` and `rtt().smoothed` at each tick.
    rtt: Vec<(Duration, Duration)>,
}

impl Trace {
    /// Utilization over ticks `from..to`.
    fn utilization(&self, from: usize, to: usize) -> f64 {
        let bytes: u64 = self.out[from..to].iter().sum();
        bytes as f64 / ((to - from) as f64 * TICK.as_secs_f64() * RATE_BYTES)
    }

    /// The first tick at which the last second (10 ticks) reached `share` of the bottleneck.
    fn reached(&self, share: f64) -> Option<usize> {
        (10..=self.out.len()).find(|&t| self.utilization(t - 10, t) >= share)
    }
}

/// Runs one backlogged flow for `secs` seconds and samples it.
fn trace_single(cc: CongestionControl, loss: f64, seed: u64, secs: u64) -> Trace {
    let (mut net, client, id, c2s) = single(cc, loss, seed);
    let mut trace = Trace::default();
    let mut last_out = net.link(c2s).stats().bytes_out;
    run_sampled(
        &mut net,
        &[(client, id)],
        Duration::from_secs(secs),
        |net| {
            let out = net.link(c2s).stats().bytes_out;
            trace.out.push(out - last_out);
            last_out = out;
            let rtt = net.node(client).endpoint.connection(id).unwrap().rtt();
            trace.rtt.push((rtt.latest, rtt.smoothed));
        },
    );
    trace
}

/// The bottleneck is filled to ≥ 90 % within 5 s, and from then on the RTT the connection
/// measures stays within 50 ms of the 40 ms base RTT although the queue could hold 250 ms.
#[test]
fn fills_the_bottleneck_without_a_standing_queue() {
    let trace = trace_single(CongestionControl::Model, 0.0, 10, 30);
    let reached = trace.reached(0.9).expect("never reached 90 %");
    let after = 50; // 5 s
    let utilization = trace.utilization(after, trace.out.len());
    let max_latest = trace.rtt[after..].iter().map(|r| r.0).max().unwrap();
    let max_smoothed = trace.rtt[after..].iter().map(|r| r.1).max().unwrap();
    let mut latest: Vec<Duration> = trace.rtt[after..].iter().map(|r| r.0).collect();
    latest.sort();
    eprintln!(
        "90 % of 10 Mbit/s reached after {:.1} s; utilization 5-30 s {:.1} %; RTT 5-30 s: \
         latest median {:?}, max {:?}; smoothed max {:?}",
        reached as f64 / 10.0,
        utilization * 100.0,
        latest[latest.len() / 2],
        max_latest,
        max_smoothed,
    );
    assert!(reached <= after, "90 % only after {} ticks", reached);
    assert!(utilization >= 0.9, "utilization {utilization:.3}");
    let limit = BASE_RTT + Duration::from_millis(50);
    assert!(max_latest <= limit, "latest RTT reached {max_latest:?}");
    assert!(
        max_smoothed <= limit,
        "smoothed RTT reached {max_smoothed:?}"
    );
}

/// Control experiment: the fixed window (no congestion control) fills the 250 ms queue, and the
/// RTT check of the test above catches it.
#[test]
fn the_fixed_window_fills_the_queue() {
    let trace = trace_single(CongestionControl::FixedWindow, 0.0, 10, 10);
    let max_latest = trace.rtt[50..].iter().map(|r| r.0).max().unwrap();
    eprintln!(
        "fixed window: utilization 5-10 s {:.1} %, latest RTT max {:?}",
        trace.utilization(50, 100) * 100.0,
        max_latest
    );
    assert!(
        max_latest > BASE_RTT + Duration::from_millis(200),
        "{max_latest:?}"
    );
}

/// With 1 % random loss in each direction the bottleneck stays ≥ 70 % used: random loss is not
/// congestion.
#[test]
fn one_percent_random_loss_keeps_the_bottleneck_used() {
    let trace = trace_single(CongestionControl::Model, 0.01, 40, 30);
    let utilization = trace.utilization(50, trace.out.len());
    let max_latest = trace.rtt[50..].iter().map(|r| r.0).max().unwrap();
    eprintln!(
        "1 % loss: 90 % reached after {:?} s; utilization 5-30 s {:.1} %; latest RTT max {:?}",
        trace.reached(0.9).map(|t| t as f64 / 10.0),
        utilization * 100.0,
        max_latest
    );
    assert!(utilization >= 0.7, "utilization {utilization:.3}");
}

/// Two connections (two clients to one server) through one bottleneck, the second starting 2 s
/// after the first: from 10 s to 40 s each gets within 20 % of half the bottleneck.
#[test]
fn two_connections_share_the_bottleneck_fairly() {
    let mut net = Network::new();
    let server = net.add_node(EndpointConfig::default(), 20);
    let clients = [
        net.add_node(EndpointConfig::default(), 21),
        net.add_node(EndpointConfig::default(), 22),
    ];
    let up = net.add_link(bottleneck(RATE_KBPS, 0.0), 23).unwrap();
    let down = net.add_link(bottleneck(RATE_KBPS, 0.0), 24).unwrap();
    for c in clients {
        net.route(c, server, up);
        net.route(server, c, down);
    }
    let first = net.connect(clients[0], server).unwrap();
    assert!(net.run_until(Duration::from_secs(2), |n| {
        n.is_connected(clients[0], first)
    }));
    run_sampled(
        &mut net,
        &[(clients[0], first)],
        Duration::from_secs(2),
        |_| {},
    );
    let second = net.connect(clients[1], server).unwrap();
    assert!(net.run_until(Duration::from_secs(2), |n| {
        n.is_connected(clients[1], second)
    }));
    let senders = [(clients[0], first), (clients[1], second)];
    // Bytes each connection delivered to the server (whole datagrams).
    let received = |net: &Network| -> [u64; 2] {
        clients.map(|c| {
            let id = net.connection_to(server, c).unwrap();
            let conn = net.node(server).endpoint.connection(id).unwrap();
            conn.statistics(net.now()).lifetime.bytes_received
        })
    };
    run_sampled(&mut net, &senders, Duration::from_secs(8), |_| {});
    let start = received(&net);
    let mut windows = Vec::new();
    let mut last = start;
    for _ in 0..6 {
        run_sampled(&mut net, &senders, Duration::from_secs(5), |_| {});
        let now = received(&net);
        windows.push([0, 1].map(|i| (now[i] - last[i]) as f64 / (5.0 * RATE_BYTES)));
        last = now;
    }
    let shares = [0, 1].map(|i| (last[i] - start[i]) as f64 / (30.0 * RATE_BYTES));
    eprintln!(
        "10-40 s: first {:.1} %, second {:.1} % of the bottleneck (total {:.1} %); 5 s windows: {}",
        shares[0] * 100.0,
        shares[1] * 100.0,
        (shares[0] + shares[1]) * 100.0,
        windows
            .iter()
            .map(|w| format!("{:.0}/{:.0}", w[0] * 100.0, w[1] * 100.0))
            .collect::<Vec<_>>()
            .join(" ")
    );
    for share in shares {
        assert!((0.4..=0.6).contains(&share), "shares {shares:?}");
    }
    assert!(shares[0] + shares[1] >= 0.9, "shares {shares:?}");
}

/// The sender reports `RateChange` when the bottleneck changes (10 → 2 → 10 Mbit/s), the
/// reported rate follows within a few seconds, and a steady path reports nothing.
#[test]
fn rate_change_follows_the_bottleneck() {
    let (mut net, client, id, c2s) = single(CongestionControl::Model, 0.0, 50);
    let t0 = net.now();
    // (seconds since t0, rate) of every RateChange of the client.
    let mut reports: Vec<(f64, u64)> = Vec::new();
    let mut collect = |net: &mut Network| {
        let at = (net.now() - t0).as_secs_f64();
        for e in net.node_mut(client).events.drain(..) {
            if let Event::RateChange {
                id: rid,
                bytes_per_second,
            } = e
            {
                assert_eq!(rid, id);
                reports.push((at, bytes_per_second));
            }
        }
    };
    let senders = [(client, id)];
    run_sampled(&mut net, &senders, Duration::from_secs(10), &mut collect);
    net.link_mut(c2s)
        .set_config(bottleneck(2_000, 0.0))
        .unwrap();
    run_sampled(&mut net, &senders, Duration::from_secs(10), &mut collect);
    net.link_mut(c2s)
        .set_config(bottleneck(RATE_KBPS, 0.0))
        .unwrap();
    run_sampled(&mut net, &senders, Duration::from_secs(10), &mut collect);
    eprintln!("rate changes (s, bytes/s): {reports:?}");

    let near = |rate: u64, target: f64| (rate as f64 - target).abs() <= 0.25 * target;
    // The last report before each change and at the end, and when each change was followed.
    let last_before = |t: f64| reports.iter().rev().find(|r| r.0 < t).map(|r| r.1);
    let followed = |from: f64, target: f64| {
        reports
            .iter()
            .find(|r| r.0 >= from && near(r.1, target))
            .map(|r| r.0 - from)
    };
    let slow = 2_000.0 * 1000.0 / 8.0;
    let down = followed(10.0, slow);
    let up = followed(20.0, RATE_BYTES);
    eprintln!("followed 10 → 2 Mbit/s after {down:?} s, 2 → 10 Mbit/s after {up:?} s");
    assert!(near(last_before(10.0).unwrap(), RATE_BYTES), "{reports:?}");
    assert!(down.is_some_and(|d| d <= 3.0), "{reports:?}");
    assert!(near(last_before(20.0).unwrap(), slow), "{reports:?}");
    assert!(up.is_some_and(|d| d <= 5.0), "{reports:?}");
    assert!(near(last_before(30.0).unwrap(), RATE_BYTES), "{reports:?}");
    // Steady path: nothing between 3 s and 10 s; at most one report per 100 ms sample (the rule
    // allows one per max(srtt, 100 ms)).
    assert!(
        !reports.iter().any(|r| (3.0..10.0).contains(&r.0)),
        "{reports:?}"
    );
    assert!(reports.windows(2).all(|w| w[1].0 > w[0].0), "{reports:?}");
}
