//! Tests of the default traffic control (docs/protocol.md §13): one per behaviour, plus a
//! property test of the bookkeeping under random traffic.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;

use super::*;
use crate::traffic::StatsSet;

/// The one real instant of a test; every other time is an offset from it.
#[allow(clippy::disallowed_methods)] // Tests need a real `Instant` as their origin.
fn base() -> Instant {
    Instant::now()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn dgram(number: u64, time_sent: Instant, size: usize, payload_bytes: usize) -> SentDatagram {
    SentDatagram {
        number,
        time_sent,
        size,
        payload_bytes,
        resent_payload_bytes: 0,
        ack_eliciting: true,
        app_limited: false,
        lazy_ack: false,
    }
}

fn ack_only(number: u64, time_sent: Instant, size: usize) -> SentDatagram {
    SentDatagram {
        ack_eliciting: false,
        ..dgram(number, time_sent, size, 0)
    }
}

fn control(t0: Instant) -> DefaultTrafficControl {
    DefaultTrafficControl::new(t0, 1200, TrafficConfig::default())
}

fn ack(
    tc: &mut DefaultTrafficControl,
    now: Instant,
    ranges: &[RangeInclusive<u64>],
    delay: Duration,
) -> AckOutcome {
    let mut out = AckOutcome::default();
    tc.on_ack_received(now, ranges, delay, &mut out);
    out
}

fn timeout(tc: &mut DefaultTrafficControl, now: Instant) -> AckOutcome {
    let mut out = AckOutcome::default();
    tc.on_timeout(now, &mut out);
    out
}

/// Sends `number` at `sent` and acknowledges it alone at `sent + rtt`.
fn round_trip(
    tc: &mut DefaultTrafficControl,
    number: u64,
    sent: Instant,
    rtt: Duration,
    delay: Duration,
) {
    tc.on_datagram_sent(sent, dgram(number, sent, 100, 50));
    let out = ack(tc, sent + rtt, &[number..=number], delay);
    assert_eq!(out.acked, [number]);
}

#[test]
fn rtt_converges_and_excludes_ack_delay() {
    let t0 = base();
    let mut tc = control(t0);
    // A first sample without delay shows the path's 50 ms; then a 150 ms outlier.
    round_trip(&mut tc, 0, t0, ms(50), Duration::ZERO);
    round_trip(&mut tc, 1, t0 + ms(100), ms(150), Duration::ZERO);
    assert_eq!(tc.rtt().smoothed, Duration::from_micros(62_500));
    // Then 55 ms samples of which the peer held 5 ms (its max_ack_delay).
    for i in 2..80 {
        round_trip(&mut tc, i, t0 + ms(1000 * i), ms(55), ms(5));
    }
    let rtt = tc.rtt();
    assert!(rtt.has_samples);
    assert!(rtt.smoothed.abs_diff(ms(50)) < ms(1), "{rtt:?}");
    assert!(rtt.variance < ms(1), "{rtt:?}");
    assert_eq!(rtt.latest, ms(55), "latest is the raw sample");
    assert_eq!(rtt.min, ms(50));
    // A peer reporting more delay than its max_ack_delay (5 ms) is capped: 70 − 5 ms.
    round_trip(&mut tc, 80, t0 + ms(90_000), ms(70), ms(40));
    assert!(tc.rtt().smoothed > ms(51), "{:?}", tc.rtt());
}

#[test]
fn ack_delay_is_excluded_from_every_sample_and_from_min_rtt() {
    let t0 = base();
    let mut tc = control(t0);
    // Every sample held 5 ms at the peer (a lone ack-eliciting datagram waits max_ack_delay):
    // the round trip of the network is 45 ms.
    round_trip(&mut tc, 0, t0, ms(50), ms(5));
    assert_eq!(tc.rtt().smoothed, ms(45));
    assert_eq!(tc.rtt().min, ms(45));
    for i in 1..20 {
        round_trip(&mut tc, i, t0 + ms(100 * i), ms(50), ms(5));
    }
    assert_eq!(tc.rtt().smoothed, ms(45));
    assert_eq!(tc.rtt().min, ms(45));
    assert_eq!(tc.rtt().latest, ms(50), "latest is the raw sample");
    // The reported delay is capped at max_ack_delay (5 ms): 10 ms − 5 ms.
    round_trip(&mut tc, 20, t0 + ms(3000), ms(10), ms(30));
    assert_eq!(tc.rtt().min, ms(5));
}

#[test]
fn rtt_sampled_only_when_the_largest_is_newly_acked() {
    let t0 = base();
    let mut tc = control(t0);
    tc.on_datagram_sent(t0, dgram(0, t0, 100, 50));
    tc.on_datagram_sent(t0, dgram(1, t0, 100, 50));
    assert_eq!(ack(&mut tc, t0 + ms(50), &[1..=1], ms(0)).acked, [1]);
    // 0 is newly acked, but the largest (1) is not: no sample.
    assert_eq!(ack(&mut tc, t0 + ms(60), &[0..=1], ms(0)).acked, [0]);
    assert_eq!(tc.rtt().smoothed, ms(50));
    assert_eq!(tc.rtt().latest, ms(50));
}

#[test]
fn rto_formula_and_min_rto_floor() {
    let t0 = base();
    let mut tc = control(t0);
    assert_eq!(tc.rto(), ms(200), "2 × initial RTT before any sample");
    round_trip(&mut tc, 0, t0, ms(40), Duration::ZERO);
    // srtt 40 + 4 × rttvar 20 + max_ack_delay 5.
    assert_eq!(tc.rto(), ms(125));

    let mut fast = control(t0);
    round_trip(&mut fast, 0, t0, ms(2), Duration::ZERO);
    // 2 + max(4 × 1, 1) + 5 = 11 ms, floored at min_rto.
    assert_eq!(fast.rto(), ms(20));

    let config = TrafficConfig {
        max_rto: ms(100),
        ..TrafficConfig::default()
    };
    let capped = DefaultTrafficControl::new(t0, 1200, config);
    assert_eq!(capped.rto(), ms(100));
}

#[test]
fn rto_backoff_doubles_and_resets_on_progress() {
    let t0 = base();
    let mut tc = control(t0);
    tc.on_datagram_sent(t0, dgram(0, t0, 100, 50));
    assert_eq!(tc.poll_timeout(), Some(t0 + ms(200)));
    assert_eq!(timeout(&mut tc, t0 + ms(200)).lost, [0]);
    assert_eq!(tc.rto(), ms(400));
    assert_eq!(tc.poll_timeout(), None, "nothing outstanding");

    tc.on_datagram_sent(t0 + ms(300), dgram(1, t0 + ms(300), 100, 50));
    tc.on_datagram_sent(t0 + ms(400), ack_only(2, t0 + ms(400), 20));
    assert_eq!(tc.poll_timeout(), Some(t0 + ms(700)));
    // "Sent more than one RTO ago" uses the backed-off RTO: 2 is only 300 ms old.
    assert_eq!(timeout(&mut tc, t0 + ms(700)).lost, [1]);
    assert_eq!(tc.rto(), ms(800));

    // ACK progress resets the backoff: 50 ms sample → 50 + 100 + 5.
    round_trip(&mut tc, 3, t0 + ms(800), ms(50), Duration::ZERO);
    assert_eq!(tc.rto(), ms(155));

    // The backoff never takes the RTO past max_rto.
    let config = TrafficConfig {
        max_rto: ms(1000),
        ..TrafficConfig::default()
    };
    let mut capped = DefaultTrafficControl::new(t0, 1200, config);
    let mut now = t0;
    for n in 0..10 {
        capped.on_datagram_sent(now, dgram(n, now, 100, 50));
        now = capped.poll_timeout().expect("armed");
        assert_eq!(timeout(&mut capped, now).lost, [n]);
        assert!(capped.rto() <= ms(1000));
    }
    assert_eq!(capped.rto(), ms(1000));
}

#[test]
fn rto_restarts_on_ack_progress() {
    let t0 = base();
    // An RTO of 250 ms (the cap), shorter than the 600 ms the ACKs below take to drain.
    let config = TrafficConfig {
        max_rto: ms(250),
        ..TrafficConfig::default()
    };
    let mut tc = DefaultTrafficControl::new(t0, 1200, config);
    for n in 0..8 {
        tc.on_datagram_sent(t0, dgram(n, t0, 100, 50));
    }
    assert_eq!(tc.poll_timeout(), Some(t0 + ms(200)), "the initial RTO");
    // Slow ACK progress (a bottleneck): each ACK restarts the RTO, so it never fires while
    // the ACKs keep coming, although the burst is older than an RTO.
    for n in 0..4 {
        let now = t0 + ms(150 * (n + 1));
        let out = ack(&mut tc, now, &[0..=n], Duration::ZERO);
        assert_eq!(out.acked, [n]);
        assert_eq!(tc.poll_timeout(), Some(now + ms(250)));
    }
}

#[test]
fn packet_threshold_loss() {
    let t0 = base();
    let mut tc = control(t0);
    for n in 0..6 {
        tc.on_datagram_sent(t0 + ms(n), dgram(n, t0 + ms(n), 100, 50));
    }
    // Acking n + 2 does not declare n lost (and the time threshold is not reached: the
    // 98 ms sample gives a 110 ms loss delay, packet 0 is 100 ms old).
    let out = ack(&mut tc, t0 + ms(100), &[2..=2], Duration::ZERO);
    assert_eq!(out.acked, [2]);
    assert!(out.lost.is_empty(), "{out:?}");
    // Acking n + 3 does.
    let out = ack(&mut tc, t0 + ms(101), &[3..=3, 2..=2], Duration::ZERO);
    assert_eq!(out.acked, [3]);
    assert_eq!(out.lost, [0]);
    assert_eq!(tc.bytes_in_flight(), 300, "1, 4 and 5 remain");
}

#[test]
fn time_threshold_loss_fires_via_timeout() {
    let t0 = base();
    let mut tc = control(t0);
    tc.on_datagram_sent(t0, dgram(0, t0, 100, 50));
    tc.on_datagram_sent(t0 + ms(1), dgram(1, t0 + ms(1), 100, 50));
    let out = ack(&mut tc, t0 + ms(101), &[1..=1], Duration::ZERO);
    assert_eq!(out.acked, [1]);
    assert!(out.lost.is_empty());
    // srtt = latest = 100 ms: packet 0 is lost 112.5 ms after it was sent, before the RTO.
    let deadline = t0 + Duration::from_micros(112_500);
    assert_eq!(tc.poll_timeout(), Some(deadline));
    assert!(
        timeout(&mut tc, deadline - Duration::from_micros(1))
            .lost
            .is_empty()
    );
    assert_eq!(timeout(&mut tc, deadline).lost, [0]);
    assert_eq!(tc.poll_timeout(), None);
    assert_eq!(tc.bytes_in_flight(), 0);
}

#[test]
fn rto_declares_old_outstanding_lost() {
    let t0 = base();
    let mut tc = control(t0);
    tc.on_datagram_sent(t0, dgram(0, t0, 100, 50));
    tc.on_datagram_sent(t0 + ms(150), dgram(1, t0 + ms(150), 100, 50));
    tc.on_datagram_sent(t0 + ms(300), ack_only(2, t0 + ms(300), 20));
    assert_eq!(tc.poll_timeout(), Some(t0 + ms(350)));
    assert!(timeout(&mut tc, t0 + ms(349)).lost.is_empty());
    // Both ack-eliciting datagrams are at least one RTO old; the ack-only one is 50 ms old.
    assert_eq!(timeout(&mut tc, t0 + ms(350)).lost, [0, 1]);
    assert_eq!(tc.bytes_in_flight(), 0);
    assert!(!tc.has_ack_eliciting_in_flight());
    assert_eq!(
        ack(&mut tc, t0 + ms(360), &[2..=2], Duration::ZERO).acked,
        [2]
    );
}

#[test]
fn duplicate_ack_ranges_ack_nothing_twice() {
    let t0 = base();
    let mut tc = control(t0);
    for n in 0..6 {
        tc.on_datagram_sent(t0 + ms(n), dgram(n, t0 + ms(n), 100, 50));
    }
    let out = ack(&mut tc, t0 + ms(100), &[3..=4, 0..=1], Duration::ZERO);
    assert_eq!(out.acked, [0, 1, 3, 4]);
    assert!(out.lost.is_empty());
    let out = ack(&mut tc, t0 + ms(101), &[3..=4, 0..=1], Duration::ZERO);
    assert!(out.acked.is_empty() && out.lost.is_empty(), "{out:?}");
    // Overlapping ranges in one frame (not valid, but harmless): each number once, ascending.
    let out = ack(
        &mut tc,
        t0 + ms(102),
        &[2..=5, 0..=5, 5..=5],
        Duration::ZERO,
    );
    assert_eq!(out.acked, [2, 5]);
    assert_eq!(tc.bytes_in_flight(), 0);
}

#[test]
fn ack_only_datagrams_not_in_flight_and_no_rto() {
    let t0 = base();
    let mut tc = control(t0);
    tc.on_datagram_sent(t0, ack_only(0, t0, 20));
    assert_eq!(tc.bytes_in_flight(), 0);
    assert!(!tc.has_ack_eliciting_in_flight());
    assert_eq!(tc.poll_timeout(), None);
    // It is tracked: its acknowledgement is reported, but gives no RTT sample.
    let out = ack(&mut tc, t0 + ms(30), &[0..=0], Duration::ZERO);
    assert_eq!(out.acked, [0]);
    assert!(!tc.rtt().has_samples);
    tc.on_datagram_sent(t0 + ms(40), dgram(1, t0 + ms(40), 100, 50));
    assert_eq!(tc.bytes_in_flight(), 100);
    assert!(tc.has_ack_eliciting_in_flight());
    assert!(tc.poll_timeout().is_some());
}

#[test]
fn send_allowance_is_the_fixed_window_minus_flight() {
    let t0 = base();
    let config = TrafficConfig {
        congestion_control: CongestionControl::FixedWindow,
        ..TrafficConfig::default()
    };
    let mut tc = DefaultTrafficControl::new(t0, 1200, config);
    tc.on_datagram_sent(t0, dgram(0, t0, 1000, 900));
    let allowance = tc.send_allowance(t0);
    assert_eq!(allowance.window, (1 << 20) - 1000);
    assert_eq!(allowance.next_send_time, None);
    let flow = tc.statistics(t0).flow;
    assert_eq!(flow.bytes_in_flight, 1000);
    assert_eq!(flow.congestion_window, 1 << 20);
    assert_eq!(flow.send_rate, 0);
}

#[test]
fn non_increasing_numbers_are_not_tracked() {
    let t0 = base();
    let mut tc = control(t0);
    tc.on_datagram_sent(t0, dgram(5, t0, 100, 50));
    tc.on_datagram_sent(t0, dgram(5, t0, 100, 50));
    tc.on_datagram_sent(t0, dgram(3, t0, 100, 50));
    assert_eq!(tc.bytes_in_flight(), 100);
    assert_eq!(tc.statistics(t0).lifetime.packets_sent, 3);
    let out = ack(&mut tc, t0 + ms(10), &[3..=5], Duration::ZERO);
    assert_eq!(out.acked, [5]);
}

#[test]
fn lifetime_statistics_accumulate() {
    let t0 = base();
    let mut tc = control(t0);
    for n in 0..3 {
        tc.on_datagram_sent(t0 + ms(n), dgram(n, t0 + ms(n), 100, 60));
    }
    tc.on_datagram_received(t0 + ms(10), 80, 40);
    tc.on_datagram_received(t0 + ms(1500), 80, 40);
    ack(&mut tc, t0 + ms(2500), &[0..=2], Duration::ZERO);
    let life = tc.statistics(t0 + ms(5000)).lifetime;
    assert_eq!(life.bytes_sent, 300);
    assert_eq!(life.packets_sent, 3);
    assert_eq!(life.bytes_received, 160);
    assert_eq!(life.packets_received, 2);
    assert_eq!(life.bytes_acked, 300);
    assert_eq!(life.packets_acked, 3);
    assert_eq!(life.packets_lost, 0);
    assert_eq!(life.packet_loss, 0.0);
    // The sample comes from the largest acknowledged, sent at 2 ms.
    assert!((life.rtt_ms - 2498.0).abs() < 0.01, "{life:?}");
}

#[test]
fn last_second_rolls_over_then_shows_zeros_after_idle() {
    let t0 = base();
    let mut tc = control(t0);
    tc.on_datagram_sent(t0 + ms(100), dgram(0, t0 + ms(100), 100, 60));
    assert_eq!(tc.statistics(t0 + ms(999)).last_second, StatsSet::default());
    // The first second completed: visible without any mutating call...
    assert_eq!(tc.statistics(t0 + ms(1000)).last_second.bytes_sent, 100);
    // ...and after one.
    tc.on_datagram_received(t0 + ms(1200), 50, 0);
    let last = tc.statistics(t0 + ms(1300)).last_second;
    assert_eq!((last.bytes_sent, last.packets_sent), (100, 1));
    assert_eq!(last.packets_received, 0);
    // The second second held the receive only.
    let last = tc.statistics(t0 + ms(2100)).last_second;
    assert_eq!((last.bytes_sent, last.bytes_received), (0, 50));
    // Idle from 2 s to 3 s: zeros, both in the view and after a rolling call.
    assert_eq!(
        tc.statistics(t0 + ms(3500)).last_second,
        StatsSet::default()
    );
    tc.on_datagram_received(t0 + ms(3500), 10, 0);
    assert_eq!(
        tc.statistics(t0 + ms(3600)).last_second,
        StatsSet::default()
    );
    assert_eq!(tc.statistics(t0 + ms(4000)).last_second.bytes_received, 10);
    assert_eq!(tc.statistics(t0 + ms(4000)).lifetime.bytes_received, 60);
}

#[test]
fn last_second_rtt_is_frozen_at_its_end() {
    let t0 = base();
    let mut tc = control(t0);
    round_trip(&mut tc, 0, t0, ms(40), Duration::ZERO);
    // A sample in the next second does not change the closed one.
    round_trip(&mut tc, 1, t0 + ms(1100), ms(200), Duration::ZERO);
    let stats = tc.statistics(t0 + ms(1400));
    assert_eq!(stats.last_second.rtt_ms, 40.0);
    assert_eq!(stats.lifetime.rtt_ms, 60.0, "7/8·40 + 1/8·200");
}

#[test]
fn effective_counts_payload_bytes_only() {
    let t0 = base();
    let mut tc = control(t0);
    let resend = SentDatagram {
        resent_payload_bytes: 20,
        ..dgram(0, t0, 100, 60)
    };
    tc.on_datagram_sent(t0, resend);
    tc.on_datagram_sent(t0, ack_only(1, t0, 30));
    tc.on_datagram_received(t0, 80, 50);
    tc.on_datagram_received(t0, 20, 0);
    ack(&mut tc, t0 + ms(10), &[0..=1], Duration::ZERO);
    let stats = tc.statistics(t0 + ms(1000));
    for (all, eff) in [
        (stats.lifetime, stats.effective_lifetime),
        (stats.last_second, stats.effective_last_second),
    ] {
        assert_eq!((all.bytes_sent, all.packets_sent), (130, 2));
        assert_eq!((eff.bytes_sent, eff.packets_sent), (60, 1));
        assert_eq!((all.bytes_resent, eff.bytes_resent), (20, 20));
        assert_eq!((all.bytes_received, all.packets_received), (100, 2));
        assert_eq!((eff.bytes_received, eff.packets_received), (50, 1));
        assert_eq!((all.bytes_acked, all.packets_acked), (130, 2));
        assert_eq!((eff.bytes_acked, eff.packets_acked), (60, 1));
    }
}

#[test]
fn packet_loss_ratio_and_connection_factor() {
    let t0 = base();
    let mut tc = control(t0);
    for n in 0..4 {
        tc.on_datagram_sent(t0, dgram(n, t0, 100, 50));
    }
    // 100 ms RTT; acking 3 declares 0 lost (packet threshold).
    let out = ack(&mut tc, t0 + ms(100), &[3..=3], Duration::ZERO);
    assert_eq!(out.lost, [0]);
    ack(&mut tc, t0 + ms(100), &[1..=3], Duration::ZERO);
    let stats = tc.statistics(t0 + ms(1000));
    for set in [stats.lifetime, stats.last_second, stats.effective_lifetime] {
        assert_eq!((set.packets_lost, set.packets_acked), (1, 3));
        assert_eq!(set.packet_loss, 0.25);
        // max(100 / 500, 0.25 / 0.3).
        assert!((set.connection_factor - 0.25 / 0.3).abs() < 1e-6, "{set:?}");
    }
    // RTT dominates when it is the worse one.
    let mut slow = control(t0);
    round_trip(&mut slow, 0, t0, ms(750), Duration::ZERO);
    assert!((slow.statistics(t0 + ms(800)).lifetime.connection_factor - 1.5).abs() < 1e-6);
    // No data: no loss, factor from nothing.
    let idle = control(t0).statistics(t0);
    assert_eq!(
        (idle.lifetime.packet_loss, idle.lifetime.connection_factor),
        (0.0, 0.0)
    );
}

#[test]
fn ledger_cap_declares_oldest_lost() {
    let t0 = base();
    let config = TrafficConfig {
        max_tracked_datagrams: 4,
        ..TrafficConfig::default()
    };
    let mut tc = DefaultTrafficControl::new(t0, 1200, config);
    for n in 0..6 {
        tc.on_datagram_sent(t0 + ms(n), dgram(n, t0 + ms(n), 10, 5));
        assert!(tc.ledger.len() <= 4);
    }
    assert_eq!(tc.bytes_in_flight(), 40);
    // The evictions are reported at once.
    assert_eq!(tc.poll_timeout(), Some(t0 + ms(4)));
    assert_eq!(timeout(&mut tc, t0 + ms(5)).lost, [0, 1]);
    assert_eq!(tc.poll_timeout(), Some(t0 + ms(205)), "then only the RTO");
    assert_eq!(tc.statistics(t0 + ms(5)).lifetime.packets_lost, 2);
    // Acknowledged entries behind an outstanding one still count towards the cap: the
    // ledger is 2, 3, 4 (acked), 5; sending 6 and 7 evicts 2 and 3.
    assert_eq!(
        ack(&mut tc, t0 + ms(50), &[4..=4], Duration::ZERO).acked,
        [4]
    );
    assert_eq!(tc.ledger.len(), 4);
    for n in 6..9 {
        tc.on_datagram_sent(t0 + ms(50), dgram(n, t0 + ms(50), 10, 5));
        assert!(tc.ledger.len() <= 4);
    }
    // Evictions also come out of the next ACK, before (and below) the ACK's own losses:
    // 5 passes the time threshold (srtt 41.5 ms × 9/8 < its 55 ms age).
    let out = ack(&mut tc, t0 + ms(60), &[6..=6], Duration::ZERO);
    assert_eq!(out.acked, [6]);
    assert_eq!(out.lost, [2, 3, 5]);
}

#[derive(Clone, Debug)]
enum Op {
    Send {
        gap: u64,
        size: usize,
        payload: usize,
        ack_eliciting: bool,
        dt_ms: u64,
    },
    Ack {
        picks: Vec<u64>,
        raw: bool,
        delay_ms: u64,
        dt_ms: u64,
    },
    Timeout {
        dt_ms: u64,
    },
    FireDeadline,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3u64, 1..1500usize, 0..1500usize, any::<bool>(), 0..40u64).prop_map(
            |(gap, size, payload, ack_eliciting, dt_ms)| Op::Send {
                gap,
                size,
                payload,
                ack_eliciting,
                dt_ms,
            }
        ),
        3 => (prop::collection::vec(any::<u64>(), 0..10), any::<bool>(), 0..30u64, 0..200u64)
            .prop_map(|(picks, raw, delay_ms, dt_ms)| Op::Ack {
                picks,
                raw,
                delay_ms,
                dt_ms,
            }),
        1 => (0..500u64).prop_map(|dt_ms| Op::Timeout { dt_ms }),
        1 => Just(Op::FireDeadline),
    ]
}

