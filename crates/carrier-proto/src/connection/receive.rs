//! The input half of a connection: handshake packets and `Data` packets
//! (docs/protocol.md §4, §5, §7, §8, §10).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Connection, LAZY_ACK_PACKETS, PROMPT_ACK_PACKETS, Phase, Side, lent};
use crate::arena::{PacketCopy, PayloadArena};
use crate::config::MIN_DATAGRAM_SIZE;
use crate::frame::{Frame, ParseContext, parse_frames};
use crate::handshake::{Handshake, HandshakeDecision, MAX_HANDSHAKE_PAYLOAD};
use crate::packet::{Accept, Challenge, DataHeader, Reject};
use crate::recv::{
    FragmentInfo, IncomingMessage, RecvOutcome, RecvStream, fragmented_message_cost,
};
use crate::time::nanos;
use crate::{
    ChannelId, DisconnectReason, DropReason, Event, Message, Priority, Reliability, StreamKey, seq,
};

/// How long a partial unreliable reassembly may wait for its missing fragments once reassembly
/// memory runs short (docs/protocol.md §9).
const PARTIAL_MAX_AGE: Duration = Duration::from_secs(1);

/// The receive stream `idx`, created on its first message (always `Some`). Inlined for the
/// common case, a stream that exists (looked up twice per message frame); creating one is out
/// of line.
#[inline(always)]
fn stream_slot(
    recv: &mut Vec<Option<Box<RecvStream>>>,
    idx: usize,
    initial: u64,
) -> Option<&mut RecvStream> {
    if !matches!(recv.get(idx), Some(Some(_))) {
        create_stream(recv, idx, initial);
    }
    recv.get_mut(idx)?.as_deref_mut()
}

/// Creates receive stream `idx` (see [`stream_slot`]).
#[cold]
#[inline(never)]
fn create_stream(recv: &mut Vec<Option<Box<RecvStream>>>, idx: usize, initial: u64) {
    if recv.len() <= idx {
        recv.resize_with(idx + 1, || None);
    }
    recv[idx] = Some(Box::new(RecvStream::new(initial)));
}

impl Connection {
    /// Initiator: a `Challenge` for our request (docs/protocol.md §4.2).
    pub(crate) fn handle_challenge(
        &mut self,
        now: Instant,
        ch: &Challenge,
    ) -> Result<(), DropReason> {
        match &mut self.phase {
            Phase::Connecting(c) if ch.initiator_id == self.local_wire_id => {
                c.cookie = ch.cookie;
                c.next_retry = now;
                Ok(())
            }
            _ => Err(DropReason::Unexpected),
        }
    }

    /// Initiator: the acceptor's `Accept` (docs/protocol.md §4.3).
    pub(crate) fn handle_accept(
        &mut self,
        now: Instant,
        acc: &Accept<'_>,
        handshake: &mut dyn Handshake,
    ) -> Result<(), DropReason> {
        if acc.initiator_id != self.local_wire_id {
            return Err(DropReason::UnknownConnection);
        }
        if !matches!(self.phase, Phase::Connecting(_)) {
            // A repeated Accept after we connected: harmless.
            return if acc.acceptor_id == self.remote_wire_id {
                Ok(())
            } else {
                Err(DropReason::Unexpected)
            };
        }
        if acc.acceptor_id == 0 {
            return Err(DropReason::Malformed);
        }
        self.remote_wire_id = acc.acceptor_id;
        let own = self.limits;
        let agreed = acc.limits;
        let acceptable = agreed.channel_count >= 1
            && agreed.channel_count <= own.channel_count
            && agreed.max_message_size >= 1
            && agreed.max_message_size <= own.max_message_size
            && usize::from(agreed.max_datagram_size) >= MIN_DATAGRAM_SIZE
            && agreed.max_datagram_size <= own.max_datagram_size;
        if !acceptable {
            self.close(now, DisconnectReason::LimitsRefused);
            return Ok(());
        }
        if let Err(reason) = handshake.on_accept(self.remote, acc.reply) {
            self.close(now, reason);
            return Ok(());
        }
        self.apply_limits(agreed);
        self.phase = Phase::Connected;
        self.start_health_checks(now);
        self.last_received = self.nanos_at(now);
        self.last_sent = self.last_received;
        lent(&mut self.lent)
            .events
            .push_back(Event::ConnectionEstablished { id: self.id });
        Ok(())
    }

