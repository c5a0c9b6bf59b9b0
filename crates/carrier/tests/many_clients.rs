//! 100 clients send unreliable 1 KB messages to one server (the original's
//! `Integ_CarrierMultiStressTest`): every byte sent is delivered, minus the drops the carriers
//! counted.
//!
//! Loopback loses nothing unless a socket buffer overflows, and such a drop is silent, so the
//! server gets a 4 MiB receive buffer (the `rmem_max` of a stock Linux is 4 MiB or less; the
//! kernel may cap it) and the clients send paced rounds. The accounting uses what the carriers
//! report per connection: payload bytes the clients' connections sent
//! (`effective_lifetime.bytes_sent`) and payload bytes the server's connections received
//! (`effective_lifetime.bytes_received`); their difference is what the network dropped. Carrier
//! does not report unreliable messages it discarded after receiving them (out of order or
//! incomplete), which cannot happen on a loopback that neither reorders nor loses.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use carrier::{
    Carrier, CarrierDesc, CarrierEvent, ConnectionId, Priority, Reliability, ThreadMode,
};
use common::{desc, now, pump_until, serial};

const CLIENTS: usize = 100;
const ROUNDS: u16 = 100;
const PER_ROUND: u8 = 2;
const SIZE: usize = 1_000;

/// Client `c`'s message `k` of round `r`: its header says who and when, the rest is filler.
fn message(c: u16, r: u16, k: u8) -> Vec<u8> {
    let mut m = vec![(c as u8) ^ (r as u8) ^ k; SIZE];
    m[..2].copy_from_slice(&c.to_be_bytes());
    m[2..4].copy_from_slice(&r.to_be_bytes());
    m[4] = k;
    m
}

/// UDP receive-buffer errors of the whole host (Linux), for the failure message only.
fn rcvbuf_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = lines.next()?.split_whitespace().collect();
    let values: Vec<&str> = lines.next()?.split_whitespace().collect();
    let i = names.iter().position(|n| *n == "RcvbufErrors")?;
    values.get(i)?.parse().ok()
}

/// What one run measured.
struct Outcome {
    sent: u64,
    /// Data datagrams the clients' loss detection counted as lost.
    lost_datagrams: u64,
    delivered: u64,
    /// Payload bytes the clients' connections sent minus those the server's received.
    dropped: u64,
    report: String,
}

