//! Frames inside `Data` packets: control frames and message frames (docs/protocol.md §7, §8).
//!
//! Decoding is a first pass over the whole packet that validates every frame and records it as
//! a [`Frame`] (payloads as offsets into the datagram, so the list can be reused without
//! lifetimes); the connection applies the frames only if the whole packet parsed.

use std::ops::{Range, RangeInclusive};

use crate::Priority;
use crate::ack::{self, AckFrame};
use crate::wire::{Reader, WireError, Writer};

/// `PING` frame type.
pub(crate) const FRAME_PING: u8 = 0x01;
/// `ACK` frame type.
pub(crate) const FRAME_ACK: u8 = 0x02;
/// `DISCONNECT` frame type.
pub(crate) const FRAME_DISCONNECT: u8 = 0x03;
/// `IMMEDIATE_ACK` frame type: acknowledge this packet promptly (docs/protocol.md §12).
pub(crate) const FRAME_IMMEDIATE_ACK: u8 = 0x04;

const MSG: u8 = 0x80;
const MSG_RELIABLE: u8 = 0x40;
const MSG_PRIORITY_SHIFT: u8 = 4;
const MSG_PRIORITY_MASK: u8 = 0x30;
const MSG_CHANNEL: u8 = 0x08;
const MSG_SEQ: u8 = 0x04;
const MSG_FRAGMENT: u8 = 0x02;
const MSG_RESERVED: u8 = 0x01;

/// Largest message frame header for a payload below 16 KiB: flags, channel, s, r, 2-byte
/// length (docs/protocol.md §14).
pub(crate) const MAX_SMALL_MESSAGE_HEADER: usize = 1 + 1 + 8 + 2;

/// A decoded message frame; sequence numbers still truncated when explicit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MessageFrame {
    pub channel: u8,
    pub priority: Priority,
    pub reliable: bool,
    /// Explicit `(s, r)` low 32 bits; `None` = implicit (derived from the previous frame).
    pub explicit: Option<(u32, u32)>,
    /// `(index, count)` of a fragment.
    pub fragment: Option<(u64, u64)>,
    /// Payload location in the datagram.
    pub payload: Range<usize>,
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    Ping,
    ImmediateAck,
    /// The ACK's ranges are in the `ack_ranges` vector given to [`parse_frames`].
    Ack(AckFrame),
    Disconnect(u8),
    Message(MessageFrame),
}

/// What the parser needs from the connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ParseContext {
    /// Largest packet number this side has sent (to expand and check ACKs).
    pub largest_sent: u64,
    /// Most ranges accepted in an ACK.
    pub max_ack_ranges: usize,
    /// Agreed channel count.
    pub channel_count: u8,
}