    /// Initiator: the acceptor refused (docs/protocol.md §4.4).
    pub(crate) fn handle_reject(
        &mut self,
        rej: &Reject<'_>,
        handshake: &mut dyn Handshake,
    ) -> Result<(), DropReason> {
        if rej.initiator_id != self.local_wire_id {
            return Err(DropReason::UnknownConnection);
        }
        if !matches!(self.phase, Phase::Connecting(_)) {
            return Err(DropReason::Unexpected);
        }
        let reason = DisconnectReason::from_code(rej.reason);
        handshake.on_reject(self.remote, reason, rej.payload);
        self.fail(reason);
        Ok(())
    }

    /// Acceptor: asks the handshake about a request (first time, or a retry while Pending).
    pub(crate) fn decide(&mut self, now: Instant, handshake: &mut dyn Handshake, payload: &[u8]) {
        if !matches!(self.phase, Phase::Accepting { .. }) {
            return;
        }
        match handshake.on_request(self.id, self.remote, payload) {
            HandshakeDecision::Accept { reply } if reply.len() <= MAX_HANDSHAKE_PAYLOAD => {
                self.phase = Phase::Connected;
                self.start_health_checks(now);
                self.accept_reply = Some(reply.into_boxed_slice());
                self.send_accept = true;
                self.last_received = self.nanos_at(now);
                self.last_sent = self.last_received;
                lent(&mut self.lent)
                    .events
                    .push_back(Event::ConnectionEstablished { id: self.id });
            }
            HandshakeDecision::Accept { reply } => {
                tracing::warn!(
                    len = reply.len(),
                    "handshake reply above 1024 bytes: refusing the connection"
                );
                self.refuse(now, DisconnectReason::HandshakeRejected, Vec::new());
            }
            HandshakeDecision::Reject {
                reason,
                mut payload,
            } => {
                payload.truncate(MAX_HANDSHAKE_PAYLOAD);
                self.refuse(now, reason, payload);
            }
            HandshakeDecision::Pending => {}
        }
    }

    /// Acceptor: refuses the connection; retries get the same `Reject` for the linger time.
    pub(crate) fn refuse(&mut self, now: Instant, reason: DisconnectReason, payload: Vec<u8>) {
        lent(&mut self.lent)
            .events
            .push_back(Event::FailedToConnect {
                id: self.id,
                reason,
            });
        self.phase = Phase::Refused(Box::new(super::Refused {
            reason,
            payload: payload.into_boxed_slice(),
            until: now + self.config.linger,
            send_now: true,
        }));
    }

    /// Acceptor: the initiator sent its request again.
    pub(crate) fn handle_request_retry(
        &mut self,
        now: Instant,
        handshake: &mut dyn Handshake,
        payload: &[u8],
    ) {
        match &mut self.phase {
            Phase::Accepting { .. } => self.decide(now, handshake, payload),
            // Our Accept was lost: send it again.
            Phase::Connected if self.accept_reply.is_some() => self.send_accept = true,
            Phase::Refused(r) => r.send_now = true,
            _ => {}
        }
    }

    /// A `Data` packet from the peer (docs/protocol.md §5). Either the whole packet is applied
    /// or nothing is. Payloads delivered at once are copied into `arena`.
    pub(crate) fn handle_data(
        &mut self,
        now: Instant,
        header: DataHeader,
        datagram: &[u8],
        frames_start: usize,
        arena: &mut PayloadArena,
    ) -> Result<(), DropReason> {
        if header.destination_id != self.local_wire_id {
            return Err(DropReason::UnknownConnection);
        }
        self.advance_clock(now);
        if !self.admit_packet(now) {
            return Err(DropReason::RateLimited);
        }
        if !matches!(
            self.phase,
            Phase::Connected | Phase::Closing(_) | Phase::Draining { .. }
        ) {
            return Err(DropReason::Unexpected);
        }
        let initial = self.config.initial_sequence;
        let expected = self
            .ack_ranges
            .largest()
            .map_or(initial, |l| l.saturating_add(1));
        let pn = seq::expand(header.packet_number, expected);
        if self.ack_ranges.contains(pn) || self.ack_ranges.is_too_old(pn) {
            return Err(DropReason::Duplicate);
        }
        let s = lent(&mut self.lent);
        let mut frames = std::mem::take(&mut s.frames);
        let mut ranges = std::mem::take(&mut s.ranges);
        let mut seqs = std::mem::take(&mut s.seqs);
        let result = self.parse_and_apply(
            now,
            pn,
            datagram,
            frames_start,
            &mut frames,
            &mut ranges,
            &mut seqs,
            arena,
        );
        let s = lent(&mut self.lent);
        s.frames = frames;
        s.ranges = ranges;
        s.seqs = seqs;
        result
    }

