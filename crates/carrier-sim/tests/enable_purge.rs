//! Disabled pass-through, flushing on disable, and purging a peer.

mod common;

use carrier_sim::{
    Datagram, Direction, Link, LinkConfig, NetworkSimulator, Preset, SimConfig, Simulator,
};
use common::{addr, base, drive, ms, numbered, seq_of};

#[test]
fn disabled_link_is_a_pass_through_with_zero_delay() {
    let t0 = base();
    // Everything bad at once, yet nothing applies while disabled.
    let cfg = LinkConfig::default()
        .with_blackhole(true)
        .with_fixed_latency_ms(100.0)
        .with_corrupt(1.0)
        .with_duplicate(1.0)
        .with_mtu(1);
    let mut link = Link::new(cfg, 1).unwrap();
    link.set_enabled(false);
    assert!(!link.is_enabled());
    for i in 0..100 {
        let now = t0 + ms(u64::from(i));
        let sent = numbered(i, 64);
        link.push(now, sent.clone());
        assert_eq!(link.poll_timeout(), Some(now));
        assert_eq!(link.poll(now), Some(sent));
        assert_eq!(link.poll(now), None);
    }
    assert_eq!(link.stats().packets_out, 100);
    assert_eq!(link.stats().dropped(), 0);
}

#[test]
fn disabling_releases_queued_packets_at_once() {
    let t0 = base();
    let cfg = LinkConfig::default()
        .with_latency_ms(50.0, 150.0)
        .with_reorder(true)
        .with_bandwidth_queue_kbps(100, 100, carrier_sim::QueueLimit::Bytes(100_000));
    let mut link = Link::new(cfg, 2).unwrap();
    for i in 0..20 {
        link.push(t0 + ms(u64::from(i)), numbered(i, 200));
    }
    assert!(link.poll(t0 + ms(30)).is_none());
    link.set_enabled(false);
    assert_eq!(link.poll_timeout(), Some(t0 + ms(30)));
    let mut got = Vec::new();
    while let Some(d) = link.poll(t0 + ms(30)) {
        got.push(seq_of(&d));
    }
    got.sort_unstable();
    assert_eq!(got, (0..20).collect::<Vec<_>>());
    assert_eq!(link.stats().queued_packets, 0);
    assert_eq!(link.poll_timeout(), None);
}

#[test]
fn re_enabling_restores_the_impairments() {
    let t0 = base();
    let mut link = Link::new(LinkConfig::default().with_periodic_loss(2, 2), 3).unwrap();
    link.set_enabled(false);
    link.push(t0, numbered(0, 8));
    assert!(link.poll(t0).is_some());
    link.set_enabled(true);
    // Periodic loss restarts: the first datagram after enabling is dropped.
    let out = drive(&mut link, (1..11).map(|i| (t0, numbered(i, 8))));
    let seqs: Vec<u32> = out.iter().map(|(_, d)| seq_of(d)).collect();
    assert_eq!(seqs, vec![2, 4, 6, 8, 10]);
}

#[test]
fn purge_peer_removes_only_that_peers_queued_datagrams() {
    let t0 = base();
    let mut link = Link::new(LinkConfig::default().with_fixed_latency_ms(50.0), 4).unwrap();
    let (me, a, b) = (addr(1), addr(10), addr(20));
    for i in 0..30u32 {
        let payload = numbered(i, 16).payload;
        let d = match i % 3 {
            0 => Datagram::new(me, a, payload), // to a
            1 => Datagram::new(b, me, payload), // from b
            _ => Datagram::new(a, me, payload), // from a
        };
        link.push(t0 + ms(u64::from(i)), d);
    }
    assert_eq!(link.purge_peer(a), 20);
    assert_eq!(link.purge_peer(a), 0);
    assert_eq!(link.stats().dropped_purged, 20);
    let out = drive(&mut link, []);
    assert_eq!(out.len(), 10);
    assert!(out.iter().all(|(_, d)| d.from == b && seq_of(d) % 3 == 1));
    assert_eq!(link.stats().queued_packets, 0);
}

#[test]
fn simulator_disabled_by_config_passes_through_until_enabled() {
    let t0 = base();
    let cfg = SimConfig {
        enabled: false,
        ..SimConfig::preset(Preset::Terrible, 9)
    };
    let mut sim = NetworkSimulator::with_exact_seed(cfg).unwrap();
    for i in 0..50 {
        sim.input(t0, Direction::Outbound, numbered(i, 100));
        assert_eq!(
            sim.poll_output(t0, Direction::Outbound).map(|d| seq_of(&d)),
            Some(i)
        );
    }
    sim.set_enabled(true);
    sim.input(t0, Direction::Outbound, numbered(99, 100));
    // Terrible: at least 100 ms of latency now.
    assert!(sim.poll_output(t0 + ms(99), Direction::Outbound).is_none());
}
