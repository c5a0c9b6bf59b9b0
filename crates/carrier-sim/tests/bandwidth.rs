//! Bandwidth caps: the original's drop mode and the queueing bottleneck.

mod common;

use std::time::Duration;

use carrier_sim::{Datagram, Link, LinkConfig, QueueLimit};
use common::{addr, base, drive, evenly, ms, numbered, seq_of};

#[test]
fn drop_mode_100kbps_passes_12500_bytes_per_second() {
    let t0 = base();
    let mut link = Link::new(LinkConfig::default().with_bandwidth_drop_kbps(100, 100), 1).unwrap();
    // Offer 100-byte datagrams every millisecond (800 kbit/s) for 10 s.
    let pushes = evenly(t0, 10_000, ms(1), 100);
    let out = drive(&mut link, pushes);
    let mut per_second = [0usize; 10];
    for (at, d) in &out {
        // Drop mode adds no delay.
        assert_eq!(*at, t0 + ms(u64::from(seq_of(d))));
        per_second[((*at - t0).as_millis() / 1000) as usize] += d.payload.len();
    }
    for (s, bytes) in per_second.iter().enumerate() {
        assert!(bytes.abs_diff(12_500) <= 100, "second {s}: {bytes} bytes");
    }
    assert!(link.stats().dropped_bandwidth > 8_000);
}

#[test]
fn drop_mode_under_the_rate_drops_nothing() {
    let t0 = base();
    let mut link = Link::new(LinkConfig::default().with_bandwidth_drop_kbps(100, 100), 1).unwrap();
    // 1,000 bytes every 100 ms = 80 kbit/s.
    let out = drive(&mut link, evenly(t0, 100, ms(100), 1000));
    assert_eq!(out.len(), 100);
    assert_eq!(link.stats().dropped_bandwidth, 0);
}

fn queue_link(kbps: u64, limit: QueueLimit) -> Link {
    Link::new(
        LinkConfig::default().with_bandwidth_queue_kbps(kbps, kbps, limit),
        1,
    )
    .unwrap()
}

#[test]
fn queue_mode_releases_follow_the_rate_exactly() {
    let t0 = base();
    let mut link = queue_link(100, QueueLimit::Bytes(1_000_000));
    // A burst of ten 1,250-byte datagrams: 10,000 bits each at 100 kbit/s = one per 100 ms.
    let pushes: Vec<_> = (0..10).map(|i| (t0, numbered(i, 1250))).collect();
    let out = drive(&mut link, pushes);
    assert_eq!(out.len(), 10);
    for (k, (at, d)) in out.iter().enumerate() {
        assert_eq!(seq_of(d), k as u32);
        assert_eq!(*at - t0, ms(100 * (k as u64 + 1)));
    }
    assert_eq!(link.stats().dropped(), 0);
}

#[test]
fn queue_mode_paced_at_the_rate_only_adds_serialization_delay() {
    let t0 = base();
    let cfg = LinkConfig::default()
        .with_bandwidth_queue_kbps(100, 100, QueueLimit::Bytes(1250))
        .with_fixed_latency_ms(20.0);
    let mut link = Link::new(cfg, 1).unwrap();
    let out = drive(&mut link, evenly(t0, 50, ms(100), 1250));
    assert_eq!(out.len(), 50);
    for (at, d) in &out {
        // 100 ms on the wire, then 20 ms of latency.
        assert_eq!(*at - (t0 + ms(100) * seq_of(d)), ms(120));
    }
    assert_eq!(link.stats().dropped_queue_full, 0);
}

#[test]
fn queue_mode_drops_only_when_the_byte_limit_is_reached() {
    let t0 = base();
    let mut link = queue_link(100, QueueLimit::Bytes(5000));
    for i in 0..10 {
        link.push(t0, numbered(i, 1000));
    }
    assert_eq!(link.stats().dropped_queue_full, 5);
    assert_eq!(link.stats().queued_bytes, 5000);
    // 1,000 bytes = 80 ms at 100 kbit/s: after the first leaves there is room for exactly one.
    assert!(link.poll(t0 + ms(80)).is_some());
    link.push(t0 + ms(80), numbered(10, 1000));
    link.push(t0 + ms(80), numbered(11, 1000));
    assert_eq!(link.stats().dropped_queue_full, 6);
    let out = drive(&mut link, []);
    let seqs: Vec<u32> = out.iter().map(|(_, d)| seq_of(d)).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 10]);
    assert_eq!(out.last().unwrap().0 - t0, ms(480));
}