    #[allow(clippy::too_many_arguments)] // the scratch vectors are lent, not state
    fn parse_and_apply(
        &mut self,
        now: Instant,
        pn: u64,
        datagram: &[u8],
        frames_start: usize,
        frames: &mut Vec<Frame>,
        ranges: &mut Vec<std::ops::RangeInclusive<u64>>,
        seqs: &mut Vec<(u64, u64)>,
        arena: &mut PayloadArena,
    ) -> Result<(), DropReason> {
        let initial = self.config.initial_sequence;
        let sent_any = self.next_pn > initial;
        let ctx = ParseContext {
            largest_sent: self.next_pn.saturating_sub(1),
            max_ack_ranges: self.config.max_ack_ranges,
            channel_count: self.limits.channel_count,
        };
        let body = datagram.get(frames_start..).ok_or(DropReason::Malformed)?;
        parse_frames(body, frames_start, ctx, frames, ranges).map_err(|_| DropReason::Malformed)?;
        if !sent_any && frames.iter().any(|f| matches!(f, Frame::Ack(_))) {
            return Err(DropReason::Malformed);
        }

        // Pass 1: expand sequence numbers and check the receive window (docs/protocol.md §10).
        seqs.clear();
        let mut charge = 0usize;
        let mut prev: Option<(u64, u64, bool)> = None;
        let max_message = self.budget.max_message_size;
        for frame in frames.iter() {
            let Frame::Message(m) = frame else { continue };
            let key = StreamKey {
                channel: ChannelId::new(m.channel),
                priority: m.priority,
            };
            let Some(stream) = stream_slot(&mut self.recv, key.index(), initial) else {
                // Created if missing: never happens.
                return Err(DropReason::Malformed);
            };
            let (s, r) = match (m.explicit, prev) {
                (Some((s, r)), _) => (
                    seq::expand(s, stream.expected_seq()),
                    seq::expand(r, stream.expected_rel()),
                ),
                (None, Some((ps, pr, reliable))) => {
                    (ps.saturating_add(1), pr.saturating_add(u64::from(reliable)))
                }
                // The parser guarantees a predecessor for implicit numbers.
                (None, None) => return Err(DropReason::Malformed),
            };
            let payload = datagram
                .get(m.payload.clone())
                .ok_or(DropReason::Malformed)?;
            // Malformed frames (above the agreed maximum, impossible or inconsistent fragments)
            // drop the whole packet before anything is applied or acknowledged.
            let cost = match m.fragment {
                None => stream.precheck_whole(m.reliable, r, payload.len(), max_message),
                Some((index, count)) => stream.precheck(
                    &IncomingMessage {
                        seq: s,
                        rel: r,
                        reliable: m.reliable,
                        fragment: Some(FragmentInfo { index, count }),
                        payload,
                    },
                    max_message,
                ),
            }
            .map_err(|_| DropReason::Malformed)?;
            charge = charge.saturating_add(cost);
            seqs.push((s, r));
            prev = Some((s, r, m.reliable));
        }
        let slack = fragmented_message_cost(
            (max_message / self.message_mtu().max(1)) as u64 + 2,
            self.message_mtu(),
        );
        if self.budget.reliable_used.saturating_add(charge)
            > self.budget.reliable_limit.saturating_add(slack)
        {
            return Err(DropReason::ReceiveWindowExceeded);
        }

        // Pass 2: apply.
        if self.side == Side::Acceptor {
            // The initiator has our Accept: no need to send it again.
            self.accept_reply = None;
            self.send_accept = false;
        }
        let is_largest = self.ack_ranges.largest().is_none_or(|l| pn > l);
        self.ack_ranges.insert(pn);
        let now_nanos = self.nanos_at(now);
        if is_largest {
            self.largest_received_at = Some(now_nanos);
        }
        self.ack_pending = true;
        self.last_received = now_nanos;
        // docs/protocol.md §12: reliable data and IMMEDIATE_ACK are acknowledged promptly
        // (within max_ack_delay, at once after two such packets); packets with only
        // unreliable messages or PINGs lazily (within lazy_ack_delay, or max_ack_delay after
        // LAZY_ACK_PACKETS of them). A DISCONNECT is acknowledged at once (below).
        let prompt = frames.iter().any(|f| match f {
            Frame::ImmediateAck => true,
            Frame::Message(m) => m.reliable,
            _ => false,
        });
        let at = if prompt {
            self.unacked_eliciting += 1;
            self.received_prompt = true;
            Some(if self.unacked_eliciting >= PROMPT_ACK_PACKETS {
                now_nanos
            } else {
                now_nanos.saturating_add(nanos(self.config.max_ack_delay))
            })
        } else if frames
            .iter()
            .any(|f| matches!(f, Frame::Ping | Frame::Message(_)))
        {
            self.unacked_lazy += 1;
            Some(if self.unacked_lazy >= LAZY_ACK_PACKETS {
                now_nanos.saturating_add(nanos(self.config.max_ack_delay))
            } else {
                now_nanos.saturating_add(nanos(
                    self.config.lazy_ack_delay.max(self.config.max_ack_delay),
                ))
            })
        } else {
            None
        };
        if let Some(at) = at {
            self.ack_deadline = Some(self.ack_deadline.map_or(at, |d| d.min(at)));
        }
        let mut payload_bytes = 0usize;
        let mut next_seq = seqs.iter();
        // The payloads delivered at once: one copy of the packet, sliced.
        let mut copy = PacketCopy::new(arena, body);
        for frame in frames.iter() {
            match frame {
                Frame::Ping | Frame::ImmediateAck => {}
                Frame::Ack(ack) => {
                    let outcome = &mut lent(&mut self.lent).outcome;
                    outcome.clear();
                    let delay = Duration::from_micros(ack.ack_delay_us);
                    self.tc.on_ack_received(now, ranges, delay, outcome);
                    self.process_outcome();
                    self.poll_rate_change();
                }
                Frame::Disconnect(code) => {
                    self.on_peer_disconnect(now, DisconnectReason::from_code(*code));
                }
                Frame::Message(m) => {
                    let Some(&(s, r)) = next_seq.next() else {
                        continue;
                    };
                    if !matches!(self.phase, Phase::Connected) {
                        continue;
                    }
                    let Some(payload) = datagram.get(m.payload.clone()) else {
                        continue;
                    };
                    payload_bytes += payload.len();
                    self.deliver_frame(
                        now, m.channel, m.priority, m.reliable, s, r, m.fragment, payload,
                        &mut copy,
                    );
                }
            }
        }
        self.tc
            .on_datagram_received(now, datagram.len(), payload_bytes);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)] // one decoded message frame, spread out
    fn deliver_frame(
        &mut self,
        now: Instant,
        channel: u8,
        priority: Priority,
        reliable: bool,
        s: u64,
        r: u64,
        fragment: Option<(u64, u64)>,
        payload: &[u8],
        copy: &mut PacketCopy<'_>,
    ) {
        let key = StreamKey {
            channel: ChannelId::new(channel),
            priority,
        };
        let initial = self.config.initial_sequence;
        let id = self.id;
        let delivered = &mut lent(&mut self.lent).delivered;
        let mut deliver = |payload: Bytes, reliable: bool| {
            delivered.push_back((
                id,
                Message {
                    channel: key.channel,
                    priority: key.priority,
                    reliability: if reliable {
                        Reliability::Reliable
                    } else {
                        Reliability::Unreliable
                    },
                    payload,
                },
            ));
        };
        let Some(stream) = stream_slot(&mut self.recv, key.index(), initial) else {
            // Created if missing: never happens.
            return;
        };
        let outcome = match fragment {
            None => stream.on_whole(
                s,
                r,
                reliable,
                payload,
                &mut self.budget,
                copy,
                &mut deliver,
            ),
            Some((index, count)) => stream.on_message(
                now,
                IncomingMessage {
                    seq: s,
                    rel: r,
                    reliable,
                    fragment: Some(FragmentInfo { index, count }),
                    payload,
                },
                &mut self.budget,
                copy,
                &mut deliver,
            ),
        };
        match outcome {
            Ok(RecvOutcome::DroppedNoBudget) => {
                // Reassembly memory is short: drop stale partial unreliable messages.
                for s in self.recv.iter_mut().flatten() {
                    s.expire_partials(now, PARTIAL_MAX_AGE, &mut self.budget);
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(id = %self.id, error = ?e, "inconsistent message frame dropped");
                self.report_drop(now, DropReason::Malformed);
            }
        }
    }

    fn on_peer_disconnect(&mut self, now: Instant, reason: DisconnectReason) {
        match self.phase {
            Phase::Connected => {
                lent(&mut self.lent).events.push_back(Event::Disconnect {
                    id: self.id,
                    reason,
                });
                self.send.clear();
            }
            Phase::Closing(_) | Phase::Draining { .. } => {}
            _ => return,
        }
        if !matches!(self.phase, Phase::Draining { .. }) {
            self.phase = Phase::Draining {
                until: now + self.config.linger,
            };
        }
        self.disconnect_due = false;
        // Acknowledge at once so the peer can stop resending.
        self.ack_deadline = Some(self.nanos_at(now));
    }
}
