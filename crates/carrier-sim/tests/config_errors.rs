//! Every validation rule has its own test: the right variant, naming the right field, no panic.

use carrier_sim::{
    BandwidthMode, ConfigError, GilbertElliott, Latency, Link, LinkConfig, NetworkSimulator,
    QueueLimit, SimConfig,
};

/// The error `Link::new` gives for `cfg` (which must be refused).
fn refused(cfg: LinkConfig) -> ConfigError {
    let err = cfg.validate().expect_err("config should be refused");
    // Compared as text: a NaN field value is never equal to itself.
    let from_link = Link::new(cfg, 0).err().map(|e| e.to_string());
    assert_eq!(from_link, Some(err.to_string()));
    err
}

fn zero(field: &str) -> ConfigError {
    ConfigError::Zero {
        field: field.into(),
    }
}

fn probability(field: &str, value: f64) -> ConfigError {
    ConfigError::InvalidProbability {
        field: field.into(),
        value,
    }
}

fn inverted(min_field: &str, min: f64, max_field: &str, max: f64) -> ConfigError {
    ConfigError::InvertedRange {
        min_field: min_field.into(),
        min,
        max_field: max_field.into(),
        max,
    }
}

#[test]
fn latency_min_above_max() {
    let err = refused(LinkConfig::default().with_latency_ms(120.0, 100.0));
    assert_eq!(
        err,
        inverted("latency.min_ms", 120.0, "latency.max_ms", 100.0)
    );
    assert_eq!(
        err.to_string(),
        "latency.min_ms (120) > latency.max_ms (100)"
    );
}

#[test]
fn latency_negative() {
    let err = refused(LinkConfig::default().with_latency_ms(-1.0, 10.0));
    assert!(
        matches!(err, ConfigError::InvalidDuration { ref field, .. } if field == "latency.min_ms")
    );
}

#[test]
fn latency_nan() {
    let err = refused(LinkConfig::default().with_latency_ms(0.0, f64::NAN));
    assert!(
        matches!(err, ConfigError::InvalidDuration { ref field, .. } if field == "latency.max_ms")
    );
}

#[test]
fn latency_infinite() {
    let err = refused(LinkConfig::default().with_fixed_latency_ms(f64::INFINITY));
    assert!(
        matches!(err, ConfigError::InvalidDuration { ref field, .. } if field == "latency.min_ms")
    );
}

#[test]
fn latency_too_large() {
    let err = refused(LinkConfig::default().with_latency_ms(0.0, 1e12));
    assert!(matches!(err, ConfigError::TooLarge { ref field, .. } if field == "latency.max_ms"));
}

#[test]
fn jitter_above_base() {
    let err = refused(LinkConfig::default().with_jitter_ms(10.0, 11.0));
    assert_eq!(
        err,
        ConfigError::JitterExceedsBase {
            jitter_field: "latency.jitter_ms".into(),
            jitter: 11.0,
            base_field: "latency.base_ms".into(),
            base: 10.0,
        }
    );
}

#[test]
fn jitter_negative() {
    let err = refused(LinkConfig::default().with_jitter_ms(10.0, -1.0));
    assert!(
        matches!(err, ConfigError::InvalidDuration { ref field, .. } if field == "latency.jitter_ms")
    );
}

#[test]
fn jitter_base_plus_jitter_too_large() {
    let cfg = LinkConfig {
        latency: Latency::Jitter {
            base_ms: carrier_sim::MAX_MS,
            jitter_ms: 1.0,
        },
        ..LinkConfig::default()
    };
    assert!(
        matches!(refused(cfg), ConfigError::TooLarge { ref field, .. } if field == "latency.base_ms")
    );
}

#[test]
fn periodic_loss_zero_interval() {
    let err = refused(LinkConfig::default().with_periodic_loss(0, 5));
    assert_eq!(err, zero("periodic_loss.min_interval"));
}

#[test]
fn periodic_loss_min_above_max() {
    let err = refused(LinkConfig::default().with_periodic_loss(6, 5));
    assert_eq!(
        err,
        inverted(
            "periodic_loss.min_interval",
            6.0,
            "periodic_loss.max_interval",
            5.0
        )
    );
}

#[test]
fn loss_probability_above_one() {
    assert_eq!(
        refused(LinkConfig::default().with_loss(1.5)),
        probability("loss_probability", 1.5)
    );
}

#[test]
fn loss_probability_negative() {
    assert_eq!(
        refused(LinkConfig::default().with_loss(-0.1)),
        probability("loss_probability", -0.1)
    );
}

#[test]
fn loss_probability_nan() {
    let err = refused(LinkConfig::default().with_loss(f64::NAN));
    assert!(
        matches!(err, ConfigError::InvalidProbability { ref field, value } if field == "loss_probability" && value.is_nan())
    );
}

#[test]
fn gilbert_elliott_probabilities() {
    let good = GilbertElliott::gilbert(0.1, 0.2);
    let cases: [(&str, GilbertElliott); 4] = [
        (
            "gilbert_elliott.p_good_to_bad",
            GilbertElliott {
                p_good_to_bad: 2.0,
                ..good
            },
        ),
        (
            "gilbert_elliott.r_bad_to_good",
            GilbertElliott {
                r_bad_to_good: -1.0,
                ..good
            },
        ),
        (
            "gilbert_elliott.loss_in_good",
            GilbertElliott {
                loss_in_good: f64::NAN,
                ..good
            },
        ),
        (
            "gilbert_elliott.loss_in_bad",
            GilbertElliott {
                loss_in_bad: 1.01,
                ..good
            },
        ),
    ];
    for (field, ge) in cases {
        let err = refused(LinkConfig::default().with_gilbert_elliott(ge));
        assert!(
            matches!(err, ConfigError::InvalidProbability { .. }),
            "{err}"
        );
        assert_eq!(err.field(), field);
    }
}