/// Parses all frames of a packet. `base` is the offset of `frames` in the datagram, so payload
/// ranges index the datagram. At most one ACK frame per packet.
pub(crate) fn parse_frames(
    frames: &[u8],
    base: usize,
    ctx: ParseContext,
    out: &mut Vec<Frame>,
    ack_ranges: &mut Vec<RangeInclusive<u64>>,
) -> Result<(), WireError> {
    out.clear();
    ack_ranges.clear();
    let mut r = Reader::new(frames);
    let mut seen_ack = false;
    // Implicit-field context (docs/protocol.md §8): previous message frame's channel/priority.
    let mut prev: Option<(u8, Priority)> = None;
    while !r.is_empty() {
        let t = r.u8()?;
        if t & MSG == 0 {
            let frame = match t {
                FRAME_PING => Frame::Ping,
                FRAME_IMMEDIATE_ACK => Frame::ImmediateAck,
                FRAME_ACK => {
                    if seen_ack {
                        return Err(WireError::Malformed("two ACK frames"));
                    }
                    seen_ack = true;
                    Frame::Ack(ack::decode_ack(
                        &mut r,
                        ctx.largest_sent,
                        ctx.max_ack_ranges,
                        ack_ranges,
                    )?)
                }
                FRAME_DISCONNECT => Frame::Disconnect(r.u8()?),
                _ => return Err(WireError::Malformed("unknown frame type")),
            };
            out.push(frame);
            continue;
        }
        // The common frame in a full packet: a whole message that continues the previous one's
        // stream (no channel, numbers or fragment fields; the priority of the previous frame):
        // what the general path below decides for it, without its checks.
        if let Some((channel, priority)) = prev
            && t & (MSG_CHANNEL | MSG_SEQ | MSG_FRAGMENT | MSG_RESERVED) == 0
            && usize::from((t & MSG_PRIORITY_MASK) >> MSG_PRIORITY_SHIFT) == priority.index()
        {
            let len = usize::try_from(r.varint()?).map_err(|_| WireError::Malformed("length"))?;
            let start = base + r.position();
            r.bytes(len)?;
            out.push(Frame::Message(MessageFrame {
                channel,
                priority,
                reliable: t & MSG_RELIABLE != 0,
                explicit: None,
                fragment: None,
                payload: start..start + len,
            }));
            continue;
        }
        if t & MSG_RESERVED != 0 {
            return Err(WireError::Malformed("reserved message flag"));
        }
        let priority =
            Priority::from_index(usize::from((t & MSG_PRIORITY_MASK) >> MSG_PRIORITY_SHIFT))
                .ok_or(WireError::Malformed("priority 3"))?;
        let channel = if t & MSG_CHANNEL != 0 {
            r.u8()?
        } else {
            prev.map_or(0, |(c, _)| c)
        };
        if channel >= ctx.channel_count {
            return Err(WireError::Malformed("channel out of range"));
        }
        let explicit = if t & MSG_SEQ != 0 {
            Some((r.u32()?, r.u32()?))
        } else {
            match prev {
                Some((c, p)) if c == channel && p == priority => None,
                _ => {
                    return Err(WireError::Malformed(
                        "implicit sequence without predecessor",
                    ));
                }
            }
        };
        let fragment = if t & MSG_FRAGMENT != 0 {
            let index = r.varint()?;
            let count = r.varint()?;
            if count < 2 || index >= count {
                return Err(WireError::Malformed("fragment index/count"));
            }
            if explicit.is_none() {
                return Err(WireError::Malformed("fragment without explicit sequence"));
            }
            Some((index, count))
        } else {
            None
        };
        let len = usize::try_from(r.varint()?).map_err(|_| WireError::Malformed("length"))?;
        let start = base + r.position();
        r.bytes(len)?;
        out.push(Frame::Message(MessageFrame {
            channel,
            priority,
            reliable: t & MSG_RELIABLE != 0,
            explicit,
            fragment,
            payload: start..start + len,
        }));
        prev = Some((channel, priority));
    }
    if out.is_empty() {
        return Err(WireError::Malformed("no frame"));
    }
    Ok(())
}

/// The message being written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OutMessage {
    pub channel: u8,
    pub priority: Priority,
    pub reliable: bool,
    pub seq: u64,
    pub rel: u64,
    pub fragment: Option<(u64, u64)>,
    pub len: usize,
}

/// Writer-side implicit-field context, reset for every packet (docs/protocol.md §8): what the
/// previous message frame lets the next one leave implicit.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct EncodeContext {
    prev: Option<Prev>,
}

/// The previous message frame of the packet, as the next one is compared with it.
#[derive(Clone, Copy, Debug)]
struct Prev {
    channel: u8,
    priority: Priority,
    /// Its `s` + 1 and `r` + (1 if reliable): the numbers a frame may leave implicit.
    next_seq: u64,
    next_rel: u64,
}

impl EncodeContext {
    fn prev_channel(&self) -> u8 {
        self.prev.map_or(0, |p| p.channel)
    }

