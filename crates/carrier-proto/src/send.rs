//! The send side of a connection: per-stream numbering, the priority queues, the weighted fair
//! scheduler, fragmentation, flow control and the bookkeeping of reliable frames in flight
//! (docs/protocol.md §8, §9, §10, §16).
//!
//! Messages are numbered when they are queued (`s` and `r` per stream), so transmission order
//! (decided here, by priority) never changes delivery order within a stream: each priority of a
//! channel is a stream of its own.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};

use crate::arena::PayloadArena;
use crate::frame::{EncodeContext, OutMessage};
use crate::recv::{fragmented_message_cost, message_cost};
use crate::small::FragmentBits;
use crate::wire::Writer;
use crate::{Priority, StreamKey};

/// How long a queued message may keep sharing its payload buffer (crate::arena): after that it
/// is copied into a buffer of its own, so a connection that cannot send keeps no shared chunks
/// alive. Bounds the chunks pinned by queued messages to those written in this time.
const DETACH_AFTER: Duration = Duration::from_millis(100);

/// Queued bytes from which waiting messages are detached into the connection's own arena
/// rather than into buffers of their own: the queue is deep, so its payloads fill that arena's
/// chunks densely and release them in order as it drains.
const DENSE_QUEUE_BYTES: usize = crate::arena::MAX_CHUNK;

/// Gives `payload` a buffer of its own if it shares one (crate::arena).
fn detach(payload: &mut Bytes) {
    if !payload.is_unique() {
        *payload = Bytes::copy_from_slice(payload);
    }
}

/// One reliable frame in flight: what is needed to send it again (docs/protocol.md §13).
#[derive(Clone, Debug)]
pub(crate) struct ReliableFrame {
    pub key: StreamKey,
    pub seq: u64,
    pub rel: u64,
    pub fragment: Option<(u64, u64)>,
    pub payload: Bytes,
}

/// A queued message, or what is left of it while its fragments leave.
#[derive(Debug)]
struct Outgoing {
    key: StreamKey,
    reliable: bool,
    seq: u64,
    rel: u64,
    payload: Bytes,
    /// Fragment size and the next fragment index, for messages split in fragments.
    fragments: Option<(usize, u64)>,
    /// When it was queued (unreliable messages expire, docs/protocol.md §16). While
    /// provisional (one of the last `SendState::provisional` messages of its queue), the last
    /// instant the connection knew when the message was queued (the message was queued at or
    /// after it); [`SendState::stamp`] replaces it with the next instant the connection learns.
    queued_at: Instant,
}

impl Outgoing {
    /// Flow-control cost, the same the receiver charges (docs/protocol.md §10).
    fn cost(&self) -> usize {
        match self.fragments {
            Some((size, _)) => fragmented_message_cost(self.fragment_count(), size),
            None => message_cost(self.payload.len()),
        }
    }

    fn fragment_count(&self) -> u64 {
        match self.fragments {
            Some((size, _)) => self.payload.len().div_ceil(size.max(1)) as u64,
            None => 1,
        }
    }
}

/// Acknowledgement state of one reliable message sent on a stream (for flow control).
#[derive(Debug)]
struct Unacked {
    cost: usize,
    fragments: u64,
    acked_fragments: u64,
    /// One bit per fragment, only for fragmented messages.
    acked_bits: FragmentBits,
    done: bool,
}

/// Per-stream send numbering and the reliable messages not yet all acknowledged.
#[derive(Debug)]
struct SendStream {
    next_seq: u64,
    next_rel: u64,
    /// Reliable index of `unacked[0]`.
    front_rel: u64,
    unacked: VecDeque<Unacked>,
}

impl SendStream {
    fn new(initial: u64) -> Self {
        SendStream {
            next_seq: initial,
            next_rel: initial,
            front_rel: initial,
            unacked: VecDeque::new(),
        }
    }

    fn entry(&mut self, rel: u64) -> Option<&mut Unacked> {
        let idx = usize::try_from(rel.checked_sub(self.front_rel)?).ok()?;
        self.unacked.get_mut(idx)
    }

    fn is_acked(&self, rel: u64, fragment: Option<(u64, u64)>) -> bool {
        let Some(idx) = rel.checked_sub(self.front_rel) else {
            return true;
        };
        let Some(u) = usize::try_from(idx).ok().and_then(|i| self.unacked.get(i)) else {
            return false;
        };
        if u.done {
            return true;
        }
        match fragment {
            Some((index, _)) => u.acked_bits.get(index),
            None => false,
        }
    }
}

/// Marks `frame` acknowledged in its stream's record (fragments one by one).
fn mark_acked(stream: &mut SendStream, frame: &ReliableFrame) {
    let Some(u) = stream.entry(frame.rel) else {
        return;
    };
    if u.done {
        return;
    }
    match frame.fragment {
        Some((index, _)) => {
            if u.acked_bits.set(index) {
                u.acked_fragments += 1;
            }
            if u.acked_fragments >= u.fragments {
                u.done = true;
            }
        }
        None => u.done = true,
    }
}

