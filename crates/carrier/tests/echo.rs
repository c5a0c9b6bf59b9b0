//! Basic echo over loopback with statistics (the original's carrier test), in both thread modes
//! and both address families.

mod common;

use std::time::Duration;

use carrier::{Carrier, Priority, Reliability, ThreadMode};
use common::{connect, desc, desc6, pump_until};

fn echo(server_desc: carrier::CarrierDesc, client_desc: carrier::CarrierDesc) {
    let server = Carrier::new(server_desc).unwrap();
    let client = Carrier::new(client_desc).unwrap();
    let (cid, sid) = connect(&server, &client);
    let payload = b"Hello from the client";
    for i in 0..50u8 {
        let mut p = payload.to_vec();
        p.push(i);
        client
            .send(cid, &p, Reliability::Reliable, Priority::Normal, 0)
            .unwrap();
    }
    let mut echoed = 0u8;
    let ok = pump_until(&[&server, &client], Duration::from_secs(5), || {
        while let Some(m) = server.receive(sid, 0) {
            server
                .send(sid, &m, Reliability::Reliable, Priority::Normal, 0)
                .unwrap();
        }
        while let Some(m) = client.receive(cid, 0) {
            assert_eq!(&m[..payload.len()], payload);
            assert_eq!(m[payload.len()], echoed, "in order");
            echoed += 1;
        }
        echoed == 50
    });
    assert!(ok, "echoed {echoed}");
    // Let acknowledgements flow, then check the statistics.
    pump_until(&[&server, &client], Duration::from_millis(300), || false);
    let stats = client.statistics(cid).unwrap();
    assert!(
        stats.rtt.has_samples && stats.rtt.smoothed > Duration::ZERO,
        "{:?}",
        stats.rtt
    );
    assert!(stats.lifetime.packets_sent > 0);
    assert!(
        stats.lifetime.bytes_sent > 50 * payload.len() as u64,
        "{:?}",
        stats.lifetime
    );
    assert!(stats.effective_lifetime.bytes_sent >= 50 * (payload.len() as u64 + 1));
}

#[test]
fn echo_ipv4_threaded() {
    echo(desc(ThreadMode::Dedicated), desc(ThreadMode::Dedicated));
}

#[test]
fn echo_ipv4_manual() {
    echo(desc(ThreadMode::Manual), desc(ThreadMode::Manual));
}

#[test]
fn echo_ipv6() {
    echo(desc6(ThreadMode::Dedicated), desc6(ThreadMode::Manual));
}
