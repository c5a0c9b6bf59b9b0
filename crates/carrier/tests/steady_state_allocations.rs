//! Guards issue 6: in steady state, sending and receiving messages allocates nothing per message
//! (amortized; docs/performance.md "Allocations per message").
//!
//! Two manual-mode carriers in this one thread exchange messages over loopback while a counting
//! global allocator (this test binary's own) counts every allocation of the send and receive
//! paths: `send` (copies), `send_bytes` (shared payloads), `poll_message` and `receive_into`,
//! after a warm-up of as many messages. Counts, never timings, are asserted. This file holds a
//! single test so no other test thread allocates while counting.

// A global allocator cannot be written without `unsafe`: the one block per method forwards to
// `System` unchanged (as `carrier-cli`'s bench allocator does).
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use carrier::{Carrier, ConnectionId, Priority, Reliability, SendError, ThreadMode};

mod common;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting allocations (and reallocations) while `COUNTING` is set.
struct CountingAlloc;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the counter
// is an atomic that never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn count() {
    if COUNTING.load(Ordering::Relaxed) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Messages measured per case (after as many for warm-up).
const MESSAGES: usize = 10_000;
/// Messages queued per `update`.
const BATCH: usize = 32;
/// The target is 0; a chunk allocated now and then is fine (measured: at most 0.0005). An
/// allocation every ~50 packets, as a receiver that re-created its frame pool for every
/// acknowledged ACK did (0.02 per 1 KiB message), fails.
const LIMIT: f64 = 0.005;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Api {
    /// `send` + `poll_message`.
    Copying,
    /// `send_bytes` + `receive_into`.
    Shared,
}

struct Pair {
    client: Carrier,
    server: Carrier,
    id: ConnectionId,
    server_id: ConnectionId,
}

/// Sends `count` messages of `size` bytes through the pair; returns the allocations of the send
/// path (sends and the client's `update`) and of the receive path (the server's `update` and the
/// receive calls).
fn run(pair: &Pair, api: Api, size: usize, payloads: &[Bytes], count: usize) -> (u64, u64) {
    let mut buf = vec![0u8; size];
    let mut rx = vec![0u8; size];
    let (mut sent, mut received) = (0, 0);
    let (mut send_allocs, mut recv_allocs) = (0, 0);
    let deadline = common::now() + Duration::from_secs(60);
    while received < count {
        assert!(common::now() < deadline, "stalled at {received} of {count}");
        let a0 = ALLOCS.load(Ordering::Relaxed);
        let goal = (sent + BATCH).min(count);
        while sent < goal {
            let r = match api {
                Api::Copying => {
                    buf[..8].copy_from_slice(&(sent as u64).to_le_bytes());
                    pair.client
                        .send(pair.id, &buf, Reliability::Reliable, Priority::Normal, 0)
                }
                Api::Shared => pair.client.send_bytes(
                    pair.id,
                    payloads[sent].clone(),
                    Reliability::Reliable,
                    Priority::Normal,
                    0,
                ),
            };
            match r {
                Ok(()) => sent += 1,
                Err(SendError::QueueFull { .. }) => break,
                Err(e) => panic!("send failed: {e}"),
            }
        }
        pair.client.update();
        let a1 = ALLOCS.load(Ordering::Relaxed);
        pair.server.update();
        let before = received;
        match api {
            Api::Copying => {
                while let Some((_, m)) = pair.server.poll_message() {
                    assert_eq!(m.payload.len(), size);
                    assert_eq!(&m.payload[..8], &(received as u64).to_le_bytes());
                    received += 1;
                }
            }
            Api::Shared => {
                while let Some(n) = pair
                    .server
                    .receive_into(pair.server_id, 0, &mut rx)
                    .unwrap()
                {
                    assert_eq!(n, size);
                    assert_eq!(&rx[..8], &(received as u64).to_le_bytes());
                    received += 1;
                }
            }
        }
        let a2 = ALLOCS.load(Ordering::Relaxed);
        send_allocs += a1 - a0;
        recv_allocs += a2 - a1;
        if received == before {
            // Let the acknowledgement and retransmission timers run.
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    (send_allocs, recv_allocs)
}

#[test]
fn sending_and_receiving_allocate_nothing_per_message_in_steady_state() {
    let mut report = Vec::new();
    for size in [64, 1_024] {
        for api in [Api::Copying, Api::Shared] {
            let client = Carrier::new(common::desc(ThreadMode::Manual)).unwrap();
            let server = Carrier::new(common::desc(ThreadMode::Manual)).unwrap();
            let (id, server_id) = common::connect(&server, &client);
            let pair = Pair {
                client,
                server,
                id,
                server_id,
            };
            // Payloads for `send_bytes`, shared before counting (the first clone of a `Bytes`
            // made from a `Vec` allocates its shared header).
            let payloads: Vec<Bytes> = (0..MESSAGES)
                .map(|i| {
                    let mut b = vec![0u8; size];
                    b[..8].copy_from_slice(&(i as u64).to_le_bytes());
                    let b = Bytes::from(b);
                    drop(b.clone());
                    b
                })
                .collect();
            // Warm-up, uncounted: buffers and pools grow to their working size.
            run(&pair, api, size, &payloads, MESSAGES);
            COUNTING.store(true, Ordering::SeqCst);
            let (send, recv) = run(&pair, api, size, &payloads, MESSAGES);
            COUNTING.store(false, Ordering::SeqCst);
            let per = |n: u64| n as f64 / MESSAGES as f64;
            report.push(format!(
                "{size} B {api:?}: send {:.4}, receive {:.4} allocations per message",
                per(send),
                per(recv)
            ));
            assert!(
                per(send) < LIMIT && per(recv) < LIMIT,
                "allocations per message above {LIMIT}: {report:#?}"
            );
            pair.client.shutdown();
            pair.server.shutdown();
        }
    }
    println!("{report:#?}");
}