/// ACK ranges over the picked numbers (≤ `largest`): merged and newest first, or (`raw`)
/// one range per pick in the drawn order, duplicates and all.
fn ranges(picks: &[u64], largest: u64, raw: bool) -> Vec<RangeInclusive<u64>> {
    let mut numbers: Vec<u64> = picks
        .iter()
        .map(|p| largest.saturating_sub(p % 12))
        .collect();
    if raw {
        return numbers.into_iter().map(|n| n..=n).collect();
    }
    numbers.sort_unstable();
    numbers.dedup();
    let mut out: Vec<RangeInclusive<u64>> = Vec::new();
    for n in numbers {
        match out.last_mut() {
            Some(r) if *r.end() + 1 == n => *r = *r.start()..=n,
            _ => out.push(n..=n),
        }
    }
    out.reverse();
    out
}

proptest! {
    #[test]
    fn random_traffic_keeps_the_books(
        cap in prop_oneof![Just(65_536usize), 1..12usize],
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let t0 = base();
        let config = TrafficConfig { max_tracked_datagrams: cap, ..TrafficConfig::default() };
        let mut tc = DefaultTrafficControl::new(t0, 1500, config);
        let mut now = t0;
        let mut next_number = 0u64;
        let mut sent: HashMap<u64, (usize, bool)> = HashMap::new();
        let mut reported: HashSet<u64> = HashSet::new();
        let (mut acked_count, mut lost_count) = (0u64, 0u64);
        let mut out = AckOutcome::default();
        for op in ops {
            out.clear();
            match op {
                Op::Send { gap, size, payload, ack_eliciting, dt_ms } => {
                    now += ms(dt_ms);
                    next_number += gap;
                    let d = SentDatagram {
                        number: next_number,
                        time_sent: now,
                        size,
                        payload_bytes: payload.min(size),
                        resent_payload_bytes: 0,
                        ack_eliciting,
                        app_limited: false,
                        lazy_ack: false,
                    };
                    tc.on_datagram_sent(now, d);
                    sent.insert(next_number, (size, ack_eliciting));
                    next_number += 1;
                }
                Op::Ack { picks, raw, delay_ms, dt_ms } => {
                    now += ms(dt_ms);
                    if next_number > 0 {
                        let r = ranges(&picks, next_number - 1, raw);
                        tc.on_ack_received(now, &r, ms(delay_ms), &mut out);
                    }
                }
                Op::Timeout { dt_ms } => {
                    now += ms(dt_ms);
                    tc.on_timeout(now, &mut out);
                }
                Op::FireDeadline => {
                    if let Some(deadline) = tc.poll_timeout() {
                        now = now.max(deadline);
                        tc.on_timeout(now, &mut out);
                        prop_assert!(
                            tc.poll_timeout().is_none_or(|d| d > now),
                            "a fired deadline must not stay due"
                        );
                    }
                }
            }
            prop_assert!(out.acked.is_sorted() && out.lost.is_sorted(), "{out:?}");
            for &n in out.acked.iter().chain(&out.lost) {
                prop_assert!(sent.contains_key(&n), "{n} reported but never sent");
                prop_assert!(reported.insert(n), "{n} reported twice");
            }
            acked_count += out.acked.len() as u64;
            lost_count += out.lost.len() as u64;
            // Datagrams evicted by the ledger cap left the flight already; they are reported
            // by the next call.
            let outstanding = sent.iter().filter(|(n, (_, eliciting))| {
                *eliciting && !reported.contains(n) && !tc.evicted.as_ref().is_some_and(|e| e.numbers.contains(n))
            });
            let in_flight: usize = outstanding.clone().map(|(_, (size, _))| size).sum();
            let any_eliciting = outstanding.count() > 0;
            prop_assert_eq!(tc.bytes_in_flight(), in_flight);
            prop_assert_eq!(tc.has_ack_eliciting_in_flight(), any_eliciting);
            if any_eliciting {
                prop_assert!(tc.poll_timeout().is_some(), "RTO must be armed");
            }
            prop_assert!(tc.ledger.len() <= cap);
            let stats = tc.statistics(now);
            // Evictions are counted when they happen and reported at the next call. A datagram
            // reported lost and acknowledged later (a spurious loss) moves from lost to acked in
            // the statistics, so only the sum is conserved.
            let pending = tc.evicted.as_ref().map_or(0, |e| e.numbers.len()) as u64;
            prop_assert!(stats.lifetime.packets_acked >= acked_count);
            prop_assert!(stats.lifetime.packets_lost <= lost_count + pending);
            prop_assert_eq!(
                stats.lifetime.packets_acked + stats.lifetime.packets_lost,
                acked_count + lost_count + pending
            );
            prop_assert!((0.0..=1.0).contains(&stats.lifetime.packet_loss));
        }
    }
}

#[test]
fn a_reordered_datagram_declared_lost_counts_as_acked_in_the_statistics() {
    let t0 = base();
    let mut tc = DefaultTrafficControl::new(t0, 1200, TrafficConfig::default());
    let mut out = AckOutcome::default();
    for n in 0..5 {
        tc.on_datagram_sent(t0, dgram(n, t0, 100, 50));
    }
    // 1..=4 acknowledged: 0 is declared lost by the packet threshold.
    tc.on_ack_received(t0 + ms(20), &[1..=4], ms(0), &mut out);
    assert_eq!(out.lost, vec![0]);
    assert_eq!(tc.statistics(t0 + ms(20)).lifetime.packets_lost, 1);
    // Then 0 arrives late and is acknowledged: the loss was spurious.
    out.clear();
    tc.on_ack_received(t0 + ms(25), &[0..=4], ms(0), &mut out);
    let life = tc.statistics(t0 + ms(25)).lifetime;
    assert_eq!(life.packets_lost, 0);
    assert_eq!(life.packets_acked, 5);
}