/// Smallest fragment a message is split into to fill the rest of a packet: below it the packet
/// leaves with its room unused rather than carry a run of small fragments.
pub(crate) const MIN_FILL_FRAGMENT: usize = 256;

/// Largest header of a fragment frame whose index and count are below 64: flags, channel, `s`
/// and `r`, index, count and a length of up to 4 bytes (docs/protocol.md §8).
const FILL_FRAGMENT_HEADER: usize = 1 + 1 + 8 + 1 + 1 + 4;

/// The fragment size that lets the whole (unfragmented, reliable) message `head` start in the
/// `room` bytes left in the packet being filled, if it does not fit there whole and the room
/// is worth it: fragments of at least [`MIN_FILL_FRAGMENT`] bytes, the first filling the room,
/// never larger than the connection's `fragment_size`. `None` when it fits whole (it is
/// written as it is) or when the room is too small (it waits for the next packet).
fn fill_split(
    ctx: &EncodeContext,
    head: &Outgoing,
    room: usize,
    fragment_size: usize,
) -> Option<usize> {
    let len = head.payload.len();
    if len <= MIN_FILL_FRAGMENT {
        return None;
    }
    let whole = OutMessage {
        channel: head.key.channel.get(),
        priority: head.key.priority,
        reliable: true,
        seq: head.seq,
        rel: head.rel,
        fragment: None,
        len,
    };
    if ctx.header_len(&whole).saturating_add(len) <= room {
        return None;
    }
    let c = room
        .checked_sub(FILL_FRAGMENT_HEADER)?
        .min(fragment_size)
        .min(len - 1);
    // At least 2 fragments (c < len); at most len / 256 + 1 < 64 for messages that are not
    // fragmented anyway, so the index and count fit the 1-byte varints counted above.
    (c >= MIN_FILL_FRAGMENT && len.div_ceil(c) < 64).then_some(c)
}

/// Result of filling one packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Filled {
    /// Message frames written.
    pub frames: usize,
    /// User payload bytes written.
    pub payload_bytes: usize,
    /// Of which retransmitted.
    pub resent_bytes: usize,
}

/// The send side of one connection.
#[derive(Debug)]
pub(crate) struct SendState {
    initial: u64,
    streams: Vec<Option<Box<SendStream>>>,
    queues: [VecDeque<Outgoing>; 3],
    /// Messages at the front of each queue that waited longer than [`DETACH_AFTER`] and were
    /// given buffers of their own.
    detached: [usize; 3],
    retransmit: [VecDeque<ReliableFrame>; 3],
    /// Weighted fair queueing virtual finish times, in bytes × 8 / weight.
    vtime: [u64; 3],
    global_vtime: u64,
    queued_bytes: usize,
    queued_messages: usize,
    /// Cost of reliable messages sent at or after each stream's oldest unacknowledged one.
    window_used: usize,
    peer_window: usize,
    /// Payload bytes of every fragment but the last.
    fragment_size: usize,
    /// How long an unreliable message may wait to be sent before it is dropped.
    unreliable_ttl: Duration,
    /// Unreliable messages dropped because they waited longer than `unreliable_ttl`.
    expired: u64,
    /// The instant of the packet being filled.
    now: Instant,
    /// Whether a message was queued since the last [`stamp`](Self::stamp) (the connection
    /// stamps on every input and poll; most find nothing to stamp).
    unstamped: bool,
    /// Messages queued in each class since the last [`stamp`](Self::stamp): the provisional
    /// ones are the last `min(provisional[p], queues[p].len())` of the queue (messages leave
    /// from the front only).
    provisional: [usize; 3],
    /// Chunks of this connection's own for the payloads `detach_waiting` copies out of the
    /// endpoint's shared arena while the queue is deep (a bulk sender would otherwise allocate
    /// a buffer per message); dropped when the queues are empty.
    detach_arena: Option<Box<PayloadArena>>,
}

impl SendState {
    pub(crate) fn new(initial: u64, now: Instant) -> Self {
        SendState {
            initial,
            streams: Vec::new(),
            queues: Default::default(),
            detached: [0; 3],
            retransmit: Default::default(),
            vtime: [0; 3],
            global_vtime: 0,
            queued_bytes: 0,
            queued_messages: 0,
            window_used: 0,
            peer_window: usize::MAX,
            fragment_size: 1024,
            unreliable_ttl: Duration::from_millis(200),
            expired: 0,
            now,
            unstamped: false,
            provisional: [0; 3],
            detach_arena: None,
        }
    }

    /// Sets the agreed parameters once the handshake is done.
    pub(crate) fn configure(&mut self, peer_window: usize, fragment_size: usize) {
        self.peer_window = peer_window;
        self.fragment_size = fragment_size.max(1);
    }