/// Connects [`CLIENTS`] manual-mode clients to a server whose socket has `receive_buffer`
/// bytes, sends [`ROUNDS`] rounds of [`PER_ROUND`] messages per client, sleeping `pause`
/// between rounds, waits at most `tail` for the rest, and accounts for every byte.
fn run(receive_buffer: u32, pause: Duration, tail: Duration) -> Outcome {
    let started = now();
    let host_drops_before = rcvbuf_errors();
    let server = Carrier::new(CarrierDesc {
        driver_receive_buffer_size: receive_buffer,
        driver_send_buffer_size: 1 << 20,
        ..desc(ThreadMode::Dedicated)
    })
    .unwrap();
    // Manual-mode clients, all driven by this thread: 100 sockets without 100 threads.
    let clients: Vec<Carrier> = (0..CLIENTS)
        .map(|_| Carrier::new(desc(ThreadMode::Manual)).unwrap())
        .collect();
    let target = server.local_addr().to_string();
    let ids: Vec<ConnectionId> = clients
        .iter()
        .map(|c| c.connect(&target).unwrap())
        .collect();

    // Connect all of them.
    let mut established = [false; CLIENTS];
    let mut server_ids: HashMap<ConnectionId, usize> = HashMap::new();
    let by_addr: HashMap<_, usize> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| (c.local_addr(), i))
        .collect();
    let mut all: Vec<&Carrier> = clients.iter().collect();
    all.push(&server);
    let ok = pump_until(&all, Duration::from_secs(10), || {
        for (i, c) in clients.iter().enumerate() {
            while let Some(e) = c.poll_event() {
                match e {
                    CarrierEvent::ConnectionEstablished { .. } => established[i] = true,
                    CarrierEvent::FailedToConnect { .. } | CarrierEvent::Disconnect { .. } => {
                        panic!("client {i}: {e:?}")
                    }
                    _ => {}
                }
            }
        }
        while let Some(e) = server.poll_event() {
            if let CarrierEvent::ConnectionEstablished { id } = e {
                let addr = server.remote_addr(id).unwrap();
                server_ids.insert(id, by_addr[&addr]);
            }
        }
        established.iter().all(|e| *e) && server_ids.len() == CLIENTS
    });
    assert!(
        ok,
        "{} clients and {} server connections established",
        established.iter().filter(|e| **e).count(),
        server_ids.len()
    );

    // Paced rounds: every client sends PER_ROUND messages, then they all flush.
    let mut sent_bytes = 0u64;
    let mut delivered_bytes = 0u64;
    let mut delivered_msgs = 0u64;
    let mut last_seen: HashMap<usize, (u16, u8)> = HashMap::new();
    let mut drain = |delivered_bytes: &mut u64, delivered_msgs: &mut u64| {
        while let Some((id, m)) = server.poll_message() {
            let from = server_ids[&id];
            let payload = &m.payload;
            assert_eq!(payload.len(), SIZE, "from client {from}");
            let c = u16::from_be_bytes([payload[0], payload[1]]);
            let r = u16::from_be_bytes([payload[2], payload[3]]);
            let k = payload[4];
            assert_eq!(
                usize::from(c),
                from,
                "message routed to the wrong connection"
            );
            assert!(
                payload[..] == message(c, r, k)[..],
                "message {c}/{r}/{k} damaged"
            );
            // One stream per client: strictly increasing, never twice.
            let prev = last_seen.insert(from, (r, k));
            assert!(
                prev < Some((r, k)),
                "client {from}: {prev:?} then {:?}",
                (r, k)
            );
            *delivered_bytes += payload.len() as u64;
            *delivered_msgs += 1;
        }
    };
    for r in 0..ROUNDS {
        for (i, c) in clients.iter().enumerate() {
            for k in 0..PER_ROUND {
                c.send(
                    ids[i],
                    &message(i as u16, r, k),
                    Reliability::Unreliable,
                    Priority::Normal,
                    0,
                )
                .unwrap();
                sent_bytes += SIZE as u64;
            }
            c.update();
        }
        server.update();
        drain(&mut delivered_bytes, &mut delivered_msgs);
        std::thread::sleep(pause);
    }
    let total = u64::from(ROUNDS) * u64::from(PER_ROUND) * CLIENTS as u64 * SIZE as u64;
    assert_eq!(sent_bytes, total);
    // Cleanup rounds: let the last datagrams and the acknowledgements arrive.
    pump_until(&all, tail, || {
        drain(&mut delivered_bytes, &mut delivered_msgs);
        delivered_bytes == sent_bytes
    });
    pump_until(&all, Duration::from_millis(100), || false);
    drain(&mut delivered_bytes, &mut delivered_msgs);

    // What the carriers counted.
    let carrier_sent: u64 = clients
        .iter()
        .zip(&ids)
        .map(|(c, id)| c.statistics(*id).unwrap().effective_lifetime.bytes_sent)
        .sum();
    let carrier_received: u64 = server_ids
        .keys()
        .map(|id| {
            server
                .statistics(*id)
                .unwrap()
                .effective_lifetime
                .bytes_received
        })
        .sum();
    let lost_datagrams: u64 = clients
        .iter()
        .zip(&ids)
        .map(|(c, id)| c.statistics(*id).unwrap().effective_lifetime.packets_lost)
        .sum();
    // Unreliable messages that could not leave within the TTL are dropped at the sender and
    // counted there.
    let expired_bytes: u64 = clients
        .iter()
        .zip(&ids)
        .map(|(c, id)| c.expired_unreliable(*id).unwrap() * SIZE as u64)
        .sum();
    // Unreliable messages still queued: after heavy loss a client's congestion window can stay
    // closed past the tail, and they expire only when the connection is next polled to send
    // (an acknowledgement, a timer).
    let queued_bytes: u64 = clients
        .iter()
        .zip(&ids)
        .map(|(c, id)| c.statistics(*id).unwrap().flow.queued_messages as u64 * SIZE as u64)
        .sum();
    let dropped = carrier_sent.saturating_sub(carrier_received);
    let report = format!(
        "test sent {sent_bytes} B, delivered {delivered_bytes} B ({delivered_msgs} messages); \
         clients' connections sent {carrier_sent} payload B, server's connections received \
         {carrier_received} payload B (dropped {dropped} B); clients counted {lost_datagrams} lost \
         data datagrams; host-wide UDP RcvbufErrors during the run: {:?}",
        rcvbuf_errors()
            .zip(host_drops_before)
            .map(|(after, before)| after - before)
    );
    // Every byte handed to `send` left the clients, was counted as expired there or still waits
    // in their queues, and what arrived is what left minus the drops the carriers counted.
    assert_eq!(
        carrier_sent + expired_bytes + queued_bytes,
        sent_bytes,
        "{report} expired {expired_bytes} B, queued {queued_bytes} B"
    );
    assert_eq!(delivered_bytes, carrier_sent - dropped, "{report}");
    for (i, c) in clients.iter().enumerate() {
        assert!(
            c.statistics(ids[i]).unwrap().lifetime.packets_sent > 0,
            "client {i} sent nothing"
        );
    }
    let elapsed = now() - started;
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
    eprintln!("{report}; {elapsed:?}");
    // Shut everything down at once (manual-mode clients answer each other's disconnects).
    let mut everyone: Vec<&Carrier> = clients.iter().collect();
    everyone.push(&server);
    common::shutdown_all(&everyone);
    Outcome {
        sent: sent_bytes,
        delivered: delivered_bytes,
        lost_datagrams,
        dropped,
        report,
    }
}

#[test]
fn hundred_clients_unreliable_1kb_all_bytes_delivered() {
    let _serial = serial();
    // Room in the socket buffer (4 MiB) and paced rounds: nothing is dropped at all.
    let out = run(4 << 20, Duration::from_millis(3), Duration::from_secs(3));
    assert_eq!(out.dropped, 0, "{}", out.report);
    assert_eq!(out.delivered, out.sent, "{}", out.report);
}

#[test]
fn hundred_clients_unreliable_1kb_drops_are_counted() {
    let _serial = serial();
    // A small socket buffer (16 KiB) and unpaced rounds: the kernel drops datagrams silently,
    // and the carriers' counters still account for every byte (checked inside `run`).
    // Unreliable data is never resent: what has not arrived 500 ms after the last send never will.
    let out = run(16 << 10, Duration::ZERO, Duration::from_millis(500));
    assert!(out.delivered > 0, "{}", out.report);
    assert!(
        out.dropped > 0,
        "the burst was expected to overflow: {}",
        out.report
    );
    // The senders noticed: their loss detection counted lost data datagrams.
    assert!(out.lost_datagrams > 0, "{}", out.report);
}
