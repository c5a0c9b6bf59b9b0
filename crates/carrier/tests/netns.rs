//! Carrier over a real kernel network path (issue 5, DESIGN.md §6 item 5): two network
//! namespaces joined by a veth pair, each direction limited by `tc tbf` to 20 Mbit/s and losing
//! 5 % or 20 % of its UDP packets to an nftables `numgen random` rule. A client in namespace a
//! sends 20,000 reliable 1 KiB messages on channel 0 to a server in namespace b; every message
//! must arrive, once, in order and intact, and at 5 % loss the goodput (payload bytes from the
//! first send to the last receive) must be between 50 % and 100 % of the tbf rate.
//!
//! Each carrier is created in-process on a thread that has entered its namespace with `setns`
//! ([`netns::NetnsPair::run_in`]): its UDP socket belongs to that namespace for good, so the
//! carrier thread it spawns and the test's own thread, which sends and receives through the
//! `Carrier` handles, need not be in it. This keeps one process, one harness and plain asserts
//! (no re-executed test binary under `ip netns exec`, no result passing between processes).
//!
//! The tbf sits on the sender's own veth end, and a packet waiting in a qdisc is charged to the
//! socket that sent it until it leaves. With the default 64 KiB `SO_SNDBUF` the socket would
//! fill up before the tbf queue (about 125 kB) does, so a sender going too fast would be
//! blocked (`EAGAIN`) instead of losing packets, and the queue would build in the carrier's own
//! driver where the network never sees it. A bottleneck further along a real path does not push
//! back; it drops. So the carriers get a 1 MiB `SO_SNDBUF` (the kernel doubles it and caps it
//! at `net.core.wmem_max`: 416 KiB on a stock kernel, still more than the tbf queue holds): a
//! sender that overruns the rate loses datagrams at the tbf, as it would at a router. The test
//! prints the tbf and nftables counters of each direction next to the carrier's own statistics.
//!
//! The tests need root, `ip`, `tc` and `nft`; without them they print why and pass as skipped,
//! unless `CARRIER_REQUIRE_NETNS` is set (`.ci/run` sets it after installing nftables and
//! iproute2), when they fail instead. The namespaces are removed when the test ends, passed or
//! failed. The runs take several seconds each and are serialised within this file.
#![cfg(target_os = "linux")]

mod common;
#[path = "common/netns.rs"]
mod netns;

use std::time::{Duration, Instant};

use carrier::{
    Carrier, CarrierDesc, CarrierEvent, ConnectionId, Priority, Reliability, SendError, ThreadMode,
};
use common::{expect_event, now, pattern, serial, shutdown_all};
use netns::{NetnsPair, Shape};

/// Messages per transfer.
const COUNT: u32 = 20_000;
/// Bytes per message (one message per datagram: two do not fit in the default 1,372 bytes).
const SIZE: usize = 1024;
/// The tbf rate of each direction: 20 Mbit/s, so a transfer takes about ten seconds.
const RATE_BITS_PER_S: u64 = 20_000_000;
/// tbf bucket: 16 KiB may leave at once above the rate (about 6.5 ms of it).
const BURST_BYTES: u32 = 16 * 1024;
/// tbf queue: packets wait at most 50 ms (about 125 kB at 20 Mbit/s), then are dropped.
const TBF_LATENCY_MS: u32 = 50;
/// `SO_SNDBUF` of both carriers: far above what the tbf queue holds, so the tbf queue and not
/// the sending socket is what overflows (see the module documentation).
const SEND_BUFFER_BYTES: u32 = 1 << 20;
/// A transfer that has not completed by then has stalled.
const TRANSFER_LIMIT: Duration = Duration::from_secs(120);
/// Handshake bound: generous, the handshake's datagrams are lost too (20 % each way).
const CONNECT_LIMIT: Duration = Duration::from_secs(20);

fn shape(loss_percent: u8) -> Shape {
    Shape {
        rate_bits_per_s: RATE_BITS_PER_S,
        burst_bytes: BURST_BYTES,
        latency_ms: TBF_LATENCY_MS,
        loss_percent,
    }
}

/// Message `seq`: its sequence number (big-endian) then bytes that differ for every message.
fn message(seq: u32) -> Vec<u8> {
    let mut m = pattern(seq, SIZE);
    m[..4].copy_from_slice(&seq.to_be_bytes());
    m
}

