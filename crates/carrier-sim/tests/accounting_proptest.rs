//! Random configurations (valid or not) and random operation sequences: the link never panics,
//! its counters always balance, and `poll_timeout` is exact.

mod common;

use std::time::{Duration, Instant};

use carrier_sim::{
    Bandwidth, BandwidthMode, BurstDrop, Datagram, GilbertElliott, Latency, Link, LinkConfig,
    PeriodicLoss, QueueLimit,
};
use common::{addr, base};
use proptest::prelude::*;

fn ms_value() -> impl Strategy<Value = f64> {
    prop_oneof![8 => 0.0..150.0f64, 1 => Just(0.0)]
}

fn probability() -> impl Strategy<Value = f64> {
    prop_oneof![6 => 0.0..0.5f64, 1 => Just(0.0), 1 => Just(1.0)]
}

fn latency() -> impl Strategy<Value = Latency> {
    prop_oneof![
        Just(Latency::None),
        (ms_value(), ms_value()).prop_map(|(a, b)| Latency::Uniform {
            min_ms: a.min(b),
            max_ms: a.max(b)
        }),
        (ms_value(), 0.0..=1.0f64).prop_map(|(base_ms, f)| Latency::Jitter {
            base_ms,
            jitter_ms: base_ms * f
        }),
    ]
}

fn bandwidth() -> impl Strategy<Value = Option<Bandwidth>> {
    let limit = prop_oneof![
        (1usize..20_000).prop_map(QueueLimit::Bytes),
        (1u64..500).prop_map(QueueLimit::Millis),
    ];
    let mode = prop_oneof![
        Just(BandwidthMode::Drop),
        limit.prop_map(BandwidthMode::Queue)
    ];
    proptest::option::of(
        (1u64..2000, 0u64..500, mode).prop_map(|(min_kbps, extra, mode)| Bandwidth {
            min_kbps,
            max_kbps: min_kbps + extra,
            mode,
        }),
    )
}

/// A valid config, then (one time in five) one setting broken so that validation must refuse it.
fn config() -> impl Strategy<Value = LinkConfig> {
    let loss = (
        proptest::option::of((1u32..6, 0u32..3).prop_map(|(min, extra)| PeriodicLoss {
            min_interval: min,
            max_interval: min + extra,
        })),
        probability(),
        proptest::option::of(
            (probability(), probability(), probability(), probability()).prop_map(
                |(p_good_to_bad, r_bad_to_good, loss_in_good, loss_in_bad)| GilbertElliott {
                    p_good_to_bad,
                    r_bad_to_good,
                    loss_in_good,
                    loss_in_bad,
                },
            ),
        ),
        proptest::option::of((1u64..300, 0u64..300, 0u64..100, 0u64..100).prop_map(
            |(period, extra_period, interval, extra_interval)| BurstDrop {
                min_period_ms: period,
                max_period_ms: period + extra_period,
                min_interval_ms: interval,
                max_interval_ms: interval + extra_interval,
            },
        )),
    );
    let rest = (
        latency(),
        any::<bool>(),
        bandwidth(),
        probability(),
        probability(),
        proptest::option::of(1usize..1600),
        prop::bool::weighted(0.05),
        prop_oneof![Just(65_536usize), 1usize..40],
        prop_oneof![Just(1usize << 26), 1usize..30_000],
    );
    let breakage = prop_oneof![4 => Just(None), 1 => (0u8..10).prop_map(Some)];
    (loss, rest, breakage).prop_map(
        |(
            (periodic_loss, loss_probability, gilbert_elliott, burst_drop),
            (latency, reorder, bandwidth, dup, corrupt, mtu, blackhole, max_p, max_b),
            breakage,
        )| {
            let mut c = LinkConfig {
                latency,
                reorder,
                periodic_loss,
                loss_probability,
                gilbert_elliott,
                burst_drop,
                bandwidth,
                duplicate_probability: dup,
                corrupt_probability: corrupt,
                mtu,
                blackhole,
                max_queued_packets: max_p,
                max_queued_bytes: max_b,
            };
            match breakage {
                None => {}
                Some(0) => c.loss_probability = f64::NAN,
                Some(1) => c.duplicate_probability = 1.5,
                Some(2) => {
                    c.latency = Latency::Uniform {
                        min_ms: 10.0,
                        max_ms: 5.0,
                    }
                }
                Some(3) => {
                    c.latency = Latency::Jitter {
                        base_ms: 1.0,
                        jitter_ms: f64::INFINITY,
                    }
                }
                Some(4) => c.mtu = Some(0),
                Some(5) => c.max_queued_packets = 0,
                Some(6) => {
                    c.periodic_loss = Some(PeriodicLoss {
                        min_interval: 0,
                        max_interval: 3,
                    })
                }
                Some(7) => {
                    c.bandwidth = Some(Bandwidth {
                        min_kbps: 0,
                        max_kbps: 5,
                        mode: BandwidthMode::Drop,
                    })
                }
                Some(8) => {
                    c.burst_drop = Some(BurstDrop {
                        min_period_ms: 5,
                        max_period_ms: 4,
                        min_interval_ms: 0,
                        max_interval_ms: 0,
                    })
                }
                Some(_) => c.corrupt_probability = -0.1,
            }
            c
        },
    )
}

#[derive(Clone, Debug)]
enum Op {
    /// Time step in µs (negative: a `now` in the past), peers, payload length.
    Push(i64, u8, u8, usize),
    Poll(i64),
    CheckTimeout,
    Enable(bool),
    Purge(u8),
    SetConfig(LinkConfig),
}

