//! Ready-made link conditions, from a quiet LAN to a terrible mobile connection.
//!
//! Each preset is one [`LinkConfig`] used in both directions by [`SimConfig::preset`](crate::SimConfig::preset). The numbers
//! are one-way figures chosen to be typical of the network named, not a worst case:
//!
//! | preset | one-way latency | loss | other |
//! |---|---|---|---|
//! | `lan` | uniform 0.2–1 ms, FIFO | none | no cap |
//! | `wifi` | 4 ± 3 ms (triangular), reordering | 0.75 % random | no cap |
//! | `mobile` | 55 ± 25 ms (30–80 ms, triangular), FIFO | 1.5 % random | 3 Mbit/s bottleneck, 150 ms drop-tail queue |
//! | `terrible` | uniform 100–300 ms, reordering | ≈ 10 %: Gilbert–Elliott ≈ 8 % in bursts + outages of 50–250 ms every 5–10 s | 1 Mbit/s bottleneck, 250 ms queue; 1 % duplicates |
//!
//! Corruption is off in every preset: a real path's UDP checksum discards nearly all corrupted
//! datagrams before the application sees them. Enable
//! [`corrupt_probability`](LinkConfig::corrupt_probability) explicitly to test robustness against
//! garbage.

use std::fmt;
use std::str::FromStr;

use crate::config::{GilbertElliott, LinkConfig, QueueLimit};

/// A named set of link conditions; see the [module docs](self) for the numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Preset {
    /// Wired LAN: sub-millisecond latency, no loss.
    Lan,
    /// Home Wi-Fi: a few ms with jitter, rare loss, some reordering.
    Wifi,
    /// 3G/4G-like mobile: tens of ms, 1–2 % loss, a few Mbit/s with a deep queue.
    Mobile,
    /// A terrible connection: hundreds of ms, ~10 % bursty loss, outages, reordering,
    /// duplicates, 1 Mbit/s.
    Terrible,
}

impl Preset {
    /// Every preset, from best to worst.
    pub const ALL: [Preset; 4] = [Preset::Lan, Preset::Wifi, Preset::Mobile, Preset::Terrible];

    /// The lowercase name, as accepted by [`FromStr`] and printed by [`Display`](fmt::Display).
    pub fn name(self) -> &'static str {
        match self {
            Self::Lan => "lan",
            Self::Wifi => "wifi",
            Self::Mobile => "mobile",
            Self::Terrible => "terrible",
        }
    }

    /// The conditions of one direction.
    pub fn link_config(self) -> LinkConfig {
        match self {
            Self::Lan => LinkConfig::default().with_latency_ms(0.2, 1.0),
            Self::Wifi => LinkConfig::default()
                .with_jitter_ms(4.0, 3.0)
                .with_reorder(true)
                .with_loss(0.0075),
            Self::Mobile => LinkConfig::default()
                .with_jitter_ms(55.0, 25.0)
                .with_loss(0.015)
                .with_bandwidth_queue_kbps(3_000, 3_000, QueueLimit::Millis(150)),
            Self::Terrible => LinkConfig::default()
                .with_latency_ms(100.0, 300.0)
                .with_reorder(true)
                // π_bad = 0.02 / 0.27 ≈ 7.4 %; loss ≈ 0.926 · 4 % + 0.074 · 60 % ≈ 8.2 %.
                .with_gilbert_elliott(GilbertElliott {
                    p_good_to_bad: 0.02,
                    r_bad_to_good: 0.25,
                    loss_in_good: 0.04,
                    loss_in_bad: 0.6,
                })
                // ≈ 150 ms out of every ≈ 7.5 s: another ≈ 2 %.
                .with_burst_drop_ms(5_000, 10_000, 50, 250)
                .with_duplicate(0.01)
                .with_bandwidth_queue_kbps(1_000, 1_000, QueueLimit::Millis(250)),
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A preset name that [`Preset::from_str`] does not know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown simulator preset {0:?} (expected lan, wifi, mobile or terrible)")]
pub struct ParsePresetError(pub String);

impl FromStr for Preset {
    type Err = ParsePresetError;

    /// Parses a preset name, ignoring case and surrounding whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| ParsePresetError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Preset::ALL {
            assert_eq!(p.to_string().parse::<Preset>(), Ok(p));
        }
        assert_eq!(" WiFi ".parse::<Preset>(), Ok(Preset::Wifi));
        assert!("dialup".parse::<Preset>().is_err());
        assert!("".parse::<Preset>().is_err());
    }

    #[test]
    fn presets_are_valid_and_ordered_by_latency() {
        let mut last = -1.0;
        for p in Preset::ALL {
            let c = p.link_config();
            assert_eq!(c.validate(), Ok(()), "{p}");
            assert!(c.latency.max_ms() > last, "{p}");
            last = c.latency.max_ms();
        }
    }

    #[test]
    fn terrible_loss_is_about_ten_percent() {
        let c = Preset::Terrible.link_config();
        let ge = c
            .gilbert_elliott
            .map(|g| g.stationary_loss())
            .unwrap_or(0.0);
        let b = c.burst_drop.map_or(0.0, |b| {
            (b.min_interval_ms + b.max_interval_ms) as f64
                / (b.min_period_ms + b.max_period_ms) as f64
        });
        let total = 1.0 - (1.0 - ge) * (1.0 - b);
        assert!((0.08..0.12).contains(&total), "{total}");
    }
}
