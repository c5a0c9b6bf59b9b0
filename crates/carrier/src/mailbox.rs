//! Delivered messages waiting for the game: per connection and channel (for `receive`) and in
//! delivery order across all of them (for `poll_message`), both O(1) amortized.

use std::collections::VecDeque;

use carrier_proto::{ConnectionId, Message};
use rustc_hash::FxHashMap;

/// The receive queues. A queue that empties is kept (not freed), so a steady flow of messages
/// allocates nothing here; there is one per (connection, channel) that ever received.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    /// Keyed by locally assigned ids, never by network input, so a fast non-keyed hash is safe
    /// (two lookups per message: SipHash was several percent of a 64 B message's cost).
    queues: FxHashMap<(ConnectionId, u8), VecDeque<(u64, Message)>>,
    /// Tickets in delivery order; a ticket whose message was taken by `pop` is stale.
    order: VecDeque<(ConnectionId, u8, u64)>,
    next: u64,
    queued: usize,
}

impl Mailbox {
    pub(crate) fn push(&mut self, id: ConnectionId, message: Message) {
        let ch = message.channel.get();
        let ticket = self.next;
        self.next += 1;
        self.queues
            .entry((id, ch))
            .or_default()
            .push_back((ticket, message));
        self.order.push_back((id, ch, ticket));
        self.queued += 1;
    }

    /// The next message of any connection and channel, in delivery order.
    pub(crate) fn pop_any(&mut self) -> Option<(ConnectionId, Message)> {
        while let Some((id, ch, ticket)) = self.order.pop_front() {
            let Some(q) = self.queues.get_mut(&(id, ch)) else {
                continue;
            };
            if q.front().is_some_and(|(t, _)| *t == ticket) {
                let (_, m) = q.pop_front()?;
                self.queued -= 1;
                return Some((id, m));
            }
        }
        None
    }

    /// The next message of one connection and channel.
    pub(crate) fn pop(&mut self, id: ConnectionId, ch: u8) -> Option<Message> {
        let q = self.queues.get_mut(&(id, ch))?;
        let (_, m) = q.pop_front()?;
        self.queued -= 1;
        // Drop stale tickets once they outnumber the live ones.
        if self.order.len() > 2 * self.queued + 64 {
            let queues = &self.queues;
            self.order.retain(|(id, ch, t)| {
                queues
                    .get(&(*id, *ch))
                    .is_some_and(|q| q.iter().any(|(x, _)| x == t))
            });
        }
        Some(m)
    }

    /// Size of the next message of one connection and channel.
    pub(crate) fn peek_len(&self, id: ConnectionId, ch: u8) -> Option<usize> {
        self.queues
            .get(&(id, ch))
            .and_then(|q| q.front())
            .map(|(_, m)| m.payload.len())
    }

    /// Messages of one connection waiting (all channels).
    pub(crate) fn connection_len(&self, id: ConnectionId) -> usize {
        self.queues
            .iter()
            .filter(|((c, _), _)| *c == id)
            .map(|(_, q)| q.len())
            .sum()
    }

    /// Messages waiting.
    pub(crate) fn len(&self) -> usize {
        self.queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use carrier_proto::{ChannelId, Priority, Reliability};

    fn msg(ch: u8, b: u8) -> Message {
        Message {
            channel: ChannelId::new(ch),
            priority: Priority::Normal,
            reliability: Reliability::Reliable,
            payload: Bytes::from(vec![b]),
        }
    }

    #[test]
    fn per_channel_and_global_order_agree() {
        let mut m = Mailbox::default();
        let a = ConnectionId::from_raw(1);
        let b = ConnectionId::from_raw(2);
        m.push(a, msg(0, 1));
        m.push(b, msg(1, 2));
        m.push(a, msg(0, 3));
        m.push(a, msg(1, 4));
        assert_eq!(m.pop(a, 0).unwrap().payload[0], 1);
        assert_eq!(m.peek_len(a, 1), Some(1));
        let order: Vec<u8> = std::iter::from_fn(|| m.pop_any())
            .map(|(_, x)| x.payload[0])
            .collect();
        assert_eq!(order, vec![2, 3, 4]);
        assert_eq!(m.len(), 0);
        assert!(m.pop(a, 0).is_none());
    }

    #[test]
    fn stale_tickets_are_compacted() {
        let mut m = Mailbox::default();
        let a = ConnectionId::from_raw(1);
        for i in 0..10_000u32 {
            m.push(a, msg(0, i as u8));
            assert!(m.pop(a, 0).is_some());
        }
        assert!(m.order.len() <= 64 + 1);
    }
}
