//! A deterministic manual-mode ping-pong for counting work per round trip: two carriers on one
//! thread, taking turns (loopback delivers synchronously), so every `update()` does real work
//! and none spins. Run it under `strace -c` (system calls) or `valgrind --tool=callgrind`
//! (instructions) with two round-trip counts and divide the difference by theirs:
//!
//! ```text
//! cargo build --release --example pingpong_counts
//! valgrind --tool=callgrind target/release/examples/pingpong_counts rt 1000
//! valgrind --tool=callgrind target/release/examples/pingpong_counts rt 3000
//! valgrind --tool=callgrind target/release/examples/pingpong_counts idle 10000
//! ```
//!
//! `rt N`: N round trips of a 64 B reliable message (per round trip: 4 `update()` calls, 2
//! sends, 2 `poll_message`). `idle N`: N `update()` calls with nothing to do.

use std::time::Duration;

use carrier::{Carrier, CarrierDesc, CarrierEvent, Priority, Reliability, ThreadMode};

fn desc() -> CarrierDesc {
    CarrierDesc {
        thread_mode: ThreadMode::Manual,
        address: Some("127.0.0.1".into()),
        ..CarrierDesc::default()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("rt", String::as_str);
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1_000);
    let client = Carrier::new(desc()).expect("client");
    let server = Carrier::new(desc()).expect("server");
    let id = client
        .connect(&server.local_addr().to_string())
        .expect("connect");
    let mut connected = false;
    for _ in 0..5_000 {
        client.update();
        server.update();
        while let Some(e) = client.poll_event() {
            connected |= matches!(e, CarrierEvent::ConnectionEstablished { .. });
        }
        while server.poll_event().is_some() {}
        if connected {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(connected, "connected within 5 s");
    if mode == "idle" {
        for _ in 0..n {
            client.update();
        }
        return;
    }
    let payload = [7u8; 64];
    for i in 0..n {
        client
            .send(id, &payload, Reliability::Reliable, Priority::Normal, 0)
            .expect("send");
        client.update();
        let mut tries = 0;
        let (from, m) = loop {
            server.update();
            if let Some(x) = server.poll_message() {
                break x;
            }
            tries += 1;
            assert!(tries < 1_000_000, "round trip {i}: no request");
        };
        server
            .send(from, &m.payload, Reliability::Reliable, Priority::Normal, 0)
            .expect("echo");
        server.update();
        let mut tries = 0;
        loop {
            client.update();
            if client.poll_message().is_some() {
                break;
            }
            tries += 1;
            assert!(tries < 1_000_000, "round trip {i}: no echo");
        }
    }
}
