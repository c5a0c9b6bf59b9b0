//! Seeded, sans-IO network link emulator for Carrier.
//!
//! A [`Link`] is one direction of an emulated network path: it delays, reorders, drops,
//! rate-limits, duplicates and corrupts the datagrams pushed into it, and hands them back when
//! they are due. It never touches a socket, a thread or a clock: the caller passes `now` in and
//! pulls the outputs, so a test can run hours of network time in milliseconds, and the same seed
//! with the same inputs gives the same outputs, byte for byte and instant for instant.
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::{Duration, Instant};
//! use carrier_sim::{Datagram, Link, LinkConfig};
//!
//! // One direction with a fixed 50 ms one-way latency, seeded for reproducibility.
//! let mut link = Link::new(LinkConfig::default().with_fixed_latency_ms(50.0), 42)?;
//! let from: SocketAddr = "192.0.2.1:5000".parse()?;
//! let to: SocketAddr = "192.0.2.2:6000".parse()?;
//!
//! // The caller owns the clock. A real loop would read it; a test advances a virtual one.
//! let start = Instant::now();
//! link.push(start, Datagram::new(from, to, b"hello".to_vec()));
//!
//! // The run loop: after any input, and whenever the timeout passes, drain the outputs.
//! let mut now = start;
//! let mut delivered = Vec::new();
//! while let Some(due) = link.poll_timeout() {
//!     now = now.max(due); // sleep (or jump the virtual clock) until the next deadline
//!     while let Some(datagram) = link.poll(now) {
//!         delivered.push((now, datagram)); // hand it to the receiver
//!     }
//! }
//! assert_eq!(delivered.len(), 1);
//! assert_eq!(delivered[0].0 - start, Duration::from_millis(50));
//! assert_eq!(delivered[0].1.payload, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The one rule
//!
//! After every [`Link::push`] (and every change of configuration or state), and whenever the
//! instant given by [`Link::poll_timeout`] has come, call [`Link::poll`] until it returns `None`.
//! `poll_timeout` is exact: `poll` returns a datagram at that instant and nothing before it.
//!
//! # What is here
//!
//! - [`config`]: [`LinkConfig`], the knobs of one direction and the order they apply in: MTU →
//!   blackhole → periodic loss → random and Gilbert–Elliott loss → burst drops → bandwidth (drop
//!   or drop-tail queue) → memory cap → duplication and corruption → latency (FIFO or
//!   reordering).
//! - [`link`]: [`Link`], the state machine of one direction.
//! - [`simulator`]: the [`Simulator`] trait a carrier uses, and [`NetworkSimulator`], two links.
//! - [`preset`]: [`Preset`]s `lan`, `wifi`, `mobile`, `terrible` with documented numbers.
//! - [`stats`]: [`LinkStats`], counters that always balance.
//! - [`seed`]: [`seed_from_env`] (`CARRIER_SIM_SEED`) and the per-direction streams.
//!
//! # Determinism
//!
//! Each link draws from its own ChaCha8 stream, seeded from a `u64`; the draws never depend on
//! hash-map order or on how often the link is polled. A [`NetworkSimulator`] derives one stream
//! per direction from its seed ([`link_seed`]), so both directions are independent and both
//! replayable. Set `CARRIER_SIM_SEED` to replay a run built with [`NetworkSimulator::new`].
//!
//! # Not supported
//!
//! Per-connection conditions inside one [`NetworkSimulator`] (build several [`Link`]s instead),
//! correlated latency (delay that drifts over time), AQM schemes such as CoDel, ECN marking, and
//! token-bucket bursts above the rate: a queueing bottleneck sends at exactly its rate.

#![forbid(unsafe_code)]

pub mod config;
mod datagram;
pub mod error;
pub mod link;
pub mod preset;
mod rng;
pub mod seed;
pub mod simulator;
pub mod stats;

pub use config::{
    Bandwidth, BandwidthMode, BurstDrop, DEFAULT_MAX_QUEUED_BYTES, DEFAULT_MAX_QUEUED_PACKETS,
    GilbertElliott, Latency, LinkConfig, MAX_KBPS, MAX_MS, PeriodicLoss, QueueLimit,
};
pub use datagram::{Datagram, Direction};
pub use error::ConfigError;
pub use link::Link;
pub use preset::{ParsePresetError, Preset};
pub use seed::{SEED_ENV_VAR, link_seed, parse_seed, seed_from_env};
pub use simulator::{NetworkSimulator, SimConfig, Simulator};
pub use stats::LinkStats;
