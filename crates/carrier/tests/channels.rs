//! Several channels at once (the original's `Integ_CarrierMultiChannelTest`): 4 channels, each
//! with interleaved reliable and unreliable messages. Each channel keeps its order and loses no
//! reliable message; `receive(id, channel)` returns only that channel; `poll_message` returns
//! everything, and `poll_messages` everything in batches; `receive_into` with a too-small buffer
//! refuses and keeps the message.

mod common;

use std::time::Duration;

use carrier::{Carrier, ChannelId, Priority, ReceiveError, Reliability, SendError, ThreadMode};
use common::{connect, desc, desc6, pump_until, serial, shutdown_all};

const CHANNELS: u8 = 4;
const PER_CHANNEL: u32 = 150;

/// Message `i` of `channel`: [channel, reliable?, i (4 bytes)] + filler that varies in size.
fn message(channel: u8, reliable: bool, i: u32) -> Vec<u8> {
    let mut m = vec![channel, u8::from(reliable)];
    m.extend_from_slice(&i.to_be_bytes());
    m.resize(
        6 + (i as usize * 7 + channel as usize * 13) % 200,
        channel ^ 0xa5,
    );
    m
}

fn parse(m: &[u8]) -> (u8, bool, u32) {
    assert!(m.len() >= 6, "short message {m:?}");
    let i = u32::from_be_bytes([m[2], m[3], m[4], m[5]]);
    assert_eq!(m, &message(m[0], m[1] == 1, i)[..], "damaged message");
    (m[0], m[1] == 1, i)
}

/// Sends, on every channel, PER_CHANNEL reliable and PER_CHANNEL unreliable messages, interleaved
/// across channels and reliabilities.
fn send_all(from: &Carrier, id: carrier::ConnectionId) {
    for i in 0..PER_CHANNEL {
        for ch in 0..CHANNELS {
            for reliable in [true, false] {
                let r = if reliable {
                    Reliability::Reliable
                } else {
                    Reliability::Unreliable
                };
                from.send(id, &message(ch, reliable, i), r, Priority::Normal, ch)
                    .unwrap();
            }
        }
    }
}

/// Per-channel bookkeeping of what arrived.
#[derive(Default, Clone)]
struct Seen {
    reliable: Vec<u32>,
    unreliable: Vec<u32>,
    /// (i, reliable) in arrival order: must follow send order.
    order: Vec<(u32, bool)>,
}

impl Seen {
    fn add(&mut self, reliable: bool, i: u32) {
        // Within a stream delivery order equals send order: (i, reliable-first) increases.
        let key = (i, !reliable);
        if let Some(&(pi, pr)) = self.order.last() {
            assert!(
                (pi, !pr) < key,
                "out of order: {:?} after {:?}",
                (i, reliable),
                (pi, pr)
            );
        }
        self.order.push((i, reliable));
        if reliable {
            self.reliable.push(i);
        } else {
            self.unreliable.push(i);
        }
    }

    fn complete(&self) -> bool {
        self.reliable.len() == PER_CHANNEL as usize
    }

    fn check(&self, ch: u8) {
        assert_eq!(
            self.reliable,
            (0..PER_CHANNEL).collect::<Vec<_>>(),
            "channel {ch}: every reliable message, in order"
        );
        // Loopback neither loses nor reorders: the unreliable ones all arrive too.
        assert_eq!(self.unreliable.len(), PER_CHANNEL as usize, "channel {ch}");
    }
}

fn per_channel_receive(mode: ThreadMode, v6: bool) {
    let _serial = serial();
    let d = if v6 { desc6 } else { desc };
    let server = Carrier::new(d(mode)).unwrap();
    let client = Carrier::new(d(mode)).unwrap();
    let (cid, sid) = connect(&server, &client);
    send_all(&client, cid);
    let mut seen = vec![Seen::default(); CHANNELS as usize];
    let ok = pump_until(&[&server, &client], Duration::from_secs(10), || {
        for ch in 0..CHANNELS {
            while let Some(m) = server.receive(sid, ch) {
                let (got_ch, reliable, i) = parse(&m);
                assert_eq!(
                    got_ch, ch,
                    "receive(id, {ch}) returned a message of channel {got_ch}"
                );
                seen[ch as usize].add(reliable, i);
            }
        }
        seen.iter().all(Seen::complete)
    });
    assert!(ok, "all reliable messages within 10 s");
    pump_until(&[&server, &client], Duration::from_millis(100), || false);
    for ch in 0..CHANNELS {
        while let Some(m) = server.receive(sid, ch) {
            let (_, reliable, i) = parse(&m);
            seen[ch as usize].add(reliable, i);
        }
        seen[ch as usize].check(ch);
    }
    // Channels that were not used stay empty; nothing is left anywhere.
    assert_eq!(server.receive(sid, CHANNELS), None);
    assert_eq!(server.pending_messages(), 0);
    assert!(server.poll_message().is_none());
    shutdown_all(&[&server, &client]);
}