    /// Sets how long unreliable messages may wait (docs/protocol.md §16).
    pub(crate) fn set_unreliable_ttl(&mut self, ttl: Duration) {
        self.unreliable_ttl = ttl;
    }

    /// Unreliable messages dropped because they could not leave in time.
    pub(crate) fn expired(&self) -> u64 {
        self.expired
    }

    /// Payload bytes queued and not yet sent once.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Messages queued and not yet fully sent once.
    pub(crate) fn queued_messages(&self) -> usize {
        self.queued_messages
    }

    /// Whether anything (new or to resend) waits.
    pub(crate) fn has_pending(&self) -> bool {
        self.queues.iter().any(|q| !q.is_empty()) || self.retransmit.iter().any(|q| !q.is_empty())
    }

    #[inline]
    fn stream(&mut self, key: StreamKey) -> &mut SendStream {
        let idx = key.index();
        if self.streams.len() <= idx {
            self.streams.resize_with(idx + 1, || None);
        }
        let initial = self.initial;
        self.streams[idx].get_or_insert_with(|| Box::new(SendStream::new(initial)))
    }

    /// Queues a message, numbering it in its stream. `max_unsplit` is the largest payload sent
    /// without fragmentation; `now` is the last instant the connection knew, a provisional
    /// queueing time until [`stamp`](Self::stamp).
    #[inline]
    pub(crate) fn enqueue(
        &mut self,
        key: StreamKey,
        reliable: bool,
        payload: Bytes,
        max_unsplit: usize,
        now: Instant,
    ) {
        let fragment_size = self.fragment_size;
        let stream = self.stream(key);
        let seq = stream.next_seq;
        let rel = stream.next_rel;
        stream.next_seq += 1;
        if reliable {
            stream.next_rel += 1;
        }
        let fragments = (payload.len() > max_unsplit).then_some((fragment_size, 0));
        let p = key.priority.index();
        if self.queues[p].is_empty() && self.retransmit[p].is_empty() {
            // A class that becomes backlogged starts at the current virtual time: no credit is
            // banked while idle (docs/protocol.md §16).
            self.vtime[p] = self.vtime[p].max(self.global_vtime);
        }
        self.queued_bytes += payload.len();
        self.queued_messages += 1;
        self.unstamped = true;
        self.provisional[p] += 1;
        self.queues[p].push_back(Outgoing {
            key,
            reliable,
            seq,
            rel,
            payload,
            fragments,
            queued_at: now,
        });
    }

    /// The connection learned the time `now`: messages queued since it last did were queued at
    /// or before `now`, and their TTL counts from it (docs/protocol.md §16). `enqueue` takes no
    /// exact clock: `Endpoint::send` has none, and a stamp from before a pause in which the
    /// connection saw no time (an idle connection, a stalled caller) would expire a message
    /// that never had a chance to leave. O(1) amortized: the provisional messages are the tail
    /// of each queue, each is stamped once. `now` is at or after every provisional queueing
    /// time (the connection's clock, which never goes back, gives both).
    pub(crate) fn stamp(&mut self, now: Instant) {
        if !std::mem::take(&mut self.unstamped) {
            return;
        }
        for (q, provisional) in self.queues.iter_mut().zip(&mut self.provisional) {
            let n = std::mem::take(provisional).min(q.len());
            if n == 0 {
                continue;
            }
            for m in q.range_mut(q.len() - n..) {
                debug_assert!(m.queued_at <= now, "stamp before the queueing time");
                m.queued_at = now;
            }
        }
    }

    /// Whether a new reliable message of flow-control cost `cost` may start under the peer's
    /// window (one message is always allowed).
    fn window_allows(&self, cost: usize) -> bool {
        self.window_used == 0 || self.window_used.saturating_add(cost) <= self.peer_window
    }