#[test]
fn queue_mode_drops_only_when_the_millisecond_limit_is_reached() {
    let t0 = base();
    // 300 ms at 100 kbit/s = 3,750 bytes = three 1,250-byte datagrams.
    let mut link = queue_link(100, QueueLimit::Millis(300));
    for i in 0..10 {
        link.push(t0, numbered(i, 1250));
    }
    assert_eq!(link.stats().queued_packets, 3);
    assert_eq!(link.stats().dropped_queue_full, 7);
    assert!(link.poll(t0 + ms(100)).is_some());
    link.push(t0 + ms(100), numbered(10, 1250));
    link.push(t0 + ms(100), numbered(11, 1250));
    assert_eq!(link.stats().dropped_queue_full, 8);
    // Nobody waits more than the limit: the last accepted leaves 300 ms after it arrived.
    let out = drive(&mut link, []);
    assert_eq!(
        out.last().map(|(at, d)| (*at - t0, seq_of(d))),
        Some((ms(400), 10))
    );
}

#[test]
fn queue_mode_long_run_below_capacity_never_drops() {
    let t0 = base();
    let mut link = queue_link(1000, QueueLimit::Millis(50));
    // 900 kbit/s offered as 1,125-byte datagrams every 10 ms, for 20 s.
    let pushes = evenly(t0, 2000, ms(10), 1125);
    let out = drive(&mut link, pushes);
    assert_eq!(out.len(), 2000);
    for (at, d) in &out {
        assert_eq!(*at - (t0 + ms(10) * seq_of(d)), Duration::from_millis(9));
    }
}

#[test]
fn runtime_rate_change_applies_to_waiting_datagrams() {
    let t0 = base();
    let mut link = queue_link(100, QueueLimit::Bytes(1_000_000));
    for i in 0..4 {
        link.push(t0, numbered(i, 1250));
    }
    // Halfway through the first datagram (5,000 of 10,000 bits sent), the rate doubles.
    assert!(link.poll(t0 + ms(50)).is_none());
    let faster =
        LinkConfig::default().with_bandwidth_queue_kbps(200, 200, QueueLimit::Bytes(1_000_000));
    link.set_config(faster).unwrap();
    let out = drive(&mut link, []);
    let times: Vec<Duration> = out.iter().map(|(at, _)| *at - t0).collect();
    assert_eq!(times, vec![ms(75), ms(125), ms(175), ms(225)]);
}

#[test]
fn removing_the_bottleneck_releases_waiting_datagrams() {
    let t0 = base();
    let mut link = queue_link(100, QueueLimit::Bytes(1_000_000));
    for i in 0..4 {
        link.push(t0, numbered(i, 1250));
    }
    assert!(link.poll(t0 + ms(10)).is_none());
    link.set_config(LinkConfig::default().with_fixed_latency_ms(5.0))
        .unwrap();
    let out = drive(&mut link, []);
    assert_eq!(out.len(), 4);
    // They keep the latency they drew when they arrived (none): out at once, in order.
    assert!(out.iter().all(|(at, _)| *at == t0 + ms(10)));
    assert_eq!(
        out.iter().map(|(_, d)| seq_of(d)).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    // New datagrams see the new latency.
    link.push(t0 + ms(20), numbered(9, 1250));
    assert_eq!(link.poll_timeout(), Some(t0 + ms(25)));
}

#[test]
fn purging_a_peer_frees_the_bottleneck_for_others() {
    let t0 = base();
    let mut link = queue_link(100, QueueLimit::Bytes(1_000_000));
    for i in 0..6u32 {
        let mut d = numbered(i, 1250);
        if i % 2 == 0 {
            d = Datagram::new(addr(7), addr(2), d.payload);
        }
        link.push(t0, d);
    }
    // At 30 ms, the peer of the even datagrams disconnects (including the one on the wire).
    assert!(link.poll(t0 + ms(30)).is_none());
    assert_eq!(link.purge_peer(addr(7)), 3);
    let out = drive(&mut link, []);
    let got: Vec<(Duration, u32)> = out.iter().map(|(at, d)| (*at - t0, seq_of(d))).collect();
    assert_eq!(got, vec![(ms(130), 1), (ms(230), 3), (ms(330), 5)]);
    assert_eq!(link.stats().dropped_purged, 3);
}

#[test]
fn queue_mode_duplicates_do_not_use_bandwidth() {
    let t0 = base();
    let cfg = LinkConfig::default()
        .with_bandwidth_queue_kbps(100, 100, QueueLimit::Bytes(1_000_000))
        .with_duplicate(1.0);
    let mut link = Link::new(cfg, 1).unwrap();
    for i in 0..3 {
        link.push(t0, numbered(i, 1250));
    }
    let out = drive(&mut link, []);
    let got: Vec<(Duration, u32)> = out.iter().map(|(at, d)| (*at - t0, seq_of(d))).collect();
    assert_eq!(
        got,
        vec![
            (ms(100), 0),
            (ms(100), 0),
            (ms(200), 1),
            (ms(200), 1),
            (ms(300), 2),
            (ms(300), 2)
        ]
    );
}