/// A carrier of namespace `side`, bound to its veth address, created inside that namespace.
fn carrier_in(pair: &NetnsPair, side: usize) -> Carrier {
    let address = pair.addr(side).to_string();
    pair.run_in(side, move || {
        Carrier::new(CarrierDesc {
            address: Some(address.clone()),
            thread_mode: ThreadMode::Dedicated,
            driver_send_buffer_size: SEND_BUFFER_BYTES,
            ..CarrierDesc::default()
        })
        .unwrap_or_else(|e| panic!("carrier on {address}: {e}"))
    })
}

/// Connects `client` to `server` across the link; (client-side id, server-side id).
fn connect(server: &Carrier, client: &Carrier) -> (ConnectionId, ConnectionId) {
    let cid = client
        .connect(&server.local_addr().to_string())
        .expect("connect");
    let mut log = Vec::new();
    let both = [server, client];
    let established = |e: &CarrierEvent| matches!(e, CarrierEvent::ConnectionEstablished { .. });
    let sid = expect_event(&both, server, CONNECT_LIMIT, &mut log, established)
        .and_then(|e| e.connection());
    let client_up = expect_event(&both, client, CONNECT_LIMIT, &mut log, established);
    let sid = sid.unwrap_or_else(|| panic!("no connection at the server in time: {log:?}"));
    assert!(client_up.is_some(), "client not connected in time: {log:?}");
    (cid, sid)
}

/// Fails on an event that ends the transfer.
fn check_events(c: &Carrier, who: &str, received: u32) {
    while let Some(e) = c.poll_event() {
        match e {
            CarrierEvent::Disconnect { .. }
            | CarrierEvent::FailedToConnect { .. }
            | CarrierEvent::DriverError { .. } => {
                panic!("{who}: {e:?} after {received} of {COUNT} messages were received")
            }
            _ => {}
        }
    }
}

/// What one transfer measured.
#[derive(Debug)]
struct Transfer {
    loss_percent: u8,
    /// From the first send to the last receive.
    elapsed: Duration,
    /// Payload bytes per second over `elapsed`.
    goodput: f64,
    /// `goodput` as a fraction of the tbf rate.
    fraction_of_rate: f64,
}

