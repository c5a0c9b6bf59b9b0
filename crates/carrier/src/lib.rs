//! Carrier: reliable-UDP messaging for real-time games.
//!
//! A [`Carrier`] holds connections to other carriers over one [`Driver`](driver::Driver) (UDP by
//! default, IPv4, IPv6 or dual-stack). Messages are [`Reliable`](Reliability::Reliable) or
//! [`Unreliable`](Reliability::Unreliable) and never delivered out of order: within one stream
//! (a channel and a priority) an out-of-order reliable message waits for the gap to fill, an
//! out-of-order unreliable one is discarded. Channels separate unrelated traffic, so a loss on
//! one never delays another; higher priorities are sent first, lower ones keep a guaranteed
//! share. Large messages are split and reassembled, small ones packed together.
//!
//! The protocol itself is the sans-IO [`carrier_proto`] crate; this crate adds the
//! [`CarrierDesc`] of the original, the carrier thread (or manual mode), the drivers, the
//! simulator hook ([`carrier_sim`]) and the game-facing API.
//!
//! ```no_run
//! use std::time::Duration;
//! use carrier::{Carrier, CarrierDesc, CarrierEvent, Priority, Reliability};
//!
//! let carrier = Carrier::new(CarrierDesc::default())?;
//! let server = carrier.connect("127.0.0.1:4000")?;
//! loop {
//!     carrier.update(); // once per frame
//!     while let Some(event) = carrier.poll_event() {
//!         if let CarrierEvent::ConnectionEstablished { id } = event {
//!             // Game state: unreliable on channel 0; chat: reliable on channel 1.
//!             carrier.send(id, b"state", Reliability::Unreliable, Priority::High, 0)?;
//!             carrier.send(id, b"hello!", Reliability::Reliable, Priority::Normal, 1)?;
//!         }
//!     }
//!     while let Some(chat) = carrier.receive(server, 1) {
//!         println!("chat: {}", String::from_utf8_lossy(&chat));
//!     }
//!     std::thread::sleep(Duration::from_millis(16));
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Threads
//!
//! By default a carrier thread owns the driver and runs the protocol; [`Carrier`] is
//! `Send + Sync` and every method takes `&self`, so game threads can send concurrently (with the
//! default settings an answer to a received message leaves on the calling thread: see
//! [`CarrierDesc::thread_instant_response`]). With
//! [`ThreadMode::Manual`] there is no thread: [`Carrier::update`] does the I/O on the calling
//! thread. Events are pulled with [`Carrier::poll_event`] or [`Carrier::wait_event`]; messages with
//! [`Carrier::receive`], [`Carrier::receive_into`] or [`Carrier::poll_message`].
//!
//! # Errors and panics
//!
//! Bad arguments and bad network input give typed errors or counted drops, never panics.
//! Dropping a `Carrier` shuts it down (disconnects are sent, bounded by `shutdown_timeout_ms`).

mod carrier;
mod desc;
pub mod driver;
mod error;
mod event;
mod mailbox;
mod runtime;
mod sys;

pub use crate::carrier::{Carrier, Target};
pub use desc::{CarrierDesc, FamilyType, INHERIT_PRIORITY, MAX_RECEIVE_COALESCING_US, ThreadMode};
pub use error::{CarrierError, ConnectError, ReceiveError};
pub use event::{CarrierEvent, SecurityError};

pub use carrier_proto::traffic::{FlowInfo, RttEstimate, StatsSet};
pub use carrier_proto::{
    ChannelId, ConfigError, ConnectionId, ConnectionState, DisconnectReason, DropReason, Handshake,
    HandshakeDecision, Message, Priority, Reliability, SendError, Statistics, TrafficControl,
    TrafficControlFactory,
};
/// The network simulator crate (link configuration, statistics, presets).
pub use carrier_sim as sim;
pub use carrier_sim::{NetworkSimulator, Preset, SimConfig, Simulator};
