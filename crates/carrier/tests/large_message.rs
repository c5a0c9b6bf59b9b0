//! A 40 KiB message both ways (the original's `CarrierTest`): split into fragments, reassembled
//! byte-exact, reliable, in both thread modes and both address families; `receive_into` with a
//! small buffer refuses and keeps the message. An unreliable 40 KiB message is delivered whole or
//! not at all, on a clean loopback and through a lossy simulator (those tests run one at a time:
//! on a clean loopback every unreliable message must arrive).

mod common;

use std::time::Duration;

use carrier::{
    Carrier, CarrierDesc, NetworkSimulator, Priority, ReceiveError, Reliability, SimConfig,
    ThreadMode,
};
use carrier_sim::LinkConfig;
use common::{assert_same_bytes, connect, desc, desc6, pattern, pump_until, serial, shutdown_all};

/// 10,240 `u32`s, as the original.
const SIZE: usize = 40 * 1024;

fn reliable_both_ways(server_desc: CarrierDesc, client_desc: CarrierDesc) {
    let server = Carrier::new(server_desc).unwrap();
    let client = Carrier::new(client_desc).unwrap();
    let (cid, sid) = connect(&server, &client);
    assert!(
        SIZE > client.message_mtu() * 30,
        "the message must be split"
    );

    let up = pattern(1, SIZE);
    let down = pattern(2, SIZE);
    client
        .send(cid, &up, Reliability::Reliable, Priority::Normal, 0)
        .unwrap();

    // Server side: read with receive_into, first with a buffer that is too small.
    let mut small = [0u8; 100];
    let mut big = vec![0u8; SIZE + 10];
    let mut got_up = None;
    let mut got_down = None;
    let ok = pump_until(&[&server, &client], Duration::from_secs(10), || {
        if got_up.is_none() {
            match server.receive_into(sid, 0, &mut small) {
                Ok(None) => {}
                Err(ReceiveError::BufferTooSmall { needed, len }) => {
                    assert_eq!((needed, len), (SIZE, 100));
                    // The message was kept: the large buffer gets it whole.
                    let n = server
                        .receive_into(sid, 0, &mut big)
                        .unwrap()
                        .expect("the message stays queued after BufferTooSmall");
                    got_up = Some(big[..n].to_vec());
                    server
                        .send(sid, &down, Reliability::Reliable, Priority::Normal, 0)
                        .unwrap();
                }
                other => panic!("receive_into with a 100-byte buffer: {other:?}"),
            }
        }
        if got_down.is_none() {
            got_down = client.receive(cid, 0);
        }
        got_down.is_some()
    });
    assert!(
        ok,
        "40 KiB round trip within 10 s (up: {})",
        got_up.is_some()
    );
    assert_same_bytes(&got_up.unwrap(), &up, "client → server");
    assert_same_bytes(&got_down.unwrap(), &down, "server → client");
    assert_eq!(server.receive_into(sid, 0, &mut big), Ok(None));
    assert_eq!(server.pending_messages(), 0);
    assert_eq!(client.pending_messages(), 0);

    // The statistics saw the splitting: many datagrams, more bytes than the payload.
    pump_until(&[&server, &client], Duration::from_millis(200), || false);
    let stats = client.statistics(cid).unwrap();
    assert!(stats.effective_lifetime.packets_sent >= 30, "{stats:?}");
    assert!(stats.lifetime.bytes_sent > SIZE as u64, "{stats:?}");
    assert!(stats.effective_lifetime.bytes_received >= SIZE as u64);
    shutdown_all(&[&server, &client]);
}

#[test]
fn reliable_40k_both_ways_ipv4_threaded() {
    reliable_both_ways(desc(ThreadMode::Dedicated), desc(ThreadMode::Dedicated));
}

#[test]
fn reliable_40k_both_ways_ipv4_manual() {
    reliable_both_ways(desc(ThreadMode::Manual), desc(ThreadMode::Manual));
}

#[test]
fn reliable_40k_both_ways_ipv6_mixed_modes() {
    reliable_both_ways(desc6(ThreadMode::Manual), desc6(ThreadMode::Dedicated));
}

