//! Anti-spoofing (docs/protocol.md §4.2): spoofed connect requests create no state, every reply
//! is no larger than its request, and cookies are bound to the address and expire.
#![allow(unsafe_code)] // a counting global allocator; the protocol itself has no unsafe code

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use carrier_proto::testing::Network;
use carrier_proto::{DropReason, Endpoint, EndpointConfig};

/// Counts live heap bytes so the test can see that memory stays flat.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only adds bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A connect request as an initiator would send it (docs/protocol.md §4.1), with a forged or
/// empty cookie.
fn request(initiator_id: u32, cookie: [u8; 20]) -> Vec<u8> {
    let mut d = vec![0xCA, 0x77, 1, 1];
    d.extend_from_slice(&initiator_id.to_be_bytes());
    d.extend_from_slice(&cookie);
    d.extend_from_slice(&[8, 0, 0x10, 0, 0, 0x05, 0x5C, 0, 0x40, 0, 0]);
    d.extend_from_slice(&[0, 4, 0, 0, 0, 1]);
    let sum = crc32fast::hash(&d);
    d.extend_from_slice(&sum.to_be_bytes());
    d
}

fn spoofed(i: u32) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::from(0xC612_0000 + i)),
        (1024 + i % 60_000) as u16,
    )
}

#[test]
fn spoofed_requests_create_no_state_and_no_amplification() {
    let mut net = Network::new();
    let server = net.add_node(EndpointConfig::default(), 1);
    let now = net.now();
    let endpoint: &mut Endpoint = &mut net.node_mut(server).endpoint;
    let mut buf = vec![0u8; 2048];
    let mut replies = 0u64;
    // Warm up the queues so their capacity is allocated before measuring.
    for i in 0..1_000u32 {
        let req = request(i + 1, [0; 20]);
        endpoint.handle(now, spoofed(i), &req);
        while let Some(t) = endpoint.poll_transmit(now, &mut buf) {
            assert!(t.size <= req.len());
        }
    }
    let before = LIVE.load(Ordering::SeqCst);
    for i in 0..100_000u32 {
        let forged = [(i % 251) as u8; 20];
        let req = request(i + 1, if i % 2 == 0 { [0; 20] } else { forged });
        endpoint.handle(now + Duration::from_micros(u64::from(i)), spoofed(i), &req);
        while let Some(t) = endpoint.poll_transmit(now, &mut buf) {
            assert!(
                t.size <= req.len(),
                "reply of {} bytes to a {}-byte request",
                t.size,
                req.len()
            );
            assert_eq!(t.destination, spoofed(i));
            replies += 1;
        }
        let sizes = endpoint.table_sizes();
        assert_eq!(sizes.connections, 0);
        assert_eq!(sizes.addresses, 0);
        assert_eq!(sizes.events, 0);
        assert_eq!(sizes.messages, 0);
        assert!(sizes.stateless_replies <= 1);
    }
    drop(buf);
    let after = LIVE.load(Ordering::SeqCst);
    assert_eq!(replies, 100_000, "each request gets one challenge");
    assert!(
        (after - before).abs() < 64 * 1024,
        "memory grew by {} bytes over 100,000 spoofed requests",
        after - before
    );
    assert_eq!(endpoint.drops().get(DropReason::InvalidCookie), 101_000);
}

#[test]
fn cookie_is_bound_to_the_address_and_expires() {
    let mut net = Network::new();
    let server = net.add_node(EndpointConfig::default(), 1);
    let now = net.now();
    let endpoint = &mut net.node_mut(server).endpoint;
    let mut buf = vec![0u8; 2048];
    let alice = spoofed(1);
    let mallory = spoofed(2);
    endpoint.handle(now, alice, &request(77, [0; 20]));
    let t = endpoint.poll_transmit(now, &mut buf).unwrap();
    assert_eq!(t.size, 32);
    let mut cookie = [0u8; 20];
    cookie.copy_from_slice(&buf[8..28]);
    // Another address replaying Alice's cookie gets a fresh challenge, no connection.
    endpoint.handle(now, mallory, &request(77, cookie));
    assert_eq!(endpoint.table_sizes().connections, 0);
    assert!(endpoint.poll_transmit(now, &mut buf).is_some());
    // Alice's cookie after its lifetime (10 s) is refused too.
    endpoint.handle(now + Duration::from_secs(11), alice, &request(77, cookie));
    assert_eq!(endpoint.table_sizes().connections, 0);
    assert!(endpoint.poll_transmit(now, &mut buf).is_some());
    // Within its lifetime it is accepted.
    endpoint.handle(now + Duration::from_secs(1), alice, &request(77, cookie));
    assert_eq!(endpoint.table_sizes().connections, 1);
}
