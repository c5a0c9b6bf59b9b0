//! Delivered messages waiting for the game: in delivery order across all connections and
//! channels (for `poll_message`) and per connection and channel (for `receive`), both O(1)
//! amortized.
//!
//! The delivery-order queue holds the messages. A per-connection query whose connection and
//! channel has the oldest waiting message takes it from the front. Otherwise it needs the
//! per-(connection, channel) index of the waiting messages: built from them on demand and kept
//! in step while messages wait, and set aside (its queues kept, empty) whenever the mailbox
//! empties. A game that only calls `poll_message`, or that receives one connection's channel
//! at a time in order, pays no hash lookup and touches no per-connection queue per message (a
//! server with 1,000 connections would otherwise touch 1,000 cold queues); each message is
//! indexed at most once.

use std::collections::VecDeque;

use bytes::Bytes;
use carrier_proto::{ChannelId, ConnectionId, Message, Priority, Reliability};
use rustc_hash::FxHashMap;

/// Per (connection, channel): the tickets of its waiting messages, oldest first. Keyed by ids
/// the endpoint assigns, never by network input, so a fast non-keyed hash is safe.
type Index = FxHashMap<(ConnectionId, u8), VecDeque<u64>>;

/// What is left in the queue of a message taken out of order.
fn taken_slot() -> Message {
    Message {
        channel: ChannelId::new(0),
        priority: Priority::Normal,
        reliability: Reliability::Unreliable,
        payload: Bytes::new(),
    }
}

/// The receive queues. Index queues that empty are kept (not freed), so a steady flow of
/// messages allocates nothing here.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    /// Messages in delivery order; `order[i]` has ticket `base + i`. Messages taken out of
    /// order (by `pop`, only while the index is active) leave a slot marked in `taken`;
    /// the front slot is never a taken one.
    order: VecDeque<(ConnectionId, Message)>,
    /// Ticket of `order[0]`.
    base: u64,
    /// The index (module docs): it describes `order` only while `active`.
    index: Option<Index>,
    /// Whether `index` and `taken` are kept in step with `order` (module docs).
    active: bool,
    /// While `active`, whether each slot of `order` was taken.
    taken: VecDeque<bool>,
    queued: usize,
}

impl Mailbox {
    pub(crate) fn push(&mut self, id: ConnectionId, message: Message) {
        if self.active {
            let ticket = self.base + self.order.len() as u64;
            if let Some(index) = &mut self.index {
                index
                    .entry((id, message.channel.get()))
                    .or_default()
                    .push_back(ticket);
            }
            self.taken.push_back(false);
        }
        self.order.push_back((id, message));
        self.queued += 1;
    }

    /// [`push`](Self::push) of each message of `queue`, in order, leaving it empty: the whole
    /// queue at once (swapped with the empty one) when nothing waits and the index is inactive.
    pub(crate) fn append(&mut self, queue: &mut VecDeque<(ConnectionId, Message)>) {
        if self.active {
            for (id, m) in queue.drain(..) {
                self.push(id, m);
            }
            return;
        }
        self.queued += queue.len();
        if self.order.is_empty() {
            std::mem::swap(&mut self.order, queue);
        } else {
            self.order.append(queue);
        }
    }

    /// The next message of any connection and channel, in delivery order.
    pub(crate) fn pop_any(&mut self) -> Option<(ConnectionId, Message)> {
        let (id, m) = self.order.pop_front()?;
        self.base += 1;
        self.queued -= 1;
        if self.active {
            self.taken.pop_front();
            // Its ticket is the oldest of its queue.
            if let Some(q) = self
                .index
                .as_mut()
                .and_then(|index| index.get_mut(&(id, m.channel.get())))
            {
                q.pop_front();
            }
            self.trim();
        }
        Some((id, m))
    }

    /// Drops the taken slots at the front; sets the index aside once nothing waits.
    fn trim(&mut self) {
        while self.taken.front() == Some(&true) {
            self.taken.pop_front();
            self.order.pop_front();
            self.base += 1;
        }
        if self.order.is_empty() {
            self.active = false;
            self.taken.clear();
        }
    }