    /// Writes message frames into `w` (retransmissions first, then new messages by weighted fair
    /// queueing) while they fit. Reliable frames written are appended to `sent`.
    pub(crate) fn fill(
        &mut self,
        w: &mut Writer<'_>,
        ctx: &mut EncodeContext,
        sent: &mut Vec<ReliableFrame>,
        now: Instant,
    ) -> Filled {
        self.now = now;
        self.expire_unreliable(now);
        self.detach_waiting(now);
        let mut filled = Filled::default();
        // 1. Retransmissions, by priority (docs/protocol.md §16).
        for p in 0..3 {
            while let Some(frame) = self.retransmit[p].front() {
                let acked = self
                    .streams
                    .get(frame.key.index())
                    .and_then(|s| s.as_ref())
                    .is_none_or(|s| s.is_acked(frame.rel, frame.fragment));
                if acked {
                    self.retransmit[p].pop_front();
                    continue;
                }
                let m = OutMessage {
                    channel: frame.key.channel.get(),
                    priority: frame.key.priority,
                    reliable: true,
                    seq: frame.seq,
                    rel: frame.rel,
                    fragment: frame.fragment,
                    len: frame.payload.len(),
                };
                // Writes nothing if it does not fit.
                if ctx.write(w, &m, &frame.payload).is_err() {
                    break;
                }
                filled.frames += 1;
                filled.payload_bytes += m.len;
                filled.resent_bytes += m.len;
                if let Some(frame) = self.retransmit[p].pop_front() {
                    sent.push(frame);
                }
            }
        }
        // 2. New messages, weighted fair queueing across priorities.
        let mut blocked = [false; 3];
        while let Some(p) = (0..3)
            .filter(|&p| !blocked[p] && !self.queues[p].is_empty())
            .min_by_key(|&p| (self.vtime[p], p))
        {
            // Writing from class `p` changes only its own queue and virtual time: it stays the
            // choice while it is ahead of the best other class (computed once, not per frame).
            let rival = (0..3)
                .filter(|&q| q != p && !blocked[q] && !self.queues[q].is_empty())
                .map(|q| (self.vtime[q], q))
                .min();
            let weight = Priority::from_index(p).map_or(1, Priority::weight);
            loop {
                match self.write_next(p, w, ctx, sent) {
                    Some(bytes) => {
                        self.global_vtime = self.vtime[p];
                        self.vtime[p] += (bytes as u64).max(1) * 8 / weight;
                        filled.frames += 1;
                        filled.payload_bytes += bytes;
                    }
                    None => {
                        blocked[p] = true;
                        break;
                    }
                }
                if self.queues[p].is_empty() || rival.is_some_and(|r| r < (self.vtime[p], p)) {
                    break;
                }
            }
        }
        filled
    }

    /// Drops unreliable messages that waited longer than the TTL and have not started to leave
    /// (docs/protocol.md §16: unreliable data that cannot leave in time is dropped, counted,
    /// never queued without bound). Amortized O(1): only queue heads are examined, and every
    /// expired message is removed once.
    pub(crate) fn expire_unreliable(&mut self, now: Instant) {
        for p in 0..3 {
            self.expire_queue(p, now);
        }
    }

    /// [`expire_unreliable`](Self::expire_unreliable) of priority class `p` only.
    #[inline]
    fn expire_queue(&mut self, p: usize, now: Instant) {
        let (q, detached) = (&mut self.queues[p], &mut self.detached[p]);
        while let Some(head) = q.front() {
            let fresh = head.reliable
                || head.fragments.is_some_and(|(_, next)| next > 0)
                || now.saturating_duration_since(head.queued_at) <= self.unreliable_ttl;
            if fresh {
                break;
            }
            if let Some(m) = q.pop_front() {
                *detached = detached.saturating_sub(1);
                self.queued_bytes = self.queued_bytes.saturating_sub(m.payload.len());
                self.queued_messages = self.queued_messages.saturating_sub(1);
                self.expired += 1;
            }
        }
    }

    /// Gives the messages that waited longer than [`DETACH_AFTER`] buffers of their own.
    /// Amortized O(1): each message is examined once, from the front of its queue.
    /// A deep queue copies them into the connection's own arena (see `detach_arena`).
    fn detach_waiting(&mut self, now: Instant) {
        if self.queued_messages == 0 {
            self.detach_arena = None;
            return;
        }
        let dense = self.queued_bytes >= DENSE_QUEUE_BYTES;
        for (q, detached) in self.queues.iter_mut().zip(&mut self.detached) {
            while let Some(m) = q.get_mut(*detached) {
                // Queued at `now` (stamped by this very poll) is the common case: a comparison
                // answers it.
                if m.queued_at >= now || now.saturating_duration_since(m.queued_at) <= DETACH_AFTER
                {
                    break;
                }
                if dense && !m.payload.is_unique() {
                    let arena = self.detach_arena.get_or_insert_with(Box::default);
                    m.payload = arena.copy(&m.payload);
                } else {
                    detach(&mut m.payload);
                }
                *detached += 1;
            }
        }
    }

