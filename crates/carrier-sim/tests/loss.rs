//! Periodic, random, Gilbert–Elliott and burst loss; MTU; blackhole; stage order.

mod common;

use std::time::Duration;

use carrier_sim::{GilbertElliott, Link, LinkConfig};
use common::{base, drive, evenly, ms, numbered, seq_of};

/// Pushes `n` datagrams of 16 bytes (no latency configured) and returns, for each, whether it
/// came out.
fn delivered_mask(cfg: LinkConfig, seed: u64, n: u32) -> Vec<bool> {
    let t0 = base();
    let mut link = Link::new(cfg, seed).unwrap();
    let mut mask = vec![false; n as usize];
    for i in 0..n {
        let now = t0 + Duration::from_micros(u64::from(i));
        link.push(now, numbered(i, 16));
        while let Some(d) = link.poll(now) {
            mask[seq_of(&d) as usize] = true;
        }
    }
    assert!(link.stats().is_balanced());
    assert_eq!(link.stats().queued_packets, 0);
    mask
}

fn loss_rate(mask: &[bool]) -> f64 {
    mask.iter().filter(|&&ok| !ok).count() as f64 / mask.len() as f64
}

/// Mean length of runs of consecutive losses.
fn mean_burst(mask: &[bool]) -> f64 {
    let (mut bursts, mut lost, mut in_burst) = (0u32, 0u32, false);
    for &ok in mask {
        if !ok {
            lost += 1;
            if !in_burst {
                bursts += 1;
            }
        }
        in_burst = !ok;
    }
    f64::from(lost) / f64::from(bursts.max(1))
}

#[test]
fn periodic_loss_2_2_drops_exactly_every_other_packet() {
    let mask = delivered_mask(LinkConfig::default().with_periodic_loss(2, 2), 1, 1000);
    for (i, ok) in mask.iter().enumerate() {
        // The first packet is dropped, as in the original.
        assert_eq!(*ok, i % 2 == 1, "packet {i}");
    }
}

#[test]
fn periodic_loss_5_5_drops_exactly_20_percent() {
    let mask = delivered_mask(LinkConfig::default().with_periodic_loss(5, 5), 1, 1000);
    assert_eq!(mask.iter().filter(|&&ok| !ok).count(), 200);
    for (i, ok) in mask.iter().enumerate() {
        assert_eq!(*ok, i % 5 != 0, "packet {i}");
    }
}

#[test]
fn periodic_loss_range_draws_gaps_in_min_to_max_exclusive() {
    let mask = delivered_mask(LinkConfig::default().with_periodic_loss(3, 6), 7, 10_000);
    let drops: Vec<usize> = (0..mask.len()).filter(|&i| !mask[i]).collect();
    assert_eq!(drops[0], 0);
    let mut seen = [false; 6];
    for w in drops.windows(2) {
        let gap = w[1] - w[0];
        assert!((3..6).contains(&gap), "gap {gap}");
        seen[gap] = true;
    }
    assert!(seen[3] && seen[4] && seen[5]);
}

#[test]
fn random_loss_10_percent_over_100k_packets_is_within_one_point() {
    let mask = delivered_mask(LinkConfig::default().with_loss(0.10), 0xC0FFEE, 100_000);
    let rate = loss_rate(&mask);
    assert!((rate - 0.10).abs() <= 0.01, "loss {rate}");
    // Independent losses: mean run of losses ≈ 1 / (1 - 0.1).
    assert!(mean_burst(&mask) < 1.2, "{}", mean_burst(&mask));
}

#[test]
fn gilbert_elliott_matches_stationary_loss_and_is_bursty() {
    let ge = GilbertElliott::gilbert(0.05, 0.25);
    let expected = ge.stationary_loss(); // 0.05 / 0.30 = 1/6
    assert!((expected - 1.0 / 6.0).abs() < 1e-12);
    let mask = delivered_mask(LinkConfig::default().with_gilbert_elliott(ge), 11, 200_000);
    let rate = loss_rate(&mask);
    assert!((rate - expected).abs() < 0.01, "loss {rate} vs {expected}");
    // Bursts of mean length 1 / r = 4.
    let burst = mean_burst(&mask);
    assert!((3.6..4.4).contains(&burst), "mean burst {burst}");
}

#[test]
fn gilbert_elliott_with_loss_in_both_states() {
    let ge = GilbertElliott {
        p_good_to_bad: 0.1,
        r_bad_to_good: 0.3,
        loss_in_good: 0.02,
        loss_in_bad: 0.5,
    };
    let expected = ge.stationary_loss(); // 0.75·0.02 + 0.25·0.5 = 0.14
    assert!((expected - 0.14).abs() < 1e-12);
    let mask = delivered_mask(LinkConfig::default().with_gilbert_elliott(ge), 12, 200_000);
    let rate = loss_rate(&mask);
    assert!((rate - expected).abs() < 0.01, "loss {rate} vs {expected}");
    assert!(mean_burst(&mask) > 1.2);
}