    /// The index, built from the waiting messages if inactive.
    fn index(&mut self) -> &mut Index {
        let index = self.index.get_or_insert_with(Index::default);
        if !self.active {
            self.active = true;
            // No message was taken out of order while inactive: every slot waits.
            self.taken.clear();
            self.taken.resize(self.order.len(), false);
            for q in index.values_mut() {
                q.clear();
            }
            for (i, (id, m)) in self.order.iter().enumerate() {
                index
                    .entry((*id, m.channel.get()))
                    .or_default()
                    .push_back(self.base + i as u64);
            }
        }
        index
    }

    /// Whether the oldest waiting message is of connection `id`, channel `ch` (and so the
    /// oldest of theirs).
    fn front_is(&self, id: ConnectionId, ch: u8) -> bool {
        self.order
            .front()
            .is_some_and(|(i, m)| *i == id && m.channel.get() == ch)
    }

    /// The next message of one connection and channel.
    pub(crate) fn pop(&mut self, id: ConnectionId, ch: u8) -> Option<Message> {
        if self.front_is(id, ch) {
            return self.pop_any().map(|(_, m)| m);
        }
        if self.order.is_empty() {
            return None;
        }
        let ticket = self.index().get_mut(&(id, ch))?.pop_front()?;
        let pos = usize::try_from(ticket.checked_sub(self.base)?).ok()?;
        let (_, m) = self.order.get_mut(pos)?;
        let m = std::mem::replace(m, taken_slot());
        if let Some(t) = self.taken.get_mut(pos) {
            *t = true;
        }
        self.queued -= 1;
        self.trim();
        // Taken messages behind one that waits: drop them once they outnumber the live ones.
        if self.order.len() > 2 * self.queued + 64 {
            self.compact();
        }
        Some(m)
    }

    /// Drops the taken slots and renumbers the tickets. O(waiting messages).
    fn compact(&mut self) {
        let taken = &self.taken;
        let mut i = 0;
        self.order.retain(|_| {
            i += 1;
            taken.get(i - 1) != Some(&true)
        });
        // Rebuilt from the messages that wait.
        self.active = false;
        self.index();
    }

    /// Size of the next message of one connection and channel.
    pub(crate) fn peek_len(&mut self, id: ConnectionId, ch: u8) -> Option<usize> {
        if self.front_is(id, ch) {
            return self.order.front().map(|(_, m)| m.payload.len());
        }
        if self.order.is_empty() {
            return None;
        }
        let ticket = *self.index().get(&(id, ch))?.front()?;
        let pos = usize::try_from(ticket.checked_sub(self.base)?).ok()?;
        self.order.get(pos).map(|(_, m)| m.payload.len())
    }

    /// Messages of one connection waiting (all channels).
    pub(crate) fn connection_len(&mut self, id: ConnectionId) -> usize {
        if self.order.is_empty() {
            return 0;
        }
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

    #[test]
    fn appended_queues_keep_order_with_and_without_the_index() {
        let mut m = Mailbox::default();
        let (a, b) = (ConnectionId::from_raw(1), ConnectionId::from_raw(2));
        let mut q: VecDeque<_> = [(a, msg(0, 1)), (b, msg(0, 2)), (a, msg(1, 3))].into();
        m.append(&mut q);
        assert!(q.is_empty() && m.index.is_none(), "taken whole, no index");
        // The front message of its channel is taken without the index.
        assert_eq!(m.pop(a, 0).map(|x| x.payload[0]), Some(1));
        assert!(m.index.is_none());
        // Out of order: the index is built and kept in step with what is appended.
        assert_eq!(m.pop(a, 1).map(|x| x.payload[0]), Some(3));
        q.extend([(a, msg(1, 4)), (b, msg(0, 5))]);
        m.append(&mut q);
        assert_eq!(
            (m.connection_len(a), m.connection_len(b), m.len()),
            (1, 2, 3)
        );
        assert_eq!(m.pop(b, 0).map(|x| x.payload[0]), Some(2));
        assert_eq!(m.pop(a, 1).map(|x| x.payload[0]), Some(4));
        assert_eq!(m.pop_any().map(|(id, x)| (id, x.payload[0])), Some((b, 5)));
        assert!(m.pop_any().is_none() && m.order.is_empty() && m.len() == 0);
    }
}
