//! The output half of a connection: connect requests, handshake answers and `Data` packets
//! (docs/protocol.md §4, §5, §7, §12, §16).

use std::time::{Duration, Instant};

use super::{ACK_ROOM, Connecting, Connection, Phase, SentRecord};

/// The RTT probe interval in keep-alive intervals (docs/protocol.md §12).
const RTT_PROBE_FACTOR: u32 = 5;
use crate::ack;
use crate::frame::{EncodeContext, FRAME_ACK, FRAME_DISCONNECT, FRAME_IMMEDIATE_ACK, FRAME_PING};
use crate::packet::{Accept, ConnectRequest, DataHeader, Reject};
use crate::seq;
use crate::time::{checked_nanos, nanos};
use crate::traffic::{SendAllowance, SentDatagram};
use crate::wire::Writer;

impl Connection {
    /// Writes the next datagram this connection wants to send into `buf` and returns its
    /// length, or `None` when it has nothing to send now. Call until `None` after any input.
    /// When it has nothing to send, `keep_alive` may receive the keep-alive deadline it
    /// computed on the way, for `poll_deadline` right after
    /// (the endpoint asks for both after every datagram received).
    pub(crate) fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        keep_alive: &mut Option<Option<u64>>,
    ) -> Option<usize> {
        self.advance_clock(now);
        match &mut self.phase {
            Phase::Connecting(c) => {
                let Connecting {
                    cookie,
                    next_retry,
                    retries,
                    payload,
                    ..
                } = &mut **c;
                if now < *next_retry {
                    return None;
                }
                let request = ConnectRequest {
                    initiator_id: self.local_wire_id,
                    cookie: *cookie,
                    limits: self.limits,
                    payload,
                };
                let n = request.encode(buf).ok()?;
                // Exponential backoff (docs/protocol.md §4): base × 2^n, capped.
                let base = self.config.retry_interval_base;
                let factor = 1u32.checked_shl(*retries).unwrap_or(u32::MAX);
                let wait = base
                    .checked_mul(factor)
                    .unwrap_or(Duration::MAX)
                    .min(self.config.retry_interval_max);
                *retries = retries.saturating_add(1);
                *next_retry = now + wait;
                Some(n)
            }
            Phase::Accepting { .. } | Phase::Closed => None,
            Phase::Refused(r) => {
                if !r.send_now {
                    return None;
                }
                r.send_now = false;
                Reject {
                    initiator_id: self.remote_wire_id,
                    reason: r.reason.code(),
                    payload: &r.payload,
                }
                .encode(buf)
                .ok()
            }
            Phase::Connected if self.send_accept => {
                self.send_accept = false;
                let reply = self.accept_reply.as_deref().unwrap_or_default();
                Accept {
                    initiator_id: self.remote_wire_id,
                    acceptor_id: self.local_wire_id,
                    limits: crate::packet::Limits {
                        receive_window: u32::try_from(self.config.receive_window)
                            .unwrap_or(u32::MAX),
                        ..self.limits
                    },
                    reply,
                }
                .encode(buf)
                .ok()
            }
            Phase::Connected | Phase::Closing(_) | Phase::Draining { .. } => {
                self.poll_data(now, buf, keep_alive)
            }
        }
    }

    /// Builds a `Data` packet (docs/protocol.md §5, §16), if anything is due.
    fn poll_data(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        keep_alive: &mut Option<Option<u64>>,
    ) -> Option<usize> {
        let now_nanos = self.nanos_at(now);
        if self.ack_ranges.is_empty() {
            // Everything we received was acknowledged and forgotten.
            self.ack_pending = false;
            self.ack_deadline = None;
        }
        let connected = matches!(self.phase, Phase::Connected);
        let ack_due = self.ack_pending
            && !self.ack_ranges.is_empty()
            && self.ack_deadline.is_some_and(|d| d <= now_nanos);
        let disconnect_due = self.disconnect_due && matches!(self.phase, Phase::Closing(_));
        let keep_alive_at = if connected {
            self.keep_alive_deadline()
        } else {
            None
        };
        let keep_alive_due = keep_alive_at.is_some_and(|t| t <= now_nanos);
        // Nothing owed and nothing queued (the common poll, e.g. right after a packet went
        // out): the same answer as below without asking traffic control for an allowance.
        if !(ack_due || disconnect_due || keep_alive_due || self.send.has_pending()) {
            self.pacing_wait = None;
            // Nothing changed since the keep-alive deadline was computed.
            if connected {
                *keep_alive = Some(keep_alive_at);
            }
            return None;
        }
        // The traffic control is asked only when there is data to send (ACKs and PINGs are
        // neither paced nor windowed).
        let pending = connected && self.send.has_pending();
        let allowance = if pending {
            self.tc.send_allowance(now)
        } else {
            SendAllowance {
                window: 0,
                next_send_time: None,
            }
        };
        if pending && allowance.window == 0 {
            // The window holds the data back: unreliable messages past their TTL are dropped
            // (and counted) now rather than when it next opens (docs/protocol.md §16).
            self.send.expire_unreliable(now);
        }
        let paced = allowance.next_send_time.is_none_or(|t| t <= now);
        let data_ok = pending && allowance.window > 0 && paced;
        // Only pacing holds the data back: wake up when it allows (docs/traffic-control.md).
        self.pacing_wait = if pending && allowance.window > 0 {
            allowance.next_send_time.filter(|&t| t > now)
        } else {
            None
        };
        if !(ack_due || disconnect_due || keep_alive_due || data_ok) {
            // Nothing changed since the keep-alive deadline was computed.
            if connected {
                *keep_alive = Some(keep_alive_at);
            }
            return None;
        }
        // Leave room for the checksum that seals the packet (docs/protocol.md §3).
        let cap = buf
            .len()
            .min(self.max_datagram_size())
            .checked_sub(crate::packet::CHECKSUM_LEN)?;
        let buf_full = buf;
        let buf = &mut buf_full[..cap];
        let pn = self.next_pn;
        let mut pos = {
            let mut w = Writer::new(buf);
            DataHeader {
                destination_id: self.remote_wire_id,
                packet_number: seq::truncate(pn),
            }
            .write(&mut w)
            .ok()?;
            w.len()
        };
        let mut record = SentRecord {
            frames: self
                .frame_pool
                .as_mut()
                .and_then(|p| p.pop())
                .unwrap_or_default(),
            ..SentRecord::default()
        };
        let mut ack_eliciting = false;

        // ACK: on every packet while one is owed (docs/protocol.md §12).
        if self.ack_pending && !self.ack_ranges.is_empty() {
            let room = if data_ok { ACK_ROOM } else { cap - pos };
            let end = (pos + room).min(cap);
            let delay = self
                .largest_received_at
                .map_or(0, |t| now_nanos.saturating_sub(t) / 1_000);
            let written = {
                let (head, _) = buf.split_at_mut(end);
                let mut w = Writer::new(&mut head[pos..]);
                w.put_u8(FRAME_ACK).ok().and_then(|_| {
                    ack::encode_ack(&self.ack_ranges, delay, self.config.max_ack_ranges, &mut w)
                        .ok()
                        .map(|_| w.len())
                })
            };
            if let Some(n) = written {
                pos += n;
                record.ack_largest = self.ack_ranges.largest();
                self.ack_pending = false;
                self.unacked_eliciting = 0;
                self.unacked_lazy = 0;
                self.ack_deadline = None;
            }
        }
        // DISCONNECT (docs/protocol.md §12).
        if disconnect_due
            && let Phase::Closing(c) = &mut self.phase
            && let Some(slot) = buf.get_mut(pos..pos + 2)
        {
            slot[0] = FRAME_DISCONNECT;
            slot[1] = c.reason.code();
            pos += 2;
            record.disconnect = true;
            ack_eliciting = true;
            self.disconnect_due = false;
            c.next_send = now + self.tc.rto();
        }
        // IMMEDIATE_ACK when the congestion window is half used, so that a sender of unreliable
        // messages is not held back by its peer's lazy acknowledgements (docs/protocol.md §12).
        // Only in the ACK frame's reserved room, so no message loses space.
        let mut immediate = false;
        let in_flight = self.tc.bytes_in_flight();
        if data_ok
            && (in_flight + cap) * 2 >= allowance.window.saturating_add(in_flight)
            && pos - crate::packet::DATA_HEADER_LEN < ACK_ROOM
        {
            buf[pos] = FRAME_IMMEDIATE_ACK;
            pos += 1;
            immediate = true;
        }
        // Messages: resends first, then weighted fair queueing (docs/protocol.md §16).
        let mut filled = crate::send::Filled::default();
        if data_ok {
            let mut w = Writer::new(&mut buf[pos..]);
            let mut ctx = EncodeContext::default();
            filled = self.send.fill(&mut w, &mut ctx, &mut record.frames, now);
            pos += w.len();
            ack_eliciting |= filled.frames > 0;
        }
        if immediate && filled.frames == 0 {
            // Nothing to ask a prompt ACK for: take the request back (it is the last byte).
            pos -= 1;
            immediate = false;
        }
        // PING keeps an idle connection alive, and rides on an ACK once half the probe interval
        // has passed, so both sides keep measuring the RTT (docs/protocol.md §12).
        let probe_soon = now_nanos
            >= self
                .last_sent
                .saturating_add(nanos(self.rtt_probe_interval() / 2));
        let only_ack = pos > crate::packet::DATA_HEADER_LEN;
        if (keep_alive_due || (probe_soon && only_ack)) && !ack_eliciting && pos < cap {
            buf[pos] = FRAME_PING;
            pos += 1;
            ack_eliciting = true;
            // Without an RTT sample yet (a new connection), ask for a prompt ACK.
            if !immediate && !self.tc.has_rtt_sample() && pos < cap {
                buf[pos] = FRAME_IMMEDIATE_ACK;
                pos += 1;
                immediate = true;
            }
        }
        if pos == crate::packet::DATA_HEADER_LEN {
            self.recycle(record);
            return None;
        }
        let Ok(pos) = crate::packet::seal(buf_full, pos) else {
            self.recycle(record);
            return None;
        };
        self.next_pn += 1;
        self.last_sent_any = now_nanos;
        if ack_eliciting {
            self.last_sent = now_nanos;
        }
        // The peer may acknowledge it lazily unless it carries reliable data, a DISCONNECT or
        // IMMEDIATE_ACK (docs/protocol.md §12).
        let lazy_ack =
            ack_eliciting && !immediate && record.frames.is_empty() && !record.disconnect;
        self.tc.on_datagram_sent(
            now,
            SentDatagram {
                number: pn,
                time_sent: now,
                size: pos,
                payload_bytes: filled.payload_bytes,
                resent_payload_bytes: filled.resent_bytes,
                ack_eliciting,
                app_limited: !self.send.has_pending(),
                lazy_ack,
            },
        );
        // Keep the ledger dense: one record per packet number.
        let idx = usize::try_from(pn.saturating_sub(self.ledger_base)).unwrap_or(usize::MAX);
        while self.ledger.len() < idx {
            self.ledger.push_back(SentRecord {
                done: true,
                ..SentRecord::default()
            });
        }
        if keep_alive_due {
            self.trim_ledgers();
        }
        crate::small::reserve_one(&mut self.ledger);
        self.ledger.push_back(record);
        Some(pos)
    }

    /// Right after [`poll_transmit`](Self::poll_transmit) returned a datagram at `now` and the
    /// endpoint rescheduled the connection: whether calling it again at `now` could return
    /// another one (or change any state). False only when it certainly would not: connected,
    /// no Accept to send, no message queued (so no pacing wait either), no ACK owed and the
    /// next deadline (keep-alive included) after `now`.
    pub(crate) fn may_transmit_more(&self, now: Instant) -> bool {
        !(matches!(self.phase, Phase::Connected)
            && !self.send_accept
            && !self.ack_pending
            && self.ack_deadline.is_none()
            && self.pacing_wait.is_none()
            && !self.send.has_pending()
            && self.scheduled.is_none_or(|d| d > self.nanos_at(now)))
    }

    /// How often, at the latest, this side sends an ack-eliciting packet while connected, so
    /// that it keeps measuring the RTT even when it only acknowledges (docs/protocol.md §12).
    /// Until the first RTT sample, it is the keep-alive interval itself.
    pub(super) fn rtt_probe_interval(&self) -> Duration {
        if self.tc.has_rtt_sample() {
            self.config
                .keep_alive_interval
                .saturating_mul(RTT_PROBE_FACTOR)
        } else {
            self.config.keep_alive_interval
        }
    }

    /// When a keep-alive is due (docs/protocol.md §12): `keep_alive_interval` after the last
    /// packet sent unless an ACK is already scheduled (it goes out then), and at the latest
    /// one RTT probe interval after the last ack-eliciting packet.
    /// Nanoseconds since the creation; none past `u64::MAX`.
    pub(super) fn keep_alive_deadline(&self) -> Option<u64> {
        let probe =
            checked_nanos(self.rtt_probe_interval()).and_then(|d| self.last_sent.checked_add(d));
        let idle = match self.ack_deadline {
            Some(_) if self.ack_pending => None,
            _ => checked_nanos(self.config.keep_alive_interval)
                .and_then(|d| self.last_sent_any.checked_add(d)),
        };
        match (probe, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