    /// Writes the next frame of priority class `p`; `None` if it does not fit or flow control
    /// holds it.
    fn write_next(
        &mut self,
        p: usize,
        w: &mut Writer<'_>,
        ctx: &mut EncodeContext,
        sent: &mut Vec<ReliableFrame>,
    ) -> Option<usize> {
        // `fill` expired every queue at `now`: the heads it left stay fresh at `now`, only a
        // head this class exposed since (by sending) may have expired.
        self.expire_queue(p, self.now);
        let head = self.queues[p].front()?;
        let starting = head.fragments.is_none_or(|(_, next)| next == 0);
        // A reliable message that does not fit in what is left of the packet starts there and
        // goes on in the next one (docs/protocol.md §16, "Filling packets").
        let split = if head.reliable && head.fragments.is_none() {
            fill_split(ctx, head, w.remaining(), self.fragment_size)
        } else {
            None
        };
        let cost = match split {
            Some(c) => fragmented_message_cost(head.payload.len().div_ceil(c) as u64, c),
            None => head.cost(),
        };
        if head.reliable && starting && !self.window_allows(cost) {
            return None;
        }
        if let Some(c) = split {
            self.queues[p].front_mut()?.fragments = Some((c, 0));
        }
        let head = self.queues[p].front()?;
        let count = head.fragment_count();
        // The bytes of this frame: a fragment's range, or the whole message. Nothing is cloned
        // yet: a whole message's `Bytes` moves into the retransmission record below, so the
        // send path allocates nothing beyond the message itself.
        let (range, fragment, last) = match head.fragments {
            Some((size, next)) => {
                let start = usize::try_from(next).ok()?.checked_mul(size)?;
                let end = (start + size).min(head.payload.len());
                (start..end, Some((next, count)), next + 1 == count)
            }
            None => (0..head.payload.len(), None, true),
        };
        let len = range.len();
        let m = OutMessage {
            channel: head.key.channel.get(),
            priority: head.key.priority,
            reliable: head.reliable,
            seq: head.seq,
            rel: head.rel,
            fragment,
            len,
        };
        // Writes nothing if it does not fit.
        ctx.write(w, &m, head.payload.get(range.clone())?).ok()?;
        let (key, reliable, seq, rel, total) = (
            head.key,
            head.reliable,
            head.seq,
            head.rel,
            head.payload.len(),
        );
        if reliable && starting {
            let stream = self.stream(key);
            stream.unacked.push_back(Unacked {
                cost,
                fragments: count,
                acked_fragments: 0,
                acked_bits: if count > 1 {
                    FragmentBits::new(count)
                } else {
                    FragmentBits::default()
                },
                done: false,
            });
            self.window_used += cost;
        }
        let payload = if last {
            self.queued_bytes = self.queued_bytes.saturating_sub(total);
            self.queued_messages = self.queued_messages.saturating_sub(1);
            // Only the payload of the message is still needed.
            let mut payload = self.queues[p].pop_front()?.payload;
            self.detached[p] = self.detached[p].saturating_sub(1);
            if fragment.is_some() {
                // The last fragment, which ends the message: the message's own `Bytes`,
                // advanced, rather than a new slice and a drop (two writes of the chunk's
                // reference count, crate::arena).
                debug_assert_eq!(range.end, payload.len());
                payload.advance(range.start);
            }
            payload
        } else {
            let head = self.queues[p].front_mut()?;
            if let Some((_, next)) = head.fragments.as_mut() {
                *next += 1;
            }
            if reliable {
                head.payload.slice(range)
            } else {
                bytes::Bytes::new()
            }
        };
        if reliable {
            sent.push(ReliableFrame {
                key,
                seq,
                rel,
                fragment,
                payload,
            });
        }
        Some(len)
    }

    /// A reliable frame was acknowledged.
    #[cfg(test)]
    pub(crate) fn on_acked(&mut self, frame: &ReliableFrame) {
        self.on_acked_frames(std::slice::from_ref(frame));
    }

    /// The reliable frames of one packet were acknowledged: [`on_acked`](Self::on_acked) of
    /// each, with the stream looked up once per run of frames of one stream and its front
    /// released once per run.
    pub(crate) fn on_acked_frames(&mut self, frames: &[ReliableFrame]) {
        let mut rest = frames;
        while let Some(first) = rest.first() {
            let key = first.key;
            let run = rest.iter().position(|f| f.key != key).unwrap_or(rest.len());
            let (same, next) = rest.split_at(run);
            rest = next;
            let Some(Some(stream)) = self.streams.get_mut(key.index()) else {
                continue;
            };
            for frame in same {
                // The oldest message whole (acknowledgements mostly come in order): released
                // at once, as the loop below would once it is marked.
                if frame.fragment.is_none()
                    && frame.rel == stream.front_rel
                    && let Some(u) = stream.unacked.pop_front()
                {
                    self.window_used = self.window_used.saturating_sub(u.cost);
                    stream.front_rel += 1;
                    continue;
                }
                mark_acked(stream, frame);
            }
            while stream.unacked.front().is_some_and(|u| u.done) {
                if let Some(u) = stream.unacked.pop_front() {
                    self.window_used = self.window_used.saturating_sub(u.cost);
                }
                stream.front_rel += 1;
            }
        }
    }

