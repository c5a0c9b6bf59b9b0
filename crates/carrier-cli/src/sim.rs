//! The simulator options every command takes (`--sim`, `--latency`, `--loss`, `--seed`) and the
//! [`NetworkSimulator`]s built from them.
//!
//! `--latency` and `--loss` start from the preset's conditions (or a perfect link with
//! `--sim none`) and override them: `--latency MS` makes the one-way delay exactly `MS`
//! milliseconds (no jitter), `--loss PCT` makes the loss exactly `PCT` % random loss (the preset's
//! bursty and periodic loss and its outages are removed).

use std::fmt;
use std::str::FromStr;

use carrier::{NetworkSimulator, Preset, SimConfig, Simulator};
use carrier_sim::LinkConfig;
use clap::Args;

use crate::CliError;

/// A `--sim` value: a preset, or `none`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimPreset {
    /// No simulator (unless `--latency` or `--loss` is given).
    None,
    /// One of carrier-sim's presets.
    Preset(Preset),
}

impl FromStr for SimPreset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("none") || s.eq_ignore_ascii_case("off") {
            return Ok(SimPreset::None);
        }
        s.parse::<Preset>()
            .map(SimPreset::Preset)
            .map_err(|_| format!("unknown preset `{s}`; use lan, wifi, mobile, terrible or none"))
    }
}

impl fmt::Display for SimPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimPreset::None => f.write_str("none"),
            SimPreset::Preset(p) => write!(f, "{p}"),
        }
    }
}

fn parse_latency(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of milliseconds"))?;
    if v.is_finite() && (0.0..=60_000.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} ms is outside 0..=60000 ms"))
    }
}

fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("`{s}` is not a percentage"))?;
    if v.is_finite() && (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} % is outside 0..=100 %"))
    }
}

/// The simulator options shared by every command.
#[derive(Clone, Debug, Default, Args)]
pub struct SimArgs {
    /// Network conditions to simulate: lan, wifi, mobile, terrible, or none
    /// [default: none for listen and connect, wifi for demo].
    #[arg(long = "sim", value_name = "PRESET")]
    pub sim: Option<SimPreset>,
    /// One-way latency in milliseconds, applied to both directions (overrides the preset's).
    #[arg(long, value_name = "MS", value_parser = parse_latency)]
    pub latency: Option<f64>,
    /// Random packet loss in percent (0–100), applied to both directions (replaces the preset's
    /// loss).
    #[arg(long, value_name = "PCT", value_parser = parse_percent)]
    pub loss: Option<f64>,
    /// Seed of the simulator [default: $CARRIER_SIM_SEED, else random; printed for replay].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

/// What to simulate, resolved from [`SimArgs`].
#[derive(Clone, Debug, PartialEq)]
pub struct SimPlan {
    /// Conditions of one direction.
    pub link: LinkConfig,
    /// Base seed of the run.
    pub seed: u64,
    /// A short description for humans ("wifi", "lan, latency 20 ms, loss 1 %").
    pub label: String,
}

impl SimArgs {
    /// The simulator to use, if any; `default` applies when `--sim` is not given.
    pub fn plan(&self, default: SimPreset) -> Option<SimPlan> {
        let preset = self.sim.unwrap_or(default);
        if preset == SimPreset::None && self.latency.is_none() && self.loss.is_none() {
            return None;
        }
        let mut parts = Vec::new();
        let mut link = match preset {
            SimPreset::None => LinkConfig::default(),
            SimPreset::Preset(p) => {
                parts.push(p.to_string());
                p.link_config()
            }
        };
        if let Some(ms) = self.latency {
            link = link.with_fixed_latency_ms(ms);
            parts.push(format!("latency {ms} ms"));
        }
        if let Some(pct) = self.loss {
            link.periodic_loss = None;
            link.gilbert_elliott = None;
            link.burst_drop = None;
            link = link.with_loss(pct / 100.0);
            parts.push(format!("loss {pct} %"));
        }
        let seed = self
            .seed
            .or_else(carrier_sim::seed_from_env)
            .unwrap_or_else(crate::random_seed);
        Some(SimPlan {
            link,
            seed,
            label: parts.join(", "),
        })
    }
}

impl SimPlan {
    /// A simulator with the conditions in both directions (inbound and outbound): for one
    /// process talking to peers that have no simulator. `index` varies the seed.
    pub fn both_directions(&self, index: u64) -> Result<Box<dyn Simulator>, CliError> {
        let config = SimConfig::symmetric(self.link.clone(), self.seed.wrapping_add(index));
        Ok(Box::new(NetworkSimulator::with_exact_seed(config)?))
    }

    /// A simulator with the conditions on outbound datagrams only (inbound passes through):
    /// when every carrier of a run has one, each datagram crosses the conditions exactly once.
    pub fn outbound_only(&self, index: u64) -> Result<Box<dyn Simulator>, CliError> {
        let config = SimConfig {
            seed: self.seed.wrapping_add(index),
            inbound: LinkConfig::default(),
            outbound: self.link.clone(),
            enabled: true,
        };
        Ok(Box::new(NetworkSimulator::with_exact_seed(config)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_names_parse_and_unknown_ones_are_explained() {
        assert_eq!("wifi".parse(), Ok(SimPreset::Preset(Preset::Wifi)));
        assert_eq!("None".parse(), Ok(SimPreset::None));
        let err = "dialup".parse::<SimPreset>().unwrap_err();
        assert!(err.contains("dialup") && err.contains("terrible"), "{err}");
    }

    #[test]
    fn no_simulator_unless_asked() {
        assert_eq!(SimArgs::default().plan(SimPreset::None), None);
        let wifi = SimArgs::default()
            .plan(SimPreset::Preset(Preset::Wifi))
            .unwrap();
        assert_eq!(wifi.label, "wifi");
        assert_eq!(wifi.link, Preset::Wifi.link_config());
    }

    #[test]
    fn latency_and_loss_override_the_preset() {
        let args = SimArgs {
            sim: Some(SimPreset::Preset(Preset::Terrible)),
            latency: Some(20.0),
            loss: Some(2.5),
            seed: Some(7),
        };
        let plan = args.plan(SimPreset::None).unwrap();
        assert_eq!(plan.seed, 7);
        assert_eq!(plan.link.latency.min_ms(), 20.0);
        assert_eq!(plan.link.latency.max_ms(), 20.0);
        assert_eq!(plan.link.loss_probability, 0.025);
        assert!(plan.link.gilbert_elliott.is_none() && plan.link.burst_drop.is_none());
        assert_eq!(plan.label, "terrible, latency 20 ms, loss 2.5 %");
        plan.both_directions(0).unwrap();
        plan.outbound_only(1).unwrap();
    }

    #[test]
    fn out_of_range_values_are_refused() {
        assert!(parse_percent("101").is_err());
        assert!(parse_percent("-1").is_err());
        assert!(parse_percent("NaN").is_err());
        assert_eq!(parse_percent("5%"), Ok(5.0));
        assert!(parse_latency("-3").is_err());
        assert!(parse_latency("abc").is_err());
    }
}
