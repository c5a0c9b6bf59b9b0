//! The congestion-control seam of the default traffic control, and the fixed window.
//!
//! [`DefaultTrafficControl`](super::DefaultTrafficControl) owns loss detection, the RTT estimate,
//! the delivery-rate sampler and the pacer; a [`Controller`] only decides how many bytes may be in
//! flight and how fast they may leave. Two controllers exist: [`Model`](super::model::Model), the
//! default (docs/traffic-control.md), and [`FixedWindow`], a constant window without pacing for
//! tests and debugging ([`CongestionControl::FixedWindow`](super::CongestionControl)).

use std::fmt;
use std::time::Duration;

use super::delivery::RateSample;

/// What one ACK frame did, handed to the controller once all its ranges are walked and the
/// losses it revealed are declared.
#[derive(Clone, Copy, Debug)]
pub(super) struct AckSummary {
    /// Ack-eliciting bytes delivered by this ACK (first acknowledgements, and datagrams
    /// acknowledged after they had been declared lost).
    pub(super) acked_bytes: usize,
    /// The delivery-rate sample of this ACK, if it delivered anything.
    pub(super) sample: Option<RateSample>,
    /// The smallest `now − send time` over the datagrams it delivered.
    pub(super) rtt_sample: Option<Duration>,
    /// Bytes in flight after it.
    pub(super) bytes_in_flight: usize,
    /// Bytes delivered so far, this ACK included.
    pub(super) delivered: u64,
}

/// A congestion controller. `now` is in nanoseconds since the traffic control's creation
/// (`crate::time`).
pub(super) trait Controller: fmt::Debug + Send {
    /// An ack-eliciting datagram of `size` bytes left; `bytes_in_flight` includes it.
    fn on_sent(&mut self, now: u64, size: usize, bytes_in_flight: usize);
    /// An ack-eliciting datagram of `size` bytes was declared lost.
    fn on_lost(&mut self, now: u64, size: usize);
    /// An ack-eliciting datagram of `size` bytes declared lost was acknowledged after all: it was
    /// reordered, not lost (its bytes are also in the next [`AckSummary::acked_bytes`]).
    fn on_spurious_loss(&mut self, now: u64, size: usize);
    /// An ACK frame was processed.
    fn on_ack(&mut self, now: u64, ack: &AckSummary);
    /// The retransmission timeout fired: nothing was acknowledged for a whole RTO.
    fn on_retransmission_timeout(&mut self, now: u64);
    /// Bytes allowed in flight.
    fn window(&self) -> usize;
    /// Pacing rate, bytes per second; `None` = not paced.
    fn pacing_rate(&self) -> Option<u64>;
    /// The send rate the controller settles on, bytes per second (its bandwidth estimate); 0 when
    /// it has none. Reported in [`FlowInfo::send_rate`](super::FlowInfo) and by rate changes.
    fn send_rate(&self) -> u64;
}

/// No congestion control: a constant window and no pacing.
#[derive(Clone, Copy, Debug)]
pub(super) struct FixedWindow {
    pub(super) window: usize,
}

impl Controller for FixedWindow {
    fn on_sent(&mut self, _now: u64, _size: usize, _bytes_in_flight: usize) {}
    fn on_lost(&mut self, _now: u64, _size: usize) {}
    fn on_spurious_loss(&mut self, _now: u64, _size: usize) {}
    fn on_ack(&mut self, _now: u64, _ack: &AckSummary) {}
    fn on_retransmission_timeout(&mut self, _now: u64) {}
    fn window(&self) -> usize {
        self.window
    }
    fn pacing_rate(&self) -> Option<u64> {
        None
    }
    fn send_rate(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests;
