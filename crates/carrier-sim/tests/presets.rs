//! The presets behave as their documentation says.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use carrier_sim::{Direction, NetworkSimulator, Preset, SimConfig, Simulator};
use common::{base, ms, numbered, seq_of};

struct Measured {
    loss: f64,
    min_delay: Duration,
    max_delay: Duration,
    duplicates: u64,
}

/// 30,000 datagrams of 200 bytes, 50 per second (a game's update rate), outbound.
fn measure(p: Preset) -> Measured {
    let t0 = base();
    let mut sim = NetworkSimulator::with_exact_seed(SimConfig::preset(p, 2024)).unwrap();
    let n = 30_000u32;
    let mut sent = HashMap::new();
    let mut delays = Vec::new();
    let mut seen = HashMap::<u32, u32>::new();
    let mut record = |at, d: carrier_sim::Datagram, sent: &HashMap<u32, std::time::Instant>| {
        let s = seq_of(&d);
        *seen.entry(s).or_default() += 1;
        delays.push(at - sent[&s]);
    };
    for i in 0..n {
        let now = t0 + ms(20) * i;
        while let Some(t) = sim.poll_timeout().filter(|t| *t <= now) {
            while let Some(d) = sim.poll_output(t, Direction::Outbound) {
                record(t, d, &sent);
            }
        }
        sent.insert(i, now);
        sim.input(now, Direction::Outbound, numbered(i, 200));
        while let Some(d) = sim.poll_output(now, Direction::Outbound) {
            record(now, d, &sent);
        }
    }
    while let Some(t) = sim.poll_timeout() {
        while let Some(d) = sim.poll_output(t, Direction::Outbound) {
            record(t, d, &sent);
        }
    }
    let stats = sim.stats(Direction::Outbound);
    assert!(stats.is_balanced());
    Measured {
        loss: 1.0 - seen.len() as f64 / f64::from(n),
        min_delay: delays.iter().copied().min().unwrap_or_default(),
        max_delay: delays.iter().copied().max().unwrap_or_default(),
        duplicates: stats.duplicated,
    }
}

#[test]
fn lan_is_sub_millisecond_and_lossless() {
    let m = measure(Preset::Lan);
    assert_eq!(m.loss, 0.0);
    assert!(m.min_delay >= Duration::from_micros(200) && m.max_delay < ms(1));
}

#[test]
fn wifi_has_a_few_ms_and_rare_loss() {
    let m = measure(Preset::Wifi);
    assert!((0.004..0.011).contains(&m.loss), "loss {}", m.loss);
    assert!(
        m.min_delay >= ms(1) && m.max_delay <= ms(7),
        "{:?}..{:?}",
        m.min_delay,
        m.max_delay
    );
}

#[test]
fn mobile_has_tens_of_ms_and_one_to_two_percent_loss() {
    let m = measure(Preset::Mobile);
    assert!((0.01..0.02).contains(&m.loss), "loss {}", m.loss);
    // 30..80 ms plus 0.53 ms to serialize 200 bytes at 3 Mbit/s.
    assert!(
        m.min_delay >= ms(30) && m.max_delay <= ms(81),
        "{:?}..{:?}",
        m.min_delay,
        m.max_delay
    );
}

#[test]
fn terrible_is_slow_lossy_and_duplicating() {
    let m = measure(Preset::Terrible);
    assert!((0.07..0.13).contains(&m.loss), "loss {}", m.loss);
    assert!(
        m.min_delay >= ms(100) && m.max_delay <= ms(302),
        "{:?}..{:?}",
        m.min_delay,
        m.max_delay
    );
    assert!((150..450).contains(&m.duplicates), "{}", m.duplicates);
}