/// Sends `count` unreliable 40 KiB messages (each tagged with its index in its first 4 bytes),
/// paced; returns the indices delivered, after checking each delivered message is whole. Waits
/// `tail` after the last send (unreliable data is never resent, so a short wait suffices).
fn unreliable_40k(server: &Carrier, client: &Carrier, count: u32, tail: Duration) -> Vec<u32> {
    let (cid, sid) = connect(server, client);
    let message = |i: u32| {
        let mut m = pattern(100 + i, SIZE);
        m[..4].copy_from_slice(&i.to_be_bytes());
        m
    };
    let mut delivered = Vec::new();
    let check = |delivered: &mut Vec<u32>| {
        while let Some(m) = server.receive(sid, 0) {
            assert!(
                m.len() >= 4,
                "a fragment of {} bytes was delivered",
                m.len()
            );
            let i = u32::from_be_bytes([m[0], m[1], m[2], m[3]]);
            assert!(i < count, "unknown message {i}");
            assert_same_bytes(&m, &message(i), &format!("unreliable message {i}"));
            assert!(
                delivered.last().is_none_or(|&last| last < i),
                "out of order or duplicate: {i} after {delivered:?}"
            );
            delivered.push(i);
        }
    };
    for i in 0..count {
        client
            .send(
                cid,
                &message(i),
                Reliability::Unreliable,
                Priority::Normal,
                0,
            )
            .unwrap();
        // Give each message room: 20 ms of pumping.
        pump_until(&[server, client], Duration::from_millis(20), || false);
        check(&mut delivered);
    }
    pump_until(&[server, client], tail, || {
        check(&mut delivered);
        delivered.last() == Some(&(count - 1))
    });
    check(&mut delivered);
    delivered
}

fn unreliable_clean(mode: ThreadMode) {
    let _serial = serial();
    let server = Carrier::new(desc(mode)).unwrap();
    let client = Carrier::new(desc(mode)).unwrap();
    let delivered = unreliable_40k(&server, &client, 8, Duration::from_secs(2));
    // A clean loopback with room in the socket buffers loses nothing.
    assert_eq!(delivered, (0..8).collect::<Vec<_>>());
    shutdown_all(&[&server, &client]);
}

#[test]
fn unreliable_40k_is_delivered_whole_threaded() {
    unreliable_clean(ThreadMode::Dedicated);
}

#[test]
fn unreliable_40k_is_delivered_whole_manual() {
    unreliable_clean(ThreadMode::Manual);
}

fn unreliable_lossy(mode: ThreadMode) {
    let _serial = serial();
    // The sender loses 2 % of its datagrams: a 40 KiB message (32 fragments) arrives whole about
    // half the time; the others must not be delivered at all, not even partly.
    let sim = SimConfig {
        seed: 7,
        inbound: LinkConfig::new(),
        outbound: LinkConfig::new().with_loss(0.02),
        enabled: true,
    };
    let client = Carrier::new(CarrierDesc {
        simulator: Some(Box::new(NetworkSimulator::new(sim).unwrap())),
        ..desc(mode)
    })
    .unwrap();
    let server = Carrier::new(desc(mode)).unwrap();
    let count = 16;
    let delivered = unreliable_40k(&server, &client, count, Duration::from_millis(300));
    let lost = client
        .with_simulator(|s| s.stats(carrier_sim::Direction::Outbound).dropped())
        .unwrap();
    assert!(lost > 0, "the simulator dropped nothing");
    assert!(
        !delivered.is_empty() && delivered.len() < count as usize,
        "expected some but not all of {count} messages whole, got {delivered:?} ({lost} datagrams lost)"
    );
    shutdown_all(&[&server, &client]);
}

#[test]
fn unreliable_40k_whole_or_nothing_under_loss_threaded() {
    unreliable_lossy(ThreadMode::Dedicated);
}

#[test]
fn unreliable_40k_whole_or_nothing_under_loss_manual() {
    unreliable_lossy(ThreadMode::Manual);
}
