//! Behaviour of the default congestion control (docs/traffic-control.md), driven through
//! [`DefaultTrafficControl`] by a minimal fluid model of a path: one FIFO bottleneck, a fixed
//! one-way delay, optional random loss, every datagram acknowledged on its own.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::traffic::{
    AckOutcome, CongestionControl, DefaultTrafficControl, SentDatagram, TrafficConfig,
    TrafficControl,
};

const SIZE: usize = 1_200;

#[allow(clippy::disallowed_methods)] // Tests need a real `Instant` as their origin.
fn base() -> Instant {
    Instant::now()
}

/// A bottleneck of `rate` bytes per second behind `one_way` of delay each way.
struct Path {
    rate: u64,
    one_way: Duration,
    /// Drop every datagram whose draw falls below this (per mille).
    loss_per_mille: u64,
    rng: u64,
    /// When the bottleneck is free again.
    free_at: Instant,
    /// (when its ACK arrives, number), in arrival order.
    acks: VecDeque<(Instant, u64)>,
}

impl Path {
    fn new(t0: Instant, rate: u64, rtt_ms: u64) -> Self {
        Path {
            rate,
            one_way: Duration::from_millis(rtt_ms / 2),
            loss_per_mille: 0,
            rng: 0x2545_f491_4f6c_dd1d,
            free_at: t0,
            acks: VecDeque::new(),
        }
    }

    fn lost(&mut self) -> bool {
        // xorshift64: deterministic.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % 1000 < self.loss_per_mille
    }

    fn send(&mut self, now: Instant, number: u64) {
        if self.lost() {
            return;
        }
        let serialize = Duration::from_nanos(SIZE as u64 * 1_000_000_000 / self.rate);
        let depart = self.free_at.max(now) + serialize;
        self.free_at = depart;
        self.acks.push_back((depart + 2 * self.one_way, number));
    }
}

/// Drives `tc` over `path` with an unbounded backlog (or `app_rate` bytes per second offered)
/// until `until`. Returns the number of datagrams acknowledged and the rate changes reported.
fn drive(
    tc: &mut DefaultTrafficControl,
    path: &mut Path,
    now: &mut Instant,
    next: &mut u64,
    until: Instant,
    app_rate: Option<u64>,
) -> (u64, Vec<u64>) {
    let mut acked = 0;
    let mut changes = Vec::new();
    let mut out = AckOutcome::default();
    let mut app_next = *now;
    while *now < until {
        while let Some(&(at, number)) = path.acks.front()
            && at <= *now
        {
            path.acks.pop_front();
            out.clear();
            tc.on_ack_received(*now, &[number..=number], Duration::ZERO, &mut out);
            acked += out.acked.len() as u64;
        }
        if tc.poll_timeout().is_some_and(|t| t <= *now) {
            out.clear();
            tc.on_timeout(*now, &mut out);
        }
        changes.extend(tc.poll_rate_change());
        // Send while the window, the pacer and the application allow.
        loop {
            let allowance = tc.send_allowance(*now);
            let offered = app_rate.is_none() || app_next <= *now;
            if allowance.window == 0 || allowance.next_send_time.is_some() || !offered {
                break;
            }
            if let Some(r) = app_rate {
                app_next += Duration::from_nanos(SIZE as u64 * 1_000_000_000 / r);
            }
            tc.on_datagram_sent(
                *now,
                SentDatagram {
                    number: *next,
                    time_sent: *now,
                    size: SIZE,
                    payload_bytes: SIZE,
                    resent_payload_bytes: 0,
                    ack_eliciting: true,
                    app_limited: app_rate.is_some() && app_next > *now,
                    lazy_ack: false,
                },
            );
            path.send(*now, *next);
            *next += 1;
        }
        // Next event: an ACK, the pacer, the application, a timer; at most 1 ms ahead.
        let allowance = tc.send_allowance(*now);
        let mut t = *now + Duration::from_millis(1);
        for c in [
            path.acks.front().map(|a| a.0),
            allowance.next_send_time,
            tc.poll_timeout(),
            app_rate.map(|_| app_next),
        ]
        .into_iter()
        .flatten()
        {
            if c > *now {
                t = t.min(c);
            }
        }
        *now = t;
    }
    (acked, changes)
}

fn model(t0: Instant) -> DefaultTrafficControl {
    DefaultTrafficControl::new(t0, SIZE, TrafficConfig::default())
}

#[test]
fn converges_to_the_bottleneck_and_reports_the_rate() {
    let t0 = base();
    let mut tc = model(t0);
    let mut path = Path::new(t0, 1_000_000, 40);
    let (mut now, mut next) = (t0, 0);
    let (acked, changes) = drive(
        &mut tc,
        &mut path,
        &mut now,
        &mut next,
        t0 + Duration::from_secs(5),
        None,
    );
    let rate = tc.statistics(now).flow.send_rate;
    // 5 s at 1 MB/s of 1,200-byte datagrams: about 4,160; Startup takes a few hundred ms.
    assert!(acked > 3_800, "{acked}");
    assert!((950_000..=1_100_000).contains(&rate), "{rate}");
    // The window is about two BDPs (2 × 40 KB) plus a few datagrams, never the 1 MiB cap.
    let cwnd = tc.statistics(now).flow.congestion_window;
    assert!((80_000..=160_000).contains(&cwnd), "{cwnd}");
    // Rate changes: the first estimate, then each ≥ 25 % step of Startup, then silence.
    assert!(!changes.is_empty() && changes.len() <= 10, "{changes:?}");
    let last = *changes.last().unwrap();
    assert!((750_000..=1_250_000).contains(&last), "{changes:?}");
    for pair in changes.windows(2) {
        assert!(
            pair[1].abs_diff(pair[0]) as f64 >= 0.25 * pair[0] as f64,
            "{changes:?}"
        );
    }
    // Half the rate: reported within two seconds.
    path.rate = 500_000;
    let until = now + Duration::from_secs(2);
    let (_, changes) = drive(&mut tc, &mut path, &mut now, &mut next, until, None);
    assert!(
        changes.iter().any(|&r| (375_000..=625_000).contains(&r)),
        "{changes:?}"
    );
}