/// Sends COUNT reliable messages from a carrier in namespace a to one in namespace b through a
/// link with `loss_percent` loss each way; asserts every message arrives once, in order and
/// intact, within TRANSFER_LIMIT; prints and returns the figures. `None` when skipped.
fn transfer(test: &str, loss_percent: u8) -> Option<Transfer> {
    let _serial = serial();
    // Declared first, so dropped last: the carriers close their sockets before the namespaces
    // go, and the namespaces go even when an assert below fails.
    let pair = NetnsPair::or_skip(test, shape(loss_percent))?;
    let [ns_a, ns_b] = pair.names();
    println!(
        "{test}: {ns_a} ({}) → {ns_b} ({}), tbf {} Mbit/s each way, {loss_percent} % UDP loss \
         each way",
        pair.addr(0),
        pair.addr(1),
        RATE_BITS_PER_S / 1_000_000
    );
    let server = carrier_in(&pair, 1);
    let client = carrier_in(&pair, 0);
    let (cid, sid) = connect(&server, &client);

    let started = now();
    let deadline = started + TRANSFER_LIMIT;
    let mut first_send: Option<Instant> = None;
    let mut last_receive = started;
    let mut sent = 0u32;
    let mut received = 0u32;
    let mut queue_full = 0u64;
    let mut next_report = started + Duration::from_secs(2);
    while received < COUNT {
        let t = now();
        assert!(
            t < deadline,
            "{test}: stalled: {received} of {COUNT} messages received ({sent} sent) after \
             {TRANSFER_LIMIT:?}; client statistics: {:?}",
            client.statistics(cid)
        );
        let mut progress = false;
        // Send as far as the send queue takes (max_queued_bytes); the rest waits for it to drain.
        while sent < COUNT {
            match client.send(
                cid,
                &message(sent),
                Reliability::Reliable,
                Priority::Normal,
                0,
            ) {
                Ok(()) => {
                    first_send.get_or_insert_with(now);
                    sent += 1;
                    progress = true;
                }
                Err(SendError::QueueFull { .. }) => {
                    queue_full += 1;
                    break;
                }
                Err(e) => panic!("{test}: send of message {sent}: {e}"),
            }
        }
        while let Some(m) = server.receive(sid, 0) {
            assert!(m.len() >= 4, "{test}: a message of {} bytes", m.len());
            let seq = u32::from_be_bytes([m[0], m[1], m[2], m[3]]);
            assert_eq!(
                seq, received,
                "{test}: message {seq} arrived when {received} was due (lost, duplicated or \
                 out of order)"
            );
            common::assert_same_bytes(&m, &message(seq), &format!("{test}: message {seq}"));
            received += 1;
            last_receive = now();
            progress = true;
        }
        check_events(&client, "client", received);
        check_events(&server, "server", received);
        client.update();
        server.update();
        if t >= next_report {
            next_report = t + Duration::from_secs(2);
            println!(
                "  {:>5.1} s: {sent} sent, {received} received",
                (t - started).as_secs_f64()
            );
        }
        if !progress {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let first_send = first_send.expect("something was sent");
    let elapsed = last_receive.saturating_duration_since(first_send);
    let goodput = f64::from(COUNT) * SIZE as f64 / elapsed.as_secs_f64();
    let rate = pair.shape().rate_bytes_per_s();

    // Nothing more arrives: no duplicate after the last message, nothing on another channel.
    std::thread::sleep(Duration::from_millis(200));
    client.update();
    server.update();
    assert!(
        server.receive(sid, 0).is_none(),
        "{test}: a message after the last one"
    );
    assert_eq!(server.pending_messages(), 0, "{test}: stray messages");

    let stats = client.statistics(cid).expect("client connection");
    let life = stats.lifetime;
    println!(
        "{test}: {COUNT} × {SIZE} B in {:.2} s: goodput {:.3} MB/s = {:.1} % of the tbf rate \
         ({:.3} MB/s); send queue full {queue_full} times",
        elapsed.as_secs_f64(),
        goodput / 1e6,
        100.0 * goodput / rate,
        rate / 1e6
    );
    println!(
        "  client: {} datagrams sent, {} lost ({:.1} %), {} acked, {} bytes sent, {} resent; \
         RTT smoothed {:?} min {:?}",
        life.packets_sent,
        life.packets_lost,
        100.0 * life.packets_lost as f64 / life.packets_sent.max(1) as f64,
        life.packets_acked,
        life.bytes_sent,
        life.bytes_resent,
        stats.rtt.smoothed,
        stats.rtt.min
    );
    // Each direction: the sender's tbf, and the receiver's nftables drops on arrival.
    let counters = [pair.counters(0), pair.counters(1)];
    for (from, name) in [(0, "a → b"), (1, "b → a")] {
        match (&counters[from], &counters[1 - from]) {
            (Ok(tx), Ok(rx)) => println!(
                "  {name}: tbf sent {} packets ({} bytes), dropped {}, overlimits {}; nftables \
                 dropped {} on arrival ({:.1} %)",
                tx.tbf_sent_packets,
                tx.tbf_sent_bytes,
                tx.tbf_dropped,
                tx.tbf_overlimits,
                rx.nft_dropped,
                100.0 * rx.nft_dropped as f64 / tx.tbf_sent_packets.max(1) as f64
            ),
            (Err(e), _) | (_, Err(e)) => println!("  {name}: counters unavailable: {e}"),
        }
    }
    shutdown_all(&[&server, &client]);
    drop((server, client));
    drop(pair);
    Some(Transfer {
        loss_percent,
        elapsed,
        goodput,
        fraction_of_rate: goodput / rate,
    })
}

/// 5 % loss each way: complete and in order, and the goodput is 50..=100 % of the tbf rate.
#[test]
fn reliable_20k_messages_in_order_and_goodput_at_5_percent_loss() {
    let test = "reliable_20k_messages_in_order_and_goodput_at_5_percent_loss";
    let Some(t) = transfer(test, 5) else {
        return;
    };
    assert!(
        (0.5..=1.0).contains(&t.fraction_of_rate),
        "{test}: goodput {:.3} MB/s over {:.2} s at {} % loss is {:.1} % of the tbf rate, \
         outside 50..=100 %",
        t.goodput / 1e6,
        t.elapsed.as_secs_f64(),
        t.loss_percent,
        100.0 * t.fraction_of_rate
    );
}

/// 20 % loss each way: complete and in order (the goodput is printed, not bounded).
#[test]
fn reliable_20k_messages_in_order_at_20_percent_loss() {
    transfer("reliable_20k_messages_in_order_at_20_percent_loss", 20);
}
