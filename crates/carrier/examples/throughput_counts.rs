//! A deterministic manual-mode one-way stream for counting work per small message: two carriers
//! on one thread (loopback delivers synchronously), the client sending bursts of 64 B reliable
//! messages, the server draining them in order. Run it under `valgrind --tool=callgrind` with
//! two message counts and divide the difference by theirs:
//!
//! ```text
//! cargo build --release --example throughput_counts
//! valgrind --tool=callgrind target/release/examples/throughput_counts poll 20000
//! valgrind --tool=callgrind target/release/examples/throughput_counts poll 60000
//! callgrind_annotate --inclusive=yes callgrind.out.<pid> | grep throughput_counts
//! ```
//!
//! `poll N`: N messages received with `poll_message`; `into N`: with `receive_into`. The
//! sender's work (`send` and the client's `update()`: packing, traffic control, acks) is
//! inclusive in `send_side`, the receiver's (the server's `update()`: parsing, ordered delivery,
//! the mailbox, and receiving) in `receive_side`.

use std::time::Duration;

use carrier::{
    Carrier, CarrierDesc, CarrierEvent, ConnectionId, Priority, Reliability, ThreadMode,
};

/// Messages per burst: sent, then one update of each carrier, then drained.
const BURST: usize = 64;
const SIZE: usize = 64;

fn desc() -> CarrierDesc {
    CarrierDesc {
        thread_mode: ThreadMode::Manual,
        address: Some("127.0.0.1".into()),
        ..CarrierDesc::default()
    }
}

/// Queues `count` stamped messages (from `next`) and runs the client's turn.
#[inline(never)]
fn send_side(client: &Carrier, id: ConnectionId, next: u64, count: usize) {
    let mut payload = [7u8; SIZE];
    for seq in next..next + count as u64 {
        payload[..8].copy_from_slice(&seq.to_le_bytes());
        client
            .send(id, &payload, Reliability::Reliable, Priority::Normal, 0)
            .expect("send");
    }
    client.update();
}

/// Runs the server's turn and drains its messages, checking their order; returns the next
/// expected stamp.
#[inline(never)]
fn receive_side(server: &Carrier, from: ConnectionId, into: bool, mut next: u64) -> u64 {
    server.update();
    if into {
        let mut buf = [0u8; 2 * SIZE];
        while let Some(n) = server.receive_into(from, 0, &mut buf).expect("receive") {
            assert_eq!(n, SIZE);
            check(&buf[..n], next);
            next += 1;
        }
    } else {
        while let Some((_, m)) = server.poll_message() {
            check(&m.payload, next);
            next += 1;
        }
    }
    next
}

fn check(payload: &[u8], expected: u64) {
    let seq = u64::from_le_bytes(payload[..8].try_into().expect("stamp"));
    assert_eq!(seq, expected, "out of order");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let into = args.get(1).map(String::as_str) == Some("into");
    let n: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let client = Carrier::new(desc()).expect("client");
    let server = Carrier::new(desc()).expect("server");
    let id = client
        .connect(&server.local_addr().to_string())
        .expect("connect");
    let (mut connected, mut from) = (false, None);
    for _ in 0..5_000 {
        client.update();
        server.update();
        while let Some(e) = client.poll_event() {
            connected |= matches!(e, CarrierEvent::ConnectionEstablished { .. });
        }
        while let Some(e) = server.poll_event() {
            if let CarrierEvent::IncomingConnection { id, .. } = e {
                from = Some(id);
            }
        }
        if connected && from.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(connected, "connected within 5 s");
    let from = from.expect("incoming connection");
    let (mut sent, mut received) = (0u64, 0u64);
    let mut stalls = 0u64;
    while received < n {
        let burst = (n - sent).min(BURST as u64) as usize;
        send_side(&client, id, sent, burst);
        sent += burst as u64;
        let before = received;
        received = receive_side(&server, from, into, received);
        if received == before {
            stalls += 1;
            assert!(stalls < 1_000_000, "stalled at {received} of {n}");
        }
    }
    if stalls > 0 {
        eprintln!("{stalls} turns without a delivery");
    }
}
