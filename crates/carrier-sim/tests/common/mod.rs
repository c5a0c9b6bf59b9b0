//! Helpers shared by the integration tests: a base instant, addresses, numbered datagrams, and
//! an event-driven loop that records exactly when each datagram comes out.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use carrier_sim::{Datagram, Link};

/// The base instant of a test. This is the only clock read in the tests: everything after it is
/// virtual time (`base + offset`), and the library itself never reads a clock.
#[allow(clippy::disallowed_methods)]
pub fn base() -> Instant {
    Instant::now()
}

/// Milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An address in the benchmarking range 198.18.0.0/15.
pub fn addr(n: u16) -> SocketAddr {
    SocketAddr::from(([198, 18, 0, (n % 250) as u8 + 1], 10_000 + n))
}

/// A datagram whose payload starts with `seq` (4 bytes, big endian), padded with a pattern to
/// `len` bytes (at least 4).
pub fn numbered(seq: u32, len: usize) -> Datagram {
    let mut payload = seq.to_be_bytes().to_vec();
    payload.extend((4..len.max(4)).map(|i| (i as u32).wrapping_mul(31).wrapping_add(seq) as u8));
    Datagram::new(addr(1), addr(2), payload)
}

/// The sequence number written by [`numbered`].
pub fn seq_of(d: &Datagram) -> u32 {
    u32::from_be_bytes([d.payload[0], d.payload[1], d.payload[2], d.payload[3]])
}

/// Pushes `pushes` (sorted by instant) and polls at every deadline the link reports, until the
/// link is empty. Returns every datagram with the instant it came out, which is its exact release
/// instant because `poll_timeout` is exact.
pub fn drive(
    link: &mut Link,
    pushes: impl IntoIterator<Item = (Instant, Datagram)>,
) -> Vec<(Instant, Datagram)> {
    let mut pushes = pushes.into_iter().peekable();
    let mut out = Vec::new();
    loop {
        let next_push = pushes.peek().map(|p| p.0);
        let t = match (next_push, link.poll_timeout()) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => break,
        };
        while let Some(d) = link.poll(t) {
            out.push((t, d));
        }
        while pushes.peek().is_some_and(|p| p.0 <= t) {
            if let Some((at, d)) = pushes.next() {
                link.push(at, d);
            }
        }
        while let Some(d) = link.poll(t) {
            out.push((t, d));
        }
    }
    assert!(link.stats().is_balanced(), "{:?}", link.stats());
    out
}

/// `n` numbered datagrams of `len` bytes, one every `gap`, from `start`.
pub fn evenly(start: Instant, n: u32, gap: Duration, len: usize) -> Vec<(Instant, Datagram)> {
    (0..n)
        .map(|i| (start + gap * i, numbered(i, len)))
        .collect()
}
