//! The [`Simulator`] seam of a carrier and its default, [`NetworkSimulator`].
//!
//! A carrier that has a simulator passes every datagram it receives through
//! [`Simulator::input`]`(now, Direction::Inbound, ..)` and every datagram it sends through
//! [`Simulator::input`]`(now, Direction::Outbound, ..)`, then drains
//! [`Simulator::poll_output`] for both directions and folds [`Simulator::poll_timeout`] into its
//! wait. The default [`NetworkSimulator`] is two independent [`Link`]s, one per direction, each
//! with its own configuration and its own random stream derived from one seed
//! ([`link_seed`]). Users can plug in their own implementation.

use std::net::SocketAddr;
use std::time::Instant;

use crate::config::LinkConfig;
use crate::datagram::{Datagram, Direction};
use crate::error::ConfigError;
use crate::link::Link;
use crate::preset::Preset;
use crate::seed::{link_seed, seed_from_env};
use crate::stats::LinkStats;

/// A network emulator between a carrier and its driver. Object safe and `Send`, so a carrier can
/// hold a `Box<dyn Simulator>`.
///
/// Like the rest of Carrier's core it is sans-IO: time comes in as `now`, outputs are pulled.
/// After any input, drain [`poll_output`](Self::poll_output) until it returns `None`.
pub trait Simulator: Send {
    /// Offers a datagram travelling in `direction` at `now`.
    fn input(&mut self, now: Instant, direction: Direction, datagram: Datagram);
    /// The next datagram of `direction` due at or before `now`.
    fn poll_output(&mut self, now: Instant, direction: Direction) -> Option<Datagram>;
    /// The earliest instant a datagram of either direction is due; `None` if none is queued.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Turns the emulation on or off in both directions (off = pass-through; turning off
    /// releases every queued datagram at once).
    fn set_enabled(&mut self, enabled: bool);
    /// Whether the emulation is on.
    fn is_enabled(&self) -> bool;
    /// Forgets every queued datagram from or to `peer`, in both directions (on disconnect).
    fn purge_peer(&mut self, peer: SocketAddr);
    /// The counters of one direction.
    fn stats(&self, direction: Direction) -> LinkStats;
    /// The seed the run can be replayed from.
    fn seed(&self) -> u64;
    /// The default simulator behind this one, if it is one, to change its links at runtime
    /// (e.g. turn on a blackhole or change the loss through [`NetworkSimulator::link_mut`]).
    fn as_network_simulator(&mut self) -> Option<&mut NetworkSimulator> {
        None
    }
}

impl<S: Simulator + ?Sized> Simulator for Box<S> {
    fn input(&mut self, now: Instant, direction: Direction, datagram: Datagram) {
        (**self).input(now, direction, datagram);
    }
    fn poll_output(&mut self, now: Instant, direction: Direction) -> Option<Datagram> {
        (**self).poll_output(now, direction)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        (**self).poll_timeout()
    }
    fn set_enabled(&mut self, enabled: bool) {
        (**self).set_enabled(enabled);
    }
    fn is_enabled(&self) -> bool {
        (**self).is_enabled()
    }
    fn purge_peer(&mut self, peer: SocketAddr) {
        (**self).purge_peer(peer);
    }
    fn stats(&self, direction: Direction) -> LinkStats {
        (**self).stats(direction)
    }
    fn seed(&self) -> u64 {
        (**self).seed()
    }
    fn as_network_simulator(&mut self) -> Option<&mut NetworkSimulator> {
        (**self).as_network_simulator()
    }
}

/// The configuration of a [`NetworkSimulator`].
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Seed of the run; each direction derives its own stream from it ([`link_seed`]).
    pub seed: u64,
    /// Conditions applied to received datagrams.
    pub inbound: LinkConfig,
    /// Conditions applied to sent datagrams.
    pub outbound: LinkConfig,
    /// Whether the emulation starts on (`false` = pass-through until
    /// [`Simulator::set_enabled`]`(true)`, as the original's `Enable()`).
    pub enabled: bool,
}

impl Default for SimConfig {
    /// Seed 0, pass-through both ways, enabled.
    fn default() -> Self {
        Self::symmetric(LinkConfig::default(), 0)
    }
}

impl SimConfig {
    /// The same preset in both directions, enabled.
    pub fn preset(p: Preset, seed: u64) -> SimConfig {
        Self::symmetric(p.link_config(), seed)
    }

    /// The same link conditions in both directions, enabled.
    pub fn symmetric(link: LinkConfig, seed: u64) -> SimConfig {
        SimConfig {
            seed,
            inbound: link.clone(),
            outbound: link,
            enabled: true,
        }
    }

    /// Checks both directions; field paths in the error start with `inbound.` or `outbound.`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.inbound
            .validate()
            .map_err(|e| e.with_prefix("inbound"))?;
        self.outbound
            .validate()
            .map_err(|e| e.with_prefix("outbound"))
    }
}

/// The default [`Simulator`]: one [`Link`] per direction, each configured on its own.
#[derive(Clone, Debug)]
pub struct NetworkSimulator {
    seed: u64,
    inbound: Link,
    outbound: Link,
}

impl NetworkSimulator {
    /// Builds the simulator. If `CARRIER_SIM_SEED` is set to a valid seed it replaces
    /// `config.seed` (see [`seed_from_env`]); the seed used is logged at `debug` level and
    /// returned by [`Simulator::seed`].
    pub fn new(config: SimConfig) -> Result<Self, ConfigError> {
        let seed = seed_from_env().unwrap_or(config.seed);
        Self::build(config, seed)
    }

