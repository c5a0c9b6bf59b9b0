//! Connection health: disconnect detection by RTT and loss, the network-failure evaluation of
//! the other connections when one times out, and the receive packet-rate limit
//! (docs/protocol.md §12).

use std::time::{Duration, Instant};

use super::{Connection, Phase};
use crate::DisconnectReason;

/// How often the RTT and loss of a connection are checked.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Health bookkeeping of one connection, boxed and created on first use: only connections of
/// an endpoint with disconnect thresholds or a receive packet-rate limit, and connections whose
/// address sent a datagram that was dropped, have one.
///
/// 56 B: the Carrier runtime always sets disconnect thresholds, so every connection of it has
/// one. The parts that most connections never use are in [`Rare`].
#[derive(Debug)]
pub(crate) struct Health {
    next_check: Option<Instant>,
    /// Since when every check has been bad.
    bad_since: Option<Instant>,
    /// Lifetime acknowledged and lost datagram counts at the last check, modulo 2^32: the
    /// counts of one check interval are wrapping differences, exact below 2^32 datagrams per
    /// interval.
    acked: u32,
    lost: u32,
    /// Loss over the last check interval, when enough datagrams were decided; NaN for none
    /// (compared with `>`, NaN is never above a threshold, as none was not).
    last_loss: f32,
    /// Created on first use: only with a receive packet-rate limit or after a dropped datagram.
    rare: Option<Box<Rare>>,
}

/// The rarely used part of [`Health`].
#[derive(Debug, Default)]
struct Rare {
    /// Receive packet-rate window.
    rate_window: Option<Instant>,
    rate_count: u32,
    /// When the last `SecurityError` event was reported (at most one a second).
    last_security_event: Option<Instant>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            next_check: None,
            bad_since: None,
            acked: 0,
            lost: 0,
            last_loss: f32::NAN,
            rare: None,
        }
    }
}

impl Health {
    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// Loss over the last check interval, when enough datagrams were decided.
    fn last_loss(&self) -> Option<f32> {
        (!self.last_loss.is_nan()).then_some(self.last_loss)
    }

    /// When the last `SecurityError` event was reported.
    pub(super) fn last_security_event(&self) -> Option<Instant> {
        self.rare.as_ref().and_then(|r| r.last_security_event)
    }

    /// Records that a `SecurityError` event is reported at `now`.
    pub(super) fn set_last_security_event(&mut self, now: Instant) {
        self.rare().last_security_event = Some(now);
    }
}

/// The health bookkeeping, created on first use.
pub(super) fn health(h: &mut Option<Box<Health>>) -> &mut Health {
    h.get_or_insert_with(Box::default)
}

impl Connection {
    /// Starts the periodic checks once the connection is established.
    pub(crate) fn start_health_checks(&mut self, now: Instant) {
        if self.config.disconnect_thresholds.is_some() {
            health(&mut self.health).next_check = Some(now + CHECK_INTERVAL);
        }
    }

    /// The next health check, if detection applies.
    pub(crate) fn health_deadline(&self) -> Option<Instant> {
        let active = self.timeouts_enabled
            && self.config.disconnect_thresholds.is_some()
            && matches!(self.phase, Phase::Connected);
        self.health
            .as_ref()
            .and_then(|h| h.next_check)
            .filter(|_| active)
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
        let Some(thresholds) = self.config.disconnect_thresholds else {
            return;
        };
        let lifetime = self.tc.statistics(now).lifetime;
        let h = health(&mut self.health);
        h.next_check = Some(now + CHECK_INTERVAL);
        // Modulo 2^32 (the field doc): the truncations are intended.
        let (acked_now, lost_now) = (lifetime.packets_acked as u32, lifetime.packets_lost as u32);
        let acked = u64::from(acked_now.wrapping_sub(h.acked));
        let lost = u64::from(lost_now.wrapping_sub(h.lost));
        h.acked = acked_now;
        h.lost = lost_now;
        let decided = acked + lost;
        h.last_loss = if decided >= thresholds.min_packets {
            lost as f32 / decided as f32
        } else {
            f32::NAN
        };
        if self.is_unhealthy(1.0) {
            let since = *health(&mut self.health).bad_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= thresholds.window {
                let rtt = self.tc.rtt().smoothed;
                tracing::debug!(
                    id = %self.id,
                    ?rtt,
                    loss = ?self.health.as_ref().and_then(|h| h.last_loss()),
                    "RTT or loss above the disconnect thresholds"
                );
                self.close(now, DisconnectReason::BadConnection);
            }
        } else {
            health(&mut self.health).bad_since = None;
        }
    }

    /// Whether the latest RTT or loss exceeds the thresholds multiplied by `factor`.
    fn is_unhealthy(&self, factor: f32) -> bool {
        let Some(t) = self.config.disconnect_thresholds else {
            return false;
        };
        let rtt = self.tc.rtt();
        let rtt_bad = rtt.has_samples && rtt.smoothed > t.rtt.mul_f32(factor);
        let loss_bad = self
            .health
            .as_ref()
            .and_then(|h| h.last_loss())
            .is_some_and(|l| l > t.loss * factor);
        rtt_bad || loss_bad
    }

    /// Network-failure evaluation (the original's `m_connectionEvaluationThreshold`): another
    /// connection timed out, so this one is dropped if it has been silent for more than
    /// `factor` × the connection timeout or exceeds `factor` × its thresholds.
    pub(crate) fn evaluate(&mut self, now: Instant, factor: f32) {
        if !self.timeouts_enabled || !matches!(self.phase, Phase::Connected) {
            return;
        }
        let silent = Duration::from_nanos(self.nanos_at(now).saturating_sub(self.last_received));
        if silent > self.config.connection_timeout.mul_f32(factor) || self.is_unhealthy(factor) {
            tracing::debug!(id = %self.id, ?silent, "dropped by the network-failure evaluation");
            self.close(now, DisconnectReason::BadConnection);
        }
    }

    /// Records that the connection timeout fired.
    pub(crate) fn mark_timed_out(&mut self) {
        self.timed_out = true;
    }

    /// Whether the connection timeout fired since the last call.
    pub(crate) fn take_timed_out(&mut self) -> bool {
        std::mem::take(&mut self.timed_out)
    }

    /// Counts one received datagram against the receive packet-rate limit; false when it
    /// exceeds the limit (the datagram is then dropped, nothing else happens).
    pub(crate) fn admit_packet(&mut self, now: Instant) -> bool {
        let Some(limit) = self.config.receive_packet_limit else {
            return true;
        };
        let h = health(&mut self.health).rare();
        let fresh = h
            .rate_window
            .is_none_or(|start| now.saturating_duration_since(start) >= Duration::from_secs(1));
        if fresh {
            h.rate_window = Some(now);
            h.rate_count = 0;
        }
        h.rate_count = h.rate_count.saturating_add(1);
        h.rate_count <= limit
    }
}
