//! Counters kept by each [`Link`](crate::Link).
//!
//! Every datagram offered to a link is accounted for exactly once: it is delivered, dropped by one
//! stage, purged, or still queued. Duplicates add to the input side. So at any time
//!
//! ```text
//! packets_in + duplicated == packets_out + dropped() + queued_packets
//! ```
//!
//! ([`LinkStats::is_balanced`] checks it). Counters only grow, except the two `queued_*` gauges.

/// Counters of one direction of a link. Packet counts are datagrams; byte counts are payload bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams offered with [`Link::push`](crate::Link::push).
    pub packets_in: u64,
    /// Payload bytes offered.
    pub bytes_in: u64,
    /// Datagrams returned by [`Link::poll`](crate::Link::poll) (duplicates included).
    pub packets_out: u64,
    /// Payload bytes returned.
    pub bytes_out: u64,
    /// Dropped by periodic, random or Gilbert–Elliott loss.
    pub dropped_loss: u64,
    /// Dropped during a burst-drop interval.
    pub dropped_burst: u64,
    /// Dropped for exceeding the per-second budget of a [`BandwidthMode::Drop`](crate::BandwidthMode::Drop) cap.
    pub dropped_bandwidth: u64,
    /// Dropped for being larger than the MTU.
    pub dropped_mtu: u64,
    /// Dropped by the blackhole.
    pub dropped_blackhole: u64,
    /// Dropped because a bottleneck queue or the hard memory cap was full.
    pub dropped_queue_full: u64,
    /// Removed by [`Link::purge_peer`](crate::Link::purge_peer).
    pub dropped_purged: u64,
    /// Extra copies made by duplication.
    pub duplicated: u64,
    /// Copies that had a bit flipped.
    pub corrupted: u64,
    /// Datagrams held by the link now (gauge).
    pub queued_packets: u64,
    /// Payload bytes held by the link now (gauge).
    pub queued_bytes: u64,
}

impl LinkStats {
    /// All datagrams that will never come out: the sum of the `dropped_*` counters.
    pub fn dropped(&self) -> u64 {
        self.dropped_loss
            + self.dropped_burst
            + self.dropped_bandwidth
            + self.dropped_mtu
            + self.dropped_blackhole
            + self.dropped_queue_full
            + self.dropped_purged
    }

    /// True when `packets_in + duplicated == packets_out + dropped() + queued_packets`, which holds
    /// after every call on a [`Link`](crate::Link).
    pub fn is_balanced(&self) -> bool {
        self.packets_in + self.duplicated == self.packets_out + self.dropped() + self.queued_packets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balance_counts_every_drop_kind() {
        let mut s = LinkStats {
            packets_in: 10,
            duplicated: 1,
            packets_out: 2,
            dropped_loss: 1,
            dropped_burst: 1,
            dropped_bandwidth: 1,
            dropped_mtu: 1,
            dropped_blackhole: 1,
            dropped_queue_full: 1,
            dropped_purged: 1,
            queued_packets: 2,
            ..LinkStats::default()
        };
        assert_eq!(s.dropped(), 7);
        assert!(s.is_balanced());
        s.dropped_purged = 0;
        assert!(!s.is_balanced());
    }
}
