//! Message vocabulary shared by every layer: reliability, priority, channel, stream and the
//! delivered [`Message`].
//!
//! A **stream** is one (channel, priority) pair of one connection (docs/protocol.md §8, §10):
//! ordering holds within a stream and never couples two streams.

use std::fmt;

use bytes::Bytes;

/// Whether a message is retransmitted until acknowledged.
///
/// ```
/// use carrier_proto::Reliability;
/// assert!(Reliability::Reliable.is_reliable());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reliability {
    /// Retransmitted until acknowledged; delivered once every earlier reliable message of its
    /// stream has been delivered (out-of-order arrivals wait).
    Reliable,
    /// Sent once; delivered on arrival if it is in order, discarded otherwise, never waited for.
    Unreliable,
}

impl Reliability {
    /// `true` for [`Reliability::Reliable`].
    pub fn is_reliable(self) -> bool {
        matches!(self, Reliability::Reliable)
    }
}

/// Transmission priority of a message. Higher priorities leave first, with a guaranteed minimum
/// share for lower ones (docs/protocol.md §16: weights High 8, Normal 4, Low 1).
///
/// Each priority of a channel is a stream of its own: priorities never block each other.
///
/// ```
/// use carrier_proto::Priority;
/// assert!(Priority::High < Priority::Low); // "smaller" means "more urgent"
/// assert_eq!(Priority::ALL.len(), 3);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    /// Sent first (weight 8).
    High = 0,
    /// The default (weight 4).
    #[default]
    Normal = 1,
    /// Background traffic (weight 1, at least 1/13 of the bytes when everything is saturated).
    Low = 2,
}

impl Priority {
    /// Every priority, most urgent first.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    /// The index used on the wire and in tables (0 High, 1 Normal, 2 Low).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The priority for a wire index, if valid.
    pub fn from_index(index: usize) -> Option<Priority> {
        Priority::ALL.get(index).copied()
    }

    /// Scheduling weight (docs/protocol.md §16).
    pub fn weight(self) -> u64 {
        match self {
            Priority::High => 8,
            Priority::Normal => 4,
            Priority::Low => 1,
        }
    }
}

/// A channel number, `0..channel_count`. Channels separate unrelated traffic: ordering never
/// couples across channels.
///
/// ```
/// use carrier_proto::ChannelId;
/// let voice = ChannelId::new(1);
/// assert_eq!(voice.get(), 1);
/// assert_eq!(voice.to_string(), "channel 1");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(u8);

impl ChannelId {
    /// Channel `n`. Whether it is valid depends on the connection's agreed channel count.
    pub const fn new(n: u8) -> Self {
        ChannelId(n)
    }

    /// The channel number.
    pub const fn get(self) -> u8 {
        self.0
    }
}

impl From<u8> for ChannelId {
    fn from(n: u8) -> Self {
        ChannelId(n)
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "channel {}", self.0)
    }
}

/// One stream: a (channel, priority) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    /// The channel.
    pub channel: ChannelId,
    /// The priority.
    pub priority: Priority,
}

impl StreamKey {
    /// Dense index of this stream: `channel × 3 + priority`.
    pub fn index(self) -> usize {
        usize::from(self.channel.get()) * 3 + self.priority.index()
    }
}

/// A whole message delivered to the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Channel it was sent on.
    pub channel: ChannelId,
    /// Priority it was sent with.
    pub priority: Priority,
    /// Reliability it was sent with.
    pub reliability: Reliability,
    /// The payload, exactly as sent (reassembled if it was split).
    ///
    /// A small payload shares a pooled receive buffer (up to 64 KiB) with other messages, so
    /// delivery allocates nothing; while it is alive that buffer cannot be reused. Keeping a
    /// few payloads for a while is fine; to keep many for long, copy them
    /// (`Bytes::copy_from_slice(&message.payload)`).
    pub payload: Bytes,
}