#[test]
fn four_channels_interleaved_receive_per_channel_threaded() {
    per_channel_receive(ThreadMode::Dedicated, false);
}

#[test]
fn four_channels_interleaved_receive_per_channel_manual() {
    per_channel_receive(ThreadMode::Manual, false);
}

#[test]
fn four_channels_interleaved_receive_per_channel_ipv6() {
    per_channel_receive(ThreadMode::Dedicated, true);
}

#[test]
fn poll_message_returns_every_channel_in_delivery_order() {
    let _serial = serial();
    let server = Carrier::new(desc(ThreadMode::Dedicated)).unwrap();
    let client = Carrier::new(desc(ThreadMode::Dedicated)).unwrap();
    let (cid, sid) = connect(&server, &client);
    send_all(&client, cid);
    let mut seen = vec![Seen::default(); CHANNELS as usize];
    let mut channels_seen = [0usize; CHANNELS as usize];
    let ok = pump_until(&[&server, &client], Duration::from_secs(10), || {
        while let Some((id, m)) = server.poll_message() {
            assert_eq!(id, sid);
            let (ch, reliable, i) = parse(&m.payload);
            assert_eq!(m.channel, ChannelId::new(ch), "Message::channel");
            let want = if reliable {
                Reliability::Reliable
            } else {
                Reliability::Unreliable
            };
            assert_eq!(m.reliability, want);
            assert_eq!(m.priority, Priority::Normal);
            channels_seen[ch as usize] += 1;
            seen[ch as usize].add(reliable, i);
        }
        seen.iter().all(Seen::complete)
    });
    assert!(ok, "all reliable messages within 10 s");
    pump_until(&[&server, &client], Duration::from_millis(100), || false);
    while let Some((_, m)) = server.poll_message() {
        let (ch, reliable, i) = parse(&m.payload);
        seen[ch as usize].add(reliable, i);
    }
    for ch in 0..CHANNELS {
        seen[ch as usize].check(ch);
    }
    assert_eq!(server.pending_messages(), 0);

    // Mixed use: messages taken by `receive` are not returned again by `poll_message`, and
    // `poll_message` keeps delivery order for the rest.
    for i in 0..20u32 {
        for ch in 0..2u8 {
            client
                .send(
                    cid,
                    &message(ch, true, i),
                    Reliability::Reliable,
                    Priority::Normal,
                    ch,
                )
                .unwrap();
        }
    }
    let ok = pump_until(&[&server, &client], Duration::from_secs(5), || {
        server.pending_messages() == 40
    });
    assert!(ok, "{} of 40 pending", server.pending_messages());
    let mut ch0 = Vec::new();
    while let Some(m) = server.receive(sid, 0) {
        ch0.push(parse(&m).2);
    }
    assert_eq!(ch0, (0..20).collect::<Vec<_>>());
    let mut rest = Vec::new();
    while let Some((_, m)) = server.poll_message() {
        let (ch, _, i) = parse(&m.payload);
        assert_eq!(ch, 1, "a message taken by receive() came back");
        rest.push(i);
    }
    assert_eq!(rest, (0..20).collect::<Vec<_>>());
    assert_eq!(server.pending_messages(), 0);
    shutdown_all(&[&server, &client]);
}

#[test]
fn poll_messages_drains_in_batches_in_delivery_order() {
    let _serial = serial();
    let server = Carrier::new(desc(ThreadMode::Dedicated)).unwrap();
    let client = Carrier::new(desc(ThreadMode::Dedicated)).unwrap();
    let (cid, sid) = connect(&server, &client);
    for i in 0..30u32 {
        for ch in 0..2u8 {
            client
                .send(
                    cid,
                    &message(ch, true, i),
                    Reliability::Reliable,
                    Priority::Normal,
                    ch,
                )
                .unwrap();
        }
    }
    let ok = pump_until(&[&server, &client], Duration::from_secs(5), || {
        server.pending_messages() == 60
    });
    assert!(ok, "{} of 60 pending", server.pending_messages());
    // Channel 0's first five are taken one by one: the batches skip them.
    for i in 0..5 {
        let m = server.receive(sid, 0).unwrap();
        assert_eq!(parse(&m).2, i);
    }
    let mut inbox = vec![(sid, server.poll_message().unwrap().1)];
    let mut batches = Vec::new();
    loop {
        let before = inbox.len();
        let n = server.poll_messages(&mut inbox, 16);
        assert_eq!(n, inbox.len() - before, "the count is what was appended");
        assert!(n <= 16, "at most max per call");
        if n == 0 {
            break;
        }
        batches.push(n);
    }
    assert_eq!(batches, vec![16, 16, 16, 6]);
    assert_eq!(server.poll_messages(&mut inbox, 0), 0);
    let got: Vec<(u8, u32)> = inbox
        .iter()
        .map(|(id, m)| {
            assert_eq!(*id, sid);
            let (ch, _, i) = parse(&m.payload);
            (ch, i)
        })
        .collect();
    let mut want = vec![(1, 0)];
    want.extend(
        (1..30)
            .flat_map(|i| [(0, i), (1, i)])
            .filter(|&(ch, i)| ch == 1 || i >= 5),
    );
    assert_eq!(
        got, want,
        "delivery order, without the messages taken by receive()"
    );
    assert_eq!(server.pending_messages(), 0);
    shutdown_all(&[&server, &client]);
}

