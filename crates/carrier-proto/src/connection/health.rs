//! Connection health: disconnect detection by RTT and loss, the network-failure evaluation of
//! the other connections when one times out, and the receive packet-rate limit
//! (docs/protocol.md §12).

use std::time::{Duration, Instant};

use super::{Connection, Phase};
use crate::DisconnectReason;

/// How often the RTT and loss of a connection are checked.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Health bookkeeping of one connection.
#[derive(Debug, Default)]
pub(crate) struct Health {
    next_check: Option<Instant>,
    /// Lifetime acknowledged and lost datagram counts at the last check.
    acked: u64,
    lost: u64,
    /// Loss over the last check interval, when enough datagrams were decided.
    last_loss: Option<f32>,
    /// Since when every check has been bad.
    bad_since: Option<Instant>,
    /// Receive packet-rate window.
    rate_window: Option<Instant>,
    rate_count: u32,
    /// Set when the connection timeout fired (the endpoint then evaluates the others).
    timed_out: bool,
}

impl Connection {
    /// Starts the periodic checks once the connection is established.
    pub(crate) fn start_health_checks(&mut self, now: Instant) {
        self.health.next_check = Some(now + CHECK_INTERVAL);
    }

    /// The next health check, if detection applies.
    pub(crate) fn health_deadline(&self) -> Option<Instant> {
        let active = self.timeouts_enabled
            && self.config.disconnect_thresholds.is_some()
            && matches!(self.phase, Phase::Connected);
        self.health.next_check.filter(|_| active)
    }

    /// Runs the check if it is due: RTT and loss against the thresholds, sustained over the
    /// window (docs/protocol.md §12).
    pub(crate) fn check_health(&mut self, now: Instant) {
        let Some(due) = self.health_deadline() else {
            return;
        };
        if now < due {
            return;
        }
        self.health.next_check = Some(now + CHECK_INTERVAL);
        let Some(thresholds) = self.config.disconnect_thresholds else {
            return;
        };
        let lifetime = self.tc.statistics(now).lifetime;
        let acked = lifetime.packets_acked.saturating_sub(self.health.acked);
        let lost = lifetime.packets_lost.saturating_sub(self.health.lost);
        self.health.acked = lifetime.packets_acked;
        self.health.lost = lifetime.packets_lost;
        let decided = acked + lost;
        self.health.last_loss =
            (decided >= thresholds.min_packets).then(|| lost as f32 / decided as f32);
        if self.is_unhealthy(1.0) {
            let since = *self.health.bad_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= thresholds.window {
                let rtt = self.tc.rtt().smoothed;
                tracing::debug!(
                    id = %self.id,
                    ?rtt,
                    loss = ?self.health.last_loss,
                    "RTT or loss above the disconnect thresholds"
                );
                self.close(now, DisconnectReason::BadConnection);
            }
        } else {
            self.health.bad_since = None;
        }
    }

    /// Whether the latest RTT or loss exceeds the thresholds multiplied by `factor`.
    fn is_unhealthy(&self, factor: f32) -> bool {
        let Some(t) = self.config.disconnect_thresholds else {
            return false;
        };
        let rtt = self.tc.rtt();
        let rtt_bad = rtt.has_samples && rtt.smoothed > t.rtt.mul_f32(factor);
        let loss_bad = self.health.last_loss.is_some_and(|l| l > t.loss * factor);
        rtt_bad || loss_bad
    }

    /// Network-failure evaluation (the original's `m_connectionEvaluationThreshold`): another
    /// connection timed out, so this one is dropped if it has been silent for more than
    /// `factor` × the connection timeout or exceeds `factor` × its thresholds.
    pub(crate) fn evaluate(&mut self, now: Instant, factor: f32) {
        if !self.timeouts_enabled || !matches!(self.phase, Phase::Connected) {
            return;
        }
        let silent = now.saturating_duration_since(self.last_received);
        if silent > self.config.connection_timeout.mul_f32(factor) || self.is_unhealthy(factor) {
            tracing::debug!(id = %self.id, ?silent, "dropped by the network-failure evaluation");
            self.close(now, DisconnectReason::BadConnection);
        }
    }

    /// Records that the connection timeout fired.
    pub(crate) fn mark_timed_out(&mut self) {
        self.health.timed_out = true;
    }

    /// Whether the connection timeout fired since the last call.
    pub(crate) fn take_timed_out(&mut self) -> bool {
        std::mem::take(&mut self.health.timed_out)
    }

    /// Counts one received datagram against the receive packet-rate limit; false when it
    /// exceeds the limit (the datagram is then dropped, nothing else happens).
    pub(crate) fn admit_packet(&mut self, now: Instant) -> bool {
        let Some(limit) = self.config.receive_packet_limit else {
            return true;
        };
        let fresh = self
            .health
            .rate_window
            .is_none_or(|start| now.saturating_duration_since(start) >= Duration::from_secs(1));
        if fresh {
            self.health.rate_window = Some(now);
            self.health.rate_count = 0;
        }
        self.health.rate_count = self.health.rate_count.saturating_add(1);
        self.health.rate_count <= limit
    }
}