#[test]
fn burst_drop_zero_period() {
    let err = refused(LinkConfig::default().with_burst_drop_ms(0, 10, 1, 2));
    assert_eq!(err, zero("burst_drop.min_period_ms"));
}

#[test]
fn burst_drop_period_min_above_max() {
    let err = refused(LinkConfig::default().with_burst_drop_ms(20, 10, 1, 2));
    assert_eq!(
        err,
        inverted(
            "burst_drop.min_period_ms",
            20.0,
            "burst_drop.max_period_ms",
            10.0
        )
    );
}

#[test]
fn burst_drop_interval_min_above_max() {
    let err = refused(LinkConfig::default().with_burst_drop_ms(10, 20, 5, 2));
    assert_eq!(
        err,
        inverted(
            "burst_drop.min_interval_ms",
            5.0,
            "burst_drop.max_interval_ms",
            2.0
        )
    );
}

#[test]
fn burst_drop_period_too_large() {
    let err = refused(LinkConfig::default().with_burst_drop_ms(10, u64::MAX, 1, 2));
    assert!(
        matches!(err, ConfigError::TooLarge { ref field, .. } if field == "burst_drop.max_period_ms")
    );
}

#[test]
fn bandwidth_zero_rate() {
    let err = refused(LinkConfig::default().with_bandwidth_drop_kbps(0, 100));
    assert_eq!(err, zero("bandwidth.min_kbps"));
}

#[test]
fn bandwidth_min_above_max() {
    let err = refused(LinkConfig::default().with_bandwidth_drop_kbps(200, 100));
    assert_eq!(
        err,
        inverted("bandwidth.min_kbps", 200.0, "bandwidth.max_kbps", 100.0)
    );
}

#[test]
fn bandwidth_rate_too_large() {
    let err = refused(LinkConfig::default().with_bandwidth_drop_kbps(1, u64::MAX));
    assert!(
        matches!(err, ConfigError::TooLarge { ref field, .. } if field == "bandwidth.max_kbps")
    );
}

#[test]
fn queue_zero_bytes() {
    let err =
        refused(LinkConfig::default().with_bandwidth_queue_kbps(100, 100, QueueLimit::Bytes(0)));
    assert_eq!(err, zero("bandwidth.mode.queue_limit_bytes"));
}

#[test]
fn queue_zero_millis() {
    let err =
        refused(LinkConfig::default().with_bandwidth_queue_kbps(100, 100, QueueLimit::Millis(0)));
    assert_eq!(err, zero("bandwidth.mode.queue_limit_ms"));
}

#[test]
fn queue_millis_too_large() {
    let mut cfg = LinkConfig::default().with_bandwidth_drop_kbps(100, 100);
    if let Some(bw) = &mut cfg.bandwidth {
        bw.mode = BandwidthMode::Queue(QueueLimit::Millis(u64::MAX));
    }
    let err = refused(cfg);
    assert!(
        matches!(err, ConfigError::TooLarge { ref field, .. } if field == "bandwidth.mode.queue_limit_ms")
    );
}

#[test]
fn duplicate_probability_invalid() {
    assert_eq!(
        refused(LinkConfig::default().with_duplicate(7.0)),
        probability("duplicate_probability", 7.0)
    );
}

#[test]
fn corrupt_probability_invalid() {
    assert_eq!(
        refused(LinkConfig::default().with_corrupt(-2.0)),
        probability("corrupt_probability", -2.0)
    );
}

#[test]
fn mtu_zero() {
    assert_eq!(refused(LinkConfig::default().with_mtu(0)), zero("mtu"));
}

#[test]
fn max_queued_packets_zero() {
    assert_eq!(
        refused(LinkConfig::default().with_max_queued(0, 1000)),
        zero("max_queued_packets")
    );
}

#[test]
fn max_queued_bytes_zero() {
    assert_eq!(
        refused(LinkConfig::default().with_max_queued(10, 0)),
        zero("max_queued_bytes")
    );
}

#[test]
fn set_config_refuses_and_keeps_the_old_config() {
    let good = LinkConfig::default().with_fixed_latency_ms(5.0);
    let mut link = Link::new(good.clone(), 0).unwrap();
    let err = link
        .set_config(LinkConfig::default().with_loss(2.0))
        .unwrap_err();
    assert_eq!(err, probability("loss_probability", 2.0));
    assert_eq!(link.config(), &good);
}

#[test]
fn simulator_errors_name_the_direction() {
    let cfg = SimConfig {
        inbound: LinkConfig::default().with_latency_ms(120.0, 100.0),
        ..SimConfig::default()
    };
    let err = NetworkSimulator::with_exact_seed(cfg.clone()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "inbound.latency.min_ms (120) > inbound.latency.max_ms (100)"
    );
    assert_eq!(NetworkSimulator::new(cfg).unwrap_err(), err);
}

#[test]
fn edge_values_are_accepted() {
    let cfg = LinkConfig::default()
        .with_latency_ms(0.0, carrier_sim::MAX_MS)
        .with_loss(1.0)
        .with_duplicate(0.0)
        .with_periodic_loss(1, 1)
        .with_burst_drop_ms(1, 1, 0, 0)
        .with_bandwidth_queue_kbps(1, carrier_sim::MAX_KBPS, QueueLimit::Bytes(1))
        .with_mtu(1)
        .with_max_queued(1, 1);
    assert_eq!(cfg.validate(), Ok(()));
    assert!(Link::new(cfg, 0).is_ok());
}