fn op() -> impl Strategy<Value = Op> {
    let dt =
        prop_oneof![8 => 0i64..30_000, 1 => -50_000i64..0, 1 => Just(0i64), 1 => 0i64..3_000_000];
    let len = prop_oneof![8 => 0usize..1500, 1 => Just(0usize), 1 => 60_000usize..70_000];
    prop_oneof![
        10 => (dt.clone(), 0u8..4, 0u8..4, len).prop_map(|(t, a, b, l)| Op::Push(t, a, b, l)),
        5 => dt.prop_map(Op::Poll),
        3 => Just(Op::CheckTimeout),
        1 => any::<bool>().prop_map(Op::Enable),
        1 => (0u8..4).prop_map(Op::Purge),
        1 => config().prop_map(Op::SetConfig),
    ]
}

fn step(clock: Instant, floor: Instant, dt: i64) -> Instant {
    let d = Duration::from_micros(dt.unsigned_abs());
    if dt >= 0 {
        clock + d
    } else {
        clock.checked_sub(d).unwrap_or(floor).max(floor)
    }
}

/// `poll_timeout` is exact: `poll` returns a datagram at that instant and nothing just before.
fn check_timeout_is_exact(link: &Link, seen: Option<Instant>) {
    let Some(t) = link.poll_timeout() else {
        assert_eq!(link.stats().queued_packets, 0);
        return;
    };
    assert!(link.stats().queued_packets > 0);
    assert!(
        link.clone().poll(t).is_some(),
        "nothing due at poll_timeout"
    );
    let before = t - Duration::from_nanos(1);
    if seen.is_none_or(|s| before >= s) {
        assert!(
            link.clone().poll(before).is_none(),
            "due before poll_timeout"
        );
    }
}

fn run(cfg: LinkConfig, seed: u64, ops: Vec<Op>) {
    let Ok(mut link) = Link::new(cfg.clone(), seed) else {
        assert!(cfg.validate().is_err());
        return;
    };
    let t0 = base();
    let floor = t0;
    let mut clock = t0 + Duration::from_secs(1);
    let mut seen: Option<Instant> = None;
    let mut outputs = 0u64;
    let mut n = 0u32;
    let mut cap = cfg.max_queued_packets as u64;
    for op in ops {
        match op {
            Op::Push(dt, a, b, len) => {
                clock = step(clock, floor, dt);
                seen = Some(seen.map_or(clock, |s| s.max(clock)));
                let mut payload = vec![0u8; len];
                payload
                    .iter_mut()
                    .take(4)
                    .zip(n.to_be_bytes())
                    .for_each(|(p, b)| *p = b);
                n += 1;
                link.push(
                    clock,
                    Datagram::new(addr(a.into()), addr(b.into()), payload),
                );
            }
            Op::Poll(dt) => {
                clock = step(clock, floor, dt);
                seen = Some(seen.map_or(clock, |s| s.max(clock)));
                while link.poll(clock).is_some() {
                    outputs += 1;
                }
            }
            Op::CheckTimeout => check_timeout_is_exact(&link, seen),
            Op::Enable(on) => link.set_enabled(on),
            Op::Purge(p) => {
                let before = link.stats().queued_packets;
                let purged = link.purge_peer(addr(p.into())) as u64;
                assert_eq!(link.stats().queued_packets, before - purged);
            }
            Op::SetConfig(c) => {
                let old = link.config().clone();
                match link.set_config(c.clone()) {
                    Ok(()) => assert_eq!(link.config(), &c),
                    Err(_) => {
                        assert!(c.validate().is_err());
                        assert_eq!(link.config(), &old);
                    }
                }
            }
        }
        let s = link.stats();
        assert!(s.is_balanced(), "{s:?}");
        assert_eq!(s.packets_out, outputs);
        // Bounded memory: never more than the largest cap configured so far.
        cap = cap.max(link.config().max_queued_packets as u64);
        assert!(s.queued_packets <= cap, "{} > {cap}", s.queued_packets);
    }
    check_timeout_is_exact(&link, seen);
    // Disabling releases everything at once.
    link.set_enabled(false);
    while link.poll(clock).is_some() {
        outputs += 1;
    }
    let s = link.stats();
    assert_eq!((s.queued_packets, s.queued_bytes), (0, 0), "{s:?}");
    assert_eq!(s.packets_out, outputs);
    assert_eq!(s.packets_in, u64::from(n));
    assert!(s.is_balanced(), "{s:?}");
    assert_eq!(link.poll_timeout(), None);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_configs_and_inputs_never_panic_and_always_balance(
        cfg in config(),
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 0..200),
    ) {
        run(cfg, seed, ops);
    }
}

#[test]
fn hard_cap_bounds_memory_with_latency_only() {
    let t0 = base();
    let cfg = LinkConfig::default()
        .with_fixed_latency_ms(1000.0)
        .with_max_queued(100, 1_000_000);
    let mut link = Link::new(cfg, 1).unwrap();
    for i in 0..1000u64 {
        link.push(
            t0 + Duration::from_micros(i),
            Datagram::new(addr(1), addr(2), vec![0; 10]),
        );
    }
    assert_eq!(link.stats().queued_packets, 100);
    assert_eq!(link.stats().dropped_queue_full, 900);
    assert!(link.stats().is_balanced());
}