#[test]
fn receive_into_too_small_keeps_the_message() {
    let server = Carrier::new(desc(ThreadMode::Dedicated)).unwrap();
    let client = Carrier::new(desc(ThreadMode::Dedicated)).unwrap();
    let (cid, sid) = connect(&server, &client);
    let first = message(2, true, 1000);
    let second = message(2, true, 1001);
    for m in [&first, &second] {
        client
            .send(cid, m, Reliability::Reliable, Priority::Normal, 2)
            .unwrap();
    }
    let ok = pump_until(&[&server, &client], Duration::from_secs(5), || {
        server.pending_messages() == 2
    });
    assert!(ok);
    let mut small = [0u8; 8];
    let mut large = [0u8; 512];
    // Nothing on another channel, an invalid channel is an error.
    assert_eq!(server.receive_into(sid, 1, &mut large), Ok(None));
    assert_eq!(
        server.receive_into(sid, 200, &mut large),
        Err(ReceiveError::InvalidChannel(ChannelId::new(200)))
    );
    for _ in 0..3 {
        assert_eq!(
            server.receive_into(sid, 2, &mut small),
            Err(ReceiveError::BufferTooSmall {
                needed: first.len(),
                len: small.len()
            })
        );
    }
    assert_eq!(server.pending_messages(), 2, "the message was kept");
    // A buffer of exactly the message's size is enough.
    let mut exact = vec![0u8; first.len()];
    assert_eq!(
        server.receive_into(sid, 2, &mut exact),
        Ok(Some(first.len()))
    );
    assert_eq!(exact, first);
    let n = server.receive_into(sid, 2, &mut large).unwrap().unwrap();
    assert_eq!(&large[..n], &second[..]);
    assert_eq!(server.receive_into(sid, 2, &mut large), Ok(None));
    // poll_message does not return what receive_into took.
    assert!(server.poll_message().is_none());

    // Sending on a channel beyond the agreed count is refused.
    assert_eq!(
        client.send(cid, b"x", Reliability::Reliable, Priority::Normal, 8),
        Err(SendError::InvalidChannel {
            channel: ChannelId::new(8),
            count: 8
        })
    );
}

#[test]
fn channel_count_is_agreed_as_the_smaller() {
    let server = Carrier::new(carrier::CarrierDesc {
        channel_count: 3,
        ..desc(ThreadMode::Dedicated)
    })
    .unwrap();
    let client = Carrier::new(desc(ThreadMode::Dedicated)).unwrap(); // 8 channels
    let (cid, sid) = connect(&server, &client);
    for (c, id) in [(&client, cid), (&server, sid)] {
        assert_eq!(
            c.send(id, b"x", Reliability::Reliable, Priority::Normal, 3),
            Err(SendError::InvalidChannel {
                channel: ChannelId::new(3),
                count: 3
            })
        );
        c.send(id, b"ok", Reliability::Reliable, Priority::Normal, 2)
            .unwrap();
    }
    let mut got = (None, None);
    let ok = pump_until(&[&server, &client], Duration::from_secs(5), || {
        got.0 = got.0.take().or_else(|| server.receive(sid, 2));
        got.1 = got.1.take().or_else(|| client.receive(cid, 2));
        got.0.is_some() && got.1.is_some()
    });
    assert!(ok);
}

/// `wait_message` blocks until a message arrives, in both thread modes, and times out cleanly.
#[test]
fn wait_message_blocks_until_a_message_arrives() {
    for mode in [ThreadMode::Dedicated, ThreadMode::Manual] {
        let server = Carrier::new(common::desc(mode)).unwrap();
        let client = Carrier::new(common::desc(ThreadMode::Dedicated)).unwrap();
        let (cid, sid) = common::connect(&server, &client);
        assert!(server.wait_message(Duration::from_millis(100)).is_none());
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                client
                    .send(cid, b"wake", Reliability::Reliable, Priority::Normal, 2)
                    .unwrap();
            });
            let (from, m) = server
                .wait_message(Duration::from_secs(5))
                .expect("a message within 5 s");
            assert_eq!(from, sid);
            assert_eq!(&m.payload[..], b"wake");
            assert_eq!(m.channel.get(), 2);
        });
    }
}
