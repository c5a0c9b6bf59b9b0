//! Helpers shared by the loopback tests.
#![allow(dead_code)] // each test file uses a subset

use std::time::{Duration, Instant};

use carrier::{Carrier, CarrierDesc, CarrierEvent, ConnectionId, FamilyType, ThreadMode};

/// Real time for real sockets.
#[allow(clippy::disallowed_methods)] // loopback tests run on the real clock
pub fn now() -> Instant {
    Instant::now()
}

/// A descriptor bound to loopback on a free port.
pub fn desc(mode: ThreadMode) -> CarrierDesc {
    CarrierDesc {
        address: Some("127.0.0.1".into()),
        thread_mode: mode,
        ..CarrierDesc::default()
    }
}

/// The same over IPv6 loopback.
pub fn desc6(mode: ThreadMode) -> CarrierDesc {
    CarrierDesc {
        address: Some("::1".into()),
        family_type: FamilyType::Ipv6,
        thread_mode: mode,
        ..CarrierDesc::default()
    }
}

/// Pumps both carriers (needed in manual mode, harmless otherwise) until `done` or `limit`.
pub fn pump_until(carriers: &[&Carrier], limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = now() + limit;
    while now() < end {
        for c in carriers {
            c.update();
        }
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    done()
}

/// Collects events of a carrier into `log` while pumping.
pub fn drain(c: &Carrier, log: &mut Vec<CarrierEvent>) {
    while let Some(e) = c.poll_event() {
        log.push(e);
    }
}

/// Connects `client` to `server`; returns (client-side id, server-side id).
pub fn connect(server: &Carrier, client: &Carrier) -> (ConnectionId, ConnectionId) {
    let id = client
        .connect(&server.local_addr().to_string())
        .expect("connect");
    let mut server_id = None;
    let mut client_ok = false;
    let ok = pump_until(&[server, client], Duration::from_secs(5), || {
        while let Some(e) = server.poll_event() {
            if let CarrierEvent::ConnectionEstablished { id } = e {
                server_id = Some(id);
            }
        }
        while let Some(e) = client.poll_event() {
            if let CarrierEvent::ConnectionEstablished { .. } = e {
                client_ok = true;
            }
        }
        client_ok && server_id.is_some()
    });
    assert!(ok, "connection established within 5 s");
    (id, server_id.unwrap())
}

/// Serialises the heavy socket tests of one test binary (each test file is its own binary, so
/// the lock is per file): they get the CPU and the socket buffers to themselves. A test that
/// failed while holding it does not block the others.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Pumps `carriers` until `watched` reports an event for which `pred` holds; every event seen
/// (the match included) is appended to `log`. Returns the matching event, or `None` after
/// `limit`.
pub fn expect_event(
    carriers: &[&Carrier],
    watched: &Carrier,
    limit: Duration,
    log: &mut Vec<CarrierEvent>,
    pred: impl Fn(&CarrierEvent) -> bool,
) -> Option<CarrierEvent> {
    let mut found = None;
    pump_until(carriers, limit, || {
        while let Some(e) = watched.poll_event() {
            log.push(e.clone());
            if found.is_none() && pred(&e) {
                found = Some(e);
            }
        }
        found.is_some()
    });
    found
}

/// A payload of `len` bytes that differs for every `seed` and every position, so a misplaced,
/// truncated or mixed-up byte is caught.
pub fn pattern(seed: u32, len: usize) -> Vec<u8> {
    let mut x = (seed.wrapping_mul(0x9E37_79B9) ^ 0x5bd1_e995) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Asserts two byte strings are equal without printing kilobytes: names the first difference.
#[track_caller]
pub fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{what}: first difference at byte {i} of {} (got {:#04x}, want {:#04x})",
            want.len(),
            got[i],
            want[i]
        );
    }
}

/// Shuts the carriers down at the same time (each on its own thread), so manual-mode carriers
/// keep answering each other's disconnects instead of each waiting for its shutdown timeout.
pub fn shutdown_all(carriers: &[&Carrier]) {
    std::thread::scope(|s| {
        for c in carriers {
            s.spawn(move || c.shutdown());
        }
    });
}