    /// A reliable frame was lost: queue it for retransmission unless it was acknowledged since.
    /// Its payload gets a buffer of its own: a frame lost once may stay long.
    pub(crate) fn on_lost(&mut self, mut frame: ReliableFrame) {
        let acked = self
            .streams
            .get(frame.key.index())
            .and_then(|s| s.as_ref())
            .is_none_or(|s| s.is_acked(frame.rel, frame.fragment));
        if !acked {
            let p = frame.key.priority.index();
            if self.queues[p].is_empty() && self.retransmit[p].is_empty() {
                self.vtime[p] = self.vtime[p].max(self.global_vtime);
            }
            detach(&mut frame.payload);
            self.retransmit[p].push_back(frame);
        }
    }

    /// Drops everything queued (the connection is closing).
    pub(crate) fn clear(&mut self) {
        for q in &mut self.queues {
            q.clear();
        }
        self.detached = [0; 3];
        self.provisional = [0; 3];
        for q in &mut self.retransmit {
            q.clear();
        }
        self.queued_bytes = 0;
        self.queued_messages = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChannelId;

    #[allow(clippy::disallowed_methods)] // a fixed base instant for these unit tests
    fn t() -> Instant {
        use std::sync::OnceLock;
        static T: OnceLock<Instant> = OnceLock::new();
        *T.get_or_init(Instant::now)
    }

    fn key(channel: u8, priority: Priority) -> StreamKey {
        StreamKey {
            channel: ChannelId::new(channel),
            priority,
        }
    }

    fn fill_packet(s: &mut SendState, cap: usize) -> (Vec<ReliableFrame>, Filled) {
        let mut buf = vec![0u8; cap];
        let mut w = Writer::new(&mut buf);
        let mut ctx = EncodeContext::default();
        let mut sent = Vec::new();
        let f = s.fill(&mut w, &mut ctx, &mut sent, t());
        (sent, f)
    }

    #[test]
    fn saturated_priorities_share_bytes_by_weight() {
        let mut s = SendState::new(0, t());
        for _ in 0..2000 {
            for p in Priority::ALL {
                s.enqueue(key(0, p), true, Bytes::from(vec![0u8; 100]), 1000, t());
            }
        }
        let mut bytes = [0usize; 3];
        for _ in 0..100 {
            let (sent, _) = fill_packet(&mut s, 1200);
            for f in &sent {
                bytes[f.key.priority.index()] += f.payload.len();
                s.on_acked(f);
            }
        }
        let total: usize = bytes.iter().sum();
        let share = |i: usize| bytes[i] as f64 / total as f64;
        assert!((share(0) - 8.0 / 13.0).abs() < 0.02, "{bytes:?}");
        assert!((share(1) - 4.0 / 13.0).abs() < 0.02, "{bytes:?}");
        assert!((share(2) - 1.0 / 13.0).abs() < 0.02, "{bytes:?}");
    }

    #[test]
    fn idle_high_goes_first_when_it_gets_data() {
        let mut s = SendState::new(0, t());
        for _ in 0..50 {
            s.enqueue(
                key(0, Priority::Low),
                false,
                Bytes::from(vec![0u8; 100]),
                1000,
                t(),
            );
        }
        let _ = fill_packet(&mut s, 1200);
        s.enqueue(
            key(1, Priority::High),
            true,
            Bytes::from_static(b"urgent"),
            1000,
            t(),
        );
        let (sent, _) = fill_packet(&mut s, 1200);
        assert_eq!(
            sent.first().map(|f| f.payload.as_ref()),
            Some(&b"urgent"[..])
        );
    }

    #[test]
    fn reliable_messages_fill_packets_and_reassemble_in_order() {
        let mut s = SendState::new(0, t());
        s.configure(usize::MAX, 1300);
        let k = key(0, Priority::Normal);
        let messages: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 1024]).collect();
        for m in &messages {
            s.enqueue(k, true, Bytes::from(m.clone()), 1300, t());
        }
        // A small unreliable message is never split, even where it would not fit.
        s.enqueue(k, false, Bytes::from(vec![99u8; 200]), 1300, t());
        let mut packets = 0;
        let mut frames = Vec::new();
        while s.has_pending() {
            let (sent, f) = fill_packet(&mut s, 1340);
            assert!(f.frames > 0, "every packet carries something");
            packets += 1;
            frames.extend(sent);
        }
        // Whole, 1,024 B messages would take 40 packets of 1,340 B; filled, 33.
        assert!(packets <= 34, "{packets} packets for 40 messages");
        // The frames of each message, concatenated, are the message; fragments are at least
        // MIN_FILL_FRAGMENT long but for the last, and have one size per message.
        for (i, m) in messages.iter().enumerate() {
            let parts: Vec<&ReliableFrame> = frames.iter().filter(|f| f.rel == i as u64).collect();
            let joined: Vec<u8> = parts.iter().flat_map(|f| f.payload.to_vec()).collect();
            assert_eq!(&joined, m, "message {i}");
            if parts.len() > 1 {
                let c = parts[0].payload.len();
                assert!(c >= MIN_FILL_FRAGMENT);
                for (j, f) in parts.iter().enumerate() {
                    assert_eq!(f.fragment, Some((j as u64, parts.len() as u64)));
                    assert!(f.payload.len() <= c);
                    if j + 1 < parts.len() {
                        assert_eq!(f.payload.len(), c);
                    }
                }
            }
        }
        assert!(frames.len() > 40, "some messages were split");
    }

    #[test]
    fn fragments_and_window() {
        let mut s = SendState::new(0, t());
        s.configure(fragmented_message_cost(3, 1000) + message_cost(10), 1000);
        s.enqueue(
            key(0, Priority::Normal),
            true,
            Bytes::from(vec![7u8; 3000]),
            1000,
            t(),
        );
        s.enqueue(
            key(0, Priority::Normal),
            true,
            Bytes::from(vec![1u8; 10]),
            1000,
            t(),
        );
        s.enqueue(
            key(0, Priority::Normal),
            true,
            Bytes::from(vec![2u8; 10]),
            1000,
            t(),
        );
        let mut all = Vec::new();
        for _ in 0..6 {
            let (sent, _) = fill_packet(&mut s, 1100);
            all.extend(sent);
        }
        // 3 fragments + the first small message; the third message waits for the window.
        assert_eq!(all.len(), 4, "{all:?}");
        assert_eq!(all[0].fragment, Some((0, 3)));
        assert_eq!(all[2].fragment, Some((2, 3)));
        assert_eq!(all[2].payload.len(), 1000);
        for f in &all[..3] {
            s.on_acked(f);
        }
        let (sent, _) = fill_packet(&mut s, 1100);
        assert_eq!(sent.len(), 1, "window reopened");
        assert_eq!(sent[0].rel, 2);
    }

    #[test]
    fn lost_frames_are_resent_first_unless_acked() {
        let mut s = SendState::new(0, t());
        s.enqueue(
            key(0, Priority::Normal),
            true,
            Bytes::from_static(b"a"),
            1000,
            t(),
        );
        s.enqueue(
            key(0, Priority::Normal),
            true,
            Bytes::from_static(b"b"),
            1000,
            t(),
        );
        let (sent, _) = fill_packet(&mut s, 1200);
        assert_eq!(sent.len(), 2);
        s.on_acked(&sent[1]);
        s.on_lost(sent[0].clone());
        s.on_lost(sent[1].clone());
        s.enqueue(
            key(0, Priority::Normal),
            true,
            Bytes::from_static(b"c"),
            1000,
            t(),
        );
        let (again, f) = fill_packet(&mut s, 1200);
        assert_eq!(again.len(), 2);
        assert_eq!(&again[0].payload[..], b"a");
        assert_eq!(&again[1].payload[..], b"c");
        assert_eq!(f.resent_bytes, 1);
    }
}

