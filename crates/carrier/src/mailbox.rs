//! Delivered messages waiting for the game: in delivery order across all connections and
//! channels (for `poll_message`) and per connection and channel (for `receive`), both O(1)
//! amortized.
//!
//! The delivery-order queue holds the messages. The per-(connection, channel) index of them is
//! built the first time the game asks for one connection's messages (`receive`, `receive_into`,
//! `statistics`) and kept from then on: a game that only calls `poll_message` pays no hash
//! lookup and touches no per-connection queue per message (a server with 1,000 connections
//! would otherwise touch 1,000 cold queues).

use std::collections::VecDeque;

use carrier_proto::{ConnectionId, Message};
use rustc_hash::FxHashMap;

/// Per (connection, channel): the tickets of its waiting messages, oldest first. Keyed by ids
/// the endpoint assigns, never by network input, so a fast non-keyed hash is safe.
type Index = FxHashMap<(ConnectionId, u8), VecDeque<u64>>;

/// The receive queues. An index queue that empties is kept (not freed), so a steady flow of
/// messages allocates nothing here.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    /// Messages in delivery order; `order[i]` has ticket `base + i`; `None` once taken by
    /// `pop` (dropped when it reaches the front, or by `compact`).
    order: VecDeque<Option<(ConnectionId, Message)>>,
    /// Ticket of `order[0]`.
    base: u64,
    /// Built on first use (module docs).
    index: Option<Index>,
    queued: usize,
}

impl Mailbox {
    pub(crate) fn push(&mut self, id: ConnectionId, message: Message) {
        let ticket = self.base + self.order.len() as u64;
        if let Some(index) = &mut self.index {
            index
                .entry((id, message.channel.get()))
                .or_default()
                .push_back(ticket);
        }
        self.order.push_back(Some((id, message)));
        self.queued += 1;
    }

    /// [`push`](Self::push) of each message, in order.
    pub(crate) fn extend(
        &mut self,
        messages: impl ExactSizeIterator<Item = (ConnectionId, Message)>,
    ) {
        if self.index.is_some() {
            for (id, m) in messages {
                self.push(id, m);
            }
            return;
        }
        // Without the index a push only queues: one reservation for all.
        let n = messages.len();
        self.order.extend(messages.map(Some));
        self.queued += n;
    }

    /// The next message of any connection and channel, in delivery order.
    pub(crate) fn pop_any(&mut self) -> Option<(ConnectionId, Message)> {
        while let Some(slot) = self.order.pop_front() {
            self.base += 1;
            let Some((id, m)) = slot else {
                continue;
            };
            self.queued -= 1;
            // Its ticket is the oldest of its queue.
            if let Some(q) = self
                .index
                .as_mut()
                .and_then(|index| index.get_mut(&(id, m.channel.get())))
            {
                q.pop_front();
            }
            return Some((id, m));
        }
        None
    }

    /// The index, built from the waiting messages on first use.
    fn index(&mut self) -> &mut Index {
        let (order, base) = (&self.order, self.base);
        self.index.get_or_insert_with(|| {
            let mut index = Index::default();
            for (i, slot) in order.iter().enumerate() {
                if let Some((id, m)) = slot {
                    index
                        .entry((*id, m.channel.get()))
                        .or_default()
                        .push_back(base + i as u64);
                }
            }
            index
        })
    }

    /// The next message of one connection and channel.
    pub(crate) fn pop(&mut self, id: ConnectionId, ch: u8) -> Option<Message> {
        let ticket = self.index().get_mut(&(id, ch))?.pop_front()?;
        let pos = usize::try_from(ticket.checked_sub(self.base)?).ok()?;
        let (_, m) = self.order.get_mut(pos)?.take()?;
        self.queued -= 1;
        while self.order.front().is_some_and(Option::is_none) {
            self.order.pop_front();
            self.base += 1;
        }
        // Taken messages behind one that waits: drop them once they outnumber the live ones.
        if self.order.len() > 2 * self.queued + 64 {
            self.compact();
        }
        Some(m)
    }

    /// Drops the taken slots and renumbers the tickets. O(waiting messages).
    fn compact(&mut self) {
        self.order.retain(Option::is_some);
        if let Some(index) = &mut self.index {
            for q in index.values_mut() {
                q.clear();
            }
        }
        let rebuilt = self.index.take().map(|mut index| {
            for (i, slot) in self.order.iter().enumerate() {
                if let Some((id, m)) = slot {
                    index
                        .entry((*id, m.channel.get()))
                        .or_default()
                        .push_back(self.base + i as u64);
                }
            }
            index
        });
        self.index = rebuilt;
    }

    /// Size of the next message of one connection and channel.
    pub(crate) fn peek_len(&mut self, id: ConnectionId, ch: u8) -> Option<usize> {
        let ticket = *self.index().get(&(id, ch))?.front()?;
        let pos = usize::try_from(ticket.checked_sub(self.base)?).ok()?;
        self.order.get(pos)?.as_ref().map(|(_, m)| m.payload.len())
    }

    /// Messages of one connection waiting (all channels).
    pub(crate) fn connection_len(&mut self, id: ConnectionId) -> usize {
        self.index()
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

    #[test]
    fn taken_slots_behind_a_waiting_message_are_compacted() {
        let mut m = Mailbox::default();
        let (a, b) = (ConnectionId::from_raw(1), ConnectionId::from_raw(2));
        // One message of `a` is never taken; `b`'s are, one by one.
        m.push(a, msg(0, 0));
        for i in 0..10_000u32 {
            m.push(b, msg(0, i as u8));
            assert_eq!(m.pop(b, 0).map(|x| x.payload[0]), Some(i as u8));
        }
        assert!(m.order.len() <= 2 + 64 + 1, "{}", m.order.len());
        m.push(b, msg(1, 7));
        assert_eq!(m.peek_len(b, 1), Some(1));
        assert_eq!(
            (m.connection_len(a), m.connection_len(b), m.len()),
            (1, 1, 2)
        );
        let order: Vec<(ConnectionId, u8)> = std::iter::from_fn(|| m.pop_any())
            .map(|(id, x)| (id, x.payload[0]))
            .collect();
        assert_eq!(order, vec![(a, 0), (b, 7)]);
        assert!(m.pop(a, 0).is_none());
    }

    #[test]
    fn the_index_is_built_on_first_use_and_kept_in_step() {
        let mut m = Mailbox::default();
        let (a, b) = (ConnectionId::from_raw(1), ConnectionId::from_raw(2));
        m.push(a, msg(0, 1));
        m.push(b, msg(0, 2));
        m.push(a, msg(0, 3));
        assert!(m.index.is_none(), "poll_message alone builds no index");
        assert_eq!(m.pop_any().map(|(_, x)| x.payload[0]), Some(1));
        // First per-connection query: built from what waits.
        assert_eq!(m.pop(a, 0).map(|x| x.payload[0]), Some(3));
        assert!(m.index.is_some());
        m.push(a, msg(0, 4));
        assert_eq!(m.pop_any().map(|(_, x)| x.payload[0]), Some(2));
        assert_eq!(m.peek_len(b, 0), None);
        assert_eq!(m.pop_any().map(|(_, x)| x.payload[0]), Some(4));
        assert!(m.pop(a, 0).is_none());
        assert_eq!(m.len(), 0);
    }
}
