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