#[test]
fn random_loss_is_tolerated_heavy_loss_backs_off() {
    for (loss_per_mille, min_rate, max_rate) in [
        (10, 900_000, 1_100_000),
        (100, 850_000, 1_100_000),
        (500, 0, 600_000),
    ] {
        let t0 = base();
        let mut tc = model(t0);
        let mut path = Path::new(t0, 1_000_000, 40);
        path.loss_per_mille = loss_per_mille;
        let (mut now, mut next) = (t0, 0);
        drive(
            &mut tc,
            &mut path,
            &mut now,
            &mut next,
            t0 + Duration::from_secs(10),
            None,
        );
        let rate = tc.statistics(now).flow.send_rate;
        assert!(
            (min_rate..=max_rate).contains(&rate),
            "loss {loss_per_mille}‰: rate {rate}"
        );
    }
}

#[test]
fn pacing_spreads_a_window_over_the_rtt() {
    let t0 = base();
    let mut tc = model(t0);
    let mut path = Path::new(t0, 1_000_000, 40);
    let (mut now, mut next) = (t0, 0);
    drive(
        &mut tc,
        &mut path,
        &mut now,
        &mut next,
        t0 + Duration::from_secs(3),
        None,
    );
    // Back-to-back sends: after a burst the pacer asks to wait about 1.2 ms per datagram.
    let mut sent = 0;
    while tc.send_allowance(now).next_send_time.is_none() && tc.send_allowance(now).window > 0 {
        tc.on_datagram_sent(
            now,
            SentDatagram {
                number: next,
                time_sent: now,
                size: SIZE,
                payload_bytes: SIZE,
                resent_payload_bytes: 0,
                ack_eliciting: true,
                app_limited: false,
                lazy_ack: false,
            },
        );
        next += 1;
        sent += 1;
    }
    let wait = tc.send_allowance(now).next_send_time.map(|t| t - now);
    assert!(sent <= 11, "{sent}");
    assert!(
        wait.is_some_and(|w| w > Duration::ZERO && w <= Duration::from_millis(2)),
        "{wait:?}"
    );
}

#[test]
fn application_limited_sending_keeps_the_estimate() {
    let t0 = base();
    let mut tc = model(t0);
    let mut path = Path::new(t0, 1_000_000, 40);
    let (mut now, mut next) = (t0, 0);
    drive(
        &mut tc,
        &mut path,
        &mut now,
        &mut next,
        t0 + Duration::from_secs(3),
        None,
    );
    let full = tc.statistics(now).flow.send_rate;
    // Ten seconds at 50 kB/s offered: the estimate stays (the path did not change).
    let until = now + Duration::from_secs(10);
    drive(&mut tc, &mut path, &mut now, &mut next, until, Some(50_000));
    let after = tc.statistics(now).flow.send_rate;
    assert!(after as f64 >= 0.9 * full as f64, "{full} → {after}");
}

#[test]
fn reordering_is_not_loss_for_the_controller() {
    // Datagram 0 arrives after 1..=4: declared lost by the packet threshold, then acknowledged.
    let t0 = base();
    let mut tc = model(t0);
    for n in 0..5u64 {
        tc.on_datagram_sent(
            t0,
            SentDatagram {
                number: n,
                time_sent: t0,
                size: SIZE,
                payload_bytes: SIZE,
                resent_payload_bytes: 0,
                ack_eliciting: true,
                app_limited: false,
                lazy_ack: false,
            },
        );
    }
    let mut out = AckOutcome::default();
    tc.on_ack_received(
        t0 + Duration::from_millis(40),
        &[1..=4],
        Duration::ZERO,
        &mut out,
    );
    assert_eq!(out.lost, [0]);
    assert_eq!(tc.delivered_bytes(), 4 * SIZE as u64);
    out.clear();
    tc.on_ack_received(
        t0 + Duration::from_millis(41),
        &[0..=4],
        Duration::ZERO,
        &mut out,
    );
    // Nothing newly acknowledged for the connection (it already resent 0's messages)...
    assert!(out.acked.is_empty() && out.lost.is_empty());
    // ... but the bytes count as delivered for the delivery rate.
    assert_eq!(tc.delivered_bytes(), 5 * SIZE as u64);
}

#[test]
fn fixed_window_is_never_paced_and_reports_no_rate() {
    let t0 = base();
    let config = TrafficConfig {
        congestion_control: CongestionControl::FixedWindow,
        window: 64_000,
        ..TrafficConfig::default()
    };
    let mut tc = DefaultTrafficControl::new(t0, SIZE, config);
    let mut path = Path::new(t0, 1_000_000, 40);
    let (mut now, mut next) = (t0, 0);
    let (_, changes) = drive(
        &mut tc,
        &mut path,
        &mut now,
        &mut next,
        t0 + Duration::from_secs(2),
        None,
    );
    assert!(changes.is_empty());
    assert_eq!(tc.send_allowance(now).next_send_time, None);
    let flow = tc.statistics(now).flow;
    assert_eq!((flow.congestion_window, flow.send_rate), (64_000, 0));
}
