//! `message_mtu()` in each MTU mode of the default driver (docs/protocol.md §14): default
//! 1,372-byte datagrams → 1,320-byte messages, cross-platform 1,236 → 1,184, full packets
//! 65,479 → 65,425; cross-platform takes precedence over full packets. A message of exactly
//! `message_mtu` bytes travels in one datagram, one byte more is split, and both arrive (the
//! split is not observable from outside: its small second fragment may share the datagram in the
//! room kept for an acknowledgement). Two carriers of different modes agree on the smaller
//! datagram.

mod common;

use std::time::Duration;

use carrier::{Carrier, CarrierDesc, ConnectionId, Priority, Reliability, ThreadMode};
use common::{assert_same_bytes, connect, desc, desc6, pattern, pump_until, shutdown_all};

fn mode(base: CarrierDesc, cross_platform: bool, full_packets: bool) -> CarrierDesc {
    CarrierDesc {
        driver_is_cross_platform: cross_platform,
        driver_is_full_packets: full_packets,
        ..base
    }
}

/// Sends `payload` from `from` to `to`, waits for it, and returns how many data datagrams the
/// sender used for it (`None` if some were resent, which makes the count meaningless).
fn send_and_count(
    carriers: [&Carrier; 2],
    (from, from_id): (&Carrier, ConnectionId),
    (to, to_id): (&Carrier, ConnectionId),
    payload: &[u8],
    reliability: Reliability,
) -> Option<u64> {
    // Let earlier acknowledgements settle so the counters are stable.
    pump_until(&carriers, Duration::from_millis(50), || false);
    let before = from.statistics(from_id).unwrap().effective_lifetime;
    from.send(from_id, payload, reliability, Priority::Normal, 0)
        .unwrap();
    let mut got = None;
    let ok = pump_until(&carriers, Duration::from_secs(5), || {
        got = got.take().or_else(|| to.receive(to_id, 0));
        got.is_some()
    });
    assert!(ok, "a {}-byte message did not arrive", payload.len());
    assert_same_bytes(&got.unwrap(), payload, "message");
    let after = from.statistics(from_id).unwrap().effective_lifetime;
    (after.bytes_resent == before.bytes_resent).then(|| after.packets_sent - before.packets_sent)
}

fn mtu_mode(server_desc: CarrierDesc, client_desc: CarrierDesc, datagram: usize, mtu: usize) {
    let server = Carrier::new(server_desc).unwrap();
    let client = Carrier::new(client_desc).unwrap();
    assert_eq!(
        client.message_mtu(),
        mtu,
        "message_mtu of {datagram}-byte datagrams"
    );
    assert_eq!(server.message_mtu(), mtu);
    assert_eq!(mtu, carrier_proto::message_mtu(datagram));
    let (cid, sid) = connect(&server, &client);
    assert_eq!(client.connection_message_mtu(cid), Some(mtu));
    assert_eq!(server.connection_message_mtu(sid), Some(mtu));
    let both = [&server, &client];
    for reliability in [Reliability::Reliable, Reliability::Unreliable] {
        let exact = pattern(mtu as u32, mtu);
        let one_more = pattern(mtu as u32 + 1, mtu + 1);
        let n = send_and_count(both, (&client, cid), (&server, sid), &exact, reliability);
        assert!(
            n.is_none_or(|n| n == 1),
            "{reliability:?} message of message_mtu bytes took {n:?} datagrams"
        );
        // One byte more is split into fragments (the second may still share the datagram, in
        // the room kept for an acknowledgement); it arrives whole.
        send_and_count(both, (&client, cid), (&server, sid), &one_more, reliability);
        // Two MTUs cannot travel in one datagram.
        let double = pattern(2 * mtu as u32, 2 * mtu);
        let n = send_and_count(both, (&client, cid), (&server, sid), &double, reliability);
        assert!(
            n.is_none_or(|n| n >= 2),
            "{reliability:?} message of 2 × message_mtu bytes took {n:?} datagrams"
        );
        // And the other way.
        send_and_count(both, (&server, sid), (&client, cid), &one_more, reliability);
    }
    shutdown_all(&both);
}

#[test]
fn default_mode_1372_byte_datagrams_give_1320() {
    let d = |m| mode(desc(m), false, false);
    mtu_mode(
        d(ThreadMode::Dedicated),
        d(ThreadMode::Manual),
        1_372,
        1_320,
    );
}

#[test]
fn cross_platform_1236_byte_datagrams_give_1184() {
    let d = |m| mode(desc(m), true, false);
    mtu_mode(
        d(ThreadMode::Dedicated),
        d(ThreadMode::Dedicated),
        1_236,
        1_184,
    );
}

#[test]
fn cross_platform_ipv6() {
    let d = |m| mode(desc6(m), true, false);
    mtu_mode(
        d(ThreadMode::Manual),
        d(ThreadMode::Dedicated),
        1_236,
        1_184,
    );
}

#[test]
fn full_packets_65479_byte_datagrams_give_65425() {
    let d = |m| mode(desc(m), false, true);
    mtu_mode(
        d(ThreadMode::Dedicated),
        d(ThreadMode::Dedicated),
        65_479,
        65_425,
    );
}

#[test]
fn cross_platform_takes_precedence_over_full_packets() {
    let d = |m| mode(desc(m), true, true);
    assert_eq!(d(ThreadMode::Manual).max_datagram_size(), 1_236);
    mtu_mode(
        d(ThreadMode::Dedicated),
        d(ThreadMode::Manual),
        1_236,
        1_184,
    );
}

#[test]
fn different_modes_agree_on_the_smaller_datagram() {
    // A default server (1,372) and a cross-platform client (1,236): the connection uses 1,236.
    let server = Carrier::new(desc(ThreadMode::Dedicated)).unwrap();
    let client = Carrier::new(mode(desc(ThreadMode::Dedicated), true, false)).unwrap();
    assert_eq!(server.message_mtu(), 1_320);
    assert_eq!(client.message_mtu(), 1_184);
    let (cid, sid) = connect(&server, &client);
    assert_eq!(server.connection_message_mtu(sid), Some(1_184));
    assert_eq!(client.connection_message_mtu(cid), Some(1_184));
    // The server's own message_mtu would not fit the client's datagrams: it is split, and
    // arrives.
    let both = [&server, &client];
    let big = pattern(9, 1_320);
    send_and_count(
        both,
        (&server, sid),
        (&client, cid),
        &big,
        Reliability::Reliable,
    );
    let exact = pattern(10, 1_184);
    let n = send_and_count(
        both,
        (&server, sid),
        (&client, cid),
        &exact,
        Reliability::Unreliable,
    );
    assert!(n.is_none_or(|n| n == 1), "{n:?}");
    shutdown_all(&both);
}