    /// Builds the simulator with exactly `config.seed`, ignoring the environment.
    pub fn with_exact_seed(config: SimConfig) -> Result<Self, ConfigError> {
        let seed = config.seed;
        Self::build(config, seed)
    }

    fn build(config: SimConfig, seed: u64) -> Result<Self, ConfigError> {
        config.validate()?;
        let SimConfig {
            inbound,
            outbound,
            enabled,
            ..
        } = config;
        let mut inbound = Link::new(inbound, link_seed(seed, Direction::Inbound))
            .map_err(|e| e.with_prefix("inbound"))?;
        let mut outbound = Link::new(outbound, link_seed(seed, Direction::Outbound))
            .map_err(|e| e.with_prefix("outbound"))?;
        inbound.set_enabled(enabled);
        outbound.set_enabled(enabled);
        tracing::debug!(
            seed,
            "carrier-sim network simulator (replay with CARRIER_SIM_SEED={seed})"
        );
        Ok(Self {
            seed,
            inbound,
            outbound,
        })
    }

    /// The link of one direction.
    pub fn link(&self, d: Direction) -> &Link {
        match d {
            Direction::Inbound => &self.inbound,
            Direction::Outbound => &self.outbound,
        }
    }

    /// The link of one direction, to reconfigure it ([`Link::set_config`]) or toggle it alone.
    pub fn link_mut(&mut self, d: Direction) -> &mut Link {
        match d {
            Direction::Inbound => &mut self.inbound,
            Direction::Outbound => &mut self.outbound,
        }
    }
}

impl Simulator for NetworkSimulator {
    fn as_network_simulator(&mut self) -> Option<&mut NetworkSimulator> {
        Some(self)
    }

    fn input(&mut self, now: Instant, direction: Direction, datagram: Datagram) {
        self.link_mut(direction).push(now, datagram);
    }

    fn poll_output(&mut self, now: Instant, direction: Direction) -> Option<Datagram> {
        self.link_mut(direction).poll(now)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match (self.inbound.poll_timeout(), self.outbound.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn set_enabled(&mut self, enabled: bool) {
        self.inbound.set_enabled(enabled);
        self.outbound.set_enabled(enabled);
    }

    /// True if either direction is enabled (they differ only after a
    /// [`link_mut`](NetworkSimulator::link_mut)`(..).set_enabled(..)`).
    fn is_enabled(&self) -> bool {
        self.inbound.is_enabled() || self.outbound.is_enabled()
    }

    fn purge_peer(&mut self, peer: SocketAddr) {
        self.inbound.purge_peer(peer);
        self.outbound.purge_peer(peer);
    }

    fn stats(&self, direction: Direction) -> LinkStats {
        self.link(direction).stats().clone()
    }

    fn seed(&self) -> u64 {
        self.seed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn assert_send<T: Send>() {}

    #[test]
    fn trait_object_is_send() {
        assert_send::<Box<dyn Simulator>>();
        assert_send::<NetworkSimulator>();
    }

    #[test]
    fn directions_are_independent_and_seeded() {
        let cfg = SimConfig::symmetric(LinkConfig::default().with_loss(0.5), 3);
        let sim = NetworkSimulator::with_exact_seed(cfg).unwrap();
        assert_eq!(sim.seed(), 3);
        assert_eq!(
            sim.link(Direction::Inbound).seed(),
            link_seed(3, Direction::Inbound)
        );
        assert_eq!(
            sim.link(Direction::Outbound).seed(),
            link_seed(3, Direction::Outbound)
        );
    }

    #[test]
    fn routes_by_direction_and_reports_earliest_timeout() {
        let cfg = SimConfig {
            inbound: LinkConfig::default().with_fixed_latency_ms(30.0),
            outbound: LinkConfig::default().with_fixed_latency_ms(10.0),
            ..SimConfig::default()
        };
        let mut sim: Box<dyn Simulator> = Box::new(NetworkSimulator::with_exact_seed(cfg).unwrap());
        // Virtual time: one base instant per test; the library never reads the clock.
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:2".parse().unwrap();
        sim.input(t0, Direction::Inbound, Datagram::new(b, a, b"in".to_vec()));
        sim.input(
            t0,
            Direction::Outbound,
            Datagram::new(a, b, b"out".to_vec()),
        );
        assert_eq!(sim.poll_timeout(), Some(t0 + Duration::from_millis(10)));
        let t = t0 + Duration::from_millis(10);
        assert_eq!(sim.poll_output(t, Direction::Inbound), None);
        assert_eq!(
            sim.poll_output(t, Direction::Outbound).unwrap().payload,
            b"out"
        );
        assert_eq!(sim.poll_timeout(), Some(t0 + Duration::from_millis(30)));
        sim.purge_peer(b);
        assert_eq!(sim.poll_timeout(), None);
        assert_eq!(sim.stats(Direction::Inbound).dropped_purged, 1);
        assert!(sim.is_enabled());
        sim.set_enabled(false);
        assert!(!sim.is_enabled());
    }

    #[test]
    fn config_errors_name_the_direction() {
        let mut cfg = SimConfig::default();
        cfg.outbound.loss_probability = 2.0;
        let err = NetworkSimulator::with_exact_seed(cfg).unwrap_err();
        assert_eq!(err.field(), "outbound.loss_probability");
    }

    #[test]
    fn starts_disabled_when_asked() {
        let cfg = SimConfig {
            enabled: false,
            ..SimConfig::preset(Preset::Terrible, 1)
        };
        let sim = NetworkSimulator::with_exact_seed(cfg).unwrap();
        assert!(!sim.is_enabled());
    }
}