    /// Whether `m` continues the previous frame's stream: same channel and priority, the next
    /// `s` and `r`.
    fn continues(&self, m: &OutMessage) -> bool {
        self.prev.is_some_and(|p| {
            p.channel == m.channel
                && p.priority == m.priority
                && p.next_seq == m.seq
                && p.next_rel == m.rel
        })
    }

    fn needs_seq(&self, m: &OutMessage) -> bool {
        m.fragment.is_some() || !self.continues(m)
    }

    /// Bytes the header of `m` takes in this context.
    pub(crate) fn header_len(&self, m: &OutMessage) -> usize {
        let mut n = 1 + crate::wire::varint_len(m.len as u64);
        if m.channel != self.prev_channel() {
            n += 1;
        }
        if self.needs_seq(m) {
            n += 8;
        }
        if let Some((i, c)) = m.fragment {
            n += crate::wire::varint_len(i) + crate::wire::varint_len(c);
        }
        n
    }

    fn remember(&mut self, m: &OutMessage) {
        self.prev = Some(Prev {
            channel: m.channel,
            priority: m.priority,
            next_seq: m.seq.wrapping_add(1),
            next_rel: m.rel.wrapping_add(u64::from(m.reliable)),
        });
    }

    /// Writes the header of `m` and its payload, or nothing (`BufferTooSmall`) if they do not
    /// fit. The header is written in place, then the payload in one copy.
    #[inline]
    pub(crate) fn write(
        &mut self,
        w: &mut Writer<'_>,
        m: &OutMessage,
        payload: &[u8],
    ) -> Result<(), WireError> {
        let mut flags = MSG | ((m.priority.index() as u8) << MSG_PRIORITY_SHIFT);
        if m.reliable {
            flags |= MSG_RELIABLE;
        }
        // The common frame in a full packet: a whole message that continues the previous
        // one's stream (implicit channel and numbers) and is shorter than 16 KiB: flags and a
        // one- or two-byte length, the same bytes the general path below writes.
        if m.fragment.is_none() && payload.len() < (1 << 14) && self.continues(m) {
            let len = payload.len();
            let n = if len < (1 << 6) { 2 } else { 3 };
            let dst = w.reserve(n + len)?;
            let (head, body) = dst.split_at_mut(n);
            match head {
                [f, l] => {
                    *f = flags;
                    *l = len as u8;
                }
                [f, l0, l1] => {
                    *f = flags;
                    [*l0, *l1] = (len as u16 | 0x4000).to_be_bytes();
                }
                _ => {}
            }
            body.copy_from_slice(payload);
            // `prev` moves on by one message of the same stream.
            if let Some(p) = &mut self.prev {
                p.next_seq = m.seq.wrapping_add(1);
                p.next_rel = m.rel.wrapping_add(u64::from(m.reliable));
            }
            return Ok(());
        }
        let channel = m.channel != self.prev_channel();
        let seq = self.needs_seq(m);
        if channel {
            flags |= MSG_CHANNEL;
        }
        if seq {
            flags |= MSG_SEQ;
        }
        if m.fragment.is_some() {
            flags |= MSG_FRAGMENT;
        }
        let len = payload.len() as u64;
        let (index, count) = m.fragment.unwrap_or((0, 0));
        if index.max(count).max(len) > crate::wire::VARINT_MAX {
            return Err(WireError::Malformed("varint above 2^62-1"));
        }
        // Flags, channel, s and r, the fragment's varints and the length, written in place.
        let mut n = 1 + usize::from(channel) + crate::wire::varint_len(len);
        if seq {
            n += 8;
        }
        if m.fragment.is_some() {
            n += crate::wire::varint_len(index) + crate::wire::varint_len(count);
        }
        let dst = w.reserve(n + payload.len())?;
        let (head, body) = dst.split_at_mut(n);
        let mut h = Writer::new(head);
        h.put_u8(flags)?;
        if channel {
            h.put_u8(m.channel)?;
        }
        if seq {
            h.put_u32(crate::seq::truncate(m.seq))?;
            h.put_u32(crate::seq::truncate(m.rel))?;
        }
        if m.fragment.is_some() {
            h.put_varint(index)?;
            h.put_varint(count)?;
        }
        // The length, the common one- and two-byte encodings inline.
        match crate::wire::varint_len(len) {
            1 => h.put_u8(len as u8)?,
            2 => h.put_u16(len as u16 | 0x4000)?,
            _ => h.put_varint(len)?,
        }
        body.copy_from_slice(payload);
        self.remember(m);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ParseContext {
        ParseContext {
            largest_sent: 100,
            max_ack_ranges: 32,
            channel_count: 8,
        }
    }

    fn msg(channel: u8, priority: Priority, reliable: bool, seq: u64, rel: u64) -> OutMessage {
        OutMessage {
            channel,
            priority,
            reliable,
            seq,
            rel,
            fragment: None,
            len: 3,
        }
    }

    #[test]
    fn steady_stream_costs_two_header_bytes_per_message() {
        let mut buf = [0u8; 256];
        let mut w = Writer::new(&mut buf);
        let mut e = EncodeContext::default();
        let first = msg(0, Priority::Normal, true, 10, 10);
        assert_eq!(e.header_len(&first), 1 + 8 + 1);
        e.write(&mut w, &first, b"abc").unwrap();
        for k in 1..5u64 {
            let m = msg(0, Priority::Normal, true, 10 + k, 10 + k);
            assert_eq!(e.header_len(&m), 2, "implicit sequence");
            e.write(&mut w, &m, b"abc").unwrap();
        }
        let n = w.len();
        assert_eq!(n, (10 + 3) + 4 * (2 + 3));
        let mut frames = Vec::new();
        let mut ranges = Vec::new();
        parse_frames(&buf[..n], 0, ctx(), &mut frames, &mut ranges).unwrap();
        assert_eq!(frames.len(), 5);
        match &frames[0] {
            Frame::Message(m) => {
                assert_eq!(m.explicit, Some((10, 10)));
                assert_eq!(&buf[m.payload.clone()], b"abc");
            }
            f => panic!("unexpected {f:?}"),
        }
        for f in &frames[1..] {
            assert!(matches!(
                f,
                Frame::Message(MessageFrame {
                    explicit: None,
                    reliable: true,
                    ..
                })
            ));
        }
    }

    #[test]
    fn golden_message_frame_bytes() {
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        let mut e = EncodeContext::default();
        // Unreliable, Low priority, channel 3, s = 5, r = 2, payload "hi".
        e.write(&mut w, &msg(3, Priority::Low, false, 5, 2), b"hi")
            .unwrap();
        let n = w.len();
        // flags: 1000_0000 | R=0 | PP=10 <<4 | C | S = 0xAC
        assert_eq!(&buf[..n], &[0xAC, 3, 0, 0, 0, 5, 0, 0, 0, 2, 2, b'h', b'i']);
    }

    #[test]
    fn golden_implicit_frame_bytes() {
        // The frames that continue a stream (written by a path of their own): flags and a one-
        // or two-byte length; one that does not fit writes nothing and changes nothing.
        let mut buf = [0u8; 100];
        let mut w = Writer::new(&mut buf);
        let mut e = EncodeContext::default();
        e.write(&mut w, &msg(2, Priority::Normal, true, 7, 4), b"a")
            .unwrap();
        let implicit = |seq, rel| OutMessage {
            len: 0,
            ..msg(2, Priority::Normal, true, seq, rel)
        };
        e.write(&mut w, &implicit(8, 5), b"bc").unwrap();
        let long = [9u8; 64];
        e.write(&mut w, &implicit(9, 6), &long).unwrap();
        assert_eq!(
            e.write(&mut w, &implicit(10, 7), &[1u8; 30]),
            Err(WireError::BufferTooSmall)
        );
        let n = w.len();
        // Explicit first frame: 0xC0 | PP=01 <<4 | C | S = 0xDC.
        let mut expected = vec![0xDC, 2, 0, 0, 0, 7, 0, 0, 0, 4, 1, b'a'];
        expected.extend_from_slice(&[0xD0, 2, b'b', b'c']);
        expected.extend_from_slice(&[0xD0, 0x40, 64]);
        expected.extend_from_slice(&long);
        assert_eq!(&buf[..n], &expected[..]);
        // The failed write left the context as it was: the next frame is still implicit.
        assert_eq!(e.header_len(&implicit(10, 7)), 2);
    }

    #[test]
    fn unreliable_after_reliable_derives_r_without_increment() {
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        let mut e = EncodeContext::default();
        e.write(&mut w, &msg(0, Priority::High, true, 0, 0), b"a")
            .unwrap();
        // Unreliable next: s = 1, r = 1 (one reliable before it) → implicit.
        let u = msg(0, Priority::High, false, 1, 1);
        assert_eq!(e.header_len(&u), 2);
        e.write(&mut w, &u, b"b").unwrap();
        // Then reliable s = 2, r = 1 (the unreliable did not advance r) → implicit.
        let r = msg(0, Priority::High, true, 2, 1);
        assert_eq!(e.header_len(&r), 2);
        // A different priority needs explicit numbers.
        let other = msg(0, Priority::Low, true, 3, 2);
        assert_eq!(e.header_len(&other), 10);
    }

    #[test]
    fn malformed_frames_are_rejected() {
        let mut frames = Vec::new();
        let mut ranges = Vec::new();
        let mut parse = |b: &[u8]| parse_frames(b, 0, ctx(), &mut frames, &mut ranges);
        assert!(parse(&[]).is_err(), "no frame");
        assert!(parse(&[0x7F]).is_err(), "unknown control frame");
        assert!(parse(&[0x81, 0]).is_err(), "reserved bit");
        assert!(
            parse(&[0xB0 | 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err(),
            "priority 3"
        );
        assert!(parse(&[0x80, 0]).is_err(), "implicit without predecessor");
        assert!(parse(&[0x88, 8, 0]).is_err(), "channel 8 of 8");
        assert!(
            parse(&[0x84, 0, 0, 0, 0, 0, 0, 0, 0, 5, 1]).is_err(),
            "truncated payload"
        );
        assert!(
            parse(&[0x86, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 0]).is_err(),
            "fragment index == count"
        );
        assert!(parse(&[FRAME_DISCONNECT]).is_err(), "truncated disconnect");
        assert!(parse(&[FRAME_PING, FRAME_DISCONNECT, 3]).is_ok());
        // Implicit frames after an explicit one (channel 0, Normal priority, "a").
        let first = [0x94, 0, 0, 0, 1, 0, 0, 0, 1, 1, b'a'];
        let with = |tail: &[u8]| [&first[..], tail].concat();
        assert!(
            parse(&with(&[0x90, 1, b'b'])).is_ok(),
            "implicit, same stream"
        );
        assert!(
            parse(&with(&[0xD0, 0x40, 1, b'b'])).is_ok(),
            "2-byte length"
        );
        assert!(parse(&with(&[0x90, 2, b'b'])).is_err(), "truncated payload");
        assert!(parse(&with(&[0x90])).is_err(), "truncated length");
        assert!(
            parse(&with(&[0xA0, 1, b'b'])).is_err(),
            "implicit, other priority"
        );
        assert!(parse(&with(&[0x91, 1, b'b'])).is_err(), "reserved bit");
        assert!(parse(&with(&[0xB0, 1, b'b'])).is_err(), "priority 3");
        let mut frames = Vec::new();
        let mut ranges = Vec::new();
        parse_frames(
            &with(&[0xD0, 2, b'b', b'c']),
            10,
            ctx(),
            &mut frames,
            &mut ranges,
        )
        .unwrap();
        assert_eq!(
            frames[1],
            Frame::Message(MessageFrame {
                channel: 0,
                priority: Priority::Normal,
                reliable: true,
                explicit: None,
                fragment: None,
                payload: 23..25,
            })
        );
    }

    proptest::proptest! {
        /// Any sequence of message frames, continuing streams or not, encodes to bytes that
        /// parse back to the same messages (numbers derived as the receiver derives implicit
        /// ones), and every frame's header is as long as `header_len` predicted.
        #[test]
        fn message_frames_round_trip(
            specs in proptest::collection::vec(
                (
                    0u8..3,
                    0usize..3,
                    proptest::bool::ANY,
                    proptest::option::of((0u64..4, 1u64..4)),
                    proptest::bool::ANY,
                    (0u64..1 << 40, 0u64..1 << 40),
                    proptest::prop_oneof![
                        0usize..300,
                        proptest::sample::select(vec![63usize, 64, 65, 16_383, 16_384, 20_000]),
                    ],
                ),
                1..40,
            )
        ) {
            let mut msgs = Vec::new();
            let mut prev: Option<OutMessage> = None;
            for (channel, priority, reliable, fragment, cont, (seq, rel), len) in specs {
                let priority = [Priority::High, Priority::Normal, Priority::Low][priority];
                let fragment = fragment.map(|(i, extra)| (i, i + extra + 1));
                let m = match prev.filter(|_| cont) {
                    Some(p) => OutMessage {
                        channel: p.channel,
                        priority: p.priority,
                        reliable,
                        seq: p.seq.wrapping_add(1),
                        rel: p.rel + u64::from(p.reliable),
                        fragment,
                        len,
                    },
                    None => OutMessage { channel, priority, reliable, seq, rel, fragment, len },
                };
                prev = Some(m);
                msgs.push(m);
            }
            let mut buf = vec![0u8; msgs.iter().map(|m| m.len + 32).sum()];
            let mut w = Writer::new(&mut buf);
            let mut e = EncodeContext::default();
            for (i, m) in msgs.iter().enumerate() {
                let payload: Vec<u8> = (0..m.len).map(|b| (b + i) as u8).collect();
                let (before, header) = (w.len(), e.header_len(m));
                e.write(&mut w, m, &payload).unwrap();
                proptest::prop_assert_eq!(w.len() - before, header + m.len, "frame {}", i);
            }
            let n = w.len();
            let (mut frames, mut ranges) = (Vec::new(), Vec::new());
            parse_frames(&buf[..n], 0, ctx(), &mut frames, &mut ranges).unwrap();
            proptest::prop_assert_eq!(frames.len(), msgs.len());
            let mut numbers: Option<(u32, u32, bool)> = None;
            for (i, (f, m)) in frames.iter().zip(&msgs).enumerate() {
                let Frame::Message(f) = f else {
                    return Err(proptest::test_runner::TestCaseError::fail("not a message"));
                };
                let (s, r) = match (f.explicit, numbers) {
                    (Some(sr), _) => sr,
                    (None, Some((s, r, reliable))) => (s.wrapping_add(1), r + u32::from(reliable)),
                    (None, None) => {
                        return Err(proptest::test_runner::TestCaseError::fail("no numbers"));
                    }
                };
                numbers = Some((s, r, f.reliable));
                proptest::prop_assert_eq!(
                    (f.channel, f.priority, f.reliable, f.fragment),
                    (m.channel, m.priority, m.reliable, m.fragment),
                    "frame {}", i
                );
                proptest::prop_assert_eq!((s, r), (m.seq as u32, m.rel as u32), "frame {}", i);
                let expected: Vec<u8> = (0..m.len).map(|b| (b + i) as u8).collect();
                proptest::prop_assert_eq!(&buf[f.payload.clone()], &expected[..], "frame {}", i);
            }
        }
    }
}