#[test]
fn burst_drops_drop_everything_in_the_interval_and_nothing_outside() {
    let t0 = base();
    let cfg = LinkConfig::default().with_burst_drop_ms(1000, 1000, 200, 200);
    let mut link = Link::new(cfg, 1).unwrap();
    // One packet every 5 ms for 5 s; the timeline starts at the first packet.
    let pushes = evenly(t0, 1000, ms(5), 16);
    let out = drive(&mut link, pushes);
    let mut delivered = [false; 1000];
    for (_, d) in &out {
        delivered[seq_of(d) as usize] = true;
    }
    for (i, ok) in delivered.iter().enumerate() {
        let phase_ms = (i * 5) % 1000;
        assert_eq!(*ok, phase_ms >= 200, "packet {i} at phase {phase_ms} ms");
    }
    assert_eq!(link.stats().dropped_burst, 200);
}

#[test]
fn burst_drop_random_periods_keep_outages_at_period_starts() {
    let t0 = base();
    let cfg = LinkConfig::default().with_burst_drop_ms(500, 1500, 50, 150);
    let mut link = Link::new(cfg, 5).unwrap();
    let out = drive(&mut link, evenly(t0, 20_000, ms(1), 16));
    let mut delivered = vec![false; 20_000];
    for (_, d) in &out {
        delivered[seq_of(d) as usize] = true;
    }
    // Outages are runs of 50..150 consecutive drops (1 ms apart), separated by 350+ passes.
    let mut runs = Vec::new();
    let mut i = 0;
    while i < delivered.len() {
        let ok = delivered[i];
        let start = i;
        while i < delivered.len() && delivered[i] == ok {
            i += 1;
        }
        runs.push((ok, i - start));
    }
    let last = runs.len() - 1;
    for (k, &(ok, len)) in runs.iter().enumerate() {
        if ok {
            assert!(len >= 350 || k == last, "pass run {len}");
        } else {
            assert!((50..150).contains(&len), "drop run {len}");
        }
    }
    assert!(runs.iter().filter(|r| !r.0).count() >= 13);
}

#[test]
fn mtu_limit_drops_larger_datagrams() {
    let t0 = base();
    let mut link = Link::new(LinkConfig::default().with_mtu(100), 1).unwrap();
    for (i, len) in [99usize, 100, 101, 1500, 4, 100].into_iter().enumerate() {
        link.push(t0, numbered(i as u32, len));
    }
    let got: Vec<u32> = std::iter::from_fn(|| link.poll(t0))
        .map(|d| seq_of(&d))
        .collect();
    assert_eq!(got, vec![0, 1, 4, 5]);
    assert_eq!(link.stats().dropped_mtu, 2);
}

#[test]
fn blackhole_drops_everything() {
    let t0 = base();
    let mut link = Link::new(LinkConfig::default().with_blackhole(true), 1).unwrap();
    let out = drive(&mut link, evenly(t0, 1000, ms(1), 64));
    assert!(out.is_empty());
    assert_eq!(link.stats().dropped_blackhole, 1000);
    assert_eq!(link.stats().packets_out, 0);
}

#[test]
fn stages_apply_in_documented_order() {
    let t0 = base();
    // MTU before blackhole.
    let mut link = Link::new(LinkConfig::default().with_mtu(10).with_blackhole(true), 1).unwrap();
    link.push(t0, numbered(0, 11));
    link.push(t0, numbered(1, 10));
    assert_eq!(
        (link.stats().dropped_mtu, link.stats().dropped_blackhole),
        (1, 1)
    );

    // Datagrams dropped by the MTU do not count for periodic loss: (2,2) over the small ones only.
    let mut link = Link::new(
        LinkConfig::default().with_mtu(10).with_periodic_loss(2, 2),
        1,
    )
    .unwrap();
    for i in 0..100 {
        link.push(t0, numbered(i, if i % 2 == 0 { 50 } else { 8 }));
    }
    assert_eq!(link.stats().dropped_mtu, 50);
    assert_eq!(link.stats().dropped_loss, 25);

    // Loss before bursts: a datagram lost to periodic loss during an outage counts as loss.
    let mut link = Link::new(
        LinkConfig::default()
            .with_periodic_loss(1, 1)
            .with_burst_drop_ms(1000, 1000, 1000, 1000),
        1,
    )
    .unwrap();
    link.push(t0, numbered(0, 8));
    assert_eq!(
        (link.stats().dropped_loss, link.stats().dropped_burst),
        (1, 0)
    );

    // Bursts before bandwidth: outage drops do not use the byte budget.
    let mut link = Link::new(
        LinkConfig::default()
            .with_burst_drop_ms(1000, 1000, 100, 100)
            .with_bandwidth_drop_kbps(8, 8), // 1,000 bytes per second
        1,
    )
    .unwrap();
    link.push(t0, numbered(0, 1000)); // in the outage
    link.push(t0 + ms(500), numbered(1, 1000)); // fits the whole budget
    assert_eq!(link.stats().dropped_burst, 1);
    assert_eq!(link.stats().dropped_bandwidth, 0);
    assert_eq!(link.stats().queued_packets, 1);
}
