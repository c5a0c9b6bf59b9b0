//! Both ends of a demo stream: the sender's schedule and sequence numbers, and the receiver's
//! order and integrity checks.

use std::time::{Duration, Instant};

/// The receiving end of one stream of one connection.
///
/// Reliable streams must deliver exactly 0, 1, 2, …; unreliable ones strictly increasing
/// sequence numbers (gaps allowed). Anything else is an order violation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderCheck {
    reliable: bool,
    /// Messages received.
    pub delivered: u64,
    /// Sequence number of the last message received in order.
    pub last: Option<u64>,
    /// Messages out of order (or repeated).
    pub violations: u64,
    /// Messages whose bytes differ from what was sent (or that are not demo messages at all).
    pub damaged: u64,
}

impl OrderCheck {
    /// A check for a reliable (`true`) or unreliable stream.
    pub fn new(reliable: bool) -> Self {
        OrderCheck {
            reliable,
            ..OrderCheck::default()
        }
    }

    /// Records message `seq`.
    pub fn on_message(&mut self, seq: u64, intact: bool) {
        self.delivered += 1;
        if !intact {
            self.damaged += 1;
        }
        let in_order = if self.reliable {
            seq == self.last.map_or(0, |l| l + 1)
        } else {
            self.last.is_none_or(|l| seq > l)
        };
        if in_order {
            self.last = Some(seq);
        } else {
            self.violations += 1;
            if self.reliable {
                // Resynchronise so one violation is counted once.
                self.last = Some(seq);
            }
        }
    }

    /// Records a payload that is not a demo message.
    pub fn on_garbage(&mut self) {
        self.delivered += 1;
        self.damaged += 1;
    }
}

/// The sending end of one stream of one connection: a fixed-rate schedule and the next
/// sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    period: Duration,
    next_at: Instant,
    /// The next sequence number (= messages sent).
    pub next_seq: u64,
    /// Sends the carrier refused.
    pub errors: u64,
}

impl Schedule {
    /// A schedule with `period` between messages, the first one at `first`.
    pub fn new(period: Duration, first: Instant) -> Self {
        Schedule {
            period,
            next_at: first,
            next_seq: 0,
            errors: 0,
        }
    }

    /// The sequence number to send now, if one is due. Call [`Schedule::sent`] or
    /// [`Schedule::failed`] after trying.
    pub fn due(&self, now: Instant) -> Option<u64> {
        (now >= self.next_at).then_some(self.next_seq)
    }

    fn advance(&mut self, now: Instant) {
        self.next_at += self.period;
        // After a stall, do not send a burst to catch up.
        if self.next_at < now {
            self.next_at = now + self.period;
        }
    }

    /// The due message was queued.
    pub fn sent(&mut self, now: Instant) {
        self.next_seq += 1;
        self.advance(now);
    }

    /// The due message was refused; its sequence number is used by the next one.
    pub fn failed(&mut self, now: Instant) {
        self.errors += 1;
        self.advance(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reliable_must_be_contiguous() {
        let mut c = OrderCheck::new(true);
        for s in [0, 1, 2] {
            c.on_message(s, true);
        }
        assert_eq!(c.violations, 0);
        c.on_message(4, true); // 3 skipped
        c.on_message(5, true);
        c.on_message(5, true); // repeated
        assert_eq!(c.violations, 2);
        assert_eq!(c.delivered, 6);
        let mut first = OrderCheck::new(true);
        first.on_message(1, true);
        assert_eq!(first.violations, 1);
    }

    #[test]
    fn unreliable_must_increase() {
        let mut c = OrderCheck::new(false);
        for s in [1, 2, 5, 9] {
            c.on_message(s, true);
        }
        assert_eq!(c.violations, 0);
        c.on_message(7, true);
        c.on_message(9, false);
        assert_eq!(c.violations, 2);
        assert_eq!(c.damaged, 1);
        assert_eq!(c.last, Some(9));
    }

    #[test]
    fn schedule_keeps_its_rate_without_bursts() {
        #[allow(clippy::disallowed_methods)] // a base instant for a pure test
        let t0 = Instant::now();
        let p = Duration::from_millis(10);
        let mut s = Schedule::new(p, t0);
        assert_eq!(s.due(t0), Some(0));
        s.sent(t0);
        assert_eq!(s.due(t0 + Duration::from_millis(5)), None);
        assert_eq!(s.due(t0 + p), Some(1));
        s.failed(t0 + p);
        assert_eq!(s.due(t0 + 2 * p), Some(1));
        // A long stall: one message, then the normal period again.
        let late = t0 + Duration::from_secs(1);
        s.sent(late);
        assert_eq!(s.due(late), None);
        assert_eq!(s.due(late + p), Some(2));
        assert_eq!(s.errors, 1);
    }
}
