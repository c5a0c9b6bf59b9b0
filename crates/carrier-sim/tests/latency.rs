//! Latency, jitter and reordering.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use carrier_sim::{Link, LinkConfig};
use common::{base, drive, evenly, ms, numbered, seq_of};

#[test]
fn fixed_50ms_latency_releases_every_packet_exactly_50ms_later() {
    let t0 = base();
    let mut link = Link::new(LinkConfig::default().with_fixed_latency_ms(50.0), 1).unwrap();
    // Irregular send times, several packets per instant at times.
    let pushes: Vec<_> = (0..1000u32)
        .map(|i| {
            (
                t0 + Duration::from_micros(u64::from(i * 7919 % 3000) * u64::from(i / 10)),
                i,
            )
        })
        .collect();
    let mut pushes: Vec<_> = pushes
        .into_iter()
        .map(|(t, i)| (t, numbered(i, 32)))
        .collect();
    pushes.sort_by_key(|p| p.0);
    let sent: HashMap<u32, _> = pushes.iter().map(|(t, d)| (seq_of(d), *t)).collect();

    // Nothing comes out early.
    let mut probe = link.clone();
    probe.push(t0, numbered(0, 8));
    assert!(probe.poll(t0 + ms(50) - Duration::from_nanos(1)).is_none());
    assert!(probe.poll(t0 + ms(50)).is_some());

    let out = drive(&mut link, pushes);
    assert_eq!(out.len(), 1000);
    for (at, d) in &out {
        assert_eq!(*at - sent[&seq_of(d)], ms(50), "datagram {}", seq_of(d));
    }
}

#[test]
fn zero_latency_is_due_at_once() {
    let t0 = base();
    let mut link = Link::new(LinkConfig::default(), 1).unwrap();
    link.push(t0, numbered(1, 10));
    assert_eq!(link.poll_timeout(), Some(t0));
    assert_eq!(link.poll(t0).map(|d| seq_of(&d)), Some(1));
    assert_eq!(link.poll_timeout(), None);
}

fn inversions(out: &[(std::time::Instant, carrier_sim::Datagram)]) -> usize {
    out.windows(2)
        .filter(|w| seq_of(&w[1].1) < seq_of(&w[0].1))
        .count()
}

#[test]
fn reordering_with_10_to_100ms_latency_reorders() {
    let t0 = base();
    let cfg = LinkConfig::default()
        .with_latency_ms(10.0, 100.0)
        .with_reorder(true);
    let mut link = Link::new(cfg, 2).unwrap();
    let pushes = evenly(t0, 2000, ms(1), 20);
    let sent: Vec<_> = pushes.iter().map(|p| p.0).collect();
    let out = drive(&mut link, pushes);
    assert_eq!(out.len(), 2000);
    // With a 90 ms spread and 1 ms spacing most neighbours swap.
    assert!(
        inversions(&out) > 500,
        "only {} inversions",
        inversions(&out)
    );
    for (at, d) in &out {
        let delay = *at - sent[seq_of(d) as usize];
        assert!(delay >= ms(10) && delay < ms(100), "{delay:?}");
    }
}

#[test]
fn without_reorder_random_latency_keeps_order() {
    let t0 = base();
    let cfg = LinkConfig::default().with_latency_ms(10.0, 100.0);
    let mut link = Link::new(cfg, 2).unwrap();
    // 20 ms apart, so the 90 ms latency spread would reorder most neighbours if allowed.
    let pushes = evenly(t0, 2000, ms(20), 20);
    let sent: Vec<_> = pushes.iter().map(|p| p.0).collect();
    let out = drive(&mut link, pushes);
    assert_eq!(out.len(), 2000);
    assert_eq!(inversions(&out), 0);
    let mut delays = Vec::new();
    for w in out.windows(2) {
        assert!(w[1].0 >= w[0].0, "release went backwards");
    }
    for (at, d) in &out {
        delays.push(*at - sent[seq_of(d) as usize]);
    }
    // The latency really is random (not collapsed to a constant), and never below the minimum.
    assert!(delays.iter().all(|d| *d >= ms(10)));
    let (min, max) = (delays.iter().min().unwrap(), delays.iter().max().unwrap());
    assert!(*max - *min > ms(50), "{min:?}..{max:?}");
}

#[test]
fn without_reorder_jitter_keeps_order() {
    let t0 = base();
    let cfg = LinkConfig::default().with_jitter_ms(40.0, 20.0);
    let mut link = Link::new(cfg, 3).unwrap();
    let out = drive(&mut link, evenly(t0, 2000, ms(1), 20));
    assert_eq!(out.len(), 2000);
    assert_eq!(inversions(&out), 0);
}

#[test]
fn jitter_is_bounded_and_centred_on_base() {
    let t0 = base();
    let cfg = LinkConfig::default()
        .with_jitter_ms(40.0, 20.0)
        .with_reorder(true);
    let mut link = Link::new(cfg, 4).unwrap();
    let pushes = evenly(t0, 20_000, ms(1), 8);
    let sent: Vec<_> = pushes.iter().map(|p| p.0).collect();
    let out = drive(&mut link, pushes);
    assert_eq!(out.len(), 20_000);
    let delays: Vec<f64> = out
        .iter()
        .map(|(at, d)| (*at - sent[seq_of(d) as usize]).as_secs_f64() * 1000.0)
        .collect();
    assert!(delays.iter().all(|&d| d > 20.0 && d < 60.0));
    let mean = delays.iter().sum::<f64>() / delays.len() as f64;
    assert!((mean - 40.0).abs() < 0.5, "mean {mean}");
    // Triangular: 75 % of the mass within ±jitter/2 (a uniform spread would give 50 %).
    let central = delays.iter().filter(|&&d| (d - 40.0).abs() < 10.0).count() as f64;
    let share = central / delays.len() as f64;
    assert!((0.72..0.78).contains(&share), "central share {share}");
    assert!(inversions(&out) > 1000);
}

#[test]
fn time_going_backwards_is_treated_as_the_latest_instant() {
    let t0 = base();
    let mut link = Link::new(LinkConfig::default().with_fixed_latency_ms(10.0), 5).unwrap();
    link.push(t0 + ms(100), numbered(1, 8));
    // An earlier `now`: the datagram is taken as pushed at t0 + 100 ms.
    link.push(t0, numbered(2, 8));
    assert!(link.poll(t0 + ms(50)).is_none());
    let out = drive(&mut link, []);
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|(at, _)| *at == t0 + ms(110)));
    assert_eq!(seq_of(&out[0].1), 1);
}