#[cfg(test)]
mod detach_tests {
    use super::*;
    use crate::ChannelId;
    use bytes::BytesMut;

    /// Two payloads cut from one shared chunk, as `PayloadArena` makes them.
    fn shared_pair() -> (Bytes, Bytes) {
        let mut chunk = BytesMut::with_capacity(64);
        chunk.extend_from_slice(b"first");
        let a = chunk.split().freeze();
        chunk.extend_from_slice(b"second");
        (a, chunk.split().freeze())
    }

    fn normal_key() -> StreamKey {
        StreamKey {
            channel: ChannelId::new(0),
            priority: Priority::Normal,
        }
    }

    fn fill(s: &mut SendState, now: Instant) -> Vec<ReliableFrame> {
        let mut buf = vec![0u8; 1200];
        let mut w = Writer::new(&mut buf);
        let mut sent = Vec::new();
        s.fill(&mut w, &mut EncodeContext::default(), &mut sent, now);
        sent
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a base instant for this unit test
    fn long_queued_and_lost_payloads_stop_sharing_their_chunk() {
        let t0 = Instant::now();
        let key = normal_key();
        let mut s = SendState::new(0, t0);
        // A window of one message: the second waits in the queue.
        s.configure(message_cost(5), 1000);
        let (a, b) = shared_pair();
        s.enqueue(key, true, a, 1000, t0);
        s.enqueue(key, true, b, 1000, t0);
        let sent = fill(&mut s, t0);
        assert_eq!(sent.len(), 1);
        assert!(!sent[0].payload.is_unique(), "sent at once: still shared");
        // Still waiting after DETACH_AFTER: the queued one gets its own buffer.
        let later = t0 + DETACH_AFTER + Duration::from_millis(1);
        assert!(fill(&mut s, later).is_empty());
        assert!(s.queues[Priority::Normal.index()][0].payload.is_unique());
        assert_eq!(
            &s.queues[Priority::Normal.index()][0].payload[..],
            b"second"
        );
        assert_eq!(s.queued_bytes(), 6);
        // The first is lost: its retransmission has its own buffer too.
        s.on_lost(sent[0].clone());
        drop(sent);
        let again = fill(&mut s, later);
        assert_eq!(again.len(), 1);
        assert_eq!(&again[0].payload[..], b"first");
        assert!(again[0].payload.is_unique());
        s.on_acked(&again[0]);
        let last = fill(&mut s, later);
        assert_eq!(&last[0].payload[..], b"second");
        assert_eq!(s.queued_bytes(), 0);
        assert_eq!(s.detached, [0; 3]);
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a base instant for this unit test
    fn a_deep_queue_detaches_into_the_connections_own_chunks() {
        let t0 = Instant::now();
        let key = normal_key();
        let mut s = SendState::new(0, t0);
        // A window of one message: everything else waits.
        s.configure(message_cost(1000), 1000);
        let mut shared = crate::arena::PayloadArena::default();
        let n = 2 * DENSE_QUEUE_BYTES / 1000 + 2;
        for i in 0..n {
            let p = shared.copy(&[(i % 251) as u8; 1000]);
            s.enqueue(key, true, p, 4000, t0);
        }
        assert_eq!(fill(&mut s, t0).len(), 1);
        let later = t0 + DETACH_AFTER + Duration::from_millis(1);
        assert!(fill(&mut s, later).is_empty());
        let q = &s.queues[Priority::Normal.index()];
        // Copied out of the endpoint's arena, into chunks of the connection's own (shared by
        // several payloads), content intact.
        let arena = s
            .detach_arena
            .as_ref()
            .expect("a deep queue uses the detach arena");
        assert!(
            arena.chunks_allocated() < (n as u64) / 8,
            "{}",
            arena.chunks_allocated()
        );
        for (i, m) in q.iter().enumerate() {
            assert_eq!(m.payload[..], [((i + 1) % 251) as u8; 1000]);
        }
        drop(shared);
        assert!(
            !q[0].payload.is_unique(),
            "shares a chunk of the detach arena"
        );
        // Once the queue is empty the arena goes away.
        s.clear();
        fill(&mut s, later);
        assert!(s.detach_arena.is_none());
    }
}

#[cfg(test)]
mod expiry_tests {
    use super::*;
    use crate::ChannelId;

    #[test]
    #[allow(clippy::disallowed_methods)] // a base instant for this unit test
    fn unreliable_messages_that_cannot_leave_in_time_are_dropped_and_counted() {
        let t0 = Instant::now();
        let mut s = SendState::new(0, t0);
        let key = StreamKey {
            channel: ChannelId::new(0),
            priority: Priority::Normal,
        };
        for i in 0..10u8 {
            s.enqueue(key, i % 2 == 0, Bytes::from(vec![i; 10]), 1000, t0);
        }
        // 300 ms later (TTL 200 ms) the 5 unreliable ones are gone, the reliable ones leave.
        let mut buf = vec![0u8; 1200];
        let mut w = Writer::new(&mut buf);
        let mut sent = Vec::new();
        let f = s.fill(
            &mut w,
            &mut EncodeContext::default(),
            &mut sent,
            t0 + Duration::from_millis(300),
        );
        assert_eq!(s.expired(), 5);
        assert_eq!(f.frames, 5);
        assert!(sent.iter().all(|f| f.payload[0] % 2 == 0));
        assert_eq!(s.queued_messages(), 0);
        assert_eq!(s.queued_bytes(), 0);
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a base instant for this unit test
    fn the_ttl_counts_from_the_first_instant_learned_after_queueing() {
        let t0 = Instant::now();
        let ttl = Duration::from_millis(200);
        let key = StreamKey {
            channel: ChannelId::new(0),
            priority: Priority::Normal,
        };
        let fill_at = |s: &mut SendState, now: Instant| {
            let mut buf = vec![0u8; 1200];
            let mut w = Writer::new(&mut buf);
            s.fill(&mut w, &mut EncodeContext::default(), &mut Vec::new(), now)
        };
        let mut s = SendState::new(0, t0);
        // Queued some time after t0, the last instant known: stamped when 500 ms is learned.
        s.enqueue(key, false, Bytes::from_static(b"a"), 1000, t0);
        s.stamp(t0 + Duration::from_millis(500));
        // A stamp later on changes nothing: the message is no longer provisional.
        s.stamp(t0 + Duration::from_millis(600));
        s.enqueue(
            key,
            false,
            Bytes::from_static(b"b"),
            1000,
            t0 + Duration::from_millis(600),
        );
        s.stamp(t0 + Duration::from_millis(610));
        // "a" waited 201 ms since its stamp: expired; "b" waited 101 ms: sent.
        let f = fill_at(
            &mut s,
            t0 + Duration::from_millis(500) + ttl + Duration::from_millis(1),
        );
        assert_eq!((s.expired(), f.frames), (1, 1));
        assert_eq!(s.queued_messages(), 0);
    }
}
